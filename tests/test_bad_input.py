"""Every public entry point rejects bad input with ValueError/TypeError whose message names the argument,
before a kernel runs; training that diverges stops with TrainingDivergedError and keeps finite weights."""
import numpy as np
import pytest

import fastnn as fnn

BAD = (ValueError, TypeError)


def net4(dtype=np.float32, loss=None):
    """4 features -> 3 outputs."""
    return fnn.NeuralNetwork([fnn.FullyConnected(4, 5, dtype=dtype), fnn.ReLU(),
                              fnn.FullyConnected(5, 3, dtype=dtype)], loss=loss, seed=0)


def good(n=6, dtype=np.float32):
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, 4)).astype(dtype), rng.integers(0, 3, n)


def with_nan(a, value=np.nan):
    a = np.array(a, dtype=np.float64)
    a.flat[1] = value
    return a


# bad X for a network with 4 features; each with the error class and a word its message must contain
BAD_X = {
    "1-D": (np.ones(4), ValueError, "2-D"),
    "3-D": (np.ones((2, 2, 4)), ValueError, "2-D"),
    "scalar": (np.float64(1.0), ValueError, "2-D"),
    "wrong features": (np.ones((3, 5)), ValueError, "4 features"),
    "empty batch": (np.ones((0, 4)), ValueError, "empty"),
    "NaN": (with_nan(np.ones((3, 4))), ValueError, "NaN"),
    "Inf": (with_nan(np.ones((3, 4)), np.inf), ValueError, "infinite"),
    "-Inf": (with_nan(np.ones((3, 4)), -np.inf), ValueError, "infinite"),
    "object": (np.array([[1, 2, 3, "a"]], dtype=object), TypeError, ""),
    "complex": (np.ones((3, 4), np.complex128), TypeError, "complex"),
    "string": (np.array([["1", "2", "3", "4"]]), TypeError, ""),
    "ragged list": ([[1, 2, 3, 4], [1, 2]], TypeError, ""),
    "None": (None, TypeError, ""),
}


def assert_names(excinfo, name, extra=""):
    msg = str(excinfo.value)
    assert name in msg, f"message does not name {name!r}: {msg}"
    if extra:
        assert extra.lower() in msg.lower(), f"message does not say {extra!r}: {msg}"


@pytest.mark.parametrize("case", list(BAD_X))
@pytest.mark.parametrize("entry", ["forward", "forward_xy", "predict", "predict_proba", "evaluate", "fit",
                                   "trainer", "validation"])
def test_network_entry_points_reject_bad_X(entry, case):
    X, exc, words = BAD_X[case]
    net = net4()
    Xg, yg = good()
    n = len(X) if isinstance(X, list) or (isinstance(X, np.ndarray) and X.ndim > 0) else 1
    y = np.zeros(n, np.int64)
    before = [p.copy() for p in net.params]
    with pytest.raises(exc) as excinfo:
        if entry == "forward":
            net.forward(X)
        elif entry == "forward_xy":
            net.forward(X, y)
        elif entry == "predict":
            net.predict(X)
        elif entry == "predict_proba":
            net.predict_proba(X)
        elif entry == "evaluate":
            net.evaluate(X, y)
        elif entry == "fit":
            net.fit(X, y, epochs=1, verbose=0)
        elif entry == "trainer":
            fnn.Trainer(net, epochs=1, verbose=0).fit(X, y)
        else:
            net.fit(Xg, yg, epochs=1, verbose=0, validation_data=(X, y))
    name = "x" if entry.startswith("forward") else ("validation" if entry == "validation" else "X")
    assert_names(excinfo, name, words)
    for p, q in zip(before, net.params):               # nothing was trained
        assert np.array_equal(p, q)


BAD_Y = {
    "label too large": (np.array([0, 1, 3, 0, 1, 2]), "[0, 2]"),
    "negative label": (np.array([0, -1, 2, 0, 1, 2]), "-1"),
    "non-integer float": (np.array([0, 1.5, 2, 0, 1, 2]), "whole"),
    "NaN label": (np.array([0, np.nan, 2, 0, 1, 2]), "NaN"),
    "Inf label": (np.array([0, np.inf, 2, 0, 1, 2]), "infinite"),
    "too short": (np.array([0, 1, 2]), "rows"),
    "too long": (np.zeros(9, np.int64), "rows"),
    "one-hot wrong width": (np.eye(4)[[0, 1, 2, 3, 0, 1]], "columns"),
    "one-hot NaN": (with_nan(np.eye(3)[[0, 1, 2, 0, 1, 2]]), "NaN"),
    "negative probabilities": (np.eye(3)[[0, 1, 2, 0, 1, 2]] - 0.5, "negative"),
    "3-D": (np.zeros((6, 3, 1)), "shape"),
    "complex": (np.zeros(6, np.complex64), "complex"),
    "string": (np.array(["a", "b", "c", "a", "b", "c"]), ""),
    "object": (np.array([0, 1, None, 0, 1, 2], dtype=object), ""),
}


