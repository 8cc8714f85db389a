"""Export a network for deployment: ONNX (``export_onnx``) and PyTorch (``to_torch``).

Both translate fastnn's own layers one by one, each through one entry of a table — ``ONNX_LAYERS`` (name ->
a function adding the layer's ONNX nodes) and ``TORCH_LAYERS`` (name -> a function building the
``torch.nn`` module) — so supporting a new layer type is one entry in each. Custom layers (registered or
not) are refused with a clear error: fastnn cannot know what their code computes.

The ONNX graph (opset ``OPSET``):

* input ``"input"``: (batch, n_features) in the network's dtype (float32 / float64), the batch dynamic;
* each FullyConnected a ``Gemm``; activations their ONNX operators (Relu, Sigmoid, Tanh, Softmax on the
  last axis, LeakyRelu, Elu, Identity; Softplus as torch's (threshold 20), in its stable form; SiLU and GELU composed from Sigmoid /
  Erf / Tanh); Dropout is the identity (inference). In float64 graphs, LeakyRelu and Elu are composed from
  Where (onnxruntime runs them in float32 only) and the exact GELU's Erf is evaluated in float32 (likewise):
  a float64 exact-GELU export agrees to float32 accuracy, everything else to float64's;
* outputs, by the head (from the loss, or given):

  =================  =====================================================================================
  head               outputs
  =================  =====================================================================================
  "softmax"          "logits", "probabilities" = Softmax(logits), "label" = ArgMax (int64, first maximum)
  "sigmoid"          "logits", "probabilities" = Sigmoid(logits), "label" = logits > 0 as int64, (batch,)
                     for one output, (batch, k) indicators for k
  "binary"           scikit-learn's binary classifier: "logits" (batch, 1), "probabilities" = [1 - p, p]
                     (batch, 2), "label" (batch,)
  "probabilities"    the network outputs probabilities (a SoftMax layer + CrossEntropyLoss): "output",
                     "probabilities" (the same values), "label" = ArgMax
  "regression"       "output"
  =================  =====================================================================================

  With ``classes`` (an estimator's ``classes_``, a CLI model's class names), "label" holds
  ``classes[index]`` instead of the index (for the heads whose label is one index per row).

onnxruntime reproduces ``predict`` / ``predict_proba`` to the dtype's rounding. onnx and onnxruntime are
optional (``pip install 'fastnn[onnx]'``), imported on use; so is torch.
"""
import math

import numpy as np

from . import io, network
from .layers import FullyConnected
from .losses import CrossEntropyLoss, L2Loss, SigmoidCrossEntropy, SoftmaxCrossEntropy
from .network import NeuralNetwork

OPSET = 13
HEADS = ("softmax", "sigmoid", "binary", "probabilities", "regression")
_HEAD_OF_LOSS = {SoftmaxCrossEntropy: "softmax", SigmoidCrossEntropy: "sigmoid",
                 CrossEntropyLoss: "probabilities", L2Loss: "regression"}


# -- the ONNX graph builder -------------------------------------------------------------------------
class OnnxGraph:
    """Nodes and constants of one ONNX graph under construction, in one float dtype.

    ``op(type, *inputs, out=None, **attributes)`` adds a node and returns its output's name (a fresh one
    unless ``out`` is given); ``const(value)`` adds a constant (an initializer) in the graph's dtype, or in
    the array's own dtype for integer / string arrays, and returns its name."""

    def __init__(self, dtype):
        from onnx import helper
        self.helper = helper
        self.dtype = np.dtype(dtype)
        self.nodes, self.initializers = [], []
        self._count = 0
        self.ml = False          # uses the ai.onnx.ml domain (OneHotEncoder)

    def _name(self, prefix):
        self._count += 1
        return f"{prefix}_{self._count}"

    def op(self, op_type, *inputs, out=None, domain=None, **attributes):
        out = out or self._name(op_type.lower())
        self.nodes.append(self.helper.make_node(op_type, list(inputs), [out], name=self._name(op_type),
                                                domain=domain, **attributes))
        self.ml = self.ml or domain == "ai.onnx.ml"
        return out

    def const(self, value, name=None):
        from onnx import numpy_helper
        arr = np.asarray(value)
        if arr.dtype.kind == "f":
            arr = arr.astype(self.dtype)
        elif arr.dtype.kind in "US":
            arr = arr.astype(object)
        name = name or self._name("const")
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(arr) if arr.dtype != object else arr,
                                                         name))
        return name

    def scalar(self, value):
        return self.const(np.array(value, self.dtype))


