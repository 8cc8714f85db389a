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
import os

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

    def _name(self, prefix):
        self._count += 1
        return f"{prefix}_{self._count}"

    def op(self, op_type, *inputs, out=None, **attributes):
        out = out or self._name(op_type.lower())
        self.nodes.append(self.helper.make_node(op_type, list(inputs), [out], name=self._name(op_type), **attributes))
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
    g = OnnxGraph(net.dtype)
    x = "input"
    if scaling is not None:
        x = g.op("Div", g.op("Sub", x, g.const(scaling[0])), g.const(scaling[1]))
    raw = "logits" if head in ("softmax", "sigmoid", "binary") else "output"
    for k, (layer, name, config, params) in enumerate(layers):
        out = raw if k == len(layers) - 1 else None
        x = _dense_onnx(g, x, layer, params) if type(layer) is FullyConnected else ONNX_LAYERS[name](g, x, config)
        if out is not None:
            x = g.op("Identity", x, out=out)
    float_type = helper.np_dtype_to_tensor_dtype(net.dtype)
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
    graph = helper.make_graph(g.nodes, "fastnn", [helper.make_tensor_value_info("input", float_type,
                                                                               ["batch", net.n_features])],
                              outputs, initializer=g.initializers)
    from . import __version__
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="fastnn", producer_version=__version__)
    model.ir_version = min(model.ir_version, 8)   # readable by onnxruntime releases from 1.10 on
    onnx.checker.check_model(model, full_check=True)
    return model


def export_onnx(net, path, *, head=None, classes=None, standardize=None, opset=OPSET):
    """Write ``net`` as an ONNX model to ``path`` atomically (temporary file, fsync, rename); returns the
    path. ``head`` (default: from the loss), ``classes`` (labels for the "label" output) and
    ``standardize`` (input scaling) as in ``to_onnx`` and the module docstring. ValueError for a custom layer, TypeError for a non-network."""
    if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a file path (str or os.PathLike), got {type(path).__name__}")
    path = os.fspath(path)
    if not path or os.path.isdir(path):
        raise ValueError(f"path must name a file, got {path!r}")
    model = to_onnx(net, head=head, classes=classes, standardize=standardize, opset=opset)
    io.atomic_write(path, model.SerializeToString())
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
