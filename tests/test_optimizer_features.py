"""Optimizer features: hyperparameters validated on assignment, weight decay, Nesterov, AdamW (against torch's
formulas and torch.optim itself), state sized and checked from the current hyperparameters on both paths,
the fused kernel equal to the per-layer path, and the private scikit-learn options of the fused path."""
import numpy as np
import pytest

import fastnn as fnn
from fastnn.errors import NonFiniteUpdateError
from fastnn.kernels import epoch as epoch_kernels
from tests import helpers
from tests import reference as ref

SHAPES = [(3, 4), (4,), (1, 1), (7, 13)]
STEPS = 6
EPS = {np.float32: np.finfo(np.float32).eps, np.float64: np.finfo(np.float64).eps}

# name -> (fastnn optimizer, torch.optim class name and kwargs, reference update kind and kwargs)
CONFIGS = {
    "sgd-wd": (lambda: fnn.SGD(lr=0.1, weight_decay=0.05), ("SGD", dict(lr=0.1, weight_decay=0.05))),
    "momentum-wd": (lambda: fnn.SGD(lr=0.1, momentum=0.9, weight_decay=0.05),
                    ("SGD", dict(lr=0.1, momentum=0.9, weight_decay=0.05))),
    "nesterov": (lambda: fnn.SGD(lr=0.1, momentum=0.9, nesterov=True),
                 ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True))),
    "nesterov-wd": (lambda: fnn.SGD(lr=0.05, momentum=0.5, nesterov=True, weight_decay=0.1),
                    ("SGD", dict(lr=0.05, momentum=0.5, nesterov=True, weight_decay=0.1))),
    "adam-wd": (lambda: fnn.Adam(lr=0.05, weight_decay=0.1), ("Adam", dict(lr=0.05, weight_decay=0.1))),
    "adamw": (lambda: fnn.AdamW(), ("AdamW", dict())),
    "adamw-custom": (lambda: fnn.AdamW(lr=0.05, beta1=0.8, beta2=0.99, eps=1e-6, weight_decay=0.3),
                     ("AdamW", dict(lr=0.05, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.3))),
}


def make(dtype, seed=0):
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    grads_seq = [[rng.standard_normal(s).astype(dtype) for s in SHAPES] for _ in range(STEPS)]
    return params, grads_seq


def reference_update(opt):
    """A function (params, grads, t) -> new params in float64 with the torch formula of ``opt``'s config,
    keeping its own state."""
    c = opt.config()
    state = {}

    def update(params, grads, t):
        out = []
        for i, (p, g) in enumerate(zip(params, grads)):
            if isinstance(opt, fnn.SGD):
                v = state.get(i, np.zeros(p.shape))
                p, state[i] = ref.sgd_torch(p, g, v, c["lr"], c["momentum"], c["weight_decay"], c["nesterov"])
            else:
                m, v = state.get(i, (np.zeros(p.shape), np.zeros(p.shape)))
                p, m, v = ref.adam_torch(p, g, m, v, c["lr"], c["beta1"], c["beta2"], c["eps"], t,
                                         c["weight_decay"], isinstance(opt, fnn.AdamW))
                state[i] = (m, v)
            out.append(p)
        return out
    return update


# ------------------------------------------------------------------------- validation on assignment
BAD_VALUES = [
    (fnn.SGD, "lr", -1), (fnn.SGD, "lr", 0), (fnn.SGD, "lr", "0.1"), (fnn.SGD, "lr", np.nan),
    (fnn.SGD, "lr", None), (fnn.SGD, "momentum", 1.0), (fnn.SGD, "momentum", -0.1),
    (fnn.SGD, "weight_decay", -1), (fnn.SGD, "weight_decay", np.inf), (fnn.SGD, "nesterov", "yes"),
    (fnn.SGD, "nesterov", 1), (fnn.Adam, "beta1", 1.5), (fnn.Adam, "beta2", 1.0), (fnn.Adam, "eps", 0),
    (fnn.Adam, "eps", -1e-8), (fnn.Adam, "weight_decay", -1), (fnn.Adam, "lr", True),
    (fnn.AdamW, "weight_decay", -0.01), (fnn.AdamW, "beta1", -0.5), (fnn.Adam, "_sklearn_alpha", -1.0),
    (fnn.SGD, "_sklearn_alpha", "1"), (fnn.Adam, "_sklearn_eps", 1),
]


@pytest.mark.parametrize("cls,name,value", BAD_VALUES,
                         ids=[f"{c.__name__}.{n}={v!r}" for c, n, v in BAD_VALUES])
