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
from numba import cfunc, types

from ._jit import inline_kernel


def _pointer(name):
    """The address of SciPy's BLAS function ``name`` (from scipy.linalg.cython_blas)."""
    capsule = _cython_blas.__pyx_capi__[name]
    get_name = ctypes.pythonapi.PyCapsule_GetName
    get_name.restype, get_name.argtypes = ctypes.c_char_p, [ctypes.py_object]
    get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
    get_pointer.restype, get_pointer.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    return get_pointer(capsule, get_name(capsule))


def _register(name):
    """Register SciPy's BLAS ``name`` as the LLVM symbol fastnn_<name> and declare it to Numba."""
    symbol = "fastnn_" + name
    llvmlite.binding.add_symbol(symbol, _pointer(name))
    return types.ExternalFunction(symbol, types.void(*([types.voidptr] * 13)))


_sgemm = _register("sgemm")
_dgemm = _register("dgemm")
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


@inline_kernel
def set_threads_local(n):
    """Set the calling thread's BLAS thread count; returns the previous one (0 when not supported)."""
    return _threads_local(np.int32(n))


@inline_kernel
def threads_for(m, n, k, max_threads):
    """How many BLAS threads an (m×k)·(k×n) GEMM gets under fastnn's policy."""
    return max_threads if m * n * k >= MIN_THREADED_MACS else 1


@inline_kernel
def matmul(a, trans_a, b, trans_b, out, max_threads):
    """out = op(a) @ op(b) on the BLAS threads ``threads_for`` gives (C-contiguous arrays; op = .T when
    the flag is set)."""
    k = a.shape[0] if trans_a else a.shape[1]
    set_threads_local(threads_for(out.shape[0], out.shape[1], k, max_threads))
    gemm(1.0, a, trans_a, b, trans_b, 0.0, out)


@inline_kernel
def gemm(alpha, a, trans_a, b, trans_b, beta, c):
    """c = alpha · op(a) · op(b) + beta · c for C-contiguous 2-D float32 or float64 arrays.

    op(a) is a.T when ``trans_a`` (a then has shape (k, m)), else a (m, k); likewise b. c is (m, n).
    Shapes must agree; callers check them. Row-major C is column-major Cᵀ = op(b)ᵀ·op(a)ᵀ, so BLAS gets
    b first.
    """
    m, n = c.shape
    k = a.shape[0] if trans_a else a.shape[1]
    ints = np.empty(6, np.int32)
    ints[0], ints[1], ints[2] = n, m, k
    ints[3], ints[4], ints[5] = max(b.shape[1], 1), max(a.shape[1], 1), max(n, 1)
    scalars = np.empty(2, c.dtype)
    scalars[0], scalars[1] = alpha, beta
    flags = np.empty(2, np.uint8)
    flags[0] = _T if trans_b else _N
    flags[1] = _T if trans_a else _N
    if c.itemsize == 4:
        _sgemm(flags[0:1].ctypes, flags[1:2].ctypes, ints[0:1].ctypes, ints[1:2].ctypes, ints[2:3].ctypes,
               scalars[0:1].ctypes, b.ctypes, ints[3:4].ctypes, a.ctypes, ints[4:5].ctypes,
               scalars[1:2].ctypes, c.ctypes, ints[5:6].ctypes)
    else:
        _dgemm(flags[0:1].ctypes, flags[1:2].ctypes, ints[0:1].ctypes, ints[1:2].ctypes, ints[2:3].ctypes,
               scalars[0:1].ctypes, b.ctypes, ints[3:4].ctypes, a.ctypes, ints[4:5].ctypes,
               scalars[1:2].ctypes, c.ctypes, ints[5:6].ctypes)
