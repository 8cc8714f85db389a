"""The distributed engine's fused step (fastnn.engines.distributed.FusedDistributedEpoch) under `mpiexec -n 2`:
K = 2 ranks with local batch b give one process with the global batch 2b, the same seed and order, to 1e-10
in float64 — for every optimizer and its variants (weight decay, momentum, Nesterov, AdamW, scikit-learn's
penalty and epsilon), Dropout, sample and class weights, a schedule and a callback, two loss heads; and the
per-layer step (fused=False on both sides) with sample and class weights.

One launch runs every case (WORKER, below, with this module's networks, data and arguments) and saves rank 0's
weights and history per case; each parametrized test then fits one process in the pytest process and compares. N = 193
rows with a global batch of 32: the last global batch has one row, so rank 1 has none in it. Skipped, with
the reason shown by `pytest -ra`, without mpi4py or mpiexec.
"""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastnn as fnn
from fastnn.engines import fused
from tests.test_distributed import MPIEXEC, needs_mpi

TIMEOUT = 600           # one launch compiles the step kernel of each (loss, optimizer) it meets
K, B, N, EPOCHS = 2, 16, 193, 3

CASES = {     # name -> its optimizer (an expression: optimizer()); data, network and fit_args() build the rest
    "sgd": "fnn.SGD(lr=0.1)",
    "momentum": "fnn.SGD(lr=0.1, momentum=0.9)",
    "nesterov-decay": "fnn.SGD(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3)",
    "sgd-decay": "fnn.SGD(lr=0.1, weight_decay=1e-2)",
    "adam": "fnn.Adam(lr=0.01)",
    "adam-decay": "fnn.Adam(lr=0.01, weight_decay=1e-2)",
    "adamw": "fnn.AdamW(lr=0.01)",
    "adam-sklearn": "sklearn_adam()",
    "sgd-sklearn-alpha": "sklearn_sgd()",
    "dropout": "fnn.SGD(lr=0.1, momentum=0.9)",
    "sample-weight": "fnn.Adam(lr=0.01)",
    "class-weight": "fnn.SGD(lr=0.1, momentum=0.9)",
    "schedule-callback": "fnn.Adam(lr=0.01)",
    "l2-regression": "fnn.Adam(lr=0.01)",
    "per-layer-weights": "fnn.Adam(lr=0.01)",        # fused=False on both sides: the per-layer step, weighted
}

def sklearn_adam():          # scikit-learn's penalty and epsilon placement (the estimators' variant)
    opt = fnn.Adam(lr=0.01)
    opt._sklearn_alpha, opt._sklearn_eps = 1e-3, True
    return opt


def sklearn_sgd():
    opt = fnn.SGD(lr=0.1, momentum=0.9)
    opt._sklearn_alpha = 1e-2
    return opt


def optimizer(case):
    return eval(CASES[case])         # the table's expressions, in this module's names (fnn, sklearn_*)


def data(case):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((N, 5))
    if case == "l2-regression":
        return X, rng.standard_normal((N, 3))
    return X, rng.integers(0, 3, N)


def network(case, seed):
    layers = [fnn.FullyConnected(5, 12, dtype=np.float64), fnn.TanH()]
    if case == "dropout":
        layers.append(fnn.Dropout(0.3))
    layers.append(fnn.FullyConnected(12, 3, dtype=np.float64))
    loss = fnn.L2Loss() if case == "l2-regression" else None
    return fnn.NeuralNetwork(layers, loss=loss, optimizer=optimizer(case), seed=seed)


def fit_args(case, X):
    kw = dict(epochs=EPOCHS, seed=7, verbose=0)
    if case == "per-layer-weights":
        kw["fused"] = False
        kw["class_weight"] = "balanced"
    if case in ("sample-weight", "per-layer-weights"):
        kw["sample_weight"] = np.random.default_rng(2).uniform(0.0, 2.0, len(X))
    if case == "class-weight":
        kw["class_weight"] = {0: 0.5, 1: 2.0, 2: 1.0}
    if case == "schedule-callback":
        kw["lr_schedule"] = fnn.schedules.ExponentialLR(0.5)
        kw["callbacks"] = [fnn.callbacks.EarlyStopping(monitor="loss", patience=1, min_delta=10.0)]
    return kw


# every rank builds the cases with this module's functions (rank 1 from other initial weights: rank 0's are
# broadcast); rank 0 saves its weights, step count and history per case
WORKER = textwrap.dedent('''
    import json, sys
    sys.path.insert(0, sys.argv[3])
    from mpi4py import MPI
    from tests.test_distributed_fused import B, CASES, data, fit_args, network
    rank = MPI.COMM_WORLD.Get_rank()
    results = {}
    for case in CASES:
        X, y = data(case)
        net = network(case, 0 if rank == 0 else 99)
        history = net.fit(X, y, batch_size=B, distributed=True, **fit_args(case, X))
        results[case] = {"params": net._flat_params.tolist(), "steps": net.optimizer.steps,
                         "history": {k: v for k, v in history.items() if k != "time"}}
    if rank == 0:
        with open(sys.argv[1], "w") as f:
            json.dump(results, f)
''')


@pytest.fixture(scope="module")
def distributed_results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fused")
    (tmp / "worker.py").write_text(WORKER)
    out = tmp / "results.json"
    env = dict(os.environ, NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([MPIEXEC, "-n", str(K), sys.executable, str(tmp / "worker.py"), str(out), "-", root],
                          capture_output=True, text=True, timeout=TIMEOUT, env=env, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(out.read_text())


@needs_mpi
@pytest.mark.parametrize("case", sorted(CASES))
def test_two_ranks_on_the_fused_step_equal_one_process_with_the_global_batch(distributed_results, case):
    X, y = data(case)
    net = network(case, 0)
    assert fused.supports(net)[0]            # (per-layer-weights: fused=False on both sides)
    history = net.fit(X, y, batch_size=K * B, **fit_args(case, X))   # one process: the fused engine
    got = distributed_results[case]
    np.testing.assert_allclose(got["params"], net._flat_params, rtol=0, atol=1e-10)
    assert got["steps"] == net.optimizer.steps
    for key, values in history.items():
        if key != "time":
            np.testing.assert_allclose(got["history"][key], values, rtol=1e-10, atol=1e-12, err_msg=key)
    if case == "schedule-callback":       # the callback stopped both at the same epoch
        assert len(history["loss"]) == 2
