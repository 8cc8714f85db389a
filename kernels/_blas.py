"""BLAS GEMM with alpha and beta, callable from Numba kernels.

``np.dot`` inside Numba computes C = A·B only, and instantiates a large implementation (checks, copies)
for every combination of layouts, which LLVM then spends seconds optimising. ``gemm`` calls BLAS sgemm /
dgemm directly: C = alpha·op(A)·op(B) + beta·C on C-contiguous arrays, so that plain SGD can also update
the weights inside the gradient GEMM, W += (-lr)·Xᵀ·dY, with no gradient buffer and no separate pass over W.

Which BLAS: the OpenBLAS of the ``scipy-openblas32`` wheel when it is installed and at least
``MIN_OPENBLAS`` (0.3.31 fixed a race in GEMM, 0.3.34 races between level-3 calls made at the same time from
several threads, which is what fastnn's threads do); else SciPy's own (``scipy.linalg.cython_blas``; SciPy
1.17 bundles 0.3.30). ``FASTNN_BLAS=scipy`` in the environment picks SciPy's (to compare the two).
``BLAS_NAME``, ``BLAS_VERSION`` and ``BLAS_CONFIG`` tell which one the kernels call. The wheel's library is
found without importing its package: ``import scipy_openblas32`` loads it with RTLD_GLOBAL, and SciPy's
extension modules loaded after that bind their BLAS and LAPACK symbols (the same ``scipy_*`` names) to it
instead of to SciPy's own OpenBLAS.

The GEMMs are declared to Numba as external symbols whose addresses are registered with LLVM when this
module is imported, as Numba does for its own np.dot: unlike a ctypes pointer, a symbol keeps the calling
kernels cacheable on disk (the cache holds the name; the address is looked up when a kernel is loaded, so
switching BLAS needs no recompilation).

Thread counts travel with each GEMM (``gemm``'s ``max_threads``), because OpenBLAS keeps one count per
library instance (process-wide in its pthreads builds, SciPy's and the wheel's; openblas_set_num_threads_local
is the same call there), and it rounds a row differently on 1 and on 2 threads. Two entry points
(``_gemm_entry_points``):
- "fastnn_sgemm_1" / "fastnn_dgemm_1", one thread: the GEMM of a second instance of the library that never
  runs on more (``_serial_copy``, loaded on first need by ``concurrent_one_thread_gemms``: ~30 ms), so the
  threads of a batch-parallel epoch, and fits in other Python threads, run their one-thread GEMMs at the
  same time without touching any shared count; until it is loaded, "_n" with one thread;
- "fastnn_sgemm_n" / "fastnn_dgemm_n", n threads: the shared instance's count set to n and the GEMM run
  while holding one mutex, so no other GEMM of fastnn changes the count under it.
A fit's result is then a function of (seed, thread count) whatever the other threads of the process do
with fastnn (DESIGN §3). ``fastnn.set_num_threads`` sets the shared count under the mutex too (and leaves
this library out of its threadpoolctl call); what fastnn cannot hold is a third party that changes that
count (threadpoolctl) while a multi-threaded GEMM of fastnn runs. The mutex is only ever held by compiled
code that does not need the GIL (and by the thread that forks, across the fork): the kernels that wait for
it must not hold the GIL, and every fastnn kernel is ``nogil``.
"""
import contextlib
import ctypes
import importlib.util
import os
import re
import threading

import llvmlite.binding
import numpy as np
from llvmlite import ir
from numba import cfunc, types
from numba.core import cgutils
from numba.extending import intrinsic

from ._jit import kernel

#: The oldest OpenBLAS taken from the scipy-openblas32 wheel (see the module's docstring).
MIN_OPENBLAS = (0, 3, 34)


def _address(lib, *names):
    """The address of the first of ``names`` that the ctypes library ``lib`` exports, else None."""
    for name in names:
        try:
            return ctypes.cast(getattr(lib, name), ctypes.c_void_p).value
        except AttributeError:
            continue
    return None


def _string(lib, *names):
    """What the first exported ``const char *f(void)`` of ``names`` returns, else ''."""
    address = _address(lib, *names)
    return ctypes.CFUNCTYPE(ctypes.c_char_p)(address)().decode(errors="replace") if address else ""


