"""fastnn train: train a network on a dataset or a raw CSV file"""
import contextlib
import math
import os
import sys
import time

import numpy as np

from ._common import (CLIError, _report_line, DATASET_NAMES, DEFAULTS, EXIT_FAILURE, EXIT_OK, EXIT_USAGE, RankSync,
                      launcher_world, parse_hidden, _report, _check_input_file, _check_output_path, _check_plot, _error_text, _fmt, _Formatter,
                      _isatty, _positive_float, _positive_int, _say, _seed, _text, _unit_interval,
                      _val_fraction, _warn)

HELP_TRAIN = """\
Train a fully connected network and report its accuracy (or loss, for regression) on held-out data: the
test set, or without one the --val-split validation rows (20% by default); the output says which.

Integer labels mean classification (softmax cross-entropy, one output per class); float labels mean
regression (L2 loss, linear outputs); --task overrides this. The datasets and their splits are fixed; --seed
sets the weight initialisation, the shuffling and the --val-split.
"""


def _note_whole_float_labels(y, task):
    """--task auto took float labels for regression: when they look like class ids written as floats (whole,
    >= 0, few distinct values: what np.savetxt writes for ids), one line on stderr says how to get classes."""
    import numpy as np
    if task != "regression" or y.ndim != 1 or y.dtype.kind != "f" or not np.all(np.isfinite(y)):
        return
    distinct = np.unique(y)
    if distinct[0] >= 0 and np.all(distinct == np.round(distinct)) and \
            2 <= len(distinct) <= max(math.sqrt(len(y)), 10):
        print(f"fastnn: note: the labels are whole numbers written as floats ({len(distinct)} distinct values): "
              f"training regression on them; if they are class ids, use --task classification", file=sys.stderr)


def _decide_task(args, y, y_test, classes):
    """('classification', n_outputs, y, y_test, classes) or ('regression', n_outputs, y, y_test, classes):
    integer class ids that are not 0..k-1 come back as ids 0..k-1 and their names (``classes``)."""
    import numpy as np
    task = args.task
    if task == "auto":
        task = "classification" if (classes is not None or y.dtype.kind in "biu") else "regression"
        if not args.quiet:            # (every rank but 0 is quiet)
            _note_whole_float_labels(y, task)
    if task == "regression":
        if classes is not None:
            raise CLIError("--task regression needs numeric targets, but the labels are names")
        y = y.astype(np.float64)
        y_test = None if y_test is None else y_test.astype(np.float64)
        return task, (1 if y.ndim == 1 else y.shape[1]), y, y_test, classes
    both = [y] if y_test is None else [y, y_test]
    if any(a.dtype.kind == "f" and not np.all(a == np.round(a)) for a in both if a.ndim == 1):
        raise CLIError("--task classification needs integer class labels, but the labels have fractions "
                       "(use --task regression)")
    if y.ndim == 2:  # one-hot / target distributions
        if y.shape[1] < 2:
            raise CLIError(f"one-hot labels need at least 2 columns, got {y.shape[1]}")
        for a in both:  # multi-hot rows are multilabel targets: softmax training would silently be wrong
            sums = np.asarray(a, np.float64).sum(axis=1)
            if (sums > 1.5).any():
                i = int(np.argmax(sums > 1.5))
                raise CLIError(f"the targets are multilabel (row {i} has {sums[i]:g} labels set): fastnn train "
                               "fits one class per sample; train a multilabel model from Python with "
                               "loss=fastnn.SigmoidCrossEntropy()")
        hard = [a for a in both if np.isin(a, (0, 1)).all()]          # one-hot rows (not distributions)
        if len(hard) == len(both):
            present = np.unique(np.concatenate([np.argmax(a, axis=1) for a in both]))
            if len(present) < 2:
                raise CLIError(f"classification needs at least 2 classes, but the one-hot labels are all "
                               f"class {int(present[0])} (column {int(present[0]) + 1} of {y.shape[1]})")
        return task, y.shape[1], y, y_test, classes
    y = y.astype(np.int64)
    y_test = None if y_test is None else y_test.astype(np.int64)
    low = min(int(a.min()) for a in both)
    if low < 0:
        raise CLIError(f"class labels must be integers >= 0, got {low} (use --task regression for numeric "
                       "targets)")
    # the class count is the number of distinct labels (train and test), never max + 1: labels all 3 are one
    # class, not four; ids that are not 0..k-1 ({0, 5}, {1, 2, 3}) become k classes named by their ids
    distinct = np.unique(np.concatenate(both)) if classes is None else None
    n_classes = len(classes) if classes is not None else len(distinct)
    n_samples = sum(len(a) for a in both)
    limit = max(math.sqrt(n_samples), 10)
    if args.task == "auto" and classes is None and n_classes > limit:
        raise CLIError(f"the integer target would make {n_classes:,} classes from {n_samples:,} samples (more "
                       f"than sqrt(n) = {math.sqrt(n_samples):.0f}): if it is a quantity, use --task regression; "
                       f"if it really is class ids, use --task classification")
    if n_classes < 2:
        label = classes[0] if classes else int(distinct[0])
        raise CLIError(f"classification needs at least 2 classes, but the labels are all {label}")
    if classes is None and distinct[-1] != n_classes - 1:
        classes = [str(int(v)) for v in distinct]
        y = np.searchsorted(distinct, y).astype(np.int64)
        y_test = None if y_test is None else np.searchsorted(distinct, y_test).astype(np.int64)
    return task, n_classes, y, y_test, classes


def build_network(n_inputs, hidden, n_outputs, activation, task, optimizer, seed):
    """The NeuralNetwork ``fastnn train`` trains: FullyConnected + activation per hidden layer, a linear
    output layer, SoftmaxCrossEntropy (classification) or L2Loss (regression)."""
    import fastnn as fnn
    from ..layers import ACTIVATIONS
    init = "he" if activation == "relu" else "xavier"
    layers, width = [], n_inputs
    for h in hidden:
        layers += [fnn.FullyConnected(width, h, init=init), ACTIVATIONS[activation]()]
        width = h
    layers.append(fnn.FullyConnected(width, n_outputs, init=init))
    loss = fnn.SoftmaxCrossEntropy() if task == "classification" else fnn.L2Loss()
    return fnn.NeuralNetwork(layers, loss=loss, optimizer=optimizer, seed=seed)


