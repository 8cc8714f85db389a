"""What the ranks of a distributed fit must share beyond the weights (issue 19, the second MPI red team's
defects 1 and 3): the shuffling stream (sample orders and Dropout keys), broadcast from rank 0 at the start
and compared every epoch, and the state after the last epoch's callbacks and after on_train_end (compared
once more: no fit returns different weights on different ranks). The old code trained silently on mixed
permutations (a rank whose network was fit before, or loaded on rank 0 alone) and returned different weights
when a callback changed them in the last epoch.

Every test runs `mpiexec -n K` (a hang fails through subprocess.run's timeout); skipped without MPI.
"""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tests.test_distributed import MPIEXEC, needs_mpi

TIMEOUT = 120

WORKER = textwrap.dedent('''
    import json, os, sys
    import numpy as np
    import fastnn as fnn
    from mpi4py import MPI
    from fastnn.callbacks import EarlyStopping
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    case, out = sys.argv[1], sys.argv[2]
    one = rank == 1
    rng = np.random.default_rng(1)
    X = rng.standard_normal((203, 5)); y = rng.integers(0, 3, 203)
    B, EPOCHS = 16, 3

    def make():
        layers = [fnn.FullyConnected(5, 12, dtype=np.float64), fnn.TanH()]
        if "dropout" in case:
            layers.append(fnn.Dropout(0.3))
        layers.append(fnn.FullyConnected(12, 3, dtype=np.float64))
        return fnn.NeuralNetwork(layers, optimizer=fnn.SGD(lr=0.1, momentum=0.9), seed=0)

    def prefit(net):
        net.fit(X, y, epochs=1, batch_size=32, seed=7, verbose=0)

    kw = dict(epochs=EPOCHS, seed=7, verbose=0, fused=False if case.endswith("-pl") else "auto")
    path = os.path.join(os.path.dirname(out), "saved.safetensors")
    if case.startswith("load-r0"):
        if rank == 0:
            saved = make(); prefit(saved); saved.save(path)
        comm.Barrier()
    net = make()
    if case.startswith("prefit-one") and one:
        prefit(net)
    if case.startswith("prefit-zero") and rank == 0:
        prefit(net)
    if case.startswith("load-r0") and rank == 0:
        net = fnn.load(path)

    class Change:                      # a callback that changes a weight on rank 1 only, at some point
        def __init__(self, when):
            self.when = when

        def on_epoch_end(self, epoch, history):
            if self.when == "last" and one and epoch == EPOCHS:
                net.layers[0].weights[0, 0] += 1.0
            return self.when == "stop" and epoch == 2

        def on_train_end(self, net_):
            if self.when in ("stop", "train-end") and one:
                net.layers[0].weights[0, 0] += 1.0

    if case.startswith("cb-last"):
        kw["callbacks"] = [Change("last")]
    elif case.startswith("cb-stop"):
        kw["callbacks"] = [Change("stop")]
    elif case.startswith("cb-train-end"):
        kw["callbacks"] = [Change("train-end")]
    elif case == "cw-order":           # equal class_weight dicts in another key order: the same setting
        kw["class_weight"] = {2: 1.0, 1: 2.0, 0: 1.0} if one else {0: 1.0, 1: 2, np.int64(2): 1.0}
    elif case.startswith("early-stopping"):       # restores the best weights on every rank alike: no error
        kw["callbacks"] = [EarlyStopping(monitor="loss", patience=1, min_delta=10.0)]
    try:
        net.fit(X, y, batch_size=B, distributed=True, **kw)
        ref = make()
        if case.startswith("prefit-zero"):
            prefit(ref)
        if case.startswith("load-r0"):
            ref = fnn.load(path)
        kw.pop("fused")
        if "callbacks" in kw and not case.startswith("early-stopping"):
            kw.pop("callbacks")
        elif "callbacks" in kw:
            kw["callbacks"] = [EarlyStopping(monitor="loss", patience=1, min_delta=10.0)]
        ref.fit(X, y, batch_size=B * size, **kw)
        result = {"ok": True, "diff": float(np.max(np.abs(net._flat_params - ref._flat_params))),
                  "w": float(np.abs(net._flat_params).sum())}
    except BaseException as exc:
        result = {"error": type(exc).__name__, "message": str(exc)}
    with open(f"{out}.rank{rank}", "w") as f:
        json.dump(result, f)
''')


