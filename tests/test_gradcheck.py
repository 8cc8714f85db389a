"""fastnn gradcheck covers every built-in layer type and every loss, on both engines (issue 21, build 4)."""
import math
import re

import numpy as np
import pytest

import fastnn as fnn
from fastnn.engines import fused
from fastnn.gradcheck import builtin_networks
from fastnn.layers import LAYER_TYPES
from fastnn.losses import LOSS_TYPES


def test_builtin_networks_hold_every_layer_type_and_loss():
    nets = builtin_networks(0)
    layers = {type(layer).__name__ for _, net, _ in nets for layer in net.layers}
    builtin = {name for name, cls in LAYER_TYPES.items() if cls.__module__ == "fastnn.layers"}
    assert builtin <= layers, sorted(builtin - layers)
    assert {type(net.loss).__name__ for _, net, _ in nets} >= set(LOSS_TYPES)
    gelu = {layer.approximate for _, net, _ in nets for layer in net.layers if type(layer).__name__ == "GELU"}
    assert gelu == {"none", "tanh"}


def test_every_layer_the_fused_kernel_runs_is_checked_on_it_too():
    nets = builtin_networks(0)
    fused_layers = set()
    for _, net, x in nets:
        report = fnn.gradcheck(net, x)
        assert all(err < 1e-6 for err in report.values()), report
        if fused.supports(net)[0]:
            assert any(key.startswith("fused ") for key in report)
            fused_layers |= {type(layer).__name__ for layer in net.layers}
    # every activation but SoftMax (a probabilities output, which the fused kernel does not run) on both engines
    assert {"ReLU", "Sigmoid", "TanH", "LeakyReLU", "ELU", "SiLU", "GELU", "Softplus", "Identity",
            "Dropout", "FullyConnected"} <= fused_layers


# -- numerical_gradient refuses a bad step and a function that is not scalar (L6, L7) ------------------------


@pytest.mark.parametrize("h", [0, 0.0, -1e-3, math.nan, math.inf, -math.inf, True, "x", 1e-300])
def test_numerical_gradient_refuses_bad_steps(h):
    with pytest.raises(ValueError, match="h"):
        fnn.numerical_gradient(lambda x: float((x ** 2).sum()), np.ones(3), h=h)


@pytest.mark.parametrize("f,error,words", [
    (lambda x: x * 2, TypeError, "array of shape (3,)"), (lambda x: None, TypeError, "NoneType"),
    (lambda x: "abc", TypeError, "str"), (lambda x: True, TypeError, "bool"),
    (lambda x: math.nan, ValueError, "returned nan"), (lambda x: math.inf, ValueError, "returned inf")])
def test_numerical_gradient_refuses_a_non_scalar_function(f, error, words):
    x = np.ones(3)
    with pytest.raises(error, match=re.escape(words)):
        fnn.numerical_gradient(f, x)
    assert (x == 1).all()                 # restored after the refusal


@pytest.mark.parametrize("value", [lambda x: np.float32(x.sum()), lambda x: np.array([x.sum()]),
                                   lambda x: np.array(x.sum()), lambda x: int(round(x.sum() * 1e6))])
def test_numerical_gradient_accepts_real_scalars(value):
    assert np.isfinite(fnn.numerical_gradient(value, np.ones(3), h=1e-3)).all()


# -- gradcheck runs fit's checks on custom layers, naming layers[i].params[j] (L3, L4, L5, U3) ---------------


class _P(fnn.Layer):
    def __init__(self, mode="ok", dtype=np.float64):
        super().__init__()
        self.mode, self.w, self.g, self.calls = mode, np.ones(4, dtype), np.zeros(4, dtype), 0

    def config(self):
        return {"mode": self.mode}

    @property
    def params(self):
        self.calls += 1
        return {"none": None, "grow": [np.ones(4 + (self.calls > 1))], "f32": [self.w.astype(np.float32)],
                "list": [[1.0] * 4], "mismatch": [self.w, self.w]}.get(self.mode, [self.w])

    @property
    def grads(self):
        return {"gnone": None, "gshape": [np.zeros(3)]}.get(self.mode, [self.g])

    def _forward(self, x):
        self._x = x
        return x * self.w

    def _backward(self, dy, need_input_grad=True):
        self.g[:] = (dy * self._x).sum(0)
        out = dy * self.w
        return np.asfortranarray(out) if self.mode == "fortran" else out


def _custom_net(mode):
    return fnn.NeuralNetwork([fnn.FullyConnected(3, 4, dtype=np.float64), _P(mode), fnn.TanH(),
                              fnn.FullyConnected(4, 2, dtype=np.float64)], seed=0)


@pytest.mark.parametrize("mode,error,words", [
    ("none", TypeError, "layers[1] (_P).params must be a list"), ("gnone", TypeError, "layers[1] (_P).grads"),
    ("grow", ValueError, "layers[1]"), ("gshape", ValueError, "layers[1] (_P)"),
    ("f32", ValueError, "layers[1] (_P)"), ("list", ValueError, "layers[1] (_P)"),
    ("mismatch", ValueError, "layers[1] (_P): params and grads lists differ")])
def test_gradcheck_refuses_what_fit_refuses(mode, error, words):
    net = _custom_net(mode)
    x = np.random.default_rng(0).standard_normal((3, 3))
    with pytest.raises(error) as info:
        fnn.gradcheck(net, x, np.array([0, 1, 0]))
    assert words in str(info.value) and "x must" not in str(info.value), str(info.value)


def test_gradcheck_accepts_a_fortran_order_backward_as_fit_does():
    net = _custom_net("fortran")
    x = np.random.default_rng(0).standard_normal((4, 3))
    report = fnn.gradcheck(net, x, np.array([0, 1, 0, 1]))
    assert report.passed(), report
    assert "layers[1].params[0]" in report


@pytest.mark.parametrize("mode,words", [("none", "layer.params must be a list"),
                                        ("gshape", "layer.grads[0] must be a float64 array of shape (4,)"),
                                        ("list", "layer.params[0] must be a float numpy array, got list")])
def test_gradcheck_of_a_layer_names_its_params(mode, words):
    with pytest.raises((TypeError, ValueError), match=re.escape(words)):
        fnn.gradcheck(_P(mode), np.ones((2, 4)))


@pytest.mark.parametrize("layer", [lambda: fnn.FullyConnected(3, 2, dtype=np.float64), fnn.ReLU, fnn.SoftMax,
                                   lambda: fnn.Dropout(0.5), fnn.Sigmoid],
                         ids=["FullyConnected", "ReLU", "SoftMax", "Dropout", "Sigmoid"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_gradcheck_of_a_layer_names_a_nonfinite_x(layer, bad):
    """As for a network (and fit): x holding NaN or Inf is named, not reported as 'f returned nan'."""
    x = np.ones((2, 3))
    x[1, 2] = bad
    with pytest.raises(ValueError, match=re.escape("x contains 1 NaN or infinite value(s), the first at index (1, 2)")):
        fnn.gradcheck(layer(), x)
