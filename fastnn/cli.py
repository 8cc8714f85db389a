"""The ``fastnn`` command line: train, predict, evaluate, info, gradcheck, demo, bench.

Run ``fastnn --help`` or ``fastnn COMMAND --help``. Exit codes: 0 success; 1 a runtime failure (training
diverged, a failed gradient check, an unexpected error); 2 bad input (unknown option, bad value, missing
or malformed file, wrong shapes); 130 interrupted (Ctrl-C), 143 terminated (SIGTERM). Errors are one line on stderr,
``fastnn: error: ...``, never a traceback (set FASTNN_DEBUG=1 to get the traceback of an unexpected error).
"""
import argparse
import csv
import math
import os
import stat
import sys
import time

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 2, 130, 143

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


# ------------------------------------------------------------------------------------ value parsers

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


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def _unit_interval(text):
    """A number in [0, 1) (momentum)."""
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1), got {text!r}")
    return value


def _val_fraction(text):
    """0 (no validation set) or a fraction in (0, 1)."""
    try:
        value = float(text)
    except ValueError:
        value = None
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


# ----------------------------------------------------------------------------------------- helpers

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
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise CLIError(f"cannot write the {what} {path}: the directory {directory} does not exist")
    if os.path.isdir(path):
        raise CLIError(f"cannot write the {what} {path}: it is a directory")


def _check_plot(path):
    from .plotting import require_matplotlib
    try:
        require_matplotlib()
    except ImportError as exc:
        raise CLIError(str(exc)) from None
    _check_output_path(path, "plot")


def _check_input_file(path, what):
    """CLIError unless ``path`` is an existing regular file (a FIFO, device, directory or socket is
    refused at once: reading one could block forever or never end). A stat, so it cannot block."""
    from ._paths import kind
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


def standardization(X):
    """(mean, std) of each column of X in float64; a constant column gets std 1 (it becomes 0, no division by
    zero)."""
    import numpy as np
    X = np.asarray(X, np.float64)
    mean, std = X.mean(axis=0), X.std(axis=0)
    std[~(std > 0)] = 1.0
    return mean, std


def scale(X, mean, std):
    """(X - mean) / std in X's float dtype (float32 for integer inputs)."""
    import numpy as np
    dtype = X.dtype if X.dtype.kind == "f" else np.float32
    return ((np.asarray(X, np.float64) - mean) / std).astype(dtype)


def _model_scaling(extra, n_features, path):
    """(mean, std) arrays of a model trained with --standardize, None for one without; CLIError when the
    stored values are malformed."""
    import numpy as np
    stored = extra.get("standardize")
    if stored is None:
        return None
    try:
        mean = np.asarray(stored["mean"], np.float64)
        std = np.asarray(stored["std"], np.float64)
        ok = mean.shape == std.shape == (n_features,) and np.isfinite(mean).all() and (std > 0).all() \
            and np.isfinite(std).all()
    except (TypeError, KeyError, ValueError):
        ok = False
    if not ok:
        raise CLIError(f"{path}: the stored standardization is malformed (expected a finite mean and a "
                       f"positive std for each of the {n_features} features)")
    return mean, std


def _fmt(value):
    return f"{value:.4f}" if abs(value) >= 1e-3 or value == 0 else f"{value:.3e}"


# ------------------------------------------------------------------------------------------- train

def _csv_header(path):
    from ._paths import open_text
    from .data import csv_reader
    try:
        with open_text(path, "data file") as fh:
            return [h.strip() for h in next(csv_reader(fh, path), [])]
    except (OSError, ValueError, csv.Error):      # UnicodeDecodeError is a ValueError
        return None


def _decide_task(args, y, y_test, classes):
    """('classification', n_outputs, y, y_test) or ('regression', n_outputs, y, y_test)."""
    import numpy as np
    task = args.task
    if task == "auto":
        task = "classification" if (classes is not None or y.dtype.kind in "biu") else "regression"
    if task == "regression":
        if classes is not None:
            raise CLIError("--task regression needs numeric targets, but the labels are names")
        y = y.astype(np.float64)
        y_test = None if y_test is None else y_test.astype(np.float64)
        return task, (1 if y.ndim == 1 else y.shape[1]), y, y_test
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
        return task, y.shape[1], y, y_test
    y = y.astype(np.int64)
    y_test = None if y_test is None else y_test.astype(np.int64)
    low = min(int(a.min()) for a in both)
    if low < 0:
        raise CLIError(f"class labels must be integers >= 0, got {low} (use --task regression for numeric "
                       "targets)")
    n_classes = len(classes) if classes is not None else max(int(a.max()) for a in both) + 1
    n_samples = sum(len(a) for a in both)
    limit = max(math.sqrt(n_samples), 10)
    if args.task == "auto" and classes is None and n_classes > limit:
        raise CLIError(f"the integer target would make {n_classes:,} classes from {n_samples:,} samples (more "
                       f"than sqrt(n) = {math.sqrt(n_samples):.0f}): if it is a quantity, use --task regression; "
                       f"if it really is class ids, use --task classification")
    if n_classes < 2:
        raise CLIError(f"classification needs at least 2 classes, but the labels are all {int(y[0])}")
    return task, n_classes, y, y_test


def build_network(n_inputs, hidden, n_outputs, activation, task, optimizer, seed):
    """The NeuralNetwork ``fastnn train`` trains: FullyConnected + activation per hidden layer, a linear
    output layer, SoftmaxCrossEntropy (classification) or L2Loss (regression)."""
    import fastnn as fnn
    from .layers import ACTIVATIONS
    init = "he" if activation == "relu" else "xavier"
    layers, width = [], n_inputs
    for h in hidden:
        layers += [fnn.FullyConnected(width, h, init=init), ACTIVATIONS[activation]()]
        width = h
    layers.append(fnn.FullyConnected(width, n_outputs, init=init))
    loss = fnn.SoftmaxCrossEntropy() if task == "classification" else fnn.L2Loss()
    return fnn.NeuralNetwork(layers, loss=loss, optimizer=optimizer, seed=seed)