def _load(args, drop, is_csv):
    """The training data: a dataset or .npz (numbers) or a raw CSV table (cells as text, for
    fastnn.preprocessing), as a dict with X, y, X_test, y_test, classes, features, target, lines, name."""
    from ..data import load_dataset, load_table, parse_labels
    try:
        if not is_csv:
            # an .npz's raw features reach --standardize's statistics as stored (float64 stays float64), as
            # they reach the saved model in evaluate and predict: a float32 copy would shift a feature like
            # 50 + 1e-3·noise by 0.5% of its spread, and train and evaluate would score different predictions
            wide = args.standardize and str(args.data).lower().endswith(".npz")
            data = load_dataset(args.data, target=args.target, seed=0, dtype=np.float64 if wide else np.float32)
            data["target"] = None
            return data
        table = load_table(args.data, target=args.target, drop=drop, missing=args.missing,
                           header=not args.no_header)
        y, classes = parse_labels(table["labels"])
    except (ValueError, TypeError, OSError) as exc:
        raise CLIError(_error_text(exc)) from None
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        r = int(np.flatnonzero(~np.isfinite(y))[0])
        raise CLIError(f"{args.data}, line {table['lines'][r]}, column {table['target']!r}: non-finite target")
    return {"X": table["X"], "y": y, "X_test": None, "y_test": None, "classes": classes,
            "features": table["features"], "target": table["target"], "lines": table["lines"],
            "name": args.data, "table": table}


def _report_table(args, data, pre):
    """One line on what was done to a raw table's missing cells and text columns."""
    table = data.get("table")
    if table is None:
        return
    parts = []
    if table["dropped_labels"]:
        parts.append(f"{table['dropped_labels']} row(s) without a label dropped")
    if table["dropped_cells"]:
        parts.append(f"{table['dropped_cells']} row(s) with a missing cell dropped (--missing drop)")
    if table["missing_cells"]:
        kinds = {c["name"]: c["kind"] for c in pre.columns}
        how = {"mean": "the training mean", "median": "the training median",
               "most_frequent": "the most frequent value"}[args.missing]
        cells = ", ".join(f"{n} {k}" for n, k in table["missing_cells"].items())
        cat = any(kinds.get(n) == "categorical" for n in table["missing_cells"])
        parts.append(f"{sum(table['missing_cells'].values())} missing cell(s) filled with {how}"
                     f"{' (text columns: the most frequent category)' if cat else ''}: {cells}")
    onehot = [c for c in pre.columns if c["kind"] == "categorical"]
    if onehot:
        parts.append("one-hot: " + ", ".join(f"{c['name']} ({len(c['categories'])})" for c in onehot))
    if parts:
        _say(args, "columns  " + "; ".join(parts))


def _warn_ids(args, raw, pre):
    from ..data import id_like_columns
    from ..preprocessing import parse_number
    for c, spec in enumerate(pre.columns):
        if spec["kind"] != "numeric":
            continue
        values = [parse_number(v) for v in raw[:, c]]
        if any(v is None for v in values):
            continue
        for name, how in id_like_columns(np.array(values)[:, None], [spec["name"]]):
            _warn(args, f"column {name!r} looks like a row id ({how}): a model can learn the row order "
                        f"instead of the data (a file sorted by class gives the class away); drop it with "
                        f"--drop {name}")


def _checkpoint_epoch(path):
    """The epochs a checkpoint at ``path`` holds (a fit resumes after them), 0 when there is none."""
    if path is None or not os.path.isfile(path):
        return 0
    from ..io import load_metadata
    try:
        epoch = (load_metadata(path).get("extra") or {}).get("checkpoint", {}).get("epoch", 0)
    except (OSError, ValueError, AttributeError):
        return 0                  # fit itself reports what is wrong with the file
    return epoch if isinstance(epoch, int) and epoch >= 0 else 0


def time_split(elapsed, times, checkpoint_seconds=None, numba_startup=0.0):
    """'time T s: ...' splitting a fit's wall time truthfully from what it measured: the epochs (history
    "time", which excludes checkpoint writes); the first epoch's excess over the others (the kernels'
    compilation or cache load — measured, not asked of the compiler); Numba's one-time set-up of the
    process, timed before the fit (``numba_startup``, included in T); the checkpoint writes, timed by the
    fit (``checkpoint_seconds``; None: not checkpointing); the rest (set-up)."""
    text = f"time {elapsed + numba_startup:.2f} s"
    if not times:
        return text
    epochs = sum(times)
    other = elapsed - epochs
    parts = []
    if numba_startup >= 0.005:
        parts.append(f"Numba start-up {numba_startup:.2f} s")
    if len(times) >= 2:
        steady = sum(times[1:]) / (len(times) - 1)
        first_extra = max(times[0] - steady, 0.0)
        first_extra = first_extra if first_extra > 0.05 else 0.0      # shown when it matters; parts add up
        parts.append(f"training {epochs - first_extra:.2f} s")
        if first_extra:
            parts.append(f"first-epoch extra {first_extra:.2f} s (compiling or loading the kernels)")
    else:
        parts.append(f"1 epoch {epochs:.2f} s (with any compiling or loading of the kernels)")
    if checkpoint_seconds is not None:
        checkpoint_seconds = min(max(checkpoint_seconds, 0.0), max(other, 0.0))
        parts.append(f"checkpoints {checkpoint_seconds:.2f} s")
        other -= checkpoint_seconds
    if other >= 0.005:
        parts.append(f"set-up {other:.2f} s")
    return f"{text}: " + ", ".join(parts)


def cmd_train(args):
    if args.distributed:
        return _run_distributed(lambda: args)
    env_rank, env_size, env_var = launcher_world()
    if env_size is not None and env_size > 1:       # `mpiexec -n K fastnn train` without --distributed
        return _refuse_copies(env_rank, env_size, env_var)
    return _train(args)


