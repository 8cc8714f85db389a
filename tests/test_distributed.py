"""fastnn.distributed: data-parallel training on MPI, run for real under `mpiexec -n 2`.

Each test launches `mpiexec -n 2 python worker.py ...` in a subprocess (the worker is written to tmp_path)
and compares what rank 0 saved with a single-process Trainer run with batch K*b and the same data order.
Skipped, with the reason shown by `pytest -ra`, only when mpi4py or mpiexec are not installed
(`pip install -e '.[mpi]'` installs both: mpi4py and the MPICH runtime from PyPI).
"""
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import fastnn as fnn


def _find_mpiexec():
    here = os.path.dirname(sys.executable)       # the mpich wheel installs mpiexec next to python
    return shutil.which("mpiexec", path=here) or shutil.which("mpiexec")


def _have_mpi4py():
    import importlib.util
    return importlib.util.find_spec("mpi4py") is not None


MPIEXEC = _find_mpiexec()
needs_mpi = pytest.mark.skipif(
    not _have_mpi4py() or MPIEXEC is None,
    reason="MPI not installed: distributed tests need mpi4py and mpiexec (pip install -e '.[mpi]')")

TIMEOUT = 60
K, B = 2, 16            # ranks, local batch
N = 203                 # not a multiple of K*B: the last global batch (11 rows) splits 6 + 5

