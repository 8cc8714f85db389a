"""BLAS GEMM with alpha and beta, callable from Numba kernels.

``np.dot`` inside Numba computes C = A·B only. ``gemm`` exposes the full C = alpha·op(A)·op(B) + beta·C of
the same BLAS (SciPy's, through ``scipy.linalg.cython_blas``), so that plain SGD can update the weights
inside the gradient GEMM: W += (-lr)·Xᵀ·dY, with no gradient buffer and no separate pass over W.

The functions are declared to Numba as external symbols ("fastnn_sgemm", "fastnn_dgemm") whose addresses
are registered with LLVM when this module is imported, as Numba does for its own np.dot: unlike a ctypes
pointer, a symbol keeps the calling kernels cacheable on disk.
"""
import ctypes

import llvmlite.binding
import numpy as np
import scipy.linalg.cython_blas as _cython_blas
from numba import types

from ._jit import kernel


def _register(name):
    """Register SciPy's BLAS ``name`` as the LLVM symbol fastnn_<name> and declare it to Numba."""
    capsule = _cython_blas.__pyx_capi__[name]
    get_name = ctypes.pythonapi.PyCapsule_GetName
    get_name.restype, get_name.argtypes = ctypes.c_char_p, [ctypes.py_object]
    get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
    get_pointer.restype, get_pointer.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    symbol = "fastnn_" + name
    llvmlite.binding.add_symbol(symbol, get_pointer(capsule, get_name(capsule)))
    return types.ExternalFunction(symbol, types.void(*([types.voidptr] * 13)))


_sgemm = _register("sgemm")
_dgemm = _register("dgemm")
_N, _T = ord("N"), ord("T")


@kernel
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
