"""Gradient health: per-layer gradient norms in the history, one warning for vanishing / exploding
gradients, and divergence that keeps the weights, optimizer state and history of the last finite step on
both training paths."""
import warnings

import numpy as np
import pytest

import fastnn as fnn
from fastnn.errors import GradientHealthWarning
from tests import helpers

OPTIMIZERS = {name: helpers.OPTIMIZERS[name] for name in ("sgd", "momentum", "adam")}


def make_net(opt="adam", lr=0.01, act=fnn.ReLU, dtype=np.float32, loss=None):
    return helpers.make_net((5, 16, 3), opt=opt, lr=lr, act=act, dtype=dtype, loss=loss)


def make_data(n=95, dtype=np.float32):
    return helpers.make_data(n, features=5, classes=3, seed=2, dtype=dtype)


def layer_gradient_norms(net):
    fcs = [layer for layer in net.layers if isinstance(layer, fnn.FullyConnected)]
    return [float(np.sqrt(np.sum(fc.grad_weights.astype(np.float64) ** 2)
                          + np.sum(fc.grad_bias.astype(np.float64) ** 2))) for fc in fcs]


# ------------------------------------------------------------------------------------ history["grad_norm"]
@pytest.mark.parametrize("fused", ["auto", False])
@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
def test_grad_norm_history_is_the_last_batch_gradient(opt, fused):
    X, y = make_data()
    net = make_net(opt, dtype=np.float64)
    history = net.fit(X.astype(np.float64), y, epochs=4, batch_size=20, shuffle=False, verbose=0, fused=fused)
    norms = history["grad_norm"]
    assert len(norms) == 4 and all(len(row) == 2 for row in norms)
    assert all(isinstance(v, float) and np.isfinite(v) and v > 0 for row in norms for v in row)
    # the gradient of the epoch's last mini-batch, the one its last update used (the fused SGD kernel,
    # which updates inside the GEMMs, writes it out on each epoch's last batch)
    np.testing.assert_allclose(norms[-1], layer_gradient_norms(net), rtol=1e-12)



@pytest.mark.parametrize("opt", ["sgd", "momentum", "adam"])
def test_grad_norm_history_is_the_same_on_both_paths(opt):
    X, y = make_data()
    histories = [make_net(opt).fit(X, y, epochs=3, batch_size=16, verbose=0, fused=f)["grad_norm"]
                 for f in (False, "auto")]
    if opt == "sgd":     # the fused SGD update rounds differently (inside the GEMM): equal to float tolerance
        np.testing.assert_allclose(histories[1], histories[0], rtol=1e-5)
    else:
        assert histories[0] == histories[1]


def test_grad_norm_history_round_trips_through_a_model_file(tmp_path):
    X, y = make_data()
    net = make_net()
    net.fit(X, y, epochs=3, batch_size=16, verbose=0)
    net.save(tmp_path / "m.fnn")
    assert fnn.load(tmp_path / "m.fnn").history == net.history


# ------------------------------------------------------------------------------------ warnings
def _health_warnings(record):
    return [w for w in record if issubclass(w.category, GradientHealthWarning)]


def test_healthy_training_does_not_warn():
    X, y = make_data()
    with warnings.catch_warnings():
        warnings.simplefilter("error", GradientHealthWarning)
        make_net().fit(X, y, epochs=5, batch_size=16, verbose=0)
        make_net(act=fnn.Sigmoid).fit(X, y, epochs=5, batch_size=16, verbose=0, fused=False)


@pytest.mark.parametrize("fused", ["auto", False])
def test_vanishing_gradient_warns_once(fused):
    X, y = make_data()
    net = make_net("sgd", lr=1e-3, act=fnn.Sigmoid)
    net.layers[0].bias[...] = 1e4                   # every sigmoid saturated: the first layer's gradient is 0
    with pytest.warns(GradientHealthWarning) as record:
        history = net.fit(X, y, epochs=8, batch_size=16, verbose=0, fused=fused)
    found = _health_warnings(record)
    assert len(found) == 1, [str(w.message) for w in found]
    msg = str(found[0].message)
    assert "vanishing" in msg and "layer 0" in msg and "5 epochs up to epoch 5" in msg
    assert "\n" not in msg
    assert issubclass(GradientHealthWarning, RuntimeWarning)
    w = np.linalg.norm(net._flat_params[:5 * 16 + 16])
    assert all(g[0] * w < 1e-6 * loss for g, loss in zip(history["grad_norm"][:5], history["loss"]))


