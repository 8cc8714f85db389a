"""Compiling ahead: fill Numba's on-disk kernel cache with the kernels of the fits a new user runs first, so
that their first fit loads its kernels (a fraction of a second) instead of compiling them (seconds).

``fastnn compile`` (fastnn/cli/compile.py) runs ``compile_units(units(...), jobs)``: each unit is a tiny
fit of one configuration — a network kind (``KINDS``), a dtype and a number of hidden layers — through the
public calls a user makes (fit, then predict / evaluate or the estimator's predict_proba / score), so the
cache receives exactly the kernels those calls use, and nothing is special-cased. In the worker processes
``fastnn.engines.fused.COMPILE_ALSO`` makes each fit also compile the batch-parallel variant of its
kernel, which a fit on a larger data set runs when it has more than one thread. The units are shared
round-robin between ``jobs`` worker processes (Numba compiles one function at a time per process).

Kernels do not depend on the layer widths or the data's size, only on the dtype, the number of layers, the
activations, the loss head and the optimizer: a unit covers every network of its shape. The cache is the
one every fit uses (the package's ``__pycache__`` directories or NUMBA_CACHE_DIR; kernels/_jit.py), valid
on this machine's CPU for this version of fastnn's kernels. A cached kernel gives the same numbers as a
freshly compiled one (DESIGN §4: a result never depends on whether the cache was warm).
"""
import os
import queue
import subprocess
import sys
import threading
import time
import warnings
from collections import namedtuple

import numpy as np

#: what a unit fits: kind -> (description, the first calls of a user of it)
KINDS = {
    "sgd": "NeuralNetwork, ReLU, softmax cross-entropy, SGD with momentum (the README's example)",
    "adam": "NeuralNetwork, ReLU, softmax cross-entropy, Adam (fastnn train's default)",
    "classifier": "MLPClassifier with scikit-learn's defaults (ReLU, Adam, L2 penalty)",
    "regressor": "MLPRegressor with scikit-learn's defaults (ReLU, Adam, squared error)",
}
DTYPES = ("float32", "float64")
DEPTHS = (1, 2)

Unit = namedtuple("Unit", "kind dtype depth")


def units(kinds=tuple(KINDS), dtypes=DTYPES, depths=DEPTHS):
    """Every (kind, dtype, hidden layers) unit of the given lists, checked, in a stable order, each once."""
    for name, values, allowed in (("kind", kinds, tuple(KINDS)), ("dtype", dtypes, DTYPES)):
        unknown = [v for v in values if v not in allowed]
        if unknown:
            raise ValueError(f"unknown {name} {unknown[0]!r} (known: {', '.join(allowed)})")
    for depth in depths:
        if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or not 1 <= depth <= 8:
            raise ValueError(f"hidden layers must be whole numbers from 1 to 8, got {depth!r}")
    if not kinds or not dtypes or not depths:
        raise ValueError("nothing to compile: give at least one kind, dtype and number of hidden layers")
    # a value named twice names one configuration (compiled, counted and reported once)
    kinds, dtypes, depths = (list(dict.fromkeys(v)) for v in (kinds, dtypes, [int(n) for n in depths]))
    return [Unit(k, d, n) for k in kinds for d in dtypes for n in depths]


def describe(unit):
    layers = "1 hidden layer" if unit.depth == 1 else f"{unit.depth} hidden layers"
    return f"{unit.kind} {unit.dtype} {layers}"


def run_unit(unit):
    """Fit ``unit``'s configuration on tiny data and predict with it, compiling (or loading) its kernels."""
    import fastnn as fnn
    if unit.kind not in KINDS:
        raise ValueError(f"unknown kind {unit.kind!r} (known: {', '.join(KINDS)})")
    rng = np.random.default_rng(0)
    dtype = np.dtype(unit.dtype).type
    X = rng.standard_normal((48, 5)).astype(dtype)
    labels = np.arange(48) % 3
    hidden = (8,) * unit.depth
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # the estimators' ConvergenceWarning after two iterations
        if unit.kind in ("sgd", "adam"):
            layers, width = [], X.shape[1]
            for units_out in hidden:
                layers += [fnn.FullyConnected(width, units_out, dtype=dtype), fnn.ReLU()]
                width = units_out
            layers.append(fnn.FullyConnected(width, 3, dtype=dtype))
            optimizer = fnn.SGD(lr=0.05, momentum=0.9) if unit.kind == "sgd" else fnn.Adam()
            net = fnn.NeuralNetwork(layers, loss=fnn.SoftmaxCrossEntropy(), optimizer=optimizer, seed=0)
            net.fit(X, labels, epochs=1, batch_size=16, verbose=0)
            net.evaluate(X, labels)
            net.predict(X)
        elif unit.kind == "classifier":
            est = fnn.MLPClassifier(hidden_layer_sizes=hidden, max_iter=2, random_state=0, dtype=dtype)
            est.fit(X, labels)
            est.predict_proba(X)
            est.score(X, labels)
        else:
            est = fnn.MLPRegressor(hidden_layer_sizes=hidden, max_iter=2, random_state=0, dtype=dtype)
            est.fit(X, X[:, 0] - X[:, 1])
            est.score(X, X[:, 0] - X[:, 1])


