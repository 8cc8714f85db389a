"""Data-parallel training across processes and machines on MPI (mpi4py): ``DistributedTrainer``.

Synchronous data-parallel SGD, launched by an MPI launcher (``mpiexec -n K python train.py`` on one machine,
``srun`` under Slurm)::

    import fastnn as fnn
    from fastnn.distributed import DistributedTrainer
    net = fnn.NeuralNetwork([...], optimizer=fnn.SGD(lr=0.01), seed=0)
    trainer = DistributedTrainer(net, batch_size=128, epochs=10)
    history = trainer.fit("train.npz")          # every rank runs this
    if trainer.rank == 0:
        net.save("model.safetensors")

How a step runs, on K ranks with local batch ``b`` (global batch K·b):

* Every rank draws the epoch's permutation of all N samples from the same seeded generator (the one
  ``Trainer`` uses), so the order is the order of a single process with batch K·b and the same seed.
* Global batch s is ``order[s*K*b : (s+1)*K*b]``; rank r takes the r-th of K consecutive pieces (b each; the
  last, smaller global batch is split as evenly as possible, so a rank may get fewer rows or none).
* The fused step (``FusedDistributedEpoch``; every network the fused kernel expresses, unless
  ``fused=False``): each rank computes the gradient of its rows with the fused kernel, the loss divided by
  the GLOBAL batch's rows (or, with sample or class weights, its weight sum), so that ONE in-place
  ``Allreduce(SUM)`` of the flat gradient buffer — the only collective of the step — gives every rank the
  gradient of the global batch; every rank then applies the same checked update (kernels/epoch.py's
  update kernel: any optimizer, weight decay, scikit-learn's penalty). One kernel call per step does the
  update of the previous batch and the gradient of the next (kernels/epoch_distributed.py). Dropout masks
  are keyed by each row's position in the global batch. Loss and correct counts are summed on each rank
  and reduced once per epoch. A rank that cannot go on (a non-finite loss, an exception, a stop asked by
  a signal) poisons its gradient with NaN: every rank's update then refuses the sum alike, and only then
  the ranks gather why (see Failures). Plain SGD takes the explicit update p -= lr·g (one process updates
  inside its GEMMs): equal to rounding.
* The per-layer step (``DistributedEpoch``: custom layers, or ``fused=False``): each rank runs forward,
  loss and backward layer by layer and weights its gradient by its share of the global batch (rows, or
  weight sum); a status Allreduce (failure flag, loss, correct count), the gradient Allreduce, a stop
  check, and ``net.step()`` on every rank.
* Either way the weights stay identical on all ranks and equal (to float rounding) those of one process
  with batch K·b: tested in float64 to 1e-10 under ``mpiexec -n 2`` for every optimizer, Dropout, sample
  and class weights (tests/test_distributed_fused.py).
* Parameters (and optimizer state, if any) are broadcast from rank 0 at the start, and so is its shuffling
  stream (the generator of the orders and Dropout keys, which a network fit before or loaded continues), so
  the ranks need not build identical networks: the fit is that of one process with rank 0's network.

Ranks × threads: each rank runs its step on the threads ``fastnn.set_num_threads`` gives it (the CLI's
``--threads``, FASTNN_NUM_THREADS; the CLI's default is the node's cores divided by the ranks on it:
``threads_per_rank``). In the fused step those threads are BLAS's, inside the GEMMs of the rank's rows (the
batch-parallel split of a mini-batch over fastnn's own workers runs whole epochs on one process, so it is
not used per step). On one node of C cores: C ranks × 1 thread where the step is short or threads scale
poorly (every pass of the step then runs on C cores, for one allreduce of tens of µs), 1 rank × C threads
where the GEMMs are big; across nodes, one rank per node with its cores as threads (every rank lengthens
the allreduce ring). ``python -m benchmarks.mpi_model --ranks-vs-threads`` measures the two against each
other; README's "Scaling out (MPI)" has this machine's figures and benchmarks/README.md the cost model.
Per step the fused engine returns to Python once: one kernel call (its records held in one object made once
an epoch, kernels/epoch_distributed.py: ~0.7 µs to unbox, where the ~40 arrays of the records took ~7 µs),
the signal guard and weights lock (~1.5-2.5 µs), the mpi4py call. The loop alone (the kernel replaced by one
that returns at once, ``mpiexec -n 1``, CPU time, 100-100-5 at batch 200): 3.9 µs a step, against 12.2 µs
before the records were held (issue 19). An allreduce called from inside the kernel (bound by symbol, a
whole epoch per call) would save those ~4 µs and is not built: next to a step of ~95 µs (100 rows'
gradient ~59, the update every rank makes ~17, the 42 KB allreduce ~19: minima on 2 ranks here) it is not
what stands between tabular and 1.6× one process.

Data: ``fit(X, y)`` takes the full arrays on every rank, or paths: an ``.npy`` file (X; y another ``.npy`` or
an array) or an ``.npz`` file with "X" and "y". Files are memory-mapped (an uncompressed ``.npz`` member
too), so a rank reads only the rows of its own local batches, and each rank validates only its own shard
(rows ``shard_range(N, rank, K)``) at the start.

Settings: every rank must call ``fit`` with the same settings. At the start ONE allgather compares each
rank's epochs, batch size, seed (or None on all ranks: then rank 0 draws it), shuffle, checkpoint given or
not (and its checkpoint_every), validation data given or not (its shapes, dtypes and a hash of its contents),
``fused`` and the engine it chose, sample_weight (a fingerprint), class_weight, validation_split, schedule (a
function schedule by its name), callbacks, optimizer type and hyperparameters, architecture and loss, network
dtype, data shapes and dtypes (also the dtypes X, y and the validation data were given in, before their
conversion to the network's) and contents (arrays: a hash of every row; files: of 1024 spread rows), and
fastnn version, together with the outcome of each rank's data checks and of the fit's own checks of its
settings; any difference raises ValueError on every rank, naming each setting that differs and which ranks
have which value — for the architecture, the optimizer and the schedule also the first place where they
differ (``layers[5][0]: rank 0 "ReLU", rank 1 "TanH"``) — (a difference would otherwise hang a collective,
crash inside MPI, or train on mismatched permutations). A ``distributed=`` value refused on one rank is agreed on over COMM_WORLD when the Trainer is
built. A rank that never arrives at the start (it called fit without ``distributed=``, or with another
communicator; it stopped outside fastnn) cannot be learnt of through a collective: the others wait
``FASTNN_DISTRIBUTED_TIMEOUT`` seconds (default 120; the wait polls a non-blocking barrier), then one line on
stderr and MPI_Abort end the job.

Every epoch: ONE allgather (``MPIRun.agree_epoch``), after the previous epoch's callbacks, carries each rank's
outcome of the loop's per-epoch work (taking in what callbacks changed, the schedule's rate and its check, the
order) and what every rank must share from then on: the rate, the optimizer's other hyperparameters and step
count, a checksum of the weights and the optimizer state, the network's structure, the shuffling stream's
position — and once more after the last epoch's callbacks and after on_train_end. A failure on any rank
stops every rank with the same DistributedError; a difference (a callback or schedule that changed the rate,
the momentum, Adam's betas, the weight decay, a weight or the loss on some ranks only) with the same
ValueError naming it and the ranks: never different weights on different ranks, silently.

Failures: every step tells all ranks whether any rank failed (an exception in gathering, forward or
backward; user code's KeyboardInterrupt and SystemExit too) — the fused step through the poisoned gradient, the per-layer step through its status Allreduce —,
so all ranks stop together with ``DistributedError`` naming the failed rank and its error; a stop asked on
one rank (Ctrl-C, SIGTERM: held from the start of a distributed fit, its set-up included) stops every rank
before the same batch; a bad shard stops all ranks with
ValueError before training; a non-finite loss or update raises ``TrainingDivergedError`` on every rank at
the same epoch and batch. Rank 0 alone writes checkpoints (fastnn.checkpoint: atomic, so the last one stays
valid), the progress bar and log lines; a failed write is agreed on like any other failure. An exception
that escapes outside these agreed points (a bug) calls ``comm.Abort`` so that no rank waits forever. A rank
killed outright (SIGKILL, lost node) is the launcher's to handle: mpiexec and srun end the whole job.
"""
import json
import math
import os
import sys

