"""Trainer: mini-batch gradient descent over epochs, with shuffling, validation, history and checks.

Two paths give the same numbers (tested): the per-layer path runs any network layer by layer from Python;
for networks of FullyConnected + ReLU/Sigmoid/TanH with SoftmaxCrossEntropy or L2Loss and SGD or Adam,
the fused path runs each whole epoch inside one Numba kernel (kernels/epoch.py).
"""
import math
import time

import numpy as np

from . import _checks
from .kernels import batch as batch_kernels
from .errors import NonFiniteUpdateError, TrainingDivergedError
from .network import NeuralNetwork, count_correct


class Trainer:
    """Fits ``net`` to (X, y).

    Parameters: ``batch_size`` (the last batch of an epoch may be smaller), ``epochs``, ``shuffle``
    (a new seeded permutation every epoch), ``seed``, ``validation_data`` ((X_val, y_val) or None),
    ``verbose`` (0 silent, 1 a progress bar over epochs), ``fused`` ("auto": the fused whole-epoch kernel
    when the network allows it; False: always the per-layer path; True: require the fused path).

    ``fit`` returns the history: per-epoch lists "loss" and, for classifiers, "accuracy" (both averaged
    over the epoch's batches, measured before each batch's update), plus "val_loss" / "val_accuracy" when
    validation data is given, and "time" (seconds per epoch).
    """

    def __init__(self, net, batch_size=64, epochs=10, shuffle=True, seed=0, validation_data=None,
                 verbose=1, fused="auto"):
        if not isinstance(net, NeuralNetwork):
            raise TypeError(f"net must be a fastnn NeuralNetwork, got {type(net).__name__}")
        self.net = net
        self.batch_size = _checks.positive_int(batch_size, "batch_size")
        self.epochs = _checks.positive_int(epochs, "epochs")
        self.shuffle = bool(shuffle)
        self.seed = seed
        self.validation_data = validation_data
        self.verbose = verbose
        if fused not in ("auto", True, False):
            raise ValueError(f"fused must be 'auto', True or False, got {fused!r}")
        self.fused = fused

    def _use_fused(self):
        from . import fused
        ok, reason = fused.supports(self.net)
        if self.fused is True and not ok:
            raise ValueError(f"fused=True but the fused path cannot run this network: {reason}")
        return ok and self.fused is not False

    def fit(self, X, y):
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
        history = {"loss": []}
        if net.classification:
            history["accuracy"] = []
        if val is not None:
            history["val_loss"] = []
            if net.classification:
                history["val_accuracy"] = []
        history["time"] = []
        net.history = history
        run_epoch = self._fused_epoch_runner(X, y) if self._use_fused() else self._layer_epoch_runner(X, y)
        rng = np.random.default_rng(self.seed)
        bar = _progress(self.epochs, self.verbose)
        for epoch in range(1, self.epochs + 1):
            start = time.perf_counter()
            order = rng.permutation(len(X)) if self.shuffle else np.arange(len(X))
            try:
                loss, correct = run_epoch(order, epoch)
            except TrainingDivergedError as exc:
                exc.history = history
                if bar is not None:
                    bar.close()
                raise
            history["loss"].append(loss)
            if net.classification:
                history["accuracy"].append(correct / len(X))
            if val is not None:
                scores = net.evaluate(*val)
                history["val_loss"].append(scores["loss"])
                if net.classification:
                    history["val_accuracy"].append(scores["accuracy"])
            history["time"].append(time.perf_counter() - start)
            if bar is not None:
                bar.set_postfix({k: f"{v[-1]:.4g}" for k, v in history.items() if k != "time"})
                bar.update(1)
        if bar is not None:
            bar.close()
        return history

    # -- the per-layer path ----------------------------------------------------------------------
    def _layer_epoch_runner(self, X, y):
        net, bs = self.net, self.batch_size
        x_buf = np.empty((min(bs, len(X)),) + X.shape[1:], X.dtype)
        y_buf = np.empty((min(bs, len(y)),) + y.shape[1:], y.dtype)
        gather_y = batch_kernels.gather if y.ndim == 1 else batch_kernels.gather_rows

        def run_epoch(order, epoch):
            loss_sum, correct = 0.0, 0
            for b, start in enumerate(range(0, len(X), bs)):
                nb = min(bs, len(X) - start)
                xb, yb = x_buf[:nb], y_buf[:nb]
                batch_kernels.gather_rows(X, order, start, xb)
                gather_y(y, order, start, yb)
                out = net._forward(xb)
                loss = net.loss._forward(out, yb)
                if not math.isfinite(loss):
                    raise TrainingDivergedError(epoch, b + 1)
                if net.classification:
                    correct += count_correct(out, yb)
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
            return loss_sum / len(X), correct

        return run_epoch

    # -- the fused path -----------------------------------------------------------------------------
    def _fused_epoch_runner(self, X, y):
        from .fused import EpochRunner
        return EpochRunner(self.net, X, y, self.batch_size)


def _progress(total, verbose):
    if not verbose:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, unit="epoch", desc="training", leave=True)
