"""`fastnn train --distributed` under `mpiexec -n 2`: the README's example as written, one error line and one
exit code for every fault on any rank, no hang (subprocess timeouts, never elapsed-time asserts), the ranks in
`fastnn info`, and one rank without a launcher.

Each rank runs RANK_MAIN: fastnn.cli.main with the rank's arguments, which records the rank's own exit code
(mpiexec reports one code for the job) and its pid, and marks its first finished training step (so that a
signal is sent mid-fit, not by a timer). Ranks get different arguments through mpiexec's MPMD syntax
(`mpiexec -n 1 A : -n 1 B`). MPI tests skip, with the reason, only without mpi4py or mpiexec.
"""
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from fastnn.training import COMPILE_LINE
from tests.test_distributed import MPIEXEC, needs_mpi

TIMEOUT = 120
LAUNCHER_VARS = ("PMI_RANK", "PMI_SIZE", "PMI_FD", "PMI_PORT", "PMI_ID", "OMPI_COMM_WORLD_SIZE",
                 "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_SIZE", "MV2_COMM_WORLD_RANK", "PMIX_RANK", "PMIX_SIZE",
                 "SLURM_STEP_ID", "SLURM_NTASKS", "SLURM_PROCID")

RANK_MAIN = textwrap.dedent('''
    import os, sys
    out = sys.argv[1]
    rank = os.environ.get("PMI_RANK", "x")
    with open(f"{out}.pid{rank}", "w") as f:
        f.write(str(os.getpid()))
    from fastnn.engines import distributed as engine
    from fastnn.kernels import epoch_distributed
    step = engine.DistributedEpoch.step
    make = epoch_distributed.step_kernel

    def started():                             # the first finished step: the rank is training
        if not os.path.exists(f"{out}.started{rank}"):
            open(f"{out}.started{rank}", "w").close()

    def marked(self, *args, **kwargs):         # the per-layer path's step
        result = step(self, *args, **kwargs)
        started()
        return result
    engine.DistributedEpoch.step = marked

    def marked_kernel(*kinds):                 # the fused step's kernel (its second call ends a step)
        kernel = make(*kinds)
        calls = [0]

        def call(*args):
            result = kernel(*args)
            calls[0] += 1
            if calls[0] == 2:
                started()
            return result
        return call
    epoch_distributed.step_kernel = marked_kernel
    if os.environ.get("INTERRUPT_AFTER_SETUP") == rank:      # Ctrl-C that arrived during the set-up collective
        from fastnn.cli import _common
        setup = _common.RankSync.setup

        def interrupted(self, *args, **kwargs):
            setup(self, *args, **kwargs)
            raise KeyboardInterrupt
        _common.RankSync.setup = interrupted
    from fastnn.cli import main
    code = main(sys.argv[2:])
    with open(f"{out}.code{rank}", "w") as f:
        f.write(str(code))
    sys.exit(code)
''')


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARS}
    env.update(NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", **extra)
    return env


def _cmd(tmp_path, rank_args):
    """mpiexec with one argument list per rank (MPMD: `-n 1 A : -n 1 B`)."""
    script = tmp_path / "rank_main.py"
    script.write_text(RANK_MAIN)
    cmd = [MPIEXEC]
    for i, args in enumerate(rank_args):
        cmd += ([":"] if i else []) + ["-n", "1", sys.executable, str(script), str(tmp_path / "out"), "train",
                                       "--distributed", "--threads", "1", *args]
    return cmd


def _codes(tmp_path, k=2):
    return [int((tmp_path / f"out.code{r}").read_text()) if (tmp_path / f"out.code{r}").exists() else None
            for r in range(k)]


def _run(tmp_path, rank_args):
    proc = subprocess.run(_cmd(tmp_path, rank_args), capture_output=True, text=True, timeout=TIMEOUT,
                          env=_env(), stdin=subprocess.DEVNULL, cwd=tmp_path)
    return proc, _codes(tmp_path, len(rank_args))


def _errors(stderr):
    return [line for line in stderr.splitlines() if line.startswith("fastnn: error:")]


@pytest.fixture
def data(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 4)).astype(np.float32)
    np.savez(tmp_path / "ok.npz", X=X, y=(X[:, 0] > 0).astype(np.int64))
    (tmp_path / "corrupt.npz").write_bytes(b"not a zip file")
    return "ok.npz"


