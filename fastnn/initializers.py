"""Weight initializers. Each takes (fan_in, fan_out, rng, dtype) and returns a (fan_in, fan_out) array.

The values are drawn in the target dtype and scaled in place (``Generator.standard_normal`` and
``Generator.random`` take a dtype): a float32 layer never has a float64 temporary, so initialising peaks
at the size of the returned array. In float64 the values are those of ``rng.standard_normal(shape) * s``
and ``rng.uniform(-a, a, shape)``; in float32 they come from NumPy's float32 generators.
"""
import numpy as np

from . import _memory


def he(fan_in, fan_out, rng, dtype=np.float32):
    """He et al. (2015) normal: N(0, 2 / fan_in); the default for ReLU networks."""
    w = rng.standard_normal((fan_in, fan_out), dtype=np.dtype(dtype).type)
    w *= np.sqrt(2.0 / fan_in)
    return w


def _uniform(a, fan_in, fan_out, rng, dtype):
    """U(-a, a) as -a + 2a * U[0, 1): the arithmetic of ``rng.uniform`` (the same values in float64)."""
    w = rng.random((fan_in, fan_out), dtype=np.dtype(dtype).type)
    w *= 2.0 * a
    w += -a
    return w


def xavier(fan_in, fan_out, rng, dtype=np.float32):
    """Glorot & Bengio (2010) uniform: U(-a, a), a = sqrt(6 / (fan_in + fan_out)); for sigmoid/tanh."""
    return _uniform(np.sqrt(6.0 / (fan_in + fan_out)), fan_in, fan_out, rng, dtype)


def uniform(fan_in, fan_out, rng, dtype=np.float32):
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)), PyTorch's and the lecture's plain default."""
    return _uniform(1.0 / np.sqrt(fan_in), fan_in, fan_out, rng, dtype)


INITIALIZERS = {"he": he, "xavier": xavier, "glorot": xavier, "uniform": uniform}


def get(name):
    """The initializer called ``name`` (he, xavier, glorot, uniform); ValueError otherwise."""
    try:
        return INITIALIZERS[name]
    except (KeyError, TypeError):
        raise ValueError(f"init must be one of {sorted(INITIALIZERS)}, got {name!r}") from None


def check_fits(fan_in, fan_out, dtype, copies=3):
    """ValueError naming the layer shape and the size in bytes when a (fan_in, fan_out) layer's
    parameters (weights + bias) ``copies`` times over (parameters, gradients and the initializer's
    draw) would not fit in the memory available now; called before anything is allocated."""
    nbytes = copies * (fan_in * fan_out + fan_out) * np.dtype(dtype).itemsize
    _memory.check_fits(nbytes, f"a FullyConnected({fan_in}, {fan_out}) layer of {np.dtype(dtype).name} "
                               f"(parameters, gradients and its initial draw)")
