"""NeuralNetwork: an ordered, fixed stack of layers, a loss and an optimizer.

All FullyConnected parameters live in one flat buffer (and their gradients in another), so an optimizer
step is one kernel call and a checkpoint or an allreduce is one array. Every piece of work starts from a
checked ``Plan`` (fastnn.plan) of the network as it is at that moment.

Threads: ``predict``, ``predict_proba``, ``evaluate`` and ``forward(x)`` may run in any number of threads,
also while another thread trains the network: they compute from a copy of the weights taken between two
optimizer steps, never from a half-updated buffer, and touch no layer buffer. A network with custom layers
(which compute in their own buffers) predicts only while no training call runs: from another thread during
a fit that raises RuntimeError. Training calls — ``fit``, ``forward(x, y)``, ``backward``, ``step`` — run one
at a time: a second one from another thread while one runs raises RuntimeError.

Sharing: a layer, the loss and the optimizer belong to one network (their buffers and the optimizer's
momentum are that network's): a second network is refused them while the first uses them. Schedules keep no
state and may serve any number of fits at once; an EarlyStopping object serves one running fit at a time.

What custom layers return is checked before any kernel sees it (``_checked_output``): forward and backward
outputs must be arrays of the network's dtype and of the shape the next layer (or the loss) needs.
"""
import contextlib
import os
import threading
import weakref

import numpy as np

from . import _checks, plan as plans
from .layers import Activation, FullyConnected, Layer, check_protocol, fused_activation, manual_dropout_key
from .losses import Loss, SoftmaxCrossEntropy
from .optimizers import SGD, Optimizer
from .threads import get_num_threads, num_threads, off_main_thread

PREDICT_CHUNK = 8192
_ENCODING = threading.local()   # .net: the network whose fit runs in this thread on encoded inputs
_LIVE = weakref.WeakSet()       # every network's locks, for a forked child (``_release_after_fork``)


def _release_after_fork():
    """In a forked child, the locks of every network that a thread of the parent held when it forked (a fit
    holds ``weights_changing`` for each epoch, a training session for the fit): that thread does not exist
    here, and predict / fit in the child would wait for it forever, or be refused. Made anew; a training
    call of the forking thread itself (a callback that forks) keeps its own."""
    me = threading.get_ident()
    for net in list(_LIVE):
        d = net.__dict__
        if "_weights_lock" in d and d["_weights_lock"].locked():
            d["_weights_lock"] = threading.Lock()
        if d.get("_training_thread") is not None and d["_training_thread"] != me:
            d["_train_lock"], d["_training_thread"] = threading.Lock(), None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_release_after_fork)
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


def _history(value, name):
    """None or a dict of per-epoch lists (str -> list of numbers, or of per-layer lists of numbers), as fit
    writes it; NaN and inf are numbers (a diverged epoch records them)."""
    if value is None:
        return None
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise TypeError(f"{name} must be None or a dict str -> list of per-epoch values, got "
                        f"{type(value).__name__}")
    for k, values in value.items():
        if not isinstance(values, list):
            raise TypeError(f"{name}[{k!r}] must be a list (one value per epoch), got {type(values).__name__}")
        for v in values:
            items = v if isinstance(v, (list, tuple, np.ndarray)) else (v,)
            if not all(_is_number(x) for x in items):
                raise TypeError(f"{name}[{k!r}] must hold numbers (or lists of numbers, one per layer), got "
                                f"{v!r:.60}")
    return value


def _is_number(x):
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, (bool, np.bool_))


def _shuffle_state(value, name):
    """None or (seed or None, a PCG64 ``bit_generator.state`` dict): what fit continues its shuffling from."""
    if value is None:
        return None
    if not isinstance(value, tuple) or len(value) != 2:
        raise TypeError(f"{name} must be None or a tuple (seed, bit_generator state), got {value!r:.80}")
    seed = _checks.seed(value[0], f"{name}[0]")
    rng = np.random.default_rng(0)
    try:
        rng.bit_generator.state = value[1]
    except (TypeError, ValueError, KeyError, OverflowError) as exc:
        raise ValueError(f"{name}[1] is not a PCG64 generator state ({exc!s:.100})") from None
    return seed, rng.bit_generator.state


