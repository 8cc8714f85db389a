"""fastnn.precompile and ``fastnn compile``: compiling ahead fills the cache a later fit reads — that fit, of any
widths and data size, serial or batch-parallel, then compiles nothing and gives the numbers a cold fit gives;
bad arguments and failures are one clear line.

The cache-filling cases run in fresh interpreters with their own empty NUMBA_CACHE_DIR and compile the
cheapest configuration (SGD, float32, one hidden layer: a few seconds of CPU)."""
import os
import subprocess
import sys
import textwrap

import pytest

from fastnn import precompile
from fastnn.cli import main

# a fit of the "sgd" kind (other widths and sizes than the unit's tiny fit), serial, then batch-parallel on
# 2 threads (the split forced: the data is small), then predict; prints the compiles (numba:compile events)
# and the weights' bytes
_FIT = """
    import sys
    import numpy as np
    import fastnn as fnn
    from numba.core.event import install_recorder
    rng = np.random.default_rng(3)
    X = rng.standard_normal((300, 11)).astype(np.float32)
    y = rng.integers(0, 4, 300)
    out = []
    for T in (1, 2):
        fnn.threads.batch_parallel_threads = lambda widths, rows, samples, T=T: T
        net = fnn.NeuralNetwork([fnn.FullyConnected(11, 23), fnn.ReLU(), fnn.FullyConnected(23, 4)],
                                loss=fnn.SoftmaxCrossEntropy(), optimizer=fnn.SGD(lr=0.05, momentum=0.9), seed=1)
        with install_recorder("numba:compile") as rec:
            net.fit(X, y, epochs=2, batch_size=64, verbose=0)
            net.predict(X)
        compiled = sorted({ev.data["dispatcher"].py_func.__name__ for _, ev in rec.buffer if ev.is_start})
        print(T, ",".join(compiled) or "-", net.plan().params.tobytes().hex()[:4000], flush=True)
"""


def _python(code, cache, *args):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache))
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True,
                         timeout=900, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    return [line.split(" ") for line in out.stdout.split("\n")[:-1]]


def test_a_fit_after_compiling_ahead_compiles_nothing_and_gives_the_cold_numbers(tmp_path):
    cold = _python(_FIT, tmp_path / "cold")
    assert [row[0] for row in cold] == ["1", "2"] and all(row[1] != "-" for row in cold), cold
    ahead = tmp_path / "ahead"
    env = dict(os.environ, NUMBA_CACHE_DIR=str(ahead))
    done = subprocess.run([sys.executable, "-m", "fastnn", "compile", "--kinds", "sgd", "--dtypes", "float32",
                           "--jobs", "1"], capture_output=True, text=True, timeout=900, env=env)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("fastnn compile: 1 configuration in 1 process, kept in ") and str(ahead) in lines[0]
    assert lines[1].split()[:5] == ["sgd", "float32", "1", "hidden", "layer"] and lines[-1].startswith("done in ")
    warm = _python(_FIT, ahead)
    assert [row[:2] for row in warm] == [["1", "-"], ["2", "-"]], warm          # nothing compiled
    assert [row[2] for row in warm] == [row[2] for row in cold]                 # the same bits, both engines


def test_units_are_checked():
    assert precompile.units(("sgd",), ("float64",), (1, 2)) == [("sgd", "float64", 1), ("sgd", "float64", 2)]
    for bad, what in (((("lbfgs",), ("float32",), (1,)), "unknown kind 'lbfgs'"),
                      ((("sgd",), ("float16",), (1,)), "unknown dtype 'float16'"),
                      ((("sgd",), ("float32",), (0,)), "hidden layers"),
                      ((("sgd",), ("float32",), (True,)), "hidden layers"),
                      ((("sgd",), ("float32",), (1.5,)), "hidden layers"),
                      ((("sgd",), ("float32",), ()), "nothing to compile")):
        with pytest.raises(ValueError, match=what):
            precompile.units(*bad)


def test_units_that_share_kernels_go_to_one_worker_and_the_work_is_balanced():
    todo = precompile.units()
    shares = precompile.worker_shares(todo, 2)
    assert sorted(u for share in shares for u in share) == sorted(todo) and len(shares) == 2
    for share in shares:        # the classifier right after the adam network of its dtype and depth
        for k, unit in enumerate(share):
            if unit.kind == "classifier":
                assert share[k - 1] == ("adam", unit.dtype, unit.depth), share
    assert len(precompile.worker_shares(todo, 64)) == 12     # no more workers than groups of units (3 x 2 x 2)
    assert precompile.worker_shares(todo[:1], 0) == [todo[:1]]