WORKER = textwrap.dedent('''
    import json, sys
    import numpy as np
    import fastnn as fnn
    from fastnn.distributed import DistributedTrainer, DistributedError
    from fastnn.errors import TrainingInterrupted

    mode, out = sys.argv[1], sys.argv[2]
    data = np.load(sys.argv[3])
    X, y = data["X"], data["y"]
    rank_seed = None
    from mpi4py import MPI
    rank = MPI.COMM_WORLD.Get_rank()

    def network(opt, seed, act=fnn.TanH):
        return fnn.NeuralNetwork([fnn.FullyConnected(X.shape[1], 12, dtype=np.float64), act(),
                                  fnn.FullyConnected(12, 3, dtype=np.float64)], optimizer=opt, seed=seed)

    # rank 1 starts from other weights: the broadcast from rank 0 must make them equal
    seed = 0 if rank == 0 else 99
    if mode == "sgd":
        net = network(fnn.SGD(lr=0.1, momentum=0.9), seed)
        tr = DistributedTrainer(net, batch_size={B}, epochs=3, seed=7, verbose=0,
                                validation_data=(X[:50], y[:50]))
        source = (X, y)
    elif mode == "dropout":
        net = fnn.NeuralNetwork([fnn.FullyConnected(X.shape[1], 12, dtype=np.float64), fnn.TanH(), fnn.Dropout(0.3),
                                 fnn.FullyConnected(12, 3, dtype=np.float64)],
                                optimizer=fnn.SGD(lr=0.1, momentum=0.9), seed=seed)
        tr = DistributedTrainer(net, batch_size={B}, epochs=3, seed=7, verbose=0)
        source = (X, y)
    elif mode == "adam-npz":
        net = network(fnn.Adam(lr=0.01), seed)
        tr = DistributedTrainer(net, batch_size={B}, epochs=3, seed=7, verbose=0)
        source = (sys.argv[3], None)        # memory-mapped .npz, each rank checks only its shard
    elif mode in ("checkpoint", "interrupt"):
        net = network(fnn.SGD(lr=0.1, momentum=0.9), seed)
        epochs = int(sys.argv[5])
        tr = DistributedTrainer(net, batch_size={B}, epochs=epochs, seed=7, verbose=0, checkpoint=sys.argv[4])
        source = (X, y)
        if mode == "interrupt" and rank == 1:        # Ctrl-C on rank 1 in the middle of epoch 2
            import os, signal
            from fastnn.kernels import epoch_distributed
            make = epoch_distributed.step_kernel

            calls = [0]

            def interrupting_kernel(*kinds):         # asked for once an epoch
                kernel = make(*kinds)

                def call(*args):
                    calls[0] += 1
                    if calls[0] == 12:               # 8 calls an epoch (7 global batches + the last update)
                        os.kill(os.getpid(), signal.SIGINT)
                    return kernel(*args)
                return call
            epoch_distributed.step_kernel = interrupting_kernel
    elif mode in ("raise", "raise-fused", "raise-fused-last", "setup-fused", "bad-shard", "diverge", "diverge-layer"):
        net = network(fnn.SGD(lr=1e300 if mode.startswith("diverge") else 0.1), seed,
                      fnn.ReLU if mode.startswith("diverge") else fnn.TanH)
        # "raise" patches the per-layer path's forward: that engine (fused=False); the others the fused step
        tr = DistributedTrainer(net, batch_size={B}, epochs=2, seed=7, verbose=0,
                                fused=mode not in ("raise", "diverge-layer") and "auto")
        source = (sys.argv[3], None) if mode == "bad-shard" else (X, y)
        if mode.startswith("raise-fused") and rank == 1:    # the fused step's kernel raises at its 3rd call, or
            failing_call = 8 if mode == "raise-fused-last" else 3      # at the epoch's last (the last update)
            from fastnn.kernels import epoch_distributed
            make = epoch_distributed.step_kernel

            def failing_kernel(*kinds):
                kernel = make(*kinds)
                calls = [0]

                def call(*args):
                    calls[0] += 1
                    if calls[0] in (failing_call, failing_call + 1):     # twice running: the second call
                        raise RuntimeError("simulated failure on rank 1")   # must still meet the others
                    return kernel(*args)
                return call
            epoch_distributed.step_kernel = failing_kernel
        if mode == "setup-fused" and rank == 1:     # the fused engine's per-epoch set-up raises
            from fastnn.engines import distributed as engine

            def failing_setup(self, *args):
                raise RuntimeError("simulated failure on rank 1")
            engine.FusedDistributedEpoch._epoch_setup = failing_setup
        if mode == "raise" and rank == 1:
            calls = [0]
            forward = net.train_forward
            def failing(x):
                calls[0] += 1
                if calls[0] == 3:
                    raise RuntimeError("simulated failure on rank 1")
                return forward(x)
            net.train_forward = failing
    elif mode == "abort":           # a bug outside the agreed points: comm.Abort ends every rank
        net = network(fnn.SGD(lr=0.1), seed)
        tr = DistributedTrainer(net, batch_size={B}, epochs=2, seed=7, verbose=0)
        source = (X, y)
        if rank == 1:
            def broken(run, net):
                raise RuntimeError("a bug outside the agreed points")
            import fastnn.distributed
            fastnn.distributed.MPIRun.start = broken
    elif mode == "mismatch":        # rank 1 (or rank 0 for "*-rank0") differs in one setting
        what = sys.argv[4]
        odd = rank == (0 if what.endswith("-rank0") else 1)
        kw = dict(batch_size={B}, epochs=2, seed=7, verbose=0)
        opt = fnn.SGD(lr=0.1)
        if odd:
            if what == "epochs":
                kw["epochs"] = 3
            elif what == "batch_size":
                kw["batch_size"] = {B} + 1
            elif what == "seed":
                kw["seed"] = 8
            elif what.startswith("seed-none"):
                kw["seed"] = None
            elif what == "shuffle":
                kw["shuffle"] = False
            elif what.startswith("checkpoint"):
                kw["checkpoint"] = sys.argv[5]
            elif what.startswith("validation"):
                kw["validation_data"] = (X[:50], y[:50])
            elif what == "optimizer":
                opt = fnn.SGD(lr=0.2)
            elif what == "fused":
                kw["fused"] = True
            elif what == "lr_schedule":
                kw["lr_schedule"] = fnn.schedules.StepLR(2)
            elif what == "callbacks":
                kw["callbacks"] = [fnn.callbacks.EarlyStopping(monitor="loss", patience=3)]
            elif what == "class_weight":
                kw["class_weight"] = "balanced"
            elif what == "vsplit":
                kw["validation_split"] = 0.25
            elif what == "data":
                X = X.copy()
                X[-1, 0] += 1.0        # the same shapes, other contents
            elif what == "bad-batch_size":
                kw["batch_size"] = 0
            elif what == "bad-callback":
                kw["callbacks"] = [fnn.callbacks.EarlyStopping]
        net = network(opt, seed)
        try:
            tr = DistributedTrainer(net, **kw)
        except (ValueError, TypeError) as exc:      # raised on every rank (agreed when built)
            tr, built_error = None, exc
        source = (X, y)
    elif mode == "user-code":       # user code raises on rank 1 only: every rank stops with the same error
        where = sys.argv[4]
        net = network(fnn.SGD(lr=0.1), seed)
        odd = rank == 1

        def boom(*args):
            raise RuntimeError(f"user code failed in {{where}}")

        class Hook:
            def on_train_begin(self, net):
                if odd and where == "on_train_begin":
                    boom()

            def on_epoch_end(self, epoch, history):
                if odd and where == "on_epoch_end" and epoch == 2:
                    boom()
                return odd and where == "stop-one-rank" and epoch == 2

            def on_train_end(self, net):
                if odd and where == "on_train_end":
                    boom()

        class Schedule:
            def __call__(self, epoch):
                if odd and where == "schedule" and epoch == 2:
                    boom()
                return 0.1
        kw = dict(batch_size={B}, epochs=3, seed=7, verbose=0, callbacks=[Hook()])
        if where == "schedule":
            kw["lr_schedule"] = Schedule()
        if where == "validation":
            kw["validation_data"] = (X[:50], y[:50])
        if where == "forward-first":        # it patches the per-layer path's forward: that engine
            kw["fused"] = False
        if where.startswith("sample_order"):
            calls = []

            def order(n):
                calls.append(n)
                if odd and len(calls) == 2:
                    if where == "sample_order":
                        boom()
                    return np.arange(n)[::-1]       # "sample_order-differs": another order on rank 1
                return np.arange(n)
            kw["sample_order"] = order
        tr = DistributedTrainer(net, **kw)
        if odd and where in ("forward-first", "validation"):
            forward = net.train_forward
            infer = net.predict_proba if hasattr(net, "predict_proba") else None

            def failing(x, *key):
                if where == "forward-first":
                    raise RuntimeError("forward failed on rank 1")
                return forward(x, *key)
            net.train_forward = failing
            if where == "validation":
                real = net.evaluate

                def bad_evaluate(*a, **k):
                    raise RuntimeError("validation failed on rank 1")
                net.evaluate = bad_evaluate
        source = (X, y)
    try:
        if tr is None:
            raise built_error
        history = tr.fit(*source)
    except (DistributedError, fnn.TrainingDivergedError, TrainingInterrupted, ValueError, TypeError) as exc:
        where = [getattr(exc, "epoch", None), getattr(exc, "batch", None)]
        with open(f"{{out}}.rank{{rank}}", "w") as f:
            json.dump({{"rank": rank, "error": type(exc).__name__, "message": str(exc), "where": where}}, f)
        sys.exit(3)
    if rank == 0:
        np.save(out, net._flat_params)
        with open(out + ".json", "w") as f:
            json.dump({{k: v for k, v in history.items() if k != "time"}}, f)
    with open(f"{{out}}.rank{{rank}}", "w") as f:
        json.dump({{"rank": rank, "ok": True}}, f)
''').format(B=B)