def cmd_train(args):
    import fastnn as fnn
    from .data import load_dataset, train_test_split

    if args.lr is None:
        args.lr = DEFAULTS["lr"][args.optimizer]
    if args.momentum is None:
        args.momentum = DEFAULTS["momentum"] if args.optimizer == "sgd" else 0.0
    elif args.optimizer != "sgd":
        raise CLIError("--momentum applies to --optimizer sgd only (Adam has its own moment estimates)")
    if args.plot:
        _check_plot(args.plot)
    if args.save:
        _check_output_path(args.save, "model file")
    rank = 0
    if args.distributed:
        from . import distributed     # ImportError (reported in one line) with the install hint
        rank, ranks = distributed.world()
        if rank != 0:                 # rank 0 alone prints, saves and plots
            args.quiet, args.save, args.plot = True, None, None
        if args.threads is None:
            args.threads = distributed.threads_per_rank()
    if args.threads is not None:
        try:
            fnn.set_num_threads(args.threads)
        except ValueError as exc:
            raise CLIError(f"--threads: {_error_text(exc)}") from None
    if args.data.lower() not in DATASET_NAMES and os.path.splitext(args.data)[1].lower() in (".npz", ".csv"):
        _check_input_file(args.data, "data")

    drop = [name.strip() for text in args.drop or () for name in text.split(",") if name.strip()]
    is_csv = args.data.lower().endswith(".csv") and args.data.lower() not in DATASET_NAMES
    if drop and not is_csv:
        raise CLIError(f"--drop applies only to .csv files, not {args.data!r}")
    try:
        data = load_dataset(args.data, target=args.target, seed=0, drop=drop)
    except (ValueError, TypeError, OSError) as exc:
        raise CLIError(_error_text(exc)) from None
    X, y, X_test, y_test, classes = data["X"], data["y"], data["X_test"], data["y_test"], data["classes"]
    task, n_outputs, y, y_test = _decide_task(args, y, y_test, classes)
    features = data.get("features")
    target_name = None
    if is_csv:
        header = _csv_header(args.data)
        if header:
            target_name = args.target if args.target is not None else header[-1]
        from .data import id_like_columns
        for name, how in id_like_columns(X, features):
            _warn(args, f"column {name!r} looks like a row id ({how}): a model can learn the row order "
                        f"instead of the data (a file sorted by class gives the class away); drop it with "
                        f"--drop {name}")

    if args.val_split is None:      # the headline score is on held-out data: hold some out if there is no test set
        args.val_split = 0.2 if X_test is None else 0.0
    X_val = y_val = None
    if args.val_split:
        stratify = task == "classification" and y.ndim == 1
        try:
            X, X_val, y, y_val = train_test_split(X, y, test_size=args.val_split, stratify=stratify,
                                                  seed=args.seed)
        except ValueError as exc:
            raise CLIError(f"--val-split {args.val_split}: {_error_text(exc)}") from None

    scaling = None
    if args.standardize:             # from the training rows only; applied to validation and test rows alike
        mean, std = standardization(X)
        X, X_val, X_test = (None if a is None else scale(a, mean, std) for a in (X, X_val, X_test))
        scaling = {"mean": mean.tolist(), "std": std.tolist()}

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
    batch = (f"batch {args.batch_size} x {ranks} ranks = {args.batch_size * ranks}" if args.distributed
             else f"batch {args.batch_size}")
    _say(args, f"network  {shape}{hidden_act}, {type(net.loss).__name__}; {opt}; {batch}; "
               f"{args.epochs} epochs; seed {args.seed}")

    start = time.perf_counter()
    try:
        history = net.fit(X, y, epochs=args.epochs, batch_size=args.batch_size,
                          validation_data=None if X_val is None else (X_val, y_val),
                          verbose=0 if args.quiet or not _isatty(sys.stderr) else 1, seed=args.seed,
                          distributed=args.distributed, checkpoint=args.checkpoint,
                          checkpoint_every=args.checkpoint_every)
    except fnn.TrainingDivergedError as exc:
        raise CLIError(_error_text(exc), code=EXIT_FAILURE) from None
    except (ValueError, TypeError) as exc:
        raise CLIError(_error_text(exc)) from None
    except RuntimeError as exc:     # fastnn.distributed.DistributedError: a rank failed, all ranks stop
        if not args.distributed:
            raise
        raise CLIError(_error_text(exc), code=EXIT_FAILURE) from None
    elapsed = time.perf_counter() - start

    times = history.get("time", [])
    if len(times) >= 2:
        rate = len(X) * (len(times) - 1) / max(sum(times[1:]), 1e-12)
    else:
        rate = len(X) * args.epochs / max(elapsed, 1e-12)
    val_share = f"held-out {args.val_split:.0%}"
    if X_test is not None:
        where, held, X_eval, y_eval = "test", f"test set, {len(X_test):,} samples", X_test, y_test
    elif X_val is not None:
        where, held, X_eval, y_eval = "validation", f"{val_share}, {len(X_val):,} samples", X_val, y_val
    else:
        where, held, X_eval, y_eval = ("train", "the training data itself, not held out: optimistic; "
                                       "--val-split 0.2 holds out 20%", X, y)
    try:
        scores = net.evaluate(X_eval, y_eval)
    except ValueError as exc:
        raise CLIError(f"cannot evaluate on the {where} data: {_error_text(exc)}") from None
    if X_val is not None and X_test is not None:
        val = net.evaluate(X_val, y_val)
        val_text = (f"accuracy {val['accuracy']:.4f}, " if "accuracy" in val else "") + f"loss {_fmt(val['loss'])}"
        _say(args, f"validation {val_text} ({val_share}, {len(X_val):,} samples)")
    if task == "classification":
        score = f"{where} accuracy {scores['accuracy']:.4f} ({held})"
    else:
        rmse = math.sqrt(2 * scores["loss"] / n_outputs)  # L2Loss = 0.5 * squared error summed over outputs
        score = f"{where} loss {_fmt(scores['loss'])} (RMSE {_fmt(rmse)}; {held})"
    timing = f"time {elapsed:.2f} s"
    if len(times) >= 2:  # the time beyond steady-state epochs: Numba's first-call compilation / cache load
        startup = elapsed - len(times) * sum(times[1:]) / (len(times) - 1)
        if startup > 0.1 and startup > 0.2 * elapsed:
            timing += f", {startup:.2f} s of it Numba start-up (compilation or cache load)"
    if rank == 0:
        print(f"{score} | {rate:,.0f} samples/s | {timing}", flush=True)

    if args.save:
        from . import io
        extra = {"trained_with": "fastnn train", "data": data["name"], "task": task, "classes": classes,
                 "features": features, "target": target_name, "hidden": list(args.hidden),
                 "activation": args.activation, "optimizer": args.optimizer, "lr": args.lr,
                 "momentum": args.momentum, "epochs": args.epochs, "batch_size": args.batch_size,
                 "seed": args.seed, "val_split": args.val_split, "n_train": len(X), "dropped": drop,
                 "standardize": scaling,
                 f"{where}_loss": scores["loss"], "train_time_s": round(elapsed, 4),
                 "fastnn_version": fnn.__version__}
        if "accuracy" in scores:
            extra[f"{where}_accuracy"] = scores["accuracy"]
        try:
            io.save(net, args.save, extra=extra)
        except (OSError, ValueError) as exc:
            raise CLIError(f"cannot save the model: {_error_text(exc)}", code=EXIT_FAILURE) from None
        _say(args, f"saved the model to {args.save}")
    if args.plot:
        from .plotting import plot_history
        plot_history(history, args.plot, title=f"fastnn train: {shape} on {data['name']}")
        _say(args, f"wrote the training curves to {args.plot}")
    return EXIT_OK


