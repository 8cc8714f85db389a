"""Thread counts: Numba's and BLAS's threads together, so that they never oversubscribe the cores.

Policy (measured with benchmarks/threads.py on the 2-core machine; numbers in benchmarks/README.md):
* BLAS gets ``n`` threads for GEMMs large enough to pay for waking them (kernels/_blas.py,
  ``MIN_THREADED_MACS``); smaller GEMMs run on the calling thread alone.
* Numba's ``parallel=True`` kernels are used only where they pay: an elementwise pass of at least
  ``PARALLEL_MIN_ELEMENTS`` while BLAS runs single-threaded (``parallel_pays``). A parallel region
  entered right after a multi-threaded OpenBLAS call waited ~7.6 ms for the BLAS threads, which spin
  before they sleep (GNU OpenMP layer); with OMP_WAIT_POLICY=passive or the workqueue layer the launch
  still cost 30-60 us, which a serial pass only exceeds above ~1e6 elements. The fused epoch kernel
  is serial Numba around multi-threaded BLAS.
* Results are deterministic for a given thread count; a different count can change the last bits (the
  BLAS splits its work differently).
On a machine whose cores are busy with other work, ``set_num_threads(1)`` avoids threads that spin while
waiting for a core: with 2 threads on 2 busy cores an epoch can be 10-50x slower.
"""
import os

import numba

from .kernels._jit import PARALLEL_MIN_ELEMENTS

_blas_threads = None


def cpu_count():
    """Cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def set_num_threads(n):
    """Use ``n`` threads for Numba's parallel kernels and for BLAS: the one the kernels call
    (kernels/_blas.py) and every other one loaded (NumPy's, SciPy's), through threadpoolctl."""
    global _blas_threads
    from ._checks import positive_int
    from .kernels import _blas
    n = positive_int(n, "n")
    limit = numba.config.NUMBA_NUM_THREADS
    if n > limit:
        raise ValueError(f"n must be at most {limit} (the cores Numba was started with), got {n}")
    numba.set_num_threads(n)
    _blas_threads = n
    _blas.set_blas_threads(n)     # directly: without threadpoolctl, or should it not recognise the library
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(n, user_api="blas")


def get_num_threads():
    """The number of threads fastnn uses (Numba's parallel kernels and BLAS)."""
    return numba.get_num_threads()


def parallel_pays(size):
    """Whether an elementwise pass over ``size`` elements should use a ``parallel=True`` kernel."""
    return size >= PARALLEL_MIN_ELEMENTS and blas_threads() == 1 and numba.get_num_threads() > 1


#: batch-parallel epochs need at least this many rows per thread and this many multiply-adds per step and
#: thread (below, the barriers and the per-thread GEMM calls cost more than the split saves): measured,
#: benchmarks/README.md "batch-parallel rule".
MIN_ROWS_PER_THREAD = 8
MIN_MACS_PER_THREAD = 1 << 15


def batch_parallel_threads(widths, batch_rows):
    """How many threads the fused kernel splits each mini-batch over (1: the serial kernel around
    multi-threaded BLAS) for a network of layer ``widths`` (input first) and mini-batches of
    ``batch_rows`` rows, at the current thread count."""
    n = numba.get_num_threads()
    macs = 3 * batch_rows * sum(a * b for a, b in zip(widths[:-1], widths[1:]))
    while n > 1 and (batch_rows < n * MIN_ROWS_PER_THREAD or macs < n * MIN_MACS_PER_THREAD):
        n -= 1
    return n


def blas_threads():
    """The most BLAS threads one GEMM of fastnn may use: set_num_threads' n, else Numba's thread count."""
    return _blas_threads if _blas_threads is not None else numba.get_num_threads()