def _data(tmp_path, bad_rows=None):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((N, 5))
    y = rng.integers(0, 3, N)
    if bad_rows is not None:
        X[bad_rows] = np.nan
    path = tmp_path / "data.npz"
    np.savez(path, X=X, y=y)                 # uncompressed: memory-mapped by the workers
    return X, y, str(path)


def _launch(tmp_path, mode, out, *args, timeout=TIMEOUT):
    """Run the worker on K ranks; (process, the ranks' result records, seconds). A hang (a rank waiting
    forever in a collective) fails the calling test through subprocess.run's timeout, not a time assertion."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = dict(os.environ, NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    cmd = [MPIEXEC, "-n", str(K), sys.executable, str(script), mode, str(out), *map(str, args)]
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                          stdin=subprocess.DEVNULL)
    lines = [json.loads(open(f"{out}.rank{r}").read()) for r in range(K) if os.path.exists(f"{out}.rank{r}")]
    return proc, lines, time.monotonic() - start


def _single_process(X, y, opt, epochs=3, validation=True):
    net = fnn.NeuralNetwork([fnn.FullyConnected(5, 12, dtype=np.float64), fnn.TanH(),
                             fnn.FullyConnected(12, 3, dtype=np.float64)], optimizer=opt, seed=0)
    history = net.fit(X, y, epochs=epochs, batch_size=K * B, seed=7, verbose=0, fused=False,
                      validation_data=(X[:50], y[:50]) if validation else None)
    return net, history


@needs_mpi
def test_two_ranks_equal_one_process_with_the_global_batch(tmp_path):
    X, y, path = _data(tmp_path)
    proc, lines, _ = _launch(tmp_path, "sgd", tmp_path / "w.npy", path)
    assert proc.returncode == 0, proc.stderr
    assert sorted(line["rank"] for line in lines) == [0, 1]
    net, history = _single_process(X, y, fnn.SGD(lr=0.1, momentum=0.9))
    w = np.load(tmp_path / "w.npy")
    np.testing.assert_allclose(w, net._flat_params, rtol=0, atol=1e-10)
    dist = json.loads((tmp_path / "w.npy.json").read_text())
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(dist[key], history[key], rtol=1e-10, atol=1e-12, err_msg=key)
    np.testing.assert_allclose(dist["grad_norm"], history["grad_norm"], rtol=1e-8)


@needs_mpi
def test_two_ranks_with_dropout_draw_the_masks_of_one_process(tmp_path):
    """Each rank masks its rows of the global batch with their positions in it: the same masks, so the same
    run, as one process with the global batch."""
    X, y, path = _data(tmp_path)
    proc, lines, _ = _launch(tmp_path, "dropout", tmp_path / "w.npy", path)
    assert proc.returncode == 0, proc.stderr
    net = fnn.NeuralNetwork([fnn.FullyConnected(5, 12, dtype=np.float64), fnn.TanH(), fnn.Dropout(0.3),
                             fnn.FullyConnected(12, 3, dtype=np.float64)],
                            optimizer=fnn.SGD(lr=0.1, momentum=0.9), seed=0)
    net.fit(X, y, epochs=3, batch_size=K * B, seed=7, verbose=0, fused=False)
    np.testing.assert_allclose(np.load(tmp_path / "w.npy"), net._flat_params, rtol=0, atol=1e-10)
    no_dropout, _ = _single_process(X, y, fnn.SGD(lr=0.1, momentum=0.9), validation=False)
    assert not np.allclose(net._flat_params, no_dropout._flat_params, rtol=0, atol=1e-6)


@needs_mpi
def test_memory_mapped_npz_with_adam_equals_one_process(tmp_path):
    X, y, path = _data(tmp_path)
    proc, lines, _ = _launch(tmp_path, "adam-npz", tmp_path / "w.npy", path)
    assert proc.returncode == 0, proc.stderr
    net, history = _single_process(X, y, fnn.Adam(lr=0.01), validation=False)
    np.testing.assert_allclose(np.load(tmp_path / "w.npy"), net._flat_params, rtol=0, atol=1e-10)


@needs_mpi
def test_checkpoint_written_by_rank_0_resumes(tmp_path):
    X, y, path = _data(tmp_path)
    ckpt = tmp_path / "run.ckpt"
    proc, _, _ = _launch(tmp_path, "checkpoint", tmp_path / "w2.npy", path, ckpt, 2)
    assert proc.returncode == 0, proc.stderr
    assert ckpt.exists()
    proc, _, _ = _launch(tmp_path, "checkpoint", tmp_path / "w3.npy", path, ckpt, 3)   # resumes: epoch 3
    assert proc.returncode == 0, proc.stderr
    net, history = _single_process(X, y, fnn.SGD(lr=0.1, momentum=0.9), validation=False)
    np.testing.assert_allclose(np.load(tmp_path / "w3.npy"), net._flat_params, rtol=0, atol=1e-10)
    dist = json.loads((tmp_path / "w3.npy.json").read_text())
    assert len(dist["loss"]) == 3


@needs_mpi
def test_ctrl_c_on_one_rank_mid_epoch_stops_both_at_one_batch_and_the_resume_equals_one_process(tmp_path):
    """The fused step: rank 1's stop travels in its gradient (NaN); both ranks stop before the same batch of
    epoch 2 and write a mid-epoch checkpoint; resuming it gives one process's uninterrupted run."""
    X, y, path = _data(tmp_path)
    ckpt = tmp_path / "run.ckpt"
    proc, lines, _ = _launch(tmp_path, "interrupt", tmp_path / "w1.npy", path, ckpt, 3)
    assert proc.returncode != 0 and ckpt.exists(), proc.stdout + proc.stderr
    assert sorted(line["rank"] for line in lines) == [0, 1], proc.stdout + proc.stderr
    assert {line["error"] for line in lines} == {"TrainingInterrupted"}
    assert len({line["message"] for line in lines}) == 1 and "epoch 2" in lines[0]["message"], lines
    proc, _, _ = _launch(tmp_path, "checkpoint", tmp_path / "w3.npy", path, ckpt, 3)     # resumes mid-epoch
    assert proc.returncode == 0, proc.stderr
    net, history = _single_process(X, y, fnn.SGD(lr=0.1, momentum=0.9), validation=False)
    np.testing.assert_allclose(np.load(tmp_path / "w3.npy"), net._flat_params, rtol=0, atol=1e-10)
    dist = json.loads((tmp_path / "w3.npy.json").read_text())
    for key in ("loss", "accuracy"):
        np.testing.assert_allclose(dist[key], history[key], rtol=1e-10, atol=1e-12, err_msg=key)