# -- one entry per layer type -------------------------------------------------------------------------
def _dense_onnx(g, x, layer, params):
    weights, bias = params
    return g.op("Gemm", x, g.const(weights), g.const(bias))


def _softplus_onnx(g, x, config):
    """torch.nn.Softplus(): x where x > 20, else log(1 + exp(x)) in its stable form max(x, 0) + log(1 + exp(-|x|))."""
    tail = g.op("Log", g.op("Add", g.scalar(1.0), g.op("Exp", g.op("Neg", g.op("Abs", x)))))
    return g.op("Where", g.op("Greater", x, g.scalar(20.0)), x, g.op("Add", g.op("Relu", x), tail))


def _leaky_relu_onnx(g, x, config):
    alpha = float(config.get("negative_slope", 0.01))
    if g.dtype == np.float32:
        return g.op("LeakyRelu", x, alpha=alpha)
    # onnxruntime has no float64 LeakyRelu: x where x > 0, else alpha x (the same values)
    return g.op("Where", g.op("Greater", x, g.scalar(0.0)), x, g.op("Mul", g.scalar(alpha), x))


def _elu_onnx(g, x, config):
    alpha = float(config.get("alpha", 1.0))
    if g.dtype == np.float32:
        return g.op("Elu", x, alpha=alpha)
    # onnxruntime has no float64 Elu: x where x > 0, else alpha (exp(x) - 1)
    negative = g.op("Mul", g.scalar(alpha), g.op("Sub", g.op("Exp", x), g.scalar(1.0)))
    return g.op("Where", g.op("Greater", x, g.scalar(0.0)), x, negative)


def _erf(g, x):
    """erf(x); in a float64 graph computed in float32 (onnxruntime has no float64 Erf): float32 accuracy."""
    if g.dtype == np.float32:
        return g.op("Erf", x)
    from onnx import TensorProto
    return g.op("Cast", g.op("Erf", g.op("Cast", x, to=TensorProto.FLOAT)), to=TensorProto.DOUBLE)


def _gelu_onnx(g, x, config):
    """x Φ(x): exact 0.5 x (1 + erf(x / √2)); approximate="tanh": 0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³)))."""
    if config.get("approximate", "none") == "tanh":
        cube = g.op("Mul", g.op("Mul", x, x), x)
        inner = g.op("Mul", g.scalar(math.sqrt(2.0 / math.pi)), g.op("Add", x, g.op("Mul", g.scalar(0.044715), cube)))
        phi2 = g.op("Add", g.scalar(1.0), g.op("Tanh", inner))
    else:
        phi2 = g.op("Add", g.scalar(1.0), _erf(g, g.op("Mul", x, g.scalar(1.0 / math.sqrt(2.0)))))
    return g.op("Mul", g.op("Mul", g.scalar(0.5), x), phi2)


#: layer type name -> f(graph, input name, layer config) -> output name (FullyConnected: see _dense_onnx)
ONNX_LAYERS = {
    "ReLU": lambda g, x, c: g.op("Relu", x),
    "Sigmoid": lambda g, x, c: g.op("Sigmoid", x),
    "TanH": lambda g, x, c: g.op("Tanh", x),
    "SoftMax": lambda g, x, c: g.op("Softmax", x, axis=-1),
    "LeakyReLU": _leaky_relu_onnx,
    "ELU": _elu_onnx,
    "Softplus": _softplus_onnx,
    "SiLU": lambda g, x, c: g.op("Mul", x, g.op("Sigmoid", x)),
    "GELU": _gelu_onnx,
    "Mish": lambda g, x, c: g.op("Mul", x, g.op("Tanh", _softplus_onnx(g, x, c))),   # Mish-18 > opset 13
    "Identity": lambda g, x, c: g.op("Identity", x),
    "Dropout": lambda g, x, c: g.op("Identity", x),     # inference: the identity
}


