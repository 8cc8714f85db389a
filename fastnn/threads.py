"""Thread counts: Numba's and BLAS's threads together, so that they never oversubscribe the cores."""
import os

import numba


def set_num_threads(n):
    """Use ``n`` threads for Numba's parallel kernels and for BLAS (NumPy's and SciPy's OpenBLAS)."""
    from ._checks import positive_int
    n = positive_int(n, "n")
    limit = numba.config.NUMBA_NUM_THREADS
    if n > limit:
        raise ValueError(f"n must be at most {limit} (the cores Numba was started with), got {n}")
    numba.set_num_threads(n)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(n, user_api="blas")


def get_num_threads():
    """The number of threads Numba's parallel kernels use."""
    return numba.get_num_threads()


def cpu_count():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
