"""SGD, SGD with momentum and Adam over several steps against the torch formulas in tests/reference.py,
through the optimizer API and through a network; step for step against torch.optim when torch is there."""
import numpy as np
import pytest

import fastnn as fnn
from tests import reference as ref

RTOL = {np.float32: 1e-5, np.float64: 1e-12}
SHAPES = [(3, 4), (4,), (1, 1), (7, 13)]
STEPS = 6


def make(dtype, seed=0):
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    grads_seq = [[rng.standard_normal(s).astype(dtype) for s in SHAPES] for _ in range(STEPS)]
    return params, grads_seq


def check(got, expected, dtype, lr=0.0):
    r = RTOL[dtype]
    for a, e in zip(got, expected):
        assert a.dtype == dtype
        np.testing.assert_allclose(a, e, rtol=r, atol=r * (np.abs(e).max() + lr))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("lr", [0.01, 0.3])
def test_sgd_steps(dtype, lr):
    params, grads_seq = make(dtype)
    expected = [p.astype(np.float64) for p in params]
    opt = fnn.SGD(lr=lr)
    for grads in grads_seq:
        opt.step(params, grads)
        expected = [ref.sgd(p, g, lr) for p, g in zip(expected, grads)]
        check(params, expected, dtype)
    assert opt.steps == STEPS


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("momentum", [0.5, 0.9])
def test_sgd_momentum_steps(dtype, momentum):
    params, grads_seq = make(dtype, 1)
    expected = [p.astype(np.float64) for p in params]
    velocity = [np.zeros_like(p) for p in expected]
    opt = fnn.SGD(lr=0.05, momentum=momentum)
    for grads in grads_seq:
        opt.step(params, grads)
        out = [ref.sgd_momentum(p, g, v, 0.05, momentum) for p, g, v in zip(expected, grads, velocity)]
        expected, velocity = [o[0] for o in out], [o[1] for o in out]
        check(params, expected, dtype)
    # momentum really differs from plain SGD after the first step
    plain = [p.astype(np.float64) for p in make(dtype, 1)[0]]
    for grads in grads_seq:
        plain = [ref.sgd(p, g, 0.05) for p, g in zip(plain, grads)]
    assert not np.allclose(plain[0], params[0], rtol=1e-3)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("hyper", [dict(lr=0.001), dict(lr=0.05, beta1=0.8, beta2=0.99, eps=1e-6)])
def test_adam_steps(dtype, hyper):
    params, grads_seq = make(dtype, 2)
    h = dict(lr=0.001, beta1=0.9, beta2=0.999, eps=1e-8)
    h.update(hyper)
    expected = [p.astype(np.float64) for p in params]
    m = [np.zeros_like(p) for p in expected]
    v = [np.zeros_like(p) for p in expected]
    opt = fnn.Adam(**hyper)
    for t, grads in enumerate(grads_seq, start=1):
        opt.step(params, grads)
        out = [ref.adam(p, g, mi, vi, h["lr"], h["beta1"], h["beta2"], h["eps"], t)
               for p, g, mi, vi in zip(expected, grads, m, v)]
        expected, m, v = [o[0] for o in out], [o[1] for o in out], [o[2] for o in out]
        check(params, expected, dtype, h["lr"])


def test_adam_first_step_moves_each_parameter_by_lr():
    """With bias correction, step 1 is p -= lr · g / (|g| + eps'), i.e. lr · sign(g)."""
    p = np.zeros(5)
    g = np.array([3.0, -0.2, 1e-3, -50.0, 7.0])
    fnn.Adam(lr=0.01).step([p], [g])
    np.testing.assert_allclose(p, -0.01 * np.sign(g), rtol=1e-4)


def test_optimizer_reset_forgets_state():
    p, g = np.zeros(3), np.ones(3)
    opt = fnn.SGD(lr=0.1, momentum=0.9)
    opt.step([p], [g])
    opt.step([p], [g])                  # v = 1.9 -> p = -0.1 - 0.19
    np.testing.assert_allclose(p, -0.29)
    opt.reset()
    assert opt.steps == 0
    q = np.zeros(3)
    opt.step([q], [g])                  # fresh velocity: q = -0.1
    np.testing.assert_allclose(q, -0.1)


