"""The start-up error of a distributed fit whose ranks differ names what differs (issue 19, "one clean error
naming the problem"): data of another dtype on one rank (float32 X where the others give float64: after the
conversion to the network's dtype only two content hashes differed), validation data likewise, and where two
networks, optimizers or schedules differ (the JSON of a 4-layer network is cut at 300 characters, and the
layer or loss that differs was cut off with it); a difference of the engine that follows from the
architecture or ``fused`` is not named a second time.

The message is built from the ranks' gathered settings (``_check_agreement``: tested directly), and one
``mpiexec -n 2`` launch checks the dtypes end to end (skipped without MPI)."""
import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.test_distributed import MPIEXEC, needs_mpi

TIMEOUT = 120


def _message(settings):
    pytest.importorskip("mpi4py", reason="MPI not installed: pip install -e '.[mpi]'")
    from fastnn.engines.distributed import _check_agreement
    with pytest.raises(ValueError) as info:
        _check_agreement(settings)
    return str(info.value)


def _arch(layers, loss="SoftmaxCrossEntropy"):
    return json.dumps({"layers": layers, "loss": [loss, {}]}, sort_keys=True)


def _fc(i, o, dtype="float64"):
    return ["FullyConnected", {"dtype": dtype, "in_features": i, "init": "he", "out_features": o}]


DEEP = [_fc(784, 512), ["ReLU", {}], _fc(512, 256), ["ReLU", {}], _fc(256, 128), ["ReLU", {}], _fc(128, 10)]


@pytest.mark.parametrize("other, where", [
    (_arch(DEEP[:-1] + [_fc(128, 11)]), 'layers[6][1].out_features: rank 0 10, rank 1 11'),
    (_arch(DEEP[:5] + [["TanH", {}]] + DEEP[6:]), 'layers[5][0]: rank 0 "ReLU", rank 1 "TanH"'),
    (_arch(DEEP, loss="L2Loss"), 'loss[0]: rank 0 "SoftmaxCrossEntropy", rank 1 "L2Loss"'),
    (_arch(DEEP + [["SoftMax", {}]]), 'layers[7]: rank 0 (none), rank 1 ["SoftMax", {}]'),
], ids=["out_features", "activation", "loss", "one-layer-more"])
def test_a_long_architecture_that_differs_is_named_where_it_differs(other, where):
    mine = _arch(DEEP)
    assert len(mine) > 300                  # (the whole value is cut: the difference would be lost)
    message = _message([{"architecture": mine, "engine": "the fused step"},
                        {"architecture": other, "engine": "the fused step" if "L2" in other else "per-layer"}])
    assert "architecture (rank 0: " in message
    assert f"first different at {where})" in message, message
    assert "engine" not in message          # it follows from the architecture


def test_optimizer_and_schedule_settings_are_named_where_they_differ():
    adam = '["Adam", {"beta1": 0.9, "beta2": 0.999, "eps": %s, "lr": 0.01, "weight_decay": 0.0}]'
    message = _message([{"optimizer": adam % "1e-08", "lr_schedule": '{"config": {"gamma": 0.1}, "type": "StepLR"}'},
                        {"optimizer": adam % "1e-07", "lr_schedule": '{"config": {"gamma": 0.5}, "type": "StepLR"}'}])
    assert "first different at [1].eps: rank 0 1e-08, rank 1 1e-07" in message, message
    assert "first different at config.gamma: rank 0 0.1, rank 1 0.5" in message, message
    whole = _message([{"lr_schedule": "null"}, {"lr_schedule": '{"config": {}, "type": "StepLR"}'}])
    assert "lr_schedule (rank 0: null; rank 1: " in whole and "first different" not in whole


def test_an_engine_that_follows_from_fused_is_named_once():
    message = _message([{"fused": "'auto'", "engine": "the fused step"}, {"fused": "False", "engine": "per-layer"}])
    assert "fused (rank 0: 'auto'; rank 1: False)" in message and "engine" not in message
    alone = _message([{"fused": "'auto'", "engine": "the fused step"}, {"fused": "'auto'", "engine": "per-layer"}])
    assert "engine (rank 0: the fused step; rank 1: per-layer)" in alone


