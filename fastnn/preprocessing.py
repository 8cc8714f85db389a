"""What a model does to raw features before its first layer, stored in the model file as data (DESIGN §1).

A ``Preprocessing`` describes the raw table a model was trained on and how each column becomes network
inputs; ``net.preprocessing`` holds one (or None), and ``predict``, ``predict_proba``, ``evaluate`` and
``fit`` of that network, ``fastnn predict`` / ``evaluate`` and the ONNX graph (``export_onnx``) all apply
the same one:

* **columns**, in the raw table's order, each one of
  ``{"name", "kind": "numeric", "fill": number or null, "mean": number or null, "std": number or null}``
  (one network input: the cell, a missing cell replaced by ``fill``, then ``(x - mean) / std``) or
  ``{"name", "kind": "categorical", "categories": [str, ...], "fill": str or null}`` (one network input per
  category seen in training, one-hot, in the stored order; a missing cell becomes ``fill``);
* **classes**: the class names (``predict`` returns them instead of class ids), or null;
* **target**: ``{"mean": [...], "std": [...]}``, the regression target's scaling (the network learns
  ``(y - mean) / std``; ``predict`` and ``evaluate`` answer in the original units), or null.

Missing cells are NaN or None, or one of ``MISSING_TOKENS`` in text ("", "NA", "NaN", ...). A missing cell in
a column stored without a fill value (trained with ``missing="error"``) is refused, naming the column and
the row. **An unseen category is an error** naming the column and the value (a model cannot know what an
unseen island means; an all-zero one-hot row would be a silent guess): in Python and the CLI a ValueError,
in onnxruntime a runtime error from its OneHotEncoder (``zeros=0``).

Raw inputs: a pandas DataFrame or a dict of columns (matched by name, in any order, extra columns ignored),
or a 2-D array / list of rows with exactly the stored columns in the stored order. The JSON form
(``to_json`` / ``from_json``) is data only; ``from_json`` checks every entry and raises ValueError naming
the first bad one, so a corrupt or hostile model file gives a clear error and runs nothing.
"""
import math
import numbers

import numpy as np

MISSING_TOKENS = ("", "NA", "N/A", "n/a", "na", "NaN", "nan", "NULL", "null", "None", "?")
MISSING_STRATEGIES = ("error", "drop", "mean", "median", "most_frequent")
_MISSING = frozenset(MISSING_TOKENS)
MAX_CATEGORIES = 1000          # per column; more is free text or an id, not a category
_F32_MAX = float(np.finfo(np.float32).max)

__all__ = ["Preprocessing", "MISSING_TOKENS", "MISSING_STRATEGIES", "is_missing", "parse_number"]


def is_missing(cell):
    """True for a missing cell: None, a float NaN (pandas' NA too), or one of MISSING_TOKENS."""
    if cell is None:
        return True
    if isinstance(cell, str):
        return cell.strip() in _MISSING
    if isinstance(cell, (float, np.floating)):
        return bool(np.isnan(cell))
    try:                                    # pandas.NA, pandas.NaT
        return bool(cell != cell) or type(cell).__name__ in ("NAType", "NaTType")
    except (TypeError, ValueError):
        return type(cell).__name__ in ("NAType", "NaTType")


def parse_number(cell):
    """float(cell) for a number or numeric text, else None (bools are not numbers)."""
    if isinstance(cell, (bool, np.bool_)):
        return None
    if isinstance(cell, numbers.Real):
        return float(cell)
    if isinstance(cell, str):
        if "_" in cell:            # standard notation only: float() takes "1_000", no CSV writer does
            return None
        try:
            return float(cell.strip())
        except ValueError:
            return None
    return None


def category_text(cell):
    """The text a categorical cell is matched by: strings stripped, integral floats as integers."""
    if isinstance(cell, str):
        return cell.strip()
    if isinstance(cell, (float, np.floating)) and float(cell).is_integer():
        return str(int(cell))
    if isinstance(cell, (bool, np.bool_)):
        return str(bool(cell))
    return str(cell)


def _is_number(x):
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x)


