"""The one place where kernels get their Numba options.

``kernel`` compiles serially; ``internal_kernel`` is a kernel that only other kernels call (no Python
entry point); ``inline_kernel`` is a part of one kernel, inlined where it is called; ``parallel_twin``
gives the same Python function a second, ``parallel=True`` dispatcher under its own cache name, so that a
caller can pick the serial variant below the size where a parallel region pays for its launch (see
``PARALLEL_MIN_ELEMENTS``).

No fastmath flag that assumes finite values (``nnan``, ``ninf``): divergence detection needs NaN and Inf
to survive (DESIGN §3). Reductions may reassociate (``reduction_kernel``) so that they vectorise; their
results are deterministic for a given build, though not equal to a left-to-right sum.

Compile time is spent per separately compiled function (typing, a Python entry point, code generation,
a cache entry) and again in every caller that links it, so kernels are kept few and shallow: measure a
cold compile with ``NUMBA_CACHE_DIR=$(mktemp -d) fastnn train -q``.

Measured (2-core Xeon, loaded; CPU seconds of the numba:compile events of ``fastnn train -q``, digits
64-128-10 ReLU, softmax-CE on class ids, Adam, float32; 42 compiles, 6.9 s): the epoch variant's own
typing, lowering and LLVM 2.3 s; ``bias_activate`` 0.9 s for two signatures; the softmax-CE head 0.7 s
for three; ``scale_by_derivative`` 0.5 s; the Adam update family 0.8 s; ~25 small kernels 0.05-0.15 s
each. What was tried, one change at a time:
- a call never compiles a second signature of the same math: the fused heads have one signature
  (``<head>_w``, weights always an array, (0,) when unweighted) and the kept pre-activation gets its own
  ``add_bias`` instead of ``bias_activate`` with a literal IDENTITY code: 6.9 -> 6.3 s. Kept.
- plain calls instead of IR inlining (``inline_kernel`` as ``internal_kernel``): 7.7 -> 9.3 s. Rejected:
  every separately compiled function costs more than re-typing its IR in its one caller.
- no C-callable (cfunc) wrapper for any kernel (``OPTIONS``): nothing takes a kernel's address, and each
  wrapper is one more function to lower and optimise: -0.25 s (5 paired runs, 4 in favour). Kept.
- IR inlining of the activations' scalar helpers (10 loops x 3 passes call them): 7.2 -> 12.6 s. Rejected.
- IR inlining of the Adam scalar helpers: no change (0.81 -> 0.87 s, noise). Rejected.
- one generic loop per kernel for the activations that call exp/tanh/erf (each element through a scalar
  ``activate_scalar(code, ...)`` switch) instead of a loop per code: 5.64 -> 4.73 s (three paired runs,
  loaded), but that per-element switch makes an epoch 15-18 % slower for Sigmoid, ELU and SiLU (7 % GELU;
  a 64-256-256-10 network, one thread, interleaved); keeping Sigmoid, TanH and LeakyReLU loops of
  their own saves 0.5 s and still costs ELU/SiLU 15 %. Rejected: a one-time 0.5 s does not buy a lasting
  15 % on a whole family of networks.
- ``_dbg_optnone`` on the epoch driver (no LLVM optimisation of its own body): 2.28 -> 2.12 s, and such
  a kernel cannot be cached. Rejected: LLVM on the driver is not where its time goes.
- activation groups (activations.GROUPS): the activation kernels, step.py's forward/delta pieces, every
  driver and dense.py's kernels made per group of activation codes — "piecewise" (identity, ReLU,
  LeakyReLU) or "all" —, the smooth codes' branches cut before typing by a test on a global constant;
  a network compiles the smallest group that runs its codes. ``fastnn train -q`` (ReLU): 7.27 -> 5.96 and
  7.79 -> 5.83 s (two paired runs, loaded; 36 -> 23 compiles). Kept: the same loops, so the same bits.
  With the Dropout chains below, idle, paired: 7.67 -> 5.49 and 8.03 -> 5.64 s CPU; whole process, wall,
  interleaved medians of 3: 10.1 -> 6.9 s cold (warm unchanged, 0.95 s, on a slower day of this machine).
- the same for Dropout (step.CHAINS: a chain key is (activation group, has Dropout)): a network without
  Dropout compiles no mask code (``apply``, its hash): 23 -> 20 compiles, ~0.3 s CPU.
- IR inlining of the six small kernels the step calls (``gather``, ``gather_rows``, ``add_bias``,
  ``column_sums``, ``count_correct_labels``, ``_weight_sum``) and of the Adam helpers: 20 -> 12 compiles,
  but the driver's own typing and lowering grew by 0.4-0.5 s, as much as the compiles saved (five paired
  runs, loaded: medians 4.64 -> 4.68 s). Rejected: below ~0.1 s a separately compiled function costs
  about what its inlined copies cost the driver.
Records for the kernels' arguments (a 34-argument kernel, measured alone): positional 0.69 s, one
namedtuple of the same fields 0.70 s (unboxing the arrays costs the same), a structref 0.10 s plus 0.97 s
for its constructor, which Numba compiles in every process (not cached). Namedtuples are the record kind
that costs nothing.
What remains is the cost of typing and lowering one large driver plus every activation branch and both
update passes (runtime codes compile all ten activations' loops); closing it needs fewer, flatter
functions (one row pass per activation group, the checked update as one pass), not options.
"""
import contextlib
import functools
import gc
import hashlib
import importlib.machinery
import os
import sys
import types

