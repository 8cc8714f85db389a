"""A parallel=True region entered right after a multi-threaded BLAS call: how long does it take?

Usage: env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/threads.py [omp|workqueue|tbb]
(prefix OMP_WAIT_POLICY=PASSIVE to try the passive wait). Prints, per size, the median time of a
parallel and a serial elementwise pass, each right after a 256x256x256 GEMM and back to back.
This is what fastnn/threads.py's policy (PARALLEL_MIN_ELEMENTS, parallel_pays) rests on.
"""
import os, sys, time
import numpy as np
import numba
from numba import njit, prange
layer = sys.argv[1] if len(sys.argv) > 1 else "default"
if layer != "default":
    numba.config.THREADING_LAYER = layer

@njit(parallel=True)
def par_scale(x, a):
    for i in prange(x.size):
        x[i] *= a

@njit
def ser_scale(x, a):
    for i in range(x.size):
        x[i] *= a

@njit
def mm(a, b, c):
    np.dot(a, b, c)

A = np.random.rand(256, 256).astype(np.float32); C = np.empty_like(A)
for size in (1 << 12, 1 << 15, 1 << 17, 1 << 20):
    x = np.ones(size, np.float32)
    par_scale(x, 1.0); ser_scale(x, 1.0); mm(A, A, C)
    res = {}
    for name, f in (("parallel", par_scale), ("serial", ser_scale)):
        ts = []
        for _ in range(50):
            mm(A, A, C)
            t = time.perf_counter(); f(x, 1.0); ts.append(time.perf_counter() - t)
        cold = np.median(ts)
        ts = []
        for _ in range(50):
            t = time.perf_counter(); f(x, 1.0); ts.append(time.perf_counter() - t)
        res[name] = (cold, np.median(ts), max(ts))
    print(f"{layer:9s} {os.environ.get('OMP_WAIT_POLICY','-'):8s} n={size:8d} "
          + "  ".join(f"{k}: after-BLAS {v[0]*1e6:8.1f}us alone {v[1]*1e6:7.1f}us" for k, v in res.items()),
          "layer:", numba.threading_layer())
