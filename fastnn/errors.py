"""Exceptions of fastnn."""


class TrainingDivergedError(RuntimeError):
    """Training produced a non-finite loss or gradient; the network keeps its last finite weights.

    Attributes: ``epoch`` and ``batch`` (both counted from 1), ``layer`` (index of the first layer with a
    non-finite gradient, or None when the loss itself was non-finite) and ``history`` (the per-epoch
    history of the epochs completed before the failure).
    """

    def __init__(self, epoch, batch, layer=None, history=None, what="loss"):
        self.epoch, self.batch, self.layer, self.history = epoch, batch, layer, history
        where = f"epoch {epoch}, batch {batch}" + ("" if layer is None else f", layer {layer}")
        super().__init__(
            f"training diverged: the {what} became NaN or infinite at {where}. The network keeps the "
            f"weights of the last finite step. Try a smaller learning rate (or normalise the inputs).")


class NonFiniteStateError(TrainingDivergedError, ValueError):
    """A fit stopped at the first step of an epoch because the network's parameters or the optimizer's state
    already held NaN or infinite values when the epoch began — set or changed outside training (an array
    changed in place, a callback) — rather than a divergence of the learning rule. A TrainingDivergedError
    (the loss or gradient of that step was not finite) and a ValueError (a bad value the user gave);
    ``where`` names the array."""

    def __init__(self, epoch, batch, where, history=None):
        super().__init__(epoch, batch, None, history)
        self.where = where
        self.args = (f"{where} held NaN or infinite values when epoch {epoch} began (set or changed outside "
                     f"training, e.g. in place or by a callback), so its first step could not be finite: "
                     f"training needs finite parameters and optimizer state (assign finite values, or load "
                     f"a saved model)",)


class NonFiniteUpdateError(ArithmeticError):
    """An optimizer step would have made a parameter NaN or infinite; nothing was updated.

    ``index`` is the position of the offending array in the ``params`` list given to ``step``; ``cause``
    what was not finite: "parameters" (already, before the step: changed in place), "gradient" (the loss or
    the backward pass was not finite), "state" (the optimizer's own, changed in place) or "update" (finite
    inputs whose update overflows: the learning rate is too large).
    """

    _TEXT = {"parameters": "parameter array {i} already holds NaN or infinite values (changed in place?)",
             "gradient": "the gradient of parameter array {i} holds NaN or infinite values (the loss or the "
                         "backward pass was not finite)",
             "state": "the optimizer's state for parameter array {i} holds NaN or infinite values (changed in "
                      "place?)",
             "update": "the update of parameter array {i} would overflow to NaN/Inf"}

    def __init__(self, index, cause="update"):
        self.index, self.cause = index, cause
        text = self._TEXT.get(cause, self._TEXT["update"]).format(i=index)
        advice = " Try a smaller learning rate." if cause not in ("parameters", "gradient", "state") else ""
        super().__init__(f"{text}; no parameter was changed.{advice}")


class GradientHealthWarning(RuntimeWarning):
    """A layer's gradient norm is vanishing (< 1e-7) or exploding (> 1e3) relative to its weights' norm.

    Issued at most once per kind per ``fit``; the per-epoch norms are in ``history["grad_norm"]``.
    """


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT), SIGTERM or SIGHUP stopped ``fit`` cleanly; a KeyboardInterrupt, so ``except
    KeyboardInterrupt`` works.

    Attributes: ``epoch`` (the epoch it stopped in, from 1), ``batch`` (batches of that epoch completed),
    ``batches`` (batches per epoch), ``history`` (the completed epochs), ``checkpoint`` (the path of the
    checkpoint written on the way out, or None) and ``signal_name`` ("SIGINT", "SIGTERM" or "SIGHUP"). The
    network keeps the weights of the last completed batch.
    """

    def __init__(self, epoch, batch, batches, history=None, checkpoint=None, signal_name="SIGINT"):
        self.epoch, self.batch, self.batches = epoch, batch, batches
        self.signal_name = signal_name or "SIGINT"
        self.history, self.checkpoint = history, checkpoint
        where = (f"after epoch {epoch}" if batch >= batches else f"at the start of epoch {epoch}" if batch == 0
                 else f"in epoch {epoch} after batch {batch} of {batches}")
        saved = f"; checkpoint saved to {checkpoint}" if checkpoint is not None else ""
        super().__init__(f"training interrupted {where}{saved}")
