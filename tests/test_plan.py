"""fastnn.plan: the one checked description of a network's stack that the engines read (check_stack, build)."""
import dataclasses

import numpy as np
import pytest

import fastnn as fnn
from fastnn import plan
from tests.helpers import make_net


def test_a_plan_describes_the_network_as_it_is():
    net = make_net((6, 12, 4), dtype=np.float64)
    p = net.plan()
    assert p.layers == net.layers and p.loss is net.loss and p.optimizer is net.optimizer
    assert p.dtype == np.float64 and (p.n_features, p.n_outputs) == (6, 4)
    assert p.param_layers == (0, 2) and [type(d) for d in p.dense] == [fnn.FullyConnected] * 2
    assert list(p.offsets) == [0, 6 * 12 + 12, 6 * 12 + 12 + 12 * 4 + 4] and p.params.size == p.offsets[-1]
    assert p.opt_params[0] is p.params and p.opt_grads[0] is p.grads and p.classification
    for fc, k in zip(p.dense, range(2)):        # each FullyConnected views its segment of the flat buffer
        seg = p.params[p.offsets[k]:p.offsets[k + 1]]
        assert np.shares_memory(seg, fc.weights) and np.shares_memory(seg, fc.bias)


def test_a_plan_is_a_snapshot_of_structure_not_of_values():
    net = make_net()
    p = net.plan()
    w = net.layers[0].weights
    w[...] = 3.0
    assert np.count_nonzero(p.params[p.offsets[0]:p.offsets[1]] == 3.0) == w.size    # the same buffers
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.loss = fnn.L2Loss()


@pytest.mark.parametrize("layers, error, words", [
    ([fnn.FullyConnected(3, 4), fnn.ReLU(), fnn.FullyConnected(5, 2)], ValueError, "expects 5 inputs"),
    ([fnn.FullyConnected(3, 4, dtype=np.float64), fnn.FullyConnected(4, 2)], ValueError, "one dtype"),
    ([fnn.ReLU()], ValueError, "at least one FullyConnected"),
    ([fnn.FullyConnected(3, 4), "relu"], TypeError, "fastnn Layer"),
])
def test_check_stack_names_what_is_wrong(layers, error, words):
    with pytest.raises(error, match=words):
        plan.check_stack(layers)


def test_check_stack_gives_dtype_and_widths():
    assert plan.check_stack([fnn.FullyConnected(3, 4), fnn.TanH(), fnn.FullyConnected(4, 2)]) == \
        (np.dtype(np.float32), 3, 2)


def test_a_layer_moved_to_another_network_is_refused():
    a = make_net()
    layer = a.layers[1]
    with pytest.raises(ValueError):
        fnn.NeuralNetwork([fnn.FullyConnected(6, 12), layer, fnn.FullyConnected(12, 4)])
    assert a.plan().layers[1] is layer                 # the first network keeps it


def test_a_plan_for_prediction_leaves_the_optimizer_state_unchecked():
    net = make_net(opt="adam")
    assert net.plan(training=False).optimizer is net.optimizer
    assert net.plan().optimizer.state is not None or net.optimizer.n_slots == 0


class _NoneParams(fnn.Layer):
    """A custom layer whose params / grads property returns None (L3)."""

    def __init__(self, which="params"):
        super().__init__()
        self.which = which

    @property
    def params(self):
        return None if self.which == "params" else []

    @property
    def grads(self):
        return None if self.which == "grads" else []

    def _forward(self, x):
        return x

    def _backward(self, dy, need_input_grad=True):
        return dy


@pytest.mark.parametrize("which", ["params", "grads"])
@pytest.mark.parametrize("call", ["fit", "predict", "save", "gradcheck"])
def test_a_params_property_returning_none_is_named(tmp_path, which, call):
    net = fnn.NeuralNetwork([fnn.FullyConnected(3, 4), _NoneParams(which), fnn.FullyConnected(4, 2)], seed=0)
    X, y = np.ones((4, 3), np.float32), np.array([0, 1, 0, 1])
    calls = {"fit": lambda: net.fit(X, y, epochs=1, verbose=0), "predict": lambda: net.predict(X),
             "save": lambda: net.save(tmp_path / "m.safetensors"), "gradcheck": lambda: fnn.gradcheck(net, X, y)}
    with pytest.raises(TypeError, match=rf"layers\[1\] \(_NoneParams\)\.{which} must be a list of arrays, got NoneType"):
        calls[call]()


def test_a_torch_style_custom_layer_is_refused_when_the_network_is_built():
    """A Layer subclass that implements forward/backward (torch's names) instead of _forward/_backward: one
    clear TypeError at NeuralNetwork(...), not an AttributeError at the first predict or fit."""
    class Double(fnn.Layer):
        def forward(self, x):
            return 2 * x

        def backward(self, dy):
            return 2 * dy

    class NoBackward(fnn.Layer):
        def _forward(self, x):
            return 2 * x

    for layer, missing in ((Double(), "_forward and no _backward"), (NoBackward(), "_backward")):
        with pytest.raises(TypeError, match=rf"^layers\[1\] \({type(layer).__name__}\) implements no {missing}: "):
            fnn.NeuralNetwork([fnn.FullyConnected(3, 4), layer, fnn.FullyConnected(4, 2)],
                              loss=fnn.SoftmaxCrossEntropy(), optimizer=fnn.SGD())