@needs_mpi
@pytest.mark.parametrize("mode, where", [("raise", [1, 3]), ("raise-fused", [1, 3]), ("raise-fused-last", [None, None]),
                                         ("setup-fused", [None, None])])
def test_a_failing_rank_stops_every_rank_without_hanging(tmp_path, mode, where):
    """An exception on rank 1 at its third step (the per-layer path's forward; the fused step's kernel) or
    in the fused engine's set-up of the epoch: every rank raises the same DistributedError, at that batch."""
    X, y, path = _data(tmp_path)
    proc, lines, elapsed = _launch(tmp_path, mode, tmp_path / "w.npy", path)
    assert proc.returncode != 0
    assert sorted(line["rank"] for line in lines) == [0, 1], proc.stdout + proc.stderr
    for line in lines:                      # every rank: the same error, naming rank 1 and the step
        assert line["error"] == "DistributedError"
        assert "rank 1: RuntimeError: simulated failure on rank 1" in line["message"]
        assert line["where"] == where
    assert not (tmp_path / "w.npy").exists()


@needs_mpi
def test_an_error_outside_the_agreed_points_aborts_every_rank(tmp_path):
    X, y, path = _data(tmp_path)
    proc, lines, elapsed = _launch(tmp_path, "abort", tmp_path / "w.npy", path)
    assert proc.returncode != 0
    assert "rank 1: RuntimeError: a bug outside the agreed points; aborting all ranks" in proc.stderr
    assert not (tmp_path / "w.npy").exists()