def _refuse_copies(env_rank, env_size, env_var):
    """One of K processes of an MPI launch without --distributed: each would train its own copy and write
    the same files. An error (exit 2, printed by rank 0); the ranks then compare their modes in
    ``one_of_many`` (the same first collective as ``_run_distributed``), so that a rank given --distributed
    is told, instead of waiting for this one forever."""
    if not env_rank:
        _report(f"fastnn train was started by an MPI launcher as one of {env_size} processes ({env_var}="
                f"{env_size}) without --distributed: each would train its own copy and write the same files; "
                f"add --distributed for data-parallel training, or run it without mpiexec")
    return _Refused(EXIT_USAGE)


class _Refused(int):
    """The exit code of ``fastnn train`` refused as one of K copies (said by rank 0; one_of_many then
    names no error of this rank beside a rank's --distributed)."""


def mixed_launch_line(modes):
    """The one error line of a launch where some ranks run ``fastnn train --distributed`` and others not
    (``modes``: every rank's "distributed", or ("single", its error or None), from the first collective)."""
    given = [r for r, m in enumerate(modes) if m == "distributed"]
    line = (f"fastnn: error: rank{'s' if len(given) > 1 else ''} {', '.join(map(str, given))} of {len(modes)} "
            f"{'were' if len(given) > 1 else 'was'} given --distributed, the others not; launch every rank with "
            f"the same command")
    failed = [f"rank {r}: {m[1]}" for r, m in enumerate(modes) if m != "distributed" and m[1]]
    return line + (f" (and {'; '.join(failed)})" if failed else "")


def one_of_many(command):
    """Run ``command()`` (-> exit code) in a process an MPI launcher started as one of K > 1 without
    ``train --distributed``, then join the other ranks in the first collective of ``_run_distributed``
    before exiting: a rank given --distributed (in a mixed launch, ``mpiexec -n 1 fastnn train
    --distributed ... : -n 1 fastnn train --bogus``) then learns that this one is not training with it,
    and every rank exits with one error line, printed by rank 0, instead of waiting for this one forever.
    This process's stderr is held until then (it is printed as it was when no rank runs --distributed)."""
    import contextlib
    import io
    held = io.StringIO()
    with contextlib.redirect_stderr(held):
        code = command()
    refused = isinstance(code, _Refused)
    text = held.getvalue()
    try:
        from mpi4py import MPI
        comm = MPI.COMM_WORLD
        joined = comm.Get_size() > 1
    except ImportError:
        joined = False
    if joined:
        errors = [line for line in text.splitlines() if line.startswith("fastnn: error: ")]
        mine = None if refused or code == EXIT_OK or not errors else errors[-1][len("fastnn: error: "):]
        modes = comm.allgather(("single", mine))
        if any(m == "distributed" for m in modes):
            if comm.Get_rank() == 0:
                _report_line(mixed_launch_line(modes))
            return EXIT_USAGE
        if mine is not None and all(m == modes[0] for m in modes) and comm.Get_rank() != 0:
            return code        # every rank failed alike (`mpiexec -n K fastnn train --bogus`): rank 0 says it
    if text:
        sys.stderr.write(text)
        sys.stderr.flush()
    return code


def is_distributed(argv):
    """Whether ``argv`` (the command line after ``fastnn``) is ``train ... --distributed ...`` (argparse
    also takes the abbreviations down to ``--di``)."""
    return bool(argv) and argv[0] == "train" and any(
        t.startswith("--di") and "--distributed".startswith(t) for t in argv[1:])


def main_distributed(argv, build_parser, held=None):
    """``fastnn train --distributed ...`` from its first step, parsing included: whatever fails on any rank
    ends every rank with one error line (rank 0's) and one exit code, and no rank waits for another."""
    def parse():
        parser = build_parser()
        try:
            args, unknown = parser.parse_known_args(argv)
        except SystemExit as exc:  # --help: printed by rank 0 (the others' output is dropped)
            if exc.code not in (0, None):
                raise CLIError(f"{argv[0]}: invalid arguments", code=exc.code) from None
            return None
        if unknown:
            raise CLIError(f"unrecognized arguments: {' '.join(unknown)} "
                           f"(see '{getattr(args, 'prog_', 'fastnn')} --help')")
        return args
    return _run_distributed(parse, held)


ONE_RANK = ("--distributed outside an MPI launcher: training on one rank (to train on K ranks: mpiexec -n K "
            "fastnn train --distributed ...)")
# options a rank may set its own way (--save and --plot are compared: only rank 0 writes, so a path given to
# another rank alone would be silently ignored)
KEEP_PER_RANK = ("threads", "quiet", "func", "prog_")


class _HeldSignals:
    """Ctrl-C / SIGTERM during a distributed command, from its first line: held. The first one sets a flag
    (``flag``, a fastnn.signals.StopFlag), so that no rank leaves on its own while the others wait for it in a
    collective; ``check()`` raises it (KeyboardInterrupt, with its ``signal_name``) where every rank learns of
    it: before the set-up agreement, which ends every rank with exit 130 (143). After it the fit takes the
    flag (``Trainer.stop_flag``; its own handlers are not installed over these): a signal from then on stops
    every rank at the fit's next batch (TrainingInterrupted). A later signal is held too — the stop is under
    way on every rank, and a rank that acted on it alone (a double Ctrl-C) would end the job with MPI_Abort
    instead of the one agreed line. ``held``: the console script's (caught, handler) (fastnn_cli holds the
    signals while fastnn is imported): its handler is taken over, a signal it caught is this one's first.
    ``release()`` puts the default handlers back."""

    def __init__(self, held=None):
        import signal
        import threading
        from .. import signals
        self.flag = signals.StopFlag()
        caught, hold = held if held is not None else ((), None)
        self.previous = {}
        self.handler = self._handler      # (one bound method: compared by identity)
        if threading.current_thread() is threading.main_thread():
            for sig, default in signals.DEFAULTS.items():
                current = signal.getsignal(sig)
                if current is default or (hold is not None and current is hold):
                    signal.signal(sig, self.handler)
                    self.previous[sig] = default
        if caught:        # (read after the take-over: a signal the console script caught until then counts)
            self.flag.requested, self.flag.signal_name = True, signal.Signals(caught[0]).name

    def _handler(self, signum, frame):
        if not self.flag.requested:
            import signal
            self.flag.requested, self.flag.signal_name = True, signal.Signals(signum).name

    def check(self):
        if self.flag.requested:
            name = self.flag.signal_name
            from .. import signals
            exc = KeyboardInterrupt(signals.describe(name))
            exc.signal_name = name
            raise exc

    def release(self, check=True):
        import signal
        for sig, old in self.previous.items():
            if signal.getsignal(sig) is self.handler:
                signal.signal(sig, old)
        self.previous = {}
        if check:
            self.check()


