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


class NonFiniteUpdateError(ArithmeticError):
    """An optimizer step would have made a parameter NaN or infinite; nothing was updated.

    ``index`` is the position of the offending array in the ``params`` list given to ``step``.
    """

    def __init__(self, index):
        self.index = index
        super().__init__(f"the update of parameter array {index} would overflow to NaN/Inf; no parameter "
                         f"was changed. Try a smaller learning rate.")
