"""What the fastnn commands share: exit codes, errors, value parsers, output and input checks, the model and
data readers of predict / evaluate."""
import argparse
import math
import os
import stat
import sys

__all__ = ["EXIT_OK", "EXIT_FAILURE", "EXIT_USAGE", "EXIT_INTERRUPTED", "EXIT_TERMINATED", "DEFAULTS", "DATASET_NAMES",
           "CLIError", "parse_hidden"]

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_TERMINATED, EXIT_HANGUP = 0, 1, 2, 130, 143, 129
SIGNAL_CODES = (EXIT_INTERRUPTED, EXIT_TERMINATED, EXIT_HANGUP)


def signal_exit(exc):
    """The exit code of a command a stop signal ended (``exc``: a KeyboardInterrupt, its ``signal_name``):
    130 Ctrl-C, 143 SIGTERM, 129 SIGHUP (fastnn.signals.exit_code, without importing fastnn)."""
    return {"SIGTERM": EXIT_TERMINATED, "SIGHUP": EXIT_HANGUP}.get(getattr(exc, "signal_name", None),
                                                                   EXIT_INTERRUPTED)


DEFAULTS = {"hidden": "128", "activation": "relu", "optimizer": "adam", "epochs": 40, "batch_size": 32,
            "seed": 0, "lr": {"adam": 0.002, "sgd": 0.05}, "momentum": 0.9}
DATASET_NAMES = ("digits", "xor", "spirals", "moons")


class CLIError(Exception):
    """A failure to report as one line ``fastnn: error: <message>`` with exit code ``code``."""

    def __init__(self, message, code=EXIT_USAGE):
        super().__init__(message)
        self.code = code


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is a CLIError (one line, exit 2) instead of usage text + exit."""

    def error(self, message):
        raise CLIError(f"{message} (see '{self.prog} --help')")


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's paragraphs (wrapped by _text) and the epilog's layout."""


def _text(text, width=79):
    """Wrap each paragraph (separated by blank lines) of a description."""
    import textwrap
    return "\n\n".join(textwrap.fill(" ".join(par.split()), width) for par in text.split("\n\n"))


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _seed(text):
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}")
    return value


def _number(text):
    """The float that ``text`` spells, or None."""
    try:
        return float(text)
    except ValueError:
        return None


def _positive_float(text):
    value = _number(text)
    if value is None or not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def _unit_interval(text):
    """A number in [0, 1) (momentum)."""
    value = _number(text)
    if value is None or not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1), got {text!r}")
    return value


def _val_fraction(text):
    """0 (no validation set) or a fraction in (0, 1)."""
    value = _number(text)
    if value is None or not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be 0 or a fraction between 0 and 1 such as 0.1, got {text!r}")
    return value


def parse_hidden(text):
    """'128,64' -> (128, 64); '' or '0' -> () (no hidden layer)."""
    text = text.strip()
    if text in ("", "0"):
        return ()
    widths = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or int(part) < 1:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated positive layer widths such as 128,64 ('' or 0 for no hidden "
                f"layer), got {text!r}")
        widths.append(int(part))
    return tuple(widths)


def _say(args, *parts, **kwargs):
    if not getattr(args, "quiet", False):
        print(*parts, **kwargs, flush=True)


def _error_text(exc):
    """One line describing an exception from a library call."""
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        text = f"{exc.filename}: {exc.strerror}"
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


def _check_output_path(path, what):
    """CLIError before any work when ``path`` cannot be written by the shared atomic writer (a FIFO, a
    device, a directory, a dangling symlink, a missing directory); never blocks."""
    from .._paths import output_target
    try:
        output_target(path, what)
    except (ValueError, TypeError) as exc:
        raise CLIError(_error_text(exc)) from None


def write_output(path, data, what):
    """Bytes to ``path`` through the shared atomic writer (fastnn.io.atomic_write); CLIError on failure."""
    from ..io import atomic_write
    try:
        atomic_write(path, data, what)
    except ValueError as exc:
        raise CLIError(_error_text(exc)) from None
    except OSError as exc:
        raise CLIError(f"cannot write {path}: {_error_text(exc)}", code=EXIT_FAILURE) from None