# ------------------------------------------------------------------------ predict / evaluate / info

def _load_model(path):
    import fastnn as fnn
    from . import io
    _check_input_file(path, "model")
    try:
        net = fnn.load(path)
        meta = io.load_metadata(path)
    except (ValueError, TypeError, OSError) as exc:
        raise CLIError(_error_text(exc)) from None
    extra = meta.get("extra") or {}
    return net, meta, extra if isinstance(extra, dict) else {}


def _parse_float_cells(path, rows, lines, columns, names):
    import numpy as np
    X = np.empty((len(rows), len(columns)), np.float64)
    for r, row in enumerate(rows):
        for k, c in enumerate(columns):
            cell = row[c].strip()
            try:
                value = float(cell)
            except ValueError:
                value = math.nan
            if not math.isfinite(value):
                raise CLIError(f"{path}, line {lines[r]}, column {names[c]!r}: expected a finite number, "
                               f"got {cell!r}")
            X[r, k] = value
    return X


def _read_csv_inputs(path, n_features, extra, target):
    """(X, label strings or None, description) from a CSV file for a model of ``n_features`` inputs."""
    import numpy as np

    from ._paths import open_text
    from .data import csv_reader
    try:
        with open_text(path, "data file") as fh:
            reader = csv_reader(fh, path)
            header = [h.strip() for h in next(reader, [])]
            rows, lines = [], []
            for row in reader:
                if not any(c.strip() for c in row):
                    continue
                if len(row) != len(header):
                    raise CLIError(f"{path}, line {reader.line_num}: {len(row)} fields, the header has "
                                   f"{len(header)}")
                rows.append(row)
                lines.append(reader.line_num)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise CLIError(f"{path}: not a readable UTF-8 CSV file ({_error_text(exc)})") from None
    except (OSError, ValueError) as exc:              # ValueError: a FIFO or device, an endless line
        raise CLIError(_error_text(exc)) from None
    if not header or header == [""]:
        raise CLIError(f"{path}: empty file (a header row is required)")
    if not rows:
        raise CLIError(f"{path}: no data rows after the header")
    if target is not None and target not in header:
        raise CLIError(f"{path}: no column named {target!r} for --target; columns are {header}")
    features = extra.get("features")
    if isinstance(features, list) and len(features) == n_features and all(f in header for f in features):
        columns = [header.index(f) for f in features]  # the training columns, by name
        label = target if target is not None else extra.get("target")
        label_col = header.index(label) if label in header else None
    elif target is not None:
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
    X = _parse_float_cells(path, rows, lines, columns, header)
    labels = None
    if label_col is not None:
        labels = np.array([row[label_col].strip() for row in rows])
        if (labels == "").any():
            r = int(np.flatnonzero(labels == "")[0])
            raise CLIError(f"{path}, line {lines[r]}, column {header[label_col]!r}: empty label")
    return X, labels, path


def _read_npz_inputs(path, split):
    from .data import read_npz
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


def _read_inputs(data, net, extra, target=None, split=None):
    """(X, labels or None, description) for predict / evaluate from a dataset name, .npz or .csv."""
    from .data import load_dataset
    ext = os.path.splitext(data)[1].lower()
    if data.lower() in DATASET_NAMES:
        d = load_dataset(data, seed=0)
        use_test = d["X_test"] is not None and split != "train"
        if split == "test" and d["X_test"] is None:
            raise CLIError(f"the {data} dataset has no test split")
        X, y = (d["X_test"], d["y_test"]) if use_test else (d["X"], d["y"])
        return X, y, f"{data} ({'test' if use_test else 'training'} split)"
    if ext not in (".npz", ".csv"):
        raise CLIError(f"unknown data {data!r}: expected a path ending in .npz or .csv, or one of "
                       f"{', '.join(DATASET_NAMES)}")
    _check_input_file(data, "data")
    if ext == ".npz":
        if target is not None:
            raise CLIError("--target applies only to .csv files")
        return _read_npz_inputs(data, split)
    return _read_csv_inputs(data, net.n_features, extra, target)


def _check_features(X, net, where):
    if X.shape[1] != net.n_features:
        raise CLIError(f"{where}: the model takes {net.n_features} features, the data has {X.shape[1]}")


def _scaled_inputs(X, net, extra, path):
    """Raw inputs scaled as the model's training inputs were (a model trained with --standardize)."""
    scaling = _model_scaling(extra, net.n_features, path)
    return X if scaling is None else scale(X, *scaling)


