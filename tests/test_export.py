"""Export (issue 12 item 4): ONNX (net.export_onnx, the estimators, `fastnn export`) and fnn.to_torch.

Tolerances come from the dtype: these networks are a few layers of width <= 16 with values of order one, so
two correct implementations (different summation orders, vectorised transcendental functions) differ by a
few dozen ulps at most: ``ONNX_ULPS`` and ``TORCH_ULPS`` machine epsilons, relative and absolute.
"""
import os
import sys

import numpy as np
import pytest

import fastnn as fnn
from fastnn import export, layers as fnn_layers
from fastnn.layers import LAYER_TYPES

ONNX_ULPS = 100     # float32: 1.2e-5, the 1e-5 budget; float64: 2.2e-14
TORCH_ULPS = 16     # float32: 1.9e-6 (the 1e-6 is ~8 ulps); float64: 3.6e-15 (< 1e-12)
DTYPES = [np.float32, np.float64]
CONFIGS = {"LeakyReLU": [{"negative_slope": 0.2}], "ELU": [{"alpha": 0.7}],
           "GELU": [{"approximate": "none"}, {"approximate": "tanh"}], "Dropout": [{"p": 0.3}]}


def tol(dtype, ulps):
    return ulps * float(np.finfo(dtype).eps)


def _ort():
    pytest.importorskip("onnx", reason="ONNX export tests need onnx: pip install 'fastnn[onnx]'")
    return pytest.importorskip("onnxruntime", reason="ONNX export tests need onnxruntime: pip install 'fastnn[onnx]'")


def run_onnx(path, X):
    ort = _ort()
    session = ort.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
    return {o.name: v for o, v in zip(session.get_outputs(), session.run(None, {"input": X}))}


def _data(n, features, dtype, seed=0):
    return np.random.default_rng(seed).standard_normal((n, features)).astype(dtype)


def _net(dtype, loss, hidden=(fnn.ReLU, fnn.TanH, fnn.Sigmoid), n_out=3, last=()):
    """5 -> 8 -> ... -> n_out: one FullyConnected + activation per entry of ``hidden``, then ``last``."""
    stack, width = [], 5
    for act in hidden:
        stack += [fnn.FullyConnected(width, 8, init="xavier", dtype=dtype), act()]
        width = 8
    stack += [fnn.FullyConnected(width, n_out, init="xavier", dtype=dtype), *last]
    return fnn.NeuralNetwork(stack, loss=loss, seed=3)


def _assert_labels(labels, expected, margin_ok):
    """Labels must agree wherever the decision is clear of rounding (a near-tie may round either way)."""
    assert margin_ok.mean() > 0.9
    np.testing.assert_array_equal(np.asarray(labels)[margin_ok], np.asarray(expected)[margin_ok])


def _softmax_margin(out, t):
    top = np.sort(out, axis=1)
    return top[:, -1] - top[:, -2] > 4 * t


