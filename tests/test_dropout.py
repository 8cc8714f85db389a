"""fnn.Dropout(p): inverted dropout while training, identity at inference, masks a pure function of
(fit's shuffling stream at the epoch's start, epoch, batch, row, unit) — the same in both engines, on
resume and on any thread count (kernels/dropout.py)."""
import math
import os
import signal
import sys

import numpy as np
import pytest

import fastnn as fnn
from fastnn import io
from fastnn.engines import fused
from fastnn.kernels import dropout as drop_kernels
from fastnn.layers import LAYER_TYPES, dropout_epoch_key

OPTIMIZERS = {"sgd": lambda: fnn.SGD(lr=0.05), "momentum": lambda: fnn.SGD(lr=0.05, momentum=0.9),
              "adam": lambda: fnn.Adam(lr=0.01)}


def make_net(p=0.3, opt="adam", dtype=np.float32, act=fnn.Sigmoid, seed=0, drop=True):
    layers = [fnn.FullyConnected(6, 16, dtype=dtype), act()]
    layers += [fnn.Dropout(p)] if drop else []
    layers += [fnn.FullyConnected(16, 8, dtype=dtype)]
    layers += [fnn.Dropout(p)] if drop else []
    layers += [fnn.FullyConnected(8, 3, dtype=dtype)]
    return fnn.NeuralNetwork(layers, optimizer=OPTIMIZERS[opt](), seed=seed)


def make_data(n=150, dtype=np.float32, seed=1):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 6)).astype(dtype), rng.integers(0, 3, n)


# -- the layer ----------------------------------------------------------------------------------------
def test_p_is_validated_fixed_and_configured():
    for bad in (-0.1, 1.0, 1.5, float("nan")):
        with pytest.raises(ValueError, match="p"):
            fnn.Dropout(bad)
    with pytest.raises(TypeError, match="p"):
        fnn.Dropout("0.5")
    d = fnn.Dropout(0.25)
    assert d.p == 0.25 and d.config() == {"p": 0.25} and fnn.Dropout().p == 0.5
    with pytest.raises(AttributeError, match="fixed"):
        d.p = 0.1
    assert LAYER_TYPES["Dropout"] is fnn.Dropout and "Dropout" in fnn.__all__
    for key in ((1, 2), (-1, 0, 0), (2 ** 64, 0, 0), (0, 1.5, 0), [0, 0, 0], (0, True, 0)):
        with pytest.raises(ValueError, match="key"):
            d.forward(np.ones((2, 3)), key=key)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_kept_fraction_and_exact_scale(dtype, p):
    x = np.random.default_rng(0).uniform(0.5, 2.0, (200, 500)).astype(dtype)
    out = fnn.Dropout(p).forward(x, key=(12345, 3, 0)).copy()
    kept = out != 0
    n = kept.size
    # binomial: within 6 standard deviations of n(1-p)
    assert abs(kept.sum() - n * (1 - p)) < 6 * math.sqrt(n * p * (1 - p))
    np.testing.assert_array_equal(out[kept], x[kept] * dtype(1.0 / (1.0 - p)))
    # another batch, row offset or epoch key: another mask; the same key: the same mask
    d = fnn.Dropout(p)
    assert np.array_equal(d.forward(x, key=(12345, 3, 0)) != 0, kept)
    for other in ((12345, 4, 0), (12345, 3, 1), (54321, 3, 0)):
        assert not np.array_equal(d.forward(x, key=other) != 0, kept)
    # rows offset by r in a larger batch are the rows r.. of the batch (the distributed engine's shards)
    np.testing.assert_array_equal(d.forward(x[7:], key=(12345, 3, 7)), out[7:])


def test_backward_applies_the_forward_mask():
    x = np.random.default_rng(1).standard_normal((30, 40))
    d = fnn.Dropout(0.4)
    out = d.forward(x, key=(9, 0, 0)).copy()
    dy = np.random.default_rng(2).standard_normal(x.shape)
    dx = d.backward(dy)
    np.testing.assert_array_equal(dx, np.where(out != 0, dy * (1 / 0.6), 0.0))
    # unkeyed in eval mode: the identity both ways
    assert d.eval() is d and not d.training
    np.testing.assert_array_equal(d.forward(x), x)
    np.testing.assert_array_equal(d.backward(dy), dy)


