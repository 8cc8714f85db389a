"""Weight initializers. Each takes (fan_in, fan_out, rng, dtype) and returns a (fan_in, fan_out) array."""
import numpy as np


def he(fan_in, fan_out, rng, dtype=np.float32):
    """He et al. (2015) normal: N(0, 2 / fan_in); the default for ReLU networks."""
    return (rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / fan_in)).astype(dtype)


def xavier(fan_in, fan_out, rng, dtype=np.float32):
    """Glorot & Bengio (2010) uniform: U(-a, a), a = sqrt(6 / (fan_in + fan_out)); for sigmoid/tanh."""
    a = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-a, a, (fan_in, fan_out)).astype(dtype)


def uniform(fan_in, fan_out, rng, dtype=np.float32):
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)), PyTorch's and the lecture's plain default."""
    a = 1.0 / np.sqrt(fan_in)
    return rng.uniform(-a, a, (fan_in, fan_out)).astype(dtype)


INITIALIZERS = {"he": he, "xavier": xavier, "glorot": xavier, "uniform": uniform}


def get(name):
    """The initializer called ``name`` (he, xavier, glorot, uniform); ValueError otherwise."""
    try:
        return INITIALIZERS[name]
    except (KeyError, TypeError):
        raise ValueError(f"init must be one of {sorted(INITIALIZERS)}, got {name!r}") from None