def _check_plot(path):
    from ..plotting import check_plot_path, require_matplotlib
    try:
        require_matplotlib()
    except ImportError as exc:
        raise CLIError(str(exc)) from None
    try:
        check_plot_path(path)
    except (ValueError, TypeError) as exc:
        raise CLIError(_error_text(exc)) from None
    _check_output_path(path, "plot")


def _check_input_file(path, what):
    """CLIError unless ``path`` is an existing regular file (a FIFO, device, directory or socket is
    refused at once: reading one could block forever or never end). A stat, so it cannot block."""
    from .._paths import kind
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise CLIError(f"{path}: no such {what} file") from None
    except OSError as exc:
        raise CLIError(_error_text(exc)) from None
    if not stat.S_ISREG(mode):
        raise CLIError(f"{path}: is {kind(mode)}, not a {what} file")


def _isatty(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _warn(args, message):
    """A one-line warning on stderr (``fastnn: warning: ...``), unless --quiet."""
    if not getattr(args, "quiet", False):
        _report(message, prefix="fastnn: warning: ")


def _fmt(value):
    return f"{value:.4f}" if abs(value) >= 1e-3 or value == 0 else f"{value:.3e}"


def _load_model(path):
    import fastnn as fnn
    from .. import io
    _check_input_file(path, "model")
    try:
        net = fnn.load(path)
        meta = io.load_metadata(path)
    except (ValueError, TypeError, OSError) as exc:
        raise CLIError(_error_text(exc)) from None
    extra = meta.get("extra") or {}
    return net, meta, extra if isinstance(extra, dict) else {}


def _read_csv_rows(path, header=True):
    """(header, rows, line numbers) of a CSV file (fastnn.data.read_csv_rows); CLIError when unreadable.
    ``header=False`` (--no-header): no header row, the columns named 1, 2, ... by position."""
    from ..data import read_csv_rows
    try:
        return read_csv_rows(path, header=header)
    except (OSError, ValueError) as exc:              # ValueError: a FIFO or device, an endless line, bad rows
        raise CLIError(_error_text(exc)) from None


def _read_csv_inputs(path, net, extra, target, warn=None, drop_missing=False, header=True):
    """(raw table, label strings or None, description, line numbers) from a CSV file.

    A model with stored columns (``net.preprocessing``: every model ``fastnn train`` writes from a CSV)
    takes them by name, in any order: a missing column is an error naming it, other columns are ignored
    and said (``warn``). Any other model takes the first n_features columns (and a label column after
    them, or --target) as numbers."""
    import numpy as np
    header, rows, lines = _read_csv_rows(path, header)
    if target is not None and target not in header:
        raise CLIError(f"{path}: no column named {target!r} for --target; columns are {header}")
    pre = net.preprocessing
    cells = np.array(rows, dtype=object)
    unnamed = pre is not None and not isinstance(extra.get("features"), list) and \
        pre.names == [f"x{k}" for k in range(len(pre.names))] and not set(pre.names) & set(header) and \
        all(c["kind"] == "numeric" for c in pre.columns)
    if pre is not None and not unnamed:       # unnamed: a model trained on arrays (.npz) takes columns by position
        names = pre.names
        absent = [c for c in names if c not in header]
        if absent:
            raise CLIError(f"{path}: no column {', '.join(map(repr, absent))}; the model was trained on the "
                           f"columns {names} and matches them by name (found: {header})")
        label = target if target is not None else extra.get("target")
        label_col = header.index(label) if isinstance(label, str) and label in header else None
        ignored = [h for i, h in enumerate(header) if h not in names and i != label_col]
        if ignored and warn is not None:
            warn(f"{path}: ignoring the column(s) {', '.join(ignored)} (not among the model's columns)")
        table = {c: cells[:, header.index(c)] for c in names}
        if drop_missing:             # evaluate --missing drop: score the complete rows, say how many were left out
            from ..preprocessing import is_missing
            used = list(table.values()) + ([cells[:, label_col]] if label_col is not None else [])
            keep = np.array([not any(is_missing(col[i]) for col in used) for i in range(len(cells))])
            if not keep.any():
                raise CLIError(f"{path}: every row has a missing cell in the model's columns or the label")
            if not keep.all() and warn is not None:
                warn(f"{path}: left out {int((~keep).sum())} row(s) with a missing cell (--missing drop)")
            cells, lines = cells[keep], [n for n, k in zip(lines, keep) if k]
            rows = [r for r, k in zip(rows, keep) if k]
            table = {c: cells[:, header.index(c)] for c in names}
        try:
            pre.transform(table, net.dtype, lines=lines)     # every bad cell named by its line
        except ValueError as exc:
            raise CLIError(f"{path}: {_error_text(exc)}") from None
    else:
        n_features = net.n_features
        if target is not None:
            label_col = header.index(target)
            columns = [i for i in range(len(header)) if i != label_col]
        elif len(header) == n_features:
            columns, label_col = list(range(len(header))), None
        elif len(header) == n_features + 1:
            columns, label_col = list(range(n_features)), n_features
        else:
            raise CLIError(f"{path}: the model takes {n_features} features, but the file has {len(header)} "
                           f"columns (expected {n_features}, or {n_features + 1} with a label column)")
        if len(columns) != n_features:
            raise CLIError(f"{path}: the model takes {n_features} features, but the file has {len(columns)} "
                           f"feature columns")
        from ..preprocessing import Preprocessing
        plain = Preprocessing([{"name": header[c], "kind": "numeric", "fill": None, "mean": None, "std": None}
                               for c in columns])
        try:
            table = plain.transform({header[c]: cells[:, c] for c in columns}, net.dtype, lines=lines)
        except ValueError as exc:
            raise CLIError(f"{path}: {_error_text(exc)}") from None
    labels = None
    if label_col is not None:
        labels = np.array([row[label_col].strip() for row in rows], dtype=object)
        from ..preprocessing import is_missing
        empty = [i for i, v in enumerate(labels) if is_missing(v)]
        if empty:
            raise CLIError(f"{path}, line {lines[empty[0]]}, column {header[label_col]!r}: missing label "
                           f"({len(empty)} row(s) without one)")
    return table, labels, path


def _read_npz_inputs(path, split):
    from ..data import read_npz
    try:
        _, keys = read_npz(path, ())
        use_test = split == "test" or (split is None and "X_test" in keys)
        xk, yk = ("X_test", "y_test") if use_test else ("X", "y")
        if xk not in keys:
            raise CLIError(f"{path}: missing array {xk!r} (found: {sorted(keys) or 'none'})")
        arrays, _ = read_npz(path, (xk, yk))
    except (ValueError, OSError) as exc:
        raise CLIError(_error_text(exc)) from None
    X, y = arrays[xk], arrays.get(yk)
    if X.ndim != 2 or X.dtype.kind not in "biuf" or X.size == 0:
        raise CLIError(f"{path}: {xk!r} must be a non-empty 2-D numeric array, got shape {X.shape} "
                       f"dtype {X.dtype}")
    if y is not None and (y.ndim not in (1, 2) or y.dtype.kind not in "biuf" or len(y) != len(X)):
        raise CLIError(f"{path}: {yk!r} must be a numeric array with {len(X)} rows, got shape {y.shape} "
                       f"dtype {y.dtype}")
    return X, y, f"{path} ({xk})"


def _read_inputs(data, net, extra, target=None, split=None, warn=None, drop_missing=False, header=True):
    """(X, labels or None, description) for predict / evaluate from a dataset name, .npz or .csv.
    ``header=False`` (--no-header): a .csv without a header row, its columns named 1, 2, ... by position."""
    from ..data import load_dataset
    ext = os.path.splitext(data)[1].lower()
    if not header and (data.lower() in DATASET_NAMES or ext != ".csv"):
        raise CLIError(f"--no-header applies only to .csv files, not {data!r}")
    if data.lower() in DATASET_NAMES:
        d = load_dataset(data, seed=0)
        use_test = d["X_test"] is not None and split != "train"
        if split == "test" and d["X_test"] is None:
            raise CLIError(f"the {data} dataset has no test split")
        X, y = (d["X_test"], d["y_test"]) if use_test else (d["X"], d["y"])
        if net.preprocessing is not None and any(c["kind"] != "numeric" for c in net.preprocessing.columns):
            raise CLIError(f"the model takes the raw columns {net.preprocessing.names} of a table; the {data} "
                           f"dataset has none (give a .csv file)")
        return X, y, f"{data} ({'test' if use_test else 'training'} split)"
    if ext not in (".npz", ".csv"):
        raise CLIError(f"unknown data {data!r}: expected a path ending in .npz or .csv, or one of "
                       f"{', '.join(DATASET_NAMES)}")
    _check_input_file(data, "data")
    if ext == ".npz":
        if target is not None:
            raise CLIError("--target applies only to .csv files")
        return _read_npz_inputs(data, split)
    return _read_csv_inputs(data, net, extra, target, warn=warn, drop_missing=drop_missing, header=header)


def _check_features(X, net, where):
    if isinstance(X, dict):      # a raw table, checked by name
        return
    if X.shape[1] != net.n_features:
        raise CLIError(f"{where}: the model takes {net.n_features} features, the data has {X.shape[1]}")


def _labels_for(net, extra, labels, where):
    """Targets ``net.evaluate`` takes: class names or ids (a model with stored class names maps them
    itself), or numbers for regression."""
    import numpy as np
    if net.preprocessing is not None and net.preprocessing.classes is not None:
        return labels
    if not net.classification:
        try:
            return np.asarray(labels).astype(np.float64)
        except ValueError:
            raise CLIError(f"{where}: the regression targets must be numbers") from None
    classes = extra.get("classes") if isinstance(extra.get("classes"), list) else None
    if classes is not None:
        def key(v):
            return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)
        index = {key(c): i for i, c in enumerate(classes)}
        keys = [key(v) for v in labels.tolist()]
        unknown = sorted(set(keys) - set(index))
        if unknown:
            raise CLIError(f"{where}: labels the model does not know: {unknown[:5]}; its classes are {classes}")
        return np.array([index[k] for k in keys], np.int64)
    if labels.dtype.kind in "USO":
        ids = []
        for v in labels.tolist():
            try:
                ids.append(_class_id(v))
            except (ValueError, OverflowError):
                raise CLIError(f"{where}: the labels must be integer class ids for this model, got {v!r:.40}") \
                    from None
        return np.array(ids, np.int64)
    return labels


