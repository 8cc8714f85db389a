"""Layers: lightweight objects over the kernels.

The Layer protocol (what NeuralNetwork and Trainer rely on):

* ``forward(x)`` / ``backward(dy)``: the checked public calls; they validate and then call
* ``_forward(x)`` / ``_backward(dy, need_input_grad=True)``: the unchecked work, used by the network on
  data it has already checked. ``_backward`` may return None when ``need_input_grad`` is False.
* ``params`` / ``grads``: lists of arrays in the same order and shapes (empty for activations).
* ``owner`` (read-only): the NeuralNetwork the layer belongs to, or None. A layer belongs to at most one
  network; while that network trains, calling the layer directly raises RuntimeError (it would race with
  training for the layer's buffers).

Outputs live in buffers owned by the layer and reused by the next call (no allocation per training
step): the array ``forward`` returns is overwritten by the next ``forward`` of the same layer; copy it to
keep it. A smaller batch gets a view of the buffer.
"""
import hashlib
import json
import weakref

import numpy as np

from . import _checks, initializers
from .kernels import activations as act_kernels
from .kernels import dense as dense_kernels
from .kernels import dropout as drop_kernels
from .kernels import softmax_ce as sm_kernels
from .kernels._blas import MIN_THREADED_MACS
from .threads import blas_threads, parallel_pays


class Owned(_checks.Guarded):
    """What a network needs of its layers and its loss: one owner, and a mark of who ran the last forward.

    ``claim(net)`` makes ``net`` the owner (ValueError if another live network owns it); ``forward_mark`` is
    the token of the network forward that last wrote the object's buffers, reset to None by any direct
    (public) call, so that ``NeuralNetwork.backward`` can refuse to backpropagate through buffers that a
    direct call has replaced. The owner is kept as a weak reference and dropped on copy and pickling (the
    copied network claims its copied layers again).
    """

    _owner_ref = None
    #: set by the owning network's forward(x, y); any value is harmless (a mismatch only makes backward refuse)
    forward_mark = _checks.Checked(lambda value, name: value, default=None)
    #: set by the owning network when a fit (or gradcheck) leaves its gradients in ``grads``, reset to None by a
    #: direct backward: ``NeuralNetwork.step`` refuses to apply gradients that only a fit computed
    grads_mark = _checks.Checked(lambda value, name: value, default=None)

    @property
    def owner(self):
        return None if self._owner_ref is None else self._owner_ref()

    def _used_by(self, net):
        """True while ``net`` still holds this object (a replaced loss or optimizer is free again)."""
        return any(layer is self for layer in getattr(net, "_layers", ()))

    def claim(self, net, where):
        owner = self.owner
        if owner is not None and owner is not net and self._used_by(owner):
            raise ValueError(f"{where} ({type(self).__name__}) already belongs to another NeuralNetwork; a "
                             f"layer, loss or optimizer belongs to one network at a time (build a new one, or copy.deepcopy it)")
        self._owner_ref = weakref.ref(net)

    def _direct_call(self):
        """Called by the public forward/backward: refuse while the owner trains; forget the network's mark."""
        owner = self.owner
        if owner is not None and owner.in_training_call:
            raise RuntimeError(f"{type(self).__name__} is being trained by its network (fit or forward/backward "
                               f"in another thread); call it after training, or use net.predict")
        self.forward_mark = None

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("_owner_ref", None)
        state.pop("_checked_forward_mark", None)
        return state