def _labels_for(net, extra, labels, where):
    """Targets the network can score: class ids (mapped through the model's class names) or floats."""
    import numpy as np
    classes = extra.get("classes") if isinstance(extra.get("classes"), list) else None
    if not net.classification:
        try:
            return labels.astype(np.float64)
        except ValueError:
            raise CLIError(f"{where}: the regression targets must be numbers") from None
    if classes is not None:  # labels are class names (or values): map them to the model's class ids
        def key(v):
            return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)
        index = {key(c): i for i, c in enumerate(classes)}
        keys = [key(v) for v in labels.tolist()]
        unknown = sorted(set(keys) - set(index))
        if unknown:
            raise CLIError(f"{where}: labels the model does not know: {unknown[:5]}; its classes are {classes}")
        return np.array([index[k] for k in keys], np.int64)
    if labels.dtype.kind in "US":
        try:
            return np.array([int(v) for v in labels.tolist()], np.int64)
        except ValueError:
            raise CLIError(f"{where}: the labels must be integer class ids for this model") from None
    return labels


def _class_name(extra, k):
    classes = extra.get("classes")
    if isinstance(classes, list) and 0 <= k < len(classes):
        return str(classes[k])
    return str(k)


def cmd_predict(args):
    net, _, extra = _load_model(args.model)
    if args.proba and not net.classification:
        raise CLIError("--proba needs a classification model; this model does regression")
    if args.out:
        _check_output_path(args.out, "output file")
    X, _, where = _read_inputs(args.data, net, extra, target=args.target, split=args.split)
    _check_features(X, net, where)
    X = _scaled_inputs(X, net, extra, args.model)
    try:
        pred = net.predict(X)
        proba = net.predict_proba(X) if args.proba else None
    except (ValueError, TypeError) as exc:
        raise CLIError(f"{where}: {_error_text(exc)}") from None
    if net.classification:
        header = ["prediction"]
        if proba is not None:
            header += [f"p_{_class_name(extra, k)}" for k in range(proba.shape[1])]
        rows = ([_class_name(extra, int(p))] + ([f"{v:.6g}" for v in proba[i]] if proba is not None else [])
                for i, p in enumerate(pred))
    else:
        header = ["prediction"] if pred.shape[1] == 1 else [f"output_{k}" for k in range(pred.shape[1])]
        rows = ([f"{v:.6g}" for v in row] for row in pred)
    if args.out:
        try:
            with open(args.out, "w", newline="", encoding="utf-8") as fh:
                writer = csv.writer(fh)
                writer.writerow(header)
                writer.writerows(rows)
        except OSError as exc:
            raise CLIError(f"cannot write {args.out}: {_error_text(exc)}", code=EXIT_FAILURE) from None
        print(f"wrote {len(pred):,} predictions for {where} to {args.out}")
    else:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return EXIT_OK


def cmd_evaluate(args):
    net, _, extra = _load_model(args.model)
    X, labels, where = _read_inputs(args.data, net, extra, target=args.target, split=args.split)
    if labels is None:
        raise CLIError(f"{where}: no labels to evaluate against (a .csv needs a label column, an .npz "
                       f"the array 'y' or 'y_test')")
    _check_features(X, net, where)
    X = _scaled_inputs(X, net, extra, args.model)
    y = _labels_for(net, extra, labels, where)
    try:
        scores = net.evaluate(X, y)
    except (ValueError, TypeError) as exc:
        raise CLIError(f"{where}: {_error_text(exc)}") from None
    parts = [f"loss {_fmt(scores['loss'])}"]
    if "accuracy" in scores:
        parts.append(f"accuracy {scores['accuracy']:.4f}")
    print(f"{' | '.join(parts)} | {len(X):,} samples from {where}")
    return EXIT_OK


def describe_architecture(arch):
    """'64 -> FullyConnected(128) -> ReLU -> FullyConnected(10)' from a network config dict."""
    layers = arch.get("layers", []) if isinstance(arch, dict) else []
    parts = []
    for entry in layers:
        name, cfg = (entry + [{}])[:2] if isinstance(entry, list) else (str(entry), {})
        if name == "FullyConnected" and isinstance(cfg, dict):
            if not parts:
                parts.append(str(cfg.get("in_features", "?")))
            parts.append(f"FullyConnected({cfg.get('out_features', '?')}, init={cfg.get('init', '?')})")
        else:
            parts.append(str(name))
    return " -> ".join(parts)


def _describe_scaling(scaling):
    mean, std = scaling.get("mean"), scaling.get("std")
    if not (isinstance(mean, list) and isinstance(std, list) and len(mean) == len(std)):
        return "standardized (malformed values)"
    shown = ", ".join(f"{m:.4g}/{s:.4g}" for m, s in zip(mean[:4], std[:4])
                      if isinstance(m, (int, float)) and isinstance(s, (int, float)))
    more = ", ..." if len(mean) > 4 else ""
    return (f"standardized with the training rows' mean/std of {len(mean)} features ({shown}{more}); "
            f"predict and evaluate apply it to raw inputs")


def _describe_checkpoint(state):
    """A training checkpoint's position and settings, without its generator state or data fingerprint."""
    s = state.get("settings") if isinstance(state.get("settings"), dict) else {}
    schedule = s.get("lr_schedule")
    parts = [f"after epoch {state.get('epoch')}"
             + (f" and {state['partial'].get('batches')} batches of the next"
                if isinstance(state.get("partial"), dict) else ""),
             f"batch {s.get('batch_size')}", f"shuffle {'on' if s.get('shuffle') else 'off'}",
             f"seed {s.get('seed')}", f"{s.get('n_samples')} training samples",
             "validation data" if s.get("validation") else "no validation data",
             f"{s.get('path')} path" if s.get("path") else None,
             f"lr schedule {schedule.get('type')}" if isinstance(schedule, dict) else None,
             "sample weights" if s.get("weights") else None,
             f"written with {state.get('threads')} threads" if state.get("threads") else None]
    return ", ".join(p for p in parts if p)