@pytest.mark.parametrize("case", list(BAD_Y))
@pytest.mark.parametrize("entry", ["forward_xy", "evaluate", "fit", "validation", "loss"])
def test_classification_targets_rejected(entry, case):
    y, words = BAD_Y[case]
    X, yg = good()
    net = net4()
    with pytest.raises(BAD) as excinfo:
        if entry == "forward_xy":
            net.forward(X, y)
        elif entry == "evaluate":
            net.evaluate(X, y)
        elif entry == "fit":
            net.fit(X, y, epochs=1, verbose=0)
        elif entry == "validation":
            net.fit(X, yg, epochs=1, verbose=0, validation_data=(X, y))
        else:
            fnn.SoftmaxCrossEntropy().forward(np.zeros((6, 3)), y)
    name = {"loss": "target", "validation": "validation"}.get(entry, "y")
    assert_names(excinfo, name, words)


@pytest.mark.parametrize("loss", [fnn.SoftmaxCrossEntropy, fnn.CrossEntropyLoss])
def test_classification_losses_reject_bad_targets(loss):
    pred = np.full((2, 3), 1 / 3)
    for target, words in [([0, 3], "target"), ([0, -2], "target"), ([0.5, 1], "whole"), ([0], "rows"),
                          (np.ones((2, 2)), "columns")]:
        with pytest.raises(ValueError) as excinfo:
            loss().forward(pred, np.array(target))
        assert_names(excinfo, "target", words)
    for pred_bad in (np.ones(3), np.ones((0, 3)), np.ones((2, 3), np.complex128)):
        with pytest.raises(BAD) as excinfo:
            loss().forward(pred_bad, np.array([0, 1]))
        assert_names(excinfo, "pred")


def test_regression_targets_rejected():
    net = net4(loss=fnn.L2Loss())
    X, _ = good()
    for t, words in [(np.ones((6, 2)), "shape"), (np.ones((5, 3)), "rows"), (with_nan(np.ones((6, 3))), "NaN"),
                     (np.ones(6), "shape"), (np.ones((6, 3), np.complex128), "complex")]:
        with pytest.raises(BAD) as excinfo:
            net.forward(X, t)
        assert_names(excinfo, "y", words)
        with pytest.raises(BAD) as excinfo:
            fnn.L2Loss().forward(np.ones((6, 3)), t)
        assert_names(excinfo, "target", words)


# ------------------------------------------------------------------------------------------------ layers
@pytest.mark.parametrize("case", ["1-D", "3-D", "wrong features", "empty batch", "object", "complex", "string",
                                  "ragged list", "None"])
def test_fully_connected_forward_rejects_bad_x(case):
    X, exc, words = BAD_X[case]
    with pytest.raises(exc) as excinfo:
        fnn.FullyConnected(4, 2).forward(X)
    assert_names(excinfo, "x", words)


@pytest.mark.parametrize("layer", [fnn.ReLU, fnn.Sigmoid, fnn.TanH, fnn.SoftMax])
@pytest.mark.parametrize("case", ["1-D", "3-D", "empty batch", "object", "complex", "string"])
def test_activation_forward_rejects_bad_x(layer, case):
    X, exc, words = BAD_X[case]
    with pytest.raises(exc) as excinfo:
        layer().forward(X)
    assert_names(excinfo, "x", words)


@pytest.mark.parametrize("layer", [lambda: fnn.FullyConnected(4, 3), fnn.ReLU, fnn.TanH, fnn.SoftMax])
def test_layer_backward_rejects_wrong_dy(layer):
    layer = layer()
    layer.forward(np.ones((2, 4), np.float32) if hasattr(layer, "in_features") else np.ones((2, 3), np.float32))
    for dy in (np.ones((3, 3)), np.ones((2, 5)), np.ones(3), np.ones((2, 3), np.complex64)):
        with pytest.raises(BAD) as excinfo:
            layer.backward(dy)
        assert_names(excinfo, "dy")


