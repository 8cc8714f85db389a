"""BLAS GEMM with alpha and beta, callable from Numba kernels.

``np.dot`` inside Numba computes C = A·B only, and instantiates a large implementation (checks, copies)
for every combination of layouts, which LLVM then spends seconds optimising. ``gemm`` calls the same
BLAS (SciPy's, through ``scipy.linalg.cython_blas``) directly: C = alpha·op(A)·op(B) + beta·C on
C-contiguous arrays, so that plain SGD can also update the weights inside the gradient GEMM,
W += (-lr)·Xᵀ·dY, with no gradient buffer and no separate pass over W.

The functions are declared to Numba as external symbols ("fastnn_sgemm", "fastnn_dgemm") whose addresses
are registered with LLVM when this module is imported, as Numba does for its own np.dot: unlike a ctypes
pointer, a symbol keeps the calling kernels cacheable on disk.
"""
import ctypes

import llvmlite.binding
import numpy as np
import scipy.linalg.cython_blas as _cython_blas
from llvmlite import ir
from numba import cfunc, types
from numba.core import cgutils
from numba.extending import intrinsic

from ._jit import kernel


def _pointer(name):
    """The address of SciPy's BLAS function ``name`` (from scipy.linalg.cython_blas)."""
    capsule = _cython_blas.__pyx_capi__[name]
    get_name = ctypes.pythonapi.PyCapsule_GetName
    get_name.restype, get_name.argtypes = ctypes.c_char_p, [ctypes.py_object]
    get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
    get_pointer.restype, get_pointer.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    return get_pointer(capsule, get_name(capsule))


for _name in ("sgemm", "dgemm"):
    llvmlite.binding.add_symbol("fastnn_" + _name, _pointer(_name))
_N, _T = ord("N"), ord("T")


def _find_thread_control():
    """The address of ``openblas_set_num_threads_local`` in the BLAS that SciPy (and so Numba) uses.

    Found through the library that holds SciPy's sgemm; None for a BLAS without it (then the thread
    count of each GEMM is left to the BLAS).
    """
    sgemm = ctypes.cast(ctypes.c_void_p(_pointer("sgemm")), ctypes.c_void_p).value

    class DlInfo(ctypes.Structure):
        _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                    ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]
    try:
        libdl = ctypes.CDLL(None)
        info = DlInfo()
        if not libdl.dladdr(ctypes.c_void_p(sgemm), ctypes.byref(info)) or not info.dli_fname:
            return None
        lib = ctypes.CDLL(info.dli_fname.decode())
        return ctypes.cast(lib.openblas_set_num_threads_local, ctypes.c_void_p).value
    except (OSError, AttributeError):
        return None


def _no_thread_control():
    """A compiled no-op standing in for openblas_set_num_threads_local (built only when it is missing)."""
    @cfunc(types.int32(types.int32), cache=True)
    def no_thread_control(n):
        return 0
    return no_thread_control.address


_thread_control_address = _find_thread_control()
#: True when fastnn can set the BLAS thread count of each GEMM (OpenBLAS ≥ 0.3.27, as SciPy's wheels).
PER_CALL_THREADS = _thread_control_address is not None
llvmlite.binding.add_symbol("fastnn_blas_threads_local", _thread_control_address or _no_thread_control())
_threads_local = types.ExternalFunction("fastnn_blas_threads_local", types.int32(types.int32))

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
    (a_rows, a_cols), (b_rows, b_cols), (m, n) = (cgutils.unpack_tuple(builder, x.shape, 2)
                                                  for x in arrays)
    itemsize = context.get_constant(types.intp, context.get_abi_sizeof(context.get_data_type(dtype)))

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
    "A", their rows strided, their elements adjacent, which BLAS takes as a leading dimension. The caller
    must not pass any other "A" array (elements not adjacent); a transposed (F-layout) view does not
    type-check, rather than being multiplied with the wrong strides."""
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