@needs_mpi
def test_a_bad_shard_stops_every_rank_before_training(tmp_path):
    X, y, path = _data(tmp_path, bad_rows=[150])   # in rank 1's shard (rows 102..202)
    proc, lines, elapsed = _launch(tmp_path, "bad-shard", tmp_path / "w.npy", path)
    assert proc.returncode != 0
    assert sorted(line["rank"] for line in lines) == [0, 1], proc.stdout + proc.stderr
    for line in lines:
        assert line["error"] == "ValueError"
        assert "rank 1:" in line["message"] and "NaN" in line["message"] and "rank 0:" not in line["message"]


@needs_mpi
@pytest.mark.parametrize("mode", ["diverge", "diverge-layer"])
def test_divergence_is_raised_on_every_rank_at_the_same_step(tmp_path, mode):
    X, y, path = _data(tmp_path)
    proc, lines, elapsed = _launch(tmp_path, mode, tmp_path / "w.npy", path)
    assert proc.returncode != 0
    assert sorted(line["rank"] for line in lines) == [0, 1], proc.stdout + proc.stderr
    assert {line["error"] for line in lines} == {"TrainingDivergedError"}
    assert len({tuple(line["where"]) for line in lines}) == 1


MISMATCHES = {        # setting given differently on one rank -> the setting named in the error
    "epochs": "epochs (rank 0: 2; rank 1: 3)",
    "batch_size": f"batch_size (rank 0: {B}; rank 1: {B + 1})",
    "seed": "seed (rank 0: 7; rank 1: 8)",
    "seed-none-rank0": "seed (rank 0: None; rank 1: 7)",
    "shuffle": "shuffle (rank 0: True; rank 1: False)",
    "checkpoint": "checkpoint (rank 0: not given; rank 1: given, checkpoint_every=None)",
    "checkpoint-rank0": "checkpoint (rank 0: given, checkpoint_every=None; rank 1: not given)",
    "validation": "validation_data (rank 0: not given; rank 1: X (50, 5) float64, y (50,) int64)",
    "validation-rank0": "validation_data (rank 0: X (50, 5) float64, y (50,) int64; rank 1: not given)",
    "optimizer": "optimizer (rank 0: ",
    "fused": "fused (rank 0: 'auto'; rank 1: True)",
    "data": "data contents (rank 0: ",        # arrays: every row hashed (files: 1024 spread rows)
    "lr_schedule": "lr_schedule (rank 0: null; rank 1: ",
    "callbacks": "callbacks (rank 0: none; rank 1: EarlyStopping{'monitor': 'loss'",
    "class_weight": "class_weight (rank 0: None; rank 1: 'balanced')",
}


