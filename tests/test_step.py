"""kernels/step.py's pieces as the drivers of kernels/epoch.py schedule them: the two halves of an
explicit-gradient step (gradient_kernel, update_kernel) against the serial epoch, and the batch-parallel
plain-SGD bound (issue 18's race)."""
import numpy as np
import pytest

import fastnn as fnn
from fastnn import threads
from fastnn.engines import fused
from fastnn.kernels import epoch, epoch_parallel, step
from fastnn.kernels._sync import SYNC_SIZE


def _net(opt, dtype=np.float64, seed=0, sizes=(6, 16, 12, 3)):
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(fnn.FullyConnected(sizes[i], sizes[i + 1], dtype=dtype))
        if i < len(sizes) - 2:
            layers.append(fnn.TanH())
    return fnn.NeuralNetwork(layers, optimizer=opt, seed=seed)


def _data(n=70, d=6, classes=3, dtype=np.float64):
    rng = np.random.default_rng(1)
    return rng.standard_normal((n, d)).astype(dtype), rng.integers(0, classes, n), rng.random(n).astype(dtype) + 0.5


def _optimizers():
    alpha = fnn.SGD(lr=0.05)
    alpha._sklearn_alpha = 1e-3                  # scikit-learn's L2 penalty: the explicit-gradient step
    return {"adam": lambda: fnn.Adam(lr=0.01), "adamw": lambda: fnn.AdamW(lr=0.01, weight_decay=0.1),
            "momentum": lambda: fnn.SGD(lr=0.05, momentum=0.9, nesterov=True),
            "alpha": lambda: _with_alpha(fnn.SGD(lr=0.05)), "adam_alpha": lambda: _with_alpha(fnn.Adam(lr=0.01))}


def _with_alpha(opt):
    opt._sklearn_alpha = 1e-3
    return opt


def _records(net, X, y, batch, weights, order):
    runner = fused.EpochRunner(net, X, y, batch, sample_weights=weights)
    kind, records = runner.records(order, net.plan(), np.uint64(0))
    return runner, kind, records


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("name", sorted(_optimizers()))
def test_gradient_then_update_is_the_serial_epoch_bit_for_bit(name, weighted):
    """A driver that calls gradient_kernel then update_kernel per batch (as the distributed engine does
    around its allreduce) ends two epochs with the serial epoch's parameters, state, norms and loss."""
    X, y, w = _data()
    weights = w if weighted else None
    order = np.random.default_rng(2).permutation(len(X)).astype(np.int64)
    make = _optimizers()[name]
    serial, split = _net(make()), _net(make())
    batch = 16
    for epoch_index in range(2):
        runner, kind, (net_r, scratch_r, data_r, opt_r) = _records(serial, X, y, batch, weights, order)
        assert kind != step.OPT_SGD
        loss_sum, correct, steps, penalty_sum = epoch.variant(runner.loss_kind, kind)(net_r, scratch_r, data_r,
                                                                                      opt_r, 1)
        serial.optimizer.steps += steps
        serial_norms = scratch_r.norms.copy()

        runner, kind, (net_r, scratch_r, data_r, opt_r) = _records(split, X, y, batch, weights, order)
        gradient, update = epoch.gradient_kernel(runner.loss_kind), epoch.update_kernel(kind)
        scratch_r.norms[:] = 0
        total, penalties, right = 0.0, 0.0, 0
        for b, start in enumerate(range(0, len(X), batch)):
            nb = min(batch, len(X) - start)
            loss, c = gradient(net_r, scratch_r, data_r, start, nb, b, -1.0, 1)
            denom = float(nb)
            if weighted:
                denom = 0.0
                for i in range(nb):
                    denom += float(w[order[start + i]])
            layer, what, penalty = update(net_r, scratch_r, opt_r, nb, denom, opt_r.step0 + b + 1)
            assert what == -1
            total, penalties, right = total + loss * nb, penalties + penalty, right + c
        split.optimizer.steps += steps
        assert (total, penalties, right) == (loss_sum, penalty_sum, correct)
        np.testing.assert_array_equal(scratch_r.norms, serial_norms)
        np.testing.assert_array_equal(split._flat_params, serial._flat_params)
        for a, b in zip(split.optimizer.state or (), serial.optimizer.state or ()):
            for sa, sb in zip(a, b):
                np.testing.assert_array_equal(sa, sb)


