"""Inverted dropout with counter-based masks: no generator state, no mask buffer.

Whether unit j of row i of a batch is kept is a pure function of (epoch key, batch index, row position,
unit): a splitmix64 hash chain over those integers (``keep``). So a mask is the same in every engine,
on any thread count, and again after a resume from a checkpoint — and the backward pass recomputes it
instead of storing it. A unit is kept when the top 53 bits of its hash, as an integer u, satisfy
u >= threshold, threshold = ceil(p * 2**53): probability 1 - p (to 2**-53). Kept values are multiplied by
``scale`` = 1/(1-p) rounded to the array's dtype, dropped ones set to zero; the same map is the forward
(on the activations) and the backward (on the gradient) pass.
"""
import math

import numpy as np

from ._jit import internal_kernel, kernel

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def threshold(p):
    """The integer keep threshold of drop probability p in [0, 1): 0 keeps everything."""
    return int(math.ceil(p * 2.0 ** 53))


@internal_kernel
def mix64(z):
    """splitmix64's finaliser: a bijective 64-bit mix."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@internal_kernel
def _child(parent, index):
    """The key of child ``index`` (>= 0) of ``parent``."""
    return mix64(parent + (np.uint64(index) + np.uint64(1)) * _GOLDEN)


@kernel
def apply(epoch_key, batch, row0, thresh, scale, x, out):
    """out = x * scale where kept, 0 where dropped, for the rows row0.. of batch ``batch`` (0-based) of the
    epoch keyed ``epoch_key`` (uint64); ``thresh`` int64 (see ``threshold``), scale float64. out may alias x.
    2-D C-contiguous arrays of one float dtype."""
    n, m = x.shape
    s = out.dtype.type(scale)
    zero = s - s
    bkey = _child(np.uint64(epoch_key), batch)
    for i in range(n):
        rkey = _child(bkey, row0 + i)
        for j in range(m):
            u = np.int64(_child(rkey, j) >> np.uint64(11))
            out[i, j] = x[i, j] * s if u >= thresh else zero


def epoch_key(seed, epoch):
    """The uint64 key of one epoch from a 64-bit seed (Python ints; used by the Python side)."""
    mask = (1 << 64) - 1

    def mix(z):
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        return z ^ (z >> 31)
    return mix((mix(seed & mask) + (epoch + 1) * 0x9E3779B97F4A7C15) & mask)