def test_bad_hyperparameter_refused_on_assignment_and_construction(cls, name, value):
    opt = cls()
    before = getattr(opt, name)
    with pytest.raises((ValueError, TypeError), match=name):
        setattr(opt, name, value)
    assert getattr(opt, name) == before          # a refused assignment changes nothing
    if not name.startswith("_"):
        with pytest.raises((ValueError, TypeError), match=name):
            cls(**{name: value})


def test_defaults_and_config():
    assert fnn.SGD().config() == dict(lr=0.01, momentum=0.0, nesterov=False, weight_decay=0.0)
    assert fnn.Adam().config() == dict(lr=0.001, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0)
    assert fnn.AdamW().config() == dict(lr=0.001, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01)
    opt = fnn.SGD()
    opt.lr, opt.momentum, opt.weight_decay = np.float32(0.5), 0.25, 1
    assert type(opt.lr) is float and opt.config()["weight_decay"] == 1.0
    assert "AdamW" in fnn.__all__ and fnn.optimizers.OPTIMIZER_TYPES["AdamW"] is fnn.AdamW
    assert repr(fnn.AdamW(weight_decay=0.5)).startswith("AdamW(lr=0.001,")


def test_nesterov_needs_momentum():
    with pytest.raises(ValueError, match="nesterov"):
        fnn.SGD(lr=0.1, nesterov=True)
    opt = fnn.SGD(lr=0.1, momentum=0.9, nesterov=True)
    opt.momentum = 0.0                           # allowed on its own (nesterov may be switched off next) ...
    p, g = np.zeros(3), np.ones(3)
    with pytest.raises(ValueError, match="nesterov"):
        opt.step([p], [g])                       # ... but no step is taken with the pair
    with pytest.raises(ValueError, match="nesterov"):
        opt.kernel_spec()
    assert (p == 0).all() and opt.steps == 0
    opt.nesterov = False
    opt.step([p], [g])
    np.testing.assert_array_equal(p, -0.1)


def test_n_slots_is_read_only_and_follows_hyperparameters():
    opt = fnn.SGD(lr=0.1)
    assert opt.n_slots == 0
    opt.momentum = 0.5
    assert opt.n_slots == 1
    with pytest.raises(AttributeError):
        opt.n_slots = 2
    assert fnn.Adam().n_slots == fnn.AdamW().n_slots == 2


def test_kernel_spec():
    kind, hyper = fnn.SGD(lr=0.1).kernel_spec()
    assert kind == epoch_kernels.OPT_SGD and hyper.dtype == np.float64
    assert hyper.shape == (epoch_kernels.HYPER_SIZE,) and hyper[0] == 0.1
    for opt in (fnn.SGD(lr=0.1, weight_decay=0.1), fnn.SGD(momentum=0.9, nesterov=True)):
        assert opt.kernel_spec()[0] == epoch_kernels.OPT_MOMENTUM     # the explicit-gradient step
    opt = fnn.SGD()
    opt._sklearn_alpha = 1e-4
    kind, hyper = opt.kernel_spec()
    assert kind == epoch_kernels.OPT_MOMENTUM and hyper[6] == 1e-4
    kind, hyper = fnn.AdamW(lr=0.01, weight_decay=0.2).kernel_spec()
    assert kind == epoch_kernels.OPT_ADAM
    np.testing.assert_array_equal(hyper, [0.01, 0.9, 0.999, 1e-8, 0.2, 1.0, 0.0, 0.0])
    assert fnn.Adam(weight_decay=0.2).kernel_spec()[1][5] == 0.0


# -------------------------------------------------------------------------- the formulas, step by step
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_steps_match_torch_formulas(dtype, name):
    params, grads_seq = make(dtype, 5)
    opt = CONFIGS[name][0]()
    update = reference_update(opt)
    expected = [p.astype(np.float64) for p in params]
    # float64: the same operations in the same order; float32: rounding of every operation, over the steps
    r = 1e-12 if dtype == np.float64 else 64 * EPS[dtype] * STEPS
    for t, grads in enumerate(grads_seq, start=1):
        opt.step(params, grads)
        expected = update(expected, grads, t)
        for a, e in zip(params, expected):
            assert a.dtype == dtype
            np.testing.assert_allclose(a, e, rtol=r, atol=r * (np.abs(e).max() + opt.lr))
    assert opt.steps == STEPS


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_step_for_step_equal_to_torch_optim(name):
    torch = pytest.importorskip("torch", reason="torch is not installed: the comparison with torch.optim "
                                               "is skipped (the reference-formula tests still run)")
    params, grads_seq = make(np.float64, 6)
    make_ours, (cls_name, kwargs) = CONFIGS[name]
    tparams = [torch.tensor(p.copy(), requires_grad=True) for p in params]
    extra = {} if cls_name == "SGD" else dict(foreach=False)
    ours, theirs = make_ours(), getattr(torch.optim, cls_name)(tparams, **kwargs, **extra)
    for grads in grads_seq:
        ours.step(params, grads)
        for tp, g in zip(tparams, grads):
            tp.grad = torch.tensor(g.copy())
        theirs.step()
        for p, tp in zip(params, tparams):
            expected = tp.detach().numpy()
            np.testing.assert_allclose(p, expected, rtol=1e-10, atol=1e-10 * np.abs(expected).max())