HEADS = {  # name: (loss, final layers, outputs)
    "softmax": (fnn.SoftmaxCrossEntropy, (), 3),
    "sigmoid-binary": (fnn.SigmoidCrossEntropy, (), 1),
    "sigmoid-multilabel": (fnn.SigmoidCrossEntropy, (), 3),
    "probabilities": (fnn.CrossEntropyLoss, (fnn.SoftMax,), 3),
    "regression": (fnn.L2Loss, (), 2),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("head", sorted(HEADS))
def test_onnxruntime_reproduces_predict_and_predict_proba(tmp_path, head, dtype):
    _ort()
    loss, last, n_out = HEADS[head]
    net = _net(dtype, loss(), n_out=n_out, last=[cls() for cls in last])
    path = net.export_onnx(tmp_path / "m.onnx")
    assert path == os.fspath(tmp_path / "m.onnx")
    X = _data(64, 5, dtype, seed=1) * 3
    got, t = run_onnx(path, X), tol(dtype, ONNX_ULPS)
    out = net.forward(X)
    raw = "logits" if head in ("softmax", "sigmoid-binary", "sigmoid-multilabel") else "output"
    assert set(got) == ({raw} if head == "regression" else {raw, "probabilities", "label"})
    assert got[raw].dtype == dtype and got[raw].shape == out.shape
    np.testing.assert_allclose(got[raw], out, rtol=t, atol=t)
    if head == "regression":
        np.testing.assert_allclose(got["output"], net.predict(X), rtol=t, atol=t)
        return
    np.testing.assert_allclose(got["probabilities"], net.predict_proba(X), rtol=t, atol=t)
    assert got["label"].dtype == np.int64 and got["label"].shape == net.predict(X).shape
    clear = (np.abs(out) > 4 * t).all(axis=1) if head.startswith("sigmoid") else _softmax_margin(out, t)
    _assert_labels(got["label"], net.predict(X), clear)


def _activation_layer(name, config):
    cls = LAYER_TYPES.get(name)
    assert cls is not None and cls.__module__ == fnn_layers.__name__, \
        f"the export tables translate {name}, which is not one of fastnn's layers"
    return cls(**config)


def _activation_cases():
    return [(name, config) for name in sorted(export.ONNX_LAYERS) for config in CONFIGS.get(name, [{}])]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name, config", _activation_cases())
def test_every_activation_layer_exports_to_onnx(tmp_path, name, config, dtype):
    _ort()
    layer = _activation_layer(name, config)
    net = fnn.NeuralNetwork([fnn.FullyConnected(5, 8, init="xavier", dtype=dtype), layer,
                             fnn.FullyConnected(8, 3, init="xavier", dtype=dtype)], seed=2)
    net.export_onnx(tmp_path / "m.onnx")
    X = _data(50, 5, dtype) * 3
    # onnxruntime has no float64 Erf: the exact GELU is evaluated in float32 in a float64 graph
    t = tol(np.float32 if (name == "GELU" and config.get("approximate") != "tanh") else dtype, ONNX_ULPS)
    got = run_onnx(tmp_path / "m.onnx", X)
    np.testing.assert_allclose(got["logits"], net.forward(X), rtol=t, atol=t)
    np.testing.assert_allclose(got["probabilities"], net.predict_proba(X), rtol=t, atol=t)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name, config", _activation_cases())
def test_each_onnx_table_entry_equals_its_torch_module(name, config, dtype):
    """Every translation, also for layers this fastnn may not have yet, against torch.nn (DESIGN: each
    activation as torch.nn defines it), on inputs of either sign up to |x| = 30."""
    ort = _ort()
    torch = pytest.importorskip("torch", reason="needs torch")
    from onnx import helper
    g = export.OnnxGraph(dtype)
    g.op("Identity", export.ONNX_LAYERS[name](g, "input", config), out="y")
    kind = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    model = helper.make_model(helper.make_graph(g.nodes, "t", [helper.make_tensor_value_info("input", kind, ["b", 6])],
                                               [helper.make_tensor_value_info("y", kind, ["b", 6])],
                                               initializer=g.initializers),
                              opset_imports=[helper.make_opsetid("", export.OPSET)])
    model.ir_version = 8
    X = np.linspace(-30, 30, 600).reshape(100, 6).astype(dtype)
    got = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"input": X})[0]
    want = export.TORCH_LAYERS[name](torch.nn, config).eval()(torch.from_numpy(X)).numpy()
    t = tol(np.float32 if (name == "GELU" and config.get("approximate") != "tanh") else dtype, ONNX_ULPS)
    np.testing.assert_allclose(got, want, rtol=t, atol=t)


def test_the_graph_is_valid_with_a_dynamic_batch(tmp_path):
    _ort()
    import onnx
    net = _net(np.float32, fnn.SoftmaxCrossEntropy())
    net.export_onnx(tmp_path / "m.onnx")
    model = onnx.load(tmp_path / "m.onnx")
    onnx.checker.check_model(model, full_check=True)
    assert max(op.version for op in model.opset_import if op.domain in ("", "ai.onnx")) >= 13
    (inp,) = model.graph.input
    dims = inp.type.tensor_type.shape.dim
    assert inp.name == "input" and dims[0].dim_param and dims[1].dim_value == 5
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert [n.op_type for n in model.graph.node].count("Gemm") == 4
    for n in (1, 7, 300):
        X = _data(n, 5, np.float32)
        assert run_onnx(tmp_path / "m.onnx", X)["logits"].shape == (n, 3)


def test_custom_layers_are_refused_and_nothing_is_written(tmp_path):
    class Mine(fnn.ReLU):
        pass

    net = fnn.NeuralNetwork([fnn.FullyConnected(3, 4), Mine(), fnn.FullyConnected(4, 2)], seed=0)
    (tmp_path / "m.onnx").write_bytes(b"old")
    with pytest.raises(ValueError, match=r"export_onnx: layers\[1\] is .*Mine, a custom layer"):
        net.export_onnx(tmp_path / "m.onnx")
    assert (tmp_path / "m.onnx").read_bytes() == b"old" and len(list(tmp_path.iterdir())) == 1
    with pytest.raises(ValueError, match=r"to_torch: layers\[1\] is .*Mine, a custom layer"):
        fnn.to_torch(net)