WORKER = textwrap.dedent('''
    import json, sys
    import numpy as np
    import fastnn as fnn
    from mpi4py import MPI
    rank = MPI.COMM_WORLD.Get_rank()
    case, out = sys.argv[1], sys.argv[2]
    rng = np.random.default_rng(1)
    X = rng.standard_normal((203, 5)); y = rng.integers(0, 3, 203)
    kw = dict(epochs=1, seed=7, verbose=0, batch_size=16)
    if case == "x-float32-on-one" and rank == 1:
        X = X.astype(np.float32)
    if case == "validation-float32-on-one":
        kw["validation_data"] = (X[:20].astype(np.float32) if rank == 1 else X[:20], y[:20])
    if case == "y-strings-on-one" and rank == 1:
        y = np.array(["a", "b", "c"])[y]
    if case == "x-objects":
        X = X.astype(object)
    if case == "y-int32-on-one" and rank == 1:
        y = y.astype(np.int32)           # the same class ids, in another dtype
    net = fnn.NeuralNetwork([fnn.FullyConnected(5, 12, dtype=np.float64), fnn.TanH(),
                             fnn.FullyConnected(12, 3, dtype=np.float64)], optimizer=fnn.SGD(lr=0.1), seed=0)
    try:
        net.fit(X, y, distributed=True, **kw)
        result = {"ok": True}
    except Exception as exc:
        result = {"error": type(exc).__name__, "message": str(exc)}
    with open(f"{out}.rank{rank}", "w") as f:
        json.dump(result, f)
''')


def _launch(tmp_path, case):
    """WORKER's ``case`` under ``mpiexec -n 2``, one thread per rank: (each rank's JSON result, the process)."""
    worker = tmp_path / "worker.py"
    if not worker.exists():
        worker.write_text(WORKER)
    env = dict(os.environ, NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    proc = subprocess.run([MPIEXEC, "-n", "2", sys.executable, str(worker), case, str(tmp_path / case)],
                          capture_output=True, text=True, timeout=TIMEOUT, env=env, stdin=subprocess.DEVNULL)
    return [json.loads((tmp_path / f"{case}.rank{r}").read_text()) for r in range(2)], proc


@needs_mpi
def test_data_of_another_dtype_on_one_rank_is_named_by_its_dtype(tmp_path):
    expected = {"x-float32-on-one": "data as given (rank 0: X float64, y int64; rank 1: X float32, y int64)",
                "validation-float32-on-one": "validation_data as given (rank 0: X float64, y int64; rank 1: "
                                             "X float32, y int64)",
                "y-int32-on-one": "int32"}
    for case, words in expected.items():
        results, proc = _launch(tmp_path, case)
        assert results[0] == results[1], (case, results, proc.stderr[-2000:])
        assert results[0].get("error") == "ValueError", (case, results[0])
        message = results[0]["message"]
        assert "distributed training cannot start: the ranks disagree on " in message and words in message, message
        assert message.count("int32") <= 1 and message.count("float32") <= 1, message      # named once
        assert "contents" not in message, message          # (the hashes follow from the dtype)


@needs_mpi
def test_data_of_a_wrong_type_is_a_type_error_on_every_rank(tmp_path):
    """Strings or objects where numbers belong raise TypeError on one process; a distributed fit raised the
    agreed error as a ValueError (ValueError stays for values refused, and for a mix of both kinds)."""
    for case, words in {"y-strings-on-one": "rank 1: TypeError: y ", "x-objects": "every rank: TypeError: X "}.items():
        results, proc = _launch(tmp_path, case)
        assert results[0] == results[1], (case, results, proc.stderr[-2000:])
        assert results[0].get("error") == "TypeError", (case, results[0])
        assert "distributed training cannot start: " + words in results[0]["message"], results[0]["message"]


@pytest.mark.parametrize("texts, kind", [
    (["TypeError: X holds strings"], TypeError),
    (["TypeError: X holds strings", "TypeError: y holds objects"], TypeError),
    (["NotAnIntegerError: epochs must be a positive integer, got str '3'"], "both"),
    (["NotAnIntegerError: epochs must be ...", "TypeError: X holds strings"], "both"),
    (["TypeError: X holds strings", "ValueError: X holds NaN"], ValueError),
    (["ZeroDivisionError"], ValueError),
])
def test_the_agreed_error_has_the_class_one_process_would_raise(texts, kind):
    pytest.importorskip("mpi4py", reason="MPI not installed: pip install -e '.[mpi]'")
    from fastnn.engines.distributed import agreed_kind
    got = agreed_kind(dict(enumerate(texts)))
    if kind == "both":
        assert issubclass(got, TypeError) and issubclass(got, ValueError)
    else:
        assert got is kind