def _torch_dense(nn, torch, layer, params, dtype):
    weights, bias = params
    linear = nn.Linear(layer.in_features, layer.out_features, dtype=dtype)
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(np.ascontiguousarray(weights.T)))
        linear.bias.copy_(torch.from_numpy(bias))
    return linear


#: layer type name -> f(torch.nn, layer config) -> module (FullyConnected: see _torch_dense)
TORCH_LAYERS = {
    "ReLU": lambda nn, c: nn.ReLU(),
    "Sigmoid": lambda nn, c: nn.Sigmoid(),
    "TanH": lambda nn, c: nn.Tanh(),
    "SoftMax": lambda nn, c: nn.Softmax(dim=-1),
    "LeakyReLU": lambda nn, c: nn.LeakyReLU(negative_slope=float(c.get("negative_slope", 0.01))),
    "ELU": lambda nn, c: nn.ELU(alpha=float(c.get("alpha", 1.0))),
    "Softplus": lambda nn, c: nn.Softplus(),
    "SiLU": lambda nn, c: nn.SiLU(),
    "GELU": lambda nn, c: nn.GELU(approximate=c.get("approximate", "none")),
    "Mish": lambda nn, c: nn.Mish(),
    "Identity": lambda nn, c: nn.Identity(),
    "Dropout": lambda nn, c: nn.Dropout(p=float(c.get("p", 0.5))),
}


# -- shared checks ------------------------------------------------------------------------------------
def _snapshot(net, table, what):
    """[(layer, name, config, params copy)] for every layer, checked against ``table``; the params copied
    between two optimizer steps (thread-safe beside a fit)."""
    if not isinstance(net, NeuralNetwork):
        raise TypeError(f"{what} needs a fastnn NeuralNetwork, got {type(net).__name__}")
    net.plan(training=False)
    builtin = FullyConnected.__module__
    for i, layer in enumerate(net.layers):
        cls = type(layer)
        if cls.__module__ != builtin:
            raise ValueError(f"{what}: layers[{i}] is {cls.__module__}.{cls.__qualname__}, a custom layer; "
                             f"{what} translates fastnn's own layers only (it cannot know what custom code "
                             f"computes). Export a network of built-in layers, or translate this layer by hand")
        if cls is not FullyConnected and cls.__name__ not in table:
            raise ValueError(f"{what}: layers[{i}] ({cls.__name__}) has no translation yet; supported: "
                             f"{', '.join(['FullyConnected', *sorted(table)])}")
    with net.weights_changing():
        return [(layer, type(layer).__name__, layer.config(), [np.array(p, copy=True) for p in layer.params])
                for layer in net.layers]


def head_of(net):
    """The export head that ``net``'s loss implies ("softmax", "sigmoid", "probabilities", "regression"),
    or None for a loss that is not fastnn's own."""
    return _HEAD_OF_LOSS.get(type(net.loss))


def output_names(head):
    """The ONNX output names of a head, in order."""
    if head == "regression":
        return ("output",)
    return ("output" if head == "probabilities" else "logits", "probabilities", "label")


def _head(net, head):
    if head is None:
        head = head_of(net)
        if head is None:
            raise ValueError(f"export_onnx: the loss {type(net.loss).__name__} is not one of fastnn's own, so "
                             f"the outputs' meaning is unknown; pass head= one of {HEADS}")
    if head not in HEADS:
        raise ValueError(f"head must be one of {HEADS} or None (from the loss), got {head!r:.100}")
    if head == "binary" and net.n_outputs != 1:
        raise ValueError(f"head='binary' needs a network with one output, this one has {net.n_outputs}")
    return head