@pytest.mark.parametrize("name", ["momentum-wd", "nesterov-wd", "adam-wd", "adamw"])
def test_non_finite_update_refused_before_anything_is_written(name):
    params, grads_seq = make(np.float64, 7)
    opt = CONFIGS[name][0]()
    opt.step(params, grads_seq[0])
    grads = [g.copy() for g in grads_seq[1]]
    grads[3][2, 5] = 1.5e308                     # finite, but the update overflows
    grads[3][2, 6] = -np.inf
    before = [p.copy() for p in params] + [s.copy() for slots in opt.state for s in slots]
    with pytest.raises(NonFiniteUpdateError):
        opt.step(params, grads)
    assert opt.steps == 1
    for a, b in zip(params + [s for slots in opt.state for s in slots], before):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------------------------------- the state
def test_state_is_checked_slot_by_slot():
    params, grads_seq = make(np.float64, 8)
    opt = fnn.Adam(lr=0.01)
    opt.step(params, grads_seq[0])
    good = opt.state[3][1]                       # (7, 13)
    read_only = good.copy()
    read_only.flags.writeable = False
    for bad, what in [(np.zeros(3), "shape (3,)"), (good.astype(np.float32), "float32"),
                      (np.zeros((13, 7)).T, "non-contiguous"), (read_only, "read-only"), ([0.0], "list")]:
        opt.state[3][1] = bad
        with pytest.raises(ValueError, match=r"state\[3\]\[1\]") as info:
            opt.step(params, grads_seq[1])
        assert what in str(info.value)
        assert opt.steps == 1
    with pytest.raises(TypeError, match="state"):
        opt.state = "moments"
        opt.step(params, grads_seq[1])


def test_replaced_slot_is_used_not_a_cached_view():
    """The flat-view cache must not outlive a change of the state's arrays (outer list unchanged)."""
    params, grads_seq = make(np.float64, 9)
    opt = fnn.SGD(lr=0.1, momentum=0.9)
    opt.step(params, grads_seq[0])
    old = opt.state[0][0]
    kept = old.copy()
    opt.state[0][0] = np.zeros_like(old)
    opt.step(params, grads_seq[1])
    np.testing.assert_array_equal(old, kept)                      # the replaced array is not written
    np.testing.assert_array_equal(opt.state[0][0], grads_seq[1][0])   # fresh velocity: v = g


@pytest.mark.parametrize("use_fused", [False, True])
def test_momentum_switched_on_after_a_fit(use_fused):
    """SGD(lr) fitted, then momentum set: the state gets its velocity (this once read out of bounds in
    the fused kernel), and both paths give the same weights (plain SGD's in-GEMM update rounds
    differently); then momentum off again."""
    X, y = data(60, (5, 7, 3))
    runs = []
    for fused in (False, use_fused):
        net = make_net((5, 7, 3), lambda: fnn.SGD(lr=0.05), np.float64)
        net.fit(X, y, epochs=1, batch_size=16, verbose=0, fused=fused)
        net.optimizer.momentum = 0.9
        net.fit(X, y, epochs=2, batch_size=16, verbose=0, fused=fused)
        assert len(net.optimizer.state[0]) == 1
        net.optimizer.momentum = 0.0
        net.fit(X, y, epochs=1, batch_size=16, verbose=0, fused=fused)
        assert net.optimizer.state[0] == []
        runs.append(net._flat_params.copy())
    np.testing.assert_allclose(runs[1], runs[0], rtol=4096 * EPS[np.float64], atol=4096 * EPS[np.float64])


@pytest.mark.parametrize("use_fused", [False, True])
def test_fit_refuses_a_wrong_slot(use_fused):
    X, y = data(40, (5, 7, 3))
    net = make_net((5, 7, 3), lambda: fnn.Adam(lr=0.01), np.float32)
    net.fit(X, y, epochs=1, batch_size=16, verbose=0, fused=use_fused)
    net.optimizer.state[0][1] = np.zeros(3, np.float32)
    weights = net._flat_params.copy()
    with pytest.raises(ValueError, match=r"state\[0\]\[1\]"):
        net.fit(X, y, epochs=1, batch_size=16, verbose=0, fused=use_fused)
    np.testing.assert_array_equal(net._flat_params, weights)


