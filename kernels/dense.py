"""Fully connected layer kernels, row-major: y = x @ w + b.

Shapes: x (batch, n_in), w (n_in, n_out), b (n_out,), y and dy (batch, n_out), dx (batch, n_in).
All C-contiguous, one float dtype. The GEMMs go to BLAS through ``np.dot`` (SciPy's BLAS inside Numba);
the bias and the activation are fused into one pass over the GEMM output.
"""
import numpy as np
from numba import prange

from ._jit import kernel, parallel_twin
from .activations import activate


def _bias_activate(out, b, code):
    n, m = out.shape
    one = out.dtype.type(1)
    for i in prange(n):
        for j in range(m):
            out[i, j] = activate(code, out[i, j] + b[j], one)


bias_activate = kernel(_bias_activate)
bias_activate_parallel = parallel_twin(_bias_activate)


@kernel
def forward(x, w, b, code, out):
    """out = f(x @ w + b) with the activation ``code`` (activations.IDENTITY for none)."""
    np.dot(x, w, out)
    bias_activate(out, b, code)


@kernel
def forward_parallel(x, w, b, code, out):
    """``forward`` with the bias/activation pass split across threads (large outputs only)."""
    np.dot(x, w, out)
    bias_activate_parallel(out, b, code)


@kernel
def column_sums(dy, db):
    """db[j] = sum_i dy[i, j]; rows outer so the inner loop vectorises and no thread races on db."""
    db[:] = 0
    n, m = dy.shape
    for i in range(n):
        for j in range(m):
            db[j] += dy[i, j]


@kernel
def backward_params(x, dy, dw, db):
    """dw = x.T @ dy and db = column sums of dy."""
    np.dot(x.T, dy, dw)
    column_sums(dy, db)


@kernel
def backward_input(dy, w, dx):
    """dx = dy @ w.T."""
    np.dot(dy, w.T, dx)