def _version(config):
    """(major, minor, patch) from an OpenBLAS config string ("OpenBLAS 0.3.34.481.3 DYNAMIC_ARCH ..."), or None."""
    match = re.match(r"OpenBLAS (\d+)\.(\d+)\.(\d+)", config)
    return tuple(int(v) for v in match.groups()) if match else None


def _wheel_library():
    """The scipy-openblas32 wheel's library (ctypes, RTLD_LOCAL) and its path; None when it is not installed.

    Found through the package's location, not by importing it (see the module's docstring)."""
    spec = importlib.util.find_spec("scipy_openblas32")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        lib_dir = os.path.join(folder, "lib")
        names = sorted(n for n in os.listdir(lib_dir) if n.startswith("libscipy_openblas")
                       and (n.endswith((".so", ".dylib", ".dll")) or ".so." in n)) if os.path.isdir(lib_dir) else []
        if names:
            path = os.path.join(lib_dir, names[0])
            try:
                with _short_spin():
                    return ctypes.CDLL(path), path
            except OSError:         # a broken install: SciPy's BLAS, as without the wheel
                return None
    return None


#: how long (2**n CPU cycles) OpenBLAS's threads spin after a multi-threaded call before they sleep, for the
#: library fastnn loads (read once, when it is loaded). OpenBLAS's default, 2**28 (~0.1 s), took one of two
#: cores from the batch-parallel kernel's workers right after a predict: the next three tabular epochs ran
#: 38.9-41.7 ms instead of 21.6-23.4 (2-core Xeon, 2026-12-07); with 2**16 (~25 us) 21.1-22.7 ms, and
#: predict's own time unchanged (65,536 mnist rows whole or in 128 calls: within the run-to-run spread).
BLAS_THREAD_TIMEOUT = "16"


@contextlib.contextmanager
def _short_spin():
    """OPENBLAS_THREAD_TIMEOUT = BLAS_THREAD_TIMEOUT while the library loads, unless the user set it; the
    environment is given back as it was (libraries loaded later read their own)."""
    if "OPENBLAS_THREAD_TIMEOUT" in os.environ:
        yield
        return
    os.environ["OPENBLAS_THREAD_TIMEOUT"] = BLAS_THREAD_TIMEOUT
    try:
        yield
    finally:
        os.environ.pop("OPENBLAS_THREAD_TIMEOUT", None)


def _scipy_pointer(name):
    """The address of SciPy's BLAS function ``name`` (from scipy.linalg.cython_blas)."""
    import scipy.linalg.cython_blas as cython_blas
    capsule = cython_blas.__pyx_capi__[name]
    get_name = ctypes.pythonapi.PyCapsule_GetName
    get_name.restype, get_name.argtypes = ctypes.c_char_p, [ctypes.py_object]
    get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
    get_pointer.restype, get_pointer.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    return get_pointer(capsule, get_name(capsule))


def _library_holding(address):
    """The library (ctypes) and path of the shared object that holds ``address``; (None, None) if unknown."""
    class DlInfo(ctypes.Structure):
        _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                    ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]
    try:
        info = DlInfo()
        if not ctypes.CDLL(None).dladdr(ctypes.c_void_p(address), ctypes.byref(info)) or not info.dli_fname:
            return None, None
        path = info.dli_fname.decode()
        return ctypes.CDLL(path), path
    except (OSError, AttributeError):
        return None, None


def _find_blas():
    """The BLAS the kernels call: a dict with the library (``lib``, kept alive here), ``path``, ``source``,
    ``config`` and the addresses ``sgemm``, ``dgemm``, ``get`` /
    ``set`` (openblas_get/set_num_threads); a missing function's address is None."""
    wheel = None if os.environ.get("FASTNN_BLAS", "").strip().lower() == "scipy" else _wheel_library()
    if wheel is not None:
        lib, path = wheel
        config = _string(lib, "scipy_openblas_get_config")
        sgemm, dgemm = _address(lib, "scipy_sgemm_"), _address(lib, "scipy_dgemm_")
        if sgemm and dgemm and (_version(config) or (0,)) >= MIN_OPENBLAS:
            source = "scipy-openblas32"
        else:
            wheel = None            # too old (or not the library expected): SciPy's, as before
    if wheel is None:
        sgemm, dgemm = _scipy_pointer("sgemm"), _scipy_pointer("dgemm")
        lib, path = _library_holding(sgemm)         # SciPy's cython_blas module; dlsym also searches its BLAS
        config = _string(lib, "scipy_openblas_get_config", "openblas_get_config") if lib else ""
        if config:
            path = _library_holding(_address(lib, "scipy_openblas_get_config", "openblas_get_config"))[1] or path
        source = "scipy"
    found = {"lib": lib, "path": path, "source": source, "config": config, "sgemm": sgemm, "dgemm": dgemm,
             "core": "", "get": None, "set": None}
    if lib is not None:
        found.update(core=_string(lib, "scipy_openblas_get_corename", "openblas_get_corename"),
                     get=_address(lib, "scipy_openblas_get_num_threads", "openblas_get_num_threads"),
                     set=_address(lib, "scipy_openblas_set_num_threads", "openblas_set_num_threads"))
    return found


