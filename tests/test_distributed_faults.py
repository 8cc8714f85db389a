"""A fault on ONE rank of a distributed fit (issue 19, "no hang, ever"; the cases of the MPI red team's
report): a `distributed=` value, a schedule or a callback that differs, user code that raises
KeyboardInterrupt or SystemExit, a signal during the set-up, data that differ outside the sampled rows, a
path that is not a file. Each must end every rank with the same error (or end the job with one line), never
hang and never train on silently: the old code hung (subprocess timeout), aborted, or returned different
weights on each rank.

Every test runs `mpiexec -n 2` (a hang fails through subprocess.run's timeout); skipped without MPI.
"""
import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from fastnn.training import COMPILE_LINE
from tests.test_distributed import MPIEXEC, needs_mpi

TIMEOUT = 90

WORKER = textwrap.dedent('''
    import json, os, signal, sys
    import numpy as np
    import fastnn as fnn
    from mpi4py import MPI
    rank = MPI.COMM_WORLD.Get_rank()
    case, out = sys.argv[1], sys.argv[2]
    one = rank == 1
    rng = np.random.default_rng(1)
    X = rng.standard_normal((203, 5)); y = rng.integers(0, 3, 203)
    opt = fnn.Adam(lr=0.01) if case.startswith("adam") else fnn.SGD(lr=0.1, momentum=0.9)
    kw = dict(epochs=3, seed=7, verbose=0, batch_size=16)
    dist = True
    net = None

    def on_epoch_end(change):
        class Callback:
            def on_epoch_end(self, epoch, history):
                if one and epoch == 1:
                    change(history)
                return False
        kw["callbacks"] = [Callback()]

    def raise_(exc):
        raise exc

    def schedule_raising(exc):
        def rate(epoch):
            if one and epoch == 2:
                raise exc
            return 0.1
        return rate

    if case == "bad-distributed":
        dist = "yes" if one else True
    elif case == "numpy-bool":
        dist = np.bool_(True)
    elif case == "distributed-false-on-one":
        dist = not one
    elif case == "comm-self-on-one":
        dist = MPI.COMM_SELF if one else True
    elif case == "function-schedule-on-one":
        kw["lr_schedule"] = (lambda e: 0.05) if one else None
    elif case == "function-schedules-differ":
        kw["lr_schedule"] = (lambda e: 0.05) if one else (lambda e: 0.1)
    elif case == "callback-rate":
        on_epoch_end(lambda h: setattr(net.optimizer, "lr", 0.5))
    elif case == "callback-momentum":
        on_epoch_end(lambda h: setattr(net.optimizer, "momentum", 0.5))
    elif case == "adam-callback-betas":
        on_epoch_end(lambda h: setattr(net.optimizer, "beta1", 0.8))
    elif case == "adam-callback-weight-decay":
        on_epoch_end(lambda h: setattr(net.optimizer, "weight_decay", 0.01))
    elif case == "callback-weights":
        on_epoch_end(lambda h: net.layers[0].weights.__setitem__((0, 0), 1.0))
    elif case == "callback-history":
        on_epoch_end(lambda h: h["loss"].pop())
    elif case == "callback-loss":
        on_epoch_end(lambda h: setattr(net, "loss", fnn.L2Loss()))
    elif case == "callback-keyboard-interrupt":
        on_epoch_end(lambda h: raise_(KeyboardInterrupt()))
    elif case == "callback-system-exit":
        on_epoch_end(lambda h: raise_(SystemExit(3)))
    elif case == "schedule-keyboard-interrupt":
        kw["lr_schedule"] = schedule_raising(KeyboardInterrupt())
    elif case == "validation-contents":
        kw["validation_data"] = (X[:20], (y[:20] + one) % 3)
    elif case == "unsampled-row":
        X = X.copy(); X[1] += one          # (a row outside the 1024 spread rows of a 5000-row set)
        X = np.tile(X, (25, 1))[:5000]; y = np.tile(y, 25)[:5000]
    elif case == "sigint-in-set-up":       # Ctrl-C on rank 1 while the fit checks its data
        from fastnn.engines import distributed as engine
        prepare = engine.MPIRun.prepare

        def interrupted(self, *args):
            if one:
                os.kill(os.getpid(), signal.SIGINT)
            return prepare(self, *args)
        engine.MPIRun.prepare = interrupted
    elif case.startswith("file-"):
        folder = os.path.dirname(out)
        Xn = X.copy(); Xn[150, 1] = np.nan
        if rank == 0:
            np.savez(os.path.join(folder, "nan150.npz"), X=Xn, y=y)
            os.mkfifo(os.path.join(folder, "fifo.npz"))
        MPI.COMM_WORLD.Barrier()
        X, y = {"file-directory": folder, "file-fifo-on-one": os.path.join(folder, "fifo.npz" if one else "nan150.npz"),
                "file-nan-row-150": os.path.join(folder, "nan150.npz")}[case], None
    net = fnn.NeuralNetwork([fnn.FullyConnected(5, 12, dtype=np.float64), fnn.TanH(),
                             fnn.FullyConnected(12, 3, dtype=np.float64)], optimizer=opt, seed=0)
    try:
        if case == "setting-assigned-on-one":       # a setting assigned after the trainer was built, on rank 1
            trainer = fnn.Trainer(net, validation_data=(X[:20], y[:20]), distributed=True, **kw)
            if one:
                trainer.validation_split = 0.2          # refused by fit (with validation_data), on rank 1 alone
            history = trainer.fit(X, y)
        else:
            history = net.fit(X, y, distributed=dist, **kw)
        result = {"ok": True, "weights": float(np.abs(net._flat_params).sum())}
    except BaseException as exc:
        result = {"error": type(exc).__name__, "message": str(exc)}
    with open(f"{out}.rank{rank}", "w") as f:
        json.dump(result, f)
    if one and case in ("distributed-false-on-one", "comm-self-on-one"):
        MPI.COMM_WORLD.recv(source=0)       # rank 1 goes on with its own MPI work (until the job ends)
''')