def cmd_info(args):
    net, meta, extra = _load_model(args.model)
    size = os.path.getsize(args.model)
    arch = meta.get("architecture", {})
    loss = (arch.get("loss") or ["?"])[0]
    opt = arch.get("optimizer")
    opt_name, opt_cfg = (opt[0], opt[1]) if isinstance(opt, list) and len(opt) == 2 else ("?", {})
    opt_args = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in opt_cfg.items())
    rows = [("model", f"{args.model} ({size:,} bytes, safetensors, fastnn format version "
                      f"{meta.get('format_version')})"),
            ("architecture", describe_architecture(arch)),
            ("loss", f"{loss} ({'classification' if net.classification else 'regression'}, "
                     f"{net.n_outputs} output{'s' if net.n_outputs != 1 else ''})"),
            ("parameters", f"{net.n_params:,} ({meta.get('dtype', net.dtype.name)})"),
            ("optimizer", f"{opt_name}({opt_args}), {meta.get('optimizer_steps', 0):,} steps taken")]
    if isinstance(extra.get("classes"), list):
        rows.append(("classes", ", ".join(str(c) for c in extra["classes"])))
    if isinstance(extra.get("features"), list):
        dropped = extra.get("dropped") if isinstance(extra.get("dropped"), list) else []
        rows.append(("features", ", ".join(map(str, extra["features"]))
                     + (f" (dropped: {', '.join(map(str, dropped))})" if dropped else "")))
    scaling = extra.get("standardize")
    if isinstance(scaling, dict):
        rows.append(("inputs", _describe_scaling(scaling)))
    state = extra.get("checkpoint")
    if isinstance(state, dict):
        rows.append(("checkpoint", _describe_checkpoint(state)))
    if extra.get("trained_with"):
        settings = [f"data {extra.get('data')}", f"{extra.get('n_train', '?'):,} samples"
                    if isinstance(extra.get("n_train"), int) else None,
                    f"hidden {','.join(str(h) for h in extra.get('hidden', [])) or 'none'}",
                    f"activation {extra.get('activation')}", f"{extra.get('optimizer')} lr {extra.get('lr')}",
                    f"momentum {extra.get('momentum')}" if extra.get("optimizer") == "sgd" else None,
                    f"{extra.get('epochs')} epochs", f"batch {extra.get('batch_size')}",
                    f"seed {extra.get('seed')}",
                    f"validation split {extra.get('val_split')}" if extra.get("val_split") else None,
                    f"trained in {extra.get('train_time_s'):.2f} s"
                    if isinstance(extra.get("train_time_s"), (int, float)) else None]
        rows.append(("training", ", ".join(s for s in settings if s)))
        scores = [f"{k.replace('_', ' ')} {_fmt(v)}" for k, v in extra.items()
                  if k.split("_")[0] in ("test", "validation", "train") and k.split("_")[-1] in ("accuracy", "loss")
                  and isinstance(v, (int, float))]
        if scores:
            rows.append(("scores", ", ".join(scores)))
    else:
        others = {k: v for k, v in extra.items() if k != "checkpoint" and isinstance(v, (int, float, str, bool))}
        if others:
            rows.append(("extra", ", ".join(f"{k}={v}" for k, v in others.items())[:300]))
    history = meta.get("history") or {}
    if history.get("loss"):
        epochs = state.get("epoch") if isinstance(state, dict) and isinstance(state.get("epoch"), int) \
            else len(history["loss"])
        last = ", ".join(f"{k} {_fmt(v[-1])}" for k, v in history.items()
                         if v and k != "time" and isinstance(v[-1], (int, float)))  # not per-layer lists
        rows.append(("history", f"{epochs:,} epochs trained; last epoch: {last}"))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return EXIT_OK


def cmd_export(args):
    from . import export
    net, _, extra = _load_model(args.model)
    _check_output_path(args.onnx, "ONNX file")
    head = export.head_of(net)
    classes = extra.get("classes")
    if not (isinstance(classes, list) and head in ("softmax", "probabilities") and len(classes) == net.n_outputs):
        classes = None
    scaling = extra.get("standardize")        # fastnn train --standardize: the graph scales its input too
    if scaling is not None and not (isinstance(scaling, dict) and {"mean", "std"} <= set(scaling)):
        raise CLIError(f"cannot export {args.model}: its input scaling ('standardize' in the file) is not "
                       f"{{mean, std}}; the ONNX graph would get unscaled inputs")
    standardize = None if scaling is None else (scaling["mean"], scaling["std"])
    try:
        export.export_onnx(net, args.onnx, classes=classes, standardize=standardize)
    except ImportError as exc:
        raise CLIError(str(exc), code=EXIT_FAILURE) from None
    except (ValueError, TypeError) as exc:
        raise CLIError(f"cannot export {args.model}: {_error_text(exc)}") from None
    except OSError as exc:
        raise CLIError(f"cannot write {args.onnx}: {_error_text(exc)}", code=EXIT_FAILURE) from None
    outputs = export.output_names(head)
    print(f"wrote {args.onnx}: ONNX opset {export.OPSET}, input 'input' (batch, {net.n_features}) "
          f"{net.dtype.name}, outputs {', '.join(repr(o) for o in outputs)}"
          f"{' (label: class names)' if classes is not None else ''}"
          f"{'; the input is standardized inside the graph' if standardize is not None else ''}")
    return EXIT_OK


# ---------------------------------------------------------------------------------------- gradcheck

def gradcheck_networks(seed=0):
    """The float64 networks ``fastnn gradcheck`` checks: (title, network, x) triples covering every layer
    type and every loss."""
    import numpy as np

    import fastnn as fnn
    f64 = np.float64
    rng = np.random.default_rng(seed)

    def fc(n, m):
        return fnn.FullyConnected(n, m, init="xavier", dtype=f64)

    nets = [
        ("FC-ReLU-FC-Sigmoid-FC-TanH-FC-SoftMax + CrossEntropyLoss",
         fnn.NeuralNetwork([fc(4, 6), fnn.ReLU(), fc(6, 5), fnn.Sigmoid(), fc(5, 5), fnn.TanH(), fc(5, 3),
                            fnn.SoftMax()], loss=fnn.CrossEntropyLoss(), seed=seed)),
        ("FC-TanH-FC + SoftmaxCrossEntropy",
         fnn.NeuralNetwork([fc(4, 6), fnn.TanH(), fc(6, 3)], loss=fnn.SoftmaxCrossEntropy(), seed=seed + 1)),
        ("FC-Sigmoid-FC + L2Loss",
         fnn.NeuralNetwork([fc(4, 6), fnn.Sigmoid(), fc(6, 2)], loss=fnn.L2Loss(), seed=seed + 2)),
    ]
    return [(title, net, rng.standard_normal((5, 4))) for title, net in nets]