def _launch(tmp_path, case, k=2):
    (tmp_path / "worker.py").write_text(WORKER)
    environ = dict(os.environ, NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    proc = subprocess.run([MPIEXEC, "-n", str(k), sys.executable, str(tmp_path / "worker.py"), case,
                           str(tmp_path / "r")], capture_output=True, text=True, timeout=TIMEOUT, env=environ,
                          stdin=subprocess.DEVNULL)
    results = [json.loads((tmp_path / f"r.rank{r}").read_text()) if (tmp_path / f"r.rank{r}").exists() else None
               for r in range(k)]
    return proc, results


@needs_mpi
@pytest.mark.parametrize("case, k", [
    ("prefit-one", 2), ("prefit-one-dropout", 2), ("prefit-one-pl", 2), ("prefit-zero", 3),
    ("load-r0", 2), ("load-r0-dropout", 3), ("early-stopping", 2), ("cw-order", 2)])
def test_every_rank_trains_on_rank_0s_shuffling_stream(tmp_path, case, k):
    """The result equals one process with rank 0's network (its shuffling stream included) and the global
    batch, on every rank, in float64: 1e-10 (the module's equivalence tolerance, tests/test_distributed.py)."""
    proc, results = _launch(tmp_path, case, k)
    for r, res in enumerate(results):
        assert res is not None and res.get("ok"), (r, results, proc.stderr[-2000:])
        assert res["diff"] < 1e-10, (r, results)
    assert len({res["w"] for res in results}) == 1, results


@needs_mpi
@pytest.mark.parametrize("case, k, where", [
    ("cb-last", 2, "the end of training (after the last epoch's callbacks)"),
    ("cb-last-pl", 3, "the end of training (after the last epoch's callbacks)"),
    ("cb-stop", 2, "the end of training (after on_train_end)"),
    ("cb-train-end", 2, "the end of training (after on_train_end)")])
def test_weights_changed_on_one_rank_after_the_last_agreement_stop_every_rank(tmp_path, case, k, where):
    """A callback that changes a weight on rank 1 in the last epoch (or when it stops the fit, or in
    on_train_end): the same ValueError on every rank, naming the point and the checksum (the old code
    returned different weights on each rank, silently)."""
    proc, results = _launch(tmp_path, case, k)
    assert results[0] is not None and all(res == results[0] for res in results), (results, proc.stderr[-2000:])
    assert results[0].get("error") == "ValueError", results[0]
    message = results[0]["message"]
    assert f"stopped on every rank at {where}: the ranks differ in weights and optimizer state (checksum)" \
        in message, message


def test_the_start_up_mismatch_message_fits_every_way_of_running_a_fit():
    pytest.importorskip("mpi4py")
    from fastnn.engines.distributed import _check_agreement
    with pytest.raises(ValueError) as info:
        _check_agreement([{"epochs": 3}, {"epochs": 4}])
    message = str(info.value)
    assert "epochs (rank 0: 3; rank 1: 4)" in message
    assert "net.fit(..., distributed=...)" in message and "fastnn train --distributed" in message


def test_info_describes_a_distributed_checkpoints_global_batch_and_threads_per_rank():
    from fastnn.cli.info import _describe_checkpoint
    state = {"epoch": 4, "settings": {"batch_size": 64, "path": "distributed fused"}, "threads": 1}
    text = _describe_checkpoint(state)
    assert "global batch 64 (ranks x --batch-size)" in text and "written with 1 thread per rank" in text, text
    assert "batch 2 ranks x 32 = 64 global" in _describe_checkpoint(dict(state, ranks=2))
    one = _describe_checkpoint({"epoch": 1, "settings": {"batch_size": 32, "path": "fused"}, "threads": 4})
    assert "batch 32" in one and "written with 4 threads" in one and "per rank" not in one, one


@needs_mpi
def test_a_start_up_error_on_rank_1_comes_without_rank_0s_header_lines(tmp_path):
    from tests.test_distributed_cli import _run
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 4)).astype(np.float32)
    np.savez(tmp_path / "ok.npz", X=X, y=(X[:, 0] > 0).astype(np.int64))
    proc, codes = _run(tmp_path, [["--data", "ok.npz", "--epochs", "2"], ["--data", "nope.npz", "--epochs", "2"]])
    assert codes == [2, 2], proc.stderr
    assert "nope.npz" in proc.stderr
    assert "network " not in proc.stdout and "data " not in proc.stdout, proc.stdout


@pytest.mark.parametrize("a, b", [("--save", "--checkpoint"), ("--save", "--plot"), ("--checkpoint", "--plot")])
def test_cli_refuses_one_file_for_two_outputs(tmp_path, capsys, a, b):
    from fastnn.cli import main
    path = str(tmp_path / "same.png")
    code = main(["train", "--data", "moons", "--epochs", "1", "-q", a, path, b, path])
    assert code == 2
    assert "name the same file" in capsys.readouterr().err
    assert not os.path.exists(path)
