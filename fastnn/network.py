"""NeuralNetwork: an ordered list of layers, a loss and an optimizer.

All parameters of the built-in layers live in one flat buffer (and their gradients in another), so an
optimizer step is one kernel call and a checkpoint or an allreduce is one array.
"""
import threading

import numpy as np

from . import _checks
from .layers import FullyConnected, Layer, ReLU, Sigmoid, TanH
from .losses import Loss, SoftmaxCrossEntropy
from .optimizers import SGD, Optimizer

PREDICT_CHUNK = 8192
_NET_SEED = object()  # fit's default seed: the network's own


class NeuralNetwork:
    """A feed-forward network: ``layers`` applied in order, trained with ``loss`` and ``optimizer``.

    ``seed`` (int or None): when given, every layer built without its own seed is re-initialised from it,
    and ``fit`` shuffles with it, so one seed makes a whole run reproducible.
    """

    def __init__(self, layers, loss=None, optimizer=None, seed=None):
        layers = list(layers) if not isinstance(layers, Layer) else [layers]
        if not layers:
            raise ValueError("layers must contain at least one layer")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"layers[{i}] must be a fastnn Layer, got {type(layer).__name__}")
        loss = SoftmaxCrossEntropy() if loss is None else loss
        if not isinstance(loss, Loss):
            raise TypeError(f"loss must be a fastnn Loss, got {type(loss).__name__}")
        optimizer = SGD(lr=0.01) if optimizer is None else optimizer
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer must be a fastnn Optimizer, got {type(optimizer).__name__}")
        self.layers, self.loss, self.optimizer, self.seed = layers, loss, optimizer, seed
        self.dtype = self._common_dtype()
        self.n_features, self.n_outputs = self._check_chain()
        self._bind_parameters()
        self._steps = _plan_steps(layers)
        if seed is not None:
            self._reseed(seed)
        self._lock = threading.Lock()
        self._ready_for_backward = False
        self.history = {}

    def __getstate__(self):
        """Copying in memory (deepcopy, or a process pool of a grid search) drops the lock; model files
        are safetensors, never this."""
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state):
        """A copy's layer arrays no longer view its flat buffers (copies copy views apart): bind again."""
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._bind_parameters()

    # -- construction ---------------------------------------------------------------------------
    def _common_dtype(self):
        dtypes = {layer.dtype for layer in self.layers if hasattr(layer, "dtype")}
        if len(dtypes) > 1:
            raise ValueError(f"all layers must share one dtype, got {sorted(d.name for d in dtypes)}")
        return dtypes.pop() if dtypes else np.dtype(np.float32)

    def _check_chain(self):
        width = first = None
        for i, layer in enumerate(self.layers):
            n_in = getattr(layer, "in_features", None)
            if n_in is not None:
                if width is not None and n_in != width:
                    raise ValueError(f"layers[{i}] expects {n_in} inputs but the layer before it gives {width}")
                first = n_in if first is None else first
                width = layer.out_features
        if first is None:
            raise ValueError("the network needs at least one FullyConnected layer")
        return first, width

    def _bind_parameters(self):
        """One flat buffer for every bindable layer's parameters; offsets mark each layer's segment."""
        bindable = [layer for layer in self.layers if hasattr(layer, "bind")]
        total = sum(layer.n_params for layer in bindable)
        self._flat_params = np.zeros(total, self.dtype)
        self._flat_grads = np.zeros(total, self.dtype)
        offsets, self._param_layers, start = [0], [], 0
        for i, layer in enumerate(self.layers):
            if hasattr(layer, "bind"):
                end = start + layer.n_params
                layer.bind(self._flat_params[start:end], self._flat_grads[start:end])
                offsets.append(end)
                self._param_layers.append(i)
                start = end
        self._offsets = np.array(offsets, np.int64)
        self._norms = np.zeros(len(offsets) - 1, np.float64)
        others = [layer for layer in self.layers if not hasattr(layer, "bind")]
        self._opt_params = [self._flat_params] + [p for layer in others for p in layer.params]
        self._opt_grads = [self._flat_grads] + [g for layer in others for g in layer.grads]

    def _reseed(self, seed):
        layers = [layer for layer in self.layers if hasattr(layer, "reset_parameters")]
        children = np.random.SeedSequence(seed).spawn(len(layers))
        for layer, child in zip(layers, children):
            if getattr(layer, "seed", None) is None:
                layer.reset_parameters(child)

    @property
    def classification(self):
        return self.loss.classification

    @property
    def params(self):
        return [p for layer in self.layers for p in layer.params]

    @property
    def grads(self):
        return [g for layer in self.layers for g in layer.grads]

    @property
    def n_params(self):
        return sum(p.size for p in self.params)

    # -- checked public API ---------------------------------------------------------------------
    def check_input(self, X, name="X"):
        return _checks.matrix(X, name, self.dtype, self.n_features)

    def check_target(self, y, n, name="y"):
        """y checked for the loss (its ``check_target``): C-contiguous, the network's dtype or int64 ids."""
        return self.loss.check_target(y, name, n, self.n_outputs, self.dtype)

    def forward(self, x, y=None):
        """The output for x (batch, n_features) — a new array; with y, the mean loss (a float).

        ``forward(x, y)`` prepares ``backward()``.
        """
        x = self.check_input(x, "x")
        self._ready_for_backward = False
        if y is None:
            with self._lock:
                return self._forward(x).copy()
        y = self.check_target(y, x.shape[0], "y")
        loss = self.loss._forward(self._forward(x), y)
        self._ready_for_backward = True
        return loss

    def backward(self):
        """Backpropagation from the last ``forward(x, y)``: fills every layer's gradients."""
        if not self._ready_for_backward:
            raise RuntimeError("backward() needs a forward(x, y) with targets first (forward(x), predict "
                               "and evaluate replace the saved activations)")
        self._backward()

    def step(self):
        """One optimizer update of every parameter from the current gradients."""
        self.optimizer.step(self._opt_params, self._opt_grads)

    def zero_grad(self):
        for g in self._opt_grads:
            g[...] = 0

    def predict_proba(self, X):
        """Class probabilities (n, classes) for a classifier."""
        if not self.classification:
            raise TypeError("predict_proba needs a classification loss; this network does regression")
        X = self.check_input(X)
        return np.concatenate([self.loss.output_probabilities(out) for out in self._outputs(X)])

    def predict(self, X):
        """What the loss predicts (its ``predictions``): class ids (n,) int64 for a softmax classifier; 0/1
        labels (n,) or indicators (n, k) int64 for SigmoidCrossEntropy; outputs (n, outputs) for regression."""
        X = self.check_input(X)
        return np.concatenate([self.loss.predictions(out) for out in self._outputs(X)])

    def evaluate(self, X, y):
        """{"loss": mean loss, "accuracy": fraction correct (classifiers only)} over all of X."""
        X = self.check_input(X)
        y = self.check_target(y, X.shape[0])
        loss_sum = correct = 0.0
        for start, out in zip(range(0, len(X), PREDICT_CHUNK), self._outputs(X)):
            yb = y[start:start + len(out)]
            loss_sum += self.loss._forward(out, yb) * len(out)
            if self.classification:
                correct += self.loss.count_correct(out, yb)
        result = {"loss": loss_sum / len(X)}
        if self.classification:
            result["accuracy"] = correct / len(X)
        return result

    def fit(self, X, y, epochs=10, batch_size=64, validation_data=None, shuffle=True, verbose=1, *,
            seed=_NET_SEED, fused="auto", checkpoint=None, checkpoint_every=1, distributed=False):
        """Train with mini-batch gradient descent; returns the per-epoch history (see Trainer).

        ``seed`` shuffles (default: the network's seed, or 0); ``fused`` picks the training path;
        ``checkpoint=PATH`` writes a crash-safe checkpoint every ``checkpoint_every`` epochs and resumes
        from PATH when it exists (bit-identical to an uninterrupted run). Ctrl-C stops cleanly after the
        current batch (per-layer path) or epoch (fused path) and raises TrainingInterrupted, a
        KeyboardInterrupt.

        ``distributed=True`` trains data-parallel over the ranks of an MPI job (``mpiexec -n K python ...``;
        needs ``pip install 'fastnn[mpi]'``): every rank calls fit with the same arguments, ``batch_size`` is
        each rank's local batch (the global batch is K * batch_size) and the result equals one process with
        batch K * batch_size; see fastnn.distributed.DistributedTrainer.
        """
        from .trainer import Trainer
        if seed is _NET_SEED:
            seed = 0 if self.seed is None else self.seed
        if distributed:     # data-parallel over the MPI ranks (fastnn.distributed); batch_size is per rank
            if fused is True:
                raise ValueError("fused=True cannot run distributed: the fused whole-epoch kernel cannot stop "
                                 "for the per-step gradient allreduce")
            from .distributed import DistributedTrainer   # ImportError with the install hint without mpi4py
            return DistributedTrainer(self, batch_size=batch_size, epochs=epochs, shuffle=shuffle, seed=seed,
                                      validation_data=validation_data, verbose=verbose, checkpoint=checkpoint,
                                      checkpoint_every=checkpoint_every).fit(X, y)
        trainer = Trainer(self, batch_size=batch_size, epochs=epochs, shuffle=shuffle, seed=seed,
                          validation_data=validation_data, verbose=verbose, fused=fused,
                          checkpoint=checkpoint, checkpoint_every=checkpoint_every)
        return trainer.fit(X, y)

    def save(self, path):
        """Write the model to one safetensors file (atomically); see fastnn.io."""
        from .io import save
        save(self, path)

    # -- unchecked internals (input already checked) --------------------------------------------
    def _forward(self, x):
        for step in self._steps:
            x = step.forward(x)
        return x

    def _backward(self):
        g = self.loss.backward()
        steps = self._steps
        for i in range(len(steps) - 1, -1, -1):
            g = steps[i].backward(g, i > 0)

    def _outputs(self, X):
        """Outputs chunk by chunk, each a fresh array (thread-safe: layer buffers are used under a lock)."""
        self._ready_for_backward = False
        for start in range(0, len(X), PREDICT_CHUNK):
            with self._lock:
                out = self._forward(X[start:start + PREDICT_CHUNK]).copy()
            yield out

    def gradient_norms(self):
        """Squared L2 norm of each parameterised layer's gradient (float64, one per bindable layer)."""
        from .kernels.optim import squared_norms
        squared_norms(self._flat_grads, self._offsets, self._norms)
        return self._norms

    def config(self):
        return {"layers": [[type(layer).__name__, layer.config()] for layer in self.layers],
                "loss": [type(self.loss).__name__, self.loss.config()],
                "optimizer": [type(self.optimizer).__name__, self.optimizer.config()],
                "seed": self.seed}

    def __repr__(self):
        inner = ",\n  ".join(repr(layer) for layer in self.layers)
        return f"NeuralNetwork([\n  {inner}\n], loss={self.loss!r}, optimizer={self.optimizer!r})"