def _gradient_label(net, key):
    """'layers[0].params[1]' -> 'layers[0] FullyConnected bias'; 'x' -> 'input x'."""
    if key == "x":
        return "input x"
    prefix = ""
    if key.startswith("fused "):          # the fused kernel's gradient of the same parameter
        prefix, key = "fused kernel: ", key[len("fused "):]
    try:
        i = int(key.split("]")[0].split("[")[1])
        j = int(key.split("params[")[1].rstrip("]"))
        layer = net.layers[i]
        name = ("weights", "bias")[j] if len(layer.params) == 2 else f"params[{j}]"
        return f"{prefix}layers[{i}] {type(layer).__name__}.{name} {tuple(layer.params[j].shape)}"
    except (IndexError, ValueError, AttributeError):
        return key


def cmd_gradcheck(args):
    import fastnn as fnn
    worst, failed, rows = 0.0, 0, []
    for k, (title, net, x) in enumerate(gradcheck_networks(args.seed)):
        report = fnn.gradcheck(net, x, seed=args.seed)
        rows.append((f"network {k + 1}: {title}", None))
        for key, err in report.items():
            rows.append((_gradient_label(net, key), err))
            worst = max(worst, err)
            failed += not err < args.tol
    width = max(len(label) for label, err in rows if err is not None) + 2
    print(f"gradcheck: analytic gradients vs central differences, float64, tolerance {args.tol:g}")
    print(f"  {'gradient':<{width}} relative error")
    for label, err in rows:
        if err is None:
            print(label)
        else:
            print(f"  {label:<{width}} {err:.2e}  {'ok' if err < args.tol else 'FAIL'}")
    checked = sum(err is not None for _, err in rows)
    if failed:
        print(f"FAILED: {failed} of {checked} gradients have a relative error >= {args.tol:g} (worst {worst:.2e})")
        return EXIT_FAILURE
    print(f"passed: all {checked} gradients agree (worst relative error {worst:.2e} < {args.tol:g})")
    return EXIT_OK


# -------------------------------------------------------------------------------------------- demos

def cmd_demo_xor(args):
    from .demos import xor_demo
    if args.plot:
        _check_plot(args.plot)
    r = xor_demo(hidden=args.hidden, seed=args.seed)
    print("XOR: 4 points, no straight line separates the two classes")
    print("   x1   x2   XOR   perceptron   network")
    for (a, b), t, p, n in zip(r["X"], r["y"], r["perceptron_pred"], r["network_pred"]):
        print(f"  {a:3.0f}  {b:3.0f}  {t:4d}   {p:10d}   {n:7d}")
    state = "did not converge" if not r["perceptron"].converged else "converged"
    print(f"perceptron (Rosenblatt's rule, 100 epochs, {state}): accuracy {r['perceptron_accuracy']:.2f} "
          f"({int(round(4 * r['perceptron_accuracy']))}/4; a line can get at most 3/4)")
    print(f"network 2-{args.hidden}-2 tanh (Adam, 500 epochs): accuracy {r['network_accuracy']:.2f} "
          f"({int(round(4 * r['network_accuracy']))}/4)")
    if args.plot:
        from .plotting import plot_decision_boundaries
        plot_decision_boundaries(
            [(f"Perceptron: accuracy {r['perceptron_accuracy']:.0%}", r["perceptron"]),
             (f"Network 2-{args.hidden}-2 (tanh): accuracy {r['network_accuracy']:.0%}", r["network"])],
            r["X"], r["y"], args.plot, title="XOR: a linear unit vs one hidden layer")
        print(f"wrote the decision boundaries to {args.plot}")
    return EXIT_OK if r["network_accuracy"] == 1.0 else EXIT_FAILURE


def cmd_demo_approx(args):
    from .demos import APPROX_UNITS, approx_demo
    if args.plot:
        _check_plot(args.plot)
    r = approx_demo(units=APPROX_UNITS, seed=args.seed)
    names = list(r["errors"])
    print("universal approximation on [-3, 3]: one hidden layer of N sigmoid units, max |f(x) - net(x)|")
    print(f"  {'N':>3}  " + "  ".join(f"{n:>9}" for n in names))
    for n in r["units"]:
        print(f"  {n:>3}  " + "  ".join(f"{r['errors'][name][n]:9.4f}" for name in names))
    print("(hidden units start as evenly spaced soft steps, are trained with Adam on the L2 loss, and the "
          "output layer is solved by least squares; the error is measured on 1201 points)")
    if args.plot:
        from .plotting import plot_function_fits
        plot_function_fits(r["x"], r["targets"], r["fits"], args.plot,
                           title="One hidden layer of N sigmoid units")
        print(f"wrote the fits to {args.plot}")
    return EXIT_OK


# -------------------------------------------------------------------------------------------- bench

def find_benchmarks():
    """The directory holding benchmarks/compare.py: the current directory or the fastnn source checkout."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for root in (os.getcwd(), here):
        script = os.path.join(root, "benchmarks", "compare.py")
        try:
            with open(script, encoding="utf-8", errors="replace") as fh:
                if "fastnn" in fh.read(100_000):  # fastnn's compare.py, not another project's
                    return root
        except OSError:
            continue
    return None


def cmd_bench(args):
    import subprocess
    root = find_benchmarks()
    if root is None:
        raise CLIError("fastnn bench needs a source checkout of fastnn (benchmarks/compare.py was not found "
                       "in the current directory or next to the installed package); run it from the checkout")
    extra = [a for a in args.args if a != "--"]
    cmd = [sys.executable, "-m", "benchmarks.compare", "--quick", *extra]
    print(f"running python {' '.join(cmd[1:])} in {root}", flush=True)
    return subprocess.call(cmd, cwd=root)


# ------------------------------------------------------------------------------------------- parser

# ---------------------------------------------------------------------------------- help texts

HELP_MAIN = """\
fastnn: fast, checked feed-forward neural networks on the CPU.
"""

HELP_TRAIN = """\
Train a fully connected network and report its accuracy (or loss, for regression) on held-out data: the
test set, or without one the --val-split validation rows (20% by default); the output says which.

