"""THE training loop: epochs, sample order, batching, validation, history, progress, callbacks, learning-rate
schedules, checkpoints and resume, Ctrl-C / SIGTERM, divergence and gradient health — written once.

Engines only run one epoch over a given sample order and report (mean loss, correct predictions):
* fused      the whole-epoch Numba kernel (fastnn.fused) for every network it can express (the default);
* per-layer  any network, layer by layer from Python (custom layers), ``_layer_epoch`` below;
* distributed the per-step gradient allreduce over MPI ranks (fastnn.distributed).
``NeuralNetwork.fit``, ``Trainer``, the scikit-learn estimators and the CLI are clients of this loop.
"""
import contextlib
import math
import numbers
import signal
import threading
import time
import warnings

import numpy as np

from . import _checks
from .kernels import batch as batch_kernels
from .errors import GradientHealthWarning, NonFiniteUpdateError, TrainingDivergedError, TrainingInterrupted
from . import network
from .layers import dropout_epoch_key, has_keyed_layers
from .network import NeuralNetwork, count_correct


class Trainer:
    """Fits ``net`` to (X, y) with mini-batch gradient descent; ``fit`` returns the per-epoch history.

    Settings (checked here, once, for every client):
    ``batch_size`` (clipped to the number of samples; the last batch of an epoch may be smaller), ``epochs``,
    ``shuffle`` (a new permutation every epoch), ``seed`` (the shuffling stream: repeated fits with the same
    seed continue one stream, like repeated Keras ``fit`` calls; a new seed starts a new one), ``validation_data``
    ((X_val, y_val) or None) or ``validation_split`` (a fraction in [0, 1): the last rows of X, y, before any
    shuffling, as in Keras), ``verbose`` (0 silent, 1 a progress bar over epochs), ``fused`` ("auto": the fused
    whole-epoch kernel when the network allows it; False: the per-layer path; True: require the fused path),
    ``class_weight`` (dict class id -> weight, or "balanced"; multiplies the sample weights of labelled
    classifiers), ``lr_schedule`` (a fastnn.schedules object or a callable epoch -> lr: the optimizer's rate
    for each epoch, from the rate it had when fit started), ``callbacks`` (objects with
    ``on_epoch_end(epoch, history) -> bool`` (True stops), optional ``on_train_begin(net)`` /
    ``on_train_end(net)``; see fastnn.callbacks), ``checkpoint`` / ``checkpoint_every``, ``distributed`` (True, or an mpi4py communicator: data-parallel
    over MPI ranks, see fastnn.distributed; ``batch_size`` is then each rank's local batch).
    ``fit(X, y, sample_weight=None)``: per-sample weights (n,), non-negative, finite, not all zero.
    ``sample_order`` (Trainer only; advanced): a callable n -> the next epoch's order, a permutation of
    range(n), replacing ``shuffle`` and ``seed`` (the scikit-learn drop-ins use it to draw scikit-learn's
    orders); it cannot be combined with ``checkpoint``.

    History: per-epoch lists "loss" and, for classifiers, "accuracy" (over the epoch's batches, each measured
    before its update), "val_loss" / "val_accuracy" with validation data, "lr" (the rate the epoch used),
    "grad_norm" (the L2 norm of each parameterised layer's gradient on the epoch's last mini-batch) and "time".
    A GradientHealthWarning is issued (once per kind per fit, one line, through the progress bar's writer)
    when a layer has stopped learning although the loss has not (vanishing: gradient norm x weights' norm
    below 1e-6 x the loss for 5 epochs in a row; never on a model that has simply converged) or when its
    gradient norm is above 1e3 times its weights' norm (exploding); see ``_GradientHealth``.

    ``checkpoint`` (a file path or None) and ``checkpoint_every`` (N): after every N epochs and after the
    last one, the network, its optimizer state, the shuffling generator's state, the epoch counter and the
    history are written to ``checkpoint`` atomically (a fastnn model file, see fastnn.checkpoint). If the
    file exists when ``fit`` starts, training resumes from it and runs the remaining epochs: the result is
    bit-identical to an uninterrupted run (same seed and thread count). A checkpoint of another
    architecture, other data or other settings is refused with a ValueError; ``epochs`` may grow.

    Ctrl-C (SIGINT) and SIGTERM (main thread only) stop training cleanly: the per-layer path after the
    current mini-batch, the fused path after the current epoch. The network keeps the weights of the last
    completed step, the history the completed epochs, the checkpoint (if any) is written — mid-epoch ones
    resume exactly too — and ``TrainingInterrupted``, a KeyboardInterrupt saying where it stopped (and its
    ``signal``), is raised. A second signal aborts at once.

    A non-finite loss, gradient or update raises TrainingDivergedError (epoch, batch, layer, history); the
    network, the optimizer state and the history stay those of the last finite step.
    """

    def __init__(self, net, batch_size=64, epochs=10, shuffle=True, seed=0, validation_data=None,
                 verbose=1, fused="auto", checkpoint=None, checkpoint_every=1, *, validation_split=0.0,
                 class_weight=None, lr_schedule=None, callbacks=(), distributed=False, sample_order=None):
        if not isinstance(net, NeuralNetwork):
            raise TypeError(f"net must be a fastnn NeuralNetwork, got {type(net).__name__}")
        self.net = net
        self.batch_size = _checks.positive_int(batch_size, "batch_size")
        self.epochs = _checks.positive_int(epochs, "epochs")
        if not isinstance(shuffle, (bool, np.bool_)):
            raise ValueError(f"shuffle must be True or False, got {shuffle!r}")
        self.shuffle = bool(shuffle)
        self.seed = _checks.seed(seed, "seed")
        self.validation_data = validation_data
        split = validation_split
        if isinstance(split, (bool, np.bool_)) or not isinstance(split, numbers.Real) or not 0 <= split < 1:
            raise ValueError(f"validation_split must be a number in [0, 1), got {split!r}")
        if split and validation_data is not None:
            raise ValueError("give validation_data or validation_split, not both")
        self.validation_split = float(split)
        if verbose not in (0, 1, 2, True, False):
            raise ValueError(f"verbose must be 0, 1 or 2, got {verbose!r}")
        self.verbose = int(verbose)
        if isinstance(fused, (bool, np.bool_)):
            fused = bool(fused)
        elif not (isinstance(fused, str) and fused == "auto"):      # 1, 0, 1.0 are not booleans here
            raise ValueError(f"fused must be 'auto', True or False, got {fused!r}")
        self.fused = fused
        if checkpoint is not None:
            from .checkpoint import check_path
            checkpoint = check_path(checkpoint)
        self.checkpoint = checkpoint
        self.checkpoint_every = _checks.positive_int(checkpoint_every, "checkpoint_every")
        self.class_weight = _check_class_weight(class_weight)
        self.lr_schedule = None
        if lr_schedule is not None:
            from . import schedules
            self.lr_schedule = schedules.get(lr_schedule)
        if callbacks is None:
            callbacks = ()
        if not isinstance(callbacks, (list, tuple)):
            callbacks = (callbacks,)
        for i, cb in enumerate(callbacks):
            if not callable(getattr(cb, "on_epoch_end", None)):
                raise TypeError(f"callbacks[{i}] ({type(cb).__name__}) has no on_epoch_end(epoch, history) method")
        self.callbacks = tuple(callbacks)
        if sample_order is not None and not callable(sample_order):
            raise TypeError(f"sample_order must be None or a callable n -> order, got {type(sample_order).__name__}")
        if sample_order is not None and checkpoint is not None:
            raise ValueError("sample_order cannot be combined with checkpoint= (its state is not saved)")
        self.sample_order = sample_order
        if isinstance(distributed, (bool, np.bool_)) or distributed is None:
            distributed = bool(distributed)
        elif not hasattr(distributed, "Allreduce"):
            raise TypeError(f"distributed must be True, False or an MPI communicator, got {distributed!r:.80}")
        self.distributed = distributed
        if self.distributed is not False and fused is True:
            raise ValueError("fused=True cannot run distributed: the fused whole-epoch kernel cannot stop "
                             "for the per-step gradient allreduce")

    def _use_fused(self):
        from . import fused
        ok, reason = fused.supports(self.net)
        if self.fused is True and not ok:
            raise ValueError(f"fused=True but the fused path cannot run this network: {reason}")
        return ok and self.fused is not False

    def _order(self, rng, n):
        """This epoch's sample order: the user's ``sample_order``, a permutation from the shuffling stream, or
        0..n-1."""
        if self.sample_order is not None:
            return _checked_order(self.sample_order(n), n)
        return rng.permutation(n) if self.shuffle else np.arange(n)

    def fit(self, X, y, sample_weight=None):
        """Train; returns the history. See the class docstring."""
        run = _LOCAL
        if self.distributed:
            from .distributed import MPIRun     # ImportError with the install hint without mpi4py
            run = MPIRun(None if self.distributed is True else self.distributed)
        with self.net.training_session("fit"), run.guard():
            return self._fit(X, y, sample_weight, run)

    def _data(self, X, y, sample_weight):
        """Checked (X, y, weights or None, validation pair or None)."""
        net = self.net
        X = net.check_input(X, "X")
        y = net.check_target(y, X.shape[0], "y")
        weights = None
        if sample_weight is not None:
            weights = _checks.sample_weights(sample_weight, "sample_weight", X.shape[0], net.dtype)
        if self.class_weight is not None:
            weights = _class_weights(self.class_weight, y, net, weights)
        val = None
        if self.validation_split:
            n_val = int(math.ceil(self.validation_split * len(X)))
            if n_val >= len(X):
                raise ValueError(f"validation_split={self.validation_split} leaves no training samples")
            val = (X[len(X) - n_val:], y[len(X) - n_val:])
            X, y = X[:len(X) - n_val], y[:len(y) - n_val]
            weights = None if weights is None else weights[:len(X)]
        elif self.validation_data is not None:
            val = self._validation()
        if weights is not None and not weights.any():
            raise ValueError("sample_weight is zero for every training sample" if self.class_weight is None else
                             "the sample weights (sample_weight times class_weight) are zero for every training "
                             "sample")
        return X, y, weights, val

    def _validation(self):
        """The checked validation pair from ``validation_data``."""
        try:
            X_val, y_val = self.validation_data
        except (TypeError, ValueError):
            raise ValueError("validation_data must be a pair (X_val, y_val)") from None
        X_val = self.net.check_input(X_val, "validation_data X")
        return X_val, self.net.check_target(y_val, X_val.shape[0], "validation_data y")

    def _fit(self, X, y, sample_weight, run):
        net = self.net
        plan = net.plan()
        X, y, weights, val = run.prepare(self, X, y, sample_weight)
        seed = run.seed(self.seed)
        opt = plan.optimizer
        batch_size = run.batch_size(self.batch_size, len(X))      # the global batch
        history = new_history(net.classification, val is not None)
        use_fused = run.use_fused(self)
        n_batches = -(-len(X) // batch_size)
        rng = _shuffle_stream(net, seed)
        base_lr = opt.lr
        start_epoch, partial, settings = 1, None, None
        if self.checkpoint is not None:
            from . import checkpoint as ckpt, schedules
            settings = ckpt.settings(self, X, y, val, run.path_name(use_fused))
            settings.update(batch_size=batch_size, base_lr=base_lr, seed=seed, data=run.fingerprint(X, y),
                            lr_schedule=schedules.to_config(self.lr_schedule),
                            weights=None if weights is None else ckpt.fingerprint(weights))

            def read():
                ckpt.remove_stale_temporaries(self.checkpoint)
                ckpt.check_writable(self.checkpoint)
                found = ckpt.read(self.checkpoint, net, settings, n_batches, list(history), self.epochs)
                return None if found is None else (found.epoch, found.rng_state, found.partial, found.history)
            resumed = run.on_root(read)
            if resumed is not None:
                start_epoch, rng.bit_generator.state, partial, history = resumed
                start_epoch += 1
        run.start(net)
        net.history = history
        if start_epoch > self.epochs:       # a finished run's checkpoint: nothing left to do
            return history
        run_epoch = run.engine(self, X, y, batch_size, weights, use_fused)
        health = _GradientHealth(net, plan, warn=run.is_root)
        stop = _StopFlag()
        bar = _progress(self.epochs, self.verbose, start_epoch - 1) if run.is_root else None
        samples_seen = (start_epoch - 1) * len(X)

        def save(epoch, rng_state, progress=None):
            if self.checkpoint is None:
                return None
            from . import checkpoint as ckpt

            def write():
                lr, opt.lr = opt.lr, base_lr     # the file records the network as fit found it
                try:
                    ckpt.write(self.checkpoint, net, epoch, rng_state, settings,
                               None if progress is None or progress.batches == 0 else progress.state())
                finally:
                    opt.lr = lr
            run.on_root(write, where=f"the checkpoint after epoch {epoch}")
            return self.checkpoint

        for cb in self.callbacks:
            if hasattr(cb, "on_train_begin"):
                cb.on_train_begin(net)
        try:
            with _signals_deferred(stop):
                for epoch in range(start_epoch, self.epochs + 1):
                    start = time.perf_counter()
                    if self.lr_schedule is not None:
                        opt.lr = self.lr_schedule.lr(epoch, base_lr, history, samples_seen)
                    rng_state = rng.bit_generator.state
                    order = self._order(rng, len(X))
                    progress = _EpochProgress(stop, partial, run.any, dropout_epoch_key(rng_state, epoch))
                    partial = None
                    net.plan()      # whatever a callback or another thread changed is checked again
                    try:
                        loss, correct = run_epoch(order, epoch, progress)
                    except TrainingDivergedError as exc:
                        exc.history = history
                        raise
                    except _Stop:
                        path = save(epoch - 1, rng_state, progress)
                        raise TrainingInterrupted(epoch, progress.batches, n_batches, history, path,
                                                  signal_name=stop.signal_name) from None
                    finally:
                        net.shuffle_state = (seed, rng.bit_generator.state)
                    samples_seen += len(X)
                    history["loss"].append(loss)
                    if net.classification:
                        history["accuracy"].append(correct / len(X))
                    history["lr"].append(opt.lr)
                    history["grad_norm"].append(health.record(epoch, loss))
                    if val is not None:
                        scores = run.evaluate(net, *val)
                        history["val_loss"].append(scores["loss"])
                        if net.classification:
                            history["val_accuracy"].append(scores["accuracy"])
                    history["time"].append(time.perf_counter() - start)
                    stop_asked = any([bool(cb.on_epoch_end(epoch, history)) for cb in self.callbacks])
                    interrupted = run.any(stop.requested)
                    if epoch % self.checkpoint_every == 0 or epoch == self.epochs or stop_asked or interrupted:
                        save(epoch, rng.bit_generator.state)
                    if bar is not None:
                        bar.set_postfix({k: f"{v[-1]:.4g}" for k, v in history.items()
                                         if k not in ("time", "grad_norm")})
                        bar.update(1)
                    if interrupted:
                        raise TrainingInterrupted(epoch, n_batches, n_batches, history, self.checkpoint,
                                                  signal_name=stop.signal_name)
                    if stop_asked:
                        break
        finally:
            if bar is not None:
                bar.close()
        for cb in self.callbacks:
            if hasattr(cb, "on_train_end"):
                cb.on_train_end(net)
        return history


class _Local:
    """Where the loop runs: one process. (fastnn.distributed.MPIRun is the other place: the same methods,
    with the collectives that keep K ranks in step.)"""

    is_root = True

    def guard(self):
        return contextlib.nullcontext()

    def prepare(self, trainer, X, y, sample_weight):
        return trainer._data(X, y, sample_weight)

    def seed(self, seed):
        return seed

    def batch_size(self, batch_size, n):
        return min(batch_size, n)

    def use_fused(self, trainer):
        return trainer._use_fused()

    def path_name(self, use_fused):
        return "fused" if use_fused else "per-layer"

    def fingerprint(self, X, y):
        from .checkpoint import fingerprint
        return fingerprint(X, y)

    def on_root(self, work, where=None):
        return work()

    def start(self, net):
        pass

    def engine(self, trainer, X, y, batch_size, weights, use_fused):
        if use_fused:
            from .fused import EpochRunner
            return EpochRunner(trainer.net, X, y, batch_size, sample_weights=weights)
        return _LayerEpoch(trainer.net, X, y, batch_size, weights)

    def evaluate(self, net, X, y):
        return net.evaluate(X, y)

    def any(self, flag):
        return bool(flag)


_LOCAL = _Local()


network.provide("Trainer", Trainer)


def _checked_order(order, n):
    """A sample order from a user's ``sample_order``: a permutation of range(n) as C-contiguous int64 (the
    kernels index X with it)."""
    order = np.ascontiguousarray(order, dtype=np.int64)
    if order.shape != (n,) or (n and (order.min() < 0 or order.max() >= n)) or \
            not np.all(np.bincount(order, minlength=n) == 1):
        raise ValueError(f"sample_order must return a permutation of range({n}) (each sample once)")
    return order


def _shuffle_stream(net, seed):
    """The generator of sample orders: the network's stream when it was made from the same seed (repeated
    fits continue it), else a new one from ``seed``."""
    rng = np.random.default_rng(seed)
    saved = net.shuffle_state
    if saved is not None and seed is not None and saved[0] == seed:
        rng.bit_generator.state = saved[1]
    return rng


def _check_class_weight(class_weight):
    if class_weight is None or (isinstance(class_weight, str) and class_weight == "balanced"):
        return class_weight
    if not isinstance(class_weight, dict):
        raise TypeError(f"class_weight must be None, 'balanced' or a dict class id -> weight, got "
                        f"{type(class_weight).__name__}")
    checked = {}
    for k, w in class_weight.items():
        if isinstance(k, (bool, np.bool_)) or not isinstance(k, numbers.Integral) or k < 0:
            raise ValueError(f"class_weight keys must be class ids (integers >= 0), got {k!r}")
        checked[int(k)] = _checks.positive_float(w, f"class_weight[{k}]", allow_zero=True)
    return checked


def _class_weights(class_weight, y, net, weights):
    """Sample weights times the weight of each sample's class (labelled classification only)."""
    if not net.classification or y.ndim != 1:
        raise ValueError("class_weight needs class-id targets (batch,) of a classifier")
    n_classes = net.n_outputs
    if class_weight == "balanced":     # scikit-learn's: n_samples / (n_classes_present * count)
        counts = np.bincount(y, minlength=n_classes).astype(np.float64)
        table = np.zeros(n_classes)
        present = counts > 0
        table[present] = len(y) / (present.sum() * counts[present])
    else:
        unknown = [k for k in class_weight if k >= n_classes]
        if unknown:
            raise ValueError(f"class_weight has class ids {unknown} but the network has {n_classes} outputs")
        table = np.ones(n_classes)
        for k, w in class_weight.items():
            table[k] = w
    limit = np.finfo(net.dtype).max
    if table.max(initial=0) > limit:
        raise ValueError(f"class_weight has a weight of {table.max():.3g}, beyond the network's "
                         f"{np.dtype(net.dtype).name} range (max {limit:.3g})")
    per_sample = table[y].astype(net.dtype)
    if not per_sample.any():
        raise ValueError("class_weight gives weight 0 to every class present in y (no sample would train)")
    with np.errstate(over="ignore"):
        combined = per_sample if weights is None else weights * per_sample
    if not np.isfinite(combined).all():
        raise ValueError(f"sample_weight times class_weight exceeds the network's {np.dtype(net.dtype).name} range")
    return combined


class _LayerEpoch:
    """The per-layer engine: one epoch of any network, layer by layer, batch by batch.

    ``(order, epoch, progress)`` -> (mean loss, correct); progress (_EpochProgress) resumes after
    ``progress.batches`` batches and stops before a batch on Ctrl-C; batch b's Dropout masks are keyed
    (progress.dropout_key, b, 0) (layers.Dropout).
    """

    def __init__(self, net, X, y, batch_size, weights):
        self.net, self.X, self.y, self.bs, self.weights = net, X, y, batch_size, weights
        self.x_buf = np.empty((batch_size,) + X.shape[1:], X.dtype)
        self.y_buf = np.empty((batch_size,) + y.shape[1:], y.dtype)
        self.w_buf = None if weights is None else np.empty(batch_size, weights.dtype)
        self.gather_y = batch_kernels.gather if y.ndim == 1 else batch_kernels.gather_rows
        self.keyed = has_keyed_layers(net)

    def __call__(self, order, epoch, progress):
        net, X, y, bs = self.net, self.X, self.y, self.bs
        loss_sum, correct, first = progress.loss_sum, progress.correct, progress.batches
        plan = net.plan()
        opt_params, opt_grads = list(plan.opt_params), list(plan.opt_grads)   # the same lists every step
        for b, start in enumerate(range(first * bs, len(X), bs), first):
            progress.check()
            nb = min(bs, len(X) - start)
            xb, yb = self.x_buf[:nb], self.y_buf[:nb]
            batch_kernels.gather_rows(X, order, start, xb)
            self.gather_y(y, order, start, yb)
            out = net.train_forward(xb, (progress.dropout_key, b, 0)) if self.keyed else net.train_forward(xb)
            if self.weights is None:
                loss = net.loss._forward(out, yb)
            else:
                wb = self.w_buf[:nb]
                batch_kernels.gather(self.weights, order, start, wb)
                loss = net.loss._forward(out, yb, wb)
            if not math.isfinite(loss):
                raise TrainingDivergedError(epoch, b + 1)
            if net.classification:
                correct += count_correct(out, yb, net.loss)
            net.train_backward()
            try:
                with net.weights_changing():
                    plan.optimizer.step(opt_params, opt_grads)
            except NonFiniteUpdateError:
                norms = net.gradient_norms()
                if np.isfinite(norms).all():
                    raise TrainingDivergedError(epoch, b + 1, what="parameter update") from None
                layer = plan.param_layers[int(np.argmin(np.isfinite(norms)))]
                raise TrainingDivergedError(epoch, b + 1, layer, what="gradient") from None
            loss_sum += loss * nb * net.loss.report_scale
            progress.done(b + 1, loss_sum, correct)
        return loss_sum / len(X), correct


def new_history(classification, validation):
    """The empty per-epoch history of a fit: the keys it will fill, in the order they are reported."""
    keys = ["loss"] + (["accuracy"] if classification else [])
    if validation:
        keys += ["val_loss"] + (["val_accuracy"] if classification else [])
    return {key: [] for key in keys + ["lr", "grad_norm", "time"]}


def _progress(total, verbose, initial=0):
    if not verbose:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, initial=initial, unit="epoch", desc="training", leave=True)


