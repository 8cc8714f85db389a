"""How fast could a training step of a matrix cell be if it were nothing but its GEMMs?

Runs exactly the GEMMs of one fused SGD step (forward, input gradients of every layer but the first, the
weight updates W += -lr·Aᵀ·D with BLAS beta = 1) through fastnn's own GEMM call, with the thread policy
of the epoch kernel, on the cell's shapes and batch; nothing else (no gather, activation, softmax, bias
or bounds). Compare its samples/s with the cell's fastnn figure from compare.py: the gap is everything
that is not GEMM. Prints one line per BLAS thread count:

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m benchmarks.gemm_bound [mnist128 mnist1024 ...]
"""
import statistics
import sys
import time

import numba
import numpy as np

from fastnn.kernels import _blas

from . import matrix


@numba.njit
def _gemm_step(A, D, W, threads):
    """The GEMMs of one SGD step; A[k] (batch, in_k), D[k] (batch, out_k) = dL/dA[k+1], W[k] (in_k, out_k)."""
    L = len(W)
    for k in range(L):
        _blas.matmul(A[k], False, W[k], False, D[k], threads)           # forward (into D: same shape)
    for k in range(L - 1, 0, -1):
        _blas.matmul(D[k], False, W[k], True, D[k - 1], threads)        # input gradients
    for k in range(L):
        _blas.gemm(-1e-9, A[k], True, D[k], False, 1.0, W[k], threads)  # weight updates


def measure(cell, threads, seconds=2.0):
    """Median seconds of one GEMM-only step of ``cell`` on ``threads`` BLAS threads."""
    rng = np.random.default_rng(0)
    shapes = cell.shapes
    A = tuple(rng.standard_normal((cell.batch, i), dtype=np.float32) for i, _ in shapes)
    D = tuple(rng.standard_normal((cell.batch, o), dtype=np.float32) for _, o in shapes)
    W = tuple(rng.standard_normal((i, o), dtype=np.float32) * 0.01 for i, o in shapes)
    _gemm_step(A, D, W, threads)
    times, start = [], time.perf_counter()
    while time.perf_counter() - start < seconds or len(times) < 5:
        t0 = time.perf_counter()
        _gemm_step(A, D, W, threads)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None):
    names = (argv if argv is not None else sys.argv[1:]) or ["mnist128", "mnist1024", "wide"]
    for name in names:
        cell = matrix.get(name)
        for threads in (1, 2):
            step = measure(cell, threads)
            gflops = cell.flops_per_sample * cell.batch / step / 1e9
            print(f"{name}: GEMMs only, {threads} BLAS thread(s): {step * 1e3:.3f} ms a step, "
                  f"{cell.batch / step:,.0f} samples/s, {gflops:.0f} GFLOP/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
