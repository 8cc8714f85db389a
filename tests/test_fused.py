"""The fused whole-epoch path gives the numbers of the per-layer path (DESIGN §4)."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastnn as fnn
from fastnn.engines import fused

ACTS = {"relu": fnn.ReLU, "sigmoid": fnn.Sigmoid, "tanh": fnn.TanH, None: None,
        "leaky_relu": lambda: fnn.LeakyReLU(0.1), "elu": lambda: fnn.ELU(0.8), "silu": fnn.SiLU, "gelu": fnn.GELU,
        "gelu_tanh": lambda: fnn.GELU(approximate="tanh"), "softplus": fnn.Softplus, "identity": fnn.Identity,
        "mish": fnn.Mish}


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


OPTIMIZERS = {"sgd": lambda: fnn.SGD(lr=0.05), "momentum": lambda: fnn.SGD(lr=0.05, momentum=0.9),
              "adam": lambda: fnn.Adam(lr=0.003)}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
@pytest.mark.parametrize("act,kind,sizes", [
    ("relu", "labels", (7, 13, 5)), ("sigmoid", "onehot", (4, 9, 8, 3)), ("tanh", "regression", (3, 11, 2)),
    (None, "labels", (6, 4)), ("relu", "labels", (2, 16, 16, 2)),
    ("leaky_relu", "labels", (5, 9, 7, 3)), ("elu", "onehot", (4, 9, 8, 3)), ("silu", "regression", (3, 11, 2)),
    ("gelu", "labels", (7, 13, 5)), ("gelu_tanh", "regression", (3, 8, 6, 2)), ("softplus", "labels", (6, 10, 3)),
    ("identity", "onehot", (4, 7, 3)), ("mish", "labels", (6, 10, 3))])
def test_fused_equals_per_layer(dtype, opt, act, kind, sizes):
    loss = fnn.L2Loss if kind == "regression" else fnn.SoftmaxCrossEntropy
    X, y = data(101, sizes, dtype, kind)          # 101 = 3 batches of 32 and a last batch of 5
    results = []
    for use_fused in (False, True):
        net = make_net(sizes, act, loss, OPTIMIZERS[opt], dtype)
        assert fused.supports(net)[0]
        hist = net.fit(X, y, epochs=3, batch_size=32, verbose=0, fused=use_fused)
        results.append((net._flat_params.copy(), hist, net.optimizer.steps))
    (p0, h0, s0), (p1, h1, s1) = results
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(p1, p0, rtol=tol, atol=tol)
    np.testing.assert_allclose(h1["loss"], h0["loss"], rtol=tol)
    # the epoch's gradient norms are those of its last batch, on both paths
    np.testing.assert_allclose(np.asarray(h1["grad_norm"]), np.asarray(h0["grad_norm"]), rtol=10 * tol)
    assert len(h1["grad_norm"]) == 3
    assert s0 == s1 == 3 * 4
    if "accuracy" in h0:
        assert h0["accuracy"] == h1["accuracy"]
    if opt != "sgd":      # explicit gradients: the same kernels in the same order, bit for bit
        assert np.array_equal(p0, p1)


def sigmoid_targets(n, k, seed=2):
    """(n,) 0/1 labels for one output, (n, k) multilabel indicators (one soft row) for k."""
    rng = np.random.default_rng(seed)
    if k == 1:
        return rng.integers(0, 2, n)
    y = (rng.uniform(size=(n, k)) < 0.4).astype(np.float64)
    y[3] = rng.uniform(size=k)
    return y


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
@pytest.mark.parametrize("act,sizes", [("relu", (7, 13, 4)), ("tanh", (5, 9, 1))], ids=["multilabel", "binary"])
def test_fused_sigmoid_head_equals_per_layer(dtype, opt, act, sizes):
    X, _ = data(101, sizes, dtype, "regression")
    y = sigmoid_targets(101, sizes[-1])
    results = []
    for use_fused in (False, True):
        net = make_net(sizes, act, fnn.SigmoidCrossEntropy, OPTIMIZERS[opt], dtype)
        assert fused.supports(net)[0]
        hist = net.fit(X, y, epochs=3, batch_size=32, verbose=0, fused=use_fused)
        results.append((net._flat_params.copy(), hist))
    (p0, h0), (p1, h1) = results
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(p1, p0, rtol=tol, atol=tol)
    np.testing.assert_allclose(h1["loss"], h0["loss"], rtol=tol)
    assert h0["accuracy"] == h1["accuracy"]            # subset accuracy, counted by both paths alike
    if opt != "sgd":
        assert np.array_equal(p0, p1)


def _epochs(net, X, y, w, use_fused, epochs=3, batch_size=32):
    """fit with sample weights; [(loss, accuracy or None) per epoch]."""
    h = net.fit(X, y, epochs=epochs, batch_size=batch_size, verbose=0, fused=use_fused, sample_weight=w)
    return list(zip(h["loss"], h.get("accuracy", [None] * epochs)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
@pytest.mark.parametrize("loss,kind,sizes", [
    (fnn.SoftmaxCrossEntropy, "labels", (6, 10, 3)), (fnn.SoftmaxCrossEntropy, "onehot", (6, 10, 3)),
    (fnn.L2Loss, "regression", (6, 10, 2)), (fnn.SigmoidCrossEntropy, "multilabel", (6, 10, 3))])
def test_fused_sample_weights_equal_per_layer(dtype, opt, loss, kind, sizes):
    X, y = data(101, sizes, dtype, "regression" if kind == "multilabel" else kind)
    if kind == "multilabel":
        y = sigmoid_targets(101, sizes[-1])
    w = np.random.default_rng(9).uniform(0, 3, 101).astype(dtype)
    w[:40:3] = 0.0
    runs = {}
    for use_fused in (False, True):
        net = make_net(sizes, "relu", loss, OPTIMIZERS[opt], dtype)
        runs[use_fused] = (_epochs(net, X, y, w, use_fused), net._flat_params.copy())
    (l0, p0), (l1, p1) = runs[False], runs[True]
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(p1, p0, rtol=tol, atol=tol)
    np.testing.assert_allclose([x[0] for x in l1], [x[0] for x in l0], rtol=tol)
    assert [x[1] for x in l1] == [x[1] for x in l0]
    if opt != "sgd":
        assert np.array_equal(p0, p1)
    # and the weights matter: unweighted training ends elsewhere
    net = make_net(sizes, "relu", loss, OPTIMIZERS[opt], dtype)
    _epochs(net, X, y, None, True)
    assert not np.allclose(net._flat_params, p1, rtol=100 * tol, atol=100 * tol)


def test_fused_unit_weights_follow_the_unweighted_run():
    """Weights of one give the unweighted numbers (to rounding: Σw / n is not 1/n bit for bit)."""
    X, y = data(64, (5, 7, 3), np.float64, "labels")
    params = []
    for w in (None, np.ones(64)):
        net = make_net((5, 7, 3), "relu", fnn.SoftmaxCrossEntropy, OPTIMIZERS["adam"], np.float64)
        _epochs(net, X, y, w, True)
        params.append(net._flat_params.copy())
    np.testing.assert_allclose(params[1], params[0], rtol=1e-12, atol=1e-14)


def test_fused_path_is_chosen_only_for_covered_networks():
    covered = make_net((4, 5, 3), "relu", fnn.SoftmaxCrossEntropy, OPTIMIZERS["sgd"], np.float32)
    assert fused.supports(covered) == (True, "")
    for act in ACTS:                 # every activation, Identity included, once after each dense layer
        if act is not None:
            assert fused.supports(make_net((4, 5, 6, 3), act, fnn.L2Loss, OPTIMIZERS["sgd"], np.float32))[0]
    ok, reason = fused.supports(fnn.NeuralNetwork([fnn.FullyConnected(4, 3), fnn.Identity(), fnn.ReLU()]))
    assert not ok and "ReLU" in reason
    assert not fused.supports(fnn.NeuralNetwork([fnn.FullyConnected(4, 3), fnn.GELU(), fnn.GELU()]))[0]
    with_softmax = fnn.NeuralNetwork([fnn.FullyConnected(4, 3), fnn.SoftMax()], loss=fnn.CrossEntropyLoss())
    ok, reason = fused.supports(with_softmax)
    assert not ok and "SoftMax" in reason
    double_act = fnn.NeuralNetwork([fnn.FullyConnected(4, 3), fnn.ReLU(), fnn.TanH()])
    assert not fused.supports(double_act)[0]
    sigmoid = make_net((4, 5, 3), "relu", fnn.SigmoidCrossEntropy, OPTIMIZERS["sgd"], np.float32)
    assert fused.supports(sigmoid) == (True, "")

    class OwnLoss(fnn.SoftmaxCrossEntropy):      # the kernel cannot know what a subclass overrides
        pass
    ok, reason = fused.supports(fnn.NeuralNetwork([fnn.FullyConnected(4, 3)], loss=OwnLoss()))
    assert not ok and "OwnLoss" in reason
    X, y = data(10, (4, 3), np.float32, "labels")
    with pytest.raises(ValueError, match="fused=True"):
        with_softmax.fit(X, y, epochs=1, verbose=0, fused=True)


@pytest.mark.parametrize("use_fused", [False, True])
@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
def test_divergence_keeps_last_finite_weights(use_fused, opt):
    X, y = data(64, (5, 8, 3), np.float32, "labels")
    X *= 1e3
    make = {"sgd": lambda: fnn.SGD(lr=1e30), "momentum": lambda: fnn.SGD(lr=1e30, momentum=0.5),
            "adam": lambda: fnn.Adam(lr=1e36)}[opt]
    net = make_net((5, 8, 3), "relu", fnn.SoftmaxCrossEntropy, make, np.float32)
    with pytest.raises(fnn.TrainingDivergedError, match=r"epoch \d+, batch \d+") as info:
        net.fit(X, y, epochs=5, batch_size=16, verbose=0, fused=use_fused)
    assert info.value.epoch >= 1 and info.value.batch >= 1
    assert np.isfinite(net._flat_params).all()
    assert "smaller learning rate" in str(info.value)


_ALLOCATIONS = """
import numpy as np
import fastnn as fnn
from numba.core.runtime import rtsys
rng = np.random.default_rng(0)
X = rng.standard_normal((4096, 20)).astype(np.float32)
y = rng.integers(0, 3, 4096)
for opt, act in ((lambda: fnn.SGD(lr=0.01), fnn.ReLU), (lambda: fnn.SGD(lr=0.01, momentum=0.9), fnn.ReLU),
                 (lambda: fnn.Adam(), fnn.ReLU), (lambda: fnn.SGD(lr=0.01), fnn.GELU), (lambda: fnn.Adam(), fnn.SiLU),
                 (lambda: fnn.SGD(lr=0.01), "dropout"), (lambda: fnn.Adam(), "dropout")):
    hidden = [fnn.Sigmoid(), fnn.Dropout(0.3)] if act == "dropout" else [act()]
    net = fnn.NeuralNetwork([fnn.FullyConnected(20, 32), *hidden, fnn.FullyConnected(32, 3)],
                            optimizer=opt(), seed=0)
    net.fit(X[:256], y[:256], epochs=1, batch_size=32, verbose=0, fused=True)
    counts = []
    for n in (256, 4096):          # 8 and 128 steps
        before = rtsys.get_allocation_stats().alloc
        net.fit(X[:n], y[:n], epochs=1, batch_size=32, verbose=0, fused=True)
        counts.append(rtsys.get_allocation_stats().alloc - before)
    print(counts[0], counts[1])
