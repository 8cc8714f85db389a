"""In-place parameter updates over flat 1-D arrays (a network keeps all its parameters in one buffer).

p, g and the optimizer state are 1-D C-contiguous arrays of one float dtype. The formulas are those of
torch.optim.SGD (dampening 0, no Nesterov) and torch.optim.Adam (Kingma & Ba, Alg. 1), in their order of
operations, so that both agree step for step.
"""
import math

from numba import prange

from ._jit import kernel, parallel_twin, reduction_kernel


def _sgd(p, g, lr):
    lr = p.dtype.type(lr)
    for i in prange(p.size):
        p[i] -= lr * g[i]


def _sgd_momentum(p, g, v, lr, momentum):
    lr = p.dtype.type(lr)
    mu = p.dtype.type(momentum)
    for i in prange(p.size):
        v[i] = mu * v[i] + g[i]
        p[i] -= lr * v[i]


def _adam(p, g, m, v, lr, beta1, beta2, eps, step):
    """One Adam step; ``step`` counts from 1."""
    t = p.dtype.type
    b1, b2, one = t(beta1), t(beta2), t(1)
    step_size = t(lr / (1 - beta1 ** step))
    sqrt_bc2 = t(math.sqrt(1 - beta2 ** step))
    e = t(eps)
    for i in prange(p.size):
        m[i] = b1 * m[i] + (one - b1) * g[i]
        v[i] = b2 * v[i] + (one - b2) * g[i] * g[i]
        p[i] -= step_size * m[i] / (math.sqrt(v[i]) / sqrt_bc2 + e)


sgd = kernel(_sgd)
sgd_parallel = parallel_twin(_sgd)
sgd_momentum = kernel(_sgd_momentum)
sgd_momentum_parallel = parallel_twin(_sgd_momentum)
adam = kernel(_adam)
adam_parallel = parallel_twin(_adam)


@reduction_kernel
def squared_norm(g, start, end):
    """Sum of g[start:end]² accumulated in float64; NaN or Inf in g make it non-finite."""
    s = 0.0
    for i in range(start, end):
        x = float(g[i])
        s += x * x
    return s


@kernel
def squared_norms(g, offsets, out):
    """out[k] = squared_norm of segment k, g[offsets[k]:offsets[k+1]]: per-layer gradient norms².

    A NaN or Inf in a segment makes its entry non-finite, which is how training detects divergence.
    """
    for k in range(offsets.size - 1):
        out[k] = squared_norm(g, offsets[k], offsets[k + 1])