def _classes(classes):
    if classes is None:
        return None
    arr = np.asarray(classes)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"classes must be a non-empty 1-D sequence of labels, got shape {arr.shape}")
    if arr.dtype.kind in "iub":
        return arr.astype(np.int64)
    if arr.dtype.kind == "f":
        return arr.astype(np.float64)
    if arr.dtype.kind in "US" or arr.dtype == object:
        return np.array([str(c) for c in arr.tolist()], dtype=object)
    raise TypeError(f"classes must hold integers, floats or strings, got dtype {arr.dtype}")


# -- ONNX ---------------------------------------------------------------------------------------------
def _standardize(standardize, n_features, dtype):
    if standardize is None:
        return None
    try:
        mean, std = (np.asarray(a, dtype=np.float64) for a in standardize)
    except (TypeError, ValueError):
        raise TypeError("standardize must be None or a (mean, std) pair of arrays") from None
    for name, a in (("mean", mean), ("std", std)):
        if a.shape != (n_features,) or not np.isfinite(a).all():
            raise ValueError(f"standardize {name} must be {n_features} finite numbers (one per input feature), "
                             f"got shape {a.shape}")
    if not (std > 0).all():
        raise ValueError("standardize std must be positive")
    return mean.astype(dtype), std.astype(dtype)


def _preprocessing_onnx(g, pre, float_type):
    """The graph's raw inputs and the nodes turning them into the network's inputs (fastnn.preprocessing):
    (name of the (batch, n_features) encoded tensor, the graph inputs).

    Without categorical columns: one input "input" (batch, raw columns) in the model's dtype, NaN for a
    missing cell. With them: one input per raw column, named after it, (batch, 1): numbers in the model's
    dtype (NaN: missing) for numeric columns, strings for categorical ones (a missing cell: one of
    ``MISSING_TOKENS``; a category not seen in training: onnxruntime's OneHotEncoder raises)."""
    from onnx import TensorProto, helper

    from .preprocessing import MISSING_TOKENS

    columns = pre.columns

    def numeric(x, spec):
        if spec["fill"] is not None:
            x = g.op("Where", g.op("IsNaN", x), g.scalar(spec["fill"]), x)
        if spec["mean"] is not None:
            x = g.op("Div", g.op("Sub", x, g.scalar(spec["mean"])), g.scalar(spec["std"]))
        return x

    if all(c["kind"] == "numeric" for c in columns):
        x = "input"
        fills = [c for c in columns if c["fill"] is not None]
        if fills:
            fill = np.array([0.0 if c["fill"] is None else c["fill"] for c in columns])
            keep = np.array([c["fill"] is None for c in columns])
            mask = g.op("And", g.op("IsNaN", x), g.const(~keep))
            x = g.op("Where", mask, g.const(fill), x)
        if any(c["mean"] is not None for c in columns):
            mean = np.array([0.0 if c["mean"] is None else c["mean"] for c in columns])
            std = np.array([1.0 if c["std"] is None else c["std"] for c in columns])
            x = g.op("Div", g.op("Sub", x, g.const(mean)), g.const(std))
        return x, [helper.make_tensor_value_info("input", float_type, ["batch", len(columns)])]
    inputs, blocks = [], []
    for spec in columns:
        name = spec["name"]
        if spec["kind"] == "numeric":
            inputs.append(helper.make_tensor_value_info(name, float_type, ["batch", 1]))
            blocks.append(numeric(name, spec))
            continue
        inputs.append(helper.make_tensor_value_info(name, TensorProto.STRING, ["batch", 1]))
        cats = spec["categories"]
        tokens = [t for t in MISSING_TOKENS if t not in cats] if spec["fill"] is not None else []
        onehot = g.op("OneHotEncoder", name, domain="ai.onnx.ml", cats_strings=cats + tokens, zeros=0)
        flat = g.op("Reshape", onehot, g.const(np.array([-1, len(cats) + len(tokens)], np.int64)))
        if tokens:       # a missing cell's one-hot becomes the fill category's
            m = np.zeros((len(cats) + len(tokens), len(cats)))
            m[np.arange(len(cats)), np.arange(len(cats))] = 1.0
            m[len(cats):, cats.index(spec["fill"])] = 1.0
            flat = g.op("MatMul", g.op("Cast", flat, to=float_type), g.const(m))
        else:
            flat = g.op("Cast", flat, to=float_type)
        blocks.append(flat)
    return g.op("Concat", *blocks, axis=1), inputs