# -------------------------------------------------------------------------------------- constructors
FC_BAD_ARGS = [
    (dict(in_features=0, out_features=3), "in_features"),
    (dict(in_features=-2, out_features=3), "in_features"),
    (dict(in_features=2.5, out_features=3), "in_features"),
    (dict(in_features=True, out_features=3), "in_features"),
    (dict(in_features="4", out_features=3), "in_features"),
    (dict(in_features=4, out_features=0), "out_features"),
    (dict(in_features=4, out_features=None), "out_features"),
    (dict(in_features=4, out_features=3, dtype=int), "dtype"),
    (dict(in_features=4, out_features=3, dtype=np.float16), "dtype"),
    (dict(in_features=4, out_features=3, dtype=np.complex128), "dtype"),
    (dict(in_features=4, out_features=3, dtype="foo"), "dtype"),
    (dict(in_features=4, out_features=3, dtype="not a dtype"), "dtype"),
    (dict(in_features=4, out_features=3, init="foo"), "init"),
    (dict(in_features=4, out_features=3, init=None), "init"),
]


@pytest.mark.parametrize("kwargs,name", FC_BAD_ARGS,
                         ids=[", ".join(f"{k}={v!r}" for k, v in kw.items() if k in (n, "dtype", "init"))
                              for kw, n in FC_BAD_ARGS])
def test_fully_connected_constructor_rejects(kwargs, name):
    with pytest.raises(BAD) as excinfo:
        fnn.FullyConnected(**kwargs)
    assert_names(excinfo, name)


@pytest.mark.parametrize("make,name", [
    (lambda: fnn.SGD(lr=-1), "lr"),
    (lambda: fnn.SGD(lr=0), "lr"),
    (lambda: fnn.SGD(lr=np.nan), "lr"),
    (lambda: fnn.SGD(lr=np.inf), "lr"),
    (lambda: fnn.SGD(lr="0.1"), "lr"),
    (lambda: fnn.SGD(lr=0.1, momentum=1.5), "momentum"),
    (lambda: fnn.SGD(lr=0.1, momentum=1.0), "momentum"),
    (lambda: fnn.SGD(lr=0.1, momentum=-0.1), "momentum"),
    (lambda: fnn.Adam(lr=-1), "lr"),
    (lambda: fnn.Adam(beta1=1.0), "beta1"),
    (lambda: fnn.Adam(beta1=-0.5), "beta1"),
    (lambda: fnn.Adam(beta2=1.5), "beta2"),
    (lambda: fnn.Adam(eps=-1e-8), "eps"),
    (lambda: fnn.Adam(eps=np.nan), "eps"),
])
def test_optimizer_constructor_rejects(make, name):
    with pytest.raises(BAD) as excinfo:
        make()
    assert_names(excinfo, name)


@pytest.mark.parametrize("kwargs,name", [
    (dict(batch_size=0), "batch_size"),
    (dict(batch_size=-5), "batch_size"),
    (dict(batch_size=2.5), "batch_size"),
    (dict(epochs=0), "epochs"),
    (dict(epochs=-1), "epochs"),
    (dict(epochs=1.5), "epochs"),
])
@pytest.mark.parametrize("via", ["fit", "trainer"])
def test_training_arguments_rejected(kwargs, name, via):
    net = net4()
    X, y = good()
    args = dict(batch_size=4, epochs=1, verbose=0)
    args.update(kwargs)
    with pytest.raises(BAD) as excinfo:
        if via == "fit":
            net.fit(X, y, **args)
        else:
            fnn.Trainer(net, **args).fit(X, y)
    assert_names(excinfo, name)


def test_validation_data_must_be_a_pair():
    net = net4()
    X, y = good()
    for bad in [X, (X,), (X, y, y), 5]:
        with pytest.raises(BAD) as excinfo:
            net.fit(X, y, epochs=1, verbose=0, validation_data=bad)
        assert_names(excinfo, "validation_data")


def test_trainer_rejects_non_network():
    with pytest.raises(TypeError) as excinfo:
        fnn.Trainer(fnn.FullyConnected(2, 2))
    assert_names(excinfo, "net")