import numba.core.event
from numba import njit
from numba.core import caching
from numba.core.runtime import rtsys

_KERNELS_DIR = os.path.dirname(os.path.abspath(__file__))


@functools.lru_cache(maxsize=None)
def _kernels_source_hash(stamps):
    digest = hashlib.sha256()
    for name, _ in stamps:
        with open(os.path.join(_KERNELS_DIR, name), "rb") as f:
            digest.update(name.encode() + b"\0" + f.read())
    return digest.digest()


def _kernels_stamp():
    """One hash over every kernel source file."""
    names = sorted(n for n in os.listdir(_KERNELS_DIR) if n.endswith(".py"))
    return _kernels_source_hash(tuple((n, os.stat(os.path.join(_KERNELS_DIR, n)).st_mtime_ns) for n in names))


_process_stamps = {}
_writable_paths = set()


def _process_stamp():
    """The kernels' stamp as this process first read it: the sources its kernels were imported from, so
    that it is computed once, not for each of the ~140 kernels (a listdir and ~16 stats each)."""
    stamp = _process_stamps.get(_KERNELS_DIR)
    if stamp is None:
        stamp = _process_stamps[_KERNELS_DIR] = _kernels_stamp()
    return stamp


def _whole_package_stamp(locator_class):
    """A Numba cache locator that stamps a kernel's cache with the hash of *all* kernel files.

    Numba re-validates a cached function against its own source file only, but the machine code of a
    kernel includes the kernels it calls from other files: after one of those changes (an upgrade, a
    checkout), the stale code would be loaded — and can crash. With this stamp any change to any kernel
    file invalidates every cached kernel.
    """
    class Locator(locator_class):
        def get_source_stamp(self):
            return _process_stamp()

        def ensure_cache_path(self):
            # Numba checks that the directory is writable (makedirs and a temporary file) for every kernel
            # and before every save; the temporary file once per directory and process is the same check —
            # but the directory is made again each time (it may have been deleted since: a save into it
            # must not fail for that)
            path = self.get_cache_path()
            if path in _writable_paths:
                os.makedirs(path, exist_ok=True)
                return
            super().ensure_cache_path()
            _writable_paths.add(path)

        @classmethod
        def from_function(cls, py_func, py_file):
            if os.path.dirname(os.path.abspath(py_file)) != _KERNELS_DIR:
                return None
            return super().from_function(py_func, py_file)

    Locator.__name__ = Locator.__qualname__ = "Kernels" + locator_class.__name__
    return Locator


def _numba_name(name):
    """Numba ≥ 0.61 made its cache classes public (CacheImpl); before, they were _CacheImpl etc."""
    return getattr(caching, name, None) or getattr(caching, "_" + name)


