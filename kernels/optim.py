"""In-place parameter updates over flat 1-D arrays (a network keeps all its parameters in one buffer).

p, g and the optimizer state are 1-D C-contiguous arrays of one float dtype. The formulas are those of
torch.optim.SGD (dampening 0, no Nesterov) and torch.optim.Adam (Kingma & Ba, Alg. 1), in their order of
operations, so that both agree step for step. Each update has a read-only twin ``*_is_finite`` that says
whether the update would leave every value finite, so that a caller can refuse a step before it writes.
"""
import math

import numpy as np
from numba import prange

from ._jit import internal_kernel, kernel, parallel_twin, reduction_kernel


@internal_kernel
def _momentum_scalar(p, g, v, lr, mu):
    v = mu * v + g
    return p - lr * v, v


@internal_kernel
def _adam_scalar(p, g, m, v, b1, c1, b2, c2, step_size, sqrt_bc2, eps):
    """c1 = 1 - beta1 and c2 = 1 - beta2, formed in float64 before the cast (as torch does)."""
    m = b1 * m + c1 * g
    v = b2 * v + c2 * g * g
    return p - step_size * m / (math.sqrt(v) / sqrt_bc2 + eps), m, v


@internal_kernel
def _adam_constants(p, lr, beta1, beta2, eps, step):
    """Adam's scalars in p's dtype, each formed in float64 first."""
    t = p.dtype.type
    return (t(beta1), t(1.0 - beta1), t(beta2), t(1.0 - beta2),
            t(lr / (1.0 - beta1 ** step)), t(math.sqrt(1.0 - beta2 ** step)), t(eps))


def _sgd(p, g, lr):
    lr = p.dtype.type(lr)
    for i in prange(p.size):
        p[i] -= lr * g[i]


def _sgd_momentum(p, g, v, lr, momentum):
    lr = p.dtype.type(lr)
    mu = p.dtype.type(momentum)
    for i in prange(p.size):
        p[i], v[i] = _momentum_scalar(p[i], g[i], v[i], lr, mu)


def _adam(p, g, m, v, lr, beta1, beta2, eps, step):
    """One Adam step; ``step`` counts from 1."""
    b1, c1, b2, c2, step_size, sqrt_bc2, e = _adam_constants(p, lr, beta1, beta2, eps, step)
    for i in prange(p.size):
        p[i], m[i], v[i] = _adam_scalar(p[i], g[i], m[i], v[i], b1, c1, b2, c2, step_size, sqrt_bc2, e)


sgd = kernel(_sgd)
sgd_parallel = parallel_twin(_sgd)
sgd_momentum = kernel(_sgd_momentum)
sgd_momentum_parallel = parallel_twin(_sgd_momentum)
adam = kernel(_adam)
adam_parallel = parallel_twin(_adam)


@reduction_kernel
def sgd_is_finite(p, g, lr):
    """Would ``sgd`` leave every parameter finite? (reads only)"""
    lr = p.dtype.type(lr)
    bad = p.dtype.type(0)
    for i in range(p.size):
        q = p[i] - lr * g[i]
        bad += q - q
    return bad == 0


@reduction_kernel
def sgd_momentum_is_finite(p, g, v, lr, momentum):
    """Would ``sgd_momentum`` leave every parameter and velocity finite? (reads only)"""
    lr = p.dtype.type(lr)
    mu = p.dtype.type(momentum)
    bad = p.dtype.type(0)
    for i in range(p.size):
        q, w = _momentum_scalar(p[i], g[i], v[i], lr, mu)
        bad += (q - q) + (w - w)
    return bad == 0


@reduction_kernel
def adam_is_finite(p, g, m, v, lr, beta1, beta2, eps, step):
    """Would ``adam`` leave every parameter and moment finite? (reads only)"""
    b1, c1, b2, c2, step_size, sqrt_bc2, e = _adam_constants(p, lr, beta1, beta2, eps, step)
    bad = p.dtype.type(0)
    for i in range(p.size):
        q, mm, vv = _adam_scalar(p[i], g[i], m[i], v[i], b1, c1, b2, c2, step_size, sqrt_bc2, e)
        bad += (q - q) + (mm - mm) + (vv - vv)
    return bad == 0


@kernel
def sgd_checked(p, g, lr):
    """``sgd`` if it leaves every value finite (returns True), else nothing is written (False)."""
    if not sgd_is_finite(p, g, lr):
        return False
    sgd(p, g, lr)
    return True


@kernel
def sgd_momentum_checked(p, g, v, lr, momentum):
    """``sgd_momentum`` if it leaves every value finite (returns True), else nothing is written."""
    if not sgd_momentum_is_finite(p, g, v, lr, momentum):
        return False
    sgd_momentum(p, g, v, lr, momentum)
    return True


@kernel
def adam_checked(p, g, m, v, lr, beta1, beta2, eps, step):
    """``adam`` if it leaves every value finite (returns True), else nothing is written."""
    if not adam_is_finite(p, g, m, v, lr, beta1, beta2, eps, step):
        return False
    adam(p, g, m, v, lr, beta1, beta2, eps, step)
    return True


@reduction_kernel
def squared_norm(g, start, end):
    """Sum of g[start:end]² accumulated in float64; NaN or Inf in g make it non-finite."""
    s = 0.0
    for i in range(start, end):
        x = np.float64(g[i])
        s += x * x
    return s


@kernel
def squared_norms(g, offsets, out):
    """out[k] = squared_norm of segment k, g[offsets[k]:offsets[k+1]]: per-layer gradient norms².

    A NaN or Inf in a segment makes its entry non-finite, which is how training detects divergence.
    """
    for k in range(offsets.size - 1):
        out[k] = squared_norm(g, offsets[k], offsets[k + 1])