_BLAS = _find_blas()
_N, _T = ord("N"), ord("T")

#: Where the kernels' BLAS comes from: "scipy-openblas32" (the wheel) or "scipy" (SciPy's own).
BLAS_SOURCE = _BLAS["source"]
#: The library's path ('' when unknown).
BLAS_LIBRARY = _BLAS["path"] or ""
#: The library's openblas_get_config(), e.g. "OpenBLAS 0.3.34.481.3 DYNAMIC_ARCH NO_AFFINITY SkylakeX
#: MAX_THREADS=64" (the kernel family, here SkylakeX, follows OPENBLAS_CORETYPE); '' for another BLAS.
BLAS_CONFIG = _BLAS["config"]
#: OpenBLAS's (major, minor, patch), e.g. (0, 3, 34); None for another BLAS.
BLAS_VERSION = _version(BLAS_CONFIG)
#: One line for reports, e.g. "OpenBLAS 0.3.34.481.3 SkylakeX (scipy-openblas32)".
BLAS_NAME = (" ".join(BLAS_CONFIG.split()[:2] + [_BLAS["core"]]).strip() if BLAS_VERSION
             else "the BLAS of scipy.linalg.cython_blas") + f" ({BLAS_SOURCE})"


def _serial_copy(path):
    """A second instance of the BLAS library at ``path`` that always runs on one thread: a dict with the
    library (kept alive here), the file descriptor it was loaded from, and the addresses ``sgemm`` /
    ``dgemm``; None where it cannot be made (no memfd_create, not an OpenBLAS, ``FASTNN_BLAS_SERIAL_COPY=0``).

    OpenBLAS's thread count is one number per library instance (process-wide in its pthreads builds), so a
    kernel that needs a one-thread GEMM cannot have it from the shared instance while another Python
    thread's kernel runs a multi-threaded one: the two would race on that number, and OpenBLAS rounds a row
    differently on 1 and 2 threads (the row's place in the micro-kernel's register block changes). The
    copy is loaded from an in-memory file (a new inode, so the dynamic loader maps a new instance; the name
    "/proc/self/fd/N" is not one that threadpoolctl recognises, so nobody else changes its count), with
    OPENBLAS_NUM_THREADS=1 so that it starts no thread pool."""
    if not path or not hasattr(os, "memfd_create") or \
            os.environ.get("FASTNN_BLAS_SERIAL_COPY", "1").strip() == "0":
        return None
    fd, saved = None, {v: os.environ.get(v) for v in ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS")}
    try:
        fd = os.memfd_create("fastnn-serial-blas", os.MFD_CLOEXEC)
        with open(path, "rb") as src:
            size = os.fstat(src.fileno()).st_size
            sent = 0
            while sent < size:
                sent += os.sendfile(fd, src.fileno(), sent, size - sent)
        os.environ.update(OPENBLAS_NUM_THREADS="1", GOTO_NUM_THREADS="1")
        lib = ctypes.CDLL(f"/proc/self/fd/{fd}", mode=os.RTLD_LOCAL)
    except (OSError, ValueError):
        if fd is not None:
            os.close(fd)
        return None
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    found = {"lib": lib, "fd": fd, "sgemm": _address(lib, "scipy_sgemm_", "sgemm_"),
             "dgemm": _address(lib, "scipy_dgemm_", "dgemm_")}
    set_threads = _address(lib, "scipy_openblas_set_num_threads", "openblas_set_num_threads")
    if not (found["sgemm"] and found["dgemm"] and set_threads):
        return None
    ctypes.CFUNCTYPE(None, ctypes.c_int)(set_threads)(1)
    return found


def _gemm_entry_points(main, set_threads, mutex, lock, unlock):
    """Machine code for the kernels' four BLAS entry points, with the engine that holds it: a dict name ->
    address for "fastnn_sgemm_n" / "fastnn_dgemm_n" ``(int threads, 13 Fortran arguments)`` and
    "fastnn_sgemm_1" / "fastnn_dgemm_1" ``(13 Fortran arguments)``, and the addresses of the two pointers
    "fastnn_serial_sgemm" / "fastnn_serial_dgemm" (null until ``concurrent_one_thread_gemms`` stores the
    serial copy's GEMMs there).

    ``_n`` sets the shared library's thread count and runs the GEMM while holding ``mutex``: concurrent
    kernels never change the count under each other's GEMM (their multi-threaded GEMMs take turns, which
    they would on OpenBLAS's one thread pool anyway). ``_1`` calls the serial copy's GEMM once it is
    loaded, and until then ``_n`` with one thread. A BLAS without a thread count (``set_threads`` None)
    has nothing to protect: both call its GEMM directly."""
    llvmlite.binding.initialize_native_target()
    llvmlite.binding.initialize_native_asmprinter()
    module, i32, i64 = ir.Module("fastnn_blas_calls"), ir.IntType(32), ir.IntType(64)
    ptr = ir.IntType(8).as_pointer()
    gemm_type = ir.FunctionType(ir.VoidType(), [ptr] * 13)

    def external(name, address, fn_type):
        llvmlite.binding.add_symbol(name, address)
        return ir.Function(module, fn_type, name)

    lock_fn = external("fastnn_blas_mutex_lock", lock, ir.FunctionType(i32, [ptr]))
    unlock_fn = external("fastnn_blas_mutex_unlock", unlock, ir.FunctionType(i32, [ptr]))
    set_fn = set_threads and external("fastnn_blas_set_threads", set_threads, ir.FunctionType(ir.VoidType(), [i32]))
    mutex_ptr = ir.Constant(i64, mutex).inttoptr(ptr)
    if set_fn:      # the count set from Python in one foreign call: the mutex is never held by a thread that
        # needs the GIL to go on (a kernel waiting for the mutex may hold it: then the two would deadlock)
        locked_set = ir.Function(module, ir.FunctionType(ir.VoidType(), [i32]), "fastnn_blas_set_threads_locked")
        builder = ir.IRBuilder(locked_set.append_basic_block())
        builder.call(lock_fn, [mutex_ptr])
        builder.call(set_fn, [locked_set.args[0]])
        builder.call(unlock_fn, [mutex_ptr])
        builder.ret_void()
    for dtype in ("s", "d"):
        shared = external(f"fastnn_shared_{dtype}gemm", main[dtype], gemm_type)
        serial = ir.GlobalVariable(module, gemm_type.as_pointer(), f"fastnn_serial_{dtype}gemm")
        serial.initializer = ir.Constant(gemm_type.as_pointer(), None)
        threaded = ir.Function(module, ir.FunctionType(ir.VoidType(), [i32] + [ptr] * 13), f"fastnn_{dtype}gemm_n")
        builder = ir.IRBuilder(threaded.append_basic_block())
        if set_fn:
            builder.call(lock_fn, [mutex_ptr])
            builder.call(set_fn, [threaded.args[0]])
        builder.call(shared, list(threaded.args[1:]))
        if set_fn:
            builder.call(unlock_fn, [mutex_ptr])
        builder.ret_void()
        one = ir.Function(module, gemm_type, f"fastnn_{dtype}gemm_1")
        builder = ir.IRBuilder(one.append_basic_block())
        if not set_fn:
            builder.call(shared, list(one.args))
            builder.ret_void()
            continue
        copy = builder.load_atomic(serial, "acquire", 8)
        with builder.if_else(builder.icmp_unsigned("!=", copy, ir.Constant(copy.type, None))) as (loaded, not_yet):
            with loaded:
                builder.call(copy, list(one.args))
            with not_yet:
                builder.call(threaded, [ir.Constant(i32, 1)] + list(one.args))
        builder.ret_void()
    engine = llvmlite.binding.create_mcjit_compiler(
        llvmlite.binding.parse_assembly(str(module)),
        llvmlite.binding.Target.from_default_triple().create_target_machine())
    engine.finalize_object()
    found = {f"fastnn_{d}gemm_{t}": engine.get_function_address(f"fastnn_{d}gemm_{t}") for d in "sd" for t in "n1"}
    if set_fn:
        found["fastnn_blas_set_threads_locked"] = engine.get_function_address("fastnn_blas_set_threads_locked")
    pointers = {d: engine.get_global_value_address(f"fastnn_serial_{d}gemm") for d in "sd"}
    return found, pointers, engine


class _Mutex:
    """A pthread mutex in memory that the compiled entry points lock by address; ``with`` locks it from
    Python (ctypes releases the GIL while it waits). Forking while another thread holds it would leave the
    child's copy locked: the mutex is taken before ``os.fork`` and released (parent) / re-made (child) after."""

    def __init__(self):
        libc = ctypes.CDLL(None)
        self._init, self.lock, self.unlock = libc.pthread_mutex_init, libc.pthread_mutex_lock, libc.pthread_mutex_unlock
        for fn in (self._init, self.lock, self.unlock):
            fn.argtypes = [ctypes.c_void_p] + ([ctypes.c_void_p] if fn is self._init else [])
        self.memory = ctypes.create_string_buffer(128)       # >= sizeof(pthread_mutex_t) on every libc
        self.address = ctypes.addressof(self.memory)
        self._init(self.address, None)
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(before=self.__enter__, after_in_parent=self._release,
                                after_in_child=lambda: self._init(self.address, None))

    def __enter__(self):
        self.lock(self.address)
        return self

    def __exit__(self, *exc):
        self._release()

    def _release(self):
        self.unlock(self.address)


_MUTEX = _Mutex()
_ENTRY_POINTS, _SERIAL_POINTERS, _entry_engine = _gemm_entry_points(
    {"s": _BLAS["sgemm"], "d": _BLAS["dgemm"]}, _BLAS["set"], _MUTEX.address,
    ctypes.cast(_MUTEX.lock, ctypes.c_void_p).value, ctypes.cast(_MUTEX.unlock, ctypes.c_void_p).value)
for _name, _address_of in _ENTRY_POINTS.items():
    llvmlite.binding.add_symbol(_name, _address_of)
#: True when fastnn sets the thread count of each multi-threaded GEMM (an OpenBLAS: SciPy's or the wheel's).
PER_CALL_THREADS = _BLAS["set"] is not None
_serial = {"tried": False, "copy": None}      # the serial copy, loaded on first need (it costs ~30 ms)
_serial_loading = threading.Lock()


def concurrent_one_thread_gemms():
    """True when one-thread GEMMs can run at the same time from several threads, each on one thread: the
    serial copy of the library (``_serial_copy``) is loaded on the first call that needs it (a batch-parallel
    epoch, a fit or predict outside the main thread), or the BLAS has no thread count to protect. False:
    they take turns with every other GEMM of fastnn under the lock — still exact, but then splitting a
    batch over threads cannot pay (threads.batch_parallel_threads gives 1)."""
    if _BLAS["set"] is None:
        return True
    if not _serial["tried"]:
        with _serial_loading:
            if not _serial["tried"]:
                copy = _serial_copy(_BLAS["path"])
                if copy is not None:
                    for d in "sd":
                        ctypes.c_void_p.from_address(_SERIAL_POINTERS[d]).value = copy[d + "gemm"]
                _serial["copy"], _serial["tried"] = copy, True
    return _serial["copy"] is not None


_set_threads = (ctypes.CFUNCTYPE(None, ctypes.c_int)(_ENTRY_POINTS["fastnn_blas_set_threads_locked"])
                if _BLAS["set"] else None)
_get_threads = ctypes.CFUNCTYPE(ctypes.c_int)(_BLAS["get"]) if _BLAS["get"] else None


def set_blas_threads(n):
    """Set the thread count of the BLAS the kernels call (its shared instance), between two of fastnn's
    GEMMs; returns False when that BLAS has no such function. The kernels set the count of each
    multi-threaded GEMM themselves: this is for other callers of the same library."""
    if _set_threads is None:
        return False
    _set_threads(int(n))        # under the mutex, in one foreign call (``_gemm_entry_points``)
    return True


def is_kernels_library(path):
    """Whether ``path`` is the file of the library the kernels call (whose count only fastnn sets)."""
    try:
        return bool(BLAS_LIBRARY) and os.path.samefile(path, BLAS_LIBRARY)
    except (OSError, TypeError, ValueError):
        return False


def get_blas_threads():
    """The thread count of the BLAS the kernels call (openblas_get_num_threads), or None if unknown."""
    return None if _get_threads is None else int(_get_threads())


#: GEMMs with fewer multiply-adds than this run on one BLAS thread: below it, waking and joining the
#: other threads costs more than it saves (measured: benchmarks/README.md, "threads").
MIN_THREADED_MACS = 1 << 22


def _gemm_codegen(context, builder, alpha, a, trans_a, b, trans_b, beta, c, max_threads):
    """LLVM code for c = alpha·op(a)·op(b) + beta·c as one BLAS call, emitted in place at the call site;
    each argument is a (Numba type, LLVM value) pair. A GEMM of at least MIN_THREADED_MACS multiply-adds
    with max_threads > 1 calls "fastnn_?gemm_n" with that count, any other "fastnn_?gemm_1" (one thread).

    The BLAS arguments (passed by pointer, Fortran style) live in stack slots of the calling function: no
    allocation per GEMM and no Numba-IR inlining (which re-runs Numba's passes per call site).
    """
    (alpha_ty, alpha), (a_ty, a), (ta_ty, ta), (b_ty, b), (tb_ty, tb), (beta_ty, beta), (c_ty, c) = (
        alpha, a, trans_a, b, trans_b, beta, c)
    dtype = c_ty.dtype
    i32, i8, intp = ir.IntType(32), ir.IntType(8), context.get_value_type(types.intp)
    arrays = [context.make_array(t)(context, builder, v) for t, v in ((a_ty, a), (b_ty, b), (c_ty, c))]
    itemsize = context.get_constant(types.intp, context.get_abi_sizeof(context.get_data_type(dtype)))
    for array_type, array in zip((a_ty, b_ty, c_ty), arrays):
        if array_type.layout != "C":       # a column slice: its elements must be adjacent
            inner = cgutils.unpack_tuple(builder, array.strides, 2)[1]
            columns = cgutils.unpack_tuple(builder, array.shape, 2)[1]
            spread = builder.and_(builder.icmp_signed("!=", inner, itemsize),
                                  builder.icmp_signed(">", columns, ir.Constant(intp, 1)))
            with builder.if_then(spread, likely=False):
                context.call_conv.return_user_exc(
                    builder, ValueError, ("gemm: an operand's elements are not adjacent within a row",))
    (a_rows, a_cols), (b_rows, b_cols), (m, n) = (cgutils.unpack_tuple(builder, x.shape, 2)
                                                  for x in arrays)

    def leading(x, cols):     # the row stride in elements; at least 1 as BLAS requires
        stride = builder.sdiv(cgutils.unpack_tuple(builder, x.strides, 2)[0], itemsize)
        return builder.select(builder.icmp_signed(">", stride, cols), stride, cols)

    one = ir.Constant(intp, 1)
    lda, ldb, ldc = (builder.select(builder.icmp_signed("<", v, one), one, v)
                     for v in (leading(arrays[0], a_cols), leading(arrays[1], b_cols),
                               leading(arrays[2], n)))
    ta = context.cast(builder, ta, ta_ty, types.boolean)
    tb = context.cast(builder, tb, tb_ty, types.boolean)
    k = builder.select(ta, a_rows, a_cols)
    threads_ty, threads = max_threads
    wanted = context.cast(builder, threads, threads_ty, types.int32)
    macs = builder.mul(builder.mul(m, n), k)
    threaded = builder.and_(builder.icmp_signed(">", wanted, ir.Constant(i32, 1)),
                            builder.icmp_signed(">=", macs, ir.Constant(intp, MIN_THREADED_MACS)))

    def slot(llvm_type, value):
        ptr = cgutils.alloca_once(builder, llvm_type)
        builder.store(value, ptr)
        return builder.bitcast(ptr, cgutils.voidptr_t)

    def flag(trans):
        return slot(i8, builder.select(trans, ir.Constant(i8, _T), ir.Constant(i8, _N)))

    scalar = context.get_value_type(dtype)
    to_i32 = [builder.trunc(v, i32) for v in (n, m, k, ldb, lda, ldc)]
    blas_args = [flag(tb), flag(ta), slot(i32, to_i32[0]), slot(i32, to_i32[1]), slot(i32, to_i32[2]),
                 slot(scalar, context.cast(builder, alpha, alpha_ty, dtype)),
                 builder.bitcast(arrays[1].data, cgutils.voidptr_t), slot(i32, to_i32[3]),
                 builder.bitcast(arrays[0].data, cgutils.voidptr_t), slot(i32, to_i32[4]),
                 slot(scalar, context.cast(builder, beta, beta_ty, dtype)),
                 builder.bitcast(arrays[2].data, cgutils.voidptr_t), slot(i32, to_i32[5])]
    letter = "s" if dtype == types.float32 else "d"
    void_ptrs = [cgutils.voidptr_t] * 13
    with builder.if_else(threaded, likely=False) as (on_threads, on_one):
        with on_threads:
            fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [i32] + void_ptrs),
                                                f"fastnn_{letter}gemm_n")
            builder.call(fn, [wanted] + blas_args)
        with on_one:
            fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), void_ptrs),
                                                f"fastnn_{letter}gemm_1")
            builder.call(fn, blas_args)