def test_vanishing_needs_consecutive_epochs():
    """Four epochs of a dead layer are not enough (a fit that short, or one batch that misses a layer's
    active region, says nothing)."""
    X, y = make_data()
    net = make_net("sgd", lr=1e-3, act=fnn.Sigmoid)
    net.layers[0].bias[...] = 1e4
    with warnings.catch_warnings():
        warnings.simplefilter("error", GradientHealthWarning)
        net.fit(X, y, epochs=4, batch_size=16, verbose=0)


def _fit_to_convergence(loss, X, y, epochs, **kw):
    net = fnn.NeuralNetwork([fnn.FullyConnected(X.shape[1], 16, dtype=np.float64), fnn.TanH(),
                             fnn.FullyConnected(16, 16, dtype=np.float64), fnn.TanH(),
                             fnn.FullyConnected(16, 2 if y.ndim == 1 else y.shape[1], dtype=np.float64)],
                            loss=loss, optimizer=fnn.Adam(lr=0.01), seed=0)
    return net.fit(X, y, epochs=epochs, verbose=0, **kw)


@pytest.mark.parametrize("kind", ["classification", "regression"])
def test_converged_model_does_not_warn(kind):
    """A model that has fitted its data (loss near 0, gradients near 0 with it) is not 'vanishing':
    under the old rule (gradient < 1e-7 x weights) the regression fit warned."""
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float64)
    if kind == "classification":
        y, loss = np.array([0, 1, 1, 0]), fnn.SoftmaxCrossEntropy()
    else:
        y, loss = np.array([[0.0, 1.0], [1.0, 0.5], [1.0, 0.5], [0.0, 1.0]]), fnn.L2Loss()
    with warnings.catch_warnings():
        warnings.simplefilter("error", GradientHealthWarning)
        history = _fit_to_convergence(loss, X, y, 3000, batch_size=4)
    assert history["loss"][-1] < 1e-4
    layers = np.array(history["grad_norm"][-1])
    assert layers.min() < 1e-5            # tiny gradients: what the old rule called vanishing