_cache_impl = _numba_name("CacheImpl")
if not getattr(_cache_impl, "_fastnn_locators", False):
    _cache_impl._locator_classes[:0] = [
        _whole_package_stamp(_numba_name(name))
        for name in ("UserProvidedCacheLocator", "InTreeCacheLocator", "UserWideCacheLocator")]
    _cache_impl._fastnn_locators = True



# -- Numba's BLAS probe without importing scipy.linalg --------------------------------------------------------
# Loading the first cached kernel of a process (or compiling one) makes Numba load its implementation
# registries (BaseContext.refresh). One of them, numba.np.arraymath, asks at import whether BLAS is there
# (``_HAVE_BLAS = _check_blas()``, which calls numba.np.linalg.ensure_blas: ``import scipy.linalg.cython_blas``).
# Importing scipy.linalg's package costs ~0.1-0.2 s of CPU (it pulls in scipy._lib's array-API layer and
# numpy.f2py), a fifth of a warm ``fastnn train -q``, and fastnn's kernels use none of Numba's BLAS (they
# call it through kernels/_blas.py). Numba has no setting for this, so the answer is given without the
# import, as narrowly as possible:
# * a meta-path finder (Python's documented import hook) sees numba.np.arraymath about to be imported and
#   replaces numba.np.linalg.ensure_blas by a wrapper, once; it does nothing when arraymath was imported already;
# * the wrapper answers only the one call made from arraymath's ``_check_blas`` at its import: it tells
#   whether scipy ships its cython_blas extension (a file check; that module's import is what the real
#   probe tests) and then puts Numba's own function back in both modules; every other call goes to it.
# So ``_HAVE_BLAS`` gets the value Numba would compute, and anything that uses Numba's BLAS (np.dot and
# np.linalg in a user's own jitted code) still runs Numba's real ensure_blas, with its LP64/ILP64 check,
# before it is compiled. If Numba's internals differ from what this expects, nothing is changed.
# tests/test_jit.py pins all of this.
_ARRAYMATH = "numba.np.arraymath"


def scipy_ships_cython_blas():
    """Whether ``import scipy.linalg.cython_blas`` would find its extension module (without importing it)."""
    if "scipy.linalg.cython_blas" in sys.modules:
        return True
    try:
        import scipy
    except ImportError:
        return False
    for folder in getattr(scipy, "__path__", ()):
        linalg = os.path.join(folder, "linalg")
        if any(os.path.isfile(os.path.join(linalg, "cython_blas" + suffix))
               for suffix in importlib.machinery.EXTENSION_SUFFIXES):
            return True
    return False


def _blas_probe_wrapper(real, linalg):
    def ensure_blas():
        caller = sys._getframe(1)
        if caller.f_code.co_name == "_check_blas" and caller.f_globals.get("__name__") == _ARRAYMATH:
            caller.f_globals["ensure_blas"] = real      # arraymath's later calls: Numba's own
            if linalg.ensure_blas is ensure_blas:
                linalg.ensure_blas = real
            if not scipy_ships_cython_blas():
                raise ImportError("scipy 0.16+ is required for linear algebra")
            return None
        return real()
    ensure_blas.__wrapped__ = real
    ensure_blas.fastnn_probe = True
    return ensure_blas


class _NumbaBlasProbeHook:
    """Meta-path finder that finds nothing: it only installs the wrapper above just before numba.np.arraymath
    is imported, once; then it stays inert in sys.meta_path (removing it could make another thread's import,
    iterating over sys.meta_path at that moment, skip a finder)."""

    done = False

    def find_spec(self, name, path=None, target=None):
        if self.done or name != _ARRAYMATH:
            return None
        self.done = True
        try:
            from numba.np import linalg
            real = linalg.ensure_blas
            if callable(real) and not getattr(real, "fastnn_probe", False) and _ARRAYMATH not in sys.modules:
                linalg.ensure_blas = _blas_probe_wrapper(real, linalg)
        except Exception:       # a Numba laid out otherwise: leave it alone (the import costs what it costs)
            pass
        return None


def _install_blas_probe_hook():
    if _ARRAYMATH in sys.modules or any(isinstance(f, _NumbaBlasProbeHook) or
                                        type(f).__name__ == "_NumbaBlasProbeHook" for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _NumbaBlasProbeHook())