@pytest.mark.parametrize("opt_name", ["sgd", "momentum", "adam"])
def test_network_step_matches_reference(opt_name):
    """forward/backward/step on a network (one flat parameter buffer) against NumPy backprop + the
    reference update, over several steps with different batches."""
    opt = {"sgd": fnn.SGD(lr=0.1), "momentum": fnn.SGD(lr=0.1, momentum=0.9), "adam": fnn.Adam(lr=0.01)}[opt_name]
    net = fnn.NeuralNetwork([fnn.FullyConnected(4, 6, dtype=np.float64), fnn.Sigmoid(),
                             fnn.FullyConnected(6, 3, dtype=np.float64)], optimizer=opt, seed=0)
    names = ["sigmoid", "identity"]
    ws = [net.layers[0].weights.copy(), net.layers[2].weights.copy()]
    bs = [net.layers[0].bias.copy(), net.layers[2].bias.copy()]
    state = [[np.zeros_like(a) for a in ws + bs] for _ in range(2)]
    rng = np.random.default_rng(3)
    for t in range(1, 5):
        n = 5 if t % 2 else 2
        x, y = rng.standard_normal((n, 4)), rng.integers(0, 3, n)
        net.forward(x, y)
        net.backward()
        net.step()
        acts = ref.mlp_forward(x, ws, bs, names)
        _, dout = ref.softmax_ce_labels(acts[-1], y)
        dws, dbs, _ = ref.mlp_backward(acts, ws, names, dout)
        params, grads = ws + bs, dws + dbs
        for i, (p, g) in enumerate(zip(params, grads)):
            if opt_name == "sgd":
                params[i] = ref.sgd(p, g, 0.1)
            elif opt_name == "momentum":
                params[i], state[0][i] = ref.sgd_momentum(p, g, state[0][i], 0.1, 0.9)
            else:
                params[i], state[0][i], state[1][i] = ref.adam(p, g, state[0][i], state[1][i],
                                                               0.01, 0.9, 0.999, 1e-8, t)
        ws, bs = params[:2], params[2:]
        for k, i in enumerate((0, 2)):
            np.testing.assert_allclose(net.layers[i].weights, ws[k], rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(net.layers[i].bias, bs[k], rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------------------------------------------ torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["sgd", "momentum", "adam", "adam-custom"])
def test_step_for_step_equal_to_torch(dtype, kind):
    torch = pytest.importorskip("torch", reason="torch is not installed: the comparison with torch.optim "
                                               "is skipped (the NumPy reference tests still run)")
    params, grads_seq = make(dtype, 4)
    tparams = [torch.tensor(p.copy(), requires_grad=True) for p in params]
    if kind == "sgd":
        ours, theirs = fnn.SGD(lr=0.1), torch.optim.SGD(tparams, lr=0.1)
    elif kind == "momentum":
        ours, theirs = fnn.SGD(lr=0.1, momentum=0.9), torch.optim.SGD(tparams, lr=0.1, momentum=0.9)
    elif kind == "adam":
        ours, theirs = fnn.Adam(), torch.optim.Adam(tparams, foreach=False)
    else:
        ours = fnn.Adam(lr=0.05, beta1=0.8, beta2=0.99, eps=1e-6)
        theirs = torch.optim.Adam(tparams, lr=0.05, betas=(0.8, 0.99), eps=1e-6, foreach=False)
    r = RTOL[dtype]
    for grads in grads_seq:
        ours.step(params, grads)
        for tp, g in zip(tparams, grads):
            tp.grad = torch.tensor(g.copy())
        theirs.step()
        for p, tp in zip(params, tparams):
            expected = tp.detach().numpy()
            np.testing.assert_allclose(p, expected, rtol=r, atol=r * (np.abs(expected).max() + 0.1))


# -- U6: a rate the network's dtype cannot represent is refused by fit and step -----------------------------
@pytest.mark.parametrize("make", [lambda: fnn.SGD(lr=1e39), lambda: fnn.Adam(lr=1e39), lambda: fnn.AdamW(lr=1e-46),
                                  lambda: fnn.SGD(lr=1e-50, momentum=0.9)])
@pytest.mark.parametrize("fused", ["auto", False])
def test_a_rate_float32_cannot_represent_is_refused_at_fit_and_step(make, fused):
    X = np.random.default_rng(0).random((20, 3)).astype(np.float32)
    y = (X[:, 0] > 0.5).astype(int)
    opt = make()
    net = fnn.NeuralNetwork([fnn.FullyConnected(3, 2), fnn.SoftMax()], optimizer=opt, seed=0)
    w = net.layers[0].weights.copy()
    with pytest.raises(ValueError, match=r"\.lr = .* float32"):
        net.fit(X, y, epochs=2, verbose=0, fused=fused)
    net.forward(X, y)
    net.backward()
    with pytest.raises(ValueError, match=r"\.lr = .* float32"):
        net.step()
    assert np.array_equal(net.layers[0].weights, w) and opt.steps == 0
    opt.lr = 0.01                                  # a representable rate trains again
    net.fit(X, y, epochs=1, verbose=0, fused=fused)


def test_a_rate_assigned_by_a_callback_mid_fit_is_checked_against_the_dtype():
    X = np.random.default_rng(0).random((20, 3)).astype(np.float32)
    y = (X[:, 0] > 0.5).astype(int)
    net = fnn.NeuralNetwork([fnn.FullyConnected(3, 2), fnn.SoftMax()], seed=0)

    class Raise:
        def on_epoch_end(self, epoch, history):
            net.optimizer.lr = 1e39

    with pytest.raises(ValueError, match="beyond the float32 range"):
        net.fit(X, y, epochs=3, verbose=0, callbacks=[Raise()])
    assert len(net.history["loss"]) == 1


def test_float64_networks_take_a_rate_beyond_float32():
    X = np.random.default_rng(0).random((20, 3))
    net = fnn.NeuralNetwork([fnn.FullyConnected(3, 2, dtype=np.float64), fnn.SoftMax()],
                            optimizer=fnn.SGD(lr=1e-46), seed=0)
    net.fit(X, (X[:, 0] > 0.5).astype(int), epochs=1, verbose=0)