QUICK = ["--epochs", "2", "-q"]


@needs_mpi
def test_the_readme_example_runs_as_written(tmp_path):
    """The commands of README.md's "Scaling out (MPI)" section, verbatim (only `python`, `mpiexec` and
    `fastnn` resolved to this environment's), in an empty directory."""
    readme = open(os.path.join(os.path.dirname(__file__), os.pardir, "README.md"), encoding="utf-8").read()
    section = readme.split("## Scaling out (MPI)", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```\n(.*?)```", section, re.S).group(1)
    lines = [line for line in block.splitlines() if line.strip()]
    assert any(line.startswith("mpiexec -n 2 fastnn train --distributed") for line in lines), lines
    fastnn = [sys.executable, "-m", "fastnn"]
    outputs = []
    for line in lines:
        words = shlex.split(line)
        if words[0] == "python":
            words = [sys.executable, *words[1:]]
        elif words[0] == "mpiexec":
            at = words.index("fastnn")
            words = [MPIEXEC, *words[1:at], *fastnn, *words[at + 1:]]
        elif words[0] == "fastnn":
            words = [*fastnn, *words[1:]]
        proc = subprocess.run(words, capture_output=True, text=True, timeout=TIMEOUT, env=_env(), cwd=tmp_path,
                              stdin=subprocess.DEVNULL)
        assert proc.returncode == 0, (line, proc.stdout, proc.stderr)
        assert "error" not in proc.stderr, (line, proc.stderr)
        outputs.append(proc.stdout)
    train, info = outputs[-2], outputs[-1]
    assert train.count("validation accuracy") == 1                       # rank 0 alone reports
    assert "batch 2 ranks x 512 = 1024 global" in train
    assert "batch 2 ranks x 512 = 1024 global" in info


MPMD = {    # rank 0's and rank 1's extra arguments -> the words of the one error line
    "missing file on rank 1": ([], ["--data", "missing.npz"], "rank 1: missing.npz: no such data file"),
    "corrupt file on rank 1": ([], ["--data", "corrupt.npz"], "rank 1: corrupt.npz: not a readable .npz file"),
    "corrupt file on rank 0": (["--data", "corrupt.npz"], [], "rank 0: corrupt.npz: not a readable .npz file"),
    "bad --hidden on rank 1": ([], ["--hidden", "x"], "rank 1: argument --hidden: expected comma-separated"),
    "unknown option on rank 0": (["--bogus"], [], "rank 0: unrecognized arguments: --bogus"),
    "--help on rank 1": ([], ["--help"], "rank 1: ended before training"),
    "different --hidden": ([], ["--hidden", "64"], "different options: --hidden (rank 0: 128; rank 1: 64)"),
    "different --epochs": ([], ["--epochs", "3"], "different options: --epochs (rank 0: 2; rank 1: 3)"),
    "different --lr": (["--lr", "0.01"], ["--lr", "0.02"], "--lr (rank 0: 0.01; rank 1: 0.02)"),
    "different --seed": ([], ["--seed", "5"], "--seed (rank 0: 0; rank 1: 5)"),
    "different --val-split": ([], ["--val-split", "0.1"], "--val-split (rank 0: None; rank 1: 0.1)"),
    "different --optimizer": ([], ["--optimizer", "sgd"], "--optimizer (rank 0: adam; rank 1: sgd)"),
    "different --standardize": ([], ["--standardize"], "--standardize (rank 0: False; rank 1: True)"),
}


@needs_mpi
@pytest.mark.parametrize("case", sorted(MPMD))
def test_a_fault_on_one_rank_stops_every_rank_with_one_error_line(tmp_path, data, case):
    """Before: the failing rank printed its error and exited while the other waited in the first collective
    forever (or, with options that differ, trained something else or failed inside MPI)."""
    first, second, words = MPMD[case]
    proc, codes = _run(tmp_path, [["--data", data, *QUICK, *first], ["--data", data, *QUICK, *second]])
    errors = _errors(proc.stderr)
    assert len(errors) == 1, proc.stderr
    assert words in errors[0], errors[0]
    assert codes == [2, 2], (codes, proc.stderr)
    assert "Traceback" not in proc.stderr


SAME = {    # the same arguments on both ranks -> (exit code, words of the one error line)
    "missing file": (["--data", "missing.npz"], 2, "fastnn: error: missing.npz: no such data file"),
    "bad --batch-size": (["--data", "ok.npz", "--batch-size", "0"], 2, "argument --batch-size: must be a positive"),
    "bad --hidden": (["--data", "ok.npz", "--hidden", "1,x"], 2, "argument --hidden: expected"),
    "corrupt checkpoint": (["--data", "ok.npz", "--checkpoint", "corrupt.npz"], 2,
                           "cannot resume from checkpoint corrupt.npz"),
    "checkpoint is a directory": (["--data", "ok.npz", "--checkpoint", "."], 2, "every rank: ValueError: checkpoint"),
    "save into a missing directory": (["--data", "ok.npz", "--save", "nodir/m.safetensors"], 2,
                                      "rank 0: cannot write the model file nodir/m.safetensors"),
    "diverged training": (["--data", "ok.npz", "--optimizer", "sgd", "--lr", "1e30"], 1, "training diverged"),
}


@needs_mpi
@pytest.mark.parametrize("case", sorted(SAME))
def test_an_error_on_every_rank_is_printed_once(tmp_path, data, case):
    args, code, words = SAME[case]
    proc, codes = _run(tmp_path, [[*QUICK, *args]] * 2)
    errors = _errors(proc.stderr)
    assert len(errors) == 1, proc.stderr
    assert words in errors[0], errors[0]
    assert codes == [code, code], (codes, proc.stderr)


@needs_mpi
def test_a_rank_started_without_distributed_stops_every_rank(tmp_path, data):
    """`mpiexec -n 1 fastnn train --distributed : -n 1 fastnn train`: the second rank used to train alone
    while the first waited for it in MPI forever."""
    script = tmp_path / "rank_main.py"
    script.write_text(RANK_MAIN)
    rank = [sys.executable, str(script), str(tmp_path / "out"), "train", "--data", data, *QUICK]
    proc = subprocess.run([MPIEXEC, "-n", "1", *rank, "--distributed", ":", "-n", "1", *rank], capture_output=True,
                          text=True, timeout=TIMEOUT, env=_env(), stdin=subprocess.DEVNULL, cwd=tmp_path)
    errors = _errors(proc.stderr)
    assert errors == ["fastnn: error: rank 0 of 2 was given --distributed, the others not; launch every rank "
                      "with the same command"], proc.stderr
    assert _codes(tmp_path) == [2, 2]


@needs_mpi
@pytest.mark.parametrize("other, words", [
    (["train", "--bogus-option"], "rank {bad}: unrecognized arguments: --bogus-option"),
    (["info", "missing.safetensors"], "rank {bad}: missing.safetensors: no such model file"),
])
@pytest.mark.parametrize("bad", [0, 1])
def test_a_rank_without_distributed_that_fails_stops_every_rank(tmp_path, data, other, words, bad):
    """`mpiexec -n 1 fastnn train --distributed ... : -n 1 fastnn train --bogus-option`: the second rank used to
    exit at its parse error before MPI started, and the first waited for it forever. Now every process an
    MPI launcher started joins the first collective before it exits: one error line naming both faults."""
    script = tmp_path / "rank_main.py"
    script.write_text(RANK_MAIN)
    good = [sys.executable, str(script), str(tmp_path / "out"), "train", "--distributed", "--data", data, *QUICK]
    wrong = [sys.executable, str(script), str(tmp_path / "out"), *other]
    first, second = (wrong, good) if bad == 0 else (good, wrong)
    proc = subprocess.run([MPIEXEC, "-n", "1", *first, ":", "-n", "1", *second], capture_output=True, text=True,
                          timeout=TIMEOUT, env=_env(), stdin=subprocess.DEVNULL, cwd=tmp_path)
    errors = _errors(proc.stderr)
    assert len(errors) == 1, proc.stderr
    assert f"rank {1 - bad} of 2 was given --distributed, the others not" in errors[0], errors[0]
    assert words.format(bad=bad) in errors[0], errors[0]
    assert _codes(tmp_path) == [2, 2]


@needs_mpi
def test_a_bad_option_on_every_rank_without_distributed_is_printed_once(tmp_path, data):
    proc = subprocess.run([MPIEXEC, "-n", "2", sys.executable, "-m", "fastnn", "train", "--bogus"], capture_output=True,
                          text=True, timeout=TIMEOUT, env=_env(), stdin=subprocess.DEVNULL, cwd=tmp_path)
    assert _errors(proc.stderr) == ["fastnn: error: unrecognized arguments: --bogus (see 'fastnn train --help')"]
    assert proc.returncode == 2


@needs_mpi
def test_mpiexec_without_distributed_is_refused_once(tmp_path, data):
    """Each process would train its own copy and write the same --save file."""
    proc = subprocess.run([MPIEXEC, "-n", "2", sys.executable, "-m", "fastnn", "train", "--data", data, *QUICK],
                          capture_output=True, text=True, timeout=TIMEOUT, env=_env(), stdin=subprocess.DEVNULL,
                          cwd=tmp_path)
    errors = _errors(proc.stderr)
    assert len(errors) == 1 and "as one of 2 processes (PMI_SIZE=2) without --distributed" in errors[0], proc.stderr
    assert proc.returncode == 2 and "accuracy" not in proc.stdout


def _wait_for(paths, proc, limit=TIMEOUT):
    """Wait until every path exists (the ranks are training); fails if the job ended first. The loop is
    bounded by ``limit`` seconds of polling (a hang fails the test, nothing asserts a duration)."""
    for _ in range(int(limit / 0.05)):
        if all(p.exists() for p in paths):
            return
        if proc.poll() is not None:
            pytest.fail(f"the job ended before training: {proc.communicate()}")
        time.sleep(0.05)
    proc.kill()
    pytest.fail("the ranks never started training")


def _signal_rank_1_mid_fit(tmp_path, data, sig):
    cmd = _cmd(tmp_path, [["--data", data, "--epochs", "100000", "-q"]] * 2)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
                            stdin=subprocess.DEVNULL, cwd=tmp_path, start_new_session=True)
    try:
        _wait_for([tmp_path / "out.started0", tmp_path / "out.started1"], proc)
        os.kill(int((tmp_path / "out.pid1").read_text()), sig)
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:                   # a hang: end the job (its own process group), then fail
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    return proc, out, err


