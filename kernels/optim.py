"""In-place parameter updates over flat 1-D arrays (a network keeps all its parameters in one buffer).

p, g and the optimizer state are 1-D C-contiguous arrays of one float dtype. The formulas are those of
torch.optim.SGD (dampening 0; weight decay, momentum, Nesterov), torch.optim.Adam (coupled L2 weight
decay) and torch.optim.AdamW (decoupled weight decay), in their order of operations, so that they agree
step for step. Adam's ``sklearn_eps`` puts epsilon where scikit-learn does:
p -= lr·sqrt(1 - β2^t)/(1 - β1^t) · m / (sqrt(v) + eps). Each update has a read-only twin ``*_is_finite``
that says whether it would leave every value finite, and a ``*_checked`` twin that updates only then.

The trailing hyperparameters have defaults (the plain update) so that kernel tests and benchmarks may omit
them; the library always passes every argument (one compiled specialisation).
"""
import math

import numpy as np
from numba import prange

from ._jit import internal_kernel, kernel, parallel_twin, reduction_kernel


@internal_kernel
def _sgd_scalar(p, g, v, lr, mu, wd, nesterov):
    """torch.optim.SGD for one value: (new p, new v). Without momentum (mu = 0, v = 0) this is exactly
    p - lr·g (v becomes g, and Nesterov needs mu > 0)."""
    if wd != 0:
        g = g + wd * p
    v = mu * v + g
    g = g + mu * v if nesterov else v
    return p - lr * g, v


@internal_kernel
def _adam_scalar(p, g, m, v, b1, c1, b2, c2, step_size, sqrt_bc2, eps, wd, decay):
    """c1 = 1 - beta1 and c2 = 1 - beta2, formed in float64 before the cast (as torch does); wd: the
    coupled L2 coefficient added to g (Adam); decay: the decoupled factor 1 - lr·wd (AdamW), else 1."""
    if wd != 0:
        g = g + wd * p
    m = b1 * m + c1 * g
    v = b2 * v + c2 * g * g
    return p * decay - step_size * m / (math.sqrt(v) / sqrt_bc2 + eps), m, v


@internal_kernel
def _adam_constants(p, lr, beta1, beta2, eps, step, weight_decay, decoupled, sklearn_eps):
    """Adam's scalars in p's dtype, each formed in float64 first:
    (b1, c1, b2, c2, step_size, sqrt_bc2, eps, coupled wd, decoupled factor)."""
    t = p.dtype.type
    bc1 = 1.0 - beta1 ** step
    sqrt_bc2 = math.sqrt(1.0 - beta2 ** step)
    step_size, divisor = lr / bc1, sqrt_bc2
    if sklearn_eps:
        step_size, divisor = lr * sqrt_bc2 / bc1, 1.0
    wd, decay = (0.0, 1.0 - lr * weight_decay) if decoupled else (weight_decay, 1.0)
    return (t(beta1), t(1.0 - beta1), t(beta2), t(1.0 - beta2), t(step_size), t(divisor), t(eps), t(wd),
            t(decay))


def _sgd(p, g, lr):
    lr = p.dtype.type(lr)
    for i in prange(p.size):
        p[i] -= lr * g[i]


def _sgd_momentum(p, g, v, lr, momentum, weight_decay=0.0, nesterov=False):
    """SGD with the explicit gradient: weight decay, momentum, Nesterov. The velocity v is empty when
    there is none (momentum 0: torch keeps no buffer), else of p's size."""
    t = p.dtype.type
    lr, mu, wd = t(lr), t(momentum), t(weight_decay)
    if v.size != 0 and v.size != p.size:
        raise ValueError("sgd_momentum: v must be empty or of p's size")
    if v.size != 0:
        for i in prange(p.size):
            p[i], v[i] = _sgd_scalar(p[i], g[i], v[i], lr, mu, wd, nesterov)
    else:
        for i in prange(p.size):
            p[i], _ = _sgd_scalar(p[i], g[i], t(0), lr, mu, wd, nesterov)


def _adam(p, g, m, v, lr, beta1, beta2, eps, step, weight_decay=0.0, decoupled=False, sklearn_eps=False):
    """One Adam (AdamW when ``decoupled``) step; ``step`` counts from 1."""
    if m.size != p.size or v.size != p.size:
        raise ValueError("adam: m and v must be of p's size")
    b1, c1, b2, c2, step_size, sqrt_bc2, e, wd, decay = _adam_constants(
        p, lr, beta1, beta2, eps, step, weight_decay, decoupled, sklearn_eps)
    for i in prange(p.size):
        p[i], m[i], v[i] = _adam_scalar(p[i], g[i], m[i], v[i], b1, c1, b2, c2, step_size, sqrt_bc2, e, wd,
                                        decay)


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
def sgd_momentum_is_finite(p, g, v, lr, momentum, weight_decay=0.0, nesterov=False):
    """Would ``sgd_momentum`` leave every parameter and velocity finite? (reads only)"""
    t = p.dtype.type
    lr, mu, wd = t(lr), t(momentum), t(weight_decay)
    if v.size != 0 and v.size != p.size:
        raise ValueError("sgd_momentum_is_finite: v must be empty or of p's size")
    bad = t(0)
    for i in range(p.size):
        q, w = _sgd_scalar(p[i], g[i], v[i] if v.size != 0 else t(0), lr, mu, wd, nesterov)
        bad += (q - q) + (w - w)
    return bad == 0


@reduction_kernel
def adam_is_finite(p, g, m, v, lr, beta1, beta2, eps, step, weight_decay=0.0, decoupled=False,
                   sklearn_eps=False):
    """Would ``adam`` leave every parameter and moment finite? (reads only)"""
    if m.size != p.size or v.size != p.size:
        raise ValueError("adam_is_finite: m and v must be of p's size")
    b1, c1, b2, c2, step_size, sqrt_bc2, e, wd, decay = _adam_constants(
        p, lr, beta1, beta2, eps, step, weight_decay, decoupled, sklearn_eps)
    bad = p.dtype.type(0)
    for i in range(p.size):
        q, mm, vv = _adam_scalar(p[i], g[i], m[i], v[i], b1, c1, b2, c2, step_size, sqrt_bc2, e, wd, decay)
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
def sgd_momentum_checked(p, g, v, lr, momentum, weight_decay=0.0, nesterov=False):
    """``sgd_momentum`` if it leaves every value finite (returns True), else nothing is written."""
    if not sgd_momentum_is_finite(p, g, v, lr, momentum, weight_decay, nesterov):
        return False
    sgd_momentum(p, g, v, lr, momentum, weight_decay, nesterov)
    return True


@kernel
def adam_checked(p, g, m, v, lr, beta1, beta2, eps, step, weight_decay=0.0, decoupled=False,
                 sklearn_eps=False):
    """``adam`` if it leaves every value finite (returns True), else nothing is written."""
    if not adam_is_finite(p, g, m, v, lr, beta1, beta2, eps, step, weight_decay, decoupled, sklearn_eps):
        return False
    adam(p, g, m, v, lr, beta1, beta2, eps, step, weight_decay, decoupled, sklearn_eps)
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