class NeuralNetwork(_checks.Guarded):
    """A feed-forward network: ``layers`` applied in order, trained with ``loss`` and ``optimizer``.

    ``layers`` is fixed at construction (a tuple; build a new network for another stack); each layer, the
    loss and the optimizer belong to this network only (giving one to a second network raises ValueError
    while the first still uses it). ``loss`` and ``optimizer`` may be replaced by other fastnn objects.
    ``seed`` (int or None): when given, every layer built without its own seed is re-initialised from it,
    and ``fit`` shuffles with it, so one seed makes a whole run reproducible.

    Every public attribute is validated when assigned or read-only: ``dtype``, ``n_features`` and
    ``n_outputs`` follow from the layers and cannot be assigned; ``seed``, ``history``, ``shuffle_state``,
    ``loss``, ``optimizer`` and ``training`` are checked on assignment.

    Modes, as torch's: ``train()`` / ``eval()`` set ``training`` on the network and every layer and return
    the network. ``forward(x, y)`` drops (Dropout) only in training mode; ``fit`` runs the layers in
    training mode and ``predict`` / ``predict_proba`` / ``evaluate`` / ``forward(x)`` infer (no dropout)
    whatever the mode; both leave every layer in the mode it had.
    """

    _STACK = "it follows from the layers, which are fixed at construction; build a new NeuralNetwork"
    dtype = _checks.ReadOnly(lambda self: self._dtype, _STACK)
    n_features = _checks.ReadOnly(lambda self: self._n_features, _STACK)
    n_outputs = _checks.ReadOnly(lambda self: self._n_outputs, _STACK)
    seed = _checks.Checked(_checks.seed, doc="int or None: the seed of fit's shuffling and of forward(x, y)'s "
                                             "dropout mask")
    history = _checks.Checked(_history, default=None, doc="the last fit's per-epoch history")
    shuffle_state = _checks.Checked(_shuffle_state, default=None,
                                    doc="(seed, generator state) of the shuffling stream fit continues")

    def __init__(self, layers, loss=None, optimizer=None, seed=None):
        layers = tuple(layers) if not isinstance(layers, Layer) else (layers,)
        if not layers:
            raise ValueError("layers must contain at least one layer")
        self._dtype, self._n_features, self._n_outputs = plans.check_stack(layers)
        if len({id(layer) for layer in layers}) != len(layers):
            raise ValueError("a layer appears twice in layers; each position needs its own layer object")
        for i, layer in enumerate(layers):
            check_protocol(layer, f"layers[{i}] ({type(layer).__name__})")
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
        self.seed = seed
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
        optimizer.claim(self, "the optimizer")
        self._optimizer = optimizer

    @property
    def training(self):
        """torch's mode: True after ``train()`` (the default), False after ``eval()``; assigning calls train."""
        return self.__dict__.get("_mode", True)

    @training.setter
    def training(self, mode):
        self.train(_checks.flag(mode, "training"))

    def train(self, mode=True):
        """Training mode for the network and every layer (``mode=False``: eval mode); returns self."""
        mode = _checks.flag(mode, "mode")
        self._check_idle("change the mode")
        for layer in self._layers:
            layer.train(mode)
        self.__dict__["_mode"] = mode
        return self

    def eval(self):
        """Eval mode for the network and every layer (torch.nn.Module.eval); returns self."""
        return self.train(False)

    @contextlib.contextmanager
    def _layers_in_mode(self, mode):
        """Every layer in ``mode`` for the block, then back in the mode it had (custom layers may read it)."""
        saved = [layer.__dict__.get("_checked_training") for layer in self._layers]
        try:
            for layer in self._layers:
                layer.training = mode
            yield
        finally:
            for layer, was in zip(self._layers, saved):
                if was is None:
                    layer.__dict__.pop("_checked_training", None)
                else:
                    layer.__dict__["_checked_training"] = was

    def _init_locks(self):
        self._train_lock = threading.Lock()     # held by fit, forward(x, y), backward, step
        self._weights_lock = threading.Lock()   # held while weights change; predict copies them under it
        _LIVE.add(self)                         # (a forked child makes the locks of vanished threads anew)
        self._training_thread = None
        self._forward_token = None
        self._fit_grads = None        # the token a fit left on the layers' grads_mark (step refuses them)

    def __getstate__(self):
        """Copying in memory (deepcopy, a process pool) drops the locks; model files are safetensors."""
        state = self.__dict__.copy()
        for key in ("_train_lock", "_weights_lock", "_training_thread", "_forward_token", "_layer_outputs",
                    "_inference_cache"):
            state.pop(key, None)
        return state

    def __setstate__(self, state):
        """A copy's layer arrays no longer view its flat buffers (copies copy views apart): bind again."""
        self.__dict__.update(state)
        self._init_locks()
        for i, layer in enumerate(self._layers):
            layer.claim(self, f"layers[{i}]")
        self._loss.claim(self, "the loss")
        self._optimizer.claim(self, "the optimizer")
        self._bind_parameters()

    def _plan_steps(self):
        """The per-layer path's steps, fixed with the layers: (layer, the activation fused into it or None,
        whether it takes a dropout key) — each FullyConnected with the kernel-coded activation right after it
        runs as one kernel call each way."""
        steps, checks, layers, i = [], [], self._layers, 0
        while i < len(layers):
            layer = layers[i]
            after = layers[i + 1] if i + 1 < len(layers) else None
            if type(layer) is FullyConnected and fused_activation(after):
                steps.append((layer, after, False))
                checks.append(None)
                i += 2
            else:
                steps.append((layer, None, bool(getattr(layer, "takes_batch_key", False))))
                checks.append(None if _builtin(layer) else (i, self._width_after(i)))
                i += 1
        self._steps = tuple(steps)
        self._custom_checks = tuple(checks)     # per step: None, or (layer index, the output width it must give)

    def _width_after(self, i):
        """The width the output of layers[i] must have: the input width of the next layer that declares one
        (a FullyConnected's in_features), else the network's n_outputs (what the loss is checked against)."""
        for layer in self._layers[i + 1:]:
            n_in = getattr(layer, "in_features", None)
            if n_in is not None:
                return n_in
        return self._n_outputs

    def _checked_output(self, k, out, rows, width, what, finite=False, layer_input=None):
        """What the custom layer of step k returned (``what``: "forward" / "backward"), checked before any
        kernel sees it: a (rows, width) array of the network's dtype; a copy when not C-contiguous.
        ``finite`` (inference): NaN or Inf in the output raise ValueError — unless ``layer_input`` already
        held them (an overflow before the layer, X finite: predict's warning names it, as for a network
        without custom layers; the layer did not make them)."""
        i = self._custom_checks[k][0]
        name = f"layers[{i}] ({type(self._layers[i]).__name__}).{what}"
        want = f"a {self._dtype.name} array of shape ({rows}, {width})"
        if not isinstance(out, np.ndarray):
            raise TypeError(f"{name} returned {type(out).__name__}; the network needs {want}")
        if out.ndim != 2 or out.shape != (rows, width):
            raise ValueError(f"{name} returned shape {out.shape}; the network needs {want}")
        if out.dtype != self._dtype:
            raise TypeError(f"{name} returned dtype {out.dtype}; the network needs {want}")
        if not (out.flags.c_contiguous and out.flags.writeable):     # (read-only: its input returned as is;
            out = np.array(out, order="C")                           # kernels take writeable arrays only)
        if finite and not np.isfinite(out).all() and (layer_input is None or np.isfinite(layer_input).all()):
            raise ValueError(f"{name} returned NaN or infinite values")
        return out

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
    def in_training_call(self):
        """True while a training call (fit, forward(x, y), backward, step) runs in some thread."""
        return self._training_thread is not None

    def _check_idle(self, what):
        thread = getattr(self, "_training_thread", None)
        if thread is not None and thread != threading.get_ident():
            raise RuntimeError(f"cannot {what} while the network trains in another thread")

    @contextlib.contextmanager
    def training_session(self, what, keeps_forward=False):
        """Hold the network for one training call: RuntimeError if another thread is training it.

        Re-entrant within one thread only for the calls a training loop makes itself (a callback of fit
        calling net.fit again is refused too). Every call except ``backward`` and ``zero_grad``
        (``keeps_forward``) forgets the last ``forward(x, y)``: a fit, a step or a predict through custom
        layers changes the weights or the saved activations that ``backward`` would read, so ``backward``
        after them raises instead of returning the gradient of other data or other weights. The layers run
        in training mode during a fit and come back in the mode they had."""
        if not self._train_lock.acquire(blocking=False):
            raise RuntimeError(f"cannot {what}: the network is already training (fit, forward/backward/step) "
                               f"in {'this' if self._training_thread == threading.get_ident() else 'another'} "
                               f"thread; one training call at a time")
        self._training_thread = threading.get_ident()
        try:
            if not keeps_forward:
                self._forward_token = None
            with self._layers_in_mode(True) if what == "fit" else contextlib.nullcontext():
                yield
        finally:
            if what in ("fit", "run gradcheck"):   # the gradients are the last batch's: not for step()
                self._fit_grads = token = object()
                for layer in self._layers:
                    layer.grads_mark = token
            self._training_thread = None
            self._train_lock.release()

    def weights_changing(self):
        """A lock (use ``with``) held while parameters are written, so that predict never copies a
        half-updated buffer."""
        return self._weights_lock

    # -- checked public API ---------------------------------------------------------------------
    def check_input(self, X, name="X", check_finite=True):
        """X checked for this network (fastnn._checks.matrix): C-contiguous (batch, n_features) of its dtype,
        finite — one pass over X, on fastnn's threads. ``check_finite=False``: no pass over X at all (shape
        and dtype only), for an engine whose kernel checks the rows it reads (fastnn.training)."""
        big = getattr(X, "size", 0) >= _checks.SCAN_SPLIT_ELEMENTS     # (the count reads cgroup files)
        return _checks.matrix(X, name, self.dtype, self.n_features, check_finite=check_finite,
                              threads=get_num_threads() if big else 1)

    def _inference_input(self, X, name="X"):
        """(X checked as ``check_input`` checks it but for finiteness, the caller's array as NumPy made it),
        for ``_outputs``, which learns whether X is finite from its first layer's kernel (predict, predict_proba,
        evaluate and forward(x) make no pass over X of their own: issue 17 item 4)."""
        return _checks.converted_matrix(X, name, self._dtype, self._n_features)

    def _refuse_nonfinite(self, X, given, name):
        """check_input's finiteness check of ``X`` (converted from the caller's ``given``): its ValueError,
        naming ``name``, how many and where the first is, when X holds NaN or Inf."""
        big = X.size >= _checks.SCAN_SPLIT_ELEMENTS
        _checks.ensure_finite(X, name, given, get_num_threads() if big else 1)

    def check_target(self, y, n, name="y"):
        """y checked for the loss (its ``check_target``): C-contiguous, the network's dtype or int64 ids."""
        return self.loss.check_target(y, name, n, self.n_outputs, self.dtype)

    def forward(self, x, y=None):
        """The output for x (batch, n_features) — a new array; with y, the mean loss (a float).

        ``forward(x, y)`` prepares ``backward()``: it keeps every layer's activations, which any direct call
        of a layer or of the loss replaces, and which a fit, a step or a predict through custom layers
        invalidates (``backward`` then raises RuntimeError). In training mode (the default) Dropout layers
        drop units, with the fixed batch key ``layers.manual_dropout_key(net.seed)`` (the same mask at every
        call); in eval mode they do not. ``forward(x)`` is inference (Dropout is the identity).
        """
        if y is None:
            x, given = self._inference_input(x, "x")
            outputs = self._outputs(x, given, "x")
            return np.concatenate(list(outputs)) if len(x) > PREDICT_CHUNK else next(outputs)
        x = self.check_input(x, "x")
        y = self.check_target(y, x.shape[0], "y")
        with self.training_session("run forward(x, y)"):
            self.plan()
            key = manual_dropout_key(self.seed) if self.training else None
            loss = self.loss._forward(self.train_forward(x, key), y)
            self._forward_token = token = object()
            for part in (*self._layers, self.loss):
                part.forward_mark = token
        return loss

    def backward(self):
        """Backpropagation from the last ``forward(x, y)``: fills every layer's gradients."""
        with self.training_session("run backward()", keeps_forward=True):
            token = self._forward_token
            if token is None:
                raise RuntimeError("backward() needs a forward(x, y) with targets first")
            stale = [type(p).__name__ for p in (*self._layers, self.loss) if p.forward_mark is not token]
            if stale:
                raise RuntimeError(f"backward(): {', '.join(stale)} ran on other data since forward(x, y) (a "
                                   f"direct call replaced its saved activations); call forward(x, y) again")
            self.plan()
            self.train_backward()
            self._fit_grads = None

    def step(self):
        """One optimizer update of every parameter from the current gradients."""
        with self.training_session("run step()"):
            token = self._fit_grads
            if token is not None and all(layer.grads_mark is token for layer in self._layers):
                raise RuntimeError("step() needs gradients from backward() (after forward(x, y)) or zero_grad(): "
                                   "the current ones are those a fit (or gradcheck) left from its last "
                                   "mini-batch, and applying them again would change the weights for no data")
            plan = self.plan()
            self.optimizer.check_for(self.dtype)
            with self.weights_changing():
                self.optimizer.step(list(plan.opt_params), list(plan.opt_grads))

    def zero_grad(self):
        with self.training_session("run zero_grad()", keeps_forward=True):
            self._fit_grads = None
            for g in self.plan().opt_grads:
                g[...] = 0

    def predict_proba(self, X):
        """Class probabilities (n, classes) for a classifier."""
        if not self.classification:
            raise TypeError("predict_proba needs a classification loss; this network does regression")
        pre = self._raw_preprocessing()
        X, given = self._inference_input(X if pre is None else pre.transform(X, self.dtype))
        return _joined([self.loss.output_probabilities(out) for out in self._warned_outputs(X, given)])

    def predict(self, X):
        """What the loss predicts (its ``predictions``): class ids (n,) int64 for a softmax classifier; 0/1
        labels (n,) or indicators (n, k) int64 for SigmoidCrossEntropy; outputs (n, outputs) for regression."""
        pre = self._raw_preprocessing()
        X, given = self._inference_input(X if pre is None else pre.transform(X, self.dtype))
        predictions = _joined([self.loss.predictions(out) for out in self._warned_outputs(X, given)])
        if pre is not None:     # class names; regression outputs in the target's units
            return pre.decode_predictions(predictions)
        return predictions

    def evaluate(self, X, y):
        """{"loss": mean loss, "accuracy": fraction correct (classifiers only)} over all of X.

        When an output is NaN or infinite (X is finite: the weights or X's values overflow inside the network)
        the call warns as ``predict`` does and both scores are NaN (an infinite loss stays infinite): an
        accuracy counted from the argmax of NaN rows would look like a real one. (The validation of a fit,
        which calls this from the fit's thread, records the NaN scores in the history without the warning:
        the fit says what went wrong when its loss does.)"""
        pre = self._raw_preprocessing()
        if pre is not None:     # raw features, class names, a regression loss in the target's units
            X, y = pre.transform(X, self.dtype), pre.encode_target(y)
        X, given = self._inference_input(X)
        try:
            y = self.check_target(y, X.shape[0])
        except (TypeError, ValueError):
            self._refuse_nonfinite(X, given, "X")     # a non-finite X is named first, as when it was scanned first
            raise
        loss_sum = correct = 0.0
        loss, finite = self.loss, True
        quiet = self._training_thread == threading.get_ident()    # a fit's own validation: its history shows
        outputs = self._outputs(X, given) if quiet else self._warned_outputs(X, given)     # the NaN scores
        for start, out in zip(range(0, len(X), PREDICT_CHUNK), outputs):
            finite = finite and bool(np.isfinite(out).all())
            if pre is not None:
                out = pre.unscale_outputs(out)
            yb = y[start:start + len(out)]
            loss_sum += loss.evaluate(out, yb) * len(out)
            if self.classification:
                correct += self.loss.count_correct(out, yb)
        result = {"loss": loss_sum / len(X)}
        if not finite and np.isfinite(result["loss"]):
            result["loss"] = float("nan")
        if self.classification:
            result["accuracy"] = correct / len(X) if finite else float("nan")
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
        """Write the model to one safetensors file (atomically); see fastnn.io. The network is checked first
        (its plan, the optimizer's state and hyperparameters), so that a file it writes always loads."""
        self.plan()
        self.optimizer.check_hyperparameters()
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
        checks, inputs, finite = self._custom_checks, {}, key == "inference"
        key = None if finite else key
        for k, (layer, activation, keyed) in enumerate(self._steps):
            if activation is not None:
                x = layer._forward_activated(x, activation)
            else:
                rows = x.shape[0]
                if checks[k] is not None:
                    inputs[k] = x.shape
                    x = x.view()            # read-only for user code: the caller's data or the buffer a layer
                    x.flags.writeable = False   # before it needs for its backward pass
                given = x
                x = layer._forward(x, key) if keyed else layer._forward(x)
                if checks[k] is not None:
                    x = self._checked_output(k, x, rows, checks[k][1], "forward", finite, given)
        self._layer_inputs = inputs
        return x

    def train_backward(self):
        """Backpropagation from the loss's last ``_forward`` through the layers that ``train_forward`` ran:
        fills every layer's gradients (the engines' unchecked call; see ``backward`` for the checked one)."""
        g = self.loss.backward()
        steps, checks = self._steps, self._custom_checks
        inputs = getattr(self, "_layer_inputs", {})
        for k in range(len(steps) - 1, -1, -1):
            layer, activation, _ = steps[k]
            need_input_grad = k > 0
            if activation is not None:
                g = layer._backward(g, need_input_grad, activation=activation)
            else:
                g = layer._backward(g, need_input_grad)
                if checks[k] is not None and need_input_grad:
                    if k not in inputs:
                        raise RuntimeError("backward needs the training forward pass first")
                    g = self._checked_output(k, g, *inputs[k], "backward")

    def _warned_outputs(self, X, given=None):
        """``_outputs`` for ``predict``, ``predict_proba`` and ``evaluate``, with one RuntimeWarning per call
        when an output is NaN or infinite (X is finite by then: its values or the weights overflow inside the
        network): predict would otherwise turn such a row into class 0 without a word, predict_proba an
        infinite logit into a probability of exactly 0 or 1, evaluate count NaN rows as class 0 (``forward``
        returns the raw outputs, which show the NaN or Inf themselves)."""
        warned = False
        for start, out in zip(range(0, len(X), PREDICT_CHUNK), self._outputs(X, given)):
            if not warned and not np.isfinite(out).all():
                warned = True
                warn_nonfinite_outputs(out, start, self.dtype)
            yield out

    def _outputs(self, X, given=None, name="X"):
        """Outputs chunk by chunk, each a new array, from one copy of the weights (thread-safe, see the
        module docstring). ``given``: None when X is known to be finite, else the caller's array X was
        converted from (``_inference_input``): X's finiteness is then learned in the first layer's GEMM, a
        FullyConnected's (a NaN or Inf in a row of X makes that row of X @ W non-finite; kernels/dense.py
        ``infer``), and only a row found so is followed by ``check_input``'s scan of X, which raises its
        ValueError — or, X being finite (an overflow, non-finite weights), lets the outputs be what they are.
        A network whose first layer is another kind, or with custom layers, is scanned first."""
        plan, steps, kernel_checks = self._inference_plan()
        off_main_thread()
        pinned = num_threads(get_num_threads())     # the count when the call started, for every chunk: a
        if given is not None and not kernel_checks:  # set_num_threads in another thread meanwhile would mix
            self._refuse_nonfinite(X, given, name)   # 1- and 2-thread GEMM roundings in one result
            given = None
        if steps is None:      # custom layers: their buffers, while no training call runs
            yield from self._outputs_exclusive(X, pinned)
            return
        with self._weights_lock:
            params = plan.params.copy()
        steps = [(layer, None if cut is None else (params[cut[0]:cut[1]].reshape(cut[3]), params[cut[1]:cut[2]]),
                  activation) for layer, cut, activation in steps]
        for start in range(0, len(X), PREDICT_CHUNK):
            x, check = X[start:start + PREDICT_CHUNK], given is not None
            with pinned:       # (not across the yield: the caller's code between chunks is not in the block)
                for layer, weights, activation in steps:
                    if weights is None:
                        x = layer._infer(x)
                        continue
                    x, bad = layer._infer_with(x, *weights, activation, check)
                    if bad >= 0:  # a row of x @ W is not finite: X holds NaN/Inf (this raises), or x @ W overflowed
                        self._refuse_nonfinite(X, given, name)
                        given = None
                    check = False
            yield x

    def _inference_plan(self):
        """(``plan(training=False)``, the inference steps or None, whether the first layer's kernel tells if X
        is finite). Steps: (layer, where a FullyConnected's weights and bias lie in the parameter buffer —
        (start, bias start, end, weights shape) — or None, the activation fused into it or None); None for a
        network with custom layers (``_outputs_exclusive`` runs them).

        Checked again only when something the plan checked can have changed since: a network of fastnn's
        own layers keeps its stack, dtype and widths (fixed at construction), so the plan built for the loss
        and optimizer it has now, its FullyConnected layers still viewing its parameter buffer, is the plan
        (predict's fixed cost per call, issue 17 item 4). Custom layers may change anything: their networks
        build the plan at every call."""
        cached = self.__dict__.get("_inference_cache")
        if cached is not None:
            loss, optimizer, answer = cached
            plan = answer[0]
            if loss is self._loss and optimizer is self._optimizer and \
                    all(fc.is_bound_to(plan.params, plan.grads) for fc in plan.dense):
                return answer
        plan = self.plan(training=False)
        layers, steps = plan.layers, None
        if plan.stateless_inference:
            cuts = iter((int(a), int(a) + fc.in_features * fc.out_features, int(b), (fc.in_features, fc.out_features))
                        for fc, a, b in zip(plan.dense, plan.offsets[:-1], plan.offsets[1:]))
            steps, i = [], 0
            while i < len(layers):
                layer = layers[i]
                if type(layer) is FullyConnected:
                    after = layers[i + 1] if i + 1 < len(layers) else None
                    fuse = fused_activation(after)
                    steps.append((layer, next(cuts), after if fuse else None))
                    i += 2 if fuse else 1
                else:
                    steps.append((layer, None, None))
                    i += 1
            steps = tuple(steps)
        answer = (plan, steps, steps is not None and type(layers[0]) is FullyConnected)
        if all(_builtin(layer) for layer in layers):
            self.__dict__["_inference_cache"] = (plan.loss, plan.optimizer, answer)
        return answer

    def _outputs_exclusive(self, X, pinned):
        """Outputs through custom layers: their own buffers, so while no training call runs (or from the
        training thread itself), with every layer in eval mode and each custom output checked; each chunk
        inside ``pinned`` (the call's ``num_threads`` block)."""
        mine = self._training_thread == threading.get_ident()
        for start in range(0, len(X), PREDICT_CHUNK):
            with contextlib.nullcontext() if mine else self.training_session("predict"), \
                    self._layers_in_mode(False):
                with pinned:
                    out = self.train_forward(X[start:start + PREDICT_CHUNK], "inference").copy()
                yield out

    def gradient_norms(self):
        """Squared L2 norm of each FullyConnected's gradient, weights and bias together (float64)."""
        return segment_squared_norms(self._flat_grads, self._offsets)

    def config(self):
        return {"layers": [[type(layer).__name__, layer.config()] for layer in self._layers],
                "loss": [type(self.loss).__name__, self.loss.config()],
                "optimizer": [type(self.optimizer).__name__, self.optimizer.config()],
                "seed": self.seed}

    def __repr__(self):
        inner = ",\n  ".join(repr(layer) for layer in self._layers)
        return f"NeuralNetwork([\n  {inner}\n], loss={self.loss!r}, optimizer={self.optimizer!r})"



