"""The engines of fastnn's one training loop (fastnn.training), behind one protocol.

An *engine* runs one epoch over a given sample order and reports its mean loss and correct predictions::

    engine = make(net, X, y, batch_size, weights)      # once per fit; X, y, weights checked by the loop
    mean_loss, correct = engine(order, epoch, progress)

* ``order`` (n,) int64, a permutation of range(n) (the rows of X in the order this epoch visits them);
* ``epoch`` the 1-based epoch number (for error messages);
* ``progress`` a ``Progress``: where to resume inside the epoch (``batches`` done, ``loss_sum``,
  ``correct``), the epoch's Dropout key, the Plan the loop built for this epoch (``plan``), and
  ``check()``, which raises ``Stop`` between batches when a signal asked training to stop.
  An engine calls ``progress.done(batches, loss_sum, correct)`` after each batch it completes.

An engine raises ``fastnn.errors.TrainingDivergedError`` at a non-finite loss, gradient or update, with
the network and optimizer state of the last finite step. An engine class whose ``checks_input`` is true
checks the rows of X it reads (the fused kernels, as they gather them) and raises
``fastnn._checks.NonFiniteInput(row)`` for one holding NaN/Inf — possibly after some steps: the loop then
puts the network back and raises the boundary's message; for such an engine the loop makes no pass over X. The engines:

* ``engines.fused.EpochRunner``       the whole-epoch Numba kernel (the default where it applies);
* ``engines.per_layer.LayerEpoch``     any network, layer by layer from Python (custom layers);
* ``engines.distributed.DistributedEpoch``  synchronous data-parallel steps over MPI ranks.

A *run strategy* says where the loop runs (``engines.local.LocalRun``: one process;
``engines.distributed.MPIRun``: K ranks kept in step) and makes the engine; see fastnn.training.
``engines.shards`` holds the data side of MPI runs (row ownership, memory-mapped inputs).
"""

__all__ = ["Progress", "Stop"]


class Stop(Exception):
    """Raised inside an engine, between batches, when a signal asked training to stop."""


class Progress:
    """An epoch's position and context, shared by the loop and its engine.

    ``flag`` a fastnn.signals.StopFlag; ``partial`` None or {"batches", "loss_sum", "correct"} (a mid-epoch
    resume); ``agree(bool) -> bool`` the run strategy's "any rank" collective; ``dropout_key`` the epoch's
    Dropout key (layers.dropout_epoch_key); ``plan`` the network's Plan for this epoch (fastnn.plan).
    """

    def __init__(self, flag, partial=None, agree=bool, dropout_key=0, plan=None):
        self.flag, self.agree, self.dropout_key, self.plan = flag, agree, dropout_key, plan
        self.batches, self.loss_sum, self.correct = 0, 0.0, 0
        if partial is not None:
            self.batches, self.loss_sum, self.correct = partial["batches"], partial["loss_sum"], partial["correct"]

    def check(self):
        """Raise Stop when a signal asked training to stop (on any rank: ``agree`` is a collective there)."""
        if self.agree(self.flag.requested):
            raise Stop

    def done(self, batches, loss_sum, correct):
        self.batches, self.loss_sum, self.correct = batches, loss_sum, correct

    def state(self):
        """The mid-epoch position as a checkpoint stores it."""
        return {"batches": self.batches, "loss_sum": float(self.loss_sum), "correct": int(self.correct)}
