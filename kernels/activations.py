"""Activation kernels: identity, ReLU, sigmoid and tanh, forward (with a bias) and backward.

Activations are named by integer codes so that fused kernels can take them as plain arguments; each
kernel branches on the code once and runs a plain loop per activation, which LLVM vectorises.
Backward passes use the saved *output* y, where the derivative is exact in it:
ReLU' = [y > 0], sigmoid' = y (1 - y), tanh' = 1 - y². NaN propagates (relu(NaN) is NaN).
Scalars are made in the array's dtype (``one``): Numba promotes a bare int literal with float32 to float64.
All arrays are 2-D ``(batch, features)``, C-contiguous, one float dtype; ``out`` may alias an input.
"""
import math

from numba import prange

from ._jit import internal_kernel, kernel, parallel_twin

IDENTITY, RELU, SIGMOID, TANH = 0, 1, 2, 3
CODES = {"identity": IDENTITY, "relu": RELU, "sigmoid": SIGMOID, "tanh": TANH}


@internal_kernel
def sigmoid(z, one):
    """1 / (1 + exp(-z)) without overflow for either sign of z."""
    if z >= 0:
        return one / (one + math.exp(-z))
    e = math.exp(z)
    return e / (one + e)


def _bias_activate(z, b, code, out):
    """out = f(z + b), b (features,) broadcast over rows."""
    n, m = out.shape
    one = out.dtype.type(1)
    zero = one - one
    if code == RELU:
        for i in prange(n):
            for j in range(m):
                v = z[i, j] + b[j]
                out[i, j] = v if not v <= zero else zero
    elif code == SIGMOID:
        for i in prange(n):
            for j in range(m):
                out[i, j] = sigmoid(z[i, j] + b[j], one)
    elif code == TANH:
        for i in prange(n):
            for j in range(m):
                out[i, j] = math.tanh(z[i, j] + b[j])
    else:
        for i in prange(n):
            for j in range(m):
                out[i, j] = z[i, j] + b[j]


def _multiply_derivative(code, y, dy, out):
    """out = dy * f'(z), with f'(z) written through the output y = f(z); out may be dy itself."""
    if out.ctypes.data == dy.ctypes.data:
        scale_by_derivative(code, y, out)
        return
    n, m = out.shape
    one = out.dtype.type(1)
    zero = one - one
    if code == RELU:
        for i in prange(n):
            for j in range(m):
                g = dy[i, j]
                out[i, j] = g if y[i, j] > zero else zero
    elif code == SIGMOID:
        for i in prange(n):
            for j in range(m):
                out[i, j] = dy[i, j] * (y[i, j] * (one - y[i, j]))
    elif code == TANH:
        for i in prange(n):
            for j in range(m):
                out[i, j] = dy[i, j] * (one - y[i, j] * y[i, j])
    else:
        for i in prange(n):
            for j in range(m):
                out[i, j] = dy[i, j]


@internal_kernel
def scale_by_derivative(code, y, d):
    """d *= f'(z) in place, f'(z) written through the output y = f(z). A loop of its own: written as
    out = dy * f' with out and dy the same array, LLVM's overlap check fails and the loop runs scalar
    (3x slower). Called from kernels only."""
    n, m = d.shape
    one = d.dtype.type(1)
    zero = one - one
    if code == RELU:
        for i in range(n):
            for j in range(m):
                g = d[i, j]
                d[i, j] = g if y[i, j] > zero else zero
    elif code == SIGMOID:
        for i in range(n):
            for j in range(m):
                d[i, j] *= y[i, j] * (one - y[i, j])
    elif code == TANH:
        for i in range(n):
            for j in range(m):
                d[i, j] *= one - y[i, j] * y[i, j]


bias_activate = kernel(_bias_activate)
bias_activate_parallel = parallel_twin(_bias_activate)
multiply_derivative = kernel(_multiply_derivative)
multiply_derivative_parallel = parallel_twin(_multiply_derivative)
