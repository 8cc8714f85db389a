"""The FLOP limit: single-precision GEMM rate of the BLAS that fastnn's kernels use.

Numba's ``np.dot`` inside njit calls SciPy's BLAS (scipy.linalg.cython_blas), so the limit is measured with
``scipy.linalg.blas.sgemm`` on 2048 x 2048 float32 (Fortran-ordered, so no copies; C preallocated, beta=0),
with the BLAS thread count set through threadpoolctl. Work = 2 N^3 per call. Prints JSON:

    python -m benchmarks.sgemm [--size 2048] [--threads 1,2] [--repeats 10]

Reported per thread count: best and median GFLOP/s, and the BLAS SciPy loaded (architecture = the
OpenBLAS kernel in use, which OPENBLAS_CORETYPE would override).
"""
import argparse
import json
import os
import statistics
import sys
import time


def scipy_blas_info():
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    libs = [d for d in threadpool_info() if d.get("user_api") == "blas"]
    for d in libs:
        if "scipy" in os.path.dirname(d.get("filepath") or "").lower():      # scipy.libs/ (wheel) or scipy/
            return {k: d.get(k) for k in ("internal_api", "version", "architecture", "num_threads", "filepath")}
    return {k: libs[0].get(k) for k in ("internal_api", "version", "architecture", "num_threads", "filepath")} \
        if libs else None


def measure(size=2048, threads=(1,), repeats=10, min_seconds=0.5):
    import numpy as np
    from scipy.linalg import blas
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = None
    rng = np.random.default_rng(0)
    a = np.asfortranarray(rng.standard_normal((size, size), dtype=np.float32))
    b = np.asfortranarray(rng.standard_normal((size, size), dtype=np.float32))
    c = np.zeros((size, size), np.float32, order="F")
    flops = 2.0 * size ** 3
    out = {"size": size, "flops_per_call": flops, "blas": scipy_blas_info(), "threads": {}}
    for n in threads:
        ctx = threadpool_limits(n, user_api="blas") if threadpool_limits else None
        if ctx is not None:
            ctx.__enter__()
        try:
            blas.sgemm(1.0, a, b, beta=0.0, c=c, overwrite_c=1)          # warm-up (threads, pages)
            times, start = [], time.perf_counter()
            while len(times) < repeats or (time.perf_counter() - start < min_seconds and len(times) < 100):
                t0 = time.perf_counter()
                r = blas.sgemm(1.0, a, b, beta=0.0, c=c, overwrite_c=1)
                times.append(time.perf_counter() - t0)
            assert r.shape == (size, size)
        finally:
            if ctx is not None:
                ctx.__exit__(None, None, None)
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
