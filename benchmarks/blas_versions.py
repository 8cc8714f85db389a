"""sgemm rate of SciPy's bundled OpenBLAS against the scipy-openblas32 wheel's (the kernels' BLAS), in one
process, at 1 and 2 BLAS threads, for 2048³ and for the GEMM shapes fastnn's networks run.

    python -m benchmarks.blas_versions [--repeats 7] [--seconds 0.01] [--shapes 2048x2048x2048,200x100x100]

A shape is batch x inputs x outputs (m x k x n, the forward GEMM of a layer: C[m,n] = A[m,k]·B[k,n]).
Both libraries are called the way the kernels call BLAS: Fortran sgemm_ with alpha = 1, beta = 0, from a
Numba loop of calls through a function pointer (no Python between calls). The two libraries alternate in
every repeat (ABAB...), so that both see the same machine load; each timing is a batch of calls lasting
about --seconds; reported: the median GFLOP/s over the repeats and the ratio wheel / SciPy of the medians.
After a multi-threaded batch the script sleeps 0.12 s: OpenBLAS's idle threads spin for ~2^28 cycles
(OPENBLAS_THREAD_TIMEOUT) before they sleep, and would otherwise take a core from the other library.
OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are removed from the environment (the script re-executes itself
without them): this workplace sets them, a user's machine does not. Prints a table and a JSON line.
"""
import argparse
import ctypes
import json
import os
import statistics
import sys
import time

UNSET = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
SHAPES = "2048x2048x2048,200x100x100,64x64x128,128x784x256,32x16x16"
PAUSE = 0.12        # seconds after a multi-threaded batch (see the docstring)


def libraries():
    """[(label, ctypes library, config string)]: SciPy's bundled OpenBLAS, then the wheel's."""
    from fastnn.kernels import _blas
    scipy_lib, _ = _blas._library_holding(_blas._scipy_pointer("sgemm"))
    wheel = _blas._wheel_library()
    if wheel is None:
        sys.exit("scipy-openblas32 is not installed")
    out = []
    for label, lib in (("scipy", scipy_lib), ("wheel", wheel[0])):
        out.append((label, lib, _blas._string(lib, "scipy_openblas_get_config")))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.blas_versions", description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--seconds", type=float, default=0.01, help="length of one timed batch of calls")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--shapes", default=SHAPES)
    args = p.parse_args(argv)
    removed = {k: os.environ[k] for k in UNSET if k in os.environ}
    if removed:
        env = {k: v for k, v in os.environ.items() if k not in UNSET}
        env["FASTNN_BLAS_VERSIONS_REMOVED"] = json.dumps(removed)
        os.execve(sys.executable, [sys.executable, "-m", "benchmarks.blas_versions"] + sys.argv[1:], env)
    removed = json.loads(os.environ.get("FASTNN_BLAS_VERSIONS_REMOVED", "{}"))

    import numba
    import numpy as np

    @numba.njit
    def loop(f, calls, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
        for _ in range(calls):
            f(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)

    libs = libraries()
    arg = ctypes.c_ssize_t                  # every Fortran argument is a pointer
    sgemm = {label: ctypes.CFUNCTYPE(None, *[arg] * 13)(ctypes.cast(lib.scipy_sgemm_, ctypes.c_void_p).value)
             for label, lib, _ in libs}
    set_threads = {label: lib.scipy_openblas_set_num_threads for label, lib, _ in libs}
    threads = [int(t) for t in args.threads.split(",") if t]
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",") if s]
    rng = np.random.default_rng(0)
    results = []
    for m, k, n in shapes:
        # column-major C = A·B with A (m,k), B (k,n), C (m,n), Fortran-ordered
        a = np.asfortranarray(rng.standard_normal((m, k), dtype=np.float32))
        b = np.asfortranarray(rng.standard_normal((k, n), dtype=np.float32))
        c = np.zeros((m, n), np.float32, order="F")
        keep = [np.array([ord("N")], np.uint8), np.array([m], np.int32), np.array([n], np.int32),
                np.array([k], np.int32), np.array([1.0], np.float32), np.array([0.0], np.float32)]
        nn, mm, nm, km, one, zero = (x.ctypes.data for x in keep)
        ptrs = (nn, nn, mm, nm, km, one, a.ctypes.data, mm, b.ctypes.data, km, zero, c.ctypes.data, mm)
        flops = 2.0 * m * n * k
        want = a.astype(np.float64) @ b.astype(np.float64)
        tolerance = 4 * k * np.finfo(np.float32).eps * (np.abs(a) @ np.abs(b))
        for t in threads:
            calls = {}
            for label in sgemm:                 # warm up, and size a batch to about --seconds
                set_threads[label](t)
                loop(sgemm[label], 1, *ptrs)
                batch, elapsed = 1, 0.0
                while elapsed < args.seconds / 4:
                    batch *= 2
                    t0 = time.perf_counter()
                    loop(sgemm[label], batch, *ptrs)
                    elapsed = time.perf_counter() - t0
                calls[label] = max(1, round(batch * args.seconds / elapsed))
                assert np.all(np.abs(c - want) <= tolerance), label      # the right product, both
                if t > 1:
                    time.sleep(PAUSE)
            rates = {label: [] for label in sgemm}
            for _ in range(args.repeats):
                for label in sgemm:
                    set_threads[label](t)
                    t0 = time.perf_counter()
                    loop(sgemm[label], calls[label], *ptrs)
                    rates[label].append(flops * calls[label] / (time.perf_counter() - t0) / 1e9)
                    if t > 1:
                        time.sleep(PAUSE)
            med = {label: statistics.median(r) for label, r in rates.items()}
            results.append({"shape": f"{m}x{k}x{n}", "threads": t, "calls_per_batch": calls,
                            "median_gflops": med, "min_gflops": {l: min(r) for l, r in rates.items()},
                            "max_gflops": {l: max(r) for l, r in rates.items()},
                            "ratio_wheel_over_scipy": med["wheel"] / med["scipy"]})
            r = results[-1]
            print(f"{r['shape']:>16} {t} thr   scipy {med['scipy']:8.2f}  wheel {med['wheel']:8.2f} GFLOP/s"
                  f"   wheel/scipy {r['ratio_wheel_over_scipy']:.3f}   "
                  f"(ranges {min(rates['scipy']):.1f}-{max(rates['scipy']):.1f} / "
                  f"{min(rates['wheel']):.1f}-{max(rates['wheel']):.1f})", flush=True)
    for label, lib, config in libs:
        print(f"{label}: {config}")
    if removed:
        print("removed from the environment: " + ", ".join(f"{k}={v}" for k, v in removed.items()))
    print(json.dumps({"libraries": {label: config for label, _, config in libs}, "env_removed": removed,
                      "repeats": args.repeats, "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