@needs_mpi
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_to_one_rank_stops_every_rank_at_the_same_batch(tmp_path, data, sig, code):
    proc, out, err = _signal_rank_1_mid_fit(tmp_path, data, sig)
    lines = [line for line in err.splitlines() if line.startswith("fastnn:")]
    assert len(lines) == 1 and lines[0].startswith("fastnn: training interrupted"), err
    assert _codes(tmp_path) == [code, code], err


@needs_mpi
def test_a_rank_killed_mid_fit_ends_the_job(tmp_path, data):
    """SIGKILL cannot be caught: MPICH's mpiexec sees the rank die and ends the other one (its "BAD
    TERMINATION" banner, exit code 9); what is tested is that the job ends, with an error code."""
    proc, out, err = _signal_rank_1_mid_fit(tmp_path, data, signal.SIGKILL)
    assert proc.returncode != 0
    assert _codes(tmp_path) == [None, None]     # neither rank finished: rank 0 was ended by the launcher


@needs_mpi
def test_ctrl_c_on_one_rank_right_after_the_set_up_collective_ends_the_job(tmp_path, data):
    """The interrupted rank cannot join the others, who are already in fit's first collective: it says so
    once and MPI_Abort ends the job (it used to leave them waiting)."""
    proc = subprocess.run(_cmd(tmp_path, [["--data", data, *QUICK]] * 2), capture_output=True, text=True,
                          timeout=TIMEOUT, env=_env(INTERRUPT_AFTER_SETUP="1"), stdin=subprocess.DEVNULL,
                          cwd=tmp_path)
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.startswith("fastnn:") and line != COMPILE_LINE]
    assert lines == ["fastnn: rank 1: interrupted; aborting every rank"], proc.stderr
    assert _codes(tmp_path) == [None, None]


