"""The batch-parallel fused kernel (kernels/epoch_parallel.py) against the serial one, and its threads.

The split is forced (``threads.batch_parallel_threads`` patched) so that small networks run it; T = 3
works although the machine may have 2 cores (the threads are fastnn's own, not Numba's pool).
Tolerances: both kernels compute the same sums of the same products, but a row block's GEMM, the
per-thread partial sums of the loss and the norms may round differently, so parameters after s steps
may differ by a few ulps per step: rtol = atol = 64 · s · eps of the dtype.
"""
import os
import signal
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import fastnn as fnn
from fastnn import threads
from tests.helpers import tol

ACTS = {"relu": fnn.ReLU, "sigmoid": fnn.Sigmoid, "tanh": fnn.TanH, "gelu": fnn.GELU, "softplus": fnn.Softplus,
        None: None}


def make_net(sizes, act, loss, opt, dtype, seed=0):
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(fnn.FullyConnected(a, b, dtype=dtype))
        if ACTS[act] is not None and i < len(sizes) - 2:
            layers.append(ACTS[act]())
    return fnn.NeuralNetwork(layers, loss=loss(), optimizer=opt(), seed=seed)


def data(n, sizes, dtype, kind, seed=1):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, sizes[0])).astype(dtype)
    if kind == "labels":
        y = rng.integers(0, sizes[-1], n)
    elif kind == "onehot":
        y = np.eye(sizes[-1], dtype=dtype)[rng.integers(0, sizes[-1], n)]
    else:
        y = rng.standard_normal((n, sizes[-1])).astype(dtype)
    return X, y

OPTIMIZERS = {"sgd": lambda: fnn.SGD(lr=0.05), "momentum": lambda: fnn.SGD(lr=0.05, momentum=0.9, nesterov=True,
                                                                          weight_decay=1e-3),
              "adam": lambda: fnn.Adam(lr=0.003, weight_decay=1e-3), "adamw": lambda: fnn.AdamW(lr=0.003)}


def _fit(T, monkeypatch, make, X, y, **fit_args):
    monkeypatch.setattr(threads, "batch_parallel_threads", lambda widths, rows, samples: T)
    net = make()
    hist = net.fit(X, y, verbose=0, fused=True, **fit_args)
    return net, hist


def _tol(dtype, steps):
    return 64 * steps * np.finfo(dtype).eps