class _StartWatch:
    """While the ranks' first collectives run (after MPI_Init: see ``_starting_mpi``), the main thread can
    wait in C for as long as another rank never arrives, where no Python signal handler runs: a held signal
    would never be acted on, and SIGTERM (timeout, scancel, kill) could not end the rank. mpi4py releases
    the GIL there, so a thread woken by the signal
    (``signal.set_wakeup_fd``) ends this process — one line, exit 130 (143) — when the main thread has not
    left the start-up ``GRACE`` seconds after it; one that leaves in time agrees on it with every rank."""

    GRACE = 2.0

    def __init__(self, rank=None):
        import signal
        import threading
        from .. import signals
        self.stop_signals = tuple(int(s) for s in signals.STOP_SIGNALS)
        self.rank, self.closed, self.fds, self.old_fd = rank, threading.Event(), None, None
        if threading.current_thread() is not threading.main_thread():
            return
        r, w = os.pipe()
        os.set_blocking(w, False)
        try:
            self.old_fd = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        except (ValueError, OSError):
            os.close(r)
            os.close(w)
            return
        self.fds = (r, w)
        threading.Thread(target=self._watch, name="fastnn-start-watch", daemon=True).start()

    def _watch(self):
        import signal
        r, got = self.fds[0], None
        while got is None:
            try:
                data = os.read(r, 64)
            except OSError:
                return
            if self.closed.is_set() or not data:
                return
            got = next((b for b in data if b in self.stop_signals), None)
        if self.closed.wait(self.GRACE):
            return
        name = signal.Signals(got).name
        who = "" if self.rank is None else f"rank {self.rank}: "
        from .. import signals
        what = signals.describe(name)
        try:
            sys.stderr.write(f"fastnn: {who}{what} while MPI was starting (MPI_Init or the ranks' first "
                             f"collective did not return)\n")
            sys.stderr.flush()
        finally:
            os._exit(signals.exit_code(name))

    def close(self):
        import signal
        if self.fds is None:
            return
        self.closed.set()
        r, w = self.fds
        self.fds = None
        try:
            signal.set_wakeup_fd(self.old_fd)
        except (ValueError, OSError):
            pass
        try:
            os.write(w, b"\0")       # wakes the thread, which sees ``closed`` and returns
        except OSError:
            pass
        os.close(w)     # (r stays open for the daemon thread's read; one descriptor, for the command's life)


@contextlib.contextmanager
def _starting_mpi(held):
    """Around ``import mpi4py.MPI``, which runs MPI_Init: there the main thread waits in C, holding the GIL,
    for every rank of the launch to start (forever when one never does: an MPMD partner that is no MPI
    program), so no Python code runs — not a signal handler, not _StartWatch's thread. SIGTERM (and SIGHUP)
    therefore keep their default effect there (timeout, scancel and kill end the rank; a SIGTERM held earlier stays
    held), and the wait is bounded by FASTNN_DISTRIBUTED_TIMEOUT (faulthandler's timer, a C thread: the
    stack and exit 1). A Ctrl-C stays held: agreed on by every rank once MPI has started (mpiexec ends the
    job on a second Ctrl-C)."""
    import faulthandler
    import signal
    from ..engines.local import start_timeout
    from .. import signals
    outside = [sig for sig in signals.STOP_SIGNALS if sig != signal.SIGINT     # SIGTERM and SIGHUP
               and held.previous.get(sig) is not None and signal.getsignal(sig) is held.handler]
    for sig in outside:
        signal.signal(sig, signal.SIG_DFL)
    armed, limit = False, start_timeout()
    if limit > 0:
        try:
            faulthandler.dump_traceback_later(limit, exit=True, file=sys.stderr)
            armed = True
        except (AttributeError, OSError, RuntimeError, ValueError,    # (stderr without a file descriptor)
                OverflowError):                                      # (a limit of 1e300 s: as good as none)
            pass
    try:
        yield
    finally:
        if armed:
            faulthandler.cancel_dump_traceback_later()
        for sig in outside:
            if signal.getsignal(sig) is signal.SIG_DFL:
                signal.signal(sig, held.handler)


def _run_distributed(parse, held=None):
    """Parse (``parse()``: the arguments, or None after --help) and train on every rank of COMM_WORLD,
    through the two agreement points of ``RankSync``; returns the exit code every rank agreed on."""
    held = _HeldSignals(held)     # from the first line: a signal anywhere in the start-up reaches every rank
    try:
        return _run_distributed_held(parse, held)
    finally:
        held.release(check=False)