class Preprocessing:
    """See the module docstring. Build one with ``Preprocessing.fit`` (or ``from_json``); it is immutable
    in use: ``columns``, ``classes`` and ``target`` are checked when built and read-only."""

    __slots__ = ("_columns", "_classes", "_target")

    def __init__(self, columns, classes=None, target=None):
        checked = _check_json({"columns": columns, "classes": classes, "target": target})
        self._columns, self._classes, self._target = checked

    columns = property(lambda self: [dict(c) for c in self._columns])
    classes = property(lambda self: None if self._classes is None else list(self._classes))
    target = property(lambda self: None if self._target is None else
                      {k: list(v) for k, v in self._target.items()})

    @property
    def names(self):
        """The raw columns' names, in order."""
        return [c["name"] for c in self._columns]

    @property
    def n_features(self):
        """Network inputs the columns make (one per numeric column, one per category)."""
        return sum(len(c["categories"]) if c["kind"] == "categorical" else 1 for c in self._columns)

    @property
    def encoded_names(self):
        """A name per network input: the column, or ``column=category`` for one-hot inputs."""
        out = []
        for c in self._columns:
            out += [f"{c['name']}={k}" for k in c["categories"]] if c["kind"] == "categorical" else [c["name"]]
        return out

    def __repr__(self):
        kinds = [f"{c['name']}{'' if c['kind'] == 'numeric' else '[' + str(len(c['categories'])) + ']'}"
                 for c in self._columns]
        return (f"Preprocessing(columns={kinds}, classes={self._classes}, "
                f"target={'scaled' if self._target else None})")

    # -- JSON ------------------------------------------------------------------------------------
    def to_json(self):
        return {"columns": self.columns, "classes": self.classes, "target": self.target}

    @classmethod
    def from_json(cls, data):
        """ValueError naming the bad entry for anything that is not what ``to_json`` writes."""
        if not isinstance(data, dict) or not {"columns"} <= set(data) <= {"columns", "classes", "target"}:
            raise ValueError("preprocessing must be an object with 'columns' (and optional 'classes', "
                             "'target')")
        return cls(data["columns"], data.get("classes"), data.get("target"))

    def check_network(self, net):
        """ValueError unless this preprocessing fits ``net`` (its inputs, its classes, its outputs)."""
        if self.n_features != net.n_features:
            raise ValueError(f"the preprocessing makes {self.n_features} inputs from {len(self._columns)} "
                             f"columns, but the network takes {net.n_features}")
        if self._classes is not None:
            if not net.classification:
                raise ValueError("the preprocessing has class names, but the network does regression")
            if net.n_outputs > 1 and len(self._classes) != net.n_outputs:
                raise ValueError(f"the preprocessing has {len(self._classes)} class names, the network "
                                 f"{net.n_outputs} outputs")
        if self._target is not None:
            if net.classification:
                raise ValueError("the preprocessing scales a regression target, but the network classifies")
            if len(self._target["mean"]) != net.n_outputs:
                raise ValueError(f"the target scaling has {len(self._target['mean'])} outputs, the network "
                                 f"{net.n_outputs}")

    # -- fitting ---------------------------------------------------------------------------------
    @classmethod
    def fit(cls, X, y=None, *, columns=None, categorical=(), missing="error", standardize=False,
            scale_target=False, classes=None, rows=None, lines=None, dtype=np.float32):
        """A Preprocessing learned from the raw table ``X`` (see the module docstring for its forms).

        ``columns``: names for an array's columns (default ``x0, x1, ...``; a DataFrame or dict brings
        its own). ``categorical``: "auto" (every column that is not all numbers), or the names of the
        columns to one-hot (the others must be numbers). ``missing``: "error" (a missing cell is refused,
        every one counted), "mean" / "median" / "most_frequent" (the fill value of numeric columns; text
        columns always fill with their most frequent category), or "drop" (the caller drops incomplete
        rows; a missing cell is then refused here). ``standardize``: scale numeric columns to mean 0,
        std 1. ``scale_target``: also store the regression target ``y``'s mean and std. ``classes``: the
        class names to store. ``rows``: the training rows (an index array) to learn the statistics from
        (default all; categories are always collected from every row). ``lines``: each row's line in its
        file, for messages. ValueError listing every problem of the table at once.
        """
        if missing not in MISSING_STRATEGIES:
            raise ValueError(f"missing must be one of {MISSING_STRATEGIES}, got {missing!r:.50}")
        names, cols = table_columns(X, columns)
        auto = isinstance(categorical, str) and categorical == "auto"
        wanted = set() if auto else set([categorical] if isinstance(categorical, str) else (categorical or ()))
        unknown = sorted(wanted - set(names))

        def at(i):
            return f"line {lines[i]}" if lines is not None else f"row {i}"

        problems, text_columns, holes = [], [], {}
        if unknown:
            problems.append(f"no column named {', '.join(map(repr, unknown))} to one-hot; columns are {names}")
        specs = []
        limit = _F32_MAX if np.dtype(dtype) == np.float32 else math.inf
        for name, col in zip(names, cols):
            values = [parse_number(v) if not is_missing(v) else None for v in col]
            missing_at = [i for i, v in enumerate(col) if is_missing(v)]
            text = [i for i, (v, c) in enumerate(zip(values, col)) if v is None and not is_missing(c)]
            filled = len(col) - len(missing_at)
            mostly_text = bool(text) and 2 * len(text) > filled
            kind = "categorical" if name in wanted or (auto and mostly_text) else "numeric"
            if kind == "numeric":
                if mostly_text:
                    text_columns.append((name, text[0], col[text[0]]))
                    if missing_at:
                        holes[name] = (len(missing_at), missing_at[0])
                    continue
                if text:
                    problems.append(f"column {name!r}, {at(text[0])}: expected a number, got "
                                    f"{str(col[text[0]]).strip()!r:.40}" + (f" ({len(text)} such cells)"
                                                                              if len(text) > 1 else ""))
                    continue
                bad = [i for i, v in enumerate(values) if v is not None and not abs(v) <= limit]
                if bad:
                    v = values[bad[0]]
                    problems.append(f"column {name!r}, {at(bad[0])}: {str(col[bad[0]]).strip()!r:.40} is "
                                    + ("not finite" if not math.isfinite(v) else
                                       f"beyond the range of {np.dtype(dtype).name} (|x| <= {limit:.4g})"))
                    continue
            if missing_at:
                holes[name] = (len(missing_at), missing_at[0])
            specs.append((name, kind, col, values))
        if text_columns:
            listed = ", ".join(repr(n) for n, _, _ in text_columns)
            joined = ",".join(n for n, _, _ in text_columns)
            name, i, cell = text_columns[0]
            one = len(text_columns) == 1
            problems.insert(0, f"column{'' if one else 's'} {listed} {'is' if one else 'are'} text, not numbers "
                               f"({name!r}, {at(i)}: {str(cell).strip()!r:.40}): one-hot "
                               f"{'it' if one else 'them'} (fastnn train --categorical {joined} or --categorical "
                               f"auto; categorical=[...]) or drop {'it' if one else 'them'} (--drop {joined})")
        if holes and missing in ("error", "drop"):
            listed = ", ".join(f"{n!r} {k} ({at(i)})" for n, (k, i) in holes.items())
            problems.append(f"missing cells (empty, NA, ...) in {len(holes)} column(s): {listed}; choose how "
                            f"to handle them: fastnn train --missing drop|mean|median|most_frequent "
                            f"(missing=... in Python)")
        if problems:
            raise ValueError("; ".join(problems))
        rows = np.arange(len(cols[0]) if cols else 0) if rows is None else np.asarray(rows)
        out = []
        for name, kind, col, values in specs:
            if kind == "categorical":
                seen = [category_text(v) for v in col if not is_missing(v)]
                train = [category_text(col[i]) for i in rows if not is_missing(col[i])]
                categories = sorted(set(seen))
                if not categories:
                    raise ValueError(f"column {name!r} has no values")
                if len(categories) > MAX_CATEGORIES:
                    raise ValueError(f"column {name!r} has {len(categories)} distinct values, more than "
                                     f"{MAX_CATEGORIES} categories: free text or an id; drop it")
                fill = None
                if missing not in ("error", "drop"):
                    counts = {}
                    for v in train or seen:
                        counts[v] = counts.get(v, 0) + 1
                    fill = max(sorted(counts), key=counts.get)
                out.append({"name": name, "kind": kind, "categories": categories, "fill": fill})
                continue
            v = np.array([values[i] for i in rows if values[i] is not None], np.float64)
            if v.size == 0:
                raise ValueError(f"column {name!r} has no values in the training rows")
            fill = None
            if missing == "mean":
                fill = float(v.mean())
            elif missing == "median":
                fill = float(np.median(v))
            elif missing == "most_frequent":
                u, k = np.unique(v, return_counts=True)
                fill = float(u[np.argmax(k)])
            mean = std = None
            if standardize:
                full = v if fill is None else np.array([fill if values[i] is None else values[i] for i in rows])
                mean, std = float(full.mean()), float(full.std())
                if not std > 0:
                    std = 1.0
            out.append({"name": name, "kind": kind, "fill": fill, "mean": mean, "std": std})
        target = None
        if scale_target:
            t = np.asarray(y, np.float64)
            t = (t[rows] if len(t) == len(cols[0]) else t).reshape(len(rows), -1)
            std = t.std(axis=0)
            std[~(std > 0)] = 1.0
            target = {"mean": t.mean(axis=0).tolist(), "std": std.tolist()}
        if isinstance(classes, str) and classes == "auto":      # the sorted names of the labels y
            if y is None:
                raise ValueError("classes='auto' needs the labels y")
            labels = [category_text(v) for v in np.asarray(y, dtype=object).reshape(-1).tolist() if not is_missing(v)]
            classes = sorted(set(labels))
        return cls(out, None if classes is None else [str(c) for c in classes], target)

    # -- applying --------------------------------------------------------------------------------
    def transform(self, X, dtype=np.float32, lines=None):
        """The network inputs (n, n_features) of ``dtype`` for the raw table ``X``; ValueError naming the
        column, row (``lines[row]`` when given: each row's line in its file) and value of the first bad cell
        of every column."""
        names, cols = self.match_columns(X)
        dtype = np.dtype(dtype)
        n = len(cols[0])

        def at(i):
            return f"line {lines[i]}" if lines is not None else f"row {i}"

        out = np.empty((n, self.n_features), np.float64)
        offset, problems = 0, []
        for spec, col in zip(self._columns, cols):
            name = spec["name"]
            if spec["kind"] == "numeric":
                v = _numeric_column(col)
                if v is None:
                    v, problem = _parse_cells(col, name, at)
                    if problem:
                        problems.append(problem)
                        continue
                holes = np.isnan(v)
                if holes.any():
                    if spec["fill"] is None:
                        problems.append(f"column {name!r} has {int(holes.sum())} missing cell(s) (first at "
                                        f"{at(int(np.argmax(holes)))}) and the model has no fill value for it "
                                        f"(trained with missing='error' or 'drop')")
                        continue
                    v = np.where(holes, spec["fill"], v)
                limit = _F32_MAX if dtype == np.float32 else math.inf
                bad = ~(np.abs(v) <= limit)
                if bad.any():
                    i = int(np.argmax(bad))
                    problems.append(f"column {name!r}, {at(i)}: {v[i]!r} is not a finite {dtype.name}")
                    continue
                if spec["mean"] is not None:
                    v = (v - spec["mean"]) / spec["std"]
                out[:, offset] = v
                offset += 1
            else:
                cats = spec["categories"]
                index = {c: k for k, c in enumerate(cats)}
                block = np.zeros((n, len(cats)))
                for i, cell in enumerate(col):
                    if is_missing(cell):
                        if spec["fill"] is None:
                            problems.append(f"column {name!r}, {at(i)}: a missing cell, and the model has no "
                                            f"fill value for it (trained with missing='error' or 'drop')")
                            break
                        key = spec["fill"]
                    else:
                        key = category_text(cell)
                    k = index.get(key)
                    if k is None:
                        problems.append(f"column {name!r}, {at(i)}: the category {key!r:.40} was not seen in "
                                        f"training (known: {cats[:10]}{' ...' if len(cats) > 10 else ''})")
                        break
                    block[i, k] = 1.0
                out[:, offset:offset + len(cats)] = block
                offset += len(cats)
        if problems:
            raise ValueError("; ".join(problems))
        return out.astype(dtype)

    def match_columns(self, X):
        """The stored columns of ``X`` as sequences (by name for a DataFrame or dict, else by position)."""
        names = self.names
        if _is_frame(X) or isinstance(X, dict):
            have = [str(c) for c in (X.columns if _is_frame(X) else X.keys())]
            absent = [c for c in names if c not in have]
            if absent:
                raise ValueError(f"the input has no column {', '.join(map(repr, absent))}; the model needs "
                                 f"{names} (matched by name, in any order; others are ignored)")
            get = (lambda c: X[c].to_numpy(dtype=object)) if _is_frame(X) else (lambda c: X[c])
            lookup = {str(c): c for c in (X.columns if _is_frame(X) else X.keys())}
            cols = [_column(get(lookup[c]), c) for c in names]
            lengths = {len(c) for c in cols}
            if len(lengths) != 1:
                raise ValueError(f"the input's columns have different lengths {sorted(lengths)}")
        else:
            arr = _table_array(X)
            if arr.shape[1] != len(names):
                raise ValueError(f"the input has {arr.shape[1]} columns, the model takes the {len(names)} raw "
                                 f"columns {names} (in this order; or pass a DataFrame to match them by name)")
            cols = [arr[:, k] for k in range(arr.shape[1])]
        if len(cols[0]) == 0:
            raise ValueError("the input has no rows")
        return names, cols

    def encode_target(self, y, scale=False):
        """Class ids for class names (ValueError naming an unknown label), or regression targets as floats
        (scaled as the network learned them when ``scale``)."""
        if self._classes is not None:
            arr = np.asarray(y, dtype=object).reshape(-1) if not _is_frame(y) else y.to_numpy(object).reshape(-1)
            index = {c: k for k, c in enumerate(self._classes)}
            keys = [category_text(v) for v in arr.tolist()]
            unknown = sorted({k for k in keys if k not in index})
            if unknown:
                raise ValueError(f"labels the model does not know: {unknown[:5]}; its classes are "
                                 f"{self._classes}")
            return np.array([index[k] for k in keys], np.int64)
        if self._target is not None:
            t = np.asarray(y, np.float64)
            if scale:
                mean, std = (np.asarray(self._target[k]) for k in ("mean", "std"))
                t = (t.reshape(len(t), -1) - mean) / std
                t = t.reshape(np.shape(y)) if np.ndim(y) == 1 else t
            return t
        return y

    def unscale_outputs(self, out):
        """Network outputs in the target's original units (the identity without target scaling)."""
        if self._target is None:
            return out
        mean, std = (np.asarray(self._target[k]) for k in ("mean", "std"))
        return (out * std + mean).astype(out.dtype)

    def decode_predictions(self, pred):
        """Class names for predicted class ids, regression outputs in the original units."""
        if self._classes is not None and pred.ndim == 1 and pred.dtype.kind in "iu":
            return np.asarray(self._classes, dtype=object)[pred]
        return self.unscale_outputs(pred) if pred.dtype.kind == "f" else pred


