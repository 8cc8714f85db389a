"""The FLOP limit: single-precision GEMM rate of the BLAS that fastnn's kernels call.

fastnn's kernels call sgemm of the scipy-openblas32 wheel (or SciPy's bundled OpenBLAS when the wheel is
missing: fastnn.kernels._blas.BLAS_NAME says which) through the intrinsic ``_blas.gemm``; the limit is
measured with that same call from a Numba kernel on 2048 x 2048 float32 (C preallocated, beta = 0), the
BLAS thread count set per call (``max_threads``). Work = 2 N^3 per call. Prints JSON:

    python -m benchmarks.sgemm [--size 2048] [--threads 1,2] [--repeats 10]

Reported per thread count: best and median GFLOP/s, and the BLAS (name, library, the OpenBLAS kernel in
use, which OPENBLAS_CORETYPE would override).
"""
import argparse
import json
import statistics
import sys
import time


def kernels_blas_info():
    """The BLAS of fastnn's kernels: name (version and core), library path, where it came from."""
    from fastnn.kernels import _blas
    return {"name": _blas.BLAS_NAME, "version": ".".join(map(str, _blas.BLAS_VERSION or ())),
            "filepath": _blas.BLAS_LIBRARY, "source": _blas.BLAS_SOURCE}


def measure(size=2048, threads=(1,), repeats=10, min_seconds=0.5):
    import numpy as np
    from numba import njit

    from fastnn.kernels import _blas

    @njit(nogil=True)
    def sgemm(a, b, c, n):
        _blas.gemm(1.0, a, False, b, False, 0.0, c, n)
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    c = np.zeros((size, size), np.float32)
    flops = 2.0 * size ** 3
    out = {"size": size, "flops_per_call": flops, "blas": kernels_blas_info(), "threads": {}}
    for n in threads:
        sgemm(a, b, c, n)          # warm-up (compilation, threads, pages)
        times, start = [], time.perf_counter()
        while len(times) < repeats or (time.perf_counter() - start < min_seconds and len(times) < 100):
            t0 = time.perf_counter()
            sgemm(a, b, c, n)
            times.append(time.perf_counter() - t0)
        out["threads"][str(n)] = {"best_gflops": flops / min(times) / 1e9,
                                  "median_gflops": flops / statistics.median(times) / 1e9, "calls": len(times)}
    return out


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.sgemm", description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=2048)
    p.add_argument("--threads", default="1", help="comma-separated BLAS thread counts")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--min-seconds", type=float, default=0.5)
    args = p.parse_args(argv)
    threads = [int(t) for t in args.threads.split(",") if t]
    print(json.dumps(measure(args.size, threads, args.repeats, args.min_seconds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
