"""Bundled datasets, toy generators, splitting and file loaders (.npz, .csv).

Conventions: features ``X`` are 2-D ``(n_samples, n_features)`` of a float dtype (float32 by default);
class labels ``y`` are int64 class ids ``(n_samples,)``; regression targets are float64. Every check
happens here, at the boundary, and fails with a ValueError that names the argument or file and the problem.
"""
import collections
import csv
import math
import os
import zipfile
import zlib
from importlib.resources import files

import numpy as np

from . import _checks, _memory, _paths

__all__ = ["load_digits", "train_test_split", "digits_split", "make_xor", "make_spirals", "make_moons",
           "load_npz", "load_csv", "load_table", "read_csv_rows", "regression_scores", "r2_score", "load_dataset", "id_like_columns", "check_representable",
           "DATASET_NAMES"]

DATASET_NAMES = ("digits", "xor", "spirals", "moons")


def _float_dtype(dtype):
    dt = np.dtype(dtype)
    if dt.kind != "f":
        raise ValueError(f"dtype must be a floating-point type such as np.float32, got {dt}")
    return dt


def _positive_int(value, name, minimum=1):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise _checks.NotAnIntegerError(f"{name} must be an integer >= {minimum}, got {type(value).__name__} "
                                        f"{value!r:.80}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _noise(value):
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"noise must be a finite number >= 0, got {value!r}")
    return float(value)


# --------------------------------------------------------------------------------------------- digits

def load_digits(scale=True, dtype=np.float32):
    """The bundled 8x8 handwritten digits (UCI optical digits test set, see fastnn/datasets/README.md).

    Returns ``(X, y)``: X of `dtype`, shape (1797, 64), pixel values 0..16, divided by 16 into [0, 1]
    when `scale`; y int64, shape (1797,), labels 0..9 (174 to 183 images per class).
    """
    dtype = _float_dtype(dtype)
    with (files("fastnn") / "datasets" / "digits.npz").open("rb") as fh:
        with np.load(fh, allow_pickle=False) as z:
            X, y = z["X"], z["y"]
    X = X.astype(dtype)
    if scale:
        X /= dtype.type(16)
    return X, y.astype(np.int64)


def train_test_split(X, y, test_size=0.25, stratify=True, seed=0):
    """Deterministic, optionally stratified, shuffled split.

    X: array (n, ...); y: array (n,) or (n, k). With `stratify` (y must then be 1-D class labels), each
    class c of n_c samples gets a permutation from ``np.random.default_rng(seed)`` and its first
    ``round(test_size * n_c)`` samples go to the test set; without it, ``round(test_size * n)`` samples of
    one permutation do. Both outputs are then shuffled by the same generator.

    Returns ``X_train, X_test, y_train, y_test`` (rows of X and y, dtypes unchanged).
    """
    X, y = np.asarray(X), np.asarray(y)
    if isinstance(test_size, bool) or not isinstance(test_size, (int, float, np.number)) \
            or not 0 < test_size < 1:
        raise ValueError(f"test_size must be a number strictly between 0 and 1, got {test_size!r}")
    if X.ndim == 0 or y.ndim == 0:
        raise ValueError("X and y must be arrays with one row per sample, got scalars")
    if len(X) != len(y):
        raise ValueError(f"X and y must have the same length, got len(X)={len(X)} and len(y)={len(y)}")
    if len(X) < 2:
        raise ValueError(f"X and y need at least 2 samples to split, got {len(X)}")
    rng = np.random.default_rng(seed)
    if stratify:
        if y.ndim != 1 or (y.dtype.kind == "f" and not np.all(np.isfinite(y) & (y == np.round(y)))):
            raise ValueError("stratify=True needs y to be 1-D class labels; "
                             "pass stratify=False for one-hot or regression targets")
        test, train = [], []
        for c in np.unique(y):
            idx = rng.permutation(np.flatnonzero(y == c))
            k = round(test_size * len(idx))
            test.append(idx[:k])
            train.append(idx[k:])
        test, train = np.concatenate(test), np.concatenate(train)
    else:
        idx = rng.permutation(len(X))
        k = round(test_size * len(X))
        test, train = idx[:k], idx[k:]
    if len(test) == 0 or len(train) == 0:
        raise ValueError(f"test_size={test_size} leaves an empty {'test' if len(test) == 0 else 'training'} "
                         f"set for {len(X)} samples")
    train, test = rng.permutation(train), rng.permutation(test)
    return X[train], X[test], y[train], y[test]


