"""Fully connected layer kernels, row-major: y = x @ w + b.

Shapes: x (batch, n_in), w (n_in, n_out), b (n_out,), y and dy (batch, n_out), dx (batch, n_in).
All C-contiguous, one float dtype. The GEMMs go to BLAS (kernels/_blas.py); the bias and the activation
are fused into one pass over the GEMM output.
"""
from ._blas import gemm
from ._jit import kernel
from .activations import IDENTITY, bias_activate, bias_activate_parallel, multiply_derivative


@kernel
def forward(x, w, b, code, out):
    """out = f(x @ w + b) with the activation ``code`` (activations.IDENTITY for none)."""
    gemm(1.0, x, False, w, False, 0.0, out, 0)
    bias_activate(out, b, code, out)


@kernel
def forward_parallel(x, w, b, code, out):
    """``forward`` with the bias/activation pass split across threads (large outputs only)."""
    gemm(1.0, x, False, w, False, 0.0, out, 0)
    bias_activate_parallel(out, b, code, out)


@kernel
def column_sums(dy, db):
    """db[j] = sum_i dy[i, j]; rows outer so the inner loop vectorises and no thread races on db."""
    db[:] = 0
    n, m = dy.shape
    for i in range(n):
        for j in range(m):
            db[j] += dy[i, j]


@kernel
def backward(x, y, dy, code, w, dw, db, dx, delta):
    """Backward through y = f(x @ w + b) with the activation ``code``, in one call.

    delta = dy * f'(y) (delta is then unused and may be empty when code is IDENTITY: dy is used as is);
    dw = x.T @ delta; db = column sums of delta; dx = delta @ w.T unless dx has no rows (first layer).
    """
    g = dy
    if code != IDENTITY:
        multiply_derivative(code, y, dy, delta)
        g = delta
    gemm(1.0, x, True, g, False, 0.0, dw, 0)
    column_sums(g, db)
    if dx.shape[0] > 0:
        gemm(1.0, g, False, w, True, 0.0, dx, 0)
