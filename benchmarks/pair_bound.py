"""What a second core can give at most: the same one-thread work alone, then twice at once in two processes.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m benchmarks.pair_bound [--cells small,tabular] [--rounds 5]

Two processes share nothing but the machine (caches, memory bandwidth, the hypervisor's vCPUs), so two
copies of a one-thread fit running at once show what a second core gives to work that needs no splitting
and no synchronisation:

    pair speedup = 2 · (seconds alone) / (seconds of the slower copy when both run at once)

A reference for issue 18's "2 threads ÷ 1 thread ≥ 1.8×", not a strict bound: one process with two threads
shares more than two processes (the weights, X read once), so a memory-heavy cell can pass its pair figure
(mnist1024 did on an AMD EPYC: 1.78× against 1.65×). Rows: each matrix cell's fused fit on one thread (``fastnn.set_num_threads(1)``: the serial
kernel, one-thread GEMMs), and, as the FLOP limit's counterpart, a one-thread sgemm 2048² loop.
Alone and pair rounds alternate; medians over ``--rounds``. Each child compiles and warms up before the
parent starts the clock (one line "go" on its stdin).
"""
import argparse
import json
import statistics
import subprocess
import sys
import time

from . import matrix


def _child_work(what, seconds):
    """Return a callable doing one timed unit of ``what`` (a cell name or 'sgemm'), already warm."""
    import numpy as np
    import fastnn as fnn
    fnn.set_num_threads(1)
    if what == "sgemm":           # the FLOP limit's GEMM call (benchmarks/sgemm.py), one thread
        from numba import njit
        from fastnn.kernels import _blas

        @njit
        def loop(A, B, C, reps):
            for _ in range(reps):
                _blas.matmul(A, False, B, False, C, 1)
        rng = np.random.default_rng(0)
        A, B, C = (rng.standard_normal((2048, 2048), dtype=np.float32) for _ in range(3))
        loop(A, B, C, 1)
        return lambda: loop(A, B, C, max(1, int(seconds * 40)))
    cell = matrix.get(what)
    X, y = matrix.make_data(cell)
    net = matrix.fastnn_network(cell)
    net.fit(X, y, epochs=1, batch_size=cell.batch, verbose=0)          # compiles; then one warm epoch, timed
    t0 = time.perf_counter()
    net.fit(X, y, epochs=1, batch_size=cell.batch, verbose=0)
    epochs = max(1, round(seconds / (time.perf_counter() - t0)))
    return lambda: net.fit(X, y, epochs=epochs, batch_size=cell.batch, verbose=0)


def child(what, seconds):
    work = _child_work(what, seconds)
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() != "go":
            break
        start = time.perf_counter()
        work()
        print(json.dumps(time.perf_counter() - start), flush=True)
    return 0


def _run(procs):
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    return [json.loads(p.stdout.readline()) for p in procs]


def measure(what, rounds, seconds):
    """(median seconds alone, median seconds of the slower of the pair, per-round pair speedups)."""
    cmd = [sys.executable, "-m", "benchmarks.pair_bound", "--child", what, "--seconds", str(seconds)]
    procs = [subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        for p in procs:
            if p.stdout.readline().strip() != "ready":
                raise SystemExit(f"{what}: a child did not start")
        alone, pair = [], []
        for _ in range(rounds):
            alone.append(_run(procs[:1])[0])
            pair.append(max(_run(procs)))
    finally:
        for p in procs:
            p.stdin.close()
            p.wait()
    speedups = [2 * a / b for a, b in zip(alone, pair)]
    return statistics.median(alone), statistics.median(pair), speedups


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.pair_bound", description=__doc__.splitlines()[0])
    p.add_argument("--cells", default="small,tabular,mnist128,mnist1024,sgemm",
                   help="matrix cells and/or 'sgemm' (comma-separated)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seconds", type=float, default=1.0, help="about how long one timed unit runs")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(args.child, args.seconds)
    print("| work (one thread) | alone s | pair s (slower copy) | pair speedup (median; rounds) |")
    print("|---|---|---|---|")
    for what in args.cells.split(","):
        alone, pair, speedups = measure(what, args.rounds, args.seconds)
        print(f"| {what} | {alone:.3f} | {pair:.3f} | **{statistics.median(speedups):.2f}×** "
              f"({', '.join(f'{s:.2f}' for s in speedups)}) |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
