"""Fully connected layer kernels, row-major: y = f(x @ w + b) for an activation code f (activations.py).

Shapes: x (batch, n_in), w (n_in, n_out), b (n_out,), y, z and dy (batch, n_out), dx (batch, n_in).
All C-contiguous, one float dtype. The GEMMs go to BLAS (kernels/_blas.py); the bias and the activation
are fused into one pass over the GEMM output. ``param`` is the activation's parameter (a float, see
activations.py); ``z`` receives (forward) / holds (backward) the pre-activation x @ w + b when the
activation's derivative needs it (activations.NEEDS_Z), and is empty ((0, 0)) otherwise.
"""
from ._blas import gemm
from ._jit import kernel, specialize
from .activations import IDENTITY, add_bias, bias_activate, bias_activate_parallel, multiply_derivative


def _forward(x, w, b, code, param, z, out):
    """out = f(x @ w + b) with the activation ``code`` (activations.IDENTITY for none); z: see above."""
    if z.shape[0] > 0:            # keep the pre-activation: z = x @ w + b, out = f(z)
        gemm(1.0, x, False, w, False, 0.0, z, 0)
        _ACTIVATE(z, b, code, param, out)
        add_bias(z, b)
    else:
        gemm(1.0, x, False, w, False, 0.0, out, 0)
        _ACTIVATE(out, b, code, param, out)


_ACTIVATE = None      # bound per variant by specialize()
forward = specialize(_forward, "serial", _ACTIVATE=bias_activate)
#: ``forward`` with the bias/activation pass split across threads (large outputs only)
forward_parallel = specialize(_forward, "parallel", _ACTIVATE=bias_activate_parallel)


@kernel
def column_sums(dy, db):
    """db[j] = sum_i dy[i, j]; rows outer so the inner loop vectorises and no thread races on db."""
    db[:] = 0
    n, m = dy.shape
    for i in range(n):
        for j in range(m):
            db[j] += dy[i, j]


@kernel
def backward(x, y, z, dy, code, param, w, dw, db, dx, delta):
    """Backward through y = f(x @ w + b) with the activation ``code``, in one call.

    delta = dy * f'(z) (from y, or from the saved pre-activation z for codes in NEEDS_Z; delta is then
    unused and may be empty when code is IDENTITY: dy is used as is); dw = x.T @ delta; db = column sums
    of delta; dx = delta @ w.T unless dx has no rows (first layer).
    """
    g = dy
    if code != IDENTITY:
        multiply_derivative(code, param, y, z, dy, delta)
        g = delta
    gemm(1.0, x, True, g, False, 0.0, dw, 0)
    column_sums(g, db)
    if dx.shape[0] > 0:
        gemm(1.0, g, False, w, True, 0.0, dx, 0)