_install_blas_probe_hook()

_numba_ready = False


def numba_prepared():
    """Whether ``prepare_numba`` has run in this process (then calling it again does nothing)."""
    return _numba_ready


def prepare_numba():
    """Numba's one-time set-up of this process for running cached kernels, done now (under Numba's compiler
    lock, Python's cyclic garbage collector paused) rather than inside the first kernel call: the runtime's
    symbols (``rtsys.initialize``: NRT's functions, compiled once per process) that a cached kernel's object
    code links against.

    Numba's own set-up before a load is much larger: ``BaseContext.refresh`` imports and installs every typing
    and lowering registry, ~0.1-0.2 s of CPU and ~280,000 long-lived objects — half of a warm digits fit
    (0.27-0.31 s -> 0.13-0.15 s in the same run without it, 2026-12-07). Loading a cached kernel does not need
    it (``_KernelCache.load_overload``), so a warm process never pays it; a process that compiles pays it
    inside its first compile (``compile_extra`` refreshes), beside seconds of compiling. Call it before a
    fit's first kernel; idempotent, and a no-op (the kernel does the set-up itself) if Numba's layout
    differs. Results do not depend on it."""
    global _numba_ready
    if _numba_ready:
        return
    try:
        from numba.core.compiler_lock import global_compiler_lock
        from numba.core.registry import cpu_target
    except ImportError:
        _numba_ready = True
        return
    with global_compiler_lock:
        if _numba_ready:
            return
        enabled = gc.isenabled()
        gc.disable()
        try:
            rtsys.initialize(cpu_target.target_context)
        except Exception:        # noqa: BLE001 -- a Numba laid out otherwise: the first load or compile does it
            pass
        finally:
            if enabled:
                gc.enable()
        _numba_ready = True


OPTIONS = dict(nogil=True, error_model="numpy", no_cfunc_wrapper=True)
# (no ``cache=True``: Numba's own cache raises when no directory is writable and on a damaged file; every
# kernel made here gets the guarded on-disk cache below instead, ``_with_cache``)


# -- the on-disk cache, guarded -----------------------------------------------------------------------------
# Numba's cache (an index file per function, a data file per signature, both pickles) fails loudly or
# silently at the edges a user meets: a truncated or garbage file raises UnpicklingError / EOFError out of
# the call; a save into a directory deleted or made read-only since raises OSError out of the fit; no
# writable directory at all (an installed, read-only package and a read-only home) raises RuntimeError at
# import; and its index and data are written one after the other without a lock, so two processes saving
# two signatures of one kernel at once, or one killed between the two writes, can leave an index entry whose
# data file holds another signature or an older source's code — which Numba then calls. Here:
# * an index that cannot be read is an empty one (the next save rewrites it);
# * every data file carries the source stamp and the index key it was saved for; a load that finds another
#   stamp or key, or cannot rebuild the entry, is a miss: the kernel is compiled again and saved over it;
# * a save that fails is skipped (the kernel runs; the next process compiles it again), with one line on
#   stderr per process; no writable directory at all: kernels are not cached, the same line when the first
#   compiled kernel cannot be kept.
# So a fit works (perhaps slower) in every case and never runs code saved for another signature or source.
_DATA_TAG = "fastnn-kernel-cache-1"
_said = set()


def _say_once(kind, line):
    """Write ``line`` on stderr once per process for each ``kind``."""
    if kind not in _said:
        _said.add(kind)
        try:
            sys.stderr.write(line + "\n")
            sys.stderr.flush()
        except (OSError, ValueError, AttributeError):      # no usable stderr: nothing to say it on
            pass


def _cannot_keep(where, reason):
    _say_once("cache", f"fastnn: Numba's kernel cache cannot be written ({where}: {reason}); compiled kernels "
                       f"are not kept for the next process (set NUMBA_CACHE_DIR to a writable directory)")


@contextlib.contextmanager
def _exclusive(path):
    """An exclusive lock on the file ``path`` (created if needed) between processes, for the block; without
    one (no fcntl, the file cannot be made: the save fails anyway), the block runs unlocked."""
    try:
        import fcntl
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except (ImportError, OSError):
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)          # (closing releases the lock)