class Layer(Owned):
    """Base class of every layer; subclasses implement ``_forward`` and ``_backward``."""

    def __init__(self):
        self._buffers = {}
        self._out = None
        self._in = None

    params = property(lambda self: [])
    grads = property(lambda self: [])

    #: torch's module mode: True (the default) while training, False after ``eval()``. Dropout drops in a
    #: standalone forward only in training mode; a network's fit runs its layers in training mode and
    #: predict in eval mode, and both give the layers back in the mode they had.
    training = _checks.Checked(_checks.flag, default=True)

    def train(self, mode=True):
        """Training mode (``mode=False``: eval mode), as torch.nn.Module.train; returns self."""
        self.training = _checks.flag(mode, "mode")
        return self

    def eval(self):
        """Eval (inference) mode, as torch.nn.Module.eval; returns self."""
        return self.train(False)

    #: ``_infer(x) -> new array``: the output for x without touching the layer's buffers (so that predict can
    #: run in any thread while the network trains). None for layers that have no such path (custom layers):
    #: the network then runs them through ``_forward`` while no training step runs.
    _infer = None

    def _buffer(self, name, rows, cols, dtype):
        """A (rows, cols) C-contiguous view of a reusable buffer, grown only when rows exceed it."""
        buf = self._buffers.get(name)
        if buf is None or buf.shape[0] < rows or buf.shape[1] != cols or buf.dtype != dtype:
            buf = self._buffers[name] = np.empty((rows, cols), dtype)
        return buf[:rows]

    def _check_input(self, x):
        dtype = getattr(self, "dtype", None)
        dtype = _checks.float_dtype_of(x) if dtype is None else dtype
        return _checks.matrix(x, "x", dtype, getattr(self, "in_features", None),
                              check_finite=False)

    def forward(self, x):
        """y = layer(x) for x (batch, in_features); returns the layer's output buffer."""
        x = self._check_input(x)
        self._direct_call()
        return self._forward(x)

    def backward(self, dy):
        """dL/dx from dL/dy (same shape as the last output); fills ``grads``."""
        self._direct_call()
        self.grads_mark = None
        if self._out is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        dy = _checks.matrix(dy, "dy", self._out.dtype, check_finite=False)
        if dy.shape != self._out.shape:
            raise ValueError(f"dy must have the shape of the last output {self._out.shape}, got {dy.shape}")
        return self._backward(dy)

    def __call__(self, x):
        return self.forward(x)

    def config(self):
        """The constructor arguments that rebuild this layer (used by save/load)."""
        return {}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"


_PROTOCOL = (("_forward", ("x",), "def _forward(self, x)"),
             ("_backward", ("dy", "need_input_grad"), "def _backward(self, dy, need_input_grad=True)"))


def check_protocol(target, where):
    """TypeError naming ``where`` when a layer (or a Layer subclass) has a ``_forward`` / ``_backward`` that
    cannot take the arguments fit calls them with (the protocol in this module's docstring): a one-argument
    ``_backward(self, dy)`` works for ``layer.backward(dy)`` but not for a fit, which passes
    ``need_input_grad``. Checked when a network is built and when a layer is registered, not mid-fit."""
    import inspect
    for name, args, expected in _PROTOCOL:
        method = getattr(target, name, None)
        if not callable(method):
            continue                     # not defined (yet): using it says so
        try:
            sig = inspect.signature(method)
        except (TypeError, ValueError):
            continue                     # a builtin or C callable: nothing to inspect
        if isinstance(target, type) and not isinstance(inspect.getattr_static(target, name), staticmethod):
            args = ("self",) + args      # a plain function on the class: self is a parameter
        try:
            sig.bind(*args)
        except TypeError:
            raise TypeError(f"{where}: {name}{sig} cannot be called the way a fit calls it, "
                            f"{name}({', '.join(args[1:] if isinstance(target, type) else args)}); the Layer "
                            f"protocol (fastnn.layers) is {expected}") from None


def register_layer(cls):
    """Make a custom ``Layer`` subclass savable and loadable; returns ``cls`` (so it works as a decorator).

    ``fastnn.register_layer(MyLayer)`` or ``@fastnn.register_layer`` above ``class MyLayer(fastnn.Layer)``.
    A registered layer is saved as its ``params`` (tensors "layers.{i}.0", "layers.{i}.1", ...) and its
    ``config()`` (a JSON object of constructor arguments); loading looks its class name up in
    ``LAYER_TYPES`` and rebuilds it as ``MyLayer(**config)``, then copies the saved values into the new
    layer's ``params`` arrays — so ``params`` must return the layer's own arrays, the same shapes for the
    same config. Register before ``save`` (an unregistered custom layer is refused there, with this hint)
    and before ``load`` in the process that loads (import the module that defines and registers it).

    The name is the class name: a name already taken by another class is refused with ValueError, except
    that a class re-defined in the same module with the same qualified name (a re-run notebook cell)
    replaces the earlier definition; fastnn's own layers are never replaced.
    """
    if not isinstance(cls, type) or not issubclass(cls, Layer) or cls is Layer:
        raise TypeError(f"register_layer needs a subclass of fastnn.Layer (the class itself), got {cls!r:.100}")
    check_protocol(cls, f"register_layer({cls.__qualname__})")
    name = cls.__name__
    known = LAYER_TYPES.get(name)
    if known is not None and known is not cls:
        same_definition = (known.__module__, known.__qualname__) == (cls.__module__, cls.__qualname__)
        if known.__module__ == __name__ or not same_definition:
            where = "fastnn's built-in layer" if known.__module__ == __name__ else \
                f"the registered layer {known.__module__}.{known.__qualname__}"
            raise ValueError(f"cannot register {cls.__module__}.{cls.__qualname__}: the layer type name "
                             f"{name!r} is taken by {where}; model files name layers by class name, so "
                             f"rename the class")
    LAYER_TYPES[name] = cls
    return cls


