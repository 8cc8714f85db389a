"""Helpers shared by the asv benchmark modules.

* ``matrix``: benchmarks/matrix.py (the cells of issue 3), loaded by file path because asv imports this
  directory under the package name ``benchmarks``.
* ``THREADS``: the thread counts benchmarks are parameterised by: 1 and all cores (deduplicated).
* ``set_threads(n)``: fastnn.set_num_threads (Numba and BLAS together).
* ``require(module, name)``: a kernel by name, or NotImplementedError (asv then skips the benchmark) when a
  kernel has been renamed or removed, so a refactor shows up as skipped benchmarks, not a broken suite.
* ``build_net(cell)``: the cell's network (float32, ReLU, softmax CE, the cell's optimizer: SGD lr=0.01, or
  Adam with torch's defaults on ``tabular``; matrix.fastnn_optimizer).
"""
import importlib.util
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))


def _load(name, filename):
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, os.path.join(os.path.dirname(_HERE), filename))
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


matrix = _load("_fastnn_bench_matrix", "matrix.py")


def _cores():
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        import numba
        n = min(n, numba.config.NUMBA_NUM_THREADS)
    except ImportError:
        pass
    return max(1, n)


CORES = _cores()
THREADS = sorted({1, CORES})


def set_threads(n):
    """fastnn.set_num_threads(n); NotImplementedError (asv: skipped) in an old commit that lacks it."""
    import fastnn
    require(fastnn, "set_num_threads")(int(n))


def require(module, name):
    fn = getattr(module, name, None)
    if fn is None:
        raise NotImplementedError(f"{module.__name__}.{name} does not exist in this version")
    return fn


def build_net(cell, seed=0):
    import fastnn as fnn
    layers = []
    for k, (n_in, n_out) in enumerate(cell.shapes):
        layers.append(fnn.FullyConnected(n_in, n_out, dtype=matrix.DTYPE))
        if k < len(cell.shapes) - 1:
            layers.append(fnn.ReLU())
    return fnn.NeuralNetwork(layers, loss=fnn.SoftmaxCrossEntropy(), optimizer=matrix.fastnn_optimizer(cell),
                             seed=seed)


def rss_mib():
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return float("nan")