#: CPU seconds of a unit's compile, serial and batch-parallel kernels (2-core Intel Xeon, 1 hidden layer,
#: float32: adam 13.0, its classifier after it 1.5, regressor 9.6, sgd 6.2): how the units are shared out
_COST = {"adam": 13.0, "classifier": 13.0, "regressor": 9.6, "sgd": 6.2}
#: kinds whose fits run the same kernels (the classifier's network is the adam kind's): one worker compiles
#: them, one after the other, so the second loads what the first compiled
_SHARED = {"classifier": "adam"}


def worker_shares(todo, jobs):
    """``todo`` cut into at most ``jobs`` lists, one per worker process: the units that share kernels (same
    dtype and depth, kinds in _SHARED) in one list, the lists balanced by their estimated compile time."""
    groups = {}
    for unit in todo:
        groups.setdefault((unit.dtype, unit.depth, _SHARED.get(unit.kind, unit.kind)), []).append(unit)
    costs = {key: max(_COST.get(u.kind, 10.0) for u in group) + 1.5 * (len(group) - 1) for key, group in groups.items()}
    shares = [[] for _ in range(max(1, min(int(jobs), len(groups))))]
    loads = [0.0] * len(shares)
    for key in sorted(groups, key=lambda k: -costs[k]):      # the longest first, each to the least loaded
        i = loads.index(min(loads))
        shares[i] += sorted(groups[key], key=lambda u: u.kind != _SHARED.get("classifier"))
        loads[i] += costs[key]
    return shares


def _worker(encoded):
    """The worker process: run its units (``kind:dtype:depth,...``), one line per unit on stdout."""
    from .engines import fused
    from .threads import max_threads
    if max_threads() > 1:
        fused.COMPILE_ALSO = (2,)
    parent = os.getppid()
    for text in encoded.split(","):
        if os.getppid() != parent:      # ``fastnn compile`` is gone (killed): nobody waits for the rest
            return
        kind, dtype, depth = text.split(":")
        unit = Unit(kind, dtype, int(depth))
        start = time.perf_counter()
        run_unit(unit)
        print(f"{text} {time.perf_counter() - start:.2f}", flush=True)


def compile_units(todo, jobs, report=None):
    """Run the units ``todo`` in ``jobs`` worker processes; ``report(unit, seconds)`` is called as each ends.
    Returns the failures: a list of (the units of a worker that failed, its exit code, its last stderr line).
    A KeyboardInterrupt (Ctrl-C; SIGTERM and SIGHUP raise one here too) ends the workers and is raised again."""
    from .signals import raising
    with raising():       # SIGTERM / SIGHUP as Ctrl-C: the workers are ended below, not left running
        return _compile_shares(worker_shares(todo, jobs), report)


def _compile_shares(shares, report):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    procs = []
    try:
        for share in shares:
            encoded = ",".join(f"{u.kind}:{u.dtype}:{u.depth}" for u in share)
            procs.append((share, subprocess.Popen(
                [sys.executable, "-c", f"from fastnn.precompile import _worker; _worker({encoded!r})"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)))
        # the readers only pass lines on; reports run here, in the calling thread, so that an exception in
        # one (a closed stdout) or a Ctrl-C ends the workers below
        events, failures = queue.Queue(), []

        def follow(share, proc):
            for line in proc.stdout:
                events.put((share, line, None))
            err = proc.stderr.read()
            events.put((share, err, proc.wait()))
        for pair in procs:
            threading.Thread(target=follow, args=pair, daemon=True).start()
        ended = 0
        while ended < len(procs):
            try:
                share, text, code = events.get(timeout=0.2)      # (a timeout lets Ctrl-C in)
            except queue.Empty:
                continue
            if code is None:
                fields = text.split()
                if len(fields) == 2 and report is not None:
                    kind, dtype, depth = fields[0].split(":")
                    report(Unit(kind, dtype, int(depth)), float(fields[1]))
                continue
            ended += 1
            if code != 0:
                failures.append((share, code, (text.strip().splitlines() or [""])[-1]))
        return failures
    finally:
        for _, proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for _, proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
