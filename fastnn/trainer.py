"""Trainer: mini-batch gradient descent over epochs, with shuffling, validation, history and checks.

Two paths give the same numbers (tested): the per-layer path runs any network layer by layer from Python;
for networks of FullyConnected + ReLU/Sigmoid/TanH with SoftmaxCrossEntropy or L2Loss and SGD or Adam,
the fused path runs each whole epoch inside one Numba kernel (kernels/epoch.py).
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
from .network import NeuralNetwork, count_correct


class Trainer:
    """Fits ``net`` to (X, y).

    Parameters: ``batch_size`` (the last batch of an epoch may be smaller), ``epochs``, ``shuffle``
    (a new seeded permutation every epoch), ``seed``, ``validation_data`` ((X_val, y_val) or None),
    ``verbose`` (0 silent, 1 a progress bar over epochs), ``fused`` ("auto": the fused whole-epoch kernel
    when the network allows it; False: always the per-layer path; True: require the fused path).

    ``fit`` returns the history: per-epoch lists "loss" and, for classifiers, "accuracy" (both averaged
    over the epoch's batches, measured before each batch's update), plus "val_loss" / "val_accuracy" when
    validation data is given, "grad_norm" (per epoch, a list with the L2 norm of each parameterised layer's
    gradient, weights and bias together, on the epoch's last mini-batch) and "time" (seconds per epoch).
    A GradientHealthWarning is issued (once per kind per fit) when a layer's gradient norm is below 1e-7
    or above 1e3 times its weights' norm (vanishing / exploding gradients).

    ``checkpoint`` (a file path or None) and ``checkpoint_every`` (N): after every N epochs and after the
    last one, the network, its optimizer state, the shuffling generator's state, the epoch counter and the
    history are written to ``checkpoint`` atomically (a fastnn model file, see fastnn.checkpoint). If the
    file exists when ``fit`` starts, training resumes from it and runs the remaining epochs: the result is
    bit-identical to an uninterrupted run (same seed and thread count). A checkpoint of another
    architecture, other data or other settings (batch_size, shuffle, seed, fused, validation) is refused
    with a ValueError; ``epochs`` may grow between runs.

    Ctrl-C (SIGINT, main thread only) stops training cleanly: the per-layer path after the current
    mini-batch, the fused path after the current epoch (one kernel call; usually milliseconds). The network
    keeps the weights of the last completed step, the history keeps the completed epochs, the checkpoint (if
    any) is written — mid-epoch ones resume exactly too — and ``TrainingInterrupted``, a KeyboardInterrupt
    saying where it stopped, is raised. A second Ctrl-C aborts at once, without those guarantees.

    A non-finite loss, gradient or update raises TrainingDivergedError (epoch, batch, layer, history); the
    network, the optimizer state and the history stay those of the last finite step.
    """

    def __init__(self, net, batch_size=64, epochs=10, shuffle=True, seed=0, validation_data=None,
                 verbose=1, fused="auto", checkpoint=None, checkpoint_every=1):
        if not isinstance(net, NeuralNetwork):
            raise TypeError(f"net must be a fastnn NeuralNetwork, got {type(net).__name__}")
        self.net = net
        self.batch_size = _checks.positive_int(batch_size, "batch_size")
        self.epochs = _checks.positive_int(epochs, "epochs")
        self.shuffle = bool(shuffle)
        if seed is not None and (isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral)
                                 or seed < 0):
            raise ValueError(f"seed must be None or a non-negative integer, got {seed!r}")
        self.seed = None if seed is None else int(seed)
        self.validation_data = validation_data
        self.verbose = verbose
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

    def _use_fused(self):
        from . import fused
        ok, reason = fused.supports(self.net)
        if self.fused is True and not ok:
            raise ValueError(f"fused=True but the fused path cannot run this network: {reason}")
        return ok and self.fused is not False

    def fit(self, X, y):
        """Train; returns the history. See the class docstring for checkpoints, Ctrl-C and divergence."""
        net = self.net
        X = net.check_input(X, "X")
        y = net.check_target(y, X.shape[0], "y")
        val = None
        if self.validation_data is not None:
            try:
                X_val, y_val = self.validation_data
            except (TypeError, ValueError):
                raise ValueError("validation_data must be a pair (X_val, y_val)") from None
            X_val = net.check_input(X_val, "validation_data X")
            val = (X_val, net.check_target(y_val, X_val.shape[0], "validation_data y"))
        history = new_history(net.classification, val is not None)
        use_fused = self._use_fused()
        n_batches = -(-len(X) // self.batch_size)
        rng = np.random.default_rng(self.seed)
        start_epoch, partial, settings = 1, None, None
        if self.checkpoint is not None:
            from . import checkpoint as ckpt
            settings = ckpt.settings(self, X, y, val, "fused" if use_fused else "per-layer")
            ckpt.remove_stale_temporaries(self.checkpoint)
            resumed = ckpt.read(self.checkpoint, net, settings, n_batches, list(history), self.epochs)
            if resumed is not None:
                history = resumed.history
                rng.bit_generator.state = resumed.rng_state
                start_epoch, partial = resumed.epoch + 1, resumed.partial
        net.history = history
        if start_epoch > self.epochs:       # a finished run's checkpoint: nothing left to do
            return history
        run_epoch = self._fused_epoch_runner(X, y) if use_fused else self._layer_epoch_runner(X, y)
        health = _GradientHealth(net)
        stop = _StopFlag()
        bar = _progress(self.epochs, self.verbose, start_epoch - 1)

        def save(epoch, rng_state, progress=None):
            if self.checkpoint is None:
                return None
            from . import checkpoint as ckpt
            ckpt.write(self.checkpoint, net, epoch, rng_state, settings,
                       None if progress is None or progress.batches == 0 else progress.state())
            return self.checkpoint

        try:
            with _sigint_deferred(stop):
                for epoch in range(start_epoch, self.epochs + 1):
                    start = time.perf_counter()
                    rng_state = rng.bit_generator.state
                    order = rng.permutation(len(X)) if self.shuffle else np.arange(len(X))
                    progress = _EpochProgress(stop, partial)
                    partial = None
                    try:
                        if use_fused:
                            loss, correct = run_epoch(order, epoch)
                        else:
                            loss, correct = run_epoch(order, epoch, progress)
                    except TrainingDivergedError as exc:
                        exc.history = history
                        raise
                    except _Stop:
                        path = save(epoch - 1, rng_state, progress)
                        raise TrainingInterrupted(epoch, progress.batches, n_batches, history, path) from None
                    history["loss"].append(loss)
                    if net.classification:
                        history["accuracy"].append(correct / len(X))
                    history["grad_norm"].append(health.record(epoch))
                    if val is not None:
                        scores = net.evaluate(*val)
                        history["val_loss"].append(scores["loss"])
                        if net.classification:
                            history["val_accuracy"].append(scores["accuracy"])
                    history["time"].append(time.perf_counter() - start)
                    if epoch % self.checkpoint_every == 0 or epoch == self.epochs or stop.requested:
                        save(epoch, rng.bit_generator.state)
                    if bar is not None:
                        bar.set_postfix({k: f"{v[-1]:.4g}" for k, v in history.items()
                                         if k not in ("time", "grad_norm")})
                        bar.update(1)
                    if stop.requested:
                        raise TrainingInterrupted(epoch, n_batches, n_batches, history, self.checkpoint)
        finally:
            if bar is not None:
                bar.close()
        return history

    # -- the per-layer path ----------------------------------------------------------------------
    def _layer_epoch_runner(self, X, y, sample_weight=None):
        # sample_weight: None or checked (n,) weights in the network's dtype, gathered per batch for the loss
        net, bs = self.net, self.batch_size
        x_buf = np.empty((min(bs, len(X)),) + X.shape[1:], X.dtype)
        y_buf = np.empty((min(bs, len(y)),) + y.shape[1:], y.dtype)
        w_buf = None if sample_weight is None else np.empty(min(bs, len(X)), sample_weight.dtype)
        gather_y = batch_kernels.gather if y.ndim == 1 else batch_kernels.gather_rows

        def run_epoch(order, epoch, progress):
            # progress (_EpochProgress): resume after progress.batches batches; stop before a batch on Ctrl-C
            loss_sum, correct, first = progress.loss_sum, progress.correct, progress.batches
            for b, start in enumerate(range(first * bs, len(X), bs), first):
                progress.check()
                nb = min(bs, len(X) - start)
                xb, yb = x_buf[:nb], y_buf[:nb]
                batch_kernels.gather_rows(X, order, start, xb)
                gather_y(y, order, start, yb)
                wb = None
                if w_buf is not None:
                    wb = w_buf[:nb]
                    batch_kernels.gather(sample_weight, order, start, wb)
                out = net._forward(xb)
                loss = net.loss._forward(out, yb) if wb is None else net.loss._forward(out, yb, wb)
                if not math.isfinite(loss):
                    raise TrainingDivergedError(epoch, b + 1)
                if net.classification:
                    correct += count_correct(out, yb, net.loss)
                net._backward()
                try:
                    net.step()
                except NonFiniteUpdateError:
                    norms = net.gradient_norms()
                    if np.isfinite(norms).all():
                        raise TrainingDivergedError(epoch, b + 1, what="parameter update") from None
                    layer = net._param_layers[int(np.argmin(np.isfinite(norms)))]
                    raise TrainingDivergedError(epoch, b + 1, layer, what="gradient") from None
                loss_sum += loss * nb
                progress.done(b + 1, loss_sum, correct)
            return loss_sum / len(X), correct

        return run_epoch

    # -- the fused path -----------------------------------------------------------------------------
    def _fused_epoch_runner(self, X, y, sample_weight=None):
        from .fused import EpochRunner
        return EpochRunner(self.net, X, y, self.batch_size, sample_weight)


def new_history(classification, validation):
    """The empty per-epoch history of a fit: the keys it will fill, in the order they are reported."""
    keys = ["loss"] + (["accuracy"] if classification else [])
    if validation:
        keys += ["val_loss"] + (["val_accuracy"] if classification else [])
    return {key: [] for key in keys + ["grad_norm", "time"]}


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


@contextlib.contextmanager
def _sigint_deferred(flag):
    """While training, SIGINT only sets ``flag`` (training stops at the next batch or epoch boundary); a
    second Ctrl-C raises KeyboardInterrupt at once. Installed only in the main thread and only over Python's
    default handler (a handler of the application's own, or SIGINT ignored, is left alone); restored after."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return

    def handler(signum, frame):
        if flag.requested:
            signal.default_int_handler(signum, frame)
        flag.requested = True

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class _EpochProgress:
    """The per-layer path's position inside an epoch: batches done and the running loss / correct sums
    (what a checkpoint written on Ctrl-C stores to resume mid-epoch exactly)."""

    def __init__(self, flag, partial=None):
        self.flag = flag
        self.batches, self.loss_sum, self.correct = 0, 0.0, 0
        if partial is not None:
            self.batches, self.loss_sum, self.correct = partial["batches"], partial["loss_sum"], partial["correct"]

    def check(self):
        if self.flag.requested:
            raise _Stop

    def done(self, batches, loss_sum, correct):
        self.batches, self.loss_sum, self.correct = batches, loss_sum, correct

    def state(self):
        return {"batches": self.batches, "loss_sum": float(self.loss_sum), "correct": int(self.correct)}


# -- gradient health -------------------------------------------------------------------------------------
VANISHING, EXPLODING = 1e-7, 1e3


class _GradientHealth:
    """Per-layer gradient norms for the history, and one GradientHealthWarning per kind per fit."""

    def __init__(self, net):
        self.net = net
        self.weight_sq = np.zeros(len(net._param_layers), np.float64)
        self.warned = set()

    def record(self, epoch):
        """L2 norm of each parameterised layer's gradient (the last mini-batch's), checked against its weights."""
        from .kernels.optim import squared_norms
        net = self.net
        grads = np.sqrt(net.gradient_norms()).tolist()
        squared_norms(net._flat_params, net._offsets, self.weight_sq)
        weights = np.sqrt(self.weight_sq)
        for k, (g, w) in enumerate(zip(grads, weights)):
            if not math.isfinite(g):
                continue
            if "vanishing" not in self.warned and g < VANISHING * w:
                self._warn("vanishing", epoch, k, g, w, f"below {VANISHING:g}")
            elif "exploding" not in self.warned and w > 0 and g > EXPLODING * w:
                self._warn("exploding", epoch, k, g, w, f"above {EXPLODING:g}")
        return grads

    def _warn(self, kind, epoch, k, g, w, bound):
        self.warned.add(kind)
        layer = self.net._param_layers[k]
        warnings.warn(f"{kind} gradient in layer {layer} ({type(self.net.layers[layer]).__name__}) at epoch "
                      f"{epoch}: gradient norm {g:.3g} is {bound} times its weights' norm {w:.3g}. See "
                      f"history['grad_norm'].", GradientHealthWarning, stacklevel=4)