def test_standalone_forward_drops_in_training_mode_with_a_seeded_mask():
    """torch's habit (issue 21 item 6): a new Dropout is in training mode; forward(x) drops with masks from
    the layer's seed, backward applies the same mask; eval() makes it the identity, train() drops again."""
    x = np.random.default_rng(1).standard_normal((200, 50))
    a, b = fnn.Dropout(0.25, seed=3), fnn.Dropout(0.25, seed=3)
    assert a.training
    out = a.forward(x).copy()
    np.testing.assert_array_equal(out, b.forward(x))          # same seed: same masks
    kept = out != 0
    assert 0.65 < kept.mean() < 0.85                           # 10,000 draws of p=0.75: 0.75 ± 0.01
    np.testing.assert_array_equal(out[kept], (x * (1 / 0.75))[kept])
    dy = np.ones_like(x)
    np.testing.assert_array_equal(a.backward(dy) != 0, kept)
    assert not np.array_equal(a.forward(x) != 0, kept)         # a fresh mask per call
    np.testing.assert_array_equal(a.eval().forward(x), x)
    assert not np.array_equal(a.train().forward(x), x)
    assert fnn.Dropout(0.25, seed=3).config() == {"p": 0.25, "seed": 3}
    for bad in (-1, 1.5, "x", True):
        with pytest.raises((TypeError, ValueError), match="seed"):
            fnn.Dropout(0.2, seed=bad)


def test_network_modes_are_torchs_and_fit_predict_keep_their_semantics():
    X, y = make_data()
    net = make_net(p=0.5)
    assert net.training and net.eval() is net and not net.training
    assert not any(layer.training for layer in net.layers)
    # eval mode: forward(x, y) does not drop, so it equals evaluate's loss
    assert np.isclose(net.forward(X, y), net.evaluate(X, y)["loss"], rtol=1e-5)
    net.train()
    assert net.forward(X, y) != net.evaluate(X, y)["loss"]
    net.layers[1].eval()            # one layer's mode: restored after fit and predict
    before = [layer.training for layer in net.layers]
    net.fit(X, y, epochs=1, batch_size=16, verbose=0)
    net.predict(X)
    assert [layer.training for layer in net.layers] == before
    with pytest.raises(TypeError, match="mode"):
        net.train("yes")
    with pytest.raises(TypeError, match="training"):
        net.layers[0].training = None


def test_p_zero_is_the_identity_in_training():
    X, y = make_data()
    for use_fused in (True, False):
        a, b = make_net(p=0.0), make_net(drop=False)
        ha = a.fit(X, y, epochs=3, batch_size=16, verbose=0, fused=use_fused)
        hb = b.fit(X, y, epochs=3, batch_size=16, verbose=0, fused=use_fused)
        assert np.array_equal(a.plan().params, b.plan().params) and ha["loss"] == hb["loss"]


def test_predict_evaluate_forward_ignore_dropout():
    X, y = make_data()
    net = make_net(p=0.5)
    net.fit(X, y, epochs=2, batch_size=16, verbose=0)
    plain = make_net(drop=False)
    plain.plan().params[...] = net.plan().params
    np.testing.assert_array_equal(net.predict_proba(X), net.predict_proba(X))
    np.testing.assert_array_equal(net.predict_proba(X), plain.predict_proba(X))
    np.testing.assert_array_equal(net.forward(X), plain.forward(X))
    assert net.evaluate(X, y) == plain.evaluate(X, y)


def test_manual_forward_backward_uses_a_fixed_mask():
    X, y = make_data(20, np.float64)
    net = make_net(p=0.5, dtype=np.float64)
    l1 = net.forward(X, y)
    net.backward()
    g1 = net.plan().grads.copy()
    assert net.forward(X, y) == l1            # the same documented key every call
    net.backward()
    np.testing.assert_array_equal(net.plan().grads, g1)
    assert l1 != make_net(p=0.0, dtype=np.float64).forward(X, y)     # and it does drop