Integer labels mean classification (softmax cross-entropy, one output per class); float labels mean
regression (L2 loss, linear outputs); --task overrides this. The datasets and their splits are fixed; --seed
sets the weight initialisation, the shuffling and the --val-split.
"""

HELP_PREDICT = """\
Print (or write with --out) a CSV of predictions: the class (or class name) per row, with --proba the class
probabilities too; for regression the outputs.

DATA: a .csv (the model's feature columns, by name when the model was trained on a CSV, else the first
columns; a label column may be present and is ignored), an .npz (X_test if present, else X; see --split), or
a dataset name.
"""

HELP_EVALUATE = """\
Print the mean loss and (classifiers) the accuracy of MODEL on DATA.

DATA: a .csv with the feature columns and a label column (--target, else the column the model was trained
with, else the last), an .npz with X, y (or X_test, y_test; see --split), or a dataset name (its test split
when it has one).
"""

HELP_INFO = """\
Print a model file's architecture, parameter count, optimizer, training settings, final scores and format
version (the file is checked, never executed).
"""

HELP_EXPORT = """\
Write a saved model as an ONNX file (opset 13) for onnxruntime and other ONNX runtimes: input 'input' (batch,
features) in the model's dtype; outputs 'logits' (or 'output'), and for classifiers 'probabilities' and
'label' (the class name when the model file stores class names). Needs pip install 'fastnn[onnx]'.
"""

HELP_GRADCHECK = """\
Compare the analytic gradients of three small float64 networks - together every layer (FullyConnected, ReLU,
Sigmoid, TanH, SoftMax) and every loss (CrossEntropyLoss, SoftmaxCrossEntropy, L2Loss) - with central finite
differences, and print the relative error of every parameter and of the input. Exit code 0 when all are
below --tol, else 1.
"""

HELP_DEMO = """\
Classroom demonstrations: 'fastnn demo xor' and 'fastnn demo approx'.
"""

HELP_DEMO_XOR = """\
Train Rosenblatt's perceptron and a network with one hidden layer on the 4 XOR points and print both
predictions and accuracies: no line separates XOR, so the perceptron gets at most 3 of 4; the network gets
all 4.

A PNG is written only when --plot is given.
"""

HELP_DEMO_APPROX = """\
Fit sin(x), |x| and a smooth bump on [-3, 3] with one hidden layer of N = 1, 2, 4, 8, 16, 32 sigmoid units
and print the max absolute error per N and function: it shrinks as N grows.

A PNG is written only when --plot is given.
"""

HELP_BENCH = """\
Run 'python -m benchmarks.compare --quick' from a source checkout of fastnn (the current directory or the
checkout fastnn is installed from in editable mode). Further arguments are passed on to benchmarks.compare.
"""

EPILOG = """\
examples:
  fastnn train                                  64-128-10 on the bundled digits (test accuracy ~0.97)
  fastnn train --data moons --hidden 32,32 --plot curves.png --save moons.safetensors
  fastnn train --data table.csv --target label --val-split 0.1
  fastnn predict moons.safetensors moons --proba --out predictions.csv
  fastnn evaluate moons.safetensors moons
  fastnn info moons.safetensors
  fastnn export moons.safetensors --onnx moons.onnx
  fastnn gradcheck
  fastnn demo xor --plot xor.png

