"""The one place where kernels get their Numba options.

``kernel`` compiles serially; ``parallel_twin`` gives the same Python function a second, ``parallel=True``
dispatcher under its own cache name, so that a caller can pick the serial variant below the size where a
parallel region pays for its launch (see ``PARALLEL_MIN_ELEMENTS``).

No fastmath flag that assumes finite values (``nnan``, ``ninf``): divergence detection needs NaN and Inf
to survive (DESIGN §3). Reductions may reassociate (``reduction_kernel``) so that they vectorise; their
results are deterministic for a given build, though not equal to a left-to-right sum.
"""
import types

from numba import njit

OPTIONS = dict(cache=True, nogil=True, error_model="numpy")

#: Elementwise passes smaller than this run serially: a parallel region costs microseconds to launch and
#: only pays above ~1e5 elements on the machines we measured (benchmarks/bench_kernels.py).
PARALLEL_MIN_ELEMENTS = 1 << 17


def kernel(fn):
    """Serial, cached Numba kernel."""
    return njit(**OPTIONS)(fn)


def reduction_kernel(fn):
    """Serial kernel whose floating-point sums may be reassociated (vectorised); NaN/Inf still propagate."""
    return njit(fastmath={"reassoc"}, **OPTIONS)(fn)


def parallel_twin(fn):
    """A ``parallel=True`` copy of ``fn`` (whose loops use ``prange``), cached under a distinct name."""
    twin = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + "_parallel", fn.__defaults__,
                              fn.__closure__)
    twin.__qualname__ = fn.__qualname__ + "_parallel"
    twin.__module__ = fn.__module__
    twin.__doc__ = fn.__doc__
    return njit(parallel=True, **OPTIONS)(twin)