# -- Ctrl-C ---------------------------------------------------------------------------------------------
class _Stop(Exception):
    """Raised inside an epoch runner, between batches, when Ctrl-C asked training to stop."""


class _StopFlag:
    requested = False
    signal_name = None


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def _signals_deferred(flag):
    """While training, SIGINT (Ctrl-C) and SIGTERM (what Slurm and container runtimes send first) only set
    ``flag`` (training stops at the next batch or epoch boundary); a second signal acts at once (SIGINT:
    KeyboardInterrupt, SIGTERM: the previous handler or the default exit). Installed only in the main thread
    and only over the default handlers (an application's own handler, or an ignored signal, is left alone);
    restored after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    defaults = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}
    previous = {}

    def handler(signum, frame):
        if flag.requested:
            old = previous.get(signum)
            for sig, h in previous.items():
                signal.signal(sig, h)
            if signum == signal.SIGINT:
                signal.default_int_handler(signum, frame)
            elif callable(old):
                old(signum, frame)
            else:
                signal.raise_signal(signum)
            return
        flag.requested = True
        flag.signal_name = signal.Signals(signum).name

    for sig in _STOP_SIGNALS:
        if signal.getsignal(sig) is defaults[sig]:
            previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, h in previous.items():
            signal.signal(sig, h)


class _EpochProgress:
    """The per-layer path's position inside an epoch: batches done and the running loss / correct sums
    (what a checkpoint written on Ctrl-C stores to resume mid-epoch exactly); ``dropout_key``: the epoch's
    Dropout key (layers.dropout_epoch_key), which every engine reads here."""

    def __init__(self, flag, partial=None, agree=bool, dropout_key=0):
        self.flag, self.agree, self.dropout_key = flag, agree, dropout_key
        self.batches, self.loss_sum, self.correct = 0, 0.0, 0
        if partial is not None:
            self.batches, self.loss_sum, self.correct = partial["batches"], partial["loss_sum"], partial["correct"]

    def check(self):
        """Raise _Stop when a signal asked training to stop (on any rank: ``agree`` is a collective there)."""
        if self.agree(self.flag.requested):
            raise _Stop

    def done(self, batches, loss_sum, correct):
        self.batches, self.loss_sum, self.correct = batches, loss_sum, correct

    def state(self):
        return {"batches": self.batches, "loss_sum": float(self.loss_sum), "correct": int(self.correct)}


# -- gradient health -------------------------------------------------------------------------------------
VANISHING, VANISHING_EPOCHS, EXPLODING = 1e-6, 5, 1e3


class _GradientHealth:
    """Per-layer gradient norms for the history, and one GradientHealthWarning per kind per fit.

    The rules (the gradient is the epoch's last mini-batch's; g, w the L2 norms of a parameterised layer's
    gradient and parameters, L the epoch's mean loss):

    * vanishing: ``g * w < VANISHING * L`` at ``VANISHING_EPOCHS`` consecutive epochs. ``g * w / L`` bounds, to
      first order, the relative change of the loss if every parameter of the layer changed by 100%: below
      1e-6 the layer has stopped learning although the loss has not (saturated or dead units). The measure
      is scale-free (units of the loss, size of the weights, learning rate) and a model that has simply
      converged does not trigger it: its gradients shrink with its loss (L2: g ~ sqrt(L); cross-entropy:
      g ~ L), and mini-batch noise keeps them in proportion to the loss on a non-zero floor. Requiring
      several epochs in a row (several different mini-batches) ignores a batch that happens to miss a
      layer's active region. A loss of 0 (a perfect fit) never warns, nor does the last parameterised layer:
      it receives the loss gradient directly, so a small gradient there means the loss is stationary
      (converged, perhaps at the model's capacity: a linear model on XOR), not that it vanished on its way
      back through the layers.
    * exploding: ``g > EXPLODING * w`` at any epoch (one step of any sane learning rate rewrites the layer);
      usually unscaled inputs, so the message suggests standardising them or a lower learning rate.

    Warnings are one line each and are written through tqdm's writer (``external_write_mode``), so a
    progress bar on the same terminal is cleared and redrawn instead of being broken mid-line.
    """

    def __init__(self, net, plan, warn=True):
        self.net, self.plan, self.warn = net, plan, warn
        self.weight_sq = np.zeros(len(plan.param_layers), np.float64)
        self.low = np.zeros(len(plan.param_layers), np.int64)      # consecutive epochs below VANISHING
        self.warned = set()

    def record(self, epoch, loss=None):
        """L2 norm of each parameterised layer's gradient (the last mini-batch's), checked by the rules above.
        ``loss``: the epoch's mean loss (default: the last of ``net.history["loss"]``)."""
        from .kernels.optim import squared_norms
        net = self.net
        if loss is None:
            losses = (net.history or {}).get("loss") or [math.nan]
            loss = losses[-1]
        grads = np.sqrt(net.gradient_norms()).tolist()
        squared_norms(self.plan.params, self.plan.offsets, self.weight_sq)
        weights = np.sqrt(self.weight_sq)
        last = len(grads) - 1
        for k, (g, w) in enumerate(zip(grads, weights)):
            if not (math.isfinite(g) and math.isfinite(loss)) or loss <= 0 or w == 0:
                self.low[k] = 0
                continue
            self.low[k] = self.low[k] + 1 if k < last and g * w < VANISHING * loss else 0
            if "vanishing" not in self.warned and self.low[k] >= VANISHING_EPOCHS:
                self._warn("vanishing", epoch,
                           f"vanishing gradient in layer {self._layer(k)} for {VANISHING_EPOCHS} epochs up to "
                           f"epoch {epoch}: gradient norm {g:.3g} x weights' norm {w:.3g} is below "
                           f"{VANISHING:g} x the loss {loss:.3g}, so the layer has stopped learning (saturated or "
                           f"dead units?); see history['grad_norm']")
            elif "exploding" not in self.warned and g > EXPLODING * w:
                self._warn("exploding", epoch,
                           f"exploding gradient in layer {self._layer(k)} at epoch {epoch}: gradient norm "
                           f"{g:.3g} is above {EXPLODING:g} x its weights' norm {w:.3g} (unscaled inputs? "
                           f"standardise them, e.g. fastnn train --standardize, or lower the learning rate)")
        return grads

    def _layer(self, k):
        layer = self.plan.param_layers[k]
        return f"{layer} ({type(self.net.layers[layer]).__name__})"

    def _warn(self, kind, epoch, message):
        self.warned.add(kind)
        if not self.warn:           # not the rank that reports (distributed)
            return
        with _bar_write_mode():
            warnings.warn(message, GradientHealthWarning, stacklevel=4)


@contextlib.contextmanager
def _bar_write_mode():
    """While inside, any tqdm progress bar on stdout / stderr is cleared, and redrawn on exit (tqdm.write's
    mechanism), so that text written meanwhile (a warning) gets lines of its own. A no-op without bars."""
    import sys
    tqdm = sys.modules.get("tqdm.auto")
    if tqdm is None:                      # no bar was ever created: nothing to clear
        yield
        return
    with tqdm.tqdm.external_write_mode(file=sys.stderr):
        yield