def _layer_seed(seed):
    """A layer's seed: None, a non-negative int, or a NumPy Generator / SeedSequence / BitGenerator (what
    ``np.random.default_rng`` takes; not savable as a model file's JSON, which ``save`` says)."""
    if isinstance(seed, (np.random.Generator, np.random.SeedSequence, np.random.BitGenerator)):
        return seed
    return _checks.seed(seed, "seed")


class FullyConnected(Layer):
    """y = x @ weights + bias, for x (batch, in_features) -> y (batch, out_features).

    ``weights`` is (in_features, out_features) and ``bias`` (out_features,), both of ``dtype``; ``backward``
    sets ``grad_weights`` = xᵀ·dy and ``grad_bias`` = Σ_batch dy and returns dx = dy·weightsᵀ. Assigning to
    ``weights`` or ``bias`` copies the values in (shapes are checked).
    """

    def __init__(self, in_features, out_features, init="he", dtype=np.float32, seed=None):
        super().__init__()
        self._in_features = _checks.positive_int(in_features, "in_features")
        self._out_features = _checks.positive_int(out_features, "out_features")
        self._dtype = _checks.float_dtype(dtype)
        self._init_fn = initializers.get(init)
        self._init, self._seed = init, _layer_seed(seed)
        initializers.check_fits(self.in_features, self.out_features, self.dtype)
        size = self.in_features * self.out_features + self.out_features
        self.bind(np.zeros(size, self.dtype), np.zeros(size, self.dtype))
        self.reset_parameters(seed)

    # The shape and dtype are fixed at construction: the parameter buffers are sized from them.
    _FIXED = "fixed at construction (the weights are sized from it); build a new FullyConnected layer instead"
    in_features = _checks.ReadOnly(lambda self: self._in_features, _FIXED)
    out_features = _checks.ReadOnly(lambda self: self._out_features, _FIXED)
    dtype = _checks.ReadOnly(lambda self: self._dtype, _FIXED)
    init = _checks.ReadOnly(lambda self: self._init, "the initializer is fixed at construction; assign weights "
                                                     "or call reset_parameters(seed) instead")
    seed = _checks.ReadOnly(lambda self: self._seed, "fixed at construction; call reset_parameters(seed) to "
                                                     "draw new weights from another seed")

    @property
    def n_params(self):
        return self.in_features * self.out_features + self.out_features

    def is_bound_to(self, flat_params, flat_grads):
        """True when the parameters and gradients are the views of these 1-D buffers that ``bind`` made."""
        return (self._flat_params.base is flat_params and self._flat_grads.base is flat_grads
                and self._w.shape == (self.in_features, self.out_features) and self._b.shape == (self.out_features,))

    def bind(self, flat_params, flat_grads):
        """Move parameters and gradients into the given 1-D arrays (views of a network's flat buffers)."""
        n, m = self.in_features, self.out_features
        old = getattr(self, "_flat_params", None)
        if old is not None:
            flat_params[:] = old
        self._flat_params, self._flat_grads = flat_params, flat_grads
        self._w, self._b = flat_params[:n * m].reshape(n, m), flat_params[n * m:]
        self._dw, self._db = flat_grads[:n * m].reshape(n, m), flat_grads[n * m:]

    def reset_parameters(self, seed=None):
        """Draw fresh weights with the layer's initializer (seeded) and zero the bias."""
        rng = np.random.default_rng(seed)
        self._w[...] = self._init_fn(self.in_features, self.out_features, rng, self.dtype)
        self._b[...] = 0

    weights = property(lambda self: self._w, lambda self, v: _checks.values_into(self._w, v, "weights"))
    bias = property(lambda self: self._b, lambda self, v: _checks.values_into(self._b, v, "bias"))
    grad_weights = property(lambda self: self._dw)
    grad_bias = property(lambda self: self._db)
    params = property(lambda self: [self._w, self._b])
    grads = property(lambda self: [self._dw, self._db])

    def _forward(self, x):
        return self._forward_activated(x)

    def _backward(self, dy, need_input_grad=True, activation=None):
        """Backward of this layer; with ``activation`` (an Activation that ``_forward_activated`` ran), of the
        activation after it too: its output is then this layer's buffered output, its pre-activation (when
        its derivative needs one) its ``z`` buffer, and delta goes to its "dx" buffer."""
        rows = dy.shape[0]
        if self._in is None or self._in.shape[0] != rows or self._out.shape != dy.shape:
            raise RuntimeError("FullyConnected backward: dy does not match the saved forward batch "
                               f"(input {None if self._in is None else self._in.shape}, dy {dy.shape})")
        dx = self._buffer("dx", rows, self._in_features, self._dtype) if need_input_grad else _no_rows(self._dtype)
        code, param, z, delta = act_kernels.IDENTITY, 0.0, _no_rows(self._dtype), _no_rows(self._dtype)
        if activation is not None:
            code, param = activation.code, activation.param
            z = activation._saved_z(dy)
            delta = activation._buffer("dx", rows, self._out_features, self._dtype)
        dense_kernels.kernels_for(code).backward(self._in, self._out, z, dy, code, param, self._w, self._dw, self._db, dx, delta,
                               _blas_threads(rows, self._in_features, self._out_features))
        return dx if need_input_grad else None

    def _forward_activated(self, x, activation=None):
        """f(x @ weights + bias) in one pass for the Activation ``activation`` (None: no activation); the
        output is buffered here and, as the activation's output, there (its pre-activation too if needed)."""
        out = self._buffer("out", x.shape[0], self._out_features, self._dtype)
        code, param, z = act_kernels.IDENTITY, 0.0, _no_rows(self._dtype)
        if activation is not None:
            code, param = activation.code, activation.param
            if act_kernels.needs_z(code):
                z = activation._buffer("z", x.shape[0], self._out_features, self._dtype)
        group = dense_kernels.kernels_for(code)
        run = group.forward_parallel if parallel_pays(out.size) else group.forward
        run(x, self._w, self._b, code, param, z, out, _blas_threads(x.shape[0], self._in_features, self._out_features))
        self._in, self._out = x, out
        if activation is not None:
            activation._in = z if z.shape[0] else None
            activation._out = out
        return out

    def _infer_with(self, x, weights, bias, activation=None, check=False):
        """(f(x @ weights + bias) into a new array, for given weights (a snapshot); no buffer is touched,
        bad): with ``check``, ``bad`` is the first row whose x @ weights is not finite (every row of x that
        holds NaN or Inf is one; kernels/dense.py ``infer``), else -1; without, always -1."""
        out = np.empty((x.shape[0], self._out_features), self._dtype)
        code, param = (act_kernels.IDENTITY, 0.0) if activation is None else (activation.code, activation.param)
        group = dense_kernels.kernels_for(code)
        run = group.infer_parallel if parallel_pays(out.size) else group.infer
        bad = run(x, weights, bias, code, param, out, _blas_threads(x.shape[0], self._in_features, self._out_features),
                  check)
        return out, bad

    def config(self):
        return {"in_features": self.in_features, "out_features": self.out_features, "init": self.init,
                "dtype": self.dtype.name, "seed": self.seed}