@pytest.mark.parametrize("act", [fnn.Sigmoid, fnn.ReLU, fnn.GELU, fnn.TanH])
def test_gradcheck_with_dropout(act):
    X, y = make_data(12, np.float64)
    net = make_net(p=0.4, dtype=np.float64, act=act)
    report = fnn.gradcheck(net, X, y)
    assert any(k.startswith("fused") for k in report)
    assert report.passed(1e-6), str(report)


# -- engines --------------------------------------------------------------------------------------------
def test_fused_supports_dropout_between_dense_layers_only():
    assert fused.supports(make_net())[0]
    ok = fnn.NeuralNetwork([fnn.FullyConnected(6, 4), fnn.Dropout(0.2), fnn.FullyConnected(4, 3)])
    assert fused.supports(ok)[0]
    for layers in ([fnn.FullyConnected(6, 3), fnn.Dropout(0.2)],
                   [fnn.FullyConnected(6, 4), fnn.Dropout(0.2), fnn.Dropout(0.2), fnn.FullyConnected(4, 3)],
                   [fnn.FullyConnected(6, 4), fnn.Dropout(0.2), fnn.ReLU(), fnn.FullyConnected(4, 3)],
                   [fnn.Dropout(0.2), fnn.FullyConnected(6, 3)]):
        net = fnn.NeuralNetwork(layers)
        assert not fused.supports(net)[0]
        X, y = make_data()
        net.fit(X, y, epochs=1, verbose=0)           # the per-layer path trains it ("auto")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("act", [fnn.Sigmoid, fnn.ReLU, fnn.GELU])
@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
def test_fused_equals_per_layer(opt, act, dtype):
    X, y = make_data(150, dtype)
    a, b = make_net(opt=opt, act=act, dtype=dtype), make_net(opt=opt, act=act, dtype=dtype)
    ha = a.fit(X, y, epochs=3, batch_size=16, verbose=0, fused=True)
    hb = b.fit(X, y, epochs=3, batch_size=16, verbose=0, fused=False)
    if opt == "sgd":      # the in-GEMM update rounds differently (as for the other layers)
        tol = 200 * np.finfo(dtype).eps
        np.testing.assert_allclose(a.plan().params, b.plan().params, rtol=tol, atol=tol)
    else:
        assert np.array_equal(a.plan().params, b.plan().params)
        assert ha["loss"] == hb["loss"]


def test_dropout_changes_training_and_masks_change_per_epoch():
    X, y = make_data()
    a, b = make_net(p=0.3), make_net(drop=False)
    a.fit(X, y, epochs=1, batch_size=16, verbose=0)
    b.fit(X, y, epochs=1, batch_size=16, verbose=0)
    assert not np.array_equal(a.plan().params, b.plan().params)
    stream = np.random.default_rng(0)
    assert dropout_epoch_key(stream) != dropout_epoch_key(stream)


@pytest.mark.parametrize("use_fused", [True, False])
@pytest.mark.parametrize("shuffle", [True, False])
def test_k_fits_of_one_epoch_equal_one_fit_of_k_epochs(use_fused, shuffle):
    """Each epoch's masks come from the shuffling stream, which continues from fit to fit: fit(epochs=1) three
    times trains what fit(epochs=3) does, bit for bit, history included (the epoch number, which restarts at
    every call, is not in the key). With shuffle=False the old key (stream state, epoch number) repeated the
    first call's masks in every later call."""
    X, y = make_data()
    one, many = make_net(p=0.3), make_net(p=0.3)
    losses = [one.fit(X, y, epochs=1, batch_size=16, verbose=0, shuffle=shuffle, fused=use_fused)["loss"][0]
              for _ in range(3)]
    history = many.fit(X, y, epochs=3, batch_size=16, verbose=0, shuffle=shuffle, fused=use_fused)
    assert np.array_equal(one.plan().params, many.plan().params)
    assert losses == history["loss"]