def digits_split(seed=0, dtype=np.float32):
    """The fixed stratified 75/25 split of the bundled digits used by ``fastnn train``.

    Returns ``X_train (1347, 64), X_test (450, 64)`` of `dtype` in [0, 1] and ``y_train (1347,),
    y_test (450,)`` int64.
    """
    X, y = load_digits(dtype=dtype)
    return train_test_split(X, y, test_size=0.25, seed=seed)


# ------------------------------------------------------------------------------------ toy generators

def make_xor(n=None, noise=0.0, seed=0, dtype=np.float32):
    """The XOR problem. Returns ``(X, y)``: X of `dtype`, shape (n, 2); y int64 (n,).

    n=None gives the 4 classic points [[0,0],[0,1],[1,0],[1,1]] with labels [0,1,1,0]. With n, n points
    cycle through those corners (balanced, in a seeded random order). Gaussian noise of std `noise` is
    added to the coordinates in both cases (none by default).
    """
    corners = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
    labels = np.array([0, 1, 1, 0], dtype=np.int64)
    noise, dtype = _noise(noise), _float_dtype(dtype)
    rng = np.random.default_rng(seed)
    idx = np.arange(4) if n is None else rng.permutation(np.arange(_positive_int(n, "n")) % 4)
    X = corners[idx]
    if noise > 0:
        X = X + rng.normal(0.0, noise, X.shape)
    return X.astype(dtype), labels[idx]