def _launch(tmp_path, case, **env):
    (tmp_path / "worker.py").write_text(WORKER)
    environ = dict(os.environ, NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", **env)
    proc = subprocess.run([MPIEXEC, "-n", "2", sys.executable, str(tmp_path / "worker.py"), case,
                           str(tmp_path / "r")], capture_output=True, text=True, timeout=TIMEOUT, env=environ,
                          stdin=subprocess.DEVNULL)
    results = [json.loads((tmp_path / f"r.rank{r}").read_text()) if (tmp_path / f"r.rank{r}").exists() else None
               for r in range(2)]
    return proc, results


def _same_error(proc, results, error, *words):
    assert results[0] is not None and results[0] == results[1], (results, proc.stderr[-2000:])
    assert results[0].get("error") == error, results[0]
    for w in words:
        assert w in results[0]["message"], results[0]["message"]


CASES = {      # case -> (the error every rank raises, words of its message)
    # the value refused on one rank (it used to raise alone there: the other waited forever)
    "bad-distributed": ("TypeError", "distributed training cannot start: rank 1: TypeError: distributed must be"),
    # a function schedule on one rank: its collectives crashed MPI ("Message truncated")
    "function-schedule-on-one": ("ValueError", "disagree on lr_schedule (rank 0: null; rank 1: "),
    # what one rank changes per epoch (the ranks used to end with different weights, silently)
    "function-schedules-differ": ("ValueError", "start of epoch 1", "learning rate (rank 0: 0.1; rank 1: 0.05)"),
    "callback-rate": ("ValueError", "start of epoch 2", "learning rate (rank 0: 0.1; rank 1: 0.5)"),
    "callback-momentum": ("ValueError", "start of epoch 2", '"momentum": 0.5'),
    "adam-callback-betas": ("ValueError", "start of epoch 2", '"beta1": 0.8'),
    "adam-callback-weight-decay": ("ValueError", "start of epoch 2", '"weight_decay": 0.01'),
    "callback-weights": ("ValueError", "start of epoch 2", "weights and optimizer state (checksum) (rank 0: "),
    # the loop's checks of what a callback did, and user code leaving with KeyboardInterrupt / SystemExit:
    # they used to end rank 1 alone (MPI_Abort, exit 1)
    "callback-history": ("DistributedError", "rank 1: ValueError: a callback changed history['loss'] at epoch 1"),
    "callback-loss": ("DistributedError", "rank 1: ValueError: a callback changed net.loss"),
    "callback-keyboard-interrupt": ("DistributedError", "at on_epoch_end: rank 1: KeyboardInterrupt"),
    "callback-system-exit": ("DistributedError", "at on_epoch_end: rank 1: SystemExit: 3"),
    "schedule-keyboard-interrupt": ("DistributedError", "start of epoch 2: rank 1: KeyboardInterrupt"),
    # contents compared (validation rows: only shapes were; arrays: only 1024 spread rows were)
    "validation-contents": ("ValueError", "disagree on validation_data contents (rank 0: "),
    "unsampled-row": ("ValueError", "disagree on data contents (rank 0: "),
    # what a path is, and where a NaN is in X (not in the checked chunk)
    "file-directory": ("ValueError", "every rank: ValueError: X: data file ", ": is a directory, not a regular file"),
    "file-fifo-on-one": ("ValueError", "rank 1: ValueError: X: data file ", "is a FIFO"),
    "file-nan-row-150": ("ValueError", "rank 1: ValueError: X contains 1 NaN or infinite value(s), the first at "
                                       "index (150, 1)"),
    # a fit's own checks of its settings, on one rank: inside the start-up agreement (it raised alone there)
    "setting-assigned-on-one": ("ValueError", "distributed training cannot start: rank 1: ValueError: give "
                                              "validation_data or validation_split, not both"),
    # Ctrl-C on one rank during a library fit's set-up: every rank stops before the first batch (it used to
    # raise KeyboardInterrupt there alone: MPI_Abort)
    "sigint-in-set-up": ("TrainingInterrupted", "training interrupted at the start of epoch 1"),
}


@needs_mpi
@pytest.mark.parametrize("case", sorted(CASES))
def test_a_fault_on_one_rank_gives_every_rank_the_same_error(tmp_path, case):
    proc, results = _launch(tmp_path, case)
    _same_error(proc, results, *CASES[case])


@needs_mpi
def test_distributed_as_a_numpy_bool_trains(tmp_path):
    """np.bool_(True) is True (it crashed: 'numpy.bool' object has no attribute 'allgather')."""
    proc, results = _launch(tmp_path, "numpy-bool")
    assert results[0] is not None and results[0].get("ok") and results[0] == results[1], (results, proc.stderr)


@needs_mpi
@pytest.mark.parametrize("case", ["distributed-false-on-one", "comm-self-on-one"])
def test_a_rank_that_never_joins_ends_the_job_with_one_line(tmp_path, case):
    """Rank 1 trains alone (distributed=False, or COMM_SELF): rank 0 can never learn of it through a
    collective; its start-up wait (FASTNN_DISTRIBUTED_TIMEOUT, here 2 s) ends the job with one line naming
    the likely causes instead of waiting forever."""
    proc, results = _launch(tmp_path, case, FASTNN_DISTRIBUTED_TIMEOUT="2")
    assert proc.returncode != 0
    assert results[0] is None, results
    assert "rank 0: waited 2 s at the trainer's construction" in proc.stderr, proc.stderr
    assert "a rank that called fit without distributed=True" in proc.stderr


# -- fastnn train --distributed ----------------------------------------------------------------------------
CLI_RANK_MAIN = textwrap.dedent('''
    import os, signal, sys
    out = sys.argv[1]
    rank = os.environ.get("PMI_RANK")
    point = os.environ.get("INTERRUPT_AT")
    if rank == "1" and point:          # Ctrl-C on rank 1 at a point of the start-up, before the first collectives
        import fastnn.cli.train as train
        import fastnn.distributed as fd
        if point == "threads_per_rank":
            original = fd.threads_per_rank

            def interrupted(comm=None):
                os.kill(os.getpid(), getattr(signal, os.environ.get("INTERRUPT_SIGNAL", "SIGINT")))
                return original(comm)
            fd.threads_per_rank = interrupted
        else:                          # "start": as the command starts
            original = train.launcher_world

            def interrupted(environ=None):
                os.kill(os.getpid(), signal.SIGINT)
                return original(environ)
            train.launcher_world = interrupted
    from fastnn.cli import main
    code = main(sys.argv[2:])
    with open(f"{out}.code{rank}", "w") as f:
        f.write(str(code))
    sys.exit(code)
''')


def _cli(tmp_path, rank_args, **env):
    from tests.test_distributed_cli import _env
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 4)).astype(np.float32)
    np.savez(tmp_path / "ok.npz", X=X, y=(X[:, 0] > 0).astype(np.int64))
    (tmp_path / "rank_main.py").write_text(CLI_RANK_MAIN)
    cmd = [MPIEXEC]
    for i, args in enumerate(rank_args):
        cmd += ([":"] if i else []) + ["-n", "1", sys.executable, str(tmp_path / "rank_main.py"), str(tmp_path / "out"),
                                       "train", "--distributed", "--threads", "1", "--data", "ok.npz", "--epochs",
                                       "2", "-q", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, env=_env(**env),
                          stdin=subprocess.DEVNULL, cwd=tmp_path)
    codes = [int((tmp_path / f"out.code{r}").read_text()) if (tmp_path / f"out.code{r}").exists() else None
             for r in range(len(rank_args))]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("fastnn") and line != COMPILE_LINE]
    return proc, codes, lines