class _KernelCacheFile(caching.IndexDataCacheFile):
    """Numba's index and data files of one kernel, each data file stamped with its source stamp and key."""

    def _load_index(self):
        try:
            return super()._load_index()
        except Exception:        # noqa: BLE001 -- truncated, garbage, unreadable: as if empty (a save rewrites it)
            return {}

    def save(self, key, data):
        # Numba's save reads the index, adds the entry, writes the index, then the data file: two processes
        # saving two signatures of one kernel at once (``fastnn compile``'s workers, process pools, MPI
        # ranks) both read the same index and pick the same data file name — one entry was lost (compiled
        # again by every later process). One process at a time per kernel, by a lock file beside its index.
        with _exclusive(self._index_path + ".lock"):
            super().save(key, (_DATA_TAG, self._source_stamp, key, data))

    def load(self, key):
        try:
            entry = super().load(key)
        except Exception:        # noqa: BLE001 -- a damaged data file: a miss
            return None
        if not (isinstance(entry, tuple) and len(entry) == 4 and entry[0] == _DATA_TAG
                and entry[1] == self._source_stamp and entry[2] == key):
            return None          # another signature's or source's entry (or Numba's own format): a miss
        return entry[3]


class _KernelCache(caching.FunctionCache):
    """Numba's function cache with the guards above."""

    def __init__(self, py_func):
        super().__init__(py_func)
        self._cache_file = _KernelCacheFile(cache_path=self._cache_path, filename_base=self._impl.filename_base,
                                            source_stamp=self._impl.locator.get_source_stamp())

    def load_overload(self, sig, target_context):
        # Numba's own load refreshes the target context first: it imports and installs every typing and
        # lowering registry (~0.1-0.2 s of CPU the first time in a process, most of a warm fit's start).
        # A cached kernel is object code: rebuilding it needs only the runtime's symbols (NRT), which
        # rtsys.initialize installs; the registries are left to the first compile, which refreshes them
        # itself (numba.core.compiler.compile_extra).
        try:
            rtsys.initialize(target_context)
            return self._load_overload(sig, target_context)
        except Exception:        # noqa: BLE001 -- an entry that cannot be rebuilt: compiled again, saved over
            return None

    def save_overload(self, sig, data):
        try:
            super().save_overload(sig, data)
        except Exception as exc:     # noqa: BLE001 -- the kernel is compiled and runs; only keeping it failed
            _cannot_keep(self._cache_path, getattr(exc, "strerror", None) or exc)


class _NoKernelCache(caching.NullCache):
    """No directory to cache in: nothing is loaded, and the first kernel that cannot be kept says so."""

    def __init__(self, reason):
        self.reason = reason

    def save_overload(self, sig, cres):
        _cannot_keep("no directory", self.reason)


def _with_cache(dispatcher):
    """``dispatcher`` (made without Numba's cache) with the guarded on-disk cache."""
    try:
        dispatcher._cache = _KernelCache(dispatcher.py_func)
    except (RuntimeError, OSError):      # no locator: the package's and the user's directories read-only
        dispatcher._cache = _NoKernelCache("neither the package's directory, NUMBA_CACHE_DIR nor the user's "
                                           "cache directory is writable")
    return dispatcher

def cache_directory():
    """The directory Numba's on-disk cache keeps fastnn's kernels in (the package's ``__pycache__`` or
    NUMBA_CACHE_DIR), or None when nowhere is writable (kernels then compile in every process)."""
    try:
        return _KernelCache(cache_directory)._cache_path
    except (RuntimeError, OSError):
        return None

#: Elementwise passes smaller than this run serially: a parallel region costs 30-60 us to launch on the
#: 2-core machine we measured (and ~7.6 ms right after a multi-threaded BLAS call, see fastnn/threads.py);
#: a serial pass takes longer than that only above ~1e6 elements.
PARALLEL_MIN_ELEMENTS = 1 << 20