def _run_distributed_held(parse, held):
    import io
    from .. import signals
    # (_HeldSignals holds every signal; the critical section holds a second one for other handlers, e.g. a
    # caller's fastnn.signals.deferred) up to the first collectives' end: a rank that
    # left here would leave the others waiting in them
    stack = contextlib.ExitStack()
    stack.enter_context(signals.critical())
    sync, error = None, None
    try:
        env_rank, env_size, env_var = launcher_world()
        stack.callback(_StartWatch(env_rank).close)     # a held signal still ends a rank that MPI never starts
        try:
            with _starting_mpi(held):
                from mpi4py import MPI     # MPI_Init
            from .. import distributed     # ImportError with the install hint
        except ImportError as exc:
            if not env_rank:              # the launcher's rank 0, or no launcher: one line
                _report(_error_text(exc))
            return EXIT_FAILURE
        comm = MPI.COMM_WORLD
        rank, size = comm.Get_rank(), comm.Get_size()
        if size == 1 and env_size is not None and env_size > 1:
            if not env_rank:
                _report(f"--distributed: the launcher started {env_size} processes ({env_var}={env_size}), but "
                        f"MPI sees each as alone (a world of 1): mpi4py uses another MPI library than this "
                        f"launcher; launch with the mpiexec of mpi4py's MPI (pip install 'fastnn[mpi]' puts it "
                        f"next to python: {os.path.join(os.path.dirname(sys.executable), 'mpiexec')})")
            return EXIT_USAGE
        modes = comm.allgather("distributed")   # the first collective: ranks without --distributed join it too
        if any(m != "distributed" for m in modes):           # (one_of_many), with their own errors
            if rank == 0:
                _report_line(mixed_launch_line(modes))
            return EXIT_USAGE
        threads = distributed.threads_per_rank(comm)     # a collective: before anything can fail on one rank
        sync = RankSync(comm)
        sync.held = held
        stack.close()         # a second signal held until here acts now: KeyboardInterrupt, agreed on below
        held.check()
        quiet = io.StringIO() if rank != 0 else None
        with contextlib.redirect_stdout(quiet) if quiet is not None else contextlib.nullcontext():
            args = parse()
        if args is not None:
            if size == 1 and env_size is None:
                _report(ONE_RANK, prefix="fastnn: warning: ")
            # rank 0's header lines ("data ...", "network ...") describe a run that starts only if the set-up
            # agreement passes: held until then (an error of another rank's set-up comes alone)
            header = contextlib.ExitStack()
            held_out = header.enter_context(contextlib.redirect_stdout(io.StringIO())) if rank == 0 else None

            def release_header():
                if held_out is not None and not held_out.closed:
                    header.close()
                    sys.stdout.write(held_out.getvalue())
                    sys.stdout.flush()
                    held_out.close()
            sync.release_header = release_header
            with header:
                _train(args, sync, threads)
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - every rank must learn of it
        if sync is None:       # before the first collectives' end: as before them (no agreement to join)
            raise
        if os.environ.get("FASTNN_DEBUG") and not isinstance(exc, (CLIError, KeyboardInterrupt)):
            import traceback
            traceback.print_exc()
        if sync.stage == "fit" and exc is not sync.agreed:
            # between the set-up agreement and the end of fit, the other ranks are in fit's collectives: this
            # rank cannot join them with its error (e.g. Ctrl-C while it waited in the set-up collective, or
            # before fit's signal handling starts), so the job ends at once rather than waiting forever
            sync.abort(exc)
        error = exc
    finally:
        stack.close()
    return sync.finish(error)


def agreed_by_fit(exc):
    """Whether a distributed fit raises ``exc`` on every rank alike (its agreed errors), so that every rank
    goes on to the end's agreement."""
    from ..errors import TrainingDivergedError, TrainingInterrupted
    from ..engines.distributed import DistributedError
    if isinstance(exc, (TrainingDivergedError, TrainingInterrupted, DistributedError)):
        return True
    return isinstance(exc, (ValueError, TypeError)) and (
        str(exc).startswith(("distributed training cannot start", "distributed training stopped"))
        or "cannot run distributed" in str(exc))