@needs_mpi
@pytest.mark.parametrize("what", sorted(MISMATCHES))
def test_ranks_with_different_settings_all_stop_naming_the_setting(tmp_path, what):
    """Before issue 13 these hung until killed, crashed inside MPICH's Allreduce, or trained on
    different permutations on each rank; now one collective at the start raises on every rank."""
    X, y, path = _data(tmp_path)
    ckpt = tmp_path / "run.ckpt"
    proc, lines, elapsed = _launch(tmp_path, "mismatch", tmp_path / "w.npy", path, what, ckpt)
    assert proc.returncode != 0
    assert sorted(line["rank"] for line in lines) == [0, 1], proc.stdout + proc.stderr
    messages = {line["message"] for line in lines}
    assert len(messages) == 1, messages                 # the same error on every rank
    for line in lines:
        assert line["error"] == "ValueError"
        assert "distributed training cannot start: the ranks disagree on " + MISMATCHES[what] in line["message"]
        assert line["message"].count("disagree") == 1 and " and on " not in line["message"]   # only that one
    assert not ckpt.exists() and not (tmp_path / "w.npy").exists()


@needs_mpi
@pytest.mark.parametrize("what, error, words", [
    ("bad-batch_size", "ValueError", "rank 1: ValueError: batch_size must be"),
    ("bad-callback", "TypeError", "rank 1: TypeError: callbacks[0] is the class EarlyStopping"),
])
def test_a_setting_refused_on_one_rank_stops_every_rank(tmp_path, what, error, words):
    """An argument only one rank refuses (when the trainer is built): every rank raises the same error
    naming that rank (the other rank used to wait for it in the first collective)."""
    X, y, path = _data(tmp_path)
    proc, lines, _ = _launch(tmp_path, "mismatch", tmp_path / "w.npy", path, what, tmp_path / "c.ckpt")
    assert proc.returncode != 0
    assert sorted(line["rank"] for line in lines) == [0, 1], proc.stdout + proc.stderr
    assert len({line["message"] for line in lines}) == 1
    for line in lines:
        assert line["error"] == error and "distributed training cannot start: " + words in line["message"]


