"""Fully connected layer kernels of the per-layer path, row-major: y = f(x @ w + b) for an activation code f
(activations.py). The layer math is step.py's (the fused epoch's): ``forward`` is a compiled copy of
step.layer_forward, ``backward`` computes its gradients with step.layer_gradient.

Shapes: x (batch, n_in), w (n_in, n_out), b (n_out,), y, z and dy (batch, n_out), dx (batch, n_in).
All C-contiguous, one float dtype. The GEMMs go to BLAS (kernels/_blas.py); the bias and the activation
are fused into one pass over the GEMM output. ``param`` is the activation's parameter (a float, see
activations.py); ``z`` receives (forward) / holds (backward) the pre-activation x @ w + b when the
activation's derivative needs it (activations.NEEDS_Z), and is empty ((0, 0)) otherwise.
"""
from ._blas import gemm
from ._jit import kernel, specialize
from .activations import IDENTITY, bias_activate, bias_activate_parallel, multiply_derivative
from .step import _layer_forward, column_sums, layer_gradient  # noqa: F401  (column_sums: a kernel of this API)

#: forward(x, w, b, code, param, z, out, blas_threads): out = f(x @ w + b) with the activation ``code``
#: (IDENTITY for none), the GEMM on up to ``blas_threads`` BLAS threads
forward = specialize(_layer_forward, "serial", _ACTIVATE=bias_activate)
#: ``forward`` with the bias/activation pass split across threads (large outputs only)
forward_parallel = specialize(_layer_forward, "parallel", _ACTIVATE=bias_activate_parallel)


@kernel
def backward(x, y, z, dy, code, param, w, dw, db, dx, delta, blas_threads):
    """Backward through y = f(x @ w + b) with the activation ``code``, in one call; its GEMMs on up to
    ``blas_threads`` BLAS threads.

    delta = dy * f'(z) (from y, or from the saved pre-activation z for codes in NEEDS_Z; delta is then
    unused and may be empty when code is IDENTITY: dy is used as is); dw = x.T @ delta; db = column sums
    of delta; dx = delta @ w.T unless dx has no rows (first layer).
    """
    g = dy
    if code != IDENTITY:
        multiply_derivative(code, param, y, z, dy, delta)
        g = delta
    layer_gradient(x, g, dw, g, db, blas_threads)
    if dx.shape[0] > 0:
        gemm(1.0, g, False, w, True, 0.0, dx, blas_threads)