def test_export_arguments_are_checked(tmp_path):
    net = _net(np.float32, fnn.SoftmaxCrossEntropy())
    with pytest.raises(TypeError, match="path"):
        net.export_onnx(123)
    with pytest.raises(ValueError, match=f"{tmp_path}: it is a directory"):
        net.export_onnx(tmp_path)
    with pytest.raises(TypeError, match="NeuralNetwork"):
        export.export_onnx("not a net", tmp_path / "m.onnx")
    _ort()
    with pytest.raises(ValueError, match="head must be one of"):
        export.export_onnx(net, tmp_path / "m.onnx", head="logistic")
    with pytest.raises(ValueError, match="opset"):
        export.export_onnx(net, tmp_path / "m.onnx", opset=11)
    with pytest.raises(ValueError, match="classes has 2 labels"):
        export.export_onnx(net, tmp_path / "m.onnx", classes=["a", "b"])
    with pytest.raises(ValueError, match="head='binary' needs a network with one output"):
        export.export_onnx(net, tmp_path / "m.onnx", head="binary")


def test_class_names_become_the_label(tmp_path):
    net = _net(np.float32, fnn.SoftmaxCrossEntropy())
    X = _data(40, 5, np.float32)
    names = np.array(["cat", "dog", "eel"])
    _ort()
    export.export_onnx(net, tmp_path / "m.onnx", classes=names)
    got, out = run_onnx(tmp_path / "m.onnx", X), net.forward(X)
    _assert_labels(got["label"].astype(str), names[net.predict(X)], _softmax_margin(out, tol(np.float32, ONNX_ULPS)))


def test_missing_packages_give_an_install_hint(monkeypatch, tmp_path):
    net = _net(np.float32, fnn.SoftmaxCrossEntropy())
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match=r"pip install 'fastnn\[onnx\]'"):
        net.export_onnx(tmp_path / "m.onnx")
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError, match="pip install torch"):
        fnn.to_torch(net)
    assert list(tmp_path.iterdir()) == []


# -- estimators and the command line -------------------------------------------------------------------
def _estimator_cases():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((120, 4))
    multi = np.array(["a", "b", "c"])[(X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5)]
    return X, {"multiclass-str": multi, "binary-int": np.where(X[:, 2] > 0, 7, 3),
               "multilabel": (X[:, :3] > 0).astype(int), "regression": X[:, :2] @ np.array([[1.0, 2], [3, -1]])}


@pytest.mark.filterwarnings("ignore:Stochastic Optimizer")   # 30 iterations: enough for an export test
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ["multiclass-str", "binary-int", "multilabel", "regression"])
def test_fitted_estimators_export(tmp_path, case, dtype):
    _ort()
    X, targets = _estimator_cases()
    y = targets[case]
    cls = fnn.MLPRegressor if case == "regression" else fnn.MLPClassifier
    est = cls(hidden_layer_sizes=(8,), max_iter=30, random_state=0, dtype=dtype).fit(X, y)
    est.export_onnx(tmp_path / "e.onnx")
    Xd = X.astype(dtype)
    got, t = run_onnx(tmp_path / "e.onnx", Xd), tol(dtype, ONNX_ULPS)
    if case == "regression":
        np.testing.assert_allclose(got["output"], est.predict(X), rtol=t, atol=t)
        return
    np.testing.assert_allclose(got["probabilities"], est.predict_proba(X), rtol=t, atol=t)
    logits = got["logits"]
    clear = (np.abs(logits) > 4 * t).all(axis=1) if case != "multiclass-str" else _softmax_margin(logits, t)
    labels = got["label"].astype(str) if case == "multiclass-str" else got["label"]
    _assert_labels(labels, est.predict(X), clear)


