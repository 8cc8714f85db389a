"""Input checks at the Python boundary (DESIGN §5): every public entry point calls these before a kernel
runs, so a kernel never sees a shape, dtype or index that could make it read or write out of bounds.
Each error names the argument, what was expected and what was given."""
import contextlib
import inspect
import math
import numbers
import os
import threading

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def float_dtype(dtype, name="dtype"):
    """The np.dtype for float32 or float64; TypeError for anything else."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt is None or dt not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got {dtype!r}")
    return dt


def float_dtype_of(x, default=np.float32):
    """The native float32/float64 dtype matching a float array ``x`` (any byte order), else ``default``."""
    dt = getattr(x, "dtype", None)
    if isinstance(x, np.ndarray) and dt.kind == "f" and dt.itemsize in (4, 8):
        return np.dtype(np.float32 if dt.itemsize == 4 else np.float64)
    return np.dtype(default)


class NotAnIntegerError(TypeError, ValueError):
    """A count given as something that is no integer ("3", 2.0, True, None): a TypeError, and a ValueError
    as fastnn raised for every bad count before (scikit-learn's InvalidParameterError is both too)."""


def positive_int(value, name):
    """``value`` as an int >= 1: NotAnIntegerError for another type (bool included), ValueError for < 1."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise NotAnIntegerError(f"{name} must be a positive integer, got {type(value).__name__} {value!r:.80}")
    if value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def seed(value, name="seed"):
    """A seed: None or a non-negative integer (returned as int); TypeError for another type, ValueError
    for a negative integer (NumPy's SeedSequence would refuse it later without naming the argument)."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a non-negative integer or None, got {type(value).__name__} "
                        f"{value!r:.100}")
    if value < 0:
        raise ValueError(f"{name} must be a non-negative integer or None, got {value}")
    return int(value)


def real(value, name):
    """A finite real number (not a bool) as a float: TypeError for a non-number, ValueError for NaN/Inf,
    each naming ``name``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r:.80} ({type(value).__name__})")
    try:
        value = float(value)
    except OverflowError:          # an int beyond float64
        value = math.inf if value > 0 else -math.inf
    if not np.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return value


def positive_float(value, name, allow_zero=False):
    ok = isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)) and abs(value) < math.inf \
        and abs(value) <= np.finfo(np.float64).max
    if not ok or value < 0 or (value == 0 and not allow_zero):
        need = "a non-negative" if allow_zero else "a positive"
        raise ValueError(f"{name} must be {need} finite number, got {value!r}")
    return float(value)


def fraction(value, name, low_open=False):
    """A number in [0, 1) (or (0, 1) with low_open)."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
    if not ok or not (0 < value < 1 if low_open else 0 <= value < 1):
        interval = "(0, 1)" if low_open else "[0, 1)"
        raise ValueError(f"{name} must be a number in {interval}, got {value!r}")
    return float(value)


def _numeric_array(x, name):
    if isinstance(x, np.ndarray):
        arr = x
    else:
        try:
            arr = np.asarray(x)
        except (ValueError, TypeError) as exc:
            raise TypeError(f"{name} must be a numeric array, got {type(x).__name__} ({exc})") from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    return arr


def row_blocks(arr, elements=1 << 20):
    """Views of consecutive row blocks of ``arr`` of about ``elements`` each: whole-array NumPy checks
    would allocate a temporary as large as the data."""
    rows = max(1, elements // max(1, arr[:1].size))
    for start in range(0, len(arr), rows):
        yield arr[start:start + rows]


_INT_VIEW = {np.dtype(np.float32): np.int32, np.dtype(np.float64): np.int64}
#: below this many elements NumPy scans (|x| then its max, ~1 ms at this size): the kernel's compile
#: (~0.15 s, once per float width and cache) would cost a small first fit more than it saves
SCAN_KERNEL_ELEMENTS = 1 << 18
#: below this many elements a scan runs on one thread: a 2**23-element scan takes ~3 ms on one core (about
#: 10 GB/s); below that, waiting for a second thread on a busy machine (measured: 2.5 ms per call on a
#: loaded 2-core host for a 4M-element scan) costs more than the split saves
SCAN_SPLIT_ELEMENTS = 1 << 23


def scan(arr, threads=1):
    """max |arr| of a float array in ONE pass, which is also its finiteness verdict: NaN when ``arr`` holds
    a NaN, else inf when it holds an infinity (0.0 for an empty array). C-contiguous writable float32/float64
    arrays of ``SCAN_KERNEL_ELEMENTS`` or more go through kernels/scan.py's one loop (on up to ``threads``
    threads when large: callers pass fastnn.threads.get_num_threads()); others through NumPy (|x|, then its
    max, which propagates NaN), block by block."""
    dt = arr.dtype
    if arr.size == 0:
        return 0.0
    if dt not in _INT_VIEW or not arr.flags.c_contiguous or not arr.flags.writeable \
            or arr.size < SCAN_KERNEL_ELEMENTS:
        return _scan_numpy(arr)
    from .kernels.scan import max_magnitude
    bits = arr.reshape(-1).view(_INT_VIEW[dt])
    n = bits.size
    parts = 1
    if n >= SCAN_SPLIT_ELEMENTS:
        parts = max(1, min(int(threads), n // (SCAN_SPLIT_ELEMENTS // 2)))
    if parts == 1:
        top = max_magnitude(bits, 0, n)
    else:
        import threading
        cuts = [n * t // parts for t in range(parts + 1)]
        tops = [0] * parts

        def work(t):
            tops[t] = max_magnitude(bits, cuts[t], cuts[t + 1])      # nogil: the parts run at once
        threads = [threading.Thread(target=work, args=(t,), name="fastnn-scan", daemon=True)
                   for t in range(1, parts)]
        for thread in threads:
            thread.start()
        try:
            work(0)
        finally:
            for thread in threads:
                thread.join()
        top = max(tops)
    return float(np.array(top, _INT_VIEW[dt]).view(dt))


def _scan_numpy(arr):
    top = 0.0
    for block in row_blocks(arr):
        block = np.abs(block)
        m = float(block.max(initial=0))
        if not m <= np.inf:          # NaN: max propagates it
            return math.nan
        top = max(top, m)
    return top


def absmax(arr):
    """max |arr| (inf when arr holds NaN/Inf), in one pass (``scan``) — or the bound measured in the pass
    that checked this very array inside the caller's ``bound_scope``."""
    known = _known(arr, "finite")
    if known is not None:
        return known
    top = scan(arr)
    return top if math.isfinite(top) else math.inf


# -- what one pass learned, reused while no user code can have changed the array ------------------------
_SCOPE = threading.local()


@contextlib.contextmanager
def bound_scope():
    """A block in which the checks remember what their one pass over an array learned (finite, max |x|),
    keyed by the array object, so that a later check or ``absmax`` of the same array in the block makes no
    second pass. The caller guarantees that no code it does not control (callbacks, a user's schedule)
    runs inside the block, or calls ``forget_bounds()`` after such code ran. Nested blocks share the
    outermost's memory; it is dropped when that one ends. One thread's blocks are invisible to others."""
    outer = getattr(_SCOPE, "known", None)
    if outer is not None:
        yield
        return
    _SCOPE.known = {}
    try:
        yield
    finally:
        _SCOPE.known = None


@contextlib.contextmanager
def bounds_suspended():
    """A block (inside a ``bound_scope`` or not) in which the checks remember nothing and reuse nothing:
    for the part of a call that runs code the caller does not control (a fit's epochs and callbacks)."""
    saved = getattr(_SCOPE, "known", None)
    _SCOPE.known = None
    try:
        yield
    finally:
        _SCOPE.known = saved


def forget_bounds():
    """Drop what the current ``bound_scope`` remembers (code the caller does not control may have run)."""
    known = getattr(_SCOPE, "known", None)
    if known is not None:
        known.clear()


def _remember(arr, kind, value):
    known = getattr(_SCOPE, "known", None)
    if known is not None:
        known[(id(arr), kind)] = (arr, value)      # holds arr: its id cannot be reused in the block


def _known(arr, kind):
    known = getattr(_SCOPE, "known", None)
    entry = None if known is None else known.get((id(arr), kind))
    return entry[1] if entry is not None and entry[0] is arr else None


class NonFiniteInput(ValueError):
    """Raised by an engine whose kernel checks the rows it gathers (its class's ``checks_input``) when one
    holds NaN or Inf: ``row`` the row of X (or -1 when unknown). The training loop puts the network back as
    it was before the fit and raises ``nonfinite_error``'s ValueError in its place — the message of the
    check at the boundary, so that the user sees no difference."""

    def __init__(self, row=-1, message="the input holds NaN or infinite values"):
        super().__init__(message)
        self.row = int(row)


def nonfinite_error(arr, name, given=None):
    """The ValueError for an array ``arr`` that holds NaN or Inf, naming ``name``, how many and where the
    first is (row-major); ``given``: the caller's array that ``arr`` was converted from — finite values
    there that the conversion made infinite are reported as beyond the dtype's range (1e39 in float64 data
    for a float32 network), not as NaN or infinite. None when ``arr`` is all finite. (The slow path of the
    checks: it may allocate as much as ``arr``; a kernel that finds bad input asks it for the message.)"""
    bad = ~np.isfinite(arr)
    if not bad.any():
        return None
    over = np.zeros_like(bad)
    if given is not None and given is not arr and given.shape == arr.shape:
        with np.errstate(invalid="ignore", over="ignore"):
            over = bad & np.isfinite(given)
    n_over, n_bad = int(over.sum()), int(bad.sum())
    if n_over:
        first = tuple(int(i) for i in np.argwhere(over)[0])
        limit = float(np.finfo(arr.dtype).max)
        also = f" (and {n_bad - n_over} NaN or infinite value(s))" if n_bad > n_over else ""
        return ValueError(f"{name} has {n_over} finite value(s) beyond the {arr.dtype.name} range of the network "
                          f"(magnitude above {limit:.3g}), the first at index {first}: {float(given[first]):.6g}{also}; "
                          f"rescale the data or use a float64 network")
    first = tuple(int(i) for i in np.argwhere(bad)[0])
    return ValueError(f"{name} contains {n_bad} NaN or infinite value(s), the first at index {first}")


def ensure_finite(arr, name, given=None, threads=1):
    """ValueError naming ``name`` when ``arr`` holds NaN or Inf (see ``nonfinite_error``); else max |arr|,
    measured in the same single pass (and remembered in the caller's ``bound_scope``, if any: a later check
    or ``absmax`` of this array object there makes no second pass)."""
    known = _known(arr, "finite")
    if known is not None:
        return known
    top = scan(arr, threads)
    if not math.isfinite(top):
        error = nonfinite_error(arr, name, given)
        if error is not None:
            raise error
    _remember(arr, "finite", top)
    return top


def matrix(x, name, dtype, n_features=None, check_finite=True, threads=1):
    """x as a C-contiguous (batch, features) array of ``dtype``; a copy only when needed.

    Never modifies the caller's array. Raises TypeError for non-numeric input and ValueError for the
    wrong rank, an empty batch, the wrong number of features or NaN/Inf — found in one pass over the
    array (``ensure_finite``, on up to ``threads`` threads), none when the caller's ``bound_scope`` has
    already checked this very array.
    """
    out, arr = converted_matrix(x, name, dtype, n_features)
    if check_finite:
        ensure_finite(out, name, arr, threads)
    return out


def converted_matrix(x, name, dtype, n_features=None):
    """``matrix`` without the finiteness check: (x as a C-contiguous writable (batch, features) array of
    ``dtype``, the caller's array as a NumPy array — what ``ensure_finite(out, name, given)`` takes to name
    values the conversion made infinite). For a caller that learns finiteness from a pass its kernel makes
    anyway (NeuralNetwork.predict) and checks ``out`` itself only when that pass finds a non-finite row."""
    arr = _numeric_array(x, name)
    if arr.ndim != 2:
        hint = " (use x.reshape(1, -1) for one sample)" if arr.ndim == 1 else ""
        raise ValueError(f"{name} must be 2-D (batch, features), got shape {arr.shape}{hint}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty: it has 0 rows (samples)")
    if n_features is not None and arr.shape[1] != n_features:
        raise ValueError(f"{name} must have {n_features} features (columns), got {arr.shape[1]}")
    if arr.shape[1] == 0:
        raise ValueError(f"{name} has 0 features (columns)")
    if type(arr) is np.ndarray and arr.dtype == dtype and arr.flags.c_contiguous:
        out = arr           # (what ascontiguousarray returns; without its errstate, a fixed cost per call)
    else:
        with np.errstate(over="ignore"):      # a value beyond dtype's range becomes inf: ensure_finite names it
            out = np.ascontiguousarray(arr, dtype=dtype)
    if not out.flags.writeable:      # read-only input would make every kernel compile a second time
        out = out.copy()
    return out, arr


def labels(y, name, n_samples, n_classes, dtype):
    """Classification targets: int64 class ids (batch,) or a float (batch, classes) target distribution.

    Float ids are accepted when they are whole numbers. Ids must lie in [0, n_classes); rows of a target
    distribution must be finite, non-negative and sum to 1 (see ``_check_distributions``): 0/1 multi-hot
    rows are multilabel targets, refused with a pointer to SigmoidCrossEntropy.
    """
    arr = _numeric_array(y, name)
    if arr.ndim == 2 and arr.shape[1] == 1 and (n_classes != 1 or not arr.any()):
        arr = arr[:, 0]         # a column of class ids (for one class: of zeros; ones are its one-hot rows)
    if arr.ndim not in (1, 2):
        raise ValueError(f"{name} must be class ids (batch,) or one-hot (batch, {n_classes}), "
                         f"got shape {arr.shape}")
    if arr.shape[0] != n_samples:
        raise ValueError(f"{name} has {arr.shape[0]} rows but the input has {n_samples}")
    if arr.ndim == 2:
        if arr.shape[1] != n_classes:
            raise ValueError(f"{name} one-hot targets must have {n_classes} columns, got {arr.shape[1]}")
        with np.errstate(over="ignore"):
            out = np.ascontiguousarray(arr, dtype=dtype)
        ensure_finite(out, name, arr)
        if (out < 0).any():
            raise ValueError(f"{name} target probabilities must be non-negative")
        _check_distributions(out, arr.dtype, name)
        return out
    if arr.dtype.kind == "f":
        ensure_finite(arr, name)
        if (arr != np.round(arr)).any():
            raise ValueError(f"{name} class ids must be whole numbers, got e.g. {arr[arr != np.round(arr)][0]!r}")
    low, high = arr.min(), arr.max()        # checked before the cast to int64, which could wrap
    if low < 0 or high >= n_classes:
        bad = low if low < 0 else high
        raise ValueError(f"{name} class ids must lie in [0, {n_classes - 1}] for {n_classes} outputs, "
                         f"got {bad}")
    return np.ascontiguousarray(arr, dtype=np.int64)


def _check_distributions(t, given_dtype, name):
    """Every row of the checked (n, m) targets ``t`` sums to 1 within m · 4 eps, eps that of the less precise
    of ``t``'s dtype and the given array's float dtype (the rounding of m summands, each off by at most
    eps/2 relative, in the user's sums and in the cast). Multi-hot 0/1 rows name SigmoidCrossEntropy."""
    m = t.shape[1]
    eps = np.finfo(t.dtype).eps
    if np.dtype(given_dtype).kind == "f":
        eps = max(eps, np.finfo(given_dtype).eps)
    tol = 4 * m * eps
    start = 0
    for block in row_blocks(t):
        sums = block.sum(axis=1, dtype=np.float64)
        bad = np.flatnonzero(np.abs(sums - 1) > tol)
        if bad.size:
            i = int(bad[0])
            row, total = block[i], float(sums[i])
            if total > 1 and np.all((block[bad] == 0) | (block[bad] == 1)):
                raise ValueError(
                    f"{name} row {start + i} has {int(total)} ones: multi-hot rows are multilabel targets (each "
                    f"sample may have several labels), which a softmax loss cannot learn; use "
                    f"loss=SigmoidCrossEntropy() (one sigmoid per label) for them")
            hint = (" (for independent labels, not one class per sample, use SigmoidCrossEntropy)"
                    if total > 1 and (row <= 1).all() else "")
            raise ValueError(f"{name} rows must be target distributions (one-hot or soft labels) summing to 1; "
                             f"row {start + i} sums to {total!r}{hint}")
        start += len(block)


def indicators(y, name, n_samples, n_outputs, dtype):
    """Binary / multilabel targets (SigmoidCrossEntropy): a C-contiguous (batch, outputs) ``dtype`` array of
    values in [0, 1] (0/1 labels, or probabilities); (batch,) is accepted for one output."""
    arr = _numeric_array(y, name)
    if arr.ndim == 1 and n_outputs == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[1] != n_outputs:
        want = "(batch,) or (batch, 1)" if n_outputs == 1 else f"(batch, {n_outputs})"
        hint = (" (class ids are targets of a softmax loss; SigmoidCrossEntropy needs 0/1 indicators)"
                if arr.ndim == 1 else "")
        raise ValueError(f"{name} must be 0/1 targets of shape {want} for {n_outputs} sigmoid output(s), "
                         f"got shape {arr.shape}{hint}")
    if arr.shape[0] != n_samples:
        raise ValueError(f"{name} has {arr.shape[0]} rows but the input has {n_samples}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty: it has 0 rows (samples)")
    if arr.dtype.kind == "f":
        ensure_finite(arr, name)
    low, high = arr.min(), arr.max()        # checked before the cast, which could round into range
    if low < 0 or high > 1:
        raise ValueError(f"{name} targets of a sigmoid output must lie in [0, 1] (0/1 labels or "
                         f"probabilities), got {low if low < 0 else high}")
    return np.ascontiguousarray(arr, dtype=dtype)


def sample_weights(w, name, n_samples, dtype):
    """Per-sample weights as a C-contiguous (n_samples,) ``dtype`` array, finite and non-negative."""
    arr = _numeric_array(w, name)
    if arr.ndim != 1 or arr.shape[0] != n_samples:
        raise ValueError(f"{name} must have shape ({n_samples},), one weight per sample, got shape {arr.shape}")
    with np.errstate(over="ignore"):
        out = np.ascontiguousarray(arr, dtype=dtype)
    if _known(out, "weights") is not None:      # checked in this bound_scope already
        return out
    ensure_finite(out, name, arr)
    if (out < 0).any():
        raise ValueError(f"{name} must be non-negative, got {out[out < 0][0]!r}")
    _remember(out, "weights", True)
    return out


def targets(y, name, n_samples, n_outputs, dtype):
    """Regression targets as a C-contiguous (batch, outputs) array; (batch,) is accepted for one output."""
    arr = _numeric_array(y, name)
    if arr.ndim == 1 and n_outputs == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[1] != n_outputs:
        raise ValueError(f"{name} must have shape (batch, {n_outputs}), got {arr.shape}")
    if arr.shape[0] != n_samples:
        raise ValueError(f"{name} has {arr.shape[0]} rows but the input has {n_samples}")
    with np.errstate(over="ignore"):
        out = np.ascontiguousarray(arr, dtype=dtype)
    ensure_finite(out, name, arr)
    return out


# -- public attributes (DESIGN §5: every public attribute is read-only or validated when assigned) --------
_MISSING = object()          # Checked's "no default"


class Checked:
    """A public attribute validated on every assignment: ``lr = Checked(check)`` in a class body, where
    ``check(value, name)`` returns the value to store or raises TypeError / ValueError naming ``name``.
    ``default``: what an instance that never assigned it reads (a class-wide default)."""


    def __init__(self, check, default=_MISSING, doc=None):
        self.check, self.default = check, default
        self.__doc__ = doc

    def __set_name__(self, owner, name):
        self.name, self.key = name, "_checked_" + name

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        try:
            return obj.__dict__[self.key]
        except KeyError:
            if self.default is not _MISSING:
                return self.default
            raise AttributeError(f"{type(obj).__name__} has no attribute {self.name!r} yet") from None

    def __set__(self, obj, value):
        obj.__dict__[self.key] = self.check(value, self.name)

    def __delete__(self, obj):
        raise AttributeError(f"{type(obj).__name__}.{self.name} cannot be deleted; assign a valid value instead")


class ReadOnly:
    """A public attribute that cannot be assigned: ``dtype = ReadOnly(lambda self: self._dtype, why)``;
    assigning it raises AttributeError naming it and saying ``why`` (what to do instead)."""

    def __init__(self, fget, why):
        self.fget, self.why = fget, why
        self.__doc__ = getattr(fget, "__doc__", None)

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, obj, owner=None):
        return self if obj is None else self.fget(obj)

    def __set__(self, obj, value):
        raise AttributeError(f"{type(obj).__name__}.{self.name} is read-only: {self.why}")

    def __delete__(self, obj):
        raise AttributeError(f"{type(obj).__name__}.{self.name} is read-only: {self.why}")


_GUARD_CACHE = {}


def _fastnn_defined(cls, name):
    """(defining class, attribute) of ``name`` in cls's MRO, or (None, None)."""
    for klass in cls.__mro__:
        if name in klass.__dict__:
            return klass, klass.__dict__[name]
    return None, None


class Guarded:
    """Mixin for fastnn's public objects: a public attribute that fastnn defines on the class is either a
    data descriptor that validates the assignment (``Checked``, a property with a setter) or read-only —
    assigning a constant (an activation's ``code``, a loss's ``classification``) or a property without
    setter on an instance raises AttributeError naming it. Methods may be replaced on an instance by a function
    (a test's ``mock.patch.object``): that is user code, like a custom layer; by anything else, refused. Names a user's subclass defines, and new
    names, are the user's own and set freely; names starting with "_" are private (not checked)."""

    def __setattr__(self, name, value):
        if name[:1] != "_":
            key = (type(self), name)
            verdict = _GUARD_CACHE.get(key)
            if verdict is None:
                klass, attr = _fastnn_defined(type(self), name)
                if klass is None or not klass.__module__.startswith("fastnn"):
                    verdict = "free"
                elif isinstance(attr, property):
                    verdict = "free" if attr.fset is not None else "read-only"
                elif hasattr(attr, "__set__"):
                    verdict = "free"
                elif inspect.isfunction(attr) or isinstance(attr, (staticmethod, classmethod)):
                    verdict = "method"
                else:
                    verdict = "read-only"
                _GUARD_CACHE[key] = verdict
            if verdict == "method" and not callable(value):
                raise AttributeError(f"{type(self).__name__}.{name} is a method: it can be replaced on an instance "
                                     f"by a function only (got {type(value).__name__})")
            if verdict == "read-only":
                raise AttributeError(f"{type(self).__name__}.{name} is read-only (fixed by {type(self).__name__}; "
                                     f"build a new object to change it)")
        object.__setattr__(self, name, value)

    def __delattr__(self, name):
        if name[:1] != "_" and name not in self.__dict__:
            klass, _ = _fastnn_defined(type(self), name)
            if klass is not None and klass.__module__.startswith("fastnn"):
                raise AttributeError(f"{type(self).__name__}.{name} cannot be deleted")
        object.__delattr__(self, name)


def integer(value, name, low=0, high=2 ** 53):
    """An integer (not a bool, not a float) in [low, high] as an int: TypeError / ValueError naming ``name``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r:.80}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be an integer in [{low}, {high}], got {value!r:.80}")
    return int(value)


def flag(value, name):
    """True or False (a bool or NumPy bool only): TypeError naming ``name`` otherwise."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r:.80} ({type(value).__name__})")
    return bool(value)


def values_into(dst, value, name):
    """Copy ``value`` into the array ``dst`` after checking it: real numbers (no strings, objects, complex),
    exactly dst's shape, finite and representable in dst's dtype. ``dst`` is unchanged on error."""
    arr = _numeric_array(value, name)
    if arr.shape != dst.shape:
        raise ValueError(f"{name} must have shape {dst.shape}, got {arr.shape}")
    if arr.dtype.kind in "iuf" and arr.size:
        big = absmax(np.asarray(arr, dtype=np.float64))
        if not np.isfinite(big):
            raise ValueError(f"{name} contains NaN or infinite values")
        if big > float(np.finfo(dst.dtype).max):
            raise ValueError(f"{name} has a value of magnitude {big:.3g}, beyond {dst.dtype.name}'s range")
    dst[...] = arr


def nonempty_str(value, name):
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string, got {value!r:.80}")
    return value


def choice(value, name, choices):
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r:.80}")
    return value


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def warn_at_caller(message, category=UserWarning):
    """warnings.warn attributed to the first frame outside the fastnn package — the user's line that called
    fastnn (``skip_file_prefixes`` of Python 3.12, computed by hand so that 3.11 gets it too)."""
    import warnings
    frame, level = inspect.currentframe().f_back, 2
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)


def nonfinite_parameters(layers, optimizer=None):
    """The first of the parameter arrays of ``layers`` (then of ``optimizer``'s state) that holds NaN or
    Inf, named ("layers[0] (FullyConnected) weights", "the Adam optimizer's state"), or None. One pass over
    each array: callers run it where a NaN would otherwise be reported as something else (a fit's first
    step, a gradient check)."""
    for i, layer in enumerate(layers):
        params = list(getattr(layer, "params", ()) or ())
        for j, p in enumerate(params):
            if isinstance(p, np.ndarray) and p.dtype.kind == "f" and not np.isfinite(p).all():
                name = ("weights", "bias")[j] if len(params) == 2 else f"params[{j}]"
                return f"layers[{i}] ({type(layer).__name__}) {name}"
    for slots in getattr(optimizer, "state", None) or ():
        for a in (slots if isinstance(slots, (list, tuple)) else (slots,)):
            if isinstance(a, np.ndarray) and a.dtype.kind == "f" and not np.isfinite(a).all():
                return f"the {type(optimizer).__name__} optimizer's state"
    return None

