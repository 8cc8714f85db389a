"""`fastnn info` on the files of `mpiexec -n K fastnn train --distributed` shows ranks x local batch (the
checkpoint now stores its rank count, informational), and resuming a distributed checkpoint with another
global batch (another rank count or --batch-size) names both global batches; the same global batch on
another rank count resumes (K ranks = one process with the global batch)."""
import subprocess
import sys

import numpy as np
import pytest

import fastnn as fnn
from fastnn import checkpoint as ckpt
from tests import helpers
from tests.test_distributed import MPIEXEC, needs_mpi
from tests.test_distributed_cli import COMPILE_LINE, _env

TIMEOUT = 120


def _train(tmp_path, k, *args):
    cmd = ([MPIEXEC, "-n", str(k)] if k else []) + [sys.executable, "-m", "fastnn", "train"] + \
          (["--distributed"] if k else []) + ["--threads", "1", "--data", "ok.npz", "-q", *args]
    r = subprocess.run(["timeout", str(TIMEOUT)] + cmd, capture_output=True, text=True, timeout=TIMEOUT + 10,
                       env=_env(), stdin=subprocess.DEVNULL, cwd=tmp_path)
    return r, [line for line in r.stderr.splitlines() if line.startswith("fastnn") and line != COMPILE_LINE]


def _info(tmp_path, name):
    r = subprocess.run([sys.executable, "-m", "fastnn", "info", name], capture_output=True, text=True,
                       timeout=TIMEOUT, env=_env(), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.fixture
def run(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 4)).astype(np.float32)
    np.savez(tmp_path / "ok.npz", X=X, y=(X[:, 0] > 0).astype(np.int64))
    r, lines = _train(tmp_path, 2, "--epochs", "2", "--batch-size", "16", "--checkpoint", "c.ckpt", "--save",
                      "m.safetensors")
    assert r.returncode == 0 and lines == [], r.stderr
    return tmp_path


@needs_mpi
def test_info_and_resume_of_a_distributed_run(run):
    tmp_path = run
    assert fnn.io.load_metadata(tmp_path / "c.ckpt")["extra"]["checkpoint"]["ranks"] == 2
    info = _info(tmp_path, "c.ckpt")
    assert "batch 2 ranks x 16 = 32 global" in info and "(ranks x --batch-size)" not in info, info
    assert "batch 2 ranks x 16 = 32 global" in _info(tmp_path, "m.safetensors")
    for k, batch, now in ((3, "16", "global batch 3 ranks x 16 = 48"), (2, "24", "global batch 2 ranks x 24 = 48"),
                          (None, "16", "this run's batch 16")):
        r, lines = _train(tmp_path, k, "--epochs", "4", "--batch-size", batch, "--checkpoint", "c.ckpt")
        assert r.returncode == 2 and len(lines) == 1, r.stderr
        assert "the checkpoint's global batch 2 ranks x 16 = 32" in lines[0] and now in lines[0], lines[0]
    # the same global batch on another rank count resumes (K ranks = one process with the global batch)
    r, lines = _train(tmp_path, 4, "--epochs", "3", "--batch-size", "8", "--checkpoint", "c.ckpt")
    assert r.returncode == 0 and lines == [], r.stderr
    assert "batch 4 ranks x 8 = 32 global" in _info(tmp_path, "c.ckpt")


def test_a_one_process_checkpoint_has_no_ranks_and_says_its_batch(tmp_path):
    X, y = helpers.make_data(40, features=4, classes=3, seed=2)
    path = tmp_path / "one.ckpt"
    helpers.make_net((4, 6, 3)).fit(X, y, epochs=1, batch_size=8, verbose=0, checkpoint=path)
    state = fnn.io.load_metadata(path)["extra"]["checkpoint"]
    assert state["ranks"] is None
    with pytest.raises(ValueError, match=r"batch_size differ: the checkpoint's batch 8, this run's batch 16"):
        helpers.make_net((4, 6, 3)).fit(X, y, epochs=2, batch_size=16, verbose=0, checkpoint=path)


def test_the_global_batch_words():
    assert ckpt._global_batch(32, 2) == "global batch 2 ranks x 16 = 32"
    assert ckpt._global_batch(32, None) == "batch 32"
    assert ckpt._global_batch(33, 2) == "batch 33"          # (a hostile file: no split claimed)
    assert ckpt._global_batch(32, True) == "batch 32"