import numpy as np

INSTALL_HINT = "distributed training needs MPI: pip install 'fastnn[mpi]'"

try:
    from mpi4py import MPI
    MPI_ERROR = None
except ImportError as _exc:  # pragma: no cover - exercised only where mpi4py is missing
    MPI, MPI_ERROR = None, f"{INSTALL_HINT} (could not import mpi4py: {_exc})"

from .. import _checks, network  # noqa: E402
from ..errors import TrainingDivergedError  # noqa: E402
from ..kernels import batch as batch_kernels  # noqa: E402
from ..layers import has_keyed_layers  # noqa: E402
from ..network import count_correct  # noqa: E402
from .per_layer import step  # noqa: E402
from .shards import (check_mapped, open_array, resolve_data, sample_fingerprint, shard_range,  # noqa: E402,F401
                     split)

__all__ = ["DistributedTrainer", "DistributedError", "shard_range", "open_array", "threads_per_rank", "world",
           "MPIRun", "DistributedEpoch", "FusedDistributedEpoch"]

class DistributedError(RuntimeError):
    """A rank failed during distributed training; raised on every rank.

    Attributes: ``rank`` (the first failed rank), ``epoch`` and ``batch`` (from 1; None outside training
    steps) and ``errors`` (rank -> "Type: message" for every failed rank).
    """

    def __init__(self, errors, epoch=None, batch=None, where=None):
        self.errors, self.epoch, self.batch = errors, epoch, batch
        self.rank = min(errors)
        at = where or (f"epoch {epoch}, batch {batch}" if epoch is not None else "start-up")
        detail = describe_errors(errors)
        super().__init__(f"distributed training stopped on every rank at {at}: {detail}")


def describe_errors(errors, size=None):
    """'rank 1: ValueError: ...; rank 2: ...' for ``errors`` (rank -> text); ranks with the same text are
    named together ('ranks 0, 1: ...', or 'every rank: ...' when all ``size`` ranks failed alike)."""
    by_text = {}
    for r, text in sorted(errors.items()):
        by_text.setdefault(text, []).append(r)
    parts = []
    for text, ranks in by_text.items():
        who = ("every rank" if size is not None and len(ranks) == size and size > 1 else
               f"rank{'s' if len(ranks) > 1 else ''} {', '.join(map(str, ranks))}")
        parts.append(f"{who}: {text}")
    return "; ".join(parts)


def agreed_kind(errors):
    """The class of the one error every rank raises for the ranks' ``errors`` ({rank: 'Type: message'}), as
    one process would raise it: TypeError when each is one (data of a wrong type: strings, objects), the
    TypeError-and-ValueError of a count that is no integer (_checks.NotAnIntegerError) when each is that or a
    TypeError, else ValueError."""
    names = {text.split(":", 1)[0] for text in errors.values()}
    if names == {"TypeError"}:
        return TypeError
    return _checks.NotAnIntegerError if names <= {"TypeError", "NotAnIntegerError"} else ValueError