def make_spirals(n=1000, classes=2, noise=0.2, seed=0, dtype=np.float32):
    """Interleaved spiral arms, one per class (the CS231n toy set). Returns ``(X, y)``: X of `dtype`,
    shape (n, 2), inside the unit disc; y int64 (n,) in 0..classes-1, in a seeded random order.

    Arm j has radius r from 0 to 1 and angle ``4 r + 2 pi j / classes`` plus gaussian jitter of std
    `noise` radians; the n points are shared out as evenly as possible between the arms.
    """
    n, classes = _positive_int(n, "n"), _positive_int(classes, "classes", 2)
    noise, dtype = _noise(noise), _float_dtype(dtype)
    if n < classes:
        raise ValueError(f"n must be at least classes={classes}, got {n}")
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(classes, dtype=np.int64), [n // classes + (j < n % classes) for j in range(classes)])
    r = np.concatenate([np.linspace(0.0, 1.0, np.count_nonzero(y == j)) for j in range(classes)])
    t = 4.0 * r + 2.0 * np.pi * y / classes + rng.normal(0.0, noise, n)
    X = np.column_stack([r * np.sin(t), r * np.cos(t)])
    order = rng.permutation(n)
    return X[order].astype(dtype), y[order]


def make_moons(n=1000, noise=0.1, seed=0, dtype=np.float32):
    """Two interleaving half-moons, the geometry of sklearn.datasets.make_moons. Returns ``(X, y)``:
    X of `dtype`, shape (n, 2); y int64 (n,), in a seeded random order.

    Class 0 (n // 2 points): the upper arc (cos t, sin t); class 1 (the rest): the lower arc
    (1 - cos t, 0.5 - sin t); t evenly spaced in [0, pi]; gaussian noise of std `noise` on both coordinates.
    """
    n, noise, dtype = _positive_int(n, "n", 2), _noise(noise), _float_dtype(dtype)
    rng = np.random.default_rng(seed)
    n_out = n // 2
    t_out, t_in = np.linspace(0.0, np.pi, n_out), np.linspace(0.0, np.pi, n - n_out)
    X = np.concatenate([np.column_stack([np.cos(t_out), np.sin(t_out)]),
                        np.column_stack([1.0 - np.cos(t_in), 0.5 - np.sin(t_in)])])
    y = np.repeat(np.array([0, 1], dtype=np.int64), [n_out, n - n_out])
    if noise > 0:
        X += rng.normal(0.0, noise, X.shape)
    order = rng.permutation(n)
    return X[order].astype(dtype), y[order]


# ------------------------------------------------------------------------------------------ loaders

def check_representable(X, dtype, where, lines=None, columns=None):
    """ValueError naming ``where`` (a file and array), the line (``lines[row]``, else the row) and the column
    (``columns[c]``, else its index) of the first value of X that is NaN, infinite, or finite but beyond
    ``dtype``'s range (1e39 in float32 would become inf). Returns X cast to ``dtype``."""
    dtype = np.dtype(dtype)
    X64 = np.asarray(X, np.float64) if np.asarray(X).dtype.kind == "f" else None
    if X64 is not None:
        limit = float(np.finfo(dtype).max)
        bad = ~(np.abs(X64) <= limit)
        if bad.any():
            r, c = (int(i) for i in np.argwhere(bad)[0])
            line = f"line {lines[r]}" if lines is not None else f"row {r}"
            col = repr(columns[c]) if columns is not None else str(c)
            value = X64[r, c] if X64.ndim == 2 else X64[r]
            what = ("not a number" if np.isnan(value) else "infinite" if np.isinf(value)
                    else f"beyond the range of {dtype.name} (|x| <= {limit:.4g})")
            raise ValueError(f"{where}, {line}, column {col}: {value!r} is {what}; {int(bad.sum())} such value(s)")
    return np.asarray(X).astype(dtype)


_DEFLATE_MAX_RATIO = 1032   # deflate cannot expand data more than ~1032:1 (zlib's technical note)


def _npz_member(zf, info, path, archive_size):
    """One .npy member of an open zip, checked before anything is allocated: no object dtype, and a
    declared size the member can hold (its uncompressed size, what its compressed bytes can expand to,
    and the memory available now). ValueError naming the file and the array otherwise."""
    key = info.filename[:-4]
    with zf.open(info) as member:
        version = np.lib.format.read_magic(member)
        read = {(1, 0): np.lib.format.read_array_header_1_0,
                (2, 0): np.lib.format.read_array_header_2_0}.get(version)
        if read is None:
            raise ValueError(f"{path}: array {key!r} has the unsupported .npy format version {version}")
        shape, _, dtype = read(member)
        if dtype.hasobject:
            raise ValueError(f"{path}: array {key!r} contains object arrays, which are refused "
                             f"(allow_pickle=False)")
        nbytes = math.prod(shape) * dtype.itemsize
        limits = [info.file_size]
        if info.compress_type == zipfile.ZIP_DEFLATED:
            limits.append(_DEFLATE_MAX_RATIO * info.compress_size + 1024)
        if nbytes > min(limits) or info.compress_size > archive_size:
            raise ValueError(f"{path}: array {key!r} declares shape {shape} of {dtype} ({nbytes:,} bytes), "
                             f"more than the archive holds: a corrupt or hostile file")
        _memory.check_fits(nbytes, f"{path}: array {key!r} of shape {shape} and dtype {dtype}")
    with zf.open(info) as member:
        return np.lib.format.read_array(member, allow_pickle=False)


def read_npz(path, keys, what="data file"):
    """``({key: array} for those of ``keys`` the .npz at ``path`` holds, the set of all its array names)``.

    Opens only a regular file (never blocks on a FIFO), never unpickles, and checks each array's declared
    size before allocating it (see ``_npz_member``). FileNotFoundError for a missing file, ValueError
    naming the path for anything else.
    """
    path = os.fspath(path)
    try:
        fh = _paths.open_regular(path, what)
    except (FileNotFoundError, ValueError):
        raise
    except OSError as e:
        raise ValueError(f"{path}: not a readable .npz file ({e.strerror or e})") from None
    with fh:
        size = os.fstat(fh.fileno()).st_size
        if fh.read(6) == b"\x93NUMPY":
            raise ValueError(f"{path}: not an .npz archive (a single .npy array?)")
        fh.seek(0)
        try:
            with zipfile.ZipFile(fh) as zf:
                members = {info.filename[:-4]: info for info in zf.infolist() if info.filename.endswith(".npy")}
                arrays = {k: _npz_member(zf, members[k], path, size) for k in keys if k in members}
        except (OSError, EOFError, zipfile.BadZipFile, NotImplementedError, RuntimeError, zlib.error,
                TypeError, ValueError) as e:
            if isinstance(e, ValueError) and str(e).startswith(path):   # ours, already naming the file
                raise
            raise ValueError(f"{path}: not a readable .npz file ({e})") from None
    return arrays, set(members)


def load_npz(path):
    """Read a dataset from an .npz file, never unpickling anything (allow_pickle=False).

    The file must hold arrays ``X`` (n, features) numeric, finite and non-empty, and ``y`` (n,) or (n, k)
    numeric; ``X_test`` / ``y_test`` are optional but go together, with X_test's feature count. Returns
    ``{"X", "y", "X_test", "y_test"}`` (the test entries None when absent), dtypes as stored; other
    arrays in the file are ignored. Raises FileNotFoundError for a missing file and ValueError, naming
    the path and the problem, for anything else (a FIFO, device or directory; an array whose header
    declares more data than the file holds or than memory can take).
    """
    path = os.fspath(path)
    arrays, keys = read_npz(path, ("X", "y", "X_test", "y_test"))
    out = {key: arrays.get(key) for key in ("X", "y", "X_test", "y_test")}
    for key in ("X", "y"):
        if out[key] is None:
            raise ValueError(f"{path}: missing array {key!r} (found: {sorted(keys) or 'none'})")
    if (out["X_test"] is None) != (out["y_test"] is None):
        raise ValueError(f"{path}: 'X_test' and 'y_test' must be given together")
    for xk, yk in (("X", "y"), ("X_test", "y_test")):
        X, y = out[xk], out[yk]
        if X is None:
            continue
        if X.ndim != 2 or X.dtype.kind not in "biuf":
            raise ValueError(f"{path}: {xk!r} must be a 2-D numeric array, got shape {X.shape} dtype {X.dtype}")
        if X.size == 0:
            raise ValueError(f"{path}: {xk!r} is empty, shape {X.shape}")
        if not np.all(np.isfinite(X)):
            raise ValueError(f"{path}: {xk!r} contains NaN or Inf")
        if y.ndim not in (1, 2) or y.dtype.kind not in "biuf":
            raise ValueError(f"{path}: {yk!r} must be a 1-D or 2-D numeric array, got shape {y.shape} "
                             f"dtype {y.dtype}")
        if len(X) != len(y):
            raise ValueError(f"{path}: len({xk})={len(X)} != len({yk})={len(y)}")
    if out["X_test"] is not None and out["X_test"].shape[1] != out["X"].shape[1]:
        raise ValueError(f"{path}: 'X_test' has {out['X_test'].shape[1]} features but 'X' has "
                         f"{out['X'].shape[1]}")
    return out


def csv_reader(fh, path):
    """A csv.reader over text file ``fh`` whose lines are read with a bound (``_paths.MAX_LINE_CHARS``
    characters; a longer line or header is a ValueError naming ``path`` and the line)."""
    return csv.reader(_paths.bounded_lines(fh, path))


def _refuse_data_as_header(header, path):
    """ValueError when the header row is data: every cell a number and one of them not an integer (a file
    written without a header, e.g. by np.savetxt). Read as column names, that row would be one sample lost
    without a word. Integer names (0, 1, 2, ... from a DataFrame's default columns) stay names."""
    if header and all(_is_number(h) for h in header) and not all(_is_int_text(h) for h in header):
        shown = ", ".join(header[:3]) + (", ..." if len(header) > 3 else "")
        raise ValueError(f"{path}: the first row is numbers ({shown}), not column names: a CSV file needs a "
                         f"header row naming its columns: add one as the first line, or read the file as "
                         f"headerless (fastnn train/evaluate/predict --no-header; header=False), its columns "
                         f"named 1, 2, ... by position")


def _refuse_data_row_as_header(header, rows, path, sample=100):
    """ValueError when the header row, partly text, is a data row all the same: each of its cells is of the
    kind of the column below it (a number over a column of numbers, a text over a column with text), and
    either one of its numbers has a fraction or an exponent ("1.117": no column name looks like that over
    numbers) or one of its texts is also a value of its column ("red" over red / blue). Such a file was
    written without a header; read with one, its first sample would be lost and the names be data. A real
    header names numeric columns with text ("x,0.5,y" over numbers stays a header) and keeps integer names
    (0, 1, 2). The columns' kinds come from the first ``sample`` rows."""
    below = rows[:sample]
    looks_like_data = False
    for k, name in enumerate(header):
        cells = [r[k].strip() for r in below if r[k].strip()]
        if not cells:
            return
        column_numeric = all(_is_number(c) for c in cells)
        if _is_number(name):
            if not column_numeric:
                return
            if not _is_int_text(name) and math.isfinite(number_text(name)):
                looks_like_data = True
        else:
            if column_numeric:
                return
            if name in cells:
                looks_like_data = True
    if looks_like_data:
        shown = ", ".join(header[:3]) + (", ..." if len(header) > 3 else "")
        raise ValueError(f"{path}: the first row ({shown}) looks like data, not column names (each cell is a "
                         f"value like those in its column): a CSV file needs a header row naming its columns; "
                         f"add one as the first line, or read the file as headerless (fastnn "
                         f"train/evaluate/predict --no-header; header=False), its columns named 1, 2, ... by "
                         f"position")


def _is_int_text(cell):
    try:
        int(cell)
        return "_" not in cell
    except ValueError:
        return False


def position_names(n):
    """The names of a headerless CSV file's ``n`` columns: "1", "2", ... by position (as cut and awk count)."""
    return [str(k) for k in range(1, n + 1)]


def _read_csv_rows(path, min_columns=2, header=True):
    """Header (list of str) and the non-blank data rows of a CSV file, with their line numbers.
    ``header=False``: the file has no header row; every row is data and the columns are named by position
    (``position_names``)."""
    if not header:
        return _read_headerless_rows(path, min_columns)
    with _paths.open_text(path, "data file") as fh:
        reader = csv_reader(fh, path)
        header = next(reader, None)
        if not header:
            raise ValueError(f"{path}: empty file (a header row is required; a file without one: --no-header, "
                             f"header=False)")
        header = [h.strip() for h in header]
        _refuse_data_as_header(header, path)
        empty = [k + 1 for k, h in enumerate(header) if not h]
        if empty:
            raise ValueError(f"{path}: empty column name in the header, column {empty[0]}"
                             + (f" (and {len(empty) - 1} more)" if len(empty) > 1 else "")
                             + "; every column needs a name")
        dup = sorted(name for name, count in collections.Counter(header).items() if count > 1)
        if dup:
            raise ValueError(f"{path}: duplicate column names in the header: {dup}")
        if len(header) < min_columns:
            raise ValueError(f"{path}: need at least one feature column and a label column, got {header}")
        rows, lines = [], []
        for row in reader:
            if not any(c.strip() for c in row):
                continue
            if len(row) != len(header):
                raise ValueError(f"{path}, line {reader.line_num}: {len(row)} fields, the header has {len(header)}")
            rows.append(row)
            lines.append(reader.line_num)
    if not rows:
        raise ValueError(f"{path}: no data rows after the header")
    _refuse_data_row_as_header(header, rows, path)
    return header, rows, lines


def _read_headerless_rows(path, min_columns):
    with _paths.open_text(path, "data file") as fh:
        reader = csv_reader(fh, path)
        rows, lines, width = [], [], None
        for row in reader:
            if not any(c.strip() for c in row):
                continue
            if width is None:
                width = len(row)
            elif len(row) != width:
                raise ValueError(f"{path}, line {reader.line_num}: {len(row)} fields, the first row has {width}")
            rows.append(row)
            lines.append(reader.line_num)
    if not rows:
        raise ValueError(f"{path}: no data rows (the file is empty)")
    if width < min_columns:
        raise ValueError(f"{path}: need at least one feature column and a label column, got {width} column")
    return position_names(width), rows, lines


def read_csv_rows(path, header=True):
    """``(header, rows, lines)`` of a CSV file with a header row: the column names (stripped; duplicates
    refused), the non-blank data rows as lists of cell text and each row's line in the file. Opens only a
    regular file, reads each line with a bound; ValueError naming the file and line for a row with another
    number of fields, an empty file, no data rows or text that is not UTF-8. ``header=False``: a file
    without a header row, its columns named "1", "2", ... by position."""
    try:
        return _read_csv_rows(os.fspath(path), min_columns=1, header=header)
    except (UnicodeDecodeError, csv.Error) as e:
        raise ValueError(f"{path}: not a readable UTF-8 CSV file ({e})") from None


def parse_labels(labels):
    """(y, classes) from label strings: int64 if all integers, else float64 if all numbers (classes None),
    else int64 indices into the sorted list of distinct strings (classes)."""
    try:
        if any("_" in v for v in labels):          # "1_000": not a standard number (see number_text)
            raise ValueError("underscore")
        return np.array([int(v) for v in labels], dtype=np.int64), None
    except (ValueError, OverflowError):
        pass
    try:
        return np.array([number_text(v) for v in labels], dtype=np.float64), None
    except ValueError:
        classes, y = np.unique(labels, return_inverse=True)
        return y.astype(np.int64).reshape(-1), [str(c) for c in classes]


def number_text(cell):
    """float(cell) for the text of a number in standard notation; ValueError otherwise. Python's float()
    also takes digit-group underscores ("1_000"), which no CSV writer produces: they are refused, so a cell
    that is not a plain number is never read as a different one."""
    if "_" in cell:
        raise ValueError(f"could not convert string to float: {cell!r}")
    return float(cell)


def _is_number(cell):
    try:
        number_text(cell)
        return True
    except ValueError:
        return False


def load_csv(path, target=None, dtype=np.float32, drop=(), header=True):
    """Read a dataset from a CSV file with a header row (csv module, comma-separated, UTF-8); ``header=False``
    for a file without one, its columns then named "1", "2", ... by position (``target="3"``).

    The label column is named by `target` (default: the last column); the columns named in `drop` (an
    iterable of names: ids, free text) are left out; every other column is a feature and every feature cell
    must be a finite number. Labels that are all integers become int64 class ids; other numbers become
    float64 regression targets; otherwise the labels are strings, mapped to the index of each in their
    sorted list of names. Blank lines are skipped.

    Returns ``(X, y, feature_names, classes)``: X of `dtype`, shape (n, features); y (n,) int64 or float64;
    feature_names list of str; classes the sorted list of label strings, or None for numeric labels.
    Raises ValueError naming the path and the problem: a text column (most of its cells are not numbers)
    by name, with the advice to drop it; otherwise the line and column of the first bad cell.
    """
    path, dtype = os.fspath(path), _float_dtype(dtype)
    drop = [drop] if isinstance(drop, str) else list(drop or ())
    try:
        header, rows, lines = _read_csv_rows(path, header=header)
    except (UnicodeDecodeError, csv.Error) as e:
        raise ValueError(f"{path}: not a readable UTF-8 CSV file ({e})") from None
    target = None if target is None else str(target)
    drop = [str(d) for d in drop]
    if target is None:
        t = len(header) - 1
    elif target in header:
        t = header.index(target)
    else:
        raise ValueError(f"{path}: no column named {target!r} for target; columns are {header}")
    unknown = [name for name in drop if name not in header]
    if unknown:
        raise ValueError(f"{path}: no column named {unknown[0]!r} to drop; columns are {header}")
    if header[t] in drop:
        raise ValueError(f"{path}: cannot drop the target column {header[t]!r}")
    keep = [i for i, h in enumerate(header) if i != t and h not in drop]
    if not keep:
        raise ValueError(f"{path}: no feature columns left after dropping {drop}")
    features = [header[i] for i in keep]
    cells = np.array(rows, dtype=str)
    labels = np.char.strip(cells[:, t])
    cells = cells[:, keep]
    try:
        X = cells.astype(np.float64)
        ok = bool(np.isfinite(X).all()) and not np.char.count(cells, "_").any()
    except ValueError:
        ok = False
    if not ok:
        for c, name in enumerate(features):       # a text column: name it and say how to leave it out
            column = np.char.strip(cells[:, c])
            filled = column[column != ""]
            text = [cell for cell in filled.tolist() if not _is_number(cell)]
            if text and 2 * len(text) > len(filled):
                r = int(np.flatnonzero(column == text[0])[0])
                raise ValueError(f"{path}: column {name!r} is text, not numbers (line {lines[r]}: {text[0]!r}); "
                                 f"drop it (fastnn train --drop {name}; load_csv(..., drop=[{name!r}])) "
                                 f"or choose it as the target")
        for (r, c), cell in np.ndenumerate(cells):  # else name the first cell that is not a finite number
            try:
                ok = np.isfinite(number_text(str(cell)))
            except ValueError:
                ok = False
            if not ok:
                raise ValueError(f"{path}, line {lines[r]}, column {features[c]!r}: expected a finite number "
                                 f"(standard notation such as 1000, -2.5 or 1e3), got {str(cell)!r}")
    X = check_representable(X, dtype, path, lines, features)
    if (labels == "").any():
        r = int(np.flatnonzero(labels == "")[0])
        raise ValueError(f"{path}, line {lines[r]}, column {header[t]!r}: empty label")
    y, classes = parse_labels(labels)
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        r = int(np.flatnonzero(~np.isfinite(y))[0])
        raise ValueError(f"{path}, line {lines[r]}, column {header[t]!r}: non-finite target {str(labels[r])!r}")
    return X, y, features, classes


def load_table(path, target=None, drop=(), missing="error", header=True):
    """A raw CSV table for training with preprocessing (fastnn.preprocessing): its cells as text, checked
    for what a table can be checked for before its columns are typed, every problem reported at once.

    ``target``: the label column (default: the last); ``drop``: columns to leave out; ``missing``: one of
    ``preprocessing.MISSING_STRATEGIES``. A missing label (an empty cell, "NA", ...; see
    ``preprocessing.MISSING_TOKENS``) is never a class: with ``missing="drop"`` its row is dropped, else the
    table is refused with the count. With ``missing="drop"``, rows with a missing feature cell are dropped
    too. Returns a dict: ``features`` (names), ``X`` (object array (n, features) of the cells' text),
    ``labels`` (str array (n,)), ``lines`` (each row's line in the file), ``target`` (the label column's
    name), ``dropped_labels`` / ``dropped_cells`` (rows dropped for a missing label / feature cell),
    ``missing_cells`` ({column: count of missing cells left, for a fill strategy}). ``header=False``: the
    file has no header row; its columns are named "1", "2", ... by position.
    """
    from .preprocessing import MISSING_STRATEGIES, is_missing
    path = os.fspath(path)
    if missing not in MISSING_STRATEGIES:
        raise ValueError(f"missing must be one of {MISSING_STRATEGIES}, got {missing!r:.50}")
    drop = [drop] if isinstance(drop, str) else list(drop or ())
    try:
        header, rows, lines = _read_csv_rows(path, header=header)
    except (UnicodeDecodeError, csv.Error) as e:
        raise ValueError(f"{path}: not a readable UTF-8 CSV file ({e})") from None
    target = None if target is None else str(target)
    drop = [str(d) for d in drop]
    problems = []
    if target is None:
        t = len(header) - 1
    elif target in header:
        t = header.index(target)
    else:
        raise ValueError(f"{path}: no column named {target!r} for the target; columns are {header}")
    unknown = [name for name in drop if name not in header]
    if unknown:
        problems.append(f"no column named {', '.join(map(repr, unknown))} to drop; columns are {header}")
    if header[t] in drop:
        problems.append(f"cannot drop the target column {header[t]!r}")
    keep = [i for i, h in enumerate(header) if i != t and h not in drop]
    if not keep:
        problems.append(f"no feature columns left after dropping {drop}")
    if problems:
        raise ValueError(f"{path}: " + "; ".join(problems))
    cells = np.array(rows, dtype=object)
    labels = np.array([c.strip() for c in cells[:, t]], dtype=object)
    X = cells[:, keep]
    lines = np.asarray(lines)
    no_label = np.array([is_missing(v) for v in labels])
    dropped_labels = int(no_label.sum())
    if dropped_labels and missing != "drop":
        where = ", ".join(str(v) for v in lines[no_label][:5]) + (" ..." if dropped_labels > 5 else "")
        raise ValueError(f"{path}: column {header[t]!r} (the target) has {dropped_labels} missing label(s) (line "
                         f"{where}); a missing label is not a class: drop those rows (fastnn train --missing "
                         f"drop; load_table(..., missing='drop')) or fill them in the file")
    keep_rows = ~no_label
    holes = np.array([[is_missing(v) for v in row] for row in X], dtype=bool).reshape(X.shape)
    dropped_cells = 0
    if missing == "drop":
        incomplete = holes.any(axis=1) & keep_rows
        dropped_cells = int(incomplete.sum())
        keep_rows &= ~incomplete
    if not keep_rows.any():
        raise ValueError(f"{path}: no rows left after dropping those with missing cells")
    features = [header[i] for i in keep]
    left = holes[keep_rows]
    missing_cells = {name: int(left[:, k].sum()) for k, name in enumerate(features) if left[:, k].any()}
    return {"features": features, "X": X[keep_rows], "labels": labels[keep_rows].astype(str),
            "lines": lines[keep_rows].tolist(), "target": header[t], "dropped_labels": dropped_labels,
            "dropped_cells": dropped_cells, "missing_cells": missing_cells}


def r2_score(y_true, y_pred, sample_weight=None):
    """scikit-learn's ``r2_score`` (multioutput="uniform_average", force_finite=True): per output,
    1 - SSE / SS about y_true's (weighted) mean, averaged over outputs; an output whose target is constant
    scores 1.0 when predicted exactly, else 0.0. The one R² of fastnn: the estimators' ``score``, their early
    stopping on a regressor, and the CLI's train and evaluate."""
    t = np.asarray(y_true, np.float64).reshape(len(y_true), -1)
    p = np.asarray(y_pred, np.float64).reshape(t.shape)
    w = np.ones((len(t), 1)) if sample_weight is None else np.asarray(sample_weight, np.float64).reshape(-1, 1)
    num = (w * (t - p) ** 2).sum(axis=0)
    den = (w * (t - np.average(t, axis=0, weights=w[:, 0])) ** 2).sum(axis=0)
    scores = np.ones(t.shape[1])
    ok = den != 0
    scores[ok] = 1 - num[ok] / den[ok]
    scores[(num != 0) & ~ok] = 0.0
    return float(scores.mean())


def regression_scores(y_true, y_pred, baseline_mean=None):
    """{"rmse", "r2", "baseline_rmse"} of regression predictions: the root mean squared error over every
    output, R² (``r2_score``: about y_true's own mean; 0 is as good as predicting that mean, negative is
    worse) and the RMSE of predicting ``baseline_mean`` (default y_true's mean; the CLI's train passes the
    training mean, the honest baseline of a model that has only seen the training data)."""
    t = np.asarray(y_true, np.float64).reshape(len(y_true), -1)
    p = np.asarray(y_pred, np.float64).reshape(len(y_true), -1)
    mean = t.mean(axis=0) if baseline_mean is None else np.asarray(baseline_mean, np.float64).reshape(-1)
    sse = float(((t - p) ** 2).sum())
    sst = float(((t - mean) ** 2).sum())
    return {"rmse": math.sqrt(sse / t.size), "r2": r2_score(t, p), "baseline_rmse": math.sqrt(sst / t.size)}


def id_like_columns(X, names=None, min_rows=10):
    """``[(column index or name, description)]`` for the columns of X that look like row ids rather than
    measurements: every value an integer, all distinct, and either in file order (increasing or decreasing:
    row numbers, sorted ids) or exactly a range lo..lo+n-1 in any order (a shuffled row number). A model
    can learn the row order from such a column (a file sorted by class gives its class away). Only checked
    with at least ``min_rows`` rows."""
    X = np.asarray(X)
    found = []
    if X.ndim != 2 or len(X) < min_rows:
        return found
    for c in range(X.shape[1]):
        col = X[:, c].astype(np.float64)
        if not np.all(col == np.round(col)):
            continue
        lo, hi = col.min(), col.max()
        if len(np.unique(col)) != len(col):
            continue
        steps = np.diff(col)
        if (steps > 0).all() or (steps < 0).all():
            how = "increasing with the row" if steps[0] > 0 else "decreasing with the row"
        elif hi - lo == len(col) - 1:
            how = "a shuffled row number"
        else:
            continue
        found.append((c if names is None else names[c], f"distinct integers {lo:.0f}..{hi:.0f}, {how}"))
    return found


def load_dataset(name_or_path, target=None, seed=0, dtype=np.float32, drop=(), header=True):
    """Load a dataset by name or file path, as ``fastnn train`` does.

    Names: "digits" (the fixed stratified 75/25 split of the bundled digits), "xor" (make_xor(n=400,
    noise=0.1), no test set), "spirals" and "moons" (1000 points, seeded stratified 75/25 split).
    Paths: ``*.npz`` (load_npz; its X_test/y_test if present) or ``*.csv`` (load_csv, with `target` and
    `drop`; no test set). Returns a dict: X (n, features) of `dtype`; y (n,) int64 class ids (float for regression
    targets, 2-D if the file stores one-hot or multi-output targets); X_test, y_test likewise or None;
    classes (list of label names from a CSV, else None); features (a CSV's feature column names, else
    None); name (str).
    """
    key = os.fspath(name_or_path)
    dtype = _float_dtype(dtype)
    ext = os.path.splitext(key)[1].lower()
    if target is not None and (key.lower() in DATASET_NAMES or ext != ".csv"):
        raise ValueError(f"target={target!r} applies only to .csv files, not {key!r}")
    if drop and (key.lower() in DATASET_NAMES or ext != ".csv"):
        raise ValueError(f"drop={drop!r} applies only to .csv files, not {key!r}")
    X_test = y_test = classes = features = None
    if key.lower() == "digits":
        X, X_test, y, y_test = digits_split(seed=seed, dtype=dtype)
    elif key.lower() == "xor":
        X, y = make_xor(n=400, noise=0.1, seed=seed, dtype=dtype)
    elif key.lower() in ("spirals", "moons"):
        make = make_spirals if key.lower() == "spirals" else make_moons
        X, X_test, y, y_test = train_test_split(*make(seed=seed, dtype=dtype), test_size=0.25, seed=seed)
    elif ext == ".npz":
        d = load_npz(key)
        X, y, X_test, y_test = d["X"], d["y"], d["X_test"], d["y_test"]
        X = check_representable(X, dtype, f"{key}: array 'X'")
        y = y.astype(np.int64) if y.dtype.kind in "biu" else y.astype(np.float64)
        if X_test is not None:
            X_test = check_representable(X_test, dtype, f"{key}: array 'X_test'")
            y_test = y_test.astype(np.int64) if y_test.dtype.kind in "biu" else y_test.astype(np.float64)
    elif ext == ".csv":
        X, y, features, classes = load_csv(key, target=target, dtype=dtype, drop=drop, header=header)
    else:
        raise ValueError(f"unknown dataset {key!r}: expected one of {', '.join(DATASET_NAMES)}, "
                         f"or a path ending in .npz or .csv")
    name = key.lower() if key.lower() in DATASET_NAMES else key
    return {"X": X, "y": y, "X_test": X_test, "y_test": y_test, "classes": classes,
            "features": features, "name": name}
