"""NeuralNetwork: an ordered, fixed stack of layers, a loss and an optimizer.

All FullyConnected parameters live in one flat buffer (and their gradients in another), so an optimizer
step is one kernel call and a checkpoint or an allreduce is one array. Every piece of work starts from a
checked ``Plan`` (fastnn.plan) of the network as it is at that moment.

Threads: ``predict``, ``predict_proba``, ``evaluate`` and ``forward(x)`` may run in any number of threads,
also while another thread trains the network: they compute from a copy of the weights taken between two
optimizer steps, never from a half-updated buffer, and touch no layer buffer. Training calls — ``fit``,
``forward(x, y)``, ``backward``, ``step`` — run one at a time: a second one from another thread while one
runs raises RuntimeError.
"""
import contextlib
import threading

import numpy as np

from . import _checks, plan as plans
from .layers import FullyConnected, Layer, fused_activation, manual_dropout_key
from .losses import Loss, SoftmaxCrossEntropy
from .optimizers import SGD, Optimizer

PREDICT_CHUNK = 8192
_ENCODING = threading.local()   # .net: the network whose fit runs in this thread on encoded inputs
_NET_SEED = object()  # fit's default seed: the network's own

# The training loop (fastnn.training) and model files (fastnn.io) sit above this module and import it; they
# register what ``fit`` and ``save`` call (the Trainer class, the save function) when they are imported (``import fastnn`` imports
# both), so that every import points one way (cli / estimators -> training -> network -> layers -> kernels).
_SERVICES = {}


def provide(name, function):
    """Register the implementation of a NeuralNetwork method that lives in a higher module ("Trainer", "save",
    "export_onnx")."""
    _SERVICES[name] = function


def service(name):
    """What a higher module registered under ``name`` ("Trainer": fastnn.training.Trainer, "save")."""
    return _service(name)


def _service(name):
    try:
        return _SERVICES[name]
    except KeyError:
        raise RuntimeError(f"NeuralNetwork.{name} needs fastnn's training modules: import fastnn") from None


