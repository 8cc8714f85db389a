"""The FLOP limit: single-precision GEMM rate of the BLAS that fastnn's kernels call.

Measured through fastnn's own GEMM call (fastnn.kernels._blas.gemm, the library in _blas.BLAS_LIBRARY) on
2048 x 2048 float32 C-contiguous arrays (beta = 0), with the BLAS thread count set per call. Work = 2 N^3
per call. Prints JSON:

    python -m benchmarks.sgemm [--size 2048] [--threads 1,2] [--repeats 10]

Reported per thread count: best and median GFLOP/s, and the BLAS (architecture = the OpenBLAS kernel in
use, which OPENBLAS_CORETYPE would override).
"""
import argparse
import json
import os
import statistics
import sys
import time


def fastnn_blas_info():
    """threadpoolctl's view of the library fastnn calls (version, architecture), plus its path."""
    from fastnn.kernels import _blas
    info = {"filepath": _blas.BLAS_LIBRARY, "integer_bits": _blas.BLAS_INT_BITS}
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return info
    for d in threadpool_info():
        if d.get("user_api") == "blas" and os.path.realpath(d.get("filepath") or "") == \
                os.path.realpath(_blas.BLAS_LIBRARY):
            info.update({k: d.get(k) for k in ("internal_api", "version", "architecture", "num_threads")})
    return info


def _gemm_kernel():
    import numba

    from fastnn.kernels import _blas

    @numba.njit
    def sgemm(a, b, c, threads):
        _blas.gemm(1.0, a, False, b, False, 0.0, c, threads)
    return sgemm


def measure(size=2048, threads=(1,), repeats=10, min_seconds=0.5):
    import numpy as np
    sgemm = _gemm_kernel()
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    c = np.zeros((size, size), np.float32)
    flops = 2.0 * size ** 3
    out = {"size": size, "flops_per_call": flops, "blas": fastnn_blas_info(), "threads": {}}
    for n in threads:
        sgemm(a, b, c, n)                   # warm-up (compilation, threads, pages)
        times, start = [], time.perf_counter()
        while len(times) < repeats or (time.perf_counter() - start < min_seconds and len(times) < 100):
            t0 = time.perf_counter()
            sgemm(a, b, c, n)
            times.append(time.perf_counter() - t0)
        out["threads"][str(n)] = {"best_gflops": flops / min(times) / 1e9,
                                  "median_gflops": flops / statistics.median(times) / 1e9, "calls": len(times)}
    np.testing.assert_allclose(c[:4, :4], a[:4] @ b[:, :4], rtol=1e-3, atol=1e-2)
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