def _class_id(text):
    """A class id from a label cell: an integer, or a whole number written as a float ("3.0", "3e+00": what
    np.savetxt and a float column of a DataFrame write); ValueError for anything else."""
    from ..data import number_text
    try:
        return int(text)
    except ValueError:
        value = number_text(str(text).strip())
        if not value.is_integer():
            raise
        return int(value)


def _class_name(extra, k):
    classes = extra.get("classes")
    if isinstance(classes, list) and 0 <= k < len(classes):
        return str(classes[k])
    return str(k)


def _missing_subcommand(parser, what):
    raise CLIError(f"choose {what} (see '{parser.prog} --help')")


def _report(message, prefix="fastnn: error: "):
    _write_line(prefix + " ".join(str(message).split()))


def _write_line(line):
    """``line`` on stderr after stdout's pending output. A stream whose terminal is gone (SIGHUP: the
    terminal closed, writes fail with EIO) or whose reader left (a broken pipe) is pointed at os.devnull,
    so that neither this line nor the interpreter's last flush at exit turns the command's exit code
    (129 after a hang-up) into a traceback or status 120."""
    for stream in (sys.stdout,):
        try:
            stream.flush()
        except (OSError, ValueError):
            _to_devnull(stream)
    try:
        print(line, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        _to_devnull(sys.stderr)


def _to_devnull(stream):
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
        stream.flush()           # (what was pending goes nowhere, now without an error)
    except (OSError, ValueError, AttributeError):
        pass



# -- distributed commands (mpiexec -n K fastnn train --distributed): one error line, one exit code ----------
LAUNCHER_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE", "PMIX_SIZE")
LAUNCHER_RANK_VARS = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK", "PMIX_RANK")


def launcher_world(environ=None):
    """(rank, size, variable) an MPI launcher announced in the environment, or (None, None, None) for a
    process no launcher started. Read before MPI is initialised (and when mpi4py is missing): mpiexec
    (MPICH/Hydra, Intel MPI: PMI_*), Open MPI (OMPI_COMM_WORLD_*), MVAPICH, PMIx, and a Slurm job step
    (``srun``: SLURM_STEP_ID with SLURM_NTASKS and SLURM_PROCID; a batch script alone is not a launch)."""
    env = os.environ if environ is None else environ

    def number(name):
        try:
            return int(env[name])
        except (KeyError, ValueError):
            return None
    for size_var, rank_var in zip(LAUNCHER_SIZE_VARS, LAUNCHER_RANK_VARS):
        if number(size_var) is not None or number(rank_var) is not None:
            return number(rank_var), number(size_var), size_var if number(size_var) is not None else rank_var
    if "SLURM_STEP_ID" in env and number("SLURM_NTASKS") is not None:
        return number("SLURM_PROCID"), number("SLURM_NTASKS"), "SLURM_NTASKS"
    return None, None, None


_ENDED = object()          # a command that ended before training without an error (--help)


def _strip_prefix(line):
    for prefix in ("fastnn: error: ", "fastnn: "):
        if line.startswith(prefix):
            return line[len(prefix):]
    return line


def outcome_of(exc):
    """(exit code, the one stderr line) for an exception a command ended with, as ``fastnn.cli._main``
    reports it."""
    if exc is _ENDED:
        return EXIT_OK, ""
    if isinstance(exc, CLIError):
        if getattr(exc, "line", None):
            return exc.code, exc.line
        return exc.code, "fastnn: error: " + " ".join(str(exc).split())
    if isinstance(exc, KeyboardInterrupt):
        code = signal_exit(exc)
        return code, "fastnn: " + " ".join((str(exc) or "interrupted").split())
    if isinstance(exc, ImportError):
        return EXIT_FAILURE, "fastnn: error: " + _error_text(exc)
    if isinstance(exc, MemoryError):
        return EXIT_FAILURE, "fastnn: error: out of memory (try a smaller --batch-size or fewer/narrower --hidden layers)"
    return EXIT_FAILURE, (f"fastnn: error: unexpected {type(exc).__name__}: {_error_text(exc)} "
                          f"(set FASTNN_DEBUG=1 for the traceback)")


class RankSync:
    """The agreement points of a distributed command, so that a failure on any rank ends every rank with one
    line on stderr (printed by rank 0) and one exit code.

    A command passes two points, each one collective on every rank: ``setup(error, options)`` when it is
    ready to train (after parsing, reading the data, building the network; ``options``: what every rank
    must share) and ``finish(error)`` when it ends. A rank that fails before ``setup`` goes to it with its
    error at once, so no rank waits for it; between the two, fastnn's distributed fit keeps the ranks in
    step itself (it raises the same exception on every rank). ``finish`` returns the agreed exit code."""

    def __init__(self, comm):
        self.comm, self.rank, self.size = comm, comm.Get_rank(), comm.Get_size()
        self.stage = "setup"        # -> "fit" (set-up agreed) -> "end" (fit returned or raised on every rank)
        self.agreed = None          # the CLIError raised on every rank at an agreement point

    def _gather(self, outcome, options=None):
        gathered = self.comm.allgather((outcome, options))
        failed = {r: o for r, (o, _) in enumerate(gathered) if o is not None}
        return failed, [opts for _, opts in gathered]

    @staticmethod
    def _verdict(failed, size):
        """(code, line) of the failed ranks: the lowest failed rank's code (of signals: SIGTERM over SIGHUP over
        SIGINT)
        and line, which names the rank unless every rank failed the same way; other ranks' other errors
        follow it."""
        first = min(failed)
        code = failed[first][0]
        signal_codes = {c for c, _ in failed.values() if c in SIGNAL_CODES}
        if code in signal_codes:
            order = (EXIT_INTERRUPTED, EXIT_HANGUP, EXIT_TERMINATED)
            code = max(signal_codes, key=order.index)
        texts = {r: _strip_prefix(line) for r, (_, line) in failed.items()}
        if len(set(texts.values())) == 1 and len(failed) == size:
            return code, failed[first][1]
        prefix = failed[first][1][:len(failed[first][1]) - len(texts[first])]
        same = [r for r in sorted(failed) if r != first and texts[r] == texts[first]]
        other = [f"rank {r}: {texts[r]}" for r in sorted(failed) if r != first and texts[r] != texts[first]]
        ranks = ", ".join(map(str, [first] + same))
        return code, f"{prefix}rank{'s' if same else ''} {ranks}: {texts[first]}" + "".join(f"; {o}" for o in other)

    def setup(self, error=None, options=None):
        """Collective: every rank's set-up outcome and options; CLIError on every rank when a rank failed or
        the ranks were given different options."""
        failed, all_options = self._gather(None if error is None else outcome_of(error), options)
        self.stage = "fit"
        ended = [r for r, (c, _) in failed.items() if c == EXIT_OK]
        if ended and len(ended) == self.size:          # every rank ended before training (--help)
            self.stage = "done"
            return EXIT_OK
        if ended:
            failed = {r: (EXIT_USAGE, "fastnn: error: ended before training (was it given --help?) while "
                                      "other ranks went on") if c == EXIT_OK else (c, line)
                      for r, (c, line) in failed.items()}
        if failed:
            code, line = self._verdict(failed, self.size)
            self._fail(code, line)
        differ = []
        for name in (all_options[0] or {}):
            values = {}
            for r, opts in enumerate(all_options):
                value = (opts or {}).get(name)
                values.setdefault(value if isinstance(value, str) else repr(value), []).append(r)
            if len(values) > 1:
                differ.append(f"{name} (" + "; ".join(
                    f"rank{'s' if len(rs) > 1 else ''} {', '.join(map(str, rs))}: {v}" for v, rs in values.items())
                    + ")")
        if differ:
            self._fail(EXIT_USAGE, "fastnn: error: --distributed: the ranks were given different options: "
                       + ", ".join(differ) + "; launch every rank with the same command")

    def _fail(self, code, line):
        self.stage = "done"
        self.agreed = CLIError(line, code)
        self.agreed.line = line
        raise self.agreed

    def abort(self, exc):
        """This rank failed where the others cannot learn of it (inside fit's collectives): one line, then
        MPI_Abort ends every rank (the launcher reports it)."""
        code, line = outcome_of(exc)
        text = _strip_prefix(line)
        _report_line(f"{line[:len(line) - len(text)]}rank {self.rank}: {text}; aborting every rank")
        import time
        from ..engines.distributed import ABORT_GRACE
        time.sleep(ABORT_GRACE)     # mpiexec forwards the line before Abort tears its I/O down
        self.comm.Abort(code)
        os._exit(code)      # MPICH's MPI_Abort can return before the launcher ends this process: never go on

    def finish(self, error=None):
        """Collective (unless an agreement point already ended the command): the exit code every rank
        returns; rank 0 prints the one error line."""
        if error is not None and error is self.agreed:
            code, line = error.code, error.line
        elif self.stage == "setup":        # this rank ended before training: with an error, or at once (--help)
            try:
                return self.setup(error if error is not None else _ENDED)
            except CLIError as exc:
                code, line = exc.code, exc.line
        else:
            failed, _ = self._gather(None if error is None else outcome_of(error))
            self.stage = "done"
            if not failed:
                return EXIT_OK
            code, line = self._verdict(failed, self.size)
        if self.rank == 0:
            _report_line(line)
        return code


def _report_line(line):
    _write_line(line)