class _LayerStep:
    """One layer of the per-layer path."""
    __slots__ = ("forward", "backward")

    def __init__(self, layer):
        self.forward, self.backward = layer._forward, layer._backward


class _DenseActivationStep:
    """A FullyConnected and the built-in activation after it, one kernel call each way.

    The activation layer's saved output and gradient buffer are the ones this step uses, so the layer
    objects stay consistent with what ran.
    """
    __slots__ = ("fc", "act", "code")

    def __init__(self, fc, act):
        self.fc, self.act, self.code = fc, act, act.code

    def forward(self, x):
        out = self.act._out = self.fc._forward_activated(x, self.code)
        return out

    def backward(self, dy, need_input_grad):
        delta = self.act._buffer("dx", dy.shape[0], dy.shape[1], dy.dtype)
        return self.fc._backward(dy, need_input_grad, self.code, delta)


def _plan_steps(layers):
    """The per-layer path's steps: each FullyConnected fused with a ReLU/Sigmoid/TanH right after it."""
    steps, i = [], 0
    while i < len(layers):
        layer, after = layers[i], layers[i + 1] if i + 1 < len(layers) else None
        if type(layer) is FullyConnected and type(after) in (ReLU, Sigmoid, TanH):
            steps.append(_DenseActivationStep(layer, after))
            i += 2
        else:
            steps.append(_LayerStep(layer))
            i += 1
    return steps


def count_correct(out, target, loss=None):
    """Rows of out predicted right for target, as ``loss.count_correct`` counts them; without a loss, by
    the softmax rule (argmax equal to the label, or to the target distribution's argmax)."""
    return (_ARGMAX_RULE if loss is None else loss).count_correct(out, target)


_ARGMAX_RULE = SoftmaxCrossEntropy()
