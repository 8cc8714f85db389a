"""Finite-difference gradients and gradient checks (the lecture's "check your implementation").

A network is checked on both training paths: the per-layer backward pass, and — when the fused whole-epoch
kernel can train the network — the gradient that kernel computes for one batch (read back from one SGD step
of learning rate 1 on a copy of the network), including the optimizer's coupled weight decay and
scikit-learn's L2 penalty as gradients of the objective they add.

Central differences: df/dx_i ≈ (f(x + h_i e_i) - f(x - h_i e_i)) / (2 h_i), with h_i = cbrt(eps) ·
max(|x_i|, 1): the step that balances truncation error O(h²) against rounding error O(eps/h).
"""
import copy
import math
import numbers

import numpy as np

from . import _checks
from .layers import Layer, dropout_epoch_key
from .network import NeuralNetwork
from .optimizers import SGD, AdamW


def numerical_gradient(f, x, h=None):
    """Central-difference gradient of the scalar function ``f`` at the float array ``x``.

    ``x`` is perturbed in place, one element at a time, and restored exactly, so ``f`` may read it
    through a closure (e.g. a layer's weights). Returns an array of x's shape and dtype. ``h``: the step,
    a finite number > 0, or None for cbrt(eps)·max(|x_i|, 1). ``f`` must return a finite real number
    (a Python or NumPy scalar, or a one-element array); anything else is refused naming what it returned.
    """
    return _numerical_gradient(f, x, h, "x")


def _numerical_gradient(f, x, h, name):
    """``numerical_gradient`` with ``name`` naming x in messages ("layers[1].params[0]", ...)."""
    if not isinstance(x, np.ndarray) or x.dtype.kind != "f":
        raise TypeError(f"{name} must be a float numpy array, got {type(x).__name__}"
                        + (f" of dtype {x.dtype}" if isinstance(x, np.ndarray) else ""))
    if not x.flags.writeable:
        raise ValueError(f"{name} must be writeable: it is perturbed in place and restored")
    if h is not None:
        if isinstance(h, (bool, np.bool_)) or not isinstance(h, (numbers.Real, np.floating, np.integer)) \
                or not math.isfinite(h) or h <= 0:
            raise ValueError(f"h must be None or a finite number > 0 (the finite-difference step), got {h!r:.60}")
        h = float(h)
    base = np.cbrt(np.finfo(x.dtype).eps)
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    if not np.shares_memory(flat, x):
        raise ValueError(f"{name} must be contiguous so that it can be perturbed in place")
    for i in range(flat.size):
        old = flat[i]
        step = base * max(abs(float(old)), 1.0) if h is None else h
        flat[i] = old + step
        if flat[i] == old:
            flat[i] = old
            raise ValueError(f"h={step!r} is too small to change {name} at {old!r} in {x.dtype}: the "
                             f"difference would be 0 / 0")
        try:
            f_plus = _scalar(f(x))
            flat[i] = old - step
            f_minus = _scalar(f(x))
        finally:
            flat[i] = old
        gflat[i] = (f_plus - f_minus) / (2 * step)
    return grad