def _float_matrices(*arrays):
    """True when every argument is a 2-D float32 (or every one a float64) Numba array type, C-contiguous
    or of layout "A".

    Row slices ``x[i:j]`` of C-contiguous arrays stay C-contiguous; column slices ``x[:, i:j]`` have layout
    "A", their rows strided, their elements adjacent, which BLAS takes as a leading dimension. Any other
    "A" array (elements not adjacent, ``x[:, ::2]``) raises ValueError when called; a transposed (F-layout)
    view does not type-check: neither is multiplied with the wrong strides."""
    return (all(isinstance(x, types.Array) and x.ndim == 2 and x.layout in ("C", "A") for x in arrays)
            and len({x.dtype for x in arrays}) == 1 and arrays[0].dtype in (types.float32, types.float64))


@intrinsic
def gemm(typingctx, alpha, a, trans_a, b, trans_b, beta, c, max_threads):
    """c = alpha · op(a) · op(b) + beta · c for 2-D C-contiguous float32 or float64 arrays (row slices and
    column slices of such included: ``_float_matrices``). Callable from kernels only.

    op(a) is a.T when ``trans_a`` (a then has shape (k, m)), else a (m, k); likewise b. c is (m, n).
    Call it from ``nogil`` kernels only (every fastnn kernel is): a GEMM may wait for the mutex of
    ``_gemm_entry_points``, and a kernel that holds the GIL meanwhile could deadlock with a Python thread.
    Shapes must agree; callers check them. The GEMM runs on ``max_threads`` BLAS threads if that is > 1
    and it has at least MIN_THREADED_MACS multiply-adds, else on one: the count travels with the call, and
    nothing another thread does changes it. Row-major C is column-major Cᵀ = op(b)ᵀ·op(a)ᵀ, so BLAS gets
    b first.
    """
    if not _float_matrices(a, b, c) or not isinstance(max_threads, types.Integer):
        return None

    def codegen(context, builder, sig, args):
        _gemm_codegen(context, builder, *zip(sig.args, args))
        return context.get_dummy_value()
    return types.void(alpha, a, trans_a, b, trans_b, beta, c, max_threads), codegen


@intrinsic
def matmul(typingctx, a, trans_a, b, trans_b, out, max_threads):
    """out = op(a) @ op(b): ``gemm`` with alpha = 1, beta = 0."""
    if not _float_matrices(a, b, out) or not isinstance(max_threads, types.Integer):
        return None

    def codegen(context, builder, sig, args):
        one, zero = context.get_constant(types.float64, 1.0), context.get_constant(types.float64, 0.0)
        pairs = list(zip(sig.args, args))
        _gemm_codegen(context, builder, (types.float64, one), *pairs[:4], (types.float64, zero), *pairs[4:])
        return context.get_dummy_value()
    return types.void(a, trans_a, b, trans_b, out, max_threads), codegen