# -- raw tables ------------------------------------------------------------------------------------
def _is_frame(X):
    return type(X).__name__ == "DataFrame" and hasattr(X, "columns") and hasattr(X, "to_numpy")


def _column(values, name):
    arr = np.asarray(values, dtype=object) if not isinstance(values, np.ndarray) else values
    if arr.ndim != 1:
        raise ValueError(f"column {name!r} must be 1-D, got shape {arr.shape}")
    return arr


def _table_array(X):
    if isinstance(X, np.ndarray) and X.dtype.kind in "biuf":
        arr = X
    else:
        try:
            arr = np.asarray(X, dtype=object)
        except ValueError:
            raise ValueError("the input must be a 2-D table (rows of cells)") from None
    if arr.ndim != 2:
        raise ValueError(f"the input must be a 2-D table (rows, columns), got shape {arr.shape}")
    return arr


def table_columns(X, columns=None):
    """(names, columns) of a raw table: a DataFrame, a dict of columns, or a 2-D array / list of rows."""
    if _is_frame(X) or isinstance(X, dict):
        names = [str(c) for c in (X.columns if _is_frame(X) else X.keys())]
        cols = [_column(X[c].to_numpy(dtype=object) if _is_frame(X) else X[c], c)
                for c in (X.columns if _is_frame(X) else X.keys())]
    else:
        arr = _table_array(X)
        names = [f"x{k}" for k in range(arr.shape[1])] if columns is None else [str(c) for c in columns]
        if len(names) != arr.shape[1]:
            raise ValueError(f"columns has {len(names)} names for {arr.shape[1]} columns")
        cols = [arr[:, k] for k in range(arr.shape[1])]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate column names: {sorted({n for n in names if names.count(n) > 1})}")
    if not cols or len(cols[0]) == 0:
        raise ValueError("the table has no columns or no rows")
    return names, cols


