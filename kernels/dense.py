"""Fully connected layer kernels of the per-layer path, row-major: y = f(x @ w + b) for an activation code f
(activations.py). The layer math is step.py's (the fused epoch's): ``forward`` is a compiled copy of
step.layer_forward, ``backward`` computes its gradients with step.layer_gradient.

Shapes: x (batch, n_in), w (n_in, n_out), b (n_out,), y, z and dy (batch, n_out), dx (batch, n_in).
All C-contiguous, one float dtype. The GEMMs go to BLAS (kernels/_blas.py); the bias and the activation
are fused into one pass over the GEMM output. ``param`` is the activation's parameter (a float, see
activations.py); ``z`` receives (forward) / holds (backward) the pre-activation x @ w + b when the
activation's derivative needs it (activations.NEEDS_Z), and is empty ((0, 0)) otherwise.
"""
import math
from collections import namedtuple

from ._blas import gemm, matmul
from ._jit import specialize
from .activations import GROUPS, IDENTITY, KERNELS as ACTIVATION_KERNELS, group
from .step import _layer_forward, column_sums, layer_gradient  # noqa: F401  (column_sums: a kernel of this API)

_ACTIVATE = _MULTIPLY_DERIVATIVE = None     # bound per copy by specialize()


def _layer_infer(x, w, b, code, param, out, blas_threads, check):
    """out = f(x @ w + b) for inference: ``forward`` without a kept pre-activation — the same GEMM and the
    same bias + activation pass, so the same bits. With ``check``: the first row whose product x @ w is not
    finite in column 0 (read before the bias and the activation), else -1.

    A NaN or an infinity anywhere in row i of x makes every entry of row i of x @ w NaN or infinite
    (NaN * w and inf * 0 are NaN, inf * w is ±inf, inf - inf is NaN): BLAS multiplies every term
    (tests/test_predict_checks.py pins this for the BLAS the kernels call), so one column tells whether
    the row of x was finite, and predict needs no pass over x of its own. A non-finite product of a finite
    row (overflow, non-finite weights) is reported too: the caller tells the two apart by reading x."""
    matmul(x, False, w, False, out, blas_threads)
    bad = -1
    if check:
        for i in range(out.shape[0]):
            if not math.isfinite(out[i, 0]):
                bad = i
                break
    _ACTIVATE(out, b, code, param, out)
    return bad


def _backward(x, y, z, dy, code, param, w, dw, db, dx, delta, blas_threads):
    """Backward through y = f(x @ w + b) with the activation ``code``, in one call; its GEMMs on up to
    ``blas_threads`` BLAS threads.

    delta = dy * f'(z) (from y, or from the saved pre-activation z for codes in NEEDS_Z; delta is then
    unused and may be empty when code is IDENTITY: dy is used as is); dw = x.T @ delta; db = column sums
    of delta; dx = delta @ w.T unless dx has no rows (first layer).
    """
    g = dy
    if code != IDENTITY:
        _MULTIPLY_DERIVATIVE(code, param, y, z, dy, delta)
        g = delta
    layer_gradient(x, g, dw, g, db, blas_threads)
    if dx.shape[0] > 0:
        gemm(1.0, g, False, w, True, 0.0, dx, blas_threads)


#: The kernels of one group of activation codes (activations.GROUPS), each called with a code of its group:
#: forward(x, w, b, code, param, z, out, blas_threads): out = f(x @ w + b) with the activation ``code``
#: (IDENTITY for none), the GEMM on up to ``blas_threads`` BLAS threads; forward_parallel: with the
#: bias/activation pass split across threads (large outputs only); infer(x, w, b, code, param, out,
#: blas_threads, check) -> the first row of x @ w not finite in column 0, or -1 (when ``check``): out =
#: f(x @ w + b), bit for bit ``forward``'s out; infer_parallel; backward (its docstring).
DenseKernels = namedtuple("DenseKernels", "forward forward_parallel infer infer_parallel backward")


def _group_kernels(name):
    act = ACTIVATION_KERNELS[name]
    suffix = "" if name == "all" else "_" + name
    return DenseKernels(specialize(_layer_forward, "serial" + suffix, _ACTIVATE=act.bias_activate),
                        specialize(_layer_forward, "parallel" + suffix, _ACTIVATE=act.bias_activate_parallel),
                        specialize(_layer_infer, "serial" + suffix, _ACTIVATE=act.bias_activate),
                        specialize(_layer_infer, "parallel" + suffix, _ACTIVATE=act.bias_activate_parallel),
                        specialize(_backward, "kernel" + suffix, _MULTIPLY_DERIVATIVE=act.multiply_derivative))


KERNELS = {name: _group_kernels(name) for name in GROUPS}


def kernels_for(code):
    """The DenseKernels of the smallest group that runs the activation ``code``."""
    return KERNELS[group((code,))]


#: every code's kernels (group "all"), under their usual names
forward, forward_parallel, infer, infer_parallel, backward = KERNELS["all"]