def test_save_and_load_keep_the_new_hyperparameters(tmp_path):
    for opt in (fnn.AdamW(lr=0.01, weight_decay=0.2), fnn.SGD(lr=0.1, momentum=0.5, nesterov=True,
                                                                weight_decay=1e-3)):
        net = make_net((5, 7, 3), lambda: opt, np.float64)
        X, y = data(20, (5, 7, 3))
        net.fit(X, y, epochs=1, batch_size=8, verbose=0)
        net.save(tmp_path / "m.safetensors")
        back = fnn.load(tmp_path / "m.safetensors")
        assert type(back.optimizer) is type(opt) and back.optimizer.config() == opt.config()


# ------------------------------------------------------------------------------- fused vs per-layer
ACTS = {"relu": fnn.ReLU, "tanh": fnn.TanH}


def make_net(sizes, opt, dtype, act="relu", loss=fnn.SoftmaxCrossEntropy, seed=0):
    return helpers.make_net(sizes, opt=opt(), act=ACTS[act], dtype=dtype, loss=loss(), seed=seed)


def data(n, sizes, dtype=np.float64, regression=False, seed=1):
    return helpers.make_data(n, sizes[0], sizes[-1], seed=seed, dtype=dtype, regression=regression)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("task", ["labels", "regression"])
def test_fused_equals_per_layer_new_configurations(dtype, name, task):
    """The explicit-gradient step of the fused kernel runs the per-layer path's kernels: bit for bit."""
    sizes, act, loss = ((7, 13, 5), "relu", fnn.SoftmaxCrossEntropy) if task == "labels" else \
        ((3, 11, 2), "tanh", fnn.L2Loss)
    X, y = data(101, sizes, dtype, task == "regression")
    results = []
    for use_fused in (False, True):
        net = make_net(sizes, CONFIGS[name][0], dtype, act, loss)
        hist = net.fit(X, y, epochs=3, batch_size=32, verbose=0, fused=use_fused)
        results.append((net._flat_params.copy(), hist, net.optimizer.steps))
    (p0, h0, s0), (p1, h1, s1) = results
    assert s0 == s1 == 3 * 4
    assert np.array_equal(p0, p1)
    np.testing.assert_allclose(h1["loss"], h0["loss"], rtol=512 * EPS[dtype])
    np.testing.assert_allclose(np.asarray(h1["grad_norm"]), np.asarray(h0["grad_norm"]),
                               rtol=512 * EPS[dtype])


def reference_fit(net, X, y, epochs, batch_size, alpha, update):
    """Weights after ``epochs`` unshuffled epochs of scikit-learn-style backprop (float64) with
    ``update(params, grads, t)``, and the per-epoch mean losses (penalty included)."""
    fcs = [layer for layer in net.layers if isinstance(layer, fnn.FullyConnected)]
    ws = [fc.weights.astype(np.float64) for fc in fcs]
    bs = [fc.bias.astype(np.float64) for fc in fcs]
    losses, t = [], 0
    for _ in range(epochs):
        total = 0.0
        for start in range(0, len(X), batch_size):
            xb, yb = X[start:start + batch_size], y[start:start + batch_size]
            loss, dws, dbs = ref.sklearn_backprop(xb, yb, ws, bs, "relu", alpha)
            t += 1
            new = update(ws + bs, dws + dbs, t)
            ws, bs = new[:len(ws)], new[len(ws):]
            total += loss * len(xb)
        losses.append(total / len(X))
    return ws, bs, losses


def check_fit(net, hist, ws, bs, losses):
    fcs = [layer for layer in net.layers if isinstance(layer, fnn.FullyConnected)]
    for fc, w, b in zip(fcs, ws, bs):
        np.testing.assert_allclose(fc.weights, w, rtol=1e-10, atol=1e-10 * np.abs(w).max())
        np.testing.assert_allclose(fc.bias, b, rtol=1e-10, atol=1e-10 * np.abs(w).max())
    np.testing.assert_allclose(hist["loss"], losses, rtol=1e-10)


