"""NaN or Inf in what a fit starts from — a layer's weights, bias or custom parameters, the optimizer's state —
changed in place (or by a callback) is named for what it is, not reported as a divergence with "try a
smaller learning rate" (fastnn.errors.NonFiniteStateError: a TrainingDivergedError and a ValueError);
every engine; the state is left as it was. The perceptron refuses such weights at fit and predict, and
warns when w·x + b overflows."""
import numpy as np
import pytest

import fastnn as fnn
from fastnn.errors import NonFiniteStateError

from .helpers import make_data, make_net


def _params(net):
    return [p.copy() for layer in net.layers for p in layer.params]


@pytest.mark.parametrize("fused", ["auto", False])
@pytest.mark.parametrize("opt", ["sgd", "momentum", "adam", "adamw"])
@pytest.mark.parametrize("where, poison", [
    ("layers[0] (FullyConnected) weights", lambda net: net.layers[0].weights.__setitem__((0, 0), np.nan)),
    ("layers[2] (FullyConnected) bias", lambda net: net.layers[2].bias.__setitem__(1, np.inf)),
    ("layers[4] (FullyConnected) weights", lambda net: net.layers[4].weights.__setitem__((3, 1), -np.inf)),
])
def test_nonfinite_parameters_are_named_not_called_a_divergence(fused, opt, where, poison):
    X, y = make_data(64)
    net = make_net((6, 12, 8, 4), opt=opt)
    net.fit(X, y, epochs=1, batch_size=16, verbose=0, fused=fused)
    poison(net)
    before, steps = _params(net), net.optimizer.steps
    with pytest.raises(NonFiniteStateError) as info:
        net.fit(X, y, epochs=2, batch_size=16, verbose=0, fused=fused)
    err = info.value
    assert isinstance(err, fnn.TrainingDivergedError) and isinstance(err, ValueError)
    assert err.where == where and str(err).startswith(f"{where} held NaN or infinite values when epoch 1 began")
    assert "smaller learning rate" not in str(err) and (err.epoch, err.batch) == (1, 1)
    assert all(np.array_equal(a, b, equal_nan=True) for a, b in zip(before, _params(net)))
    assert net.optimizer.steps == steps


@pytest.mark.parametrize("fused", ["auto", False])
@pytest.mark.parametrize("opt", ["momentum", "adam"])
def test_nonfinite_optimizer_state_is_named(fused, opt):
    X, y = make_data(64)
    net = make_net(opt=opt)
    net.fit(X, y, epochs=1, batch_size=16, verbose=0, fused=fused)
    net.optimizer.state[0][-1][...] = np.nan
    with pytest.raises(NonFiniteStateError, match=r"^the \w+ optimizer's state held NaN or infinite values"):
        net.fit(X, y, epochs=1, batch_size=16, verbose=0, fused=fused)


@pytest.mark.parametrize("fused", ["auto", False])
def test_a_callback_that_poisons_the_weights_is_named_at_the_next_epoch(fused):
    X, y = make_data(64)
    net = make_net()

    class Poison:
        def on_epoch_end(self, epoch, history):
            if epoch == 2:
                net.layers[0].weights[1, 1] = np.nan
            return False
    with pytest.raises(NonFiniteStateError, match=r"^layers\[0\] \(FullyConnected\) weights held NaN or infinite "
                                                  r"values when epoch 3 began") as info:
        net.fit(X, y, epochs=4, batch_size=16, verbose=0, fused=fused, callbacks=[Poison()])
    assert len(info.value.history["loss"]) == 2


def test_a_real_divergence_is_still_a_divergence():
    X, y = make_data(64)
    net = make_net(opt="sgd", lr=1e30, act=fnn.ReLU)
    with pytest.raises(fnn.TrainingDivergedError, match="smaller learning rate") as info:
        net.fit(X * np.float32(1e15), y, epochs=3, batch_size=16, verbose=0)
    assert not isinstance(info.value, NonFiniteStateError)


