"""The plan: one checked description of a network's layer stack, built at every fit and every step.

A network's layers, loss and optimizer are ordinary Python objects whose public attributes a user can
change at any time. Kernels trust the arrays they are handed, so nothing reaches a kernel except through a
Plan, built by ``build(net)`` right before the work and checked against the objects as they are now:

* every layer is owned by this network (a layer is in one network only) and is a fastnn ``Layer``;
* one float dtype for the whole stack; each layer's input width is the previous layer's output width;
* every FullyConnected still views its segment of the network's flat parameter / gradient buffers;
* the loss and optimizer are fastnn objects owned by (or claimed for) this network;
* the optimizer's state has exactly the slots its current hyperparameters need, each the shape, dtype and
  layout of its parameter (``Optimizer.ensure_state``).

Engines (fused, per-layer, distributed), io, checkpoints and gradcheck read the Plan, not the network's
private attributes. A Plan is a snapshot of the structure, not of the values: the arrays it holds are the
network's own buffers.
"""
from dataclasses import dataclass

import numpy as np

from .layers import FullyConnected, Layer, SoftMax
from .losses import CrossEntropyLoss, Loss
from .optimizers import Optimizer


@dataclass(frozen=True)
class Plan:
    """The checked structure of one network (see the module docstring).

    layers: the layer stack (tuple); loss, optimizer: the network's; dtype: the stack's float dtype;
    n_features / n_outputs: input and output widths; params / grads: the flat 1-D buffers holding every
    FullyConnected's weights then bias, in layer order; offsets (n_dense + 1,) int64: segment k of
    params/grads is offsets[k]:offsets[k+1]; dense: the FullyConnected layers, in order; param_layers: their
    indices in ``layers``; opt_params / opt_grads: what the optimizer updates — the flat buffer, then the
    parameters of layers outside it (custom layers).
    """
    layers: tuple
    loss: Loss
    optimizer: Optimizer
    dtype: np.dtype
    n_features: int
    n_outputs: int
    params: np.ndarray
    grads: np.ndarray
    offsets: np.ndarray
    dense: tuple
    param_layers: tuple
    opt_params: tuple
    opt_grads: tuple

    @property
    def classification(self):
        return self.loss.classification

    @property
    def stateless_inference(self):
        """True when every layer can compute its output without its buffers (predict runs beside a fit)."""
        return all(type(layer) is FullyConnected or layer._infer is not None for layer in self.layers)


def check_stack(layers):
    """(dtype, n_features, n_outputs) of a layer stack, or ValueError/TypeError saying what is wrong."""
    dtypes = {np.dtype(layer.dtype) for layer in layers if getattr(layer, "dtype", None) is not None}
    if len(dtypes) > 1:
        raise ValueError(f"all layers must share one dtype, got {sorted(d.name for d in dtypes)}")
    width = first = None
    for i, layer in enumerate(layers):
        if not isinstance(layer, Layer):
            raise TypeError(f"layers[{i}] must be a fastnn Layer, got {type(layer).__name__}")
        missing = [name for name in ("_forward", "_backward") if not callable(getattr(layer, name, None))]
        if missing:
            raise TypeError(f"layers[{i}] ({type(layer).__name__}) implements no {' and no '.join(missing)}: a "
                            f"fastnn layer implements _forward(x) and _backward(dy, need_input_grad=True) (the "
                            f"public forward and backward check their input, then call them; torch's "
                            f"forward is fastnn's _forward)")
        n_in = getattr(layer, "in_features", None)
        if n_in is not None:
            if width is not None and n_in != width:
                raise ValueError(f"layers[{i}] expects {n_in} inputs but the layer before it gives {width}")
            first = n_in if first is None else first
            width = layer.out_features
    if first is None:
        raise ValueError("the network needs at least one FullyConnected layer")
    return (dtypes.pop() if dtypes else np.dtype(np.float32)), first, width