def test_update_kernel_reports_a_non_finite_gradient_and_writes_nothing():
    X, y, _ = _data()
    net = _net(fnn.Adam(lr=0.01))
    runner, kind, (net_r, scratch_r, data_r, opt_r) = _records(net, X, y, 16, None, np.arange(len(X)))
    epoch.gradient_kernel(runner.loss_kind)(net_r, scratch_r, data_r, 0, 16, 0, -1.0, 1)
    before = net._flat_params.copy()
    scratch_r.grads[3] = np.nan
    layer, what, _ = epoch.update_kernel(kind)(net_r, scratch_r, opt_r, 16, 16.0, 1)
    assert (layer, what) == (0, step.FAIL_GRADIENT)
    np.testing.assert_array_equal(net._flat_params, before)


def test_hyperparameters_are_named_once():
    """kernel_spec's array is HYPER_FIELDS in order; the Optimizer record reads it by name."""
    kind, hyper = fnn.Adam(lr=0.01, beta1=0.8, beta2=0.99, eps=1e-7, weight_decay=0.2).kernel_spec()
    record = step.optimizer_record(hyper, np.empty(0), np.empty(0), 5)
    assert (record.lr, record.momentum, record.beta2, record.eps, record.weight_decay) == (0.01, 0.8, 0.99, 1e-7, 0.2)
    assert record.nesterov_or_decoupled == 0.0 and record.step0 == 5
    with pytest.raises(TypeError, match="unknown"):
        step.hyper_array(learning_rate=0.1)


def _parallel_epoch_on_one_thread(net, X, y, batch, T):
    """The batch-parallel kernel's epoch with T blocks per phase, every block run by this thread in order
    (what a thread that finds the others retired does): (the kernel's Team, status)."""
    runner = fused.EpochRunner(net, X, y, batch)
    kind, records = runner.records(np.arange(len(X), dtype=np.int64), net.plan(), np.uint64(0))
    team = runner._team(T)
    runner.status[:] = (0, -1, step.FAIL_LOSS)
    runner.norms[:] = 0
    sync = np.zeros(SYNC_SIZE, np.int64)
    epoch_parallel.variant(runner.loss_kind, kind)(0, T, sync, team, *records)
    return team, runner.status.copy()


@pytest.mark.parametrize("T", [2, 3])
def test_plain_sgd_bound_is_the_whole_layer_bound_whatever_the_block_order(T):
    """Plain SGD's running bound on max |W[k]| is measured while no block updates: with every block of a
    phase run in order by one thread — the schedule in which block 0's update lands before block 1 runs —
    every block holds the same bound (measured before the first update: the whole layer's, in the one
    phase inserted for it, as the running bounds start at inf). The weights are
    made tiny and the rate large, so that block 0's first update moves the layer's max |W| across powers
    of two: a block that measured the whole layer after it would hold a larger bound."""
    X, y, _ = _data(n=64)
    net = _net(fnn.SGD(lr=50.0), sizes=(6, 16, 3))
    for layer in net.layers:
        if isinstance(layer, fnn.FullyConnected):
            layer.weights[...] *= 1e-6
            layer.bias[...] = 1e-6
    initial = [np.abs(layer.params[0]).max() for layer in net.layers if isinstance(layer, fnn.FullyConnected)]
    team, status = _parallel_epoch_on_one_thread(net, X, y, 16, T)
    assert status[0] == 0, status
    for blk in range(1, T):
        np.testing.assert_array_equal(team.wbound[blk], team.wbound[0])
    assert (team.wbound[0] > np.array(initial)).all()
    assert team.schedule[0] % 2 ** 32 == 1     # the one measuring phase: the first batch's (bounds of inf)


def test_plain_sgd_inserts_a_measuring_phase_when_the_running_bound_fails(monkeypatch):
    """A rate that makes the running bound overflow the proof: the kernel inserts the measuring phase, the
    measured bound fails too, and the epoch stops before that batch's update with finite weights — the
    same weights as on real threads (results are a function of the seed and T)."""
    X, y, _ = _data(n=256)
    X *= 1e3

    def run(one_thread):
        net = _net(fnn.SGD(lr=1e30), dtype=np.float32, sizes=(6, 16, 3))
        X32 = X.astype(np.float32)
        if one_thread:
            team, status = _parallel_epoch_on_one_thread(net, X32, y, 16, 2)
            return net._flat_params.copy(), status, team
        monkeypatch.setattr(threads, "batch_parallel_threads", lambda widths, rows, samples: 2)
        with pytest.raises(fnn.TrainingDivergedError):
            net.fit(X32, y, epochs=1, batch_size=16, verbose=0, shuffle=False, fused=True)
        return net._flat_params.copy(), None, None

    params, status, team = run(True)
    assert status[0] > 0 and status[2] == step.FAIL_UPDATE and team.schedule[0] % 2 ** 32 >= 2
    assert np.isfinite(params).all()
    threaded, _, _ = run(False)
    np.testing.assert_array_equal(threaded, params)