def onnx_feed(net, X):
    """The input dict for ``onnxruntime.InferenceSession(path).run(None, feed)`` of ``export_onnx(net, ...)``
    from raw features ``X`` (the forms ``net.preprocessing`` takes; without preprocessing, an array)."""
    pre = net.preprocessing
    dtype = net.dtype
    if pre is None:
        return {"input": np.ascontiguousarray(X, dtype=dtype)}
    from .preprocessing import category_text, is_missing
    names, cols = pre.match_columns(X)
    if all(c["kind"] == "numeric" for c in pre.columns):
        out = np.empty((len(cols[0]), len(cols)), dtype)
        for k, col in enumerate(cols):
            out[:, k] = [np.nan if is_missing(v) else float(v) for v in col]
        return {"input": out}
    feed = {}
    for spec, col in zip(pre.columns, cols):
        if spec["kind"] == "numeric":
            feed[spec["name"]] = np.array([[np.nan if is_missing(v) else float(v)] for v in col], dtype)
        else:
            feed[spec["name"]] = np.array([["" if is_missing(v) else category_text(v)] for v in col], object)
    return feed


def to_onnx(net, *, head=None, classes=None, standardize=None, opset=OPSET):
    """The ONNX ModelProto of ``net`` (see the module docstring for the graph, ``head`` and ``classes``);
    checked with ``onnx.checker.check_model``. Needs the ``onnx`` package. ``standardize``: None or
    (mean, std), one value per feature: the graph then computes the network of (input - mean) / std."""
    if isinstance(opset, bool) or not isinstance(opset, int) or opset < OPSET:
        raise ValueError(f"opset must be an integer >= {OPSET}, got {opset!r:.50}")
    layers = _snapshot(net, ONNX_LAYERS, "export_onnx")     # the user's errors first, then the dependency
    try:
        import onnx
        from onnx import TensorProto, helper
    except ImportError:
        raise ImportError("ONNX export needs the onnx package: pip install 'fastnn[onnx]' (or pip install "
                          "onnx onnxruntime)") from None
    head = _head(net, head)
    if classes is None and net.preprocessing is not None and net.preprocessing.classes is not None:
        classes = net.preprocessing.classes
    classes = _classes(classes)
    if classes is not None and head == "regression":
        raise ValueError("classes= is for classifiers; this export has head='regression'")
    n_out = net.n_outputs
    if classes is not None and head != "sigmoid" and len(classes) != (2 if head == "binary" else n_out):
        raise ValueError(f"classes has {len(classes)} labels, the network's head needs "
                         f"{2 if head == 'binary' else n_out}")
    if classes is not None and head == "sigmoid" and not (n_out == 1 and len(classes) == 2):
        raise ValueError("classes= with head='sigmoid' needs one output and two classes (the label of 0 and of 1)")
    scaling = _standardize(standardize, net.n_features, net.dtype)
    pre = net.preprocessing
    if pre is not None and scaling is not None:
        raise ValueError("standardize= is for networks without preprocessing; this network's preprocessing "
                         "(net.preprocessing) already scales its inputs inside the graph")
    float_type = helper.np_dtype_to_tensor_dtype(net.dtype)
    g = OnnxGraph(net.dtype)
    x = "input"
    inputs = [helper.make_tensor_value_info("input", float_type, ["batch", net.n_features])]
    if scaling is not None:
        x = g.op("Div", g.op("Sub", x, g.const(scaling[0])), g.const(scaling[1]))
    if pre is not None:
        x, inputs = _preprocessing_onnx(g, pre, float_type)
    raw = "logits" if head in ("softmax", "sigmoid", "binary") else "output"
    target = None if pre is None else pre.target
    last = raw if target is None else "scaled_output"
    for k, (layer, name, config, params) in enumerate(layers):
        out = last if k == len(layers) - 1 else None
        x = _dense_onnx(g, x, layer, params) if type(layer) is FullyConnected else ONNX_LAYERS[name](g, x, config)
        if out is not None:
            x = g.op("Identity", x, out=out)
    if target is not None:         # the network learned (y - mean) / std: "output" in the target's units
        g.op("Add", g.op("Mul", last, g.const(np.array(target["std"]))), g.const(np.array(target["mean"])),
             out=raw)
    outputs = [helper.make_tensor_value_info(raw, float_type, ["batch", n_out])]
    if head != "regression":
        label_shape = ["batch"]
        if head == "softmax":
            g.op("Softmax", raw, axis=-1, out="probabilities")
            index = g.op("ArgMax", raw, axis=1, keepdims=0)
        elif head == "probabilities":
            g.op("Identity", raw, out="probabilities")
            index = g.op("ArgMax", raw, axis=1, keepdims=0)
        else:
            p = g.op("Sigmoid", raw, out=None if head == "binary" else "probabilities")
            if head == "binary":
                g.op("Concat", g.op("Sub", g.scalar(1.0), p), p, axis=1, out="probabilities")
            index = g.op("Cast", g.op("Greater", raw, g.scalar(0.0)), to=TensorProto.INT64)
            if n_out == 1:
                index = g.op("Squeeze", index, g.const(np.array([1], np.int64)))
            else:
                label_shape = ["batch", n_out]
        label_type = TensorProto.INT64
        if classes is not None:
            index = g.op("Gather", g.const(classes), index, axis=0)
            label_type = helper.np_dtype_to_tensor_dtype(classes.dtype) if classes.dtype != object \
                else TensorProto.STRING
        g.op("Identity", index, out="label")
        n_proba = 2 if head == "binary" else n_out
        outputs += [helper.make_tensor_value_info("probabilities", float_type, ["batch", n_proba]),
                    helper.make_tensor_value_info("label", label_type, label_shape)]
    graph = helper.make_graph(g.nodes, "fastnn", inputs, outputs, initializer=g.initializers)
    from . import __version__
    opsets = [helper.make_opsetid("", opset)] + ([helper.make_opsetid("ai.onnx.ml", 2)] if g.ml else [])
    model = helper.make_model(graph, opset_imports=opsets,
                              producer_name="fastnn", producer_version=__version__)
    model.ir_version = min(model.ir_version, 8)   # readable by onnxruntime releases from 1.10 on
    onnx.checker.check_model(model, full_check=True)
    return model


