"""Finite-difference gradients and gradient checks (the lecture's "check your implementation").

A network is checked on both training paths: the per-layer backward pass, and — when the fused whole-epoch
kernel can train the network — the gradient that kernel computes for one batch (read back from one SGD step
of learning rate 1 on a copy of the network), including the optimizer's coupled weight decay and
scikit-learn's L2 penalty as gradients of the objective they add.

Central differences: df/dx_i ≈ (f(x + h_i e_i) - f(x - h_i e_i)) / (2 h_i), with h_i = cbrt(eps) ·
max(|x_i|, 1): the step that balances truncation error O(h²) against rounding error O(eps/h).
"""
import copy

import numpy as np

from .layers import Layer, dropout_epoch_key
from .network import NeuralNetwork
from .optimizers import SGD, AdamW


def numerical_gradient(f, x, h=None):
    """Central-difference gradient of the scalar function ``f`` at the float array ``x``.

    ``x`` is perturbed in place, one element at a time, and restored exactly, so ``f`` may read it
    through a closure (e.g. a layer's weights). Returns an array of x's shape and dtype.
    """
    if not isinstance(x, np.ndarray) or x.dtype.kind != "f":
        raise TypeError(f"x must be a float numpy array, got {type(x).__name__}"
                        + (f" of dtype {x.dtype}" if isinstance(x, np.ndarray) else ""))
    if not x.flags.writeable:
        raise ValueError("x must be writeable: it is perturbed in place and restored")
    base = np.cbrt(np.finfo(x.dtype).eps)
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    if not np.shares_memory(flat, x):
        raise ValueError("x must be contiguous so that it can be perturbed in place")
    for i in range(flat.size):
        old = flat[i]
        step = base * max(abs(float(old)), 1.0) if h is None else h
        flat[i] = old + step
        f_plus = float(f(x))
        flat[i] = old - step
        f_minus = float(f(x))
        flat[i] = old
        gflat[i] = (f_plus - f_minus) / (2 * step)
    return grad


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
    g = rng.standard_normal(layer._forward(x).shape)

    def scalar():
        return float(np.sum(layer._forward(x) * g))

    scalar()
    dx = layer._backward(g.astype(x.dtype)).copy()
    report = _compare_params([layer], scalar, prefix="")
    report["x"] = relative_error(dx, numerical_gradient(lambda _: scalar(), x))
    return report


def _fit_key():
    """The Dropout batch key of the one-batch fit that ``_check_fused_path`` runs (seed 0, no shuffling, a
    fresh stream: epoch 1, batch 0, row 0): both paths check the same fixed mask, a linear map."""
    return dropout_epoch_key(np.random.default_rng(0).bit_generator.state, 1), 0, 0


def _check_layer_path(net, x, target):
    key = _fit_key()

    def loss():
        return net.loss._forward(net.train_forward(x, key), target)

    loss()
    net.train_backward()
    dx = net.loss.backward()
    for layer in reversed(net.layers):
        dx = layer._backward(dx)
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


def _compare_params(layers, f, prefix="layers"):
    report = GradcheckReport()
    analytic = [[g.copy() for g in layer.grads] for layer in layers]
    for i, layer in enumerate(layers):
        for j, (p, a) in enumerate(zip(layer.params, analytic[i])):
            name = f"{prefix}[{i}].params[{j}]" if prefix else f"params[{j}]"
            report[name] = relative_error(a, numerical_gradient(lambda _: f(), p))
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