def test_cli_export(tmp_path, capsys):
    _ort()
    from fastnn import cli
    net = _net(np.float32, fnn.SoftmaxCrossEntropy())
    net.save(tmp_path / "m.safetensors")
    code = cli.main(["export", str(tmp_path / "m.safetensors"), "--onnx", str(tmp_path / "m.onnx")])
    assert code == 0 and "wrote" in capsys.readouterr().out
    X = _data(30, 5, np.float32)
    t = tol(np.float32, ONNX_ULPS)
    np.testing.assert_allclose(run_onnx(tmp_path / "m.onnx", X)["probabilities"], net.predict_proba(X), rtol=t, atol=t)
    assert cli.main(["export", str(tmp_path / "missing.safetensors"), "--onnx", str(tmp_path / "x.onnx")]) == 2
    assert not (tmp_path / "x.onnx").exists()


# -- PyTorch -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name, config", _activation_cases())
def test_to_torch_equals_fastnn(name, config, dtype):
    torch = pytest.importorskip("torch", reason="to_torch tests need torch")
    layer = _activation_layer(name, config)
    net = fnn.NeuralNetwork([fnn.FullyConnected(5, 8, init="xavier", dtype=dtype), layer,
                             fnn.FullyConnected(8, 8, init="xavier", dtype=dtype), fnn.TanH(),
                             fnn.FullyConnected(8, 3, init="xavier", dtype=dtype)], seed=2)
    model = fnn.to_torch(net)
    assert isinstance(model, torch.nn.Sequential) and not model.training
    X = _data(50, 5, dtype) * 3
    with torch.no_grad():
        got = model(torch.from_numpy(X)).numpy()
    assert got.dtype == dtype
    t = tol(dtype, TORCH_ULPS)
    np.testing.assert_allclose(got, net.forward(X), rtol=t, atol=t)


@pytest.mark.parametrize("dtype", DTYPES)
def test_to_torch_layers_and_weights(dtype):
    torch = pytest.importorskip("torch", reason="to_torch tests need torch")
    net = _net(dtype, fnn.CrossEntropyLoss(), last=[fnn.SoftMax()])
    model = fnn.to_torch(net)
    kinds = [type(m).__name__ for m in model]
    assert kinds == ["Linear", "ReLU", "Linear", "Tanh", "Linear", "Sigmoid", "Linear", "Softmax"]
    np.testing.assert_array_equal(model[0].weight.detach().numpy(), net.layers[0].weights.T)
    assert model[0].weight.dtype == {np.float32: torch.float32, np.float64: torch.float64}[dtype]
    X = _data(20, 5, dtype)
    with torch.no_grad():
        got = model(torch.from_numpy(X)).numpy()
    t = tol(dtype, TORCH_ULPS)
    np.testing.assert_allclose(got, net.predict_proba(X), rtol=t, atol=t)


def test_standardized_inputs_are_scaled_inside_the_graph(tmp_path, capsys):
    """A model trained on (X - mean) / std (fastnn train --standardize stores mean and std in the file):
    the exported graph takes raw X."""
    _ort()
    from fastnn import cli, io
    net = _net(np.float32, fnn.SoftmaxCrossEntropy())
    mean, std = np.array([1.0, -2, 3, 0, 5]), np.array([0.5, 2, 1, 4, 3])
    X = _data(40, 5, np.float32) * std.astype(np.float32) + mean.astype(np.float32)
    want = net.predict_proba(((X - mean) / std).astype(np.float32))
    t = tol(np.float32, ONNX_ULPS)
    export.export_onnx(net, tmp_path / "a.onnx", standardize=(mean, std))
    np.testing.assert_allclose(run_onnx(tmp_path / "a.onnx", X)["probabilities"], want, rtol=t, atol=t)
    io.save(net, tmp_path / "m.safetensors", extra={"standardize": {"mean": mean.tolist(), "std": std.tolist()}})
    assert cli.main(["export", str(tmp_path / "m.safetensors"), "--onnx", str(tmp_path / "b.onnx")]) == 0
    assert "the preprocessing runs inside the graph" in capsys.readouterr().out
    np.testing.assert_allclose(run_onnx(tmp_path / "b.onnx", X)["probabilities"], want, rtol=t, atol=t)
    for bad, exc in (((mean[:3], std), ValueError), ((mean, -std), ValueError), ("x", TypeError)):
        with pytest.raises(exc, match="standardize"):
            export.export_onnx(net, tmp_path / "c.onnx", standardize=bad)
    io.save(net, tmp_path / "odd.safetensors", extra={"standardize": [1, 2]})
    assert cli.main(["export", str(tmp_path / "odd.safetensors"), "--onnx", str(tmp_path / "c.onnx")]) == 2
    assert "standardization is malformed" in capsys.readouterr().err and not (tmp_path / "c.onnx").exists()