def test_a_model_at_its_capacity_does_not_warn():
    """A linear model on XOR settles at chance (loss ln 2) with a zero gradient: a stationary loss, not a
    gradient that vanished on its way back through the layers (the output layer gets the loss gradient
    directly)."""
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float64)
    net = fnn.NeuralNetwork([fnn.FullyConnected(2, 2, dtype=np.float64)], optimizer=fnn.Adam(lr=0.05), seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", GradientHealthWarning)
        history = net.fit(X, np.array([0, 1, 1, 0]), epochs=400, batch_size=4, verbose=0)
    assert abs(history["loss"][-1] - np.log(2)) < 1e-3


def test_warning_clears_the_progress_bar(capsys):
    """With a progress bar on stderr, the warning starts on a line of its own (the bar is cleared first,
    then redrawn), instead of being appended to the bar's line."""
    X, y = make_data()
    net = make_net("sgd", lr=1e-3, act=fnn.Sigmoid)
    net.layers[0].bias[...] = 1e4

    def show(message, category, filename, lineno, file=None, line=None):
        import sys
        print(f"WARNING {category.__name__}: {message}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = show
        net.fit(X, y, epochs=8, batch_size=16, verbose=1)
    err = capsys.readouterr().err
    at = err.index("WARNING GradientHealthWarning")
    assert "training" in err[:at] and err[at - 1] in "\r\n", repr(err[max(0, at - 80):at + 40])
    assert "8/8" in err[at:]                               # the bar goes on after the warning


@pytest.mark.parametrize("fused", ["auto", False])
def test_exploding_gradient_warns_once(fused):
    X, y = make_data()
    X *= 100
    net = make_net("sgd", lr=1e-12)
    for fc in (net.layers[0], net.layers[2]):
        fc.weights *= 1e-6                          # tiny weights, large inputs: gradient >> weights
    with pytest.warns(GradientHealthWarning) as record:
        net.fit(X, y, epochs=4, batch_size=16, verbose=0, fused=fused)
    found = _health_warnings(record)
    assert len(found) == 1 and "exploding" in str(found[0].message), [str(w.message) for w in found]
    assert "standardi" in str(found[0].message)            # the usual cause, and its fix


# ------------------------------------------------------------------------------------ divergence
def _regression(n=60):
    rng = np.random.default_rng(4)
    X = rng.standard_normal((n, 5)).astype(np.float32)
    return X, (X @ rng.standard_normal((5, 3))).astype(np.float32)


def _linear(opt, lr):
    return fnn.NeuralNetwork([fnn.FullyConnected(5, 3)], loss=fnn.L2Loss(), optimizer=OPTIMIZERS[opt](lr), seed=0)


# learning rates just above the stable range: the weights grow geometrically and overflow after some epochs
UNSTABLE = {"sgd": 6.0, "momentum": 5.0, "adam": 1e37}


@pytest.mark.parametrize("fused", ["auto", False])
@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
def test_divergence_keeps_the_last_finite_step(opt, fused):
    X, Y = _regression()
    bs = 10
    net = _linear(opt, UNSTABLE[opt])
    with pytest.raises(fnn.TrainingDivergedError) as info:
        net.fit(X, Y, epochs=500, batch_size=bs, shuffle=False, verbose=0, fused=fused)
    err = info.value
    steps = (err.epoch - 1) * (len(X) // bs) + err.batch - 1           # the finite steps taken
    assert net.optimizer.steps == steps
    assert np.isfinite(net._flat_params).all()
    for slots in net.optimizer.state or []:
        for s in slots:
            assert np.isfinite(s).all()
    # history: exactly the completed epochs, identical to a run that stops there
    assert err.history is net.history and len(net.history["loss"]) == err.epoch - 1
    assert all(len(v) == err.epoch - 1 for v in net.history.values())
    if err.epoch > 1:
        ref = _linear(opt, UNSTABLE[opt])
        h = ref.fit(X, Y, epochs=err.epoch - 1, batch_size=bs, shuffle=False, verbose=0, fused=fused)
        assert h["loss"] == net.history["loss"] and h["grad_norm"] == net.history["grad_norm"]
    # weights and optimizer state: those of replaying the finite steps one by one
    replay = _linear(opt, UNSTABLE[opt])
    for k in range(steps):
        start = (k % (len(X) // bs)) * bs
        replay.forward(X[start:start + bs], Y[start:start + bs])
        replay.backward()
        replay.step()
    assert replay.optimizer.steps == net.optimizer.steps
    exact = fused is False or opt != "sgd"    # fused plain SGD updates inside the GEMM: equal to rounding
    for a, b in zip([replay._flat_params] + [s for sl in replay.optimizer.state or [] for s in sl],
                    [net._flat_params] + [s for sl in net.optimizer.state or [] for s in sl]):
        if exact:
            assert np.array_equal(a, b)
        else:
            np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-30)


class _PoisonedGradient(fnn.ReLU):
    """A ReLU whose backward turns the gradient infinite from its n-th call on (the loss stays finite)."""

    def __init__(self, at):
        super().__init__()
        self.at, self.calls = at, 0

    def _backward(self, dy, need_input_grad=True):
        self.calls += 1
        dx = super()._backward(dy, need_input_grad)
        if self.calls >= self.at:
            dx[0, 0] = np.inf
        return dx


@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
def test_non_finite_gradient_names_epoch_batch_and_layer(opt):
    X, y = make_data(100)
    poison = _PoisonedGradient(at=13)          # batch 3 of epoch 2 with 10 batches per epoch... (bs 10)
    net = fnn.NeuralNetwork([fnn.FullyConnected(5, 8), poison, fnn.FullyConnected(8, 3)],
                            optimizer=OPTIMIZERS[opt](0.01), seed=0)
    with pytest.raises(fnn.TrainingDivergedError) as info:
        net.fit(X, y, epochs=3, batch_size=10, shuffle=False, verbose=0)
    err = info.value
    assert (err.epoch, err.batch, err.layer) == (2, 3, 0), str(err)
    assert "gradient" in str(err) and "epoch 2, batch 3, layer 0" in str(err)
    assert net.optimizer.steps == 12 and len(err.history["loss"]) == 1
    assert np.isfinite(net._flat_params).all()
    ref = fnn.NeuralNetwork([fnn.FullyConnected(5, 8), fnn.ReLU(), fnn.FullyConnected(8, 3)],
                            optimizer=OPTIMIZERS[opt](0.01), seed=0)
    for k in range(12):
        start = (k % 10) * 10
        ref.forward(X[start:start + 10], y[start:start + 10])
        ref.backward()
        ref.step()
    assert np.array_equal(ref._flat_params, net._flat_params)
    for a, b in zip(ref.optimizer.state or [], net.optimizer.state or []):
        assert all(np.array_equal(u, v) for u, v in zip(a, b))


def test_the_warning_points_at_the_users_fit_call():
    X, y = make_data()
    net = make_net("sgd", lr=1e-3, act=fnn.Sigmoid)
    net.layers[0].bias[...] = 1e4                   # every sigmoid saturated: a vanishing gradient
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        net.fit(X, y, epochs=8, batch_size=16, verbose=0)      # the line the warning must name
    mine = [w for w in caught if issubclass(w.category, GradientHealthWarning)]
    assert mine and {w.filename for w in mine} == {__file__}
