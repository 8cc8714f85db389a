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

The functions are declared to Numba as external symbols ("fastnn_sgemm", "fastnn_dgemm") whose addresses
are registered with LLVM when this module is imported, as Numba does for its own np.dot: unlike a ctypes
pointer, a symbol keeps the calling kernels cacheable on disk (the cache holds the name; the address is
looked up when a kernel is loaded, so switching BLAS needs no recompilation).

Thread counts: "fastnn_blas_threads_local" is OpenBLAS's ``openblas_set_num_threads_local`` (set the count,
return the previous one). In OpenBLAS's pthreads builds (SciPy's and the wheel's) it is not thread-local:
it calls the process-wide ``openblas_set_num_threads``. The wheel does not export it (0.3.34), so there it
is a few lines of LLVM code doing the same with the two functions the wheel does export.
"""
import ctypes
import importlib.util
import os
import re

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
                return ctypes.CDLL(path), path
            except OSError:         # a broken install: SciPy's BLAS, as without the wheel
                return None
    return None


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
    ``config`` and the addresses ``sgemm``, ``dgemm``, ``local`` (openblas_set_num_threads_local), ``get`` /
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
             "core": "", "local": None, "get": None, "set": None}
    if lib is not None:
        found.update(core=_string(lib, "scipy_openblas_get_corename", "openblas_get_corename"),
                     local=_address(lib, "openblas_set_num_threads_local", "scipy_openblas_set_num_threads_local"),
                     get=_address(lib, "scipy_openblas_get_num_threads", "openblas_get_num_threads"),
                     set=_address(lib, "scipy_openblas_set_num_threads", "openblas_set_num_threads"))
    return found


_BLAS = _find_blas()
for _name in ("sgemm", "dgemm"):
    llvmlite.binding.add_symbol("fastnn_" + _name, _BLAS[_name])
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


def _threads_local_shim(get, set):
    """The address of machine code for ``int f(int n) { int old = get(); set(n); return old; }``, which is
    what openblas_set_num_threads_local does in OpenBLAS's pthreads builds; with the engine that holds it."""
    llvmlite.binding.initialize_native_target()
    llvmlite.binding.initialize_native_asmprinter()
    llvmlite.binding.add_symbol("fastnn_blas_get_threads", get)
    llvmlite.binding.add_symbol("fastnn_blas_set_threads", set)
    module, i32 = ir.Module("fastnn_blas_threads"), ir.IntType(32)
    get_fn = ir.Function(module, ir.FunctionType(i32, []), "fastnn_blas_get_threads")
    set_fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [i32]), "fastnn_blas_set_threads")
    shim = ir.Function(module, ir.FunctionType(i32, [i32]), "fastnn_blas_threads_local_shim")
    builder = ir.IRBuilder(shim.append_basic_block())
    old = builder.call(get_fn, [])
    builder.call(set_fn, [shim.args[0]])
    builder.ret(old)
    engine = llvmlite.binding.create_mcjit_compiler(
        llvmlite.binding.parse_assembly(str(module)),
        llvmlite.binding.Target.from_default_triple().create_target_machine())
    engine.finalize_object()
    return engine.get_function_address(shim.name), engine


def _no_thread_control():
    """A compiled no-op standing in for openblas_set_num_threads_local (built only when it is missing)."""
    @cfunc(types.int32(types.int32), cache=True)
    def no_thread_control(n):
        return 0
    return no_thread_control.address


_shim_engine = None
_thread_control_address = _BLAS["local"]
if _thread_control_address is None and _BLAS["get"] and _BLAS["set"]:
    _thread_control_address, _shim_engine = _threads_local_shim(_BLAS["get"], _BLAS["set"])
#: True when fastnn can set the BLAS thread count before each GEMM (any OpenBLAS of SciPy's or of the wheel).
PER_CALL_THREADS = _thread_control_address is not None
llvmlite.binding.add_symbol("fastnn_blas_threads_local", _thread_control_address or _no_thread_control())
_threads_local = types.ExternalFunction("fastnn_blas_threads_local", types.int32(types.int32))
_set_threads = ctypes.CFUNCTYPE(None, ctypes.c_int)(_BLAS["set"]) if _BLAS["set"] else None
_get_threads = ctypes.CFUNCTYPE(ctypes.c_int)(_BLAS["get"]) if _BLAS["get"] else None


def set_blas_threads(n):
    """Set the thread count of the BLAS the kernels call, process-wide (openblas_set_num_threads); returns
    False when that BLAS has no such function."""
    if _set_threads is None:
        return False
    _set_threads(int(n))
    return True


def get_blas_threads():
    """The thread count of the BLAS the kernels call (openblas_get_num_threads), or None if unknown."""
    return None if _get_threads is None else int(_get_threads())


#: GEMMs with fewer multiply-adds than this run on one BLAS thread: below it, waking and joining the
#: other threads costs more than it saves (measured: benchmarks/README.md, "threads").
MIN_THREADED_MACS = 1 << 22


@kernel
def set_threads_local(n):
    """Set the calling thread's BLAS thread count; returns the previous one (0 when not supported)."""
    return _threads_local(np.int32(n))


def _gemm_codegen(context, builder, alpha, a, trans_a, b, trans_b, beta, c, max_threads):
    """LLVM code for c = alpha·op(a)·op(b) + beta·c as one BLAS call, emitted in place at the call site;
    each argument is a (Numba type, LLVM value) pair. max_threads > 0 first sets the calling thread's BLAS
    thread count: max_threads for a GEMM of at least MIN_THREADED_MACS multiply-adds, else 1.

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
    with builder.if_then(builder.icmp_signed(">", wanted, ir.Constant(i32, 0))):
        macs = builder.mul(builder.mul(m, n), k)
        use = builder.select(builder.icmp_signed(">=", macs, ir.Constant(intp, MIN_THREADED_MACS)),
                             wanted, ir.Constant(i32, 1))
        set_local = cgutils.get_or_insert_function(builder.module, ir.FunctionType(i32, [i32]),
                                                   "fastnn_blas_threads_local")
        builder.call(set_local, [use])

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
    name = "fastnn_sgemm" if dtype == types.float32 else "fastnn_dgemm"
    fn = cgutils.get_or_insert_function(builder.module,
                                        ir.FunctionType(ir.VoidType(), [cgutils.voidptr_t] * 13), name)
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
    Shapes must agree; callers check them. ``max_threads`` ≤ 0 keeps the BLAS thread count set; > 0 sets
    it for this and later GEMMs of the calling thread: max_threads if the GEMM has at least
    MIN_THREADED_MACS multiply-adds, else 1. Row-major C is column-major Cᵀ = op(b)ᵀ·op(a)ᵀ, so BLAS gets
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