class NeuralNetwork:
    """A feed-forward network: ``layers`` applied in order, trained with ``loss`` and ``optimizer``.

    ``layers`` is fixed at construction (a tuple; build a new network for another stack); each layer and the
    loss belong to this network only. ``loss`` and ``optimizer`` may be replaced by other fastnn objects.
    ``seed`` (int or None): when given, every layer built without its own seed is re-initialised from it,
    and ``fit`` shuffles with it, so one seed makes a whole run reproducible.
    """

    def __init__(self, layers, loss=None, optimizer=None, seed=None):
        layers = tuple(layers) if not isinstance(layers, Layer) else (layers,)
        if not layers:
            raise ValueError("layers must contain at least one layer")
        self.dtype, self.n_features, self.n_outputs = plans.check_stack(layers)
        if len({id(layer) for layer in layers}) != len(layers):
            raise ValueError("a layer appears twice in layers; each position needs its own layer object")
        for i, layer in enumerate(layers):
            owner = layer.owner
            if owner is not None:
                raise ValueError(f"layers[{i}] ({type(layer).__name__}) already belongs to another "
                                 f"NeuralNetwork; a layer can be part of one network only (build a new one, or "
                                 f"copy.deepcopy it)")
        seed = _checks.seed(seed, "seed")
        self._layers = layers
        self._init_locks()
        for i, layer in enumerate(layers):
            layer.claim(self, f"layers[{i}]")
        self.loss = SoftmaxCrossEntropy() if loss is None else loss
        self.optimizer = SGD(lr=0.01) if optimizer is None else optimizer
        self.seed = None if seed is None else int(seed)
        self._bind_parameters()
        if seed is not None:
            self._reseed(seed)
        self.history = {}
        self.shuffle_state = None     # the shuffling stream fit continues (see fastnn.training)
        self._preprocessing = None    # raw features -> inputs (fastnn.preprocessing), applied by predict/fit

    @property
    def preprocessing(self):
        """What predict, predict_proba, evaluate and fit do to raw features first (a
        fastnn.preprocessing.Preprocessing, stored in the model file), or None: inputs as they are."""
        return self.__dict__.get("_preprocessing")

    def _raw_preprocessing(self):
        """The preprocessing predict/evaluate apply: none inside this network's own fit in this thread (the
        loop evaluates the validation data fit has already encoded); other threads always apply it."""
        return None if getattr(_ENCODING, "net", None) is self else self.preprocessing

    @preprocessing.setter
    def preprocessing(self, value):
        from .preprocessing import Preprocessing
        if value is not None and not isinstance(value, Preprocessing):
            raise TypeError(f"preprocessing must be a fastnn.preprocessing.Preprocessing or None, got "
                            f"{type(value).__name__}")
        if value is not None:
            value.check_network(self)
        self._preprocessing = value

    # -- structure --------------------------------------------------------------------------------
    layers = property(lambda self: self._layers)

    @layers.setter
    def layers(self, value):
        raise AttributeError("a network's layers are fixed at construction (its parameter buffer is sized "
                             "from them); build a new NeuralNetwork for another stack")

    @property
    def loss(self):
        return self._loss

    @loss.setter
    def loss(self, loss):
        if not isinstance(loss, Loss):
            raise TypeError(f"loss must be a fastnn Loss, got {type(loss).__name__}")
        self._check_idle("replace the loss")
        loss.claim(self, "the loss")
        self._loss = loss

    @property
    def optimizer(self):
        return self._optimizer

    @optimizer.setter
    def optimizer(self, optimizer):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer must be a fastnn Optimizer, got {type(optimizer).__name__}")
        self._check_idle("replace the optimizer")
        self._optimizer = optimizer

    def _init_locks(self):
        self._train_lock = threading.Lock()     # held by fit, forward(x, y), backward, step
        self._weights_lock = threading.Lock()   # held while weights change; predict copies them under it
        self._training_thread = None
        self._forward_token = None

    def __getstate__(self):
        """Copying in memory (deepcopy, a process pool) drops the locks; model files are safetensors."""
        state = self.__dict__.copy()
        for key in ("_train_lock", "_weights_lock", "_training_thread", "_forward_token"):
            state.pop(key, None)
        return state

    def __setstate__(self, state):
        """A copy's layer arrays no longer view its flat buffers (copies copy views apart): bind again."""
        self.__dict__.update(state)
        self._init_locks()
        for i, layer in enumerate(self._layers):
            layer.claim(self, f"layers[{i}]")
        self._loss.claim(self, "the loss")
        self._bind_parameters()

    def _plan_steps(self):
        """The per-layer path's steps, fixed with the layers: (layer, the activation fused into it or None,
        whether it takes a dropout key) — each FullyConnected with the kernel-coded activation right after it
        runs as one kernel call each way."""
        steps, layers, i = [], self._layers, 0
        while i < len(layers):
            layer = layers[i]
            after = layers[i + 1] if i + 1 < len(layers) else None
            if type(layer) is FullyConnected and fused_activation(after):
                steps.append((layer, after, False))
                i += 2
            else:
                steps.append((layer, None, bool(getattr(layer, "takes_batch_key", False))))
                i += 1
        self._steps = tuple(steps)

    def _bind_parameters(self):
        """One flat buffer for every FullyConnected's parameters; offsets mark each layer's segment."""
        dense = [layer for layer in self._layers if type(layer) is FullyConnected]
        total = sum(layer.n_params for layer in dense)
        self._flat_params = np.zeros(total, self.dtype)
        self._flat_grads = np.zeros(total, self.dtype)
        offsets, start = [0], 0
        for layer in dense:
            end = start + layer.n_params
            layer.bind(self._flat_params[start:end], self._flat_grads[start:end])
            offsets.append(end)
            start = end
        self._offsets = np.array(offsets, np.int64)
        self._plan_steps()

    def _reseed(self, seed):
        layers = [layer for layer in self._layers if hasattr(layer, "reset_parameters")]
        children = np.random.SeedSequence(seed).spawn(len(layers))
        for layer, child in zip(layers, children):
            if getattr(layer, "seed", None) is None:
                layer.reset_parameters(child)

    def plan(self, training=True):
        """The checked Plan of the network as it is now (fastnn.plan); ValueError if it is inconsistent.
        ``training=False``: for prediction (the optimizer's state is not checked)."""
        return plans.build(self, (self._flat_params, self._flat_grads, self._offsets), training)

    @property
    def classification(self):
        return self.loss.classification

    @property
    def params(self):
        return [p for layer in self._layers for p in layer.params]

    @property
    def grads(self):
        return [g for layer in self._layers for g in layer.grads]

    @property
    def n_params(self):
        return sum(p.size for p in self.params)

    # -- training state ---------------------------------------------------------------------------
    @property
    def training(self):
        """True while a training call (fit, forward(x, y), backward, step) runs in some thread."""
        return self._training_thread is not None

    def _check_idle(self, what):
        thread = getattr(self, "_training_thread", None)
        if thread is not None and thread != threading.get_ident():
            raise RuntimeError(f"cannot {what} while the network trains in another thread")

    @contextlib.contextmanager
    def training_session(self, what):
        """Hold the network for one training call: RuntimeError if another thread is training it.

        Re-entrant within one thread only for the calls a training loop makes itself (a callback of fit
        calling net.fit again is refused too)."""
        if not self._train_lock.acquire(blocking=False):
            raise RuntimeError(f"cannot {what}: the network is already training (fit, forward/backward/step) "
                               f"in {'this' if self._training_thread == threading.get_ident() else 'another'} "
                               f"thread; one training call at a time")
        self._training_thread = threading.get_ident()
        try:
            yield
        finally:
            self._training_thread = None
            self._train_lock.release()

    def weights_changing(self):
        """A lock (use ``with``) held while parameters are written, so that predict never copies a
        half-updated buffer."""
        return self._weights_lock

    # -- checked public API ---------------------------------------------------------------------
    def check_input(self, X, name="X"):
        return _checks.matrix(X, name, self.dtype, self.n_features)

    def check_target(self, y, n, name="y"):
        """y checked for the loss (its ``check_target``): C-contiguous, the network's dtype or int64 ids."""
        return self.loss.check_target(y, name, n, self.n_outputs, self.dtype)

    def forward(self, x, y=None):
        """The output for x (batch, n_features) — a new array; with y, the mean loss (a float).

        ``forward(x, y)`` prepares ``backward()``: it keeps every layer's activations, which any direct call
        of a layer or of the loss replaces (``backward`` then raises RuntimeError). It trains: Dropout layers
        drop units, with the fixed batch key ``layers.manual_dropout_key(net.seed)`` (the same mask at every
        call); ``forward(x)`` is inference (Dropout is the identity).
        """
        x = self.check_input(x, "x")
        if y is None:
            return np.concatenate(list(self._outputs(x))) if len(x) > PREDICT_CHUNK else next(self._outputs(x))
        y = self.check_target(y, x.shape[0], "y")
        with self.training_session("run forward(x, y)"):
            self.plan()
            self._forward_token = None
            loss = self.loss._forward(self.train_forward(x, manual_dropout_key(self.seed)), y)
            self._forward_token = token = object()
            for part in (*self._layers, self.loss):
                part.forward_mark = token
        return loss

    def backward(self):
        """Backpropagation from the last ``forward(x, y)``: fills every layer's gradients."""
        with self.training_session("run backward()"):
            token = self._forward_token
            if token is None:
                raise RuntimeError("backward() needs a forward(x, y) with targets first")
            stale = [type(p).__name__ for p in (*self._layers, self.loss) if p.forward_mark is not token]
            if stale:
                raise RuntimeError(f"backward(): {', '.join(stale)} ran on other data since forward(x, y) (a "
                                   f"direct call replaced its saved activations); call forward(x, y) again")
            self.plan()
            self.train_backward()

    def step(self):
        """One optimizer update of every parameter from the current gradients."""
        with self.training_session("run step()"):
            plan = self.plan()
            with self.weights_changing():
                self.optimizer.step(list(plan.opt_params), list(plan.opt_grads))

    def zero_grad(self):
        with self.training_session("run zero_grad()"):
            for g in self.plan().opt_grads:
                g[...] = 0

    def predict_proba(self, X):
        """Class probabilities (n, classes) for a classifier."""
        if not self.classification:
            raise TypeError("predict_proba needs a classification loss; this network does regression")
        pre = self._raw_preprocessing()
        X = self.check_input(X if pre is None else pre.transform(X, self.dtype))
        return np.concatenate([self.loss.output_probabilities(out) for out in self._outputs(X)])

    def predict(self, X):
        """What the loss predicts (its ``predictions``): class ids (n,) int64 for a softmax classifier; 0/1
        labels (n,) or indicators (n, k) int64 for SigmoidCrossEntropy; outputs (n, outputs) for regression."""
        pre = self._raw_preprocessing()
        X = self.check_input(X if pre is None else pre.transform(X, self.dtype))
        if pre is not None:     # class names; regression outputs in the target's units
            return pre.decode_predictions(np.concatenate([self.loss.predictions(out)
                                                          for out in self._outputs(X)]))
        return np.concatenate([self.loss.predictions(out) for out in self._outputs(X)])

    def evaluate(self, X, y):
        """{"loss": mean loss, "accuracy": fraction correct (classifiers only)} over all of X."""
        pre = self._raw_preprocessing()
        if pre is not None:     # raw features, class names, a regression loss in the target's units
            X, y = pre.transform(X, self.dtype), pre.encode_target(y)
        X = self.check_input(X)
        y = self.check_target(y, X.shape[0])
        loss_sum = correct = 0.0
        loss = self.loss
        for start, out in zip(range(0, len(X), PREDICT_CHUNK), self._outputs(X)):
            if pre is not None:
                out = pre.unscale_outputs(out)
            yb = y[start:start + len(out)]
            loss_sum += loss.evaluate(out, yb) * len(out)
            if self.classification:
                correct += self.loss.count_correct(out, yb)
        result = {"loss": loss_sum / len(X)}
        if self.classification:
            result["accuracy"] = correct / len(X)
        return result

    def fit(self, X, y, epochs=10, batch_size=64, validation_data=None, shuffle=True, verbose=1, *,
            validation_split=0.0, sample_weight=None, class_weight=None, lr_schedule=None, callbacks=(),
            seed=_NET_SEED, fused="auto", checkpoint=None, checkpoint_every=None, distributed=False):
        """Train with mini-batch gradient descent; returns the per-epoch history. See fastnn.training.Trainer
        for every argument (the same, one definition). With ``preprocessing``, X, y and validation_data are
        raw (transformed as predict transforms them; a regression target scaled as stored); while it runs, the
        network's own calls in this thread (the loop's validation, callbacks) take encoded inputs."""
        pre = self._raw_preprocessing()
        if pre is not None:
            X, y = pre.transform(X, self.dtype), pre.encode_target(y, scale=True)
            if validation_data is not None and not isinstance(validation_data, (int, float)):
                Xv, yv = validation_data
                validation_data = (pre.transform(Xv, self.dtype), pre.encode_target(yv, scale=True))
        outer = getattr(_ENCODING, "net", None)
        _ENCODING.net = self if pre is not None else outer
        try:
            return _service("Trainer")(self, epochs=epochs, batch_size=batch_size, validation_data=validation_data,
                           shuffle=shuffle, verbose=verbose, validation_split=validation_split,
                           class_weight=class_weight, lr_schedule=lr_schedule, callbacks=callbacks,
                           seed=(self.seed if self.seed is not None else 0) if seed is _NET_SEED else seed,
                           fused=fused, checkpoint=checkpoint, checkpoint_every=checkpoint_every,
                           distributed=distributed).fit(X, y, sample_weight=sample_weight)
        finally:
            _ENCODING.net = outer

    def save(self, path):
        """Write the model to one safetensors file (atomically); see fastnn.io."""
        _service("save")(self, path)

    def export_onnx(self, path):
        """Write the network as an ONNX model (opset >= 13; outputs "logits"/"output", and "probabilities" and
        "label" for classifiers) atomically to ``path``; needs ``pip install 'fastnn[onnx]'``. See
        fastnn.export for the graph, other heads and class labels."""
        return _service("export_onnx")(self, path)

    # -- the engines' unchecked calls (input already checked, a training session held) --------------
    def train_forward(self, x, key=None):
        """The training forward pass for the engines (fastnn.training, distributed, gradcheck): ``x`` already
        checked (C-contiguous, the network's dtype and width), the caller in a training session; the
        layers keep their activations for ``train_backward``. ``key`` (epoch key, batch index, first row's
        position) keys the Dropout masks (layers.Dropout), None: no dropout. Returns the output buffer."""
        for layer, activation, keyed in self._steps:
            if activation is not None:
                x = layer._forward_activated(x, activation)
            elif keyed:
                x = layer._forward(x, key)
            else:
                x = layer._forward(x)
        return x

    def train_backward(self):
        """Backpropagation from the loss's last ``_forward`` through the layers that ``train_forward`` ran:
        fills every layer's gradients (the engines' unchecked call; see ``backward`` for the checked one)."""
        g = self.loss.backward()
        steps = self._steps
        for k in range(len(steps) - 1, -1, -1):
            layer, activation, _ = steps[k]
            need_input_grad = k > 0
            if activation is not None:
                g = layer._backward(g, need_input_grad, activation=activation)
            else:
                g = layer._backward(g, need_input_grad)

    def _outputs(self, X):
        """Outputs chunk by chunk, each a new array, from one copy of the weights (thread-safe, see the
        module docstring)."""
        plan = self.plan(training=False)
        if not plan.stateless_inference:      # custom layers: their buffers, while no training call runs
            yield from self._outputs_exclusive(X)
            return
        with self._weights_lock:
            params = plan.params.copy()
        views = [(params[a:a + fc.in_features * fc.out_features].reshape(fc.in_features, fc.out_features),
                  params[a + fc.in_features * fc.out_features:b])
                 for fc, a, b in zip(plan.dense, plan.offsets[:-1], plan.offsets[1:])]
        for start in range(0, len(X), PREDICT_CHUNK):
            x, layers, i, k = X[start:start + PREDICT_CHUNK], plan.layers, 0, 0
            while i < len(layers):
                layer = layers[i]
                if type(layer) is FullyConnected:
                    after = layers[i + 1] if i + 1 < len(layers) else None
                    fuse = fused_activation(after)
                    x = layer._infer_with(x, *views[k], after if fuse else None)
                    k, i = k + 1, i + (2 if fuse else 1)
                else:
                    x, i = layer._infer(x), i + 1
            yield x

    def _outputs_exclusive(self, X):
        mine = self._training_thread == threading.get_ident()
        for start in range(0, len(X), PREDICT_CHUNK):
            with contextlib.nullcontext() if mine else self.training_session("predict"):
                yield self.train_forward(X[start:start + PREDICT_CHUNK]).copy()

    def gradient_norms(self):
        """Squared L2 norm of each FullyConnected's gradient, weights and bias together (float64)."""
        from .kernels.optim import squared_norms
        norms = np.zeros(len(self._offsets) - 1, np.float64)
        squared_norms(self._flat_grads, self._offsets, norms)
        return norms

    def config(self):
        return {"layers": [[type(layer).__name__, layer.config()] for layer in self._layers],
                "loss": [type(self.loss).__name__, self.loss.config()],
                "optimizer": [type(self.optimizer).__name__, self.optimizer.config()],
                "seed": self.seed}

    def __repr__(self):
        inner = ",\n  ".join(repr(layer) for layer in self._layers)
        return f"NeuralNetwork([\n  {inner}\n], loss={self.loss!r}, optimizer={self.optimizer!r})"



def count_correct(out, target, loss=None):
    """Rows of out predicted right for target, as ``loss.count_correct`` counts them; without a loss, by
    the softmax rule (argmax equal to the label, or to the target distribution's argmax)."""
    return (_ARGMAX_RULE if loss is None else loss).count_correct(out, target)


_ARGMAX_RULE = SoftmaxCrossEntropy()
