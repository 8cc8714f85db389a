"""Where the batch-parallel step's time goes: each thread's CPU cycles waiting and in each phase.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m benchmarks.phases [--cells small,tabular] [--epochs 3]

Per cell (the matrix's network, data and optimizer), the fused default path is run four ways, one epoch
at a time, interleaved: ``serial`` (the serial kernel on one thread: fastnn.set_num_threads(1)),
``serial, 2-thread GEMMs`` (the serial kernel at 2 threads: its large GEMMs on 2 BLAS threads), ``2 threads`` (the batch-parallel kernel, its phases in 2 blocks, run by 2 threads), and ``2 blocks, 1
thread`` (the same kernel and blocks, run by one thread: the other threads are not started). The last two
compute the same numbers; their difference is what running the blocks on two cores at once costs or
saves. Printed per way: µs per step (median epoch), and from the kernel's own counters (EpochRunner.clock,
rdtsc cycles converted with the TSC rate measured here) µs per step per thread waiting and in phases 0
(rows: forward, loss, deltas), 1 (gradients; plain SGD: the update inside the GEMM) and 2 (update).
"""
import argparse
import statistics
import sys
import threading
import time

import numpy as np

from . import matrix


def _tsc_hz():
    """Cycle-counter ticks per second, from a 0.2 s sleep."""
    from numba import njit

    from fastnn.kernels._sync import cycles

    read = njit(lambda: cycles())
    read()
    c0, t0 = read(), time.perf_counter()
    time.sleep(0.2)
    return (read() - c0) / (time.perf_counter() - t0)


class _NotStarted:
    """A stand-in for threading.Thread: the batch-parallel kernel's other threads never run."""

    def __init__(self, *args, **kwargs):
        pass

    def start(self):
        pass

    def join(self):
        pass

    ident = None            # never started (what fused._join_all asks)

    def is_alive(self):
        return False


_THREAD = threading.Thread      # the real one: measure() swaps fastnn's for _NotStarted and back


def measure(cell, epochs, hz):
    import fastnn as fnn
    from fastnn import threads
    from fastnn.engines import fused
    from fastnn.kernels import _blas

    # The forced block counts below replace threads.batch_parallel_threads, which is also what loads the
    # serial copy of the BLAS: without it the blocks' one-thread GEMMs take turns under a lock and
    # "2 threads" measures two threads running one after the other.
    if not _blas.concurrent_one_thread_gemms():
        raise SystemExit("one-thread GEMMs cannot run concurrently here (no serial copy of the BLAS): "
                         "the batch-parallel kernel is not used, nothing to measure")

    X, y = matrix.make_data(cell)
    net = matrix.fastnn_network(cell)
    runners = []
    original_init, rule = fused.EpochRunner.__init__, threads.batch_parallel_threads

    def init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        runners.append(self)
    ways = {"serial": (1, 1, _THREAD), "serial, 2-thread GEMMs": (2, 1, _THREAD), "2 threads": (2, 2, _THREAD),
            "2 blocks, 1 thread": (2, 2, _NotStarted)}
    steps = len(X) // cell.batch
    times = {w: [] for w in ways}
    clocks = {w: [] for w in ways}
    fused.EpochRunner.__init__ = init
    try:
        for epoch in range(epochs + 1):
            for way, (n, blocks, thread) in ways.items():
                fnn.set_num_threads(n)
                threads.batch_parallel_threads = lambda widths, rows, samples, blocks=blocks: blocks
                fused.threading.Thread = thread
                seconds = net.fit(X, y, epochs=1, batch_size=cell.batch, verbose=0, seed=epoch)["time"][0]
                if epoch:             # the first round compiles
                    times[way].append(seconds / steps * 1e6)
                    clock = getattr(runners[-1], "clock", None)
                    if blocks > 1 and clock is not None:
                        clocks[way].append(clock / steps / hz * 1e6)
    finally:
        fused.EpochRunner.__init__, threads.batch_parallel_threads = original_init, rule
        fused.threading.Thread = _THREAD
    return {w: (statistics.median(times[w]), np.median(clocks[w], axis=0) if clocks[w] else None) for w in ways}


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.phases", description=__doc__.splitlines()[0])
    p.add_argument("--cells", default="small,tabular,mnist128,mnist1024")
    p.add_argument("--epochs", type=int, default=3, help="timed epochs per way (after one that compiles)")
    args = p.parse_args(argv)
    hz = _tsc_hz()
    print(f"cycle counter: {hz / 1e9:.2f} GHz\n")
    print("| cell | way | µs/step | per thread: waiting, phase 0, phase 1, phase 2 (µs/step) |")
    print("|---|---|---|---|")
    for name in args.cells.split(","):
        for way, (us, clock) in measure(matrix.get(name), args.epochs, hz).items():
            detail = "" if clock is None else "; ".join(
                f"thread {t}: " + ", ".join(f"{v:.1f}" for v in row) for t, row in enumerate(clock))
            print(f"| {name} | {way} | {us:.1f} | {detail} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