@pytest.mark.parametrize("use_fused", [True, False])
def test_same_seed_is_bit_identical_and_another_seed_differs(use_fused):
    X, y = make_data()
    runs = []
    for seed in (7, 7, 8):
        net = make_net()
        net.fit(X, y, epochs=2, batch_size=16, verbose=0, seed=seed, fused=use_fused)
        runs.append(net.plan().params.copy())
    assert np.array_equal(runs[0], runs[1]) and not np.array_equal(runs[0], runs[2])


@pytest.mark.parametrize("use_fused", [True, False])
@pytest.mark.parametrize("shuffle, seed", [(True, 0), (False, 0), (True, None)])
def test_resume_from_checkpoint_is_bit_identical(tmp_path, use_fused, shuffle, seed):
    X, y = make_data()
    kwargs = dict(batch_size=16, verbose=0, fused=use_fused, shuffle=shuffle, seed=seed)
    path = tmp_path / "run.ckpt"
    first = make_net()
    first.fit(X, y, epochs=2, checkpoint=path, **kwargs)
    resumed = make_net()
    h = resumed.fit(X, y, epochs=5, checkpoint=path, **kwargs)
    assert len(h["loss"]) == 5
    if seed is not None:
        ref = make_net()
        h_ref = ref.fit(X, y, epochs=5, **kwargs)
        assert np.array_equal(ref.plan().params, resumed.plan().params)
        assert h["loss"] == h_ref["loss"]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_mid_epoch_resume_is_bit_identical(tmp_path):
    """Ctrl-C in the middle of an epoch of the per-layer path; resuming finishes as the uninterrupted run."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        X, y = make_data(100)
        ref = make_net()
        h_ref = ref.fit(X, y, epochs=3, batch_size=10, verbose=0, fused=False)
        net = make_net()
        forward, count = net.loss._forward, [0]

        def wrapped(*args):
            count[0] += 1
            if count[0] == 14:          # epoch 2, batch 4
                os.kill(os.getpid(), signal.SIGINT)
            return forward(*args)
        net.loss._forward = wrapped
        path = tmp_path / "c.ckpt"
        with pytest.raises(fnn.errors.TrainingInterrupted):
            net.fit(X, y, epochs=3, batch_size=10, verbose=0, fused=False, checkpoint=path)
        resumed = make_net()
        h = resumed.fit(X, y, epochs=3, batch_size=10, verbose=0, fused=False, checkpoint=path)
        assert np.array_equal(resumed.plan().params, ref.plan().params)
        assert h["loss"] == h_ref["loss"]
    finally:
        signal.signal(signal.SIGINT, previous)


def test_save_load_round_trip(tmp_path):
    X, y = make_data()
    net = make_net(p=0.35)
    net.fit(X, y, epochs=1, batch_size=16, verbose=0)
    path = tmp_path / "m.safetensors"
    net.save(path)
    back = fnn.load(path)
    assert [type(layer) for layer in back.layers] == [type(layer) for layer in net.layers]
    assert back.layers[2].p == 0.35 and back.layers[4].p == 0.35
    np.testing.assert_array_equal(back.predict_proba(X), net.predict_proba(X))
    # training continues identically after loading
    net.fit(X, y, epochs=1, batch_size=16, verbose=0)
    back.fit(X, y, epochs=1, batch_size=16, verbose=0)
    assert np.array_equal(net.plan().params, back.plan().params)


def test_kernel_threshold():
    assert drop_kernels.threshold(0.0) == 0
    assert drop_kernels.threshold(0.5) == 2 ** 52


def test_masks_do_not_depend_on_the_thread_count():
    X, y = make_data(300)
    import numba
    runs, previous = [], numba.get_num_threads()
    try:
        for n in sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)}):
            fnn.set_num_threads(n)
            for use_fused in (True, False):
                net = make_net(opt="momentum")
                net.fit(X, y, epochs=2, batch_size=64, verbose=0, fused=use_fused)
                runs.append(net.plan().params.copy())
    finally:
        fnn.set_num_threads(previous)
    assert all(np.array_equal(runs[0], r) for r in runs[1:])