"""


def test_fused_epoch_allocates_nothing_per_step():
    """Numba's own allocation counter: a fit of 128 steps allocates exactly as often as one of 8 (the
    per-fit set-up only), for every optimizer, with an activation that keeps its pre-activation, and with
    Dropout (its masks are hashed, not stored).
    (GEMM arguments once cost three arrays per call.)"""
    import os
    import subprocess
    import sys
    env = dict(os.environ, NUMBA_NRT_STATS="1")
    done = subprocess.run([sys.executable, "-c", _ALLOCATIONS], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    rows = [tuple(map(int, line.split())) for line in done.stdout.split("\n") if line.strip()]
    assert len(rows) == 7
    for short, long in rows:
        assert short > 0 and short == long, rows


def test_compile_pending_says_when_the_kernel_is_not_compiled_yet(tmp_path):
    """A process with an empty Numba cache: the line names dtype, loss and optimizer, and compiles nothing
    (the kernel's dispatcher still has no signature); after a fit (compiled) it is None."""
    script = textwrap.dedent("""
        import numpy as np
        import fastnn as fnn
        from fastnn.engines import fused
        from fastnn.kernels import epoch
        rng = np.random.default_rng(0)
        X, y = rng.standard_normal((64, 5)), rng.integers(0, 3, 64)
        net = fnn.NeuralNetwork([fnn.FullyConnected(5, 8, dtype=np.float64), fnn.TanH(),
                                 fnn.FullyConnected(8, 3, dtype=np.float64)], optimizer=fnn.SGD(lr=0.1), seed=0)
        runner = fused.EpochRunner(net, X, y, 16)
        print(runner.compile_pending())
        print(sum(len(k.signatures) for k in epoch._VARIANTS.values()))
        net.fit(X, y, epochs=1, batch_size=16, verbose=0, fused=True)
        print(runner.compile_pending())
    """)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    first, signatures, after = done.stdout.strip().split("\n")
    assert first.startswith("fastnn: compiling the fused kernel for float64 / softmax-CE labels / SGD")
    assert signatures == "0" and after == "None"