def _parse_cells(col, name, at):
    """(float64 values with NaN for missing cells, None) or (None, the first bad cell's description)."""
    v = np.empty(len(col))
    for i, cell in enumerate(col):
        if is_missing(cell):
            v[i] = np.nan
            continue
        x = parse_number(cell)
        if x is None:
            return None, f"column {name!r}, {at(i)}: {str(cell)!r:.40} is not a number"
        v[i] = x
    return v, None


def _numeric_column(col):
    """A float64 copy of a numeric column with NaN for missing cells, or None when it needs cell-by-cell
    parsing (text, None)."""
    if col.dtype.kind in "biuf":
        return col.astype(np.float64)
    try:
        v = col.astype(np.float64)
    except (TypeError, ValueError):
        return None
    if any(isinstance(c, (bool, np.bool_)) for c in col):       # True is not the number 1
        return None
    return v


# -- checking the JSON form --------------------------------------------------------------------------
def _check_json(data):
    columns, classes, target = data["columns"], data["classes"], data["target"]
    if not isinstance(columns, list) or not columns:
        raise ValueError("preprocessing columns must be a non-empty list")
    checked, seen = [], set()
    for i, c in enumerate(columns):
        what = f"preprocessing column {i}"
        if not isinstance(c, dict) or not isinstance(c.get("name"), str) or not c["name"]:
            raise ValueError(f"{what} must be an object with a non-empty 'name'")
        if c["name"] in seen:
            raise ValueError(f"{what}: duplicate name {c['name']!r:.50}")
        seen.add(c["name"])
        kind = c.get("kind")
        if kind == "numeric":
            if set(c) != {"name", "kind", "fill", "mean", "std"}:
                raise ValueError(f"{what} ({c['name']!r:.50}): a numeric column has exactly name, kind, fill, "
                                 f"mean, std")
            for key in ("fill", "mean", "std"):
                if c[key] is not None and not _is_number(c[key]):
                    raise ValueError(f"{what} ({c['name']!r:.50}): {key} must be a finite number or null")
            if (c["mean"] is None) != (c["std"] is None) or (c["std"] is not None and not c["std"] > 0):
                raise ValueError(f"{what} ({c['name']!r:.50}): mean and std go together, std > 0")
            checked.append({k: (float(v) if isinstance(v, numbers.Real) else v) for k, v in c.items()})
        elif kind == "categorical":
            if set(c) != {"name", "kind", "categories", "fill"}:
                raise ValueError(f"{what} ({c['name']!r:.50}): a categorical column has exactly name, kind, "
                                 f"categories, fill")
            cats = c["categories"]
            if not (isinstance(cats, list) and 0 < len(cats) <= MAX_CATEGORIES
                    and all(isinstance(k, str) for k in cats) and len(set(cats)) == len(cats)):
                raise ValueError(f"{what} ({c['name']!r:.50}): categories must be 1 to {MAX_CATEGORIES} "
                                 f"distinct strings")
            if c["fill"] is not None and c["fill"] not in cats:
                raise ValueError(f"{what} ({c['name']!r:.50}): fill must be null or one of the categories")
            checked.append({"name": c["name"], "kind": kind, "categories": list(cats), "fill": c["fill"]})
        else:
            raise ValueError(f"{what}: kind must be 'numeric' or 'categorical', got {kind!r:.50}")
    if classes is not None:
        if not (isinstance(classes, list) and classes and all(isinstance(k, str) for k in classes)
                and len(set(classes)) == len(classes)):
            raise ValueError("preprocessing classes must be null or a list of distinct strings")
        classes = list(classes)
    if target is not None:
        if not (isinstance(target, dict) and set(target) == {"mean", "std"}
                and all(isinstance(target[k], list) and target[k] and all(_is_number(v) for v in target[k])
                        for k in ("mean", "std"))
                and len(target["mean"]) == len(target["std"]) and all(v > 0 for v in target["std"])):
            raise ValueError("preprocessing target must be null or {mean: [numbers], std: [positive numbers]} "
                             "of one length")
        target = {k: [float(v) for v in target[k]] for k in ("mean", "std")}
    return checked, classes, target
