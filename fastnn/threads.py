"""Thread counts: fastnn's threads and BLAS's together, so that they never oversubscribe the cores.

Policy (measured on the 2-core machine; the numbers are in benchmarks/README.md, "threads"):
* The fused epoch kernel splits every mini-batch over ``batch_parallel_threads`` threads of its own
  (kernels/epoch_parallel.py), each running single-threaded GEMMs: one thread pool at a time, never BLAS's
  spinning threads beside fastnn's. Networks too small for the split to pay (``MIN_ROWS_PER_THREAD``,
  ``MIN_MACS_PER_THREAD``) run the serial kernel, whose GEMMs get ``n`` BLAS threads when large enough to
  pay for waking them (kernels/_blas.py, ``MIN_THREADED_MACS``).
* Numba's ``parallel=True`` kernels (the per-layer path) are used only where they pay: an elementwise pass
  of at least ``PARALLEL_MIN_ELEMENTS`` while BLAS runs single-threaded (``parallel_pays``). A parallel
  region entered right after a multi-threaded OpenBLAS call waited ~7.6 ms for the BLAS threads, which
  spin before they sleep.
* Results are deterministic for a given thread count; a different count can change the last bits.
* A busy core: the batch-parallel kernel's threads yield instead of spinning, and when its first thread
  has waited for the others longer than it worked, it finishes the epoch alone (same numbers).
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


#: batch-parallel epochs need at least this many rows per thread, this many multiply-adds per step and
#: thread (below, splitting the batch costs more than it saves: 64-128-10 at batch 64, 0.9M per thread,
#: ran 0.89-1.07x as fast on 2 threads as on one, 100-100-5 at batch 200, 3.1M, 1.2-1.35x), and this many
#: per epoch and thread (the other threads start at every epoch, ~0.1-0.2 ms: scikit-learn's digits example,
#: 26M per epoch and thread, fitted in 0.27 s on 2 threads against 0.19 s on one). benchmarks/README.md,
#: "The batch-parallel kernel".
MIN_ROWS_PER_THREAD = 8
MIN_MACS_PER_THREAD = 1 << 20
MIN_EPOCH_MACS_PER_THREAD = 1 << 27


def batch_parallel_threads(widths, batch_rows, samples):
    """How many threads the fused kernel splits each mini-batch over (1: the serial kernel around
    multi-threaded BLAS) for a network of layer ``widths`` (input first), mini-batches of ``batch_rows``
    rows and epochs of ``samples`` samples, at the current thread count."""
    n = numba.get_num_threads()
    per_sample = 3 * sum(a * b for a, b in zip(widths[:-1], widths[1:]))
    while n > 1 and (batch_rows < n * MIN_ROWS_PER_THREAD or batch_rows * per_sample < n * MIN_MACS_PER_THREAD
                     or samples * per_sample < n * MIN_EPOCH_MACS_PER_THREAD):
        n -= 1
    return n


def blas_threads():
    """The most BLAS threads one GEMM of fastnn may use: set_num_threads' n, else Numba's thread count."""
    return _blas_threads if _blas_threads is not None else numba.get_num_threads()