def test_a_failing_worker_is_reported_with_its_units_and_its_error():
    bogus = precompile.Unit("bogus", "float32", 1)
    seen = []
    failures = precompile.compile_units([bogus], 1, lambda unit, seconds: seen.append(unit))
    assert seen == [] and len(failures) == 1
    share, code, line = failures[0]
    assert share == [bogus] and code != 0 and "unknown kind 'bogus'" in line, failures


@pytest.mark.parametrize("argv, message", [
    (["--kinds", "lbfgs"], "argument --kinds: unknown kind 'lbfgs' (choose from sgd, adam, classifier, regressor)"),
    (["--kinds", ","], "argument --kinds: unknown kind ','"),
    (["--dtypes", "float16"], "argument --dtypes: unknown dtype 'float16' (choose from float32, float64)"),
    (["--hidden-layers", "0"], "argument --hidden-layers: must be comma-separated counts from 1 to 8, got '0'"),
    (["--hidden-layers", "two"], "argument --hidden-layers: must be comma-separated counts from 1 to 8"),
    (["--jobs", "0"], "argument --jobs: must be a positive integer, got '0'"),
])
def test_bad_arguments_are_one_line_and_exit_2(capsys, argv, message):
    assert main(["compile", *argv]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith(f"fastnn: error: {message}") and err.count("\n") == 1, err


def test_no_writable_cache_is_one_line_and_exit_1(capsys, monkeypatch):
    from fastnn.kernels import _jit
    monkeypatch.setattr(_jit, "cache_directory", lambda: None)
    assert main(["compile", "--kinds", "sgd"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("fastnn: error: no writable directory for Numba's kernel cache")


def _workers_alive(marker):
    """Processes whose environment holds ``marker`` (the test's NUMBA_CACHE_DIR), but this one."""
    alive = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if marker.encode() in f.read() and int(pid) != os.getpid():
                    alive.append(int(pid))
        except OSError:
            continue
    return alive


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to find the worker processes")
@pytest.mark.parametrize("signame, code, words", [("SIGTERM", 143, "terminated (SIGTERM)"),
                                                 ("SIGHUP", 129, "hung up (SIGHUP)")])
def test_a_stop_signal_ends_the_workers_too(tmp_path, signame, code, words):
    """SIGTERM or SIGHUP sent to ``fastnn compile`` alone (not its process group) ends its workers as well,
    with the command's one line and exit status."""
    import signal
    import time
    cache = str(tmp_path / "cache")
    env = dict(os.environ, NUMBA_CACHE_DIR=cache)
    proc = subprocess.Popen([sys.executable, "-m", "fastnn", "compile", "--kinds", "sgd,regressor", "--jobs", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout.readline().startswith("fastnn compile: 4 configurations in 2 processes")
    deadline = time.monotonic() + 60
    while len(_workers_alive(cache)) < 3 and time.monotonic() < deadline:      # the command and 2 workers
        time.sleep(0.05)
    assert len(_workers_alive(cache)) == 3
    proc.send_signal(getattr(signal, signame))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code and err == f"fastnn: {words}\n", (proc.returncode, err)
    deadline = time.monotonic() + 30
    while _workers_alive(cache) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _workers_alive(cache) == []


def test_with_the_jit_disabled_it_says_so(capsys, monkeypatch):
    import numba
    monkeypatch.setattr(numba.config, "DISABLE_JIT", True)
    assert main(["compile"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err == "fastnn: error: NUMBA_DISABLE_JIT is set: kernels run as Python and nothing can be " \
                                "compiled ahead\n"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to find the worker processes")
def test_a_closed_stdout_ends_the_command_and_its_workers_without_a_traceback(tmp_path):
    """``fastnn compile | head -1``: the first report after the pipe closed ends the command (exit 1, as
    the other commands on a closed stdout), its workers too, and no thread prints a traceback."""
    import time
    cache = str(tmp_path / "cache")
    env = dict(os.environ, NUMBA_CACHE_DIR=cache)
    proc = subprocess.Popen([sys.executable, "-m", "fastnn", "compile", "--kinds", "sgd,regressor", "--dtypes",
                             "float32", "--jobs", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert proc.stdout.readline().startswith(b"fastnn compile: 2 configurations in 1 process")
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=600) == 1 and "Traceback" not in err, err
    deadline = time.monotonic() + 30
    while _workers_alive(cache) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _workers_alive(cache) == []
