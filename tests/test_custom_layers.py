"""Custom layers (issue 12 item 3): ``fastnn.register_layer`` makes a Layer subclass savable and loadable;
an unregistered one is refused at save / fit(checkpoint=) with a hint, never at load."""
import json
import re

import numpy as np
import pytest

import fastnn as fnn
from fastnn import io as fio
from fastnn.layers import LAYER_TYPES


@pytest.fixture(autouse=True)
def _registry():
    """Every test leaves the layer registry as it found it."""
    saved = dict(LAYER_TYPES)
    yield
    LAYER_TYPES.clear()
    LAYER_TYPES.update(saved)


class LearnedScale(fnn.Layer):
    """y = x * scale (a learned per-feature scale): parameters outside the network's flat buffer."""

    def __init__(self, features, dtype="float32", start=1.0):
        super().__init__()
        self.features, self.dtype, self.start = features, np.dtype(dtype), start
        self.scale = np.full(features, start, self.dtype)
        self.grad_scale = np.zeros(features, self.dtype)

    params = property(lambda self: [self.scale])
    grads = property(lambda self: [self.grad_scale])

    def _forward(self, x):
        self._in = x
        self._out = x * self.scale
        return self._out

    def _backward(self, dy, need_input_grad=True):
        self.grad_scale[...] = (dy * self._in).sum(axis=0)
        return dy * self.scale

    def config(self):
        return {"features": self.features, "dtype": self.dtype.name, "start": self.start}


def _net(layer_cls=LearnedScale, dtype=np.float32, optimizer=None):
    return fnn.NeuralNetwork([fnn.FullyConnected(4, 6, dtype=dtype), layer_cls(6, dtype=np.dtype(dtype).name),
                              fnn.ReLU(), fnn.FullyConnected(6, 3, dtype=dtype)],
                             optimizer=optimizer or fnn.Adam(lr=0.01), seed=0)