@pytest.mark.parametrize("name", ["nesterov-wd", "adam-wd", "adamw-custom"])
def test_fused_epochs_match_torch_formulas(name):
    """Whole fused epochs of a float64 network against NumPy backprop + the torch update formulas."""
    sizes = (6, 10, 8, 4)
    X, y = data(37, sizes)                       # batches of 16, 16 and 5
    net = make_net(sizes, CONFIGS[name][0], np.float64)
    ws, bs, losses = reference_fit(net, X, y, 3, 16, 0.0, reference_update(net.optimizer))
    hist = net.fit(X, y, epochs=3, batch_size=16, shuffle=False, verbose=0, fused=True)
    check_fit(net, hist, ws, bs, losses)


# ----------------------------------------------------------------- scikit-learn's options (fused only)
def sklearn_adam_update(lr, beta1, beta2, eps):
    state = {}

    def update(params, grads, t):
        out = []
        for i, (p, g) in enumerate(zip(params, grads)):
            m, v = state.get(i, (np.zeros(p.shape), np.zeros(p.shape)))
            p, m, v = ref.sklearn_adam(p, g, m, v, lr, beta1, beta2, eps, t)
            state[i] = (m, v)
            out.append(p)
        return out
    return update


@pytest.mark.parametrize("alpha", [0.0, 0.3])
def test_sklearn_adam_in_the_fused_kernel(alpha):
    sizes = (6, 10, 8, 4)
    X, y = data(37, sizes, seed=2)
    net = make_net(sizes, lambda: fnn.Adam(lr=0.01, beta1=0.8, beta2=0.99, eps=1e-3), np.float64)
    net.optimizer._sklearn_eps = True
    net.optimizer._sklearn_alpha = alpha
    ws, bs, losses = reference_fit(net, X, y, 3, 16, alpha, sklearn_adam_update(0.01, 0.8, 0.99, 1e-3))
    hist = net.fit(X, y, epochs=3, batch_size=16, shuffle=False, verbose=0, fused=True)
    check_fit(net, hist, ws, bs, losses)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_sklearn_alpha_in_the_fused_kernel(momentum):
    """alpha / nb · W on each weight gradient (not the biases); 0.5 · alpha · Σ||W||² / nb on the loss."""
    sizes = (6, 10, 8, 4)
    X, y = data(37, sizes, seed=3)
    net = make_net(sizes, lambda: fnn.SGD(lr=0.1, momentum=momentum), np.float64)
    net.optimizer._sklearn_alpha = 0.5
    ws, bs, losses = reference_fit(net, X, y, 3, 16, 0.5, reference_update(net.optimizer))
    hist = net.fit(X, y, epochs=3, batch_size=16, shuffle=False, verbose=0, fused=True)
    check_fit(net, hist, ws, bs, losses)
    # the penalty really is there: without it the losses and weights differ
    _, _, plain = reference_fit(make_net(sizes, lambda: fnn.SGD(lr=0.1, momentum=momentum), np.float64),
                                X, y, 3, 16, 0.0, reference_update(net.optimizer))
    assert not np.allclose(plain, losses, rtol=1e-3)


@pytest.mark.parametrize("option", ["_sklearn_alpha", "_sklearn_eps"])
def test_sklearn_options_refused_by_the_per_layer_path(option):
    X, y = data(20, (5, 7, 3))
    net = make_net((5, 7, 3), lambda: fnn.Adam(lr=0.01), np.float64)
    setattr(net.optimizer, option, 1e-3 if option == "_sklearn_alpha" else True)
    weights = net._flat_params.copy()
    with pytest.raises(ValueError, match="fused"):
        net.optimizer.step(list(net.plan().opt_params), list(net.plan().opt_grads))
    with pytest.raises(ValueError, match="fused"):
        net.fit(X, y, epochs=1, batch_size=8, verbose=0, fused=False)
    np.testing.assert_array_equal(net._flat_params, weights)
    net.fit(X, y, epochs=1, batch_size=8, verbose=0, fused=True)


def test_kernels_refuse_state_of_the_wrong_size():
    """Defence in depth below the Python checks: a kernel never indexes a slot shorter than p."""
    from fastnn.kernels import optim
    p, g = np.zeros(4), np.ones(4)
    with pytest.raises(ValueError, match="v must be"):
        optim.sgd_momentum_checked(p, g, np.zeros(3), 0.1, 0.9, 0.0, False)
    with pytest.raises(ValueError, match="m and v"):
        optim.adam_checked(p, g, np.zeros(4), np.zeros(2), 0.1, 0.9, 0.999, 1e-8, 1, 0.0, False, False)
    assert optim.sgd_momentum_checked(p, g, np.empty(0), 0.1, 0.0, 0.5, False)   # no velocity: fine
    np.testing.assert_array_equal(p, -0.1)