@needs_mpi
def test_a_split_given_on_one_rank_stops_every_rank_naming_it(tmp_path):
    """validation_split on rank 1 only (supported since the fused engine): the ranks disagree on it (and on
    the data it leaves, and the validation set it makes); the same error on every rank names it."""
    X, y, path = _data(tmp_path)
    proc, lines, _ = _launch(tmp_path, "mismatch", tmp_path / "w.npy", path, "vsplit", tmp_path / "c.ckpt")
    assert proc.returncode != 0
    assert sorted(line["rank"] for line in lines) == [0, 1], proc.stdout + proc.stderr
    assert len({line["message"] for line in lines}) == 1
    for line in lines:
        assert line["error"] == "ValueError" and "validation_split (rank 0: 0.0; rank 1: 0.25)" in line["message"]


@needs_mpi
def test_fused_true_on_every_rank_runs_the_fused_step(tmp_path):
    """fused=True, refused while the distributed engine was the per-layer path, trains with the fused step."""
    X, y, path = _data(tmp_path)
    script = WORKER.replace('kw = dict(batch_size={B}, epochs=2, seed=7, verbose=0)'.format(B=B),
                            'kw = dict(batch_size={B}, epochs=2, seed=7, verbose=0, fused=True)'.format(B=B))
    assert script != WORKER
    (tmp_path / "fused_worker.py").write_text(script)
    env = dict(os.environ, NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    out = tmp_path / "w.npy"
    proc = subprocess.run([MPIEXEC, "-n", str(K), sys.executable, str(tmp_path / "fused_worker.py"), "mismatch",
                           str(out), path, "none", str(tmp_path / "c.ckpt")], capture_output=True, text=True,
                          timeout=TIMEOUT, env=env, stdin=subprocess.DEVNULL)
    lines = [json.loads(open(f"{out}.rank{r}").read()) for r in range(K) if os.path.exists(f"{out}.rank{r}")]
    assert proc.returncode == 0 and len(lines) == K and all(line.get("ok") for line in lines), proc.stderr
    net, _ = _single_process(X, y, fnn.SGD(lr=0.1), epochs=2, validation=False)
    np.testing.assert_allclose(np.load(out), net._flat_params, rtol=0, atol=1e-10)


@needs_mpi
@pytest.mark.parametrize("where", ["on_train_begin", "on_epoch_end", "on_train_end", "schedule", "forward-first",
                                   "validation", "sample_order"])
def test_user_code_failing_on_one_rank_stops_every_rank_with_one_error(tmp_path, where):
    X, y, path = _data(tmp_path)
    proc, lines, _ = _launch(tmp_path, "user-code", tmp_path / "w.npy", path, where)
    assert proc.returncode != 0
    assert sorted(line["rank"] for line in lines) == [0, 1], proc.stdout + proc.stderr
    assert len({line["message"] for line in lines}) == 1
    for line in lines:
        assert line["error"] == "DistributedError" and "rank 1: RuntimeError: " in line["message"]


@needs_mpi
def test_sample_orders_that_differ_between_ranks_stop_every_rank_with_one_error(tmp_path):
    """Each rank takes its rows of every global batch from its own order: orders that differ would train on
    some samples twice and others never, silently. They are compared every epoch."""
    X, y, path = _data(tmp_path)
    proc, lines, _ = _launch(tmp_path, "user-code", tmp_path / "w.npy", path, "sample_order-differs")
    assert proc.returncode != 0
    assert sorted(line["rank"] for line in lines) == [0, 1], proc.stdout + proc.stderr
    assert len({line["message"] for line in lines}) == 1
    for line in lines:
        assert line["error"] == "ValueError" and "sample_order" in line["message"]
        assert "rank 0: order A; rank 1: order B" in line["message"]


@needs_mpi
def test_a_callback_stopping_on_one_rank_stops_every_rank_at_the_same_epoch(tmp_path):
    X, y, path = _data(tmp_path)
    proc, lines, _ = _launch(tmp_path, "user-code", tmp_path / "w.npy", path, "stop-one-rank")
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads((tmp_path / "w.npy.json").read_text())["loss"]) == 2
    assert sorted(line["rank"] for line in lines) == [0, 1] and all(line["ok"] for line in lines)