def _assert_same_run(parallel, hT, serial, h1, rtol, steps):
    """The batch-parallel fit (network, history) equals the serial one to ``rtol``: parameters, losses,
    gradient norms (whose cancelling sums get 10x), the steps taken and the accuracy exactly."""
    np.testing.assert_allclose(parallel._flat_params, serial._flat_params, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(hT["loss"], h1["loss"], rtol=rtol)
    np.testing.assert_allclose(hT["grad_norm"], h1["grad_norm"], rtol=10 * rtol, atol=rtol)
    assert parallel.optimizer.steps == serial.optimizer.steps == steps
    if "accuracy" in h1:
        assert hT["accuracy"] == h1["accuracy"]


@pytest.mark.parametrize("T", [2, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
@pytest.mark.parametrize("act,kind,sizes", [
    ("relu", "labels", (7, 13, 5)), ("sigmoid", "onehot", (4, 9, 8, 3)), ("tanh", "regression", (3, 11, 2)),
    (None, "labels", (6, 4)), ("gelu", "labels", (2, 16, 16, 2)), ("softplus", "regression", (5, 2, 1))])
def test_parallel_equals_serial(T, dtype, opt, act, kind, sizes, monkeypatch):
    """Every head and optimizer; widths below T (a thread with no rows of W), a last batch of 5 rows
    (3 threads: blocks of 1, 2, 2)."""
    loss = fnn.L2Loss if kind == "regression" else fnn.SoftmaxCrossEntropy
    X, y = data(101, sizes, dtype, kind)
    make = lambda: make_net(sizes, act, loss, OPTIMIZERS[opt], dtype)     # noqa: E731
    serial, h1 = _fit(1, monkeypatch, make, X, y, epochs=3, batch_size=32)
    parallel, hT = _fit(T, monkeypatch, make, X, y, epochs=3, batch_size=32)
    _assert_same_run(parallel, hT, serial, h1, _tol(dtype, 12), steps=12)


@pytest.mark.parametrize("T", [2, 3])
def test_same_thread_count_is_bit_identical(T, monkeypatch):
    X, y = data(300, (12, 20, 4), np.float32, "labels")
    make = lambda: make_net((12, 20, 4), "relu", fnn.SoftmaxCrossEntropy, OPTIMIZERS["adam"], np.float32)  # noqa
    a, ha = _fit(T, monkeypatch, make, X, y, epochs=2, batch_size=50)
    b, hb = _fit(T, monkeypatch, make, X, y, epochs=2, batch_size=50)
    assert np.array_equal(a._flat_params, b._flat_params)
    assert ha["loss"] == hb["loss"]


@pytest.mark.parametrize("loss", ["sigmoid", "softmax"])
def test_sigmoid_head_sample_weights_and_dropout(loss, monkeypatch):
    """Sample weights (one batch whose weights sum to 0), scikit-learn's penalty and epsilon, Dropout."""
    rng = np.random.default_rng(3)
    X = rng.standard_normal((90, 6))
    if loss == "sigmoid":
        y, head = (rng.random((90, 3)) < 0.4).astype(np.float64), fnn.SigmoidCrossEntropy
    else:
        y, head = rng.integers(0, 3, 90), fnn.SoftmaxCrossEntropy
    w = rng.random(90)
    w[30:60] = 0                     # the second batch weighs nothing

    def make():
        opt = fnn.Adam(lr=0.01)
        opt._sklearn_alpha, opt._sklearn_eps = 1e-3, True
        return fnn.NeuralNetwork([fnn.FullyConnected(6, 10, dtype=np.float64), fnn.ReLU(), fnn.Dropout(0.3),
                                  fnn.FullyConnected(10, 3, dtype=np.float64)], loss=head(), optimizer=opt,
                                 seed=4)
    serial, h1 = _fit(1, monkeypatch, make, X, y, epochs=3, batch_size=30, sample_weight=w)
    parallel, h2 = _fit(2, monkeypatch, make, X, y, epochs=3, batch_size=30, sample_weight=w)
    tol = _tol(np.float64, 9)
    np.testing.assert_allclose(parallel._flat_params, serial._flat_params, rtol=tol, atol=tol)
    np.testing.assert_allclose(h2["loss"], h1["loss"], rtol=tol)


@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
def test_divergence_stops_at_the_same_batch_with_finite_weights(opt, monkeypatch):
    X, y = data(64, (5, 8, 3), np.float32, "labels")
    X *= 1e3
    make_opt = {"sgd": lambda: fnn.SGD(lr=1e30), "momentum": lambda: fnn.SGD(lr=1e30, momentum=0.5),
                "adam": lambda: fnn.Adam(lr=1e36), "adamw": lambda: fnn.AdamW(lr=1e36)}[opt]
    errors = []
    for T in (1, 2):
        monkeypatch.setattr(threads, "batch_parallel_threads", lambda widths, rows, samples: T)
        net = make_net((5, 8, 3), "relu", fnn.SoftmaxCrossEntropy, make_opt, np.float32)
        with pytest.raises(fnn.TrainingDivergedError) as info:
            net.fit(X, y, epochs=5, batch_size=16, verbose=0, fused=True)
        assert np.isfinite(net._flat_params).all()
        errors.append((info.value.epoch, info.value.batch, str(info.value)))
    assert errors[0] == errors[1]


def test_parallel_epoch_allocates_nothing_per_step():
    """Numba's allocation counter: a batch-parallel fit of 128 steps allocates as often as one of 8."""
    script = textwrap.dedent("""
        import numpy as np
        import fastnn as fnn
        from fastnn import threads
        from numba.core.runtime import rtsys
        threads.batch_parallel_threads = lambda widths, rows, samples: 2
        rng = np.random.default_rng(0)
        X = rng.standard_normal((4096, 20)).astype(np.float32)
        y = rng.integers(0, 3, 4096)
        for opt in (lambda: fnn.SGD(lr=0.01), lambda: fnn.SGD(lr=0.01, momentum=0.9), fnn.Adam):
            net = fnn.NeuralNetwork([fnn.FullyConnected(20, 32), fnn.GELU(), fnn.Dropout(0.2),
                                     fnn.FullyConnected(32, 3)], optimizer=opt(), seed=0)
            net.fit(X[:256], y[:256], epochs=1, batch_size=32, verbose=0, fused=True)
            counts = []
            for n in (256, 4096):
                before = rtsys.get_allocation_stats().alloc
                net.fit(X[:n], y[:n], epochs=1, batch_size=32, verbose=0, fused=True)
                counts.append(rtsys.get_allocation_stats().alloc - before)
            print(counts[0], counts[1])
    """)
    done = subprocess.run([sys.executable, "-c", script], env=dict(os.environ, NUMBA_NRT_STATS="1"),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    rows = [tuple(map(int, line.split())) for line in done.stdout.split("\n") if line.strip()]
    assert len(rows) == 3
    for short, long in rows:
        assert short == long, rows


def test_a_failing_thread_does_not_hang_the_others(monkeypatch):
    """A thread that claimed a block and raised before finishing it sets the abort flag: the others stop
    waiting for that block and the error reaches the caller (no hang: a subprocess with a timeout)."""
    script = textwrap.dedent("""
        import numpy as np
        import fastnn as fnn
        from fastnn import threads
        from fastnn.engines import fused
        from fastnn.kernels import epoch_parallel
        from fastnn.kernels._sync import CLAIMED, atomic_add
        from numba import njit
        claim = njit(lambda sync, slot, value: atomic_add(sync, slot, value))
        threads.batch_parallel_threads = lambda widths, rows, samples: 3
        real = epoch_parallel.variant

        def variant(*kind):
            kernel = real(*kind)

            def run(t, T, sync, *args):
                if t == 2:        # claim a block, then fail before finishing it
                    claim(sync, CLAIMED, 1)
                    raise MemoryError("thread 2 failed")
                return kernel(t, T, sync, *args)
            return run
        epoch_parallel.variant = variant
        rng = np.random.default_rng(0)
        X = rng.standard_normal((512, 8)).astype(np.float32)
        y = rng.integers(0, 3, 512)
        net = fnn.NeuralNetwork([fnn.FullyConnected(8, 16), fnn.ReLU(), fnn.FullyConnected(16, 3)], seed=0)
        before = net._flat_params.copy()
        try:
            net.fit(X, y, epochs=2, batch_size=32, verbose=0, fused=True)
        except MemoryError as exc:
            print("raised", exc)
        net.fit(X, y, epochs=1, batch_size=32, verbose=0, fused=False)   # the network is usable
        print("usable", np.isfinite(net._flat_params).all())
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "raised thread 2 failed" in done.stdout and "usable True" in done.stdout


def test_rule_splits_only_where_it_pays(monkeypatch):
    """The measured rule: rows, work per step and work per epoch per thread all above their minimum."""
    monkeypatch.setattr(threads, "get_num_threads", lambda: 4)
    mnist = [784, 256, 128, 10]
    assert threads.batch_parallel_threads([2, 16, 16, 2], 32, 1 << 20) == 1        # the tiny cell
    assert threads.batch_parallel_threads([64, 128, 10], 64, 1 << 19) == 1          # the small cell
    assert threads.batch_parallel_threads(mnist, 128, 1 << 16) == 4
    assert threads.batch_parallel_threads(mnist, 16, 1 << 16) == 2                  # 8 rows per thread at most
    assert threads.batch_parallel_threads([64, 128, 10], 200, 1797) == 1            # a short epoch (digits)
    monkeypatch.setattr(threads, "get_num_threads", lambda: 1)
    assert threads.batch_parallel_threads(mnist, 1024, 1 << 16) == 1


@pytest.fixture
def default_sigint():
    """Python's default SIGINT handler for the test (whatever the runner installed is restored after)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def _params(net):
    return [a.copy() for layer in net.layers if isinstance(layer, fnn.FullyConnected)
            for a in (layer.weights, layer.bias)]


@pytest.mark.parametrize("T", [1, 2, 3])
def test_a_burst_of_ctrl_c_leaves_no_thread_and_counts_every_step(T, monkeypatch, default_sigint):
    """Two SIGINTs while epoch 3's kernel runs — sent by a kernel thread (T > 1), so that the second one
    would land in the join or in the runner's ``finally``: fit raises KeyboardInterrupt after every thread
    has returned, no fastnn thread is left, and ``optimizer.steps`` counts exactly the steps in the weights
    and Adam's moments (the network equals one trained 3 epochs, bit for bit, and stays equal after one
    more epoch, which reads the moments and the step count)."""
    from fastnn.kernels import epoch as epoch_kernels
    from fastnn.kernels import epoch_parallel
    sizes = (6, 16, 3)
    X, y = data(300, sizes, np.float64, "labels")

    def make():
        return make_net(sizes, "relu", fnn.SoftmaxCrossEntropy, OPTIMIZERS["adam"], np.float64)

    def burst():
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(threads, "batch_parallel_threads", lambda widths, rows, samples: T)
    epochs = []
    if T > 1:
        real_variant = epoch_parallel.variant

        def variant(*kind):
            kernel = real_variant(*kind)
            epochs.append(1)

            def run(t, T_, *args):
                if t == T_ - 1 and len(epochs) == 3:
                    burst()
                return kernel(t, T_, *args)
            return run
        monkeypatch.setattr(epoch_parallel, "variant", variant)
    else:
        real_variant = epoch_kernels.variant

        def variant(*kind):
            kernel = real_variant(*kind)
            epochs.append(1)

            def run(*args):
                if len(epochs) == 3:
                    burst()
                return kernel(*args)
            return run
        monkeypatch.setattr(epoch_kernels, "variant", variant)
    net = make()
    with pytest.raises(KeyboardInterrupt):
        net.fit(X, y, epochs=50, batch_size=32, verbose=0, fused=True)
    assert [t.name for t in threading.enumerate() if t.name.startswith("fastnn-epoch")] == []
    assert len(epochs) == 3 and net.optimizer.steps == 3 * 10
    monkeypatch.undo()
    monkeypatch.setattr(threads, "batch_parallel_threads", lambda widths, rows, samples: T)
    ref = make()
    ref.fit(X, y, epochs=3, batch_size=32, verbose=0, fused=True)
    assert ref.optimizer.steps == net.optimizer.steps
    for a, b in zip(_params(net), _params(ref)):
        np.testing.assert_array_equal(a, b)
    for n in (net, ref):
        n.fit(X, y, epochs=1, batch_size=32, verbose=0, fused=True)
    for a, b in zip(_params(net), _params(ref)):
        np.testing.assert_array_equal(a, b)


# -- the per-layer gradient split (epoch_parallel.row_split): per-block partials from each block's own rows
# summed in block order, or parameter ranges over the whole batch; each forced on the same cells -----------
SPLITS = ["rows", "ranges"]


def _fit_split(split, T, monkeypatch, make, X, y, **fit_args):
    from fastnn.kernels import epoch_parallel
    monkeypatch.setattr(epoch_parallel, "SPLIT", split)
    return _fit(T, monkeypatch, make, X, y, **fit_args)


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("T", [2, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
@pytest.mark.parametrize("act,kind,sizes", [("relu", "labels", (7, 13, 5)), ("tanh", "regression", (3, 11, 2)),
                                            ("gelu", "labels", (2, 16, 16, 2))])
def test_each_split_equals_serial(split, T, dtype, opt, act, kind, sizes, monkeypatch):
    """Both splits against the serial kernel. Tolerance: a gradient entry is a sum of a batch's 32
    products, which the per-block partials add in another order (tol(dtype, 32) relative to the sum of
    the terms' magnitudes), and 12 steps carry it into the parameters: helpers.tol(dtype, 32 · 12)."""
    loss = fnn.L2Loss if kind == "regression" else fnn.SoftmaxCrossEntropy
    X, y = data(101, sizes, dtype, kind)
    make = lambda: make_net(sizes, act, loss, OPTIMIZERS[opt], dtype)     # noqa: E731
    serial, h1 = _fit_split(split, 1, monkeypatch, make, X, y, epochs=3, batch_size=32)
    parallel, hT = _fit_split(split, T, monkeypatch, make, X, y, epochs=3, batch_size=32)
    _assert_same_run(parallel, hT, serial, h1, tol(dtype, 32 * 12), steps=12)


@pytest.mark.parametrize("split", SPLITS + [None])
@pytest.mark.parametrize("opt", ["sgd", "adam"])
@pytest.mark.parametrize("T", [2, 3])
def test_each_split_is_bit_identical_at_the_same_thread_count(split, opt, T, monkeypatch):
    """Same seed and T -> the same bits, whatever the threads' timing (the partials are summed in block
    order); a last batch of 4 rows (T = 3: blocks of 1, 1, 2)."""
    sizes = (12, 20, 20, 4)
    X, y = data(304, sizes, np.float32, "labels")
    make = lambda: make_net(sizes, "relu", fnn.SoftmaxCrossEntropy, OPTIMIZERS[opt], np.float32)  # noqa: E731
    a, ha = _fit_split(split, T, monkeypatch, make, X, y, epochs=2, batch_size=50)
    b, hb = _fit_split(split, T, monkeypatch, make, X, y, epochs=2, batch_size=50)
    assert np.array_equal(a._flat_params, b._flat_params)
    assert ha["loss"] == hb["loss"] and ha["grad_norm"] == hb["grad_norm"]


@pytest.mark.parametrize("split", SPLITS)
def test_each_split_with_penalty_sample_weights_and_dropout(split, monkeypatch):
    """scikit-learn's penalty and epsilon, sample weights (one batch weighing nothing), Dropout."""
    rng = np.random.default_rng(3)
    X = rng.standard_normal((90, 6))
    y = rng.integers(0, 3, 90)
    w = rng.random(90)
    w[30:60] = 0

    def make():
        opt = fnn.Adam(lr=0.01)
        opt._sklearn_alpha, opt._sklearn_eps = 1e-3, True
        return fnn.NeuralNetwork([fnn.FullyConnected(6, 10, dtype=np.float64), fnn.ReLU(), fnn.Dropout(0.3),
                                  fnn.FullyConnected(10, 3, dtype=np.float64)], loss=fnn.SoftmaxCrossEntropy(),
                                 optimizer=opt, seed=4)
    serial, h1 = _fit_split(split, 1, monkeypatch, make, X, y, epochs=3, batch_size=30, sample_weight=w)
    parallel, h2 = _fit_split(split, 2, monkeypatch, make, X, y, epochs=3, batch_size=30, sample_weight=w)
    rtol = tol(np.float64, 30 * 9)
    np.testing.assert_allclose(parallel._flat_params, serial._flat_params, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(h2["loss"], h1["loss"], rtol=rtol)


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
def test_each_split_stops_divergence_and_bad_input_like_the_serial_kernel(split, opt, monkeypatch):
    """The same TrainingDivergedError (epoch, batch, layer, what) with finite weights, and a NaN row of X
    named as the serial kernel names it."""
    from fastnn.kernels import epoch_parallel
    monkeypatch.setattr(epoch_parallel, "SPLIT", split)
    X, y = data(64, (5, 8, 3), np.float32, "labels")
    X *= 1e3
    make_opt = {"sgd": lambda: fnn.SGD(lr=1e30), "momentum": lambda: fnn.SGD(lr=1e30, momentum=0.5),
                "adam": lambda: fnn.Adam(lr=1e36), "adamw": lambda: fnn.AdamW(lr=1e36)}[opt]
    errors, bad = [], []
    for T in (1, 2, 3):
        monkeypatch.setattr(threads, "batch_parallel_threads", lambda widths, rows, samples: T)
        net = make_net((5, 8, 3), "relu", fnn.SoftmaxCrossEntropy, make_opt, np.float32)
        with pytest.raises(fnn.TrainingDivergedError) as info:
            net.fit(X, y, epochs=5, batch_size=16, verbose=0, fused=True)
        assert np.isfinite(net._flat_params).all()
        errors.append((info.value.epoch, info.value.batch, str(info.value)))
        Xn = X / 1e3
        Xn[37, 2] = np.nan
        net = make_net((5, 8, 3), "relu", fnn.SoftmaxCrossEntropy, OPTIMIZERS[opt], np.float32)
        with pytest.raises(ValueError) as info:
            net.fit(Xn, y, epochs=1, batch_size=16, verbose=0, fused=True, shuffle=False)
        bad.append(str(info.value))
    assert errors[0] == errors[1] == errors[2]
    assert bad[0] == bad[1] == bad[2] and "37" in bad[0]


def test_split_rule():
    """in_k·out_k < rows·(in_k + out_k): narrow layers from per-block partials, wide ones by ranges."""
    from fastnn.kernels import epoch_parallel
    assert epoch_parallel.row_split([100, 100, 5], 200, 2) == [True, True]                 # tabular
    assert epoch_parallel.row_split([64, 128, 10], 64, 2) == [True, True]                  # small
    assert epoch_parallel.row_split([784, 256, 128, 10], 128, 2) == [False, True, True]    # mnist128
    assert epoch_parallel.row_split([784, 256, 128, 10], 1024, 2) == [True, True, True]   # mnist1024
    assert epoch_parallel.row_split([1024, 4096, 4096, 10], 512, 2) == [False, False, True]  # wide
    assert epoch_parallel.row_split([64, 128, 10], 64, 1) == [False, False]


def test_forced_split_reaches_the_kernel(monkeypatch):
    """SPLIT decides which layers get partial buffers (T, layer's parameters) in the Team; ranges: (T, 0)."""
    from fastnn.engines import fused
    from fastnn.kernels import epoch_parallel
    sizes = (7, 13, 5)
    X, y = data(64, sizes, np.float32, "labels")
    net = make_net(sizes, "relu", fnn.SoftmaxCrossEntropy, OPTIMIZERS["adam"], np.float32)
    runner = fused.EpochRunner(net, X, y, 32)
    for split, columns in (("rows", [8 * 13, 14 * 5]), ("ranges", [0, 0]), (None, [8 * 13, 14 * 5])):
        monkeypatch.setattr(epoch_parallel, "SPLIT", split)
        team = runner._team(3)
        assert [g.shape for g in team.gpart] == [(3, c) for c in columns]
        assert all(g.dtype == np.float32 for g in team.gpart)
        assert runner._team(3).gpart is team.gpart       # kept between epochs
    monkeypatch.setattr(epoch_parallel, "SPLIT", "columns")
    with pytest.raises(ValueError, match="SPLIT"):
        runner._team(2)
