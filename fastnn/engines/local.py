"""Where the training loop runs when it is not distributed: one process (``LocalRun``).

MPIRun (engines/distributed.py) is the other place: the same methods, with the collectives that keep K ranks
in step. This module imports no MPI, so that a plain ``import fastnn`` never initialises it.
"""
import contextlib
import math
import os

from .per_layer import LayerEpoch

#: seconds a rank waits at a distributed fit's start-up for every rank of the communicator to arrive, before
#: it ends the job (FASTNN_DISTRIBUTED_TIMEOUT overrides it): a rank that called fit without distributed=
#: (or with another communicator), or that failed outside fastnn, never arrives
START_TIMEOUT = 120.0


_warned = set()


def start_timeout():
    """The start-up wait in seconds: FASTNN_DISTRIBUTED_TIMEOUT, else START_TIMEOUT; 0 (also for <= 0 and
    ``inf``): wait forever. A value that is no number, or NaN, is ignored with one RuntimeWarning naming it
    (a NaN limit compared false with every elapsed time: the wait never ended, without a word)."""
    text = os.environ.get("FASTNN_DISTRIBUTED_TIMEOUT", "").strip()
    if not text:
        return START_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if math.isnan(value):
        if text not in _warned:
            _warned.add(text)
            from .._checks import warn_at_caller
            warn_at_caller(f"FASTNN_DISTRIBUTED_TIMEOUT must be a number of seconds (0 or less: wait forever), got "
                           f"{text!r:.60}: ignored (the start-up wait is {START_TIMEOUT:g} s)", RuntimeWarning)
        return START_TIMEOUT
    return value if 0 < value < math.inf else 0.0


class LocalRun:
    """Where the loop runs: one process."""

    is_root = True

    def guard(self):
        return contextlib.nullcontext()

    def prepare(self, trainer, X, y, sample_weight):
        return trainer.checked_data(X, y, sample_weight)

    def agree_options(self, trainer):
        return None

    def seed(self, seed):
        return seed

    def batch_size(self, batch_size, n):
        return min(batch_size, n)

    def use_fused(self, trainer):
        return trainer.wants_fused()

    def path_name(self, use_fused):
        return "fused" if use_fused else "per-layer"

    def fingerprint(self, X, y):
        from ..checkpoint import fingerprint
        return fingerprint(X, y)

    def on_root(self, work, where=None):
        return work()

    def call(self, work, where):
        """Run user-facing work (a callback, a schedule) on this process: its result."""
        return work()

    def agree_epoch(self, work, state, epoch):
        """The loop's per-epoch start (``work()``: its result); one process has nothing to compare."""
        return work()

    def same_everywhere(self, array, what):
        """Every process of the fit holds the same ``array`` (one process: it does)."""

    def start(self, net):
        pass

    def share_stream(self, rng):
        pass

    @staticmethod
    def engine_class(use_fused):
        """The class of the engine ``engine`` makes (its ``checks_input``: whether its kernel checks X's rows
        as it gathers them, so that the loop makes no pass over X)."""
        if use_fused:
            from .fused import EpochRunner
            return EpochRunner
        return LayerEpoch

    def engine(self, trainer, X, y, batch_size, weights, use_fused):
        if use_fused:
            return self.engine_class(True)(trainer.net, X, y, batch_size, sample_weights=weights)
        return LayerEpoch(trainer.net, X, y, batch_size, weights)

    def evaluate(self, net, X, y):
        return net.evaluate(X, y)

    def any(self, flag):
        return bool(flag)