def test_network_constructor_rejects_bad_layers():
    with pytest.raises(ValueError) as excinfo:             # 4 -> 5 followed by a layer expecting 6
        fnn.NeuralNetwork([fnn.FullyConnected(4, 5), fnn.ReLU(), fnn.FullyConnected(6, 3)])
    assert_names(excinfo, "layers[2]")
    with pytest.raises(ValueError) as excinfo:
        fnn.NeuralNetwork([])
    assert_names(excinfo, "layers")
    with pytest.raises(TypeError) as excinfo:
        fnn.NeuralNetwork([fnn.FullyConnected(4, 5), "relu"])
    assert_names(excinfo, "layers[1]")
    with pytest.raises(TypeError) as excinfo:
        fnn.NeuralNetwork([fnn.FullyConnected(4, 5)], loss="mse")
    assert_names(excinfo, "loss")
    with pytest.raises(TypeError) as excinfo:
        fnn.NeuralNetwork([fnn.FullyConnected(4, 5)], optimizer="sgd")
    assert_names(excinfo, "optimizer")
    with pytest.raises(ValueError) as excinfo:
        fnn.NeuralNetwork([fnn.ReLU()])
    assert "FullyConnected" in str(excinfo.value)


def test_network_rejects_mixed_dtypes():
    with pytest.raises(ValueError) as excinfo:
        fnn.NeuralNetwork([fnn.FullyConnected(4, 5, dtype=np.float32), fnn.ReLU(),
                           fnn.FullyConnected(5, 3, dtype=np.float64)])
    assert_names(excinfo, "dtype")
    assert "float32" in str(excinfo.value) and "float64" in str(excinfo.value)


def test_float64_input_to_float32_network_is_converted_not_rejected():
    net = net4(np.float32)
    X, y = good(5, np.float64)
    out = net.forward(X)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, net.forward(X.astype(np.float32)))
    assert np.isfinite(net.forward(X, y))


def test_perceptron_rejects_bad_input():
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], float)
    with pytest.raises(ValueError) as excinfo:
        fnn.Perceptron(0)
    assert_names(excinfo, "n_features")
    with pytest.raises(ValueError) as excinfo:
        fnn.Perceptron(2, lr=-1)
    assert_names(excinfo, "lr")
    p = fnn.Perceptron(2)
    with pytest.raises(RuntimeError):
        p.predict(X)
    with pytest.raises(ValueError) as excinfo:
        p.fit(X, [0, 1, 2, 0])
    assert_names(excinfo, "y", "two classes")
    with pytest.raises(ValueError) as excinfo:
        p.fit(X, [0, 1, 1])
    assert_names(excinfo, "y")
    with pytest.raises(ValueError) as excinfo:
        p.fit(np.ones((4, 3)), [0, 1, 1, 0])
    assert_names(excinfo, "X")
    with pytest.raises(ValueError) as excinfo:
        p.fit(with_nan(X), [0, 1, 1, 0])
    assert_names(excinfo, "X", "NaN")
    with pytest.raises(ValueError) as excinfo:
        p.fit(X, [0, 1, 1, 0], epochs=0)
    assert_names(excinfo, "epochs")


def test_gradient_tools_reject_bad_input():
    with pytest.raises(TypeError) as excinfo:
        fnn.numerical_gradient(lambda a: 0.0, [1.0, 2.0])
    assert_names(excinfo, "x")
    with pytest.raises(TypeError) as excinfo:
        fnn.numerical_gradient(lambda a: 0.0, np.array([1, 2]))
    assert_names(excinfo, "x")
    frozen = np.ones(3)
    frozen.flags.writeable = False
    with pytest.raises(ValueError) as excinfo:
        fnn.numerical_gradient(lambda a: 0.0, frozen)
    assert_names(excinfo, "x")
    with pytest.raises(TypeError):
        fnn.gradcheck("not a layer", np.ones((2, 2)))
    with pytest.raises(ValueError) as excinfo:
        fnn.gradcheck(fnn.FullyConnected(3, 2, dtype=np.float64), np.ones((2, 4)))
    assert_names(excinfo, "x")


def test_set_num_threads_rejects_bad_counts():
    import numba
    before = numba.get_num_threads()
    for bad in (0, -1, 1.5, "2", None):
        with pytest.raises(BAD) as excinfo:
            fnn.set_num_threads(bad)
        assert_names(excinfo, "n")
    assert numba.get_num_threads() == before


# ------------------------------------------------------------------------------------------- divergence
def _digits_like(seed=0, n=200, scale=100.0):
    """64 pixel intensities 0..16 (like the 8x8 digits), scaled up, 10 classes."""
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 17, (n, 64)) * scale).astype(np.float32), rng.integers(0, 10, n)