def build(net, buffers, training=True):
    """The Plan of ``net`` now; ``buffers`` = (params, grads, offsets) of the network's flat storage.

    ``training=False`` (prediction) leaves the optimizer's state unchecked: predicting needs none of it."""
    params, grads, offsets = buffers
    layers = net.layers
    for i, layer in enumerate(layers):
        if layer.owner is not net:
            raise ValueError(f"layers[{i}] ({type(layer).__name__}) no longer belongs to this network")
    dtype, n_features, n_outputs = check_stack(layers)
    if dtype != params.dtype:
        raise ValueError(f"the layers' dtype {dtype.name} differs from the network's {params.dtype.name}")
    if (n_features, n_outputs) != (net.n_features, net.n_outputs):
        raise ValueError(f"the layers now take {n_features} features and give {n_outputs} outputs, but the "
                         f"network was built for {net.n_features} and {net.n_outputs} (a custom layer's "
                         f"in_features / out_features changed); build a new network")
    loss, optimizer = net.loss, net.optimizer
    if not isinstance(loss, Loss):
        raise TypeError(f"loss must be a fastnn Loss, got {type(loss).__name__}")
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer must be a fastnn Optimizer, got {type(optimizer).__name__}")
    if isinstance(loss, CrossEntropyLoss) and not isinstance(layers[-1], SoftMax):
        raise ValueError(f"CrossEntropyLoss takes probabilities, but the network's last layer is "
                         f"{type(layers[-1]).__name__}, not SoftMax, so its outputs are not probabilities "
                         f"(the loss could go negative and predict_proba rows would not sum to 1): add a "
                         f"SoftMax layer, or use SoftmaxCrossEntropy, which takes logits")
    loss.claim(net, "the loss")
    optimizer.claim(net, "the optimizer")
    dense = tuple(layer for layer in layers if type(layer) is FullyConnected)
    param_layers = tuple(i for i, layer in enumerate(layers) if type(layer) is FullyConnected)
    sizes = [layer.n_params for layer in dense]
    if len(offsets) != len(dense) + 1 or list(np.diff(offsets)) != sizes or offsets[-1] != params.size:
        raise ValueError("the network's FullyConnected layers no longer match its parameter buffer")
    for k, layer in enumerate(dense):
        if not layer.is_bound_to(params, grads):
            raise ValueError(f"layers[{param_layers[k]}] (FullyConnected) no longer views the network's "
                             f"parameter buffer")
    owners, extra_params, extra_grads = [], [], []
    for i, layer in enumerate(layers):
        if type(layer) is FullyConnected:
            continue
        own_params, own_grads = layer.params, layer.grads          # each property read once
        for what, items in (("params", own_params), ("grads", own_grads)):
            if not isinstance(items, (list, tuple)):
                raise TypeError(f"layers[{i}] ({type(layer).__name__}).{what} must be a list of arrays, got "
                                f"{type(items).__name__}")
        if len(own_params) != len(own_grads):
            raise ValueError(f"layers[{i}] ({type(layer).__name__}): params and grads lists differ in length "
                             f"({len(own_params)} and {len(own_grads)})")
        owners += [(i, layer)] * len(own_params)
        extra_params += own_params
        extra_grads += own_grads
    for (i, layer), p, g in zip(owners, extra_params, extra_grads):
        if not (isinstance(p, np.ndarray) and isinstance(g, np.ndarray)) or p.shape != g.shape \
                or p.dtype != dtype or g.dtype != dtype:
            raise ValueError(f"layers[{i}] ({type(layer).__name__}): a parameter and its gradient must be "
                             f"{dtype.name} arrays of one shape, got {_describe(p)} and {_describe(g)}")
        if training and not all(a.flags.c_contiguous and a.flags.writeable for a in (p, g)):
            raise ValueError(f"layers[{i}] ({type(layer).__name__}): parameters and gradients must be writeable "
                             f"C-contiguous arrays (the optimizer updates them in place)")
    opt_params = (params, *extra_params)
    opt_grads = (grads, *extra_grads)
    if training:
        optimizer.ensure_state(list(opt_params))
    return Plan(layers=layers, loss=loss, optimizer=optimizer, dtype=dtype, n_features=n_features,
                n_outputs=n_outputs, params=params, grads=grads, offsets=offsets, dense=dense,
                param_layers=param_layers, opt_params=opt_params, opt_grads=opt_grads)


def _describe(a):
    return f"a {a.dtype} array of shape {a.shape}" if isinstance(a, np.ndarray) else type(a).__name__