def _blas_threads(rows, n_in, n_out):
    """The BLAS threads a (rows × n_in) · (n_in × n_out) GEMM of this thread may use: the thread count
    (fastnn.threads), asked only when the GEMM is large enough to be split (kernels._blas)."""
    return blas_threads() if rows * n_in * n_out >= MIN_THREADED_MACS else 1


def _check_saved(layer, dy):
    """The saved output must be the one dy is the gradient of (a kernel would read past a smaller one)."""
    out = layer._out
    if out is None or out.shape != dy.shape or out.dtype != dy.dtype:
        raise RuntimeError(f"{type(layer).__name__} backward: dy {dy.shape} does not match the saved output "
                           f"{None if out is None else out.shape}")


_NO_ROWS = {np.dtype(np.float32): np.empty((0, 0), np.float32), np.dtype(np.float64): np.empty((0, 0))}


def _no_rows(dtype):
    """An empty (0, 0) array of ``dtype``: tells a kernel "no such output"."""
    return _NO_ROWS[dtype]


class Activation(Layer):
    """Base class of the elementwise activations that run as a kernel code (kernels/activations.py).

    A subclass declares its ``code`` (and, if it has one, its numeric ``param``, e.g. a slope); that is
    all an activation needs to run in every engine: the per-layer path, the fused dense + activation pass
    and the fused epoch kernel (see ``fused_activation``). The derivative is taken from the saved output,
    or from the saved input for the codes whose derivative needs it (``kernels.activations.NEEDS_Z``).
    Input and output: (batch, features), float32 or float64; no parameters.
    """

    code = act_kernels.IDENTITY
    param = 0.0

    def _saved_z(self, dy):
        """The saved pre-activation for the derivative, or an empty array when the code does not read it."""
        if not act_kernels.needs_z(self.code):
            return _no_rows(dy.dtype)
        z = self._in
        if z is None or z.shape != dy.shape or z.dtype != dy.dtype:
            raise RuntimeError(f"{type(self).__name__} backward: dy {dy.shape} does not match the saved input "
                               f"{None if z is None else z.shape}")
        return z

    def _activate(self, x, out, no_bias):
        group = act_kernels.kernels_for((self.code,))
        (group.bias_activate_parallel if parallel_pays(out.size) else group.bias_activate)(
            x, no_bias, self.code, self.param, out)
        return out

    def _forward(self, x):
        no_bias = self._buffer("zero_bias", 1, x.shape[1], x.dtype)[0]
        no_bias[:] = 0
        out = self._activate(x, self._buffer("out", x.shape[0], x.shape[1], x.dtype), no_bias)
        self._out = out
        self._in = x if act_kernels.needs_z(self.code) else None
        return out

    def _infer(self, x):
        return self._activate(x, np.empty_like(x), np.zeros(x.shape[1], x.dtype))

    def _backward(self, dy, need_input_grad=True):
        _check_saved(self, dy)
        z = self._saved_z(dy)
        dx = self._buffer("dx", dy.shape[0], dy.shape[1], dy.dtype)
        group = act_kernels.kernels_for((self.code,))
        run = group.multiply_derivative_parallel if parallel_pays(dx.size) else group.multiply_derivative
        run(self.code, self.param, self._out, z, dy, dx)
        return dx