def is_compiled(dispatcher, args):
    """Whether calling ``dispatcher`` with ``args`` needs no compiling: its signature is compiled in this
    process, or Numba's on-disk cache holds it (then it is loaded now, as the call would)."""
    from numba import typeof
    from numba.core.compiler_lock import global_compiler_lock
    sig = tuple(typeof(a) for a in args)
    if sig in dispatcher.overloads:
        return True
    cache = getattr(dispatcher, "_cache", None)
    if cache is None:
        return False
    with global_compiler_lock:         # as Numba loads (Dispatcher.compile): one thread at a time in LLVM
        if sig in dispatcher.overloads:
            return True
        cres = cache.load_overload(sig, dispatcher.targetctx)
        if cres is None:
            return False
        dispatcher.add_overload(cres)
    return True


def kernel(fn):
    """Serial, cached Numba kernel."""
    return _with_cache(njit(**OPTIONS)(fn))


def internal_kernel(fn):
    """A serial, cached kernel that only other kernels call: Numba builds no Python entry point for it
    (unboxing every argument type is a large part of compiling a kernel with many arguments)."""
    return _with_cache(njit(no_cpython_wrapper=True, **OPTIONS)(fn))


def inline_kernel(fn):
    """A part of one kernel, inlined into its caller at Numba's IR level. Use it for functions with a
    single call site: a separately compiled function costs its own code generation and cache entry, and
    LLVM optimises it again inside every caller (the cold compile of the epoch kernel fell by ~1 s)."""
    return _with_cache(njit(inline="always", **OPTIONS)(fn))


def reduction_kernel(fn):
    """Serial kernel whose floating-point sums may be reassociated (vectorised); NaN/Inf still propagate."""
    return _with_cache(njit(fastmath={"reassoc"}, **OPTIONS)(fn))


def _renamed_copy(fn, suffix, global_names=None):
    """A copy of the Python function ``fn`` named <name>_<suffix> (so Numba caches it apart), its global
    names optionally rebound."""
    namespace = dict(fn.__globals__, **global_names) if global_names else fn.__globals__
    copy = types.FunctionType(fn.__code__, namespace, f"{fn.__name__}_{suffix}", fn.__defaults__,
                              fn.__closure__)
    copy.__qualname__ = f"{fn.__qualname__}_{suffix}"
    copy.__module__ = fn.__module__
    copy.__doc__ = fn.__doc__
    return copy


def parallel_kernel(fn):
    """A ``parallel=True`` kernel (its loops use ``prange``): for large passes only (PARALLEL_MIN_ELEMENTS)."""
    return _with_cache(njit(parallel=True, **OPTIONS)(fn))


def parallel_twin(fn):
    """A ``parallel=True`` copy of ``fn`` (whose loops use ``prange``), cached under a distinct name."""
    return parallel_kernel(_renamed_copy(fn, "parallel"))


def specialize(template, suffix, compile_with=kernel, **global_names):
    """A kernel compiled from ``template`` with some of its global names bound to other kernels: one source
    for several variants, each compiling (and caching) only the code it calls. ``compile_with``: the
    decorator of this module that makes the variant (``kernel`` unless said)."""
    return compile_with(_renamed_copy(template, suffix, global_names))


class _GcPausedWhileCompiling(numba.core.event.Listener):
    """Python's cyclic garbage collector paused for the whole of each outermost Numba compile (its callees'
    compiles nest inside; all of it under Numba's compiler lock, one thread at a time), and re-enabled after
    it only if it was enabled, also when the compile raises (Numba ends the event in a ``finally``).

    A compile allocates hundreds of thousands of short-lived IR and type objects, and the collections they
    trigger re-scan everything alive. Measured on the default network of ``fastnn train -q`` with an empty
    cache (``python -m benchmarks.compile_profile train -q``, 4 interleaved pairs, 2026-12-07, a loaded
    2-core Xeon): 4.77-5.27 -> 4.66-4.95 s of compile CPU (-0.11 to -0.33 s, ~5 %), peak RSS 213 -> 241 MB
    (the garbage of one compile is freed when the collector runs after it)."""

    depth = 0
    enabled = False

    def on_start(self, event):
        if self.depth == 0:
            self.enabled = gc.isenabled()
            gc.disable()
        self.depth += 1

    def on_end(self, event):
        self.depth -= 1
        if self.depth == 0 and self.enabled:
            gc.enable()


numba.core.event.register("numba:compile", _GcPausedWhileCompiling())