exit codes: 0 ok, 1 runtime failure (diverged training, failed check), 2 bad input, 130 interrupted, 143 terminated
"""


def build_parser():
    import fastnn
    parser = _Parser(prog="fastnn", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
                     description=_text(HELP_MAIN))
    parser.add_argument("--version", action="version", version=f"fastnn {fastnn.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    # train
    p = sub.add_parser(
        "train", formatter_class=_Formatter, help="train a network (default: 64-128-10 on the bundled digits)",
        description=_text(HELP_TRAIN))
    p.add_argument("--data", default="digits", metavar="NAME|PATH",
                   help="digits (fixed stratified 75/25 split), xor (400 noisy points), spirals, moons "
                        "(1000 points, 75/25 split), or a file: .npz with arrays X, y and optionally "
                        "X_test, y_test; .csv with a header row, the label in the last column or --target "
                        "(default: %(default)s)")
    p.add_argument("--target", metavar="NAME", help="label column of a .csv file (default: the last column)")
    p.add_argument("--drop", action="append", metavar="COLUMN[,...]",
                   help="leave these columns of a .csv file out (ids, names, free text); repeatable")
    p.add_argument("--standardize", action="store_true",
                   help="scale every feature to mean 0, std 1 with the training rows' mean and std; both are "
                        "stored in the model file and predict / evaluate apply them to raw inputs")
    p.add_argument("--task", choices=("auto", "classification", "regression"), default="auto",
                   help="auto (the default): classification for integer or named labels, regression for "
                        "float labels; integer labels that would make more than sqrt(n) classes are refused "
                        "with a hint to choose")
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
                   help="epochs between checkpoints (default: whenever writing has cost under 5%% of the "
                        "training time since the last one; always after the last epoch and on Ctrl-C)")
    p.add_argument("--distributed", action="store_true",
                   help="data-parallel training over the ranks of an MPI job: launch as 'mpiexec -n K fastnn "
                        "train --distributed ...' (or srun); --batch-size is per rank, the global batch is K "
                        "times it; rank 0 prints, saves and plots; --threads defaults to the cores per rank. "
                        "Needs pip install 'fastnn[mpi]'")
    p.set_defaults(func=cmd_train, prog_=p.prog)

    # predict
    p = sub.add_parser(
        "predict", formatter_class=_Formatter, help="predict with a saved model",
        description=_text(HELP_PREDICT))
    p.add_argument("model", metavar="MODEL", help="model file written by fastnn train --save")
    p.add_argument("data", metavar="DATA", help="a .csv or .npz file, or digits|xor|spirals|moons")
    p.add_argument("--proba", action="store_true", help="add the class probabilities (classifiers)")
    p.add_argument("--out", metavar="FILE.csv", help="write the CSV here instead of to standard output")
    p.add_argument("--target", metavar="NAME", help="label column of a .csv file to leave out")
    p.add_argument("--split", choices=("train", "test"), default=None,
                   help="which arrays of an .npz or dataset: X/y or X_test/y_test (default: test if present)")
    p.set_defaults(func=cmd_predict, prog_=p.prog)

    # evaluate
    p = sub.add_parser(
        "evaluate", formatter_class=_Formatter, help="loss and accuracy of a saved model on labelled data",
        description=_text(HELP_EVALUATE))
    p.add_argument("model", metavar="MODEL", help="model file written by fastnn train --save")
    p.add_argument("data", metavar="DATA", help="a .csv or .npz file, or digits|xor|spirals|moons")
    p.add_argument("--target", metavar="NAME", help="label column of a .csv file")
    p.add_argument("--split", choices=("train", "test"), default=None,
                   help="which arrays of an .npz or dataset: X/y or X_test/y_test (default: test if present)")
    p.set_defaults(func=cmd_evaluate, prog_=p.prog)

    # info
    p = sub.add_parser("info", formatter_class=_Formatter, help="describe a saved model",
                       description=_text(HELP_INFO))
    p.add_argument("model", metavar="MODEL", help="model file written by fastnn train --save")
    p.set_defaults(func=cmd_info, prog_=p.prog)

    # export
    p = sub.add_parser("export", formatter_class=_Formatter, help="write a saved model as ONNX",
                       description=_text(HELP_EXPORT))
    p.add_argument("model", metavar="MODEL", help="model file written by fastnn train --save")
    p.add_argument("--onnx", metavar="OUT.onnx", required=True, help="the ONNX file to write")
    p.set_defaults(func=cmd_export, prog_=p.prog)

    # gradcheck
    p = sub.add_parser(
        "gradcheck", formatter_class=_Formatter, help="check backpropagation against finite differences",
        description=_text(HELP_GRADCHECK))
    p.add_argument("--tol", type=_positive_float, default=1e-6,
                   help="largest relative error that passes (default: %(default)g)")
    p.add_argument("--seed", type=_seed, default=0, help="seed of the weights, inputs and targets")
    p.set_defaults(func=cmd_gradcheck, prog_=p.prog)

    # demo
    p = sub.add_parser("demo", formatter_class=_Formatter, help="classroom demos: xor, approx",
                       description=_text(HELP_DEMO))
    demos = p.add_subparsers(dest="demo", metavar="DEMO", parser_class=_Parser)
    p.set_defaults(func=lambda args, p=p: _missing_subcommand(p, "a demo: xor or approx"), prog_=p.prog)
    d = demos.add_parser(
        "xor", formatter_class=_Formatter, help="the perceptron fails on XOR, one hidden layer succeeds",
        description=_text(HELP_DEMO_XOR))
    d.add_argument("--plot", metavar="PNG", help="write both decision boundaries, side by side, to this PNG")
    d.add_argument("--hidden", type=_positive_int, default=4,
                   help="hidden units of the network (default: %(default)s)")
    d.add_argument("--seed", type=_seed, default=0, help="seed of both models")
    d.set_defaults(func=cmd_demo_xor, prog_=d.prog)
    d = demos.add_parser(
        "approx", formatter_class=_Formatter, help="universal approximation with N sigmoid units",
        description=_text(HELP_DEMO_APPROX))
    d.add_argument("--plot", metavar="PNG", help="write the fitted curves to this PNG")
    d.add_argument("--seed", type=_seed, default=0, help="seed of the networks and the shuffling")
    d.set_defaults(func=cmd_demo_approx, prog_=d.prog)

    # bench
    p = sub.add_parser(
        "bench", formatter_class=_Formatter, help="quick benchmark against peers (needs a source checkout)",
        description=_text(HELP_BENCH))
    p.add_argument("args", nargs=argparse.REMAINDER, help="arguments for benchmarks.compare")
    p.set_defaults(func=cmd_bench, prog_=p.prog)
    return parser


def _missing_subcommand(parser, what):
    raise CLIError(f"choose {what} (see '{parser.prog} --help')")


# --------------------------------------------------------------------------------------------- main

def main(argv=None):
    """Run the command line with ``argv`` (default: sys.argv[1:]); returns the exit code."""
    import warnings
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning  # one line per warning, e.g. a GradientHealthWarning
        return _main(argv)


def _show_warning(message, category, filename, lineno, file=None, line=None):
    _report(f"{category.__name__}: {message}", prefix="fastnn: warning: ")


def _main(argv):
    try:
        argv = list(sys.argv[1:] if argv is None else argv)
        if argv[:1] == ["bench"] and not {"-h", "--help"} & set(argv[1:2]):
            return cmd_bench(argparse.Namespace(args=argv[1:]))  # everything else goes to benchmarks.compare
        parser = build_parser()
        try:
            args, unknown = parser.parse_known_args(argv)
        except SystemExit as exc:  # --help / --version
            return exc.code if isinstance(exc.code, int) else EXIT_OK
        if unknown:
            raise CLIError(f"unrecognized arguments: {' '.join(unknown)} "
                           f"(see '{getattr(args, 'prog_', 'fastnn')} --help')")
        if getattr(args, "func", None) is None:
            parser.print_help()
            return EXIT_OK
        return args.func(args)
    except CLIError as exc:
        _report(str(exc))
        return exc.code
    except KeyboardInterrupt as exc:  # fit's TrainingInterrupted says where training stopped
        _report(str(exc) or "interrupted", prefix="fastnn: ")
        return EXIT_TERMINATED if getattr(exc, "signal_name", None) == "SIGTERM" else EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. `fastnn predict ... | head`
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return EXIT_FAILURE
    except ImportError as exc:
        _report(_error_text(exc))
        return EXIT_FAILURE
    except MemoryError:
        _report("out of memory (try a smaller --batch-size or fewer/narrower --hidden layers)")
        return EXIT_FAILURE
    except Exception as exc:  # noqa: BLE001 - the last resort: one line, not a traceback
        if os.environ.get("FASTNN_DEBUG"):
            raise
        _report(f"unexpected {type(exc).__name__}: {_error_text(exc)} (set FASTNN_DEBUG=1 for the traceback)")
        return EXIT_FAILURE


def _report(message, prefix="fastnn: error: "):
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        pass
    print(prefix + " ".join(str(message).split()), file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