def fused_activation(layer):
    """True when ``layer`` runs exactly its kernel code: an Activation whose class overrides none of the
    computing methods (a subclass that does is run as the custom layer it is)."""
    cls = type(layer)
    return (isinstance(layer, Activation) and layer.code in act_kernels.CODES.values()
            and all(getattr(cls, name) is getattr(Activation, name) for name in ("_forward", "_backward", "_infer")))


_real = _checks.real


def _read_only(cls_name, name):
    def refuse(self, value):
        raise AttributeError(f"{cls_name}.{name} is fixed at construction; build a new {cls_name} instead")
    return refuse


class Identity(Activation):
    """x unchanged (torch.nn.Identity); derivative 1."""
    code = act_kernels.IDENTITY


class ReLU(Activation):
    """max(x, 0) elementwise; derivative [y > 0]."""
    code = act_kernels.RELU


class Sigmoid(Activation):
    """1 / (1 + exp(-x)) elementwise (overflow-free); derivative y (1 - y)."""
    code = act_kernels.SIGMOID


class TanH(Activation):
    """tanh(x) elementwise; derivative 1 - y²."""
    code = act_kernels.TANH


class LeakyReLU(Activation):
    """x if x > 0 else negative_slope · x (torch.nn.LeakyReLU); ``negative_slope``: a finite float, fixed at
    construction."""
    code = act_kernels.LEAKY_RELU

    def __init__(self, negative_slope=0.01):
        super().__init__()
        self._slope = _real(negative_slope, "negative_slope")

    negative_slope = property(lambda self: self._slope, _read_only("LeakyReLU", "negative_slope"))
    param = property(lambda self: self._slope)

    def config(self):
        return {"negative_slope": self.negative_slope}


class ELU(Activation):
    """x if x > 0 else alpha · (exp(x) - 1) (torch.nn.ELU, computed with expm1); ``alpha``: a finite float,
    fixed at construction."""
    code = act_kernels.ELU

    def __init__(self, alpha=1.0):
        super().__init__()
        self._alpha = _real(alpha, "alpha")

    alpha = property(lambda self: self._alpha, _read_only("ELU", "alpha"))
    param = property(lambda self: self._alpha)

    def config(self):
        return {"alpha": self.alpha}


