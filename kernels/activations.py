"""Activation kernels: forward and backward of identity, ReLU, sigmoid and tanh.

Activations are named by integer codes so that fused kernels can take them as plain arguments.
Scalar helpers take ``one`` (1 in the array's dtype) so that float32 stays float32: Numba promotes a bare
integer literal with a float32 to float64.
Backward passes use the saved *output* y, where the derivative is exact in it:
ReLU' = [y > 0], sigmoid' = y (1 - y), tanh' = 1 - y².
All arrays are 2-D ``(batch, features)``, C-contiguous, one float dtype; ``out`` may alias the input.
"""
import math

from numba import prange

from ._jit import kernel, parallel_twin

IDENTITY, RELU, SIGMOID, TANH = 0, 1, 2, 3
CODES = {"identity": IDENTITY, "relu": RELU, "sigmoid": SIGMOID, "tanh": TANH}


@kernel
def activate(code, z, one):
    """f(z) for one scalar; NaN stays NaN; sigmoid is evaluated without overflow for either sign of z."""
    if code == RELU:
        return z if not z <= 0 else one - one
    if code == SIGMOID:
        if z >= 0:
            return one / (one + math.exp(-z))
        e = math.exp(z)
        return e / (one + e)
    if code == TANH:
        return math.tanh(z)
    return z


@kernel
def derivative(code, y, one):
    """f'(z) expressed through the output y = f(z)."""
    if code == RELU:
        return one if y > 0 else one - one
    if code == SIGMOID:
        return y * (one - y)
    if code == TANH:
        return one - y * y
    return one


def _forward(code, z, out):
    n, m = z.shape
    one = out.dtype.type(1)
    for i in prange(n):
        for j in range(m):
            out[i, j] = activate(code, z[i, j], one)


def _backward(code, y, dy, out):
    n, m = y.shape
    one = out.dtype.type(1)
    for i in prange(n):
        for j in range(m):
            out[i, j] = dy[i, j] * derivative(code, y[i, j], one)


forward = kernel(_forward)
forward_parallel = parallel_twin(_forward)
backward = kernel(_backward)
backward_parallel = parallel_twin(_backward)