def _train(args, sync=None, threads=None):
    import fastnn as fnn
    from ..data import train_test_split

    if args.lr is None:
        args.lr = DEFAULTS["lr"][args.optimizer]
    if args.momentum is None:
        args.momentum = DEFAULTS["momentum"] if args.optimizer == "sgd" else 0.0
    elif args.optimizer != "sgd":
        raise CLIError("--momentum applies to --optimizer sgd only (Adam has its own moment estimates)")
    rank, ranks = (0, 1) if sync is None else (sync.rank, sync.size)
    options = {f"--{k.replace('_', '-')}": ",".join(map(str, v)) if isinstance(v, tuple) else v
               for k, v in sorted(vars(args).items()) if k not in KEEP_PER_RANK}
    _refuse_same_file(args)           # (on every rank: before rank 0 alone keeps --save and --plot)
    if rank != 0:                     # rank 0 alone prints, saves and plots
        args.quiet, args.save, args.plot = True, None, None
    if sync is not None and args.threads is None:
        args.threads = threads
    if args.plot:
        _check_plot(args.plot)
    if args.save:
        _check_output_path(args.save, "model file")
    if args.checkpoint_every is not None and args.checkpoint is None:
        raise CLIError("--checkpoint-every needs --checkpoint PATH (there is no checkpoint to write)")
    if args.threads is not None:
        try:
            fnn.set_num_threads(args.threads)
        except ValueError as exc:
            raise CLIError(f"--threads: {_error_text(exc)}") from None
    if args.data.lower() not in DATASET_NAMES and os.path.splitext(args.data)[1].lower() in (".npz", ".csv"):
        _check_input_file(args.data, "data")

    drop = [name.strip() for text in args.drop or () for name in text.split(",") if name.strip()]
    is_csv = args.data.lower().endswith(".csv") and args.data.lower() not in DATASET_NAMES
    for flag, value in (("--drop", drop), ("--categorical", args.categorical), ("--no-header", args.no_header)):
        if value and not is_csv:
            raise CLIError(f"{flag} applies only to .csv files, not {args.data!r}")
    if args.missing != "error" and not is_csv:
        raise CLIError(f"--missing applies only to .csv files, not {args.data!r}")
    data = _load(args, drop, is_csv)
    raw, y, raw_test, y_test, classes = data["X"], data["y"], data["X_test"], data["y_test"], data["classes"]
    task, n_outputs, y, y_test, classes = _decide_task(args, y, y_test, classes)
    features = data.get("features")
    target_name = data.get("target")

    categorical = "auto" if args.categorical == "auto" else [
        c.strip() for c in (args.categorical or "").split(",") if c.strip()]
    settings = dict(columns=features, categorical=categorical, missing=args.missing, standardize=args.standardize,
                    scale_target=args.standardize and task == "regression", classes=classes,
                    lines=data.get("lines"))
    if is_csv:                       # every problem of the file, before any split
        from ..preprocessing import Preprocessing
        try:
            Preprocessing.fit(raw, y if task == "regression" else None, **settings)
        except ValueError as exc:
            raise CLIError(f"{args.data}: {_error_text(exc)}") from None

    if args.val_split is None:      # the headline score is on held-out data: hold some out if there is no test set
        args.val_split = 0.2 if raw_test is None else 0.0
    train_rows, val_rows = np.arange(len(raw)), None
    if args.val_split:
        stratify = task == "classification" and y.ndim == 1
        try:
            train_rows, val_rows, _, _ = train_test_split(np.arange(len(raw)), y, test_size=args.val_split,
                                                          stratify=stratify, seed=args.seed)
        except ValueError as exc:
            raise CLIError(f"--val-split {args.val_split}: {_error_text(exc)}") from None

    pre = None
    if is_csv or args.standardize:   # statistics from the training rows only; stored in the model file
        from ..preprocessing import Preprocessing
        try:
            pre = Preprocessing.fit(raw, y if task == "regression" else None, rows=train_rows, **settings)
            encode = (lambda a, lines=None: pre.transform(a, np.float32, lines=lines))
            X_all = encode(raw, data.get("lines"))
            X_test = None if raw_test is None else encode(raw_test)
        except ValueError as exc:
            where = args.data if is_csv else data["name"]
            raise CLIError(f"{where}: {_error_text(exc)}") from None
        y_fit = pre.encode_target(y, scale=True) if task == "regression" else y
        _report_table(args, data, pre)
    else:
        X_all, X_test, y_fit = raw, raw_test, y
    X, y_train = X_all[train_rows], y_fit[train_rows]
    X_val = y_val = None
    if val_rows is not None:
        X_val, y_val = X_all[val_rows], y_fit[val_rows]
    if is_csv:
        _warn_ids(args, raw, pre)

    optimizer = (fnn.Adam(lr=args.lr) if args.optimizer == "adam"
                 else fnn.SGD(lr=args.lr, momentum=args.momentum))
    net = build_network(X.shape[1], args.hidden, n_outputs, args.activation, task, optimizer, args.seed)
    shape = "-".join(str(w) for w in (X.shape[1], *args.hidden, n_outputs))

    parts = [f"{len(X):,} training"]
    if X_val is not None:
        parts.append(f"{len(X_val):,} validation")
    parts.append(f"{len(X_test):,} test samples" if X_test is not None else "no test set")
    what = (f"{n_outputs} classes" if task == "classification"
            else f"regression, {n_outputs} output{'s' if n_outputs > 1 else ''}")
    dropped = f" ({', '.join(drop)} dropped)" if drop else ""
    scaled = ", standardized" if args.standardize else ""
    _say(args, f"data     {data['name']}: {', '.join(parts)}; {X.shape[1]} features{dropped}{scaled}; {what}")
    opt = (f"adam lr {args.lr:g}" if args.optimizer == "adam"
           else f"sgd lr {args.lr:g} momentum {args.momentum:g}")
    hidden_act = f", {args.activation}" if args.hidden else " (no hidden layer)"
    batch = describe_batch(args.batch_size, ranks if args.distributed else None)
    _say(args, f"network  {shape}{hidden_act}, {type(net.loss).__name__}; {opt}; {batch}; "
               f"{args.epochs} epochs; seed {args.seed}")

    curve = None
    if args.plot and X_test is not None:     # the test curve of the plot (recorded aside, not in the history)
        from ..plotting import EvaluationCurve
        curve = EvaluationCurve(net, X_test, pre.encode_target(y_test, scale=True)
                                if pre is not None and task == "regression" else y_test)
    resumed = _checkpoint_epoch(args.checkpoint)
    if sync is not None:              # every rank is ready, with the same options: train
        held = getattr(sync, "held", None)
        if held is not None:
            held.check()              # a Ctrl-C / SIGTERM of the start-up: this rank's error at the agreement
        sync.setup(None, options)
        release = getattr(sync, "release_header", None)
        if release is not None:
            release()
    from .. import signals
    from ..kernels._jit import prepare_numba
    start = time.perf_counter()
    with signals.held():              # (a Ctrl-C inside llvmlite's set-up is held until it is done)
        prepare_numba()               # the fit would do it first; timed apart for the summary
    numba_startup = time.perf_counter() - start
    start = time.perf_counter()
    bar = not args.quiet and _isatty(sys.stderr)      # else no progress bar; a compile is still said (not with -q)
    from ..training import CompileNotice
    try:
        try:
            with contextlib.nullcontext() if bar or args.quiet else CompileNotice():
                trainer = fnn.Trainer(net, epochs=args.epochs, batch_size=args.batch_size,   # (net.fit's own:
                                      callbacks=[curve] if curve else (),                    # kept for its
                                      validation_data=None if X_val is None else (X_val, y_val),  # times)
                                      verbose=1 if bar else 0, seed=args.seed, distributed=args.distributed,
                                      checkpoint=args.checkpoint, **({} if args.checkpoint_every is None else
                                                                     {"checkpoint_every": args.checkpoint_every}))
                if sync is not None and getattr(sync, "held", None) is not None:
                    trainer.stop_flag = sync.held.flag    # a signal since the set-up stops every rank in fit
                history = trainer.fit(X, y_train)
        except BaseException as exc:
            if sync is not None and agreed_by_fit(exc):    # raised alike on every rank: the end is agreed on
                sync.stage = "end"
            raise
        if sync is not None:
            sync.stage = "end"
            if getattr(sync, "held", None) is not None:
                sync.held.release()    # (a signal after the fit's last check: this rank's outcome at the end)
    except fnn.TrainingDivergedError as exc:
        raise CLIError(_error_text(exc), code=EXIT_FAILURE) from None
    except (ValueError, TypeError) as exc:
        raise CLIError(_error_text(exc)) from None
    except RuntimeError as exc:     # fastnn.distributed.DistributedError: a rank failed, all ranks stop
        if not args.distributed:
            raise
        raise CLIError(_error_text(exc), code=EXIT_FAILURE) from None
    elapsed = time.perf_counter() - start
    if pre is not None:
        net.preprocessing = pre       # from here on the network takes raw rows, as a loaded model does

    # the epochs this run trained: the last entries of the history (a resume restores the checkpoint's, which
    # keeps only its last HISTORY_EPOCHS: counting from the start would miss them); the fit ran to --epochs
    # (a stop raises, and prints no summary)
    trained = max(args.epochs - resumed, 0)
    times = history.get("time", [])[-trained:] if trained else []
    if len(times) >= 2:
        rate = len(X) * (len(times) - 1) / max(sum(times[1:]), 1e-12)
    else:
        rate = len(X) * trained / max(elapsed, 1e-12)
    val_share = f"held-out {args.val_split:.0%}"
    labels = (lambda ids: ids) if pre is None or pre.classes is None else (
        lambda ids: np.asarray(pre.classes, dtype=object)[ids])
    if raw_test is not None:
        where, held, X_eval, y_eval = "test", f"test set, {len(X_test):,} samples", raw_test, labels(y_test)
    elif X_val is not None:
        where, held, X_eval, y_eval = ("validation", f"{val_share}, {len(X_val):,} samples", raw[val_rows],
                                       labels(y[val_rows]))
    else:
        where, held, X_eval, y_eval = ("train", "the training data itself, not held out: optimistic; "
                                       "--val-split 0.2 holds out 20%", raw[train_rows], labels(y[train_rows]))
    try:
        scores = net.evaluate(X_eval, y_eval)
    except ValueError as exc:
        raise CLIError(f"cannot evaluate on the {where} data: {_error_text(exc)}") from None
    if X_val is not None and X_test is not None:
        val = net.evaluate(raw[val_rows], labels(y[val_rows]))
        val_text = (f"accuracy {val['accuracy']:.4f}, " if "accuracy" in val else "") + f"loss {_fmt(val['loss'])}"
        _say(args, f"validation {val_text} ({val_share}, {len(X_val):,} samples)")
    if task == "classification":
        score = f"{where} accuracy {scores['accuracy']:.4f} ({held})"
    else:
        from ..data import regression_scores
        r = regression_scores(y_eval, net.predict(X_eval), baseline_mean=np.mean(
            np.asarray(y[train_rows], np.float64).reshape(len(train_rows), -1), axis=0))
        units = ", in the target's units" if pre is not None and pre.target is not None else ""
        score = (f"{where} loss {_fmt(scores['loss'])} (RMSE {_fmt(r['rmse'])}, R² {r['r2']:.4f}; predicting "
                 f"the training mean: RMSE {_fmt(r['baseline_rmse'])}{units}; {held})")
        scores["rmse"], scores["r2"] = r["rmse"], r["r2"]
    timing = time_split(elapsed, times, trainer.checkpoint_seconds if args.checkpoint is not None else None,
                        numba_startup)
    if rank == 0:
        speed = (f"{rate:,.0f} samples/s" if times else
                 f"no epoch trained (the checkpoint already holds {resumed})")
        print(f"{score} | {speed} | {timing}", flush=True)

    if args.save:
        from .. import io
        extra = {"trained_with": "fastnn train", "data": data["name"], "task": task, "classes": classes,
                 "features": features, "target": target_name, "hidden": list(args.hidden),
                 "activation": args.activation, "optimizer": args.optimizer, "lr": args.lr,
                 "momentum": args.momentum, "epochs": args.epochs, "batch_size": args.batch_size,
                 "seed": args.seed, "val_split": args.val_split, "n_train": len(X), "dropped": drop,
                 "standardize": args.standardize, "categorical": args.categorical, "missing": args.missing,
                 f"{where}_loss": scores["loss"], "train_time_s": round(elapsed, 4),
                 "fastnn_version": fnn.__version__}
        if args.distributed:          # --batch-size is each rank's: fastnn info shows ranks x local batch
            extra.update(ranks=ranks, global_batch_size=args.batch_size * ranks)
        if "accuracy" in scores:
            extra[f"{where}_accuracy"] = scores["accuracy"]
        try:
            io.save(net, args.save, extra=extra)
        except (OSError, ValueError) as exc:
            raise CLIError(f"cannot save the model: {_error_text(exc)}", code=EXIT_FAILURE) from None
        _say(args, f"saved the model to {args.save}")
    if args.plot:
        from ..plotting import plot_history
        regression = None
        if task == "regression":
            def variance(t):
                return float(np.mean(np.var(np.asarray(t, np.float64).reshape(len(t), -1), axis=0)))
            regression = {"outputs": n_outputs, "scale": pre.target["std"][0] if pre is not None and
                          pre.target is not None and n_outputs == 1 else 1.0,
                          "variance": {"train": variance(y_train), "validation": None if y_val is None
                                       else variance(y_val), "test": None if curve is None
                                       else variance(curve.y)}}
        try:
            plot_history(history, args.plot, title=f"fastnn train: {shape} on {data['name']}",
                         test=None if curve is None else curve.history, regression=regression)
        except (OSError, ValueError) as exc:    # (the model and checkpoint are written by now: only the plot is lost)
            raise CLIError(f"cannot write the plot: {_error_text(exc)}", code=EXIT_FAILURE) from None
        _say(args, f"wrote the training curves to {args.plot}")
    return EXIT_OK