def warn_nonfinite_outputs(out, start, dtype):
    """The RuntimeWarning of a prediction from outputs ``out`` (rows ``start``... of X) of which some are NaN or
    infinite although X is finite: it names the first such row."""
    row = start + int(np.argmin(np.isfinite(out).all(axis=1)))
    _checks.warn_at_caller(
        f"the network's output is NaN or infinite for row {row} of X (and maybe others): X is finite, so its "
        f"values or the network's weights overflow {np.dtype(dtype).name} inside the network; the predictions "
        f"for such rows are meaningless", RuntimeWarning)


def _joined(parts):
    """The per-chunk results as one array: the only one as it is (each is a new array), else concatenated."""
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def segment_squared_norms(flat, offsets):
    """(L,) float64: the squared L2 norm of each segment flat[offsets[k]:offsets[k+1]] (non-finite when it
    holds NaN/Inf), through the kernel the fused epoch compiles for its gradient norms (one signature:
    a fit compiles no second norm kernel)."""
    from .kernels.optim import squared_norm
    return np.array([squared_norm(flat, int(a), int(b)) for a, b in zip(offsets[:-1], offsets[1:])], np.float64)


def count_correct(out, target, loss=None):
    """Rows of out predicted right for target, as ``loss.count_correct`` counts them; without a loss, by
    the softmax rule (argmax equal to the label, or to the target distribution's argmax)."""
    return (_ARGMAX_RULE if loss is None else loss).count_correct(out, target)


_ARGMAX_RULE = SoftmaxCrossEntropy()


def _builtin(layer):
    """True for fastnn's own layer classes (their outputs are right by construction); a subclass defined
    elsewhere, or a fastnn activation subclass that overrides its computation, is checked like any custom
    layer."""
    cls = type(layer)
    return cls.__module__ == FullyConnected.__module__ and (not isinstance(layer, Activation)
                                                             or fused_activation(layer))