def _scalar(value):
    """f's value as a float: a finite real number, or ValueError / TypeError saying what f returned."""
    if isinstance(value, np.ndarray) and value.size == 1 and value.dtype.kind in "fiu":
        value = value.reshape(()).item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        what = (f"an array of shape {value.shape}" if isinstance(value, np.ndarray)
                else type(value).__name__)
        raise TypeError(f"f must return a real number (the scalar whose gradient is taken), got {what}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"f returned {value}; a finite difference needs finite values")
    return value


def relative_error(analytic, numeric):
    """max |a - n| / max(max |a|, max |n|): the error relative to the gradient's scale."""
    scale = max(np.abs(analytic).max(initial=0.0), np.abs(numeric).max(initial=0.0), np.finfo(float).tiny)
    return float(np.abs(analytic - numeric).max(initial=0.0) / scale)


class GradcheckReport(dict):
    """name -> max relative error, for every parameter ("layers[i].params[j]") and the input ("x")."""

    @property
    def max_error(self):
        return max(self.values())

    def passed(self, tol=1e-6):
        return self.max_error < tol

    def __str__(self):
        width = max(len(k) for k in self)
        rows = [f"{'gradient':<{width}}  relative error"] + [f"{k:<{width}}  {v:.2e}" for k, v in self.items()]
        return "\n".join(rows)


def gradcheck(layer_or_net, x, target=None, seed=0, fused="auto"):
    """Compare analytic and central-difference gradients; returns a GradcheckReport.

    For a Layer, the scalar checked is sum(forward(x) * g) with a fixed random g. For a NeuralNetwork,
    it is the network's loss against ``target`` (random valid targets when None), on the per-layer path
    ("layers[i].params[j]", "x") and, with ``fused`` "auto" (when the fused kernel supports the network) or
    True, the fused kernel's gradient of the loss plus the optimizer's coupled weight decay / scikit-learn
    penalty ("fused layers[i].params[j]"). Run it in float64. Dropout layers of a network drop units with
    one fixed batch key on both paths (for one key dropout is a fixed linear map); a Dropout layer checked
    alone runs unkeyed, as the identity.
    """
    rng = np.random.default_rng(seed)
    if isinstance(layer_or_net, NeuralNetwork):
        net = layer_or_net
        x = np.array(net.check_input(x, "x"), dtype=net.dtype)
        if target is None:
            from .losses import SigmoidCrossEntropy
            if isinstance(net.loss, SigmoidCrossEntropy):      # 0/1 indicators, one per output
                target = rng.integers(0, 2, (len(x), net.n_outputs)).astype(net.dtype)
            elif net.classification:
                target = rng.integers(0, net.n_outputs, len(x))
            else:
                target = rng.standard_normal((len(x), net.n_outputs))
        target = net.check_target(target, len(x), "target")
        net.plan()          # the checks fit runs: params / grads of every layer, dtypes, widths, the loss
        _refuse_nonfinite_parameters(net.layers)
        with net.training_session("run gradcheck"):
            report = _check_layer_path(net, x, target)
        from .engines import fused as fused_path
        supported, reason = fused_path.supports(net)
        if fused is True and not supported:
            raise ValueError(f"fused=True but the fused kernel cannot train this network: {reason}")
        if fused is not False and supported:
            report.update(_check_fused_path(net, x, target))
        return report
    if not isinstance(layer_or_net, Layer):
        raise TypeError(f"gradcheck takes a Layer or a NeuralNetwork, got {type(layer_or_net).__name__}")
    layer = layer_or_net
    x = np.array(layer._check_input(x), dtype=getattr(layer, "dtype", np.float64))
    _checks.ensure_finite(x, "x")          # (else the first finite difference says only "f returned nan")
    _refuse_nonfinite_parameters([layer], alone=True)
    g = rng.standard_normal(layer._forward(x).shape)

    def scalar():
        return float(np.sum(layer._forward(x) * g))

    scalar()
    dx = layer._backward(g.astype(x.dtype)).copy()
    report = _compare_params([layer], scalar, prefix="")
    report["x"] = relative_error(dx, numerical_gradient(lambda _: scalar(), x))
    return report


def _refuse_nonfinite_parameters(layers, alone=False):
    """A ValueError naming a parameter array that holds NaN or Inf (else every finite difference fails with
    "f returned nan")."""
    where = _checks.nonfinite_parameters(layers)
    if where is not None:
        if alone:
            where = where.split(" ", 1)[1].replace("(", "", 1).replace(")", "", 1)   # "FullyConnected weights"
        raise ValueError(f"{where} holds NaN or infinite values: a gradient check needs finite parameters")


def _fit_key():
    """The Dropout batch key of the one-batch fit that ``_check_fused_path`` runs (seed 0, no shuffling, a
    fresh stream: epoch 1, batch 0, row 0): both paths check the same fixed mask, a linear map."""
    return dropout_epoch_key(np.random.default_rng(0)), 0, 0


def _check_layer_path(net, x, target):
    key = _fit_key()

    def loss():
        return net.loss._forward(net.train_forward(x, key), target)

    loss()
    net.train_backward()
    dx = net.loss.backward()
    widths, width = [], net.n_features
    for layer in net.layers:               # each layer's input width, as plan.check_stack reads them
        widths.append(width)
        width = getattr(layer, "out_features", None) or width
    for i in range(len(net.layers) - 1, -1, -1):
        layer = net.layers[i]
        dx = _checked_backward(layer._backward(dx), f"layers[{i}] ({type(layer).__name__}).backward",
                               (len(x), widths[i]), net.dtype)
    report = _compare_params(net.layers, loss)
    report["x"] = relative_error(dx.copy(), numerical_gradient(lambda _: loss(), x))
    return report


def _objective(opt):
    """(coupled weight decay, scikit-learn alpha) of ``opt``: what its step adds to the loss's gradient."""
    coupled = 0.0 if isinstance(opt, AdamW) else float(getattr(opt, "weight_decay", 0.0))
    return coupled, float(getattr(opt, "_sklearn_alpha", 0.0))


def _check_fused_path(net, x, target):
    """The fused kernel's gradient for the batch (x, target), against central differences of the loss plus
    0.5·wd·||params||² (coupled weight decay) plus 0.5·alpha·Σ||W||² / batch (scikit-learn's penalty)."""
    wd, alpha = _objective(net.optimizer)
    twin = copy.deepcopy(net)
    twin.optimizer = SGD(lr=1.0, weight_decay=wd)
    twin.optimizer._sklearn_alpha = alpha
    plan = twin.plan()
    before = plan.params.copy()
    twin.shuffle_state = None       # a fresh stream from seed 0: the dropout key of _fit_key()
    twin.fit(x, target, epochs=1, batch_size=len(x), shuffle=False, verbose=0, fused=True, seed=0)
    gradient = before - plan.params          # one step of learning rate 1: p_new = p - grad
    plan.params[...] = before
    n = len(x)

    key = _fit_key()

    def objective():
        value = twin.loss._forward(twin.train_forward(x, key), target)
        value += 0.5 * wd * float(np.dot(plan.params, plan.params))
        for fc in plan.dense:
            value += 0.5 * alpha * float(np.sum(fc.weights * fc.weights)) / n
        return value

    report = GradcheckReport()
    for k, (i, fc) in enumerate(zip(plan.param_layers, plan.dense)):
        segment = gradient[plan.offsets[k]:plan.offsets[k + 1]]
        size = fc.in_features * fc.out_features
        for j, (p, a) in enumerate(((fc.weights, segment[:size].reshape(fc.weights.shape)),
                                    (fc.bias, segment[size:]))):
            report[f"fused layers[{i}].params[{j}]"] = relative_error(
                a, numerical_gradient(lambda _: objective(), p))
    return report


def _checked_backward(dx, name, shape, dtype):
    """A layer's backward output checked as the network checks it in fit: a ``dtype`` array of ``shape``;
    a C-contiguous copy when it is not (a Fortran-order result is accepted, as fit accepts it)."""
    want = f"a {np.dtype(dtype).name} array of shape {shape}"
    if not isinstance(dx, np.ndarray):
        raise TypeError(f"{name} returned {type(dx).__name__}; the network needs {want}")
    if dx.shape != shape:
        raise ValueError(f"{name} returned shape {dx.shape}; the network needs {want}")
    if dx.dtype != dtype:
        raise TypeError(f"{name} returned dtype {dx.dtype}; the network needs {want}")
    return np.ascontiguousarray(dx)


def _param_pairs(layer, name):
    """(params, grads) of ``layer`` read once, checked: lists of float arrays pairwise of one shape and
    dtype, writeable and contiguous (they are perturbed in place); messages name ``name``.params[j]."""
    params, grads = layer.params, layer.grads
    for what, items in (("params", params), ("grads", grads)):
        if not isinstance(items, (list, tuple)):
            raise TypeError(f"{name}.{what} must be a list of arrays, got {type(items).__name__}")
    if len(params) != len(grads):
        raise ValueError(f"{name}: params and grads lists differ in length ({len(params)} and {len(grads)})")
    for j, (p, g) in enumerate(zip(params, grads)):
        where = f"{name}.params[{j}]"
        if not (isinstance(p, np.ndarray) and p.dtype.kind == "f"):
            raise TypeError(f"{where} must be a float numpy array, got {type(p).__name__}"
                            + (f" of dtype {p.dtype}" if isinstance(p, np.ndarray) else ""))
        if not isinstance(g, np.ndarray) or g.shape != p.shape or g.dtype != p.dtype:
            got = f"a {g.dtype} array of shape {g.shape}" if isinstance(g, np.ndarray) else type(g).__name__
            raise ValueError(f"{name}.grads[{j}] must be a {p.dtype} array of shape {p.shape} (its parameter's), "
                             f"got {got}")
        if not (p.flags.c_contiguous and p.flags.writeable):
            raise ValueError(f"{where} must be a writeable C-contiguous array (it is perturbed in place)")
    return list(params), [g.copy() for g in grads]


def _compare_params(layers, f, prefix="layers"):
    report = GradcheckReport()
    pairs = [_param_pairs(layer, f"{prefix}[{i}]" if prefix else "layer") for i, layer in enumerate(layers)]
    for i, (params, analytic) in enumerate(pairs):
        for j, (p, a) in enumerate(zip(params, analytic)):
            name = f"{prefix}[{i}].params[{j}]" if prefix else f"params[{j}]"
            numeric = _numerical_gradient(lambda _: f(), p, None, name)
            if numeric.shape != a.shape:       # a params property that returns other arrays on each read
                raise ValueError(f"{name} changed shape from {a.shape} to {numeric.shape} during the check")
            report[name] = relative_error(a, numeric)
    return report


def builtin_networks(seed=0):
    """The float64 networks ``fastnn gradcheck`` checks: (title, network, x) triples that together hold
    every built-in layer type (FullyConnected, ReLU, Sigmoid, TanH, SoftMax, LeakyReLU, ELU, SiLU, GELU
    exact and tanh, Softplus, Mish, Identity, Dropout) and every loss; each is checked on the per-layer path and,
    where it can run the network, the fused kernel (``gradcheck(..., fused="auto")``)."""
    from . import layers as L
    from .losses import CrossEntropyLoss, L2Loss, SigmoidCrossEntropy, SoftmaxCrossEntropy
    f64 = np.float64
    rng = np.random.default_rng(seed)

    def fc(n, m):
        return L.FullyConnected(n, m, init="xavier", dtype=f64)

    nets = [
        ("FC-ReLU-FC-Sigmoid-FC-TanH-FC-SoftMax + CrossEntropyLoss",
         [fc(4, 6), L.ReLU(), fc(6, 5), L.Sigmoid(), fc(5, 5), L.TanH(), fc(5, 3), L.SoftMax()], CrossEntropyLoss()),
        ("FC-TanH-FC + SoftmaxCrossEntropy", [fc(4, 6), L.TanH(), fc(6, 3)], SoftmaxCrossEntropy()),
        ("FC-ReLU-FC-Sigmoid-FC + L2Loss", [fc(4, 6), L.ReLU(), fc(6, 5), L.Sigmoid(), fc(5, 2)], L2Loss()),
        ("FC-LeakyReLU-FC-ELU-FC-SiLU-FC + SoftmaxCrossEntropy",
         [fc(4, 6), L.LeakyReLU(0.1), fc(6, 5), L.ELU(0.7), fc(5, 5), L.SiLU(), fc(5, 3)], SoftmaxCrossEntropy()),
        ("FC-GELU-FC-GELU(tanh)-FC-Softplus-FC-Mish-FC + L2Loss",
         [fc(4, 6), L.GELU(), fc(6, 5), L.GELU(approximate="tanh"), fc(5, 5), L.Softplus(), fc(5, 4), L.Mish(),
          fc(4, 2)], L2Loss()),
        ("FC-Identity-FC-TanH-Dropout(0.3)-FC + SigmoidCrossEntropy",
         [fc(4, 6), L.Identity(), fc(6, 5), L.TanH(), L.Dropout(0.3), fc(5, 3)], SigmoidCrossEntropy()),
    ]
    out = []
    for k, (title, layers, loss) in enumerate(nets):
        net = NeuralNetwork(layers, loss=loss, seed=seed + k)
        out.append((title, net, rng.standard_normal((5, 4))))
    return out