@needs_mpi
def test_cli_train_distributed_equals_one_process_with_the_global_batch(tmp_path):
    env = dict(os.environ, NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    common = [sys.executable, "-m", "fastnn", "train", "--epochs", "2", "--optimizer", "sgd", "--threads", "1"]
    dist = subprocess.run([MPIEXEC, "-n", str(K), *common, "--distributed", "--batch-size", "32",
                           "--save", str(tmp_path / "d.safetensors")], capture_output=True, text=True,
                          timeout=TIMEOUT, env=env, stdin=subprocess.DEVNULL)
    assert dist.returncode == 0, dist.stderr
    assert dist.stdout.count("test accuracy") == 1          # rank 0 alone reports
    assert "batch 2 ranks x 32 = 64 global" in dist.stdout
    one = subprocess.run([*common, "--batch-size", "64", "--save", str(tmp_path / "s.safetensors")],
                         capture_output=True, text=True, timeout=TIMEOUT, env=env, stdin=subprocess.DEVNULL)
    assert one.returncode == 0, one.stderr
    a, b = fnn.load(tmp_path / "d.safetensors"), fnn.load(tmp_path / "s.safetensors")
    for p, q in zip(a.params, b.params):                   # float32: the sums run in another order
        np.testing.assert_allclose(p, q, rtol=1e-4, atol=1e-5)


def test_without_mpi4py_the_import_error_says_how_to_install():
    code = ("import sys; sys.modules['mpi4py'] = None\n"
            "try:\n    import fastnn.distributed\nexcept ImportError as e:\n    print(e)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=TIMEOUT)
    assert "distributed training needs MPI: pip install 'fastnn[mpi]'" in proc.stdout, proc.stderr


@needs_mpi
def test_shard_range_and_split_cover_every_row():
    # in a subprocess: importing mpi4py initialises MPI, which the pytest process should not do
    code = textwrap.dedent("""
        from fastnn.engines.shards import shard_range, split as _split
        for n in (0, 1, 7, 203):
            for size in (1, 2, 3, 8):
                ranges = [shard_range(n, r, size) for r in range(size)]
                assert ranges[0][0] == 0 and ranges[-1][1] == n
                assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
                sizes = _split(n, size)
                assert sum(sizes) == n and max(sizes) - min(sizes) <= 1
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=TIMEOUT,
                          stdin=subprocess.DEVNULL)
    assert proc.stdout.strip() == "ok", proc.stderr


@needs_mpi
def test_open_array_refuses_a_fifo_at_once(tmp_path):
    """A FIFO given as distributed data is refused with a ValueError, never opened (open() would block)."""
    fifo = tmp_path / "data.npy"
    os.mkfifo(fifo)
    code = ("import sys\nfrom fastnn.distributed import open_array\ntry:\n    open_array(sys.argv[1])\n"
            "except ValueError as exc:\n    print('refused:', exc)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(fifo)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "refused:" in proc.stdout and "FIFO" in proc.stdout, proc.stdout + proc.stderr