def test_without_a_launcher_it_says_once_that_it_trains_on_one_rank(tmp_path, data):
    pytest.importorskip("mpi4py", reason="MPI not installed: pip install -e '.[mpi]'")
    proc = subprocess.run([sys.executable, "-m", "fastnn", "train", "--distributed", "--data", data, *QUICK,
                           "--threads", "1"], capture_output=True, text=True, timeout=TIMEOUT, env=_env(),
                          cwd=tmp_path, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    notes = [line for line in proc.stderr.splitlines() if "one rank" in line]
    assert notes == ["fastnn: warning: --distributed outside an MPI launcher: training on one rank (to train on "
                     "K ranks: mpiexec -n K fastnn train --distributed ...)"], proc.stderr
    assert "accuracy" in proc.stdout


def test_a_launcher_whose_mpi_is_not_mpi4pys_is_an_error(tmp_path, data):
    """Open MPI's mpiexec with an MPICH mpi4py: every process would see a world of 1 and train alone."""
    pytest.importorskip("mpi4py", reason="MPI not installed: pip install -e '.[mpi]'")
    proc = subprocess.run([sys.executable, "-m", "fastnn", "train", "--distributed", "--data", data, *QUICK],
                          capture_output=True, text=True, timeout=TIMEOUT, cwd=tmp_path, stdin=subprocess.DEVNULL,
                          env=_env(OMPI_COMM_WORLD_SIZE="2", OMPI_COMM_WORLD_RANK="0"))
    assert proc.returncode == 2
    errors = _errors(proc.stderr)
    assert len(errors) == 1 and "the launcher started 2 processes (OMPI_COMM_WORLD_SIZE=2)" in errors[0]
    assert "accuracy" not in proc.stdout


def test_info_shows_ranks_times_the_local_batch_and_reads_old_files(tmp_path, capsys):
    import fastnn as fnn
    from fastnn import io
    from fastnn.cli import main
    net = fnn.NeuralNetwork([fnn.FullyConnected(4, 2)], seed=0)
    base = {"trained_with": "fastnn train", "data": "ok.npz", "hidden": [], "epochs": 2, "batch_size": 512}
    io.save(net, tmp_path / "dist.safetensors", extra=dict(base, ranks=2, global_batch_size=1024))
    io.save(net, tmp_path / "old.safetensors", extra=base)          # written before the ranks were stored
    assert main(["info", str(tmp_path / "dist.safetensors")]) == 0
    assert "batch 2 ranks x 512 = 1024 global" in capsys.readouterr().out
    assert main(["info", str(tmp_path / "old.safetensors")]) == 0
    out = capsys.readouterr().out
    assert "batch 512," in out and "global" not in out


class _FakeComm:
    """A communicator of 2 ranks seen from ``rank``: each allgather answers with the other rank's next value
    from ``rounds``."""

    def __init__(self, rank, rounds):
        self.rank, self.rounds = rank, list(rounds)

    def Get_rank(self):
        return self.rank

    def Get_size(self):
        return 2

    def allgather(self, value):
        gathered = [self.rounds.pop(0)]
        gathered.insert(self.rank, value)
        return gathered


OPTIONS = {"--epochs": 2, "--hidden": "128"}


def test_rank_sync_all_well_returns_0_silently(capsys):
    from fastnn.cli._common import RankSync
    sync = RankSync(_FakeComm(0, [(None, OPTIONS), (None, None)]))
    sync.setup(None, OPTIONS)
    assert sync.finish(None) == 0 and capsys.readouterr().err == ""


def test_rank_sync_a_set_up_failure_on_rank_1_is_printed_by_rank_0_naming_rank_1(capsys):
    from fastnn.cli._common import CLIError, RankSync
    sync = RankSync(_FakeComm(0, [((2, "fastnn: error: x.npz: no such data file"), None)]))
    with pytest.raises(CLIError) as info:
        sync.setup(None, OPTIONS)
    assert sync.finish(info.value) == 2
    assert capsys.readouterr().err == "fastnn: error: rank 1: x.npz: no such data file\n"


def test_rank_sync_sigterm_on_one_rank_gives_every_rank_143(capsys):
    from fastnn.cli._common import RankSync
    from fastnn.errors import TrainingInterrupted
    sync = RankSync(_FakeComm(0, [(None, OPTIONS), ((143, "fastnn: training interrupted after epoch 1"), None)]))
    sync.setup(None, OPTIONS)
    assert sync.finish(TrainingInterrupted(1, 3, 3)) == 143          # this rank: SIGINT's 130
    assert capsys.readouterr().err == "fastnn: training interrupted after epoch 1\n"


def test_rank_sync_different_errors_name_each_rank(capsys):
    from fastnn.cli._common import CLIError, RankSync
    sync = RankSync(_FakeComm(0, [((1, "fastnn: error: boom"), None)]))
    assert sync.finish(CLIError("a.npz: no such data file")) == 2      # rank 0 failed first: its code
    assert capsys.readouterr().err == "fastnn: error: rank 0: a.npz: no such data file; rank 1: boom\n"


def test_rank_sync_names_options_that_differ_and_stays_silent_on_other_ranks(capsys):
    from fastnn.cli._common import CLIError, RankSync
    sync = RankSync(_FakeComm(1, [(None, OPTIONS)]))
    with pytest.raises(CLIError) as info:
        sync.setup(None, dict(OPTIONS, **{"--epochs": 3}))
    assert "different options: --epochs (rank 0: 2; rank 1: 3); launch" in str(info.value)
    assert sync.finish(info.value) == 2
    assert capsys.readouterr().err == ""            # rank 1: rank 0 prints the line


def test_launcher_world_reads_the_usual_variables():
    from fastnn.cli._common import launcher_world
    assert launcher_world({}) == (None, None, None)
    assert launcher_world({"PMI_RANK": "1", "PMI_SIZE": "4"}) == (1, 4, "PMI_SIZE")
    assert launcher_world({"OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_RANK": "0"}) == (0, 2, "OMPI_COMM_WORLD_SIZE")
    assert launcher_world({"SLURM_NTASKS": "8", "SLURM_PROCID": "0"}) == (None, None, None)   # a batch script
    assert launcher_world({"SLURM_NTASKS": "8", "SLURM_PROCID": "3", "SLURM_STEP_ID": "0"}) == (3, 8, "SLURM_NTASKS")


LIBRARY_WORKER = textwrap.dedent('''
    import json, sys
    import numpy as np
    import fastnn as fnn
    from mpi4py import MPI
    rank = MPI.COMM_WORLD.Get_rank()
    case, out, good = sys.argv[1], sys.argv[2], sys.argv[3]
    odd = rank == 1
    path, dtype, hidden = good, np.float64, 8
    if odd and case == "missing":
        path = good + ".missing.npz"
    elif odd and case == "corrupt":
        path = sys.argv[4]
    elif odd and case == "dtype":
        dtype = np.float32
    elif odd and case == "hidden":
        hidden = 9
    net = fnn.NeuralNetwork([fnn.FullyConnected(4, hidden, dtype=dtype), fnn.ReLU(),
                             fnn.FullyConnected(hidden, 2, dtype=dtype)], seed=0)
    try:
        net.fit(path, None, epochs=2, batch_size=16, verbose=0, distributed=True)
        result = {"ok": True}
    except (ValueError, TypeError) as exc:
        result = {"error": type(exc).__name__, "message": str(exc)}
    with open(f"{out}.rank{rank}", "w") as f:
        json.dump(result, f)
''')


@needs_mpi
@pytest.mark.parametrize("case, words", [
    ("missing", "rank 1: ValueError: X: no such file"),
    ("corrupt", "rank 1: ValueError: "),
    ("dtype", "the ranks disagree on "),
    ("hidden", "the ranks disagree on architecture"),
])
def test_library_fit_with_a_fault_on_one_rank_raises_the_same_error_on_every_rank(tmp_path, data, case, words):
    """net.fit(path, distributed=True) in a script: rank 1's data file missing or corrupt, or its network
    built otherwise: the same ValueError on both ranks, no hang."""
    (tmp_path / "w.py").write_text(LIBRARY_WORKER)
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 a truncated zip")
    proc = subprocess.run([MPIEXEC, "-n", "2", sys.executable, str(tmp_path / "w.py"), case, str(tmp_path / "r"),
                           str(tmp_path / data), str(tmp_path / "bad.npz")], capture_output=True, text=True,
                          timeout=TIMEOUT, env=_env(), stdin=subprocess.DEVNULL, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    results = [json.loads((tmp_path / f"r.rank{r}").read_text()) for r in range(2)]
    assert results[0] == results[1], results
    assert results[0]["error"] == "ValueError" and words in results[0]["message"], results[0]