def _diverging_net(arch, lr):
    if arch == "fusable":           # FullyConnected layers + softmax-CE + SGD: what the fused epoch covers
        layers = [fnn.FullyConnected(64, 32), fnn.FullyConnected(32, 10)]
        return fnn.NeuralNetwork(layers, optimizer=fnn.SGD(lr=lr), seed=0), "classification"
    # two activations in a row: only the per-layer path can train this one; L2 regression
    layers = [fnn.FullyConnected(64, 32), fnn.TanH(), fnn.TanH(), fnn.FullyConnected(32, 1)]
    return fnn.NeuralNetwork(layers, loss=fnn.L2Loss(), optimizer=fnn.SGD(lr=lr), seed=0), "regression"


@pytest.mark.parametrize("arch", ["fusable", "per-layer"])
@pytest.mark.parametrize("lr", [1e6, 1e37])
def test_divergence_raises_and_keeps_last_finite_weights(arch, lr):
    X, labels = _digits_like()
    net, kind = _diverging_net(arch, lr)
    y = labels if kind == "classification" else labels[:, None].astype(np.float32)
    batch_size = 32
    with pytest.raises(fnn.TrainingDivergedError) as excinfo:
        net.fit(X, y, epochs=20, batch_size=batch_size, shuffle=False, verbose=0)
    err = excinfo.value
    assert isinstance(err, RuntimeError)
    msg = str(err)
    assert f"epoch {err.epoch}" in msg and f"batch {err.batch}" in msg, msg
    assert err.epoch >= 1 and err.batch >= 1
    for i, p in enumerate(net.params):
        assert np.isfinite(p).all(), f"parameter {i} is not finite after divergence: {msg}"
    # the weights are those of the last finite step: replay the batches before the failing one
    replay, _ = _diverging_net(arch, lr)
    batches_per_epoch = -(-len(X) // batch_size)
    done = (err.epoch - 1) * batches_per_epoch + err.batch - 1
    for b in range(done):
        start = (b % batches_per_epoch) * batch_size
        replay.forward(X[start:start + batch_size], y[start:start + batch_size])
        replay.backward()
        replay.step()
    for p, q in zip(net.params, replay.params):
        np.testing.assert_allclose(p, q, rtol=1e-5)
    # and the error keeps the history of the completed epochs
    if err.history is not None:
        assert len(err.history["loss"]) == err.epoch - 1


def test_training_on_sane_data_does_not_raise_divergence():
    X, labels = _digits_like(scale=1 / 16)
    net, _ = _diverging_net("fusable", 0.05)
    history = net.fit(X, labels, epochs=3, batch_size=32, verbose=0)
    assert all(np.isfinite(history["loss"]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("class_weight,sample_weight,word", [
    ({0: 1e39, 1: 1.0, 2: 1.0}, None, "class_weight"),          # beyond float32 (float64 too: 1e309 is inf)
    ({0: 0.0, 1: 0.0, 2: 0.0}, None, "class_weight"),           # all zero
    ({0: 1e30, 1: 1e30, 2: 1e30}, "huge", "class_weight"),      # finite each, their product overflows
    ({0: 1.0, 1: 1.0, 2: 1.0}, "zero", "sample_weight"),        # the sample weights' own fault
])
def test_class_weight_errors_name_class_weight(dtype, class_weight, sample_weight, word):
    """Issue 20 minor: errors caused by class_weight name class_weight, not sample_weight."""
    X, y = good(12, dtype)
    if dtype == np.float64 and class_weight[0] == 1e39:
        class_weight = {0: np.finfo(np.float64).max, 1: 1.0, 2: 1.0}
        sample_weight = "huge"
    w = {None: None, "huge": np.full(12, 1e30 if dtype == np.float32 else 1e300), "zero": np.zeros(12)}[sample_weight]
    with pytest.raises(ValueError, match=word):
        net4(dtype).fit(X, y, epochs=1, verbose=0, class_weight=class_weight, sample_weight=w)


@pytest.mark.parametrize("n", [2 ** 64, 2 ** 62, 10 ** 15])
def test_perceptron_too_large_is_refused_by_the_memory_guard(n):
    """L8: the same guard as FullyConnected (fastnn._memory), a ValueError, not numpy's dimension error."""
    from fastnn._memory import TooLargeError
    with pytest.raises(TooLargeError, match="Perceptron with .* features .* bytes"):
        fnn.Perceptron(n)
    assert issubclass(TooLargeError, ValueError)