def _refuse_same_file(args):
    """CLIError when two of --save, --checkpoint and --plot name one file: one write would replace the
    other's (the model over the checkpoint, the plot over the model), silently."""
    given = [(name, path) for name, path in (("--save", args.save), ("--checkpoint", args.checkpoint),
                                              ("--plot", args.plot)) if path]
    for i, (a, pa) in enumerate(given):
        for b, pb in given[i + 1:]:
            same = os.path.realpath(pa) == os.path.realpath(pb)
            if not same and os.path.exists(pa) and os.path.exists(pb):
                try:
                    same = os.path.samefile(pa, pb)
                except OSError:
                    pass
            if same:
                raise CLIError(f"{a} {pa} and {b} {pb} name the same file: one would overwrite the other; "
                               f"give different paths")


def describe_batch(batch_size, ranks=None):
    """'batch 32', or for a distributed run 'batch 2 ranks x 512 = 1024 global' (--batch-size is per rank)."""
    if not isinstance(ranks, int) or isinstance(ranks, bool) or ranks < 1 or not isinstance(batch_size, int):
        return f"batch {batch_size}"
    return f"batch {ranks} rank{'s' if ranks > 1 else ''} x {batch_size} = {ranks * batch_size} global"


def add_parser(sub):
    import fastnn
    p = sub.add_parser(
        "train", formatter_class=_Formatter, help="train a network (default: 64-128-10 on the bundled digits)",
        description=_text(HELP_TRAIN))
    p.add_argument("--data", default="digits", metavar="NAME|PATH",
                   help="digits (fixed stratified 75/25 split), xor (400 noisy points), spirals, moons "
                        "(1000 points, 75/25 split), or a file: .npz with arrays X, y and optionally "
                        "X_test, y_test; .csv with a header row, the label in the last column or --target "
                        "(default: %(default)s)")
    p.add_argument("--target", metavar="NAME", help="label column of a .csv file (default: the last column)")
    p.add_argument("--no-header", action="store_true",
                   help="the .csv file has no header row: every row is data and the columns are named 1, 2, ... "
                        "by position (--target 5, --drop 1)")
    p.add_argument("--drop", action="append", metavar="COLUMN[,...]",
                   help="leave these columns of a .csv file out (ids, names, free text); repeatable")
    p.add_argument("--standardize", action="store_true",
                   help="scale every numeric feature to mean 0, std 1 with the training rows' mean and std, and "
                        "a regression target too (predictions and RMSE stay in its units); stored in the model "
                        "file: predict, evaluate, fastnn.load(...).predict and the ONNX export apply them to raw "
                        "inputs")
    p.add_argument("--categorical", metavar="auto|COLUMN[,...]",
                   help="one-hot encode these text columns of a .csv file (auto: every column that is mostly "
                        "text) with the categories seen in training, stored in the model file; a category "
                        "never seen in training is an error naming the column and value")
    p.add_argument("--missing", choices=("error", "drop", "mean", "median", "most_frequent"), default="error",
                   help="missing cells of a .csv file (empty, NA, NaN, null, ...): error (the default: every "
                        "missing cell counted, per column), drop the rows, or fill numeric columns with the "
                        "training rows' mean / median / most frequent value (text columns: the most frequent "
                        "category); the fill values are stored in the model file. A missing label is never a "
                        "class: refused with a count, or its row dropped with --missing drop")
    p.add_argument("--task", choices=("auto", "classification", "regression"), default="auto",
                   help="auto (the default): classification for integer or named labels, regression for "
                        "float labels; integer labels that would make more than sqrt(n) classes are refused "
                        "with a hint to choose. A class is a distinct label: ids 0..k-1 are the model's outputs; "
                        "other integer ids (e.g. 0 and 5) make one output per distinct id, stored as the "
                        "model's class names (predict prints the ids); one distinct label is refused")
    p.add_argument("--hidden", type=parse_hidden, default=parse_hidden(DEFAULTS["hidden"]), metavar="W1,W2,...",
                   help="hidden layer widths, comma-separated; '' or 0 for no hidden layer (default: 128)")
    p.add_argument("--activation", choices=tuple(fastnn.layers.ACTIVATIONS), default=DEFAULTS["activation"],
                   help="activation of the hidden layers (default: %(default)s)")
    p.add_argument("--optimizer", choices=("sgd", "adam"), default=DEFAULTS["optimizer"],
                   help="optimizer (default: %(default)s)")
    p.add_argument("--lr", type=_positive_float, default=None,
                   help="learning rate (default: 0.002 for adam, 0.05 for sgd)")
    p.add_argument("--momentum", type=_unit_interval, default=None,
                   help="SGD momentum (default: 0.9; sgd only)")
    p.add_argument("--epochs", type=_positive_int, default=DEFAULTS["epochs"],
                   help="passes over the data (default: %(default)s)")
    p.add_argument("--batch-size", type=_positive_int, default=DEFAULTS["batch_size"],
                   help="mini-batch size (default: %(default)s)")
    p.add_argument("--seed", type=_seed, default=DEFAULTS["seed"],
                   help="seed of the weights, the shuffling and the validation split (default: %(default)s)")
    p.add_argument("--threads", type=_positive_int, default=None,
                   help="threads for Numba and BLAS together (default: Numba's default, all cores)")
    p.add_argument("--val-split", type=_val_fraction, default=None, metavar="FRACTION",
                   help="hold out this fraction of the training data for validation, stratified by class for "
                        "classification (default: 0.2 when the data has no test set, else 0); without a test "
                        "set the reported score is the validation score")
    p.add_argument("--save", metavar="MODEL", help="write the trained model to this file (safetensors)")
    p.add_argument("--plot", metavar="PNG", help="write the training curves (loss, accuracy) to this PNG")
    p.add_argument("--quiet", "-q", action="store_true",
                   help="print the summary line only (the progress bar is shown only when standard error is a "
                        "terminal)")
    p.add_argument("--checkpoint", metavar="PATH",
                   help="write a crash-safe checkpoint here every --checkpoint-every epochs; if PATH exists, "
                        "resume from it (the same command then ends with bit-identical weights)")
    p.add_argument("--checkpoint-every", type=_positive_int, default=None, metavar="N",
                   help="epochs between checkpoints (default: the checkpoint policy of NeuralNetwork.fit's "
                        "checkpoint_every; a checkpoint is always written after the last epoch and on Ctrl-C)")
    p.add_argument("--distributed", action="store_true",
                   help="data-parallel training over the ranks of an MPI job: launch as 'mpiexec -n K fastnn "
                        "train --distributed ...' (or srun); --batch-size is per rank, the global batch is K "
                        "times it; rank 0 prints, saves and plots; --threads defaults to the cores per rank; an "
                        "error on any rank stops every rank (one error line, one exit code). Without a launcher "
                        "it trains on one rank and says so. Needs pip install 'fastnn[mpi]'")
    p.set_defaults(func=cmd_train, prog_=p.prog)