class SiLU(Activation):
    """x · sigmoid(x) (torch.nn.SiLU, "swish"); the derivative is read at the saved input."""
    code = act_kernels.SILU


class GELU(Activation):
    """x · Φ(x) (torch.nn.GELU): ``approximate="none"`` the exact form x/2 (1 + erf(x/√2)), ``"tanh"``
    x/2 (1 + tanh(√(2/π)(x + 0.044715 x³))); fixed at construction."""

    def __init__(self, approximate="none"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r:.100}")
        self._approximate = approximate

    approximate = property(lambda self: self._approximate, _read_only("GELU", "approximate"))
    code = property(lambda self: act_kernels.GELU if self._approximate == "none" else act_kernels.GELU_TANH)

    def config(self):
        return {"approximate": self.approximate}


class Softplus(Activation):
    """log(1 + exp(x)), and x itself above 20 (torch.nn.Softplus with beta=1, threshold=20)."""
    code = act_kernels.SOFTPLUS


class Mish(Activation):
    """x tanh(softplus(x)) (torch.nn.Mish)."""
    code = act_kernels.MISH


class SoftMax(Layer):
    """Row-wise softmax (batch, classes) -> probabilities; use with CrossEntropyLoss.

    For training a classifier prefer SoftmaxCrossEntropy on logits: it is fused and more stable.
    """

    def _forward(self, x):
        out = self._buffer("out", x.shape[0], x.shape[1], x.dtype)
        sm_kernels.softmax(x, out)
        self._out = out
        return out

    def _infer(self, x):
        out = np.empty_like(x)
        sm_kernels.softmax(x, out)
        return out

    def _backward(self, dy, need_input_grad=True):
        _check_saved(self, dy)
        dx = self._buffer("dx", dy.shape[0], dy.shape[1], dy.dtype)
        sm_kernels.softmax_backward(self._out, dy, dx)
        return dx


def dropout_epoch_key(stream):
    """The dropout key (a uint64 as a Python int) of one epoch of a fit: one uint64 drawn from the fit's
    shuffling stream (a ``np.random.Generator``) after the epoch's order, then mixed. The stream is the
    network's, continued from fit to fit (``shuffle_state``; stored by checkpoints), and every epoch draws from
    it, so every epoch of every fit gets its own key — with shuffle=False too — and k fits of one epoch draw the
    keys of one fit of k epochs. The mask of a unit is then a pure function of (this key, batch index, row
    position in the batch, unit) — see kernels/dropout.py."""
    return drop_kernels.epoch_key(int(stream.integers(0, 2 ** 64, dtype=np.uint64)), 0)


def has_keyed_layers(net_or_layers):
    """True when a layer of the network (or list of layers) takes a batch key (Dropout): engines then pass
    ``NeuralNetwork._forward`` one."""
    layers = getattr(net_or_layers, "layers", net_or_layers)
    return any(getattr(layer, "takes_batch_key", False) for layer in layers)


def draws_epoch_keys(net_or_layers):
    """True when a layer of the network (or list of layers) uses a batch key — a Dropout with p > 0, a custom
    layer that takes one: the training loop then draws each epoch's key from the shuffling stream
    (``dropout_epoch_key``). Dropout(0), the identity, draws none, so it trains as the network without it."""
    layers = getattr(net_or_layers, "layers", net_or_layers)
    return any(getattr(layer, "takes_batch_key", False) and not (isinstance(layer, Dropout) and layer.p == 0)
               for layer in layers)


def manual_dropout_key(seed):
    """The batch key ``NeuralNetwork.forward(x, y)`` uses: batch 0 of epoch 0 of the network's seed (0 when
    None) — the same mask at every call, so that a manual forward/backward is one fixed linear map."""
    return drop_kernels.epoch_key(0 if seed is None else int(seed), 0), 0, 0