def _data(dtype=np.float32):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((40, 4)).astype(dtype)
    return X, (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_registered_layer_round_trips_params_and_optimizer_state(tmp_path, dtype):
    fnn.register_layer(LearnedScale)
    net = _net(dtype=dtype)
    X, y = _data(dtype)
    net.fit(X, y, epochs=3, batch_size=8, verbose=0)
    assert not np.all(net.layers[1].scale == 1)          # the custom parameter was trained
    net.save(tmp_path / "m.safetensors")
    back = fnn.load(tmp_path / "m.safetensors")
    assert type(back.layers[1]) is LearnedScale and back.layers[1].config() == net.layers[1].config()
    np.testing.assert_array_equal(back.layers[1].scale, net.layers[1].scale)
    np.testing.assert_array_equal(back.predict_proba(X), net.predict_proba(X))
    for mine, theirs in zip(net.optimizer.state, back.optimizer.state):   # the custom param's moments too
        for a, b in zip(mine, theirs):
            np.testing.assert_array_equal(a, b)
    # training continues identically from the file (the optimizer state of the custom param included)
    net.fit(X, y, epochs=1, batch_size=8, verbose=0, shuffle=False)
    back.fit(X, y, epochs=1, batch_size=8, verbose=0, shuffle=False)
    np.testing.assert_array_equal(back.layers[1].scale, net.layers[1].scale)


def test_decorator_form_registers_and_returns_the_class(tmp_path):
    @fnn.register_layer
    class Doubler(fnn.Layer):
        def _forward(self, x):
            self._out = 2 * x
            return self._out

        def _backward(self, dy, need_input_grad=True):
            return 2 * dy

    assert LAYER_TYPES["Doubler"] is Doubler and fnn.register_layer(Doubler) is Doubler   # idempotent
    net = fnn.NeuralNetwork([fnn.FullyConnected(3, 2), Doubler()], loss=fnn.L2Loss(), seed=0)
    net.save(tmp_path / "d.safetensors")
    X = np.ones((2, 3), np.float32)
    np.testing.assert_array_equal(fnn.load(tmp_path / "d.safetensors").predict(X), net.predict(X))


def test_unregistered_layer_is_refused_at_save_with_the_way_to_register(tmp_path):
    net = _net()
    path = tmp_path / "m.safetensors"
    with pytest.raises(ValueError, match=r"layers\[1\].*LearnedScale.*not registered.*"
                                         r"fastnn\.register_layer\(LearnedScale\)"):
        net.save(path)
    assert not path.exists() and list(tmp_path.iterdir()) == []


def test_unregistered_layer_is_refused_before_a_checkpointed_fit(tmp_path):
    net = _net()
    X, y = _data()
    with pytest.raises(ValueError, match=r"checkpoint=.*register_layer\(LearnedScale\)"):
        net.fit(X, y, epochs=1, verbose=0, checkpoint=tmp_path / "c.ckpt")
    assert not (tmp_path / "c.ckpt").exists()
    fnn.register_layer(LearnedScale)
    net.fit(X, y, epochs=2, batch_size=8, verbose=0, checkpoint=tmp_path / "c.ckpt")
    back = fnn.load(tmp_path / "c.ckpt")
    np.testing.assert_array_equal(back.layers[1].scale, net.layers[1].scale)


def test_loading_an_unregistered_type_names_it_and_says_how_to_register(tmp_path):
    fnn.register_layer(LearnedScale)
    _net().save(tmp_path / "m.safetensors")
    del LAYER_TYPES["LearnedScale"]                     # a fresh process that did not import the definition
    with pytest.raises(ValueError, match=r"unknown type 'LearnedScale'.*fastnn\.register_layer\(LearnedScale\) "
                                         r"before loading"):
        fnn.load(tmp_path / "m.safetensors")


def test_name_clashes_are_refused():
    class ReLU(fnn.Layer):          # fastnn's own name
        pass

    with pytest.raises(ValueError, match="'ReLU' is taken by fastnn's built-in layer.*rename"):
        fnn.register_layer(ReLU)
    assert LAYER_TYPES["ReLU"] is fnn.ReLU

    fnn.register_layer(LearnedScale)
    other = type("LearnedScale", (fnn.Layer,), {"__module__": "somewhere.else"})
    with pytest.raises(ValueError, match="'LearnedScale' is taken by the registered layer .*LearnedScale"):
        fnn.register_layer(other)
    assert LAYER_TYPES["LearnedScale"] is LearnedScale


def test_a_redefinition_of_the_same_class_replaces_it():
    """Re-running a notebook cell defines a new class object with the same module and qualified name."""
    def define():
        class Cell(fnn.Layer):
            pass
        return Cell

    first, second = define(), define()
    fnn.register_layer(first)
    fnn.register_layer(second)
    assert LAYER_TYPES["Cell"] is second


@pytest.mark.parametrize("bad", [LearnedScale(3), "LearnedScale", fnn.Layer, int, None])
def test_register_layer_needs_a_layer_subclass(bad):
    with pytest.raises(TypeError, match="register_layer needs a subclass of fastnn.Layer"):
        fnn.register_layer(bad)


def test_a_layer_that_cannot_be_rebuilt_from_its_config_is_refused_at_save(tmp_path):
    class Forgetful(LearnedScale):
        def config(self):                    # forgets "features": the constructor needs it
            return {"dtype": self.dtype.name}

    class Unshaped(LearnedScale):
        def config(self):                    # rebuilds, but with params of another shape
            return {"features": 2, "dtype": self.dtype.name}

    class Opaque(LearnedScale):
        def config(self):
            return {"features": self.features, "dtype": self.dtype.name, "start": object()}

    for cls, message in ((Forgetful, r"cannot be rebuilt as Forgetful\(\*\*config\(\)\).*features"),
                         (Unshaped, r"rebuilt from its config\(\) has params"),
                         (Opaque, r"config\(\) is not JSON-serialisable")):
        fnn.register_layer(cls)
        with pytest.raises(ValueError, match=message):
            _net(cls).save(tmp_path / "m.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_params_that_are_copies_are_caught_at_load(tmp_path):
    @fnn.register_layer
    class Copying(LearnedScale):
        params = property(lambda self: [self.scale.copy()])

    net = _net(Copying)
    net.layers[1].scale[...] = 3.0
    net.save(tmp_path / "m.safetensors")
    with pytest.raises(ValueError, match="params must return the layer's own arrays"):
        fnn.load(tmp_path / "m.safetensors")


def test_custom_loss_and_optimizer_are_refused_at_save(tmp_path):
    class MyLoss(fnn.SoftmaxCrossEntropy):
        pass

    class MyOpt(fnn.SGD):
        pass

    net = fnn.NeuralNetwork([fnn.FullyConnected(3, 2)], loss=MyLoss(), seed=0)
    with pytest.raises(ValueError, match="the loss is .*MyLoss, a custom class.*SoftmaxCrossEntropy"):
        net.save(tmp_path / "m.safetensors")
    net = fnn.NeuralNetwork([fnn.FullyConnected(3, 2)], optimizer=MyOpt(), seed=0)
    with pytest.raises(ValueError, match="the optimizer is .*MyOpt, a custom class.*AdamW"):
        net.save(tmp_path / "m.safetensors")


def test_the_file_holds_params_as_tensors_and_config_as_json(tmp_path):
    fnn.register_layer(LearnedScale)
    net = _net()
    net.layers[1].scale[...] = np.arange(6)
    net.save(tmp_path / "m.safetensors")
    meta = fio.load_metadata(tmp_path / "m.safetensors")
    assert meta["architecture"]["layers"][1] == ["LearnedScale", {"features": 6, "dtype": "float32", "start": 1.0}]
    import safetensors.numpy
    tensors = safetensors.numpy.load_file(str(tmp_path / "m.safetensors"))
    np.testing.assert_array_equal(tensors["layers.1.0"], np.arange(6, dtype=np.float32))
    json.dumps(meta)


# -- what a custom layer returns is checked before any kernel sees it (issue 20 item 2) ----------------
def _bad(kind, x, dtype):
    """A wrong return value of the given kind for input x (batch, features) of a ``dtype`` network."""
    n, m = x.shape
    other = np.float64 if dtype == np.float32 else np.float32
    return {"wider": lambda: np.zeros((n, m + 1), dtype), "much wider": lambda: np.zeros((n, 300_000), dtype),
            "narrower": lambda: np.zeros((n, m - 1), dtype), "row dropped": lambda: np.zeros((n - 1, m), dtype),
            "other dtype": lambda: np.zeros((n, m), other), "int": lambda: np.zeros((n, m), np.int64),
            "3-D": lambda: np.zeros((n, m, 1), dtype), "list": lambda: np.zeros((n, m), dtype).tolist(),
            "None": lambda: None, "1-D": lambda: np.zeros(n * m, dtype)}[kind]()


class Misbehaving(fnn.Layer):
    """Returns ``kind`` from forward (where="forward") or from backward (where="backward")."""

    def __init__(self, kind, where="forward"):
        super().__init__()
        self.kind, self.where = kind, where

    def _forward(self, x):
        self._in = x
        return _bad(self.kind, x, x.dtype) if self.where == "forward" else x.copy()

    def _backward(self, dy, need_input_grad=True):
        return _bad(self.kind, self._in, dy.dtype) if self.where == "backward" else dy.copy()


BAD_KINDS = ["wider", "much wider", "narrower", "row dropped", "other dtype", "int", "3-D", "list", "None", "1-D"]


def _net_around(layer, dtype=np.float32):
    return fnn.NeuralNetwork([fnn.FullyConnected(5, 6, dtype=dtype), fnn.ReLU(), layer,
                              fnn.FullyConnected(6, 3, dtype=dtype)], optimizer=fnn.SGD(lr=0.1), seed=0)


CALLS = {
    "predict": lambda net, X, y: net.predict(X),
    "predict_proba": lambda net, X, y: net.predict_proba(X),
    "evaluate": lambda net, X, y: net.evaluate(X, y),
    "fit": lambda net, X, y: net.fit(X, y, epochs=1, batch_size=8, verbose=0),
    "forward": lambda net, X, y: net.forward(X),
    "forward(x, y) + backward": lambda net, X, y: (net.forward(X, y), net.backward()),
    "gradcheck": lambda net, X, y: fnn.gradcheck(net, X, y),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("where", ["forward", "backward"])
@pytest.mark.parametrize("kind", BAD_KINDS)
def test_a_custom_layers_wrong_output_is_refused_naming_the_layer(kind, where, dtype):
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((16, 5)).astype(dtype), rng.integers(0, 3, 16)
    for call_name, call in CALLS.items():
        if where == "backward" and call_name in ("predict", "predict_proba", "evaluate", "forward"):
            continue
        net = _net_around(Misbehaving(kind, where), dtype)
        before = net.plan().params.copy()
        with pytest.raises((TypeError, ValueError)) as info:
            call(net, X, y)
        message = str(info.value)
        assert f"layers[2] (Misbehaving).{where}" in message, (call_name, message)
        assert re.search(r"shape \((16|8), 6\)", message), (call_name, message)     # the expected shape
        assert call_name == "gradcheck" or np.array_equal(net.plan().params, before), call_name


@pytest.mark.parametrize("where", ["forward", "backward"])
def test_a_custom_layers_fortran_or_nan_output(where):
    """Fortran order is converted (nothing wrong with the values); NaN from predict is refused, and NaN in
    training stops as divergence does, keeping the weights."""
    class Odd(fnn.Layer):
        def __init__(self, nan):
            super().__init__()
            self.nan = nan

        def _forward(self, x):
            out = np.asfortranarray(x * 2)
            if self.nan and where == "forward":
                out[0, 0] = np.nan
            return out

        def _backward(self, dy, need_input_grad=True):
            out = np.asfortranarray(dy * 2)
            if self.nan and where == "backward":
                out[0, 0] = np.nan
            return out

    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((16, 5)).astype(np.float32), rng.integers(0, 3, 16)
    net, twin = _net_around(Odd(False)), _net_around(Identity2())
    twin_params = twin.plan().params
    twin_params[:] = net.plan().params
    twin.layers[2].factor = 2.0
    np.testing.assert_array_equal(net.predict_proba(X), twin.predict_proba(X))
    net.fit(X, y, epochs=1, batch_size=8, verbose=0, shuffle=False)
    twin.fit(X, y, epochs=1, batch_size=8, verbose=0, shuffle=False)
    np.testing.assert_array_equal(net.plan().params, twin.plan().params)
    bad = _net_around(Odd(True))
    if where == "forward":
        with pytest.raises(ValueError, match=r"layers\[2\] \(Odd\).forward returned NaN"):
            bad.predict(X)
    with pytest.raises(fnn.TrainingDivergedError):      # the weights of the last finite step are kept
        bad.fit(X, y, epochs=1, batch_size=8, verbose=0)
    assert np.isfinite(bad.plan().params).all()


class Identity2(fnn.Layer):
    def __init__(self):
        super().__init__()
        self.factor = 1.0

    def _forward(self, x):
        return x * self.factor

    def _backward(self, dy, need_input_grad=True):
        return dy * self.factor


@pytest.mark.parametrize("change", ["read-only", "float64", "strided", "list", "shape"])
def test_a_custom_layers_parameters_are_checked_before_the_optimizer_writes_them(change):
    layer = LearnedScale(6)
    net = fnn.NeuralNetwork([fnn.FullyConnected(5, 6), layer, fnn.FullyConnected(6, 3)], optimizer=fnn.Adam(),
                            seed=0)
    if change == "read-only":
        layer.scale.setflags(write=False)
    elif change == "float64":
        layer.scale = layer.scale.astype(np.float64)
    elif change == "strided":
        layer.scale = np.ones(12, np.float32)[::2]
    elif change == "list":
        layer.scale = [1.0] * 6
    else:
        layer.scale = np.ones(7, np.float32)
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((16, 5)).astype(np.float32), rng.integers(0, 3, 16)
    with pytest.raises(ValueError, match=r"layers\[1\] \(LearnedScale\)"):
        net.fit(X, y, epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"layers\[1\] \(LearnedScale\)"):
        net.forward(X, y)
        net.backward()
        net.step()


@pytest.mark.parametrize("position", [0, 2])
def test_a_custom_layer_cannot_overwrite_its_input(position):
    """Its input is the caller's data (first layer) or the buffer the layer before needs for backward: a
    custom layer gets it read-only, so writing into it raises instead of corrupting data or gradients."""
    class InPlace(fnn.Layer):
        def _forward(self, x):
            x *= 2
            return x

        def _backward(self, dy, need_input_grad=True):
            return dy * 2

    layers = [fnn.FullyConnected(5, 5), fnn.ReLU(), fnn.FullyConnected(5, 3)]
    layers.insert(position, InPlace())
    net = fnn.NeuralNetwork(layers, seed=0)
    X = np.random.default_rng(0).standard_normal((8, 5)).astype(np.float32)
    kept = X.copy()
    for call in (net.predict, lambda X: net.fit(X, np.zeros(8, int), epochs=1, verbose=0)):
        with pytest.raises(ValueError, match="read-only"):
            call(X)
    np.testing.assert_array_equal(X, kept)


def test_a_custom_layer_whose_declared_widths_change_is_refused():
    class Declared(fnn.Layer):
        def __init__(self):
            super().__init__()
            self.in_features, self.out_features = 3, 3

        def _forward(self, x):
            return x * 1

        def _backward(self, dy, need_input_grad=True):
            return dy * 1

    last = Declared()
    net = fnn.NeuralNetwork([fnn.FullyConnected(4, 3), last], seed=0)
    X, y = np.ones((5, 4), np.float32), np.zeros(5, int)
    net.fit(X, y, epochs=1, verbose=0)
    last.out_features = 1_000_000
    for call in (lambda: net.fit(X, y, epochs=1, verbose=0), lambda: net.predict(X)):
        with pytest.raises(ValueError, match="outputs"):
            call()