# -- the input check: the drivers check the rows they gather --------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_input_bound_is_max_abs_exactly(dtype):
    """input_bound: max |x| exactly (the proof's max |A[0]| of a batch), inf for NaN or Inf; a range."""
    import numba
    check = numba.njit(lambda bits, lo, hi: step.input_bound(bits, lo, hi))

    def bound(x):
        return check(x.reshape(-1).view(np.int32 if x.dtype == np.float32 else np.int64), 0, x.size)
    rng = np.random.default_rng(3)
    info = np.finfo(dtype)
    for x in (rng.standard_normal((9, 5)) * 10.0 ** rng.integers(-30, 30, (9, 5)), np.zeros((2, 3)),
              np.full((1, 4), -info.max), np.full((3, 1), info.tiny), np.full((2, 2), info.smallest_subnormal)):
        x = x.astype(dtype)
        assert bound(x) == float(np.abs(x).max())
    assert bound(np.empty((0, 3), dtype)) == 0.0
    for bad in (np.nan, np.inf, -np.inf):
        x = np.ones((4, 4), dtype)
        x[2, 1] = bad
        assert bound(x) == np.inf
        assert check(x.reshape(-1).view(np.int32 if dtype == np.float32 else np.int64), 0, 9) == 1.0   # before it


@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_the_serial_epoch_stops_at_the_first_bad_row_before_its_batch_update(opt):
    """NaN/Inf in two rows of the third batch: the serial epoch takes the two batches before it and stops with
    FAIL_INPUT naming the first bad row in the batch's order; EpochRunner raises NonFiniteInput(row)."""
    from fastnn import _checks
    X, y, _ = _data(n=64)
    X[40, 2], X[37, 0] = np.inf, np.nan           # batch 3 is positions 32..47 of the order
    order = np.arange(64, dtype=np.int64)
    order[[37, 40]] = order[[40, 37]]             # row 40 comes first in the batch's order
    net = _net(fnn.SGD(lr=0.05) if opt == "sgd" else fnn.Adam(lr=0.01))
    runner = fused.EpochRunner(net, X, y, 16)
    kind, records = runner.records(order, net.plan(), np.uint64(0))
    before = net._flat_params.copy()
    totals = epoch.variant(runner.loss_kind, kind)(*records, 1)
    assert list(runner.status) == [3, 40, step.FAIL_INPUT] and totals[2] == 2      # two batches taken
    assert not np.array_equal(net._flat_params, before) and np.isfinite(net._flat_params).all()
    net2 = _net(fnn.SGD(lr=0.05) if opt == "sgd" else fnn.Adam(lr=0.01))
    with pytest.raises(_checks.NonFiniteInput) as info:
        fused.EpochRunner(net2, X, y, 16)(order, 1)
    assert info.value.row == 40


@pytest.mark.parametrize("T", [2, 3])
@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_the_batch_parallel_epoch_agrees_on_the_first_bad_row_whatever_the_block(T, opt):
    """Bad rows in two blocks of a batch (the later block's first in X's numbering): every block stops
    before the batch's update, and status names the first bad row in the batch's order."""
    X, y, _ = _data(n=64)
    X[45, 1], X[33, 4] = np.nan, -np.inf            # batch 3 (rows 32..47): row 33 in block 0, row 45 in the last
    order = np.arange(64, dtype=np.int64)
    order[[33, 45]] = order[[45, 33]]               # ... swapped: row 45 comes first, in block 0
    net = _net(fnn.SGD(lr=0.05) if opt == "sgd" else fnn.Adam(lr=0.01))
    runner = fused.EpochRunner(net, X, y, 16)
    kind, records = runner.records(order, net.plan(), np.uint64(0))
    team = runner._team(T)
    runner.status[:] = (0, -1, step.FAIL_LOSS)
    runner.norms[:] = 0
    epoch_parallel.variant(runner.loss_kind, kind)(0, T, np.zeros(SYNC_SIZE, np.int64), team, *records)
    assert list(runner.status) == [3, 45, step.FAIL_INPUT] and team.totals[2] == 2
    assert np.isfinite(net._flat_params).all()