@needs_mpi
@pytest.mark.parametrize("point, sig, code, line", [
    ("start", "SIGINT", 130, "fastnn: rank 1: interrupted"),
    ("threads_per_rank", "SIGINT", 130, "fastnn: rank 1: interrupted"),
    ("threads_per_rank", "SIGTERM", 143, "fastnn: rank 1: terminated (SIGTERM)")])
def test_cli_a_signal_to_one_rank_during_the_start_up_stops_every_rank_with_one_line(tmp_path, point, sig, code,
                                                                                      line):
    """The start-up's first collectives ran before any agreement: a Ctrl-C there ended rank 1 alone and
    the job hung. The signal is held from the command's first line and agreed on at the set-up."""
    proc, codes, lines = _cli(tmp_path, [[]] * 2, INTERRUPT_AT=point, INTERRUPT_SIGNAL=sig)
    assert codes == [code, code], proc.stderr
    assert lines == [line], proc.stderr


@needs_mpi
@pytest.mark.parametrize("option", ["--save", "--plot"])
def test_cli_save_or_plot_given_to_one_rank_only_is_refused(tmp_path, option):
    """Only rank 0 writes: a --save (--plot) given to rank 1 alone was silently ignored (exit 0, no file)."""
    proc, codes, lines = _cli(tmp_path, [[], [option, "m.out"]])
    assert codes == [2, 2], proc.stderr
    assert len(lines) == 1 and "the ranks were given different options: " in lines[0], proc.stderr
    assert f"{option} (rank 0: None; rank 1: m.out)" in lines[0], lines
    assert not (tmp_path / "m.out").exists()