def test_a_custom_layers_nonfinite_parameter_is_named():
    class Scale(fnn.Layer):
        def __init__(self, n):
            super().__init__()
            self.scale = np.ones(n, np.float32)
            self.grad_scale = np.zeros(n, np.float32)

        params = property(lambda self: [self.scale])
        grads = property(lambda self: [self.grad_scale])

        def _forward(self, x):
            self._x = x
            return x * self.scale

        def _backward(self, dy, need_input_grad=True):
            self.grad_scale[...] = (dy * self._x).sum(axis=0)
            return dy * self.scale

    X, y = make_data(64)
    net = fnn.NeuralNetwork([fnn.FullyConnected(6, 5), Scale(5), fnn.ReLU(), fnn.FullyConnected(5, 4)],
                            loss=fnn.SoftmaxCrossEntropy(), optimizer=fnn.SGD(lr=0.01), seed=0)
    net.layers[1].scale[2] = np.nan
    with pytest.raises(NonFiniteStateError, match=r"^layers\[1\] \(Scale\) params\[0\] held NaN"):
        net.fit(X, y, epochs=1, batch_size=16, verbose=0)


def test_the_perceptron_refuses_nonfinite_weights_changed_in_place():
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1.0]])
    y = np.array([0, 0, 0, 1])
    p = fnn.Perceptron(2, seed=0).fit(X, y)
    p.weights[1] = np.nan
    kept = p.weights.copy()
    for call in (lambda: p.fit(X, y), lambda: p.predict(X), lambda: p.score(X, y), lambda: p.decision_function(X)):
        with pytest.raises(ValueError, match=r"Perceptron.weights holds NaN or infinite values \(at \[1\]"):
            call()
    assert np.array_equal(p.weights, kept, equal_nan=True)


def test_the_perceptron_warns_when_its_activation_overflows():
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1.0]])
    p = fnn.Perceptron(2, seed=0).fit(X, np.array([0, 0, 0, 1]))
    with pytest.warns(RuntimeWarning, match=r"w·x \+ b is NaN or infinite for 1 of 2 rows \(the first: row 0"):
        p.predict(np.array([[1e308, 1e308], [1.0, 1.0]]))


_CAUSES = {"parameters": "parameter array 0 already holds NaN or infinite values (changed in place?)",
           "gradient": "the gradient of parameter array 0 holds NaN or infinite values",
           "state": "the optimizer's state for parameter array 0 holds NaN or infinite values",
           "update": "the update of parameter array 0 would overflow to NaN/Inf"}


@pytest.mark.parametrize("opt, cause", [(opt, cause) for opt in ("sgd", "momentum", "adam") for cause in _CAUSES
                                        if (opt, cause) != ("sgd", "state")])      # plain SGD keeps no state
def test_a_refused_manual_step_says_what_was_not_finite(opt, cause):
    """optimizer.step (net.step's) refuses a non-finite update and says why; only an overflow of finite
    values suggests a smaller learning rate; nothing changes."""
    from fastnn.errors import NonFiniteUpdateError

    from .helpers import OPTIMIZERS
    optimizer = OPTIMIZERS[opt](0.01)
    p, g = [np.ones(4, np.float32)], [np.ones(4, np.float32)]
    optimizer.step(p, g)                 # state made (plain SGD keeps none)
    if cause == "parameters":
        p[0][2] = np.nan
    elif cause == "gradient":
        g[0][1] = np.inf
    elif cause == "state":
        optimizer.state[0][0][3] = np.nan
    else:
        p[0][:], optimizer.lr = -3e38, 1e38     # p - lr·(about 1) < -3.4e38
    kept, steps = p[0].copy(), optimizer.steps
    with pytest.raises(NonFiniteUpdateError) as info:
        optimizer.step(p, g)
    assert info.value.cause == cause and str(info.value).startswith(_CAUSES[cause])
    assert ("smaller learning rate" in str(info.value)) == (cause == "update")
    assert np.array_equal(p[0], kept, equal_nan=True) and optimizer.steps == steps


def test_gradcheck_names_nonfinite_parameters():
    """(else every finite difference failed with "f returned nan")"""
    fc = fnn.FullyConnected(3, 2, dtype="float64", seed=0)
    fc.weights[0, 0] = np.nan
    with pytest.raises(ValueError, match=r"^FullyConnected weights holds NaN or infinite values: a gradient check"):
        fnn.gradcheck(fc, np.ones((2, 3)))
    net = make_net((3, 4, 2), dtype=np.float64)
    net.layers[2].bias[0] = np.inf
    with pytest.raises(ValueError, match=r"^layers\[2\] \(FullyConnected\) bias holds NaN or infinite values"):
        fnn.gradcheck(net, np.ones((2, 3)), target=np.array([0, 1]))