def export_onnx(net, path, *, head=None, classes=None, standardize=None, opset=OPSET):
    """Write ``net`` as an ONNX model to ``path`` atomically (temporary file, fsync, rename); returns the
    path. ``head`` (default: from the loss), ``classes`` (labels for the "label" output) and
    ``standardize`` (input scaling) as in ``to_onnx`` and the module docstring. ValueError for a custom layer, TypeError for a non-network."""
    from . import _paths
    path = _paths.output_target(path, "ONNX file")     # refused before any work (the same check as the write)
    model = to_onnx(net, head=head, classes=classes, standardize=standardize, opset=opset)
    io.atomic_write(path, model.SerializeToString(), "ONNX file")
    return path


# -- PyTorch ------------------------------------------------------------------------------------------
def to_torch(net):
    """An equivalent ``torch.nn.Sequential`` of ``net``'s layers (nn.Linear with the transposed weights,
    the matching activation modules), in the network's dtype and in eval mode (call ``.train()`` to train
    it further; Dropout is then active). Its output is ``net.forward``'s (logits, for the fused losses).
    Needs torch (imported here, not when fastnn is). ValueError for a custom layer."""
    layers = _snapshot(net, TORCH_LAYERS, "to_torch")       # the user's errors first, then the dependency
    try:
        import torch
        from torch import nn
    except ImportError:
        raise ImportError("fastnn.to_torch needs PyTorch: pip install torch (see https://pytorch.org)") from None
    dtype = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}[net.dtype]
    modules = [_torch_dense(nn, torch, layer, params, dtype) if type(layer) is FullyConnected
               else TORCH_LAYERS[name](nn, config) for layer, name, config, params in layers]
    return nn.Sequential(*modules).eval()


network.provide("export_onnx", export_onnx)