class Dropout(Layer):
    """Inverted dropout (torch.nn.Dropout): while training, each unit is kept with probability 1 - p and
    scaled by 1/(1-p) (rounded to the dtype), else zeroed; at inference (predict, evaluate, forward(x)) the
    identity. ``p``: a float in [0, 1), fixed at construction.

    Masks come from a batch key, not from a generator: ``_forward(x, key)`` with key = (epoch key, batch
    index, first row's position in the batch) — the training loop passes one per mini-batch
    (``dropout_epoch_key``), ``NeuralNetwork.forward(x, y)`` a fixed one (``manual_dropout_key``); key None
    is inference. For one key dropout is a fixed linear map, so gradients check exactly (``fnn.gradcheck`` of
    a network uses the key of the fit it runs). ``_backward`` applies the mask of the last keyed forward to dy.

    Standalone use, torch's habit: ``forward(x)`` in training mode (the default; ``train()`` / ``eval()``
    switch) drops with a fresh key per call drawn from the layer's own generator, seeded by ``seed`` (None:
    unpredictable; an int: the same sequence of masks from a new layer), and ``backward`` applies that mask;
    in eval mode ``forward(x)`` is the identity. ``forward(x, key)`` uses the given key in either mode. A
    network ignores the mode of its Dropout layers for its own calls: fit drops, predict never does.
    """

    takes_batch_key = True

    def __init__(self, p=0.5, seed=None):
        super().__init__()
        p = _real(p, "p")
        if not 0.0 <= p < 1.0:
            raise ValueError(f"p must be in [0, 1) (the probability of dropping a unit), got {p}")
        self._p = p
        self._key = None
        self._seed = _checks.seed(seed, "seed")
        self._rng = np.random.default_rng(self._seed)

    seed = _checks.ReadOnly(lambda self: self._seed, "fixed at construction; build a new Dropout(p, seed=...) "
                                                     "for another mask sequence")

    p = _checks.ReadOnly(lambda self: self._p, "fixed at construction; build a new Dropout instead")
    #: the keep threshold of kernels/dropout.py and the scale of kept units (float64; rounded to the dtype)
    threshold = property(lambda self: drop_kernels.threshold(self._p))
    scale = property(lambda self: 1.0 / (1.0 - self._p))

    def forward(self, x, key=None):
        """Dropout of x (batch, features) with the batch key ``key`` = (epoch key in [0, 2**64), batch index
        >= 0, first row's position >= 0); without a key: in training mode with a key drawn from the layer's
        generator (see the class docstring), in eval mode the identity."""
        x = self._check_input(x)
        if key is None and self.training and self._p > 0:
            key = (int(self._rng.integers(0, 2 ** 64, dtype=np.uint64)), 0, 0)
        if key is not None:
            ok = isinstance(key, tuple) and len(key) == 3 and all(
                isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 0 for v in key)
            if not ok or key[0] >= 2 ** 64 or key[1] >= 2 ** 63 or key[2] >= 2 ** 63:
                raise ValueError(f"key must be None or a tuple (epoch key < 2**64, batch index, first row) of "
                                 f"non-negative integers, got {key!r:.100}")
        self._direct_call()
        return self._forward(x, key)

    def _forward(self, x, key=None):
        self._key = key
        if key is None:
            out = self._buffer("out", x.shape[0], x.shape[1], x.dtype)
            out[...] = x
        else:
            out = self._masked(x, "out", key)
        self._out = out
        return out

    def _masked(self, x, name, key):
        epoch_key, batch, row0 = key
        out = self._buffer(name, x.shape[0], x.shape[1], x.dtype)
        drop_kernels.apply(np.uint64(epoch_key), int(batch), int(row0), self.threshold, self.scale,
                           np.ascontiguousarray(x), out)
        return out

    def _infer(self, x):
        return x.copy()

    def _backward(self, dy, need_input_grad=True):
        _check_saved(self, dy)
        if self._key is None:
            dx = self._buffer("dx", dy.shape[0], dy.shape[1], dy.dtype)
            dx[...] = dy
            return dx
        return self._masked(dy, "dx", self._key)

    def config(self):
        return {"p": self.p} if self._seed is None else {"p": self.p, "seed": self._seed}


#: every activation by its name (fastnn train --activation)
ACTIVATIONS = {"relu": ReLU, "sigmoid": Sigmoid, "tanh": TanH, "leaky_relu": LeakyReLU, "elu": ELU, "silu": SiLU,
               "gelu": GELU, "softplus": Softplus, "identity": Identity, "mish": Mish}
#: the layer classes a model file may name (fastnn.io rebuilds each from its config())
LAYER_TYPES = {cls.__name__: cls for cls in (FullyConnected, SoftMax, Dropout, *ACTIVATIONS.values())}