def _error_text(exc):
    """'Type: message' of an exception as the ranks tell each other ('KeyboardInterrupt' when it says nothing)."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _differences(states):
    """'name (rank 0: a; rank 1: b)' for each entry of the ranks' ``states`` (dicts name -> value) that
    differs between ranks."""
    differ = []
    for name in states[0]:
        by_value = {}
        for r, s in enumerate(states):
            by_value.setdefault(s.get(name), []).append(r)
        if len(by_value) > 1:
            parts = []
            for value, ranks in by_value.items():
                shown = value if isinstance(value, str) else repr(value)
                shown = shown if len(shown) <= 300 else shown[:300] + "..."
                parts.append(f"{'rank' if len(ranks) == 1 else 'ranks'} {', '.join(map(str, ranks))}: {shown}")
            differ.append(f"{name} ({'; '.join(parts)})")
    return differ


from .local import START_TIMEOUT, start_timeout  # noqa: E402,F401 - (read before MPI starts too: fastnn.cli)


#: seconds between a rank's one line on stderr and its MPI_Abort: mpiexec forwards the line before Abort tears
#: its I/O down (without the wait the line was lost in ~1 of 3 loaded CI runs: the start-up wait's, and the
#: guard's in a full run of the distributed tests)
ABORT_GRACE = 0.5


def wait_for_every_rank(comm, what):
    """Collective: return once every rank of ``comm`` has reached this point (a non-blocking barrier, polled);
    after ``start_timeout()`` seconds without them, one line on stderr naming ``what`` and the likely causes,
    then MPI_Abort ends every rank (a blocking collective would wait forever)."""
    import time
    if comm.Get_size() == 1:
        return
    request = comm.Ibarrier()
    limit = start_timeout()
    began = time.monotonic()
    pause = 1e-5
    while not request.Test():
        time.sleep(pause)
        pause = min(pause * 2, 0.02)
        if 0 < limit <= time.monotonic() - began:
            sys.stderr.write(
                f"fastnn.distributed: rank {comm.Get_rank()}: waited {limit:g} s at {what} for the other ranks "
                f"of the communicator ({comm.Get_size()} ranks); a rank that called fit without distributed=True "
                f"(or with another communicator), or that stopped outside fastnn, never arrives; aborting every "
                f"rank (FASTNN_DISTRIBUTED_TIMEOUT sets the wait)\n")
            sys.stderr.flush()
            time.sleep(ABORT_GRACE)
            comm.Abort(1)
            os._exit(1)


def agreement_comm(value):
    """The communicator a Trainer built with an invalid ``distributed=`` value agrees on, so that a value one
    rank refuses stops every rank: COMM_WORLD when mpi4py loads and the world has more than one rank, else
    None (one process: the error is raised alone)."""
    if MPI is None:
        return None
    return MPI.COMM_WORLD if MPI.COMM_WORLD.Get_size() > 1 else None


def _require_mpi():
    if MPI is None:
        raise ImportError(MPI_ERROR)


def world(comm=None):
    """(rank, size) of ``comm`` (default MPI.COMM_WORLD)."""
    _require_mpi()
    comm = MPI.COMM_WORLD if comm is None else comm
    return comm.Get_rank(), comm.Get_size()


def threads_per_rank(comm=None):
    """Cores of this machine divided by the ranks running on it (at least 1): the thread count that keeps
    K ranks on one machine from oversubscribing its cores (ranks on other machines don't count)."""
    from ..threads import cpu_count
    _require_mpi()
    comm = MPI.COMM_WORLD if comm is None else comm
    local = comm.Split_type(MPI.COMM_TYPE_SHARED)
    try:
        return max(1, cpu_count() // local.Get_size())
    finally:
        local.Free()


# -- the trainer: a client of fastnn.training's loop ---------------------------------------------------------
class DistributedTrainer:
    """Fits ``net`` with synchronous data-parallel SGD over the ranks of ``comm`` (default COMM_WORLD): the
    one training loop of fastnn.training (``Trainer(..., distributed=comm)``), every argument the same.

    ``batch_size`` is the LOCAL batch b of each rank: the global batch is K·b on K ranks. ``fit(X, y,
    sample_weight=None)`` also takes paths (see the module docstring; class_weight and validation_split
    need arrays) and returns the history on every rank. The fused step where the network allows it
    (``fused="auto"``), else the per-layer one.
    """

    def __init__(self, net, comm=None, batch_size=64, epochs=10, shuffle=True, seed=0, verbose=1,
                 validation_data=None, checkpoint=None, checkpoint_every=None, **settings):
        _require_mpi()
        Trainer = network.service("Trainer")      # fastnn.training's, registered there (imports point one way)
        self.comm = MPI.COMM_WORLD if comm is None else comm
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self.trainer = Trainer(net, batch_size=batch_size, epochs=epochs, shuffle=shuffle, seed=seed,
                               verbose=verbose, validation_data=validation_data, checkpoint=checkpoint,
                               checkpoint_every=checkpoint_every, distributed=self.comm, **settings)
        self.net = net

    @property
    def is_root(self):
        return self.rank == 0

    def fit(self, X, y=None, sample_weight=None):
        """Train on every rank (a collective call); returns the history. See the module docstring."""
        return self.trainer.fit(X, y, sample_weight=sample_weight)


class MPIRun:
    """Where fastnn.training's loop runs when ``distributed`` is set: K MPI ranks kept in step.

    The loop calls the same methods as on one process (engines.local.LocalRun); here each is the collective that
    keeps the ranks' data, settings, checkpoints, stops and errors in agreement (see the module docstring).
    """

    def __init__(self, comm=None):
        _require_mpi()
        self.comm = MPI.COMM_WORLD if comm is None else comm
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self.is_root = self.rank == 0
        self.mapped = False
        self.fused = None       # the engine prepare() agreed on: True for the fused step

    # -- agreement: every rank learns whether any rank failed ---------------------------------------------
    agreed = None       # the exception this rank raised at an agreed point (every rank raises it)

    def call(self, work, where):
        """Run user-facing work (a callback hook, a schedule, the epoch's checks) on every rank: its result;
        an exception on any rank stops every rank with the same DistributedError."""
        error, result = None, None
        try:
            result = work()
        except BaseException as exc:  # noqa: BLE001 - every rank must learn of it (KeyboardInterrupt and
            error = exc               # SystemExit raised by user code included: alone, this rank would leave)
        self.agree(error, where=where)
        return result

    def agree_epoch(self, work, state, epoch):
        """The ONE per-epoch agreement (one small allgather), after the callbacks of the last epoch: run
        ``work()`` (what the loop does before an epoch: take in what callbacks changed, the schedule's rate,
        the rate's check, the order), then ``state()`` (name -> comparable value: the rate, the optimizer's
        hyperparameters, a checksum of the weights and optimizer state, the network's structure); an
        exception on any rank stops every rank with the same DistributedError, and a state that differs
        between ranks (a callback or schedule that changed something on some ranks only) with the same
        ValueError naming it and the ranks. Returns ``work()``'s result. ``epoch``: the epoch about to start,
        or text naming another point (the loop agrees once more after the last epoch's callbacks, and after
        on_train_end)."""
        error, result, mine = None, None, None
        at = f"the start of epoch {epoch}" if isinstance(epoch, (int, np.integer)) else epoch
        try:
            result = work()
            mine = state()
        except BaseException as exc:  # noqa: BLE001 - every rank must learn of it
            error = exc
        gathered = self.comm.allgather((None if error is None else _error_text(error), mine))
        errors = {r: t for r, (t, _) in enumerate(gathered) if t is not None}
        if errors:
            self.agreed = DistributedError(errors, where=at)
            raise self.agreed from error
        differ = _differences([s for _, s in gathered])
        if differ:
            self.agreed = ValueError(
                f"distributed training stopped on every rank at {at}: the ranks differ "
                f"in " + ", and in ".join(differ) + "; a callback or lr_schedule must change the same thing on "
                "every rank (each rank's update must stay the same)")
            raise self.agreed
        return result

    def agree(self, error, exc_type=None, epoch=None, batch=None, where=None):
        """Collective: raise on every rank if ``error`` (an exception or None) is set on any rank."""
        flag = np.array([0.0 if error is None else 1.0])
        self.comm.Allreduce(MPI.IN_PLACE, flag, op=MPI.SUM)
        if flag[0]:
            self.raise_all(error, exc_type, epoch, batch, where)

    def raise_all(self, error, exc_type=None, epoch=None, batch=None, where=None):
        text = None if error is None else _error_text(error)
        gathered = self.comm.allgather(text)
        errors = {r: t for r, t in enumerate(gathered) if t is not None}
        if exc_type is not None:        # input errors: the same type on every rank, naming the rank
            detail = describe_errors(errors, size=self.size)
            self.agreed = exc_type(f"distributed training cannot start: {detail}")
        else:
            self.agreed = DistributedError(errors, epoch, batch, where)
        raise self.agreed from error

    def same_everywhere(self, array, what):
        """Collective: the same ValueError on every rank unless every rank holds the same ``array`` (``what``
        names it): a user's sample_order that differs between ranks would give each rank other rows of the
        global batch, some samples twice and others never."""
        import hashlib
        digest = hashlib.blake2b(np.ascontiguousarray(array).tobytes(), digest_size=8).hexdigest()
        gathered = self.comm.allgather(digest)
        if len(set(gathered)) > 1:
            groups = {}
            for r, d in enumerate(gathered):
                groups.setdefault(d, []).append(str(r))
            held = "; ".join(f"{'ranks' if len(ranks) > 1 else 'rank'} {', '.join(ranks)}: order {chr(65 + i)}"
                             for i, ranks in enumerate(groups.values()))
            self.agreed = ValueError(f"distributed training stopped: the ranks' {what} differ ({held}); every "
                                     "rank must compute the same order (each takes its rows of every global batch "
                                     "from it)")
            raise self.agreed

    def any(self, flag):
        """Collective: True on every rank when ``flag`` is set on any rank (Ctrl-C / SIGTERM on one rank)."""
        total = np.array([1.0 if flag else 0.0])
        self.comm.Allreduce(MPI.IN_PLACE, total, op=MPI.SUM)
        return bool(total[0])

    def guard(self):
        return _Guard(self)

    # -- the loop's steps -----------------------------------------------------------------------------------
    def prepare(self, trainer, X, y, sample_weight):
        """Resolve and validate the data (each rank its shard of a memory map), then ONE collective: every
        rank's outcome and settings, so that a failure or a disagreement stops every rank with the same error.
        The engine (fused or per-layer) is decided here too, on every rank alike."""
        net = trainer.net
        error, val, mine, weights = None, None, None, None
        try:
            trainer.check_settings()        # (settings assigned since the trainer was built, on one rank perhaps)
            given = _given_types(X, y, trainer.validation_data)     # before conversion to the network's dtype
            X, y, self.mapped = resolve_data(X, y)
            if self.mapped:
                if trainer.class_weight is not None or trainer.validation_split:
                    raise ValueError("class_weight and validation_split need X and y as arrays in a distributed "
                                     "fit (the data were given as files); give sample_weight=, or load the arrays")
                X = check_mapped(net, X, self.rank, self.size)
                y = net.check_target(np.asarray(y), X.shape[0], "y")
                if sample_weight is not None:
                    weights = _checks.sample_weights(sample_weight, "sample_weight", X.shape[0], net.dtype)
                    if not weights.any():
                        raise ValueError("sample_weight is zero for every training sample")
                val = None if trainer.validation_data is None else trainer.checked_validation()
            else:
                X, y, weights, val = trainer.checked_data(X, y, sample_weight)
            self.fused = _engine_choice(trainer)
            mine = _settings(trainer, X, y, val, sample_weight, self.fused, self.mapped)
            mine["data as given"], mine["validation_data as given"] = given
        except BaseException as exc:  # noqa: BLE001 - any failure (a corrupt file: zlib.error) is agreed on
            error = exc
        wait_for_every_rank(self.comm, "the start of fit")
        gathered = self.comm.allgather((None if error is None else _error_text(error), mine))
        errors = {r: text for r, (text, _) in enumerate(gathered) if text is not None}
        if errors:
            detail = describe_errors(errors, size=self.size)
            self.agreed = agreed_kind(errors)(f"distributed training cannot start: {detail}")
            raise self.agreed from error
        try:
            _check_agreement([s for _, s in gathered])
        except ValueError as exc:
            self.agreed = exc
            raise
        return X, y, weights, val

    def seed(self, seed):
        """Every rank gave the same seed (agreed); None on every rank: rank 0's entropy decides."""
        if seed is None:
            seed = int(self.comm.bcast(int(np.random.SeedSequence().entropy % (1 << 63)), root=0))
        return seed

    def batch_size(self, batch_size, n):
        return batch_size * self.size

    def use_fused(self, trainer):
        """The engine every rank agreed on in ``prepare``; asked again (a callback changed the layers or the
        loss), decided again — alike on every rank, whose networks are equal."""
        fused, self.fused = self.fused, None
        return trainer.wants_fused() if fused is None else fused

    def path_name(self, use_fused):
        return "distributed fused" if use_fused else "distributed"

    def fingerprint(self, X, y):
        from ..checkpoint import fingerprint
        return sample_fingerprint(X, y) if self.mapped else fingerprint(X, y)

    def on_root(self, work, where=None):
        """Run ``work`` on rank 0 (reading or writing a checkpoint); every rank gets its result or its error."""
        error, result = None, None
        if self.is_root:
            try:
                result = work()
            except BaseException as exc:  # noqa: BLE001 - rank 0 alone runs it: every rank must learn of it
                error = exc
        if where is None:
            self.agree(error, exc_type=ValueError)
        else:
            self.agree(error, where=where)
        return self.comm.bcast(result, root=0)

    def start(self, net):
        """Rank 0's parameters (one Bcast of the flat buffer) and optimizer state to every rank."""
        comm = self.comm
        plan = net.plan()
        for p in plan.opt_params:
            comm.Bcast(p, root=0)
        opt = net.optimizer
        has_state, steps = comm.bcast((opt.state is not None, opt.steps), root=0)
        opt.steps = steps
        if has_state:
            opt.ensure_state(list(plan.opt_params))
            for slots in opt.state:
                for s in slots:
                    comm.Bcast(s, root=0)
        elif opt.state is not None:
            opt.reset()
            opt.steps = steps

    def share_stream(self, rng):
        """Rank 0's shuffling stream (``rng``: the loop's generator of sample orders and Dropout keys) to every
        rank, after ``start``: a rank whose network was fit before, or loaded, would continue its own stream
        otherwise, and the global batches would mix the ranks' permutations. The fit is then that of one
        process with rank 0's network; the per-epoch agreement compares the streams too."""
        rng.bit_generator.state = self.comm.bcast(rng.bit_generator.state if self.is_root else None, root=0)

    def engine(self, trainer, X, y, batch_size, weights, use_fused):
        """The engine, built on every rank; a failure on any rank (out of memory) stops every rank alike."""
        if use_fused:
            return self.call(lambda: FusedDistributedEpoch(self, trainer.net, X, y, batch_size, weights),
                             "the engine's set-up")
        return self.call(lambda: DistributedEpoch(self, trainer.net, X, y, trainer.batch_size, batch_size, weights),
                         "the engine's set-up")

    def evaluate(self, net, X_val, y_val):
        """{"loss", "accuracy"} over all of the validation set: each rank evaluates its share."""
        lo, hi = shard_range(len(X_val), self.rank, self.size)
        part = np.zeros(2)
        error = None
        try:
            if hi > lo:
                s = net.evaluate(X_val[lo:hi], y_val[lo:hi])
                part[:] = s["loss"] * (hi - lo), s.get("accuracy", 0.0) * (hi - lo)
        except BaseException as exc:  # noqa: BLE001 - agreed on below
            error = exc
        self.agree(error, where="validation")
        self.comm.Allreduce(MPI.IN_PLACE, part, op=MPI.SUM)
        scores = {"loss": part[0] / len(X_val)}
        if net.classification:
            scores["accuracy"] = part[1] / len(X_val)
        return scores


def agree_start(comm, error):
    """Collective, when a Trainer is built for ``comm``: ``error`` (this rank's exception or None) raised on
    every rank as one ValueError naming each failed rank, so that no rank goes on to wait for another."""
    comm = MPI.COMM_WORLD if comm is True or isinstance(comm, (bool, np.bool_)) else comm
    wait_for_every_rank(comm, "the trainer's construction")
    texts = comm.allgather(None if error is None else _error_text(error))
    errors = {r: t for r, t in enumerate(texts) if t is not None}
    if errors:
        detail = describe_errors(errors, size=len(texts))
        raise agreed_kind(errors)(f"distributed training cannot start: {detail}") from error


def _engine_choice(trainer):
    """True when this fit runs the fused step (the network is one the fused kernel expresses and ``fused``
    is not False); ValueError for fused=True on a network it cannot express (raised in ``prepare``, so
    that every rank agrees on it)."""
    return trainer.wants_fused()


def _settings(trainer, X, y, val, sample_weight, fused, mapped=True):
    """This rank's settings that every rank must share: name -> a comparable (hashable) value."""
    from .. import __version__
    from ..checkpoint import fingerprint
    from ..schedules import to_config
    net = trainer.net
    config = json.loads(_arch(net))
    optimizer = config.pop("optimizer")
    return {
        "fastnn version": __version__,
        "epochs": trainer.epochs,
        "batch_size": trainer.batch_size,
        "seed": trainer.seed,
        "shuffle": trainer.shuffle,
        "checkpoint": (f"given, checkpoint_every={trainer.checkpoint_every}" if trainer.checkpoint is not None
                       else "not given"),
        "validation_data": ("not given" if val is None else
                            f"X {val[0].shape} {val[0].dtype}, y {val[1].shape} {val[1].dtype}"),
        # each rank evaluates its share of the validation rows: other contents would mix two sets' scores
        "validation_data contents": "not given" if val is None else fingerprint(val[0], val[1]),
        "fused": repr(trainer.fused),
        "engine": "the fused step" if fused else "per-layer",
        "validation_split": repr(trainer.validation_split),
        "class_weight": _class_weight_text(trainer.class_weight),
        "sample_weight": ("not given" if sample_weight is None else
                          f"given, {fingerprint(np.ascontiguousarray(sample_weight, dtype=np.float64))}"),
        "sample_order": "given" if trainer.sample_order is not None else "not given",
        "optimizer": json.dumps(optimizer, sort_keys=True),
        "lr_schedule": _schedule_text(trainer.lr_schedule, to_config),
        "callbacks": ", ".join(f"{type(cb).__name__}{cb.config() if callable(getattr(cb, 'config', None)) else ''}"
                               for cb in trainer.callbacks) or "none",
        "architecture": json.dumps(config, sort_keys=True),
        "network dtype": net.dtype.str,
        "data": f"X {X.shape} {X.dtype}, y {y.shape} {y.dtype}",
        # arrays: every row (each rank has scanned all of X already); files: 1024 spread rows (each rank
        # reads only its shard)
        **({"data contents (1024 spread rows)": sample_fingerprint(X, y)} if mapped else
           {"data contents": fingerprint(X, y)}),
    }


def _class_weight_text(class_weight):
    """class_weight as the ranks compare it: a dict by its items in key order, keys and values as plain
    numbers (equal dicts in another key order, or with NumPy scalars, are the same setting)."""
    if not isinstance(class_weight, dict):
        return repr(class_weight)

    def plain(v):
        v = v.item() if isinstance(v, np.generic) else v
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v
    def order(kv):
        key = kv[0]
        return (repr(type(key)), key if isinstance(key, (int, float, str)) else repr(key))
    items = sorted(((k.item() if isinstance(k, np.generic) else k, plain(v)) for k, v in class_weight.items()),
                   key=order)
    return "{" + ", ".join(f"{k!r}: {v!r}" for k, v in items) + "}"


def _schedule_text(schedule, to_config):
    """The schedule as the ranks compare it: a built-in's config; a function's kind and name (two functions
    of one name pass here: the rates they give are compared every epoch)."""
    config = to_config(schedule)
    if config is None and schedule is not None:       # a FunctionSchedule, a user's Schedule subclass
        fn = getattr(schedule, "fn", schedule)
        name = getattr(fn, "__qualname__", None) or f"a {type(fn).__qualname__} object"   # (no address: it
        config = {"type": type(schedule).__name__, "function": name}                        # differs per rank)
    return json.dumps(config, sort_keys=True, default=repr)


def _given_types(X, y, validation_data):
    """('X <dtype>, y <dtype>', the same of validation_data) as the user gave them, before the fit converts them
    to the network's dtype: float32 data on one rank and float64 on another differ in their contents only
    after the conversion, and the ranks' error names the dtypes instead of two hashes."""
    def kind(a):
        if isinstance(a, (str, os.PathLike)):
            return "a file"
        dtype = getattr(a, "dtype", None)
        return str(dtype) if dtype is not None else type(a).__name__
    val = "not given"
    if isinstance(validation_data, (tuple, list)) and len(validation_data) == 2:
        val = f"X {kind(validation_data[0])}, y {kind(validation_data[1])}"
    return f"X {kind(X)}, y {kind(y)}", val


#: settings that differ whenever one they name differs (then only that one is reported)
_DEPENDS = {"validation_data contents": ("validation_data", "validation_data as given"),
            "data contents": ("data", "data as given"), "data contents (1024 spread rows)": ("data", "data as given"),
            "engine": ("architecture", "fused"), "data as given": ("data",),
            "validation_data as given": ("validation_data",)}
#: settings compared as JSON: a difference is shown where it is (the first place), not as two whole texts
_JSON_SETTINGS = ("architecture", "optimizer", "lr_schedule")


def _first_difference(a, b, where=""):
    """The path ('layers[1]', 'loss', '[1].eps') of the first place where JSON values ``a`` and ``b`` differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            if key not in a or key not in b:
                return f"{where}.{key}".lstrip(".")
            if a[key] != b[key]:
                return _first_difference(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list) and isinstance(b, list):
        for i, (u, v) in enumerate(zip(a, b)):
            if u != v:
                return _first_difference(u, v, f"{where}[{i}]")
        if len(a) != len(b):
            return f"{where}[{min(len(a), len(b))}]".lstrip(".")
    return where.lstrip(".")


def _at(value, path):
    """The part of JSON ``value`` at ``path`` (from _first_difference) as compact JSON; '(none)' where it has
    nothing there."""
    import re
    for key, index in re.findall(r"\.?([^.\[\]]+)|\[(\d+)\]", path):
        try:
            value = value[int(index)] if index else value[key]
        except (KeyError, IndexError, TypeError):
            return "(none)"
    return json.dumps(value, sort_keys=True, separators=(", ", ": "))


def _difference_in_json(name, by_value):
    """(the path where the values of JSON setting ``name`` first differ, {value: its part there}), or
    (None, None) for another setting or values that differ as a whole (null and an object)."""
    if name not in _JSON_SETTINGS or len(by_value) < 2:
        return None, None
    try:
        parsed = {v: json.loads(v) for v in by_value}
    except (TypeError, ValueError):
        return None, None
    first, second = list(parsed.values())[:2]
    path = _first_difference(first, second)
    if not path:
        return None, None
    return path, {v: _at(p, path) for v, p in parsed.items()}


def _check_agreement(settings):
    """Raise ValueError (the same on every rank: it is computed from the same gathered list) naming each
    setting on which the ranks differ and which ranks have which value."""
    differ = []
    for name in settings[0]:
        if any(len({s.get(parent) for s in settings}) > 1 for parent in _DEPENDS.get(name, ())):
            continue            # the contents of data whose shapes (or presence) differ: named once, by those
        by_value = {}
        for r, s in enumerate(settings):
            by_value.setdefault(s.get(name), []).append(r)
        if len(by_value) > 1:
            parts, where = [], []
            path, at = _difference_in_json(name, by_value)
            for value, ranks in by_value.items():
                who = f"{'rank' if len(ranks) == 1 else 'ranks'} {', '.join(map(str, ranks))}"
                shown = repr(value) if not isinstance(value, str) else value
                if len(shown) > 300:
                    shown = shown[:300] + "..."
                parts.append(f"{who}: {shown}")
                if at is not None:
                    shown = at[value] if len(at[value]) <= 200 else at[value][:200] + "..."
                    where.append(f"{who} {shown}")
            if at is not None:       # (a long JSON value is cut above: the place where they differ, always shown)
                parts.append(f"first different at {path}: {', '.join(where)}")
            differ.append(f"{name} ({'; '.join(parts)})")
    if differ:
        raise ValueError("distributed training cannot start: the ranks disagree on " + ", and on ".join(differ)
                         + "; every rank must run the same fit, with the same settings and data (the same "
                         "DistributedTrainer or net.fit(..., distributed=...) call, or the same fastnn train "
                         "--distributed arguments)")


def _arch(net):
    """The architecture as JSON, seeds left out (rank 0's weights are broadcast anyway)."""
    from .. import io
    config = net.config()
    config.pop("seed", None)
    for _, layer in config["layers"]:
        layer.pop("seed", None)
    return json.dumps(config, default=io.json_default, sort_keys=True)


class DistributedEpoch:
    """The per-layer distributed engine (networks the fused step cannot express: custom layers, or
    ``fused=False``): one epoch of synchronous steps — local forward/backward, a status Allreduce, THE
    gradient Allreduce, the same update on every rank. ``(order, epoch, progress)`` -> (mean loss,
    correct), like the loop's other engines (fastnn.engines); a stop asked on any rank stops every rank at
    the same batch."""

    def __init__(self, run, net, X, y, local_batch, global_batch, weights=None):
        self.run, self.net, self.X, self.y, self.weights = run, net, X, y, weights
        self.gb = global_batch
        self.x_buf = np.empty((local_batch, X.shape[1]), net.dtype)
        self.y_buf = np.empty((local_batch,) + y.shape[1:], y.dtype)
        self.w_buf = None if weights is None else np.empty(local_batch, weights.dtype)
        self.gather_y = batch_kernels.gather if y.ndim == 1 else batch_kernels.gather_rows
        self.status = np.zeros(3)           # [failed ranks, sum of local loss * rows, correct]
        self.keyed = has_keyed_layers(net)

    def __call__(self, order, epoch, progress):
        n = len(self.X)
        plan = progress.plan if progress.plan is not None else self.net.plan()
        loss_sum, correct = progress.loss_sum, progress.correct
        for b in range(progress.batches, -(-n // self.gb)):
            progress.check()
            ls, c = self.step(plan, order, b, epoch, progress.dropout_key)
            loss_sum += ls * plan.loss.report_scale
            correct += c
            progress.done(b + 1, loss_sum, correct)
        return loss_sum / n, correct

    def step(self, plan, order, b, epoch, dropout_key=0):
        """Global batch ``b`` (0-based): this rank's rows, the agreed status, the allreduced gradient, the
        update. Returns (sum over ranks of loss * rows, correct)."""
        run, net = self.run, self.net
        comm, rank, size = run.comm, run.rank, run.size
        n = len(self.X)
        g_start = b * self.gb
        g_rows = min(self.gb, n - g_start)
        pieces = split(g_rows, size)
        rows = pieces[rank]
        start = g_start + sum(pieces[:rank])
        status = self.status
        status[:] = 0.0
        error = None
        try:
            if rows:
                xb, yb = self.x_buf[:rows], self.y_buf[:rows]
                batch_kernels.gather_rows(self.X, order, start, xb)
                self.gather_y(self.y, order, start, yb)
                wb, scale = None, rows / g_rows     # local mean -> this rank's share of the global mean
                if self.weights is not None:        # weighted: local weight sum / the global batch's
                    wb = self.w_buf[:rows]
                    batch_kernels.gather(self.weights, order, start, wb)
                    total = float(self.weights[order[g_start:g_start + g_rows]].sum(dtype=np.float64))
                    scale = float(wb.sum(dtype=np.float64)) / total if total > 0 else 0.0
                # Dropout: the masks of these rows of the global batch (as one process draws them)
                out = net.train_forward(xb, (dropout_key, b, start - g_start)) if self.keyed else net.train_forward(xb)
                loss = plan.loss.forward_unchecked(out, yb, wb)
                status[1] = loss * rows if wb is None else loss * scale * g_rows
                if net.classification:
                    status[2] = count_correct(out, yb, plan.loss)
                if math.isfinite(loss):
                    net.train_backward()
                    for g in plan.opt_grads:
                        g *= scale
            else:
                for g in plan.opt_grads:
                    g[...] = 0
        except BaseException as exc:  # noqa: BLE001 - every rank must learn of it
            error = exc
            status[0] = 1.0
        comm.Allreduce(MPI.IN_PLACE, status, op=MPI.SUM)
        if status[0]:
            run.raise_all(error, epoch=epoch, batch=b + 1)
        if not math.isfinite(status[1]):
            raise TrainingDivergedError(epoch, b + 1)
        comm.Allreduce(MPI.IN_PLACE, plan.grads, op=MPI.SUM)   # THE gradient allreduce
        for g in plan.opt_grads[1:]:       # layers outside the flat buffer (custom layers)
            comm.Allreduce(MPI.IN_PLACE, g, op=MPI.SUM)
        step(net, plan, epoch, b + 1)      # identical gradients and weights: every rank diverges together
        return status[1], status[2]


_FAILURES = ("loss", "gradient", "parameter update")      # kernels.step's FAIL_LOSS, FAIL_GRADIENT, FAIL_UPDATE


class FusedDistributedEpoch:
    """The distributed engine on the fused step. Per global batch each rank computes the gradient of its
    rows of it with the fused kernel — the loss head divided by the WHOLE global batch's rows or sample-
    weight sum —, ONE in-place ``Allreduce(SUM)`` of the flat gradient buffer gives every rank the global
    batch's gradient, and every rank applies the same checked update (scikit-learn's penalty, the norms,
    the optimizer; written only when every value stays finite). One kernel call per batch does the update
    of the previous batch and the gradient of the next (kernels/epoch_distributed.py).

    Nothing else is exchanged per step. A rank whose step cannot go on normally — its loss is not finite,
    it raised, or a signal asked it to stop — writes NaN into its gradient: the summed gradient is then not
    finite on every rank, every rank's update refuses it alike (nothing is written), and only then do the
    ranks gather what happened (one collective) and all raise the same thing: Stop before that batch,
    DistributedError naming the failed rank, or TrainingDivergedError. The epoch's loss and correct counts
    are summed on each rank and reduced once, at the epoch's end. ``(order, epoch, progress)`` -> (mean
    loss, correct), like the loop's other engines (fastnn.engines).
    """

    def __init__(self, run, net, X, y, global_batch, weights):
        from ..kernels import epoch_distributed
        from .fused import EpochRunner
        self.run, self.net, self.X, self.gb, self.weights = run, net, X, global_batch, weights
        # the fused kernel's buffers and records, sized for the whole global batch: this rank's rows sit at
        # their positions in it (their Dropout masks are those one process draws)
        self.runner = EpochRunner(net, X, y, global_batch, sample_weights=weights)
        self.step_kernel = epoch_distributed.step_kernel
        self.sums = np.zeros(3)      # this rank's [Σ loss · global rows, correct, failed] of the epoch, then reduced

    def compile_pending(self):
        """A line saying that the first epoch will compile the step's kernel (neither compiled in this
        process nor in Numba's on-disk cache), for a verbose fit to print before it starts; else None."""
        from ..kernels import epoch_distributed
        from ..kernels._jit import is_compiled
        plan = self.net.plan()
        opt_kind, records = self.runner.records(np.empty(0, np.int64), plan, np.uint64(0))
        kernel = self.step_kernel(self.runner.loss_kind, opt_kind, self.runner.chain)
        if is_compiled(epoch_distributed.hold, records) and is_compiled(
                kernel, (epoch_distributed.hold(*records), 0, 0.0, 1, 0, 0, 0, 0, 0.0, 1)):
            return None
        return (f"fastnn: compiling the distributed fused step for {np.dtype(self.net.dtype).name} / "
                f"{type(self.net.loss).__name__} / {type(self.net.optimizer).__name__} (first run only, a few "
                f"seconds)")

    def denominators(self, order):
        """Each global batch's rows, or its sample-weight sum (scikit-learn's sw_sum), in float64."""
        n, gb = len(self.X), self.gb
        if self.weights is None:
            rows = np.full(-(-n // gb), float(gb))
            rows[-1] = n - gb * (len(rows) - 1)
            return rows
        return np.add.reduceat(self.weights[order].astype(np.float64), np.arange(0, n, gb))

    def __call__(self, order, epoch, progress):
        from .. import signals, threads
        run, net = self.run, self.net
        comm, rank, size = run.comm, run.rank, run.size
        plan = progress.plan if progress.plan is not None else net.plan()
        opt = plan.optimizer
        kernel, held, denominators = run.call(
            lambda: self._epoch_setup(order, plan, progress), "the epoch's set-up")   # one small collective
        grads, gb, n = plan.grads, self.gb, len(self.X)
        blas = threads.blas_threads()
        self.sums[:] = 0
        loss_sum, right_sum = 0.0, 0     # this rank's, kept as Python numbers (a NumPy op per step costs µs)
        penalty_sum = 0.0
        denominators = denominators.tolist()
        batches = len(denominators)
        # per step, only what changes: the names the loop calls are looked up once (a step's Python is µs)
        flag, critical, lock = progress.flag, signals.critical, net.weights_changing()
        allreduce, in_place, op_sum = comm.Allreduce, MPI.IN_PLACE, MPI.SUM
        poison = grads.size > 0
        g_rows = -1          # the rows of the global batch whose piece r0:r1 is this rank's (shards.split)
        steps0, self.taken = opt.steps, 0     # opt.steps is written once, when the epoch ends in any way
        done = None         # the batch summed by the last allreduce, not yet updated: (b, rows, denom, flags)
        done_rows, done_denom = 0, 0.0
        try:
            for b in range(progress.batches, batches + 1):
                last = b == batches                    # one more call: the update of the epoch's last batch
                g_start = b * gb
                rows = 0 if last else min(gb, n - g_start)
                if rows != g_rows:                     # the first batch, the epoch's last (smaller) one
                    g_rows = rows
                    base, extra = divmod(g_rows, size)
                    r0 = rank * base + min(rank, extra)
                    r1 = r0 + base + (rank < extra)
                stop, error = (not last) and flag.requested, None
                layer, what, penalty, loss, right = -1, -1, 0.0, 0.0, 0
                with critical(), lock:
                    try:
                        layer, what, penalty, loss, right = kernel(
                            held, done_rows, done_denom, steps0 + self.taken + 1, -1 if last or stop else g_start,
                            r0, r1, b, 0.0 if last else denominators[b], blas)
                        if done is not None and what < 0:
                            self.taken += 1
                    except BaseException as exc:  # noqa: BLE001 - every rank must learn of it (below)
                        error = exc
                        if done is not None and not np.isfinite(grads).all():
                            what = 1      # the others refuse this sum (a poison, a divergence): so does this rank
                if what >= 0:        # every rank refused the update of batch done[0] alike
                    self.sums[:2] = loss_sum, right_sum
                    self._stopped(epoch, done, layer, what, plan, progress, penalty_sum)
                penalty_sum += penalty
                if last:
                    self.sums[:] = loss_sum, right_sum, error is not None   # the failure: agreed in _epoch_sums
                    break
                loss_bad = not math.isfinite(loss)
                mine = (loss * g_rows, right)
                loss_sum += mine[0]
                right_sum += right
                if (stop or error is not None or loss_bad) and poison:
                    grads[0] = np.nan          # every rank's next update refuses the sum: see the class docstring
                allreduce(in_place, grads, op_sum)      # THE allreduce of the step
                done_rows, done_denom = g_rows, denominators[b]
                done = (b, g_rows, done_denom, (bool(stop), error, loss_bad), mine)
        finally:
            with signals.critical():
                opt.steps = steps0 + self.taken
        loss_sum, correct = self._epoch_sums(progress, penalty_sum, error)
        progress.done(batches, loss_sum, correct)
        return loss_sum / n, correct

    def _epoch_setup(self, order, plan, progress):
        """(the step kernel, the epoch's records held for it (epoch_distributed.hold), each global batch's
        denominator)."""
        from ..kernels import epoch_distributed
        runner = self.runner
        for k, drop in enumerate(runner.drops):
            if drop is not None:
                runner.drop_thr[k], runner.drop_scale[k] = drop.threshold, drop.scale
        opt_kind, records = runner.records(order, plan, np.uint64(progress.dropout_key))
        return (self.step_kernel(runner.loss_kind, opt_kind, runner.chain), epoch_distributed.hold(*records),
                self.denominators(order))

    def _epoch_sums(self, progress, penalty_sum, error=None):
        """Collective: (loss summed over the epoch's samples as the loop counts it, correct) of every rank,
        from the position ``progress`` started at; DistributedError on every rank if the epoch's last call
        failed on any (``error``: this rank's)."""
        self.run.comm.Allreduce(MPI.IN_PLACE, self.sums, op=MPI.SUM)
        if self.sums[2]:
            self.run.raise_all(error, where="the epoch's last update")
        loss_sum = progress.loss_sum + self.sums[0] * self.net.loss.report_scale + penalty_sum
        return loss_sum, progress.correct + int(round(self.sums[1]))

    def _stopped(self, epoch, done, layer, what, plan, progress, penalty_sum):
        """Collective, on every rank once the update of global batch ``done[0]`` (0-based) was refused on
        every rank alike: learn why, and raise the same on every rank."""
        from . import Stop
        run = self.run
        b, _, _, (stop, error, loss_bad), mine = done
        text = None if error is None else f"{type(error).__name__}: {error}"
        gathered = run.comm.allgather((stop, text, loss_bad))
        errors = {r: t for r, (_, t, _) in enumerate(gathered) if t is not None}
        if errors:
            run.agreed = DistributedError(errors, epoch, b + 1)
            raise run.agreed from error
        if any(s for s, _, _ in gathered):
            self.sums[:2] -= mine      # batch b is not taken: its loss and correct counts are not the epoch's
            loss_sum, correct = self._epoch_sums(progress, penalty_sum)
            progress.done(b, loss_sum, correct)
            raise Stop
        if any(bad for _, _, bad in gathered):
            raise TrainingDivergedError(epoch, b + 1)
        raise TrainingDivergedError(epoch, b + 1, None if layer < 0 else plan.param_layers[layer],
                                    what=_FAILURES[what])


class _Guard:
    """Around a distributed fit: an exception that escaped outside an agreed point aborts every rank, so
    that no rank waits forever in a collective."""

    def __init__(self, run):
        self.run = run

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        from ..errors import TrainingInterrupted
        agreed = (DistributedError, TrainingDivergedError, TrainingInterrupted)
        if exc is not None and not isinstance(exc, agreed) and exc is not self.run.agreed and self.run.size > 1:
            sys.stderr.write(f"fastnn.distributed: rank {self.run.rank}: {kind.__name__}: {exc}; "
                             f"aborting all ranks\n")
            sys.stderr.flush()
            import time
            time.sleep(ABORT_GRACE)     # mpiexec forwards the line before Abort tears its I/O down
            self.run.comm.Abort(1)
            os._exit(1)     # MPICH's MPI_Abort can return before the launcher ends this process: never go on
        return False
