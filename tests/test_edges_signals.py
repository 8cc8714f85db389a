"""SIGHUP (a closed terminal, an ssh connection dropped without nohup) is handled as SIGTERM everywhere:
the library fit, the command line's train / evaluate / predict, the distributed ranks; and ``python -m
fastnn`` is the console script's path (a signal during its imports is held, one line, the signal's code)."""
import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastnn as fnn
from fastnn import signals
from fastnn.errors import TrainingInterrupted
from tests import helpers

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="POSIX signals")
TIMEOUT = 120


@pytest.fixture
def default_handlers():
    """Python's default handlers of the stop signals for the test (the runner's restored after)."""
    previous = {sig: signal.signal(sig, default) for sig, default in signals.DEFAULTS.items()}
    yield
    for sig, h in previous.items():
        signal.signal(sig, h)


def _env(tmp_path, **extra):
    env = dict(os.environ, NUMBA_CACHE_DIR=os.environ.get("NUMBA_CACHE_DIR", str(tmp_path / "cache")),
               NUMBA_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    env.pop("FASTNN_DEBUG", None)
    env.update(extra)
    return env


class SignalAt:
    def __init__(self, epoch, sig):
        self.epoch, self.sig = epoch, sig

    def on_epoch_end(self, epoch, history):
        if epoch == self.epoch:
            os.kill(os.getpid(), self.sig)
        return False


def test_the_stop_signals_and_their_codes():
    assert signal.SIGHUP in signals.STOP_SIGNALS and signal.SIGHUP in signals.HELD_SIGNALS
    assert signals.HELD_SIGNALS[-1] == signal.SIGINT
    assert [signals.exit_code(n) for n in ("SIGINT", "SIGTERM", "SIGHUP", None)] == [130, 143, 129, 130]
    assert signals.describe("SIGHUP") == "hung up (SIGHUP)"


# -- the library fit -----------------------------------------------------------------------------------
@pytest.mark.parametrize("fused", ["auto", False])
@pytest.mark.parametrize("sig", ["SIGHUP", "SIGTERM"])
def test_a_signal_stops_fit_at_a_boundary_with_the_checkpoint(tmp_path, default_handlers, fused, sig):
    X, y = helpers.make_data(60, features=5, classes=3, seed=3)
    net = helpers.make_net((5, 8, 3), opt=fnn.Adam(lr=0.01), act=fnn.ReLU)
    path = tmp_path / "run.ckpt"
    with pytest.raises(TrainingInterrupted) as info:
        net.fit(X, y, epochs=20, batch_size=10, verbose=0, fused=fused, checkpoint=path,
                callbacks=[SignalAt(2, getattr(signal, sig))])
    exc = info.value
    assert exc.signal_name == sig and exc.checkpoint == str(path)
    assert net.optimizer.steps == (exc.epoch - 1) * exc.batches + exc.batch
    assert np.array_equal(fnn.load(path)._flat_params, net._flat_params)
    assert all(signal.getsignal(s) is d for s, d in signals.DEFAULTS.items())     # handlers restored


def test_a_users_own_sighup_handler_keeps_working(default_handlers):
    X, y = helpers.make_data(60, features=5, classes=3, seed=3)
    seen = []

    def mine(signum, frame):
        seen.append(signum)
    signal.signal(signal.SIGHUP, mine)
    net = helpers.make_net((5, 8, 3), opt=fnn.Adam(lr=0.01), act=fnn.ReLU)
    history = net.fit(X, y, epochs=3, batch_size=10, verbose=0, callbacks=[SignalAt(1, signal.SIGHUP)])
    assert seen == [signal.SIGHUP] and len(history["loss"]) == 3
    assert signal.getsignal(signal.SIGHUP) is mine


def test_held_holds_sighup_until_the_block_ends(default_handlers):
    seen = []
    signal.signal(signal.SIGHUP, lambda s, f: seen.append(s))
    with signals.held():
        signal.raise_signal(signal.SIGHUP)
        assert seen == []
    assert seen == [signal.SIGHUP]


def test_an_uncaught_sighup_exits_by_the_signal_after_the_exit_handlers(tmp_path):
    from tests.test_signals_exit import _run
    r, log = _run(tmp_path, "SIGHUP", "uncaught")
    assert r.returncode == -signal.SIGHUP, (r.returncode, r.stderr[-2000:])
    assert "TrainingInterrupted: training interrupted" in r.stderr
    assert "late atexit ran" in r.stdout and "early atexit ran" in r.stdout and log == "buffered line"
    r, log = _run(tmp_path, "SIGHUP", "catch")
    assert r.returncode == 0 and "stdout before caught SIGHUP" in r.stdout, r.stderr[-2000:]


# -- the command line --------------------------------------------------------------------------------------
def _entry(kind):
    if kind == "script":
        import shutil
        here = os.path.join(os.path.dirname(sys.executable), "fastnn")     # (this interpreter's script first)
        return [here if os.path.exists(here) else shutil.which("fastnn")]
    return [sys.executable, "-m", "fastnn"]


@pytest.mark.parametrize("kind", ["script", "module"])
@pytest.mark.parametrize("sig, code", [("SIGHUP", 129), ("SIGTERM", 143)])
def test_cli_train_stopped_mid_fit_keeps_the_checkpoint_and_exits_by_the_code(tmp_path, kind, sig, code):
    import time
    ckpt = tmp_path / "run.ckpt"
    proc = subprocess.Popen(_entry(kind) + ["train", "--data", "digits", "--epochs", "100000", "--quiet",
                                            "--checkpoint", str(ckpt), "--checkpoint-every", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(tmp_path),
                            cwd=tmp_path)
    try:
        for _ in range(int(TIMEOUT / 0.05)):         # (polling bounded; nothing asserts a duration)
            if ckpt.exists() or proc.poll() is not None:
                break
            time.sleep(0.05)
        assert ckpt.exists(), proc.communicate()[1] if proc.poll() is not None else "no checkpoint"
        proc.send_signal(getattr(signal, sig))
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        proc.kill()
    assert proc.returncode == code, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "training interrupted" in lines[0] and str(ckpt) in lines[0], err
    assert fnn.io.load_metadata(ckpt)["extra"]["checkpoint"]["epoch"] >= 1
    fnn.load(ckpt)                                    # consistent: loads


SITECUSTOMIZE = textwrap.dedent('''
    import importlib.abc, os, signal, sys
    _module, _sig = os.environ.get("HOOK_MODULE"), os.environ.get("HOOK_SIGNAL")

    class _Hook(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == _module:
                sys.meta_path.remove(self)
                os.kill(os.getpid(), getattr(signal, _sig))
            return None
    if _module:
        sys.meta_path.insert(0, _Hook())
''')


@pytest.fixture(scope="module")
def model_and_data(tmp_path_factory):
    d = tmp_path_factory.mktemp("m")
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 3))
    np.savez(d / "d.npz", X=X.astype(np.float32), y=(X[:, 0] > 0).astype(np.int64))
    r = subprocess.run(_entry("module") + ["train", "--data", str(d / "d.npz"), "--epochs", "1", "-q", "--save",
                                           str(d / "m.safetensors")], capture_output=True, text=True,
                       timeout=300, env=_env(d))
    assert r.returncode == 0, r.stderr
    return d


@pytest.mark.parametrize("kind", ["script", "module"])
@pytest.mark.parametrize("command", ["train", "evaluate", "predict"])
@pytest.mark.parametrize("sig, code, words", [("SIGINT", 130, "interrupted"), ("SIGTERM", 143, "terminated (SIGTERM)"),
                                              ("SIGHUP", 129, "hung up (SIGHUP)")])
@pytest.mark.parametrize("module", ["numba", "fastnn.kernels"])
def test_a_signal_during_the_imports_is_held_one_line_and_its_code(tmp_path, model_and_data, kind, command,
                                                                   sig, code, words, module):
    """A signal that lands while fastnn loads (Numba, the kernels): held by both entries, then one line and
    the signal's exit code — never a traceback, never death by the signal."""
    (tmp_path / "sitecustomize.py").write_text(SITECUSTOMIZE)
    d = model_and_data
    args = {"train": ["train", "--data", str(d / "d.npz"), "--epochs", "1", "-q"],
            "evaluate": ["evaluate", str(d / "m.safetensors"), str(d / "d.npz")],
            "predict": ["predict", str(d / "m.safetensors"), str(d / "d.npz")]}[command]
    env = _env(tmp_path, HOOK_MODULE=module, HOOK_SIGNAL=sig,
               PYTHONPATH=os.pathsep.join([str(tmp_path)] + [p for p in os.environ.get("PYTHONPATH", "").split(
                   os.pathsep) if p]))
    r = subprocess.run(_entry(kind) + args, capture_output=True, text=True, timeout=TIMEOUT, env=env, cwd=tmp_path)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == code and lines == [f"fastnn: {words}"], (r.returncode, r.stderr[-3000:])


# -- distributed ranks -------------------------------------------------------------------------------------
def test_a_sighup_to_one_rank_stops_every_rank_with_129(tmp_path):
    from tests.test_distributed import needs_mpi  # noqa: F401 - (skips below when MPI is missing)
    pytest.importorskip("mpi4py")
    from tests import test_distributed_cli as dc
    if dc.MPIEXEC is None:
        pytest.skip("no mpiexec")
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 4)).astype(np.float32)
    np.savez(tmp_path / "ok.npz", X=X, y=(X[:, 0] > 0).astype(np.int64))
    proc, out, err = dc._signal_rank_1_mid_fit(tmp_path, "ok.npz", signal.SIGHUP)
    lines = [line for line in err.splitlines() if line.startswith("fastnn:")]
    assert len(lines) == 1 and lines[0].startswith("fastnn: training interrupted"), err
    assert dc._codes(tmp_path) == [129, 129], err


def test_the_ranks_agree_on_the_outside_signal():
    from fastnn.cli._common import RankSync
    verdict = RankSync._verdict({0: (130, "fastnn: interrupted"), 1: (129, "fastnn: hung up (SIGHUP)")}, 2)
    assert verdict[0] == 129
    verdict = RankSync._verdict({0: (129, "fastnn: hung up (SIGHUP)"), 1: (143, "fastnn: terminated (SIGTERM)")}, 2)
    assert verdict[0] == 143


def test_python_dash_m_of_another_module_that_imports_fastnn_leaves_the_handlers_alone(tmp_path):
    """Only ``python -m fastnn`` is the command line: a program run with -m that imports fastnn (sys.argv[0]
    is "-m" while its package loads) keeps its handlers."""
    pkg = tmp_path / "myapp"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("import fastnn\n")
    (pkg / "__main__.py").write_text(
        "import signal, fastnn.signals as s\n"
        "print(all(signal.getsignal(k) is d for k, d in s.DEFAULTS.items()))\n")
    r = subprocess.run([sys.executable, "-m", "myapp"], capture_output=True, text=True, timeout=TIMEOUT,
                       cwd=tmp_path, env=_env(tmp_path))
    assert r.returncode == 0 and r.stdout.strip() == "True", r.stderr


@pytest.mark.parametrize("flags", [["-m", "fastnn"], ["-mfastnn"], ["-X", "faulthandler", "-m", "fastnn"]])
def test_every_spelling_of_python_dash_m_fastnn_holds_the_signals(tmp_path, model_and_data, flags):
    (tmp_path / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = _env(tmp_path, HOOK_MODULE="numba", HOOK_SIGNAL="SIGINT", PYTHONPATH=str(tmp_path))
    r = subprocess.run([sys.executable] + flags + ["evaluate", str(model_and_data / "m.safetensors"),
                                                   str(model_and_data / "d.npz")],
                       capture_output=True, text=True, timeout=TIMEOUT, env=env, cwd=tmp_path)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == 130 and lines == ["fastnn: interrupted"], r.stderr[-3000:]


# -- a real hang-up: the terminal closes (its pty master), the kernel sends SIGHUP and writes to it fail ----
def _run_in_a_terminal_then_close_it(cmd, ckpt, cwd, env):
    """Run ``cmd`` with a pseudo-terminal as its controlling terminal (stdin, stdout, stderr), wait for its
    first checkpoint, then close the terminal; returns the exit status."""
    import fcntl
    import select
    import termios
    import time
    master, slave = os.openpty()

    def controlling_terminal():
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, preexec_fn=controlling_terminal,
                            close_fds=True, cwd=cwd, env=env)
    os.close(slave)
    out = b""
    try:
        for _ in range(int(TIMEOUT / 0.05)):         # (bounded polling; the terminal drained meanwhile)
            if ckpt.exists() or proc.poll() is not None:
                break
            ready, _, _ = select.select([master], [], [], 0.05)
            if ready:
                try:
                    out += os.read(master, 1 << 16)
                except OSError:
                    break
        assert ckpt.exists(), out[-2000:]
    finally:
        os.close(master)                              # the terminal closes: SIGHUP, then EIO on every write
    try:
        return proc.wait(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.parametrize("kind", ["script", "module"])
def test_cli_train_in_a_terminal_that_closes_exits_129_with_its_checkpoint(tmp_path, kind):
    ckpt = tmp_path / "c.ckpt"
    rc = _run_in_a_terminal_then_close_it(_entry(kind) + ["train", "--data", "digits", "--epochs", "100000",
                                                          "--checkpoint", str(ckpt), "--checkpoint-every", "1"],
                                          ckpt, tmp_path, _env(tmp_path))
    assert rc == 129
    assert fnn.io.load_metadata(ckpt)["extra"]["checkpoint"]["epoch"] >= 1
    fnn.load(ckpt)


@pytest.mark.parametrize("fused", ["auto", False])
def test_a_script_in_a_terminal_that_closes_dies_by_sighup_with_its_checkpoint(tmp_path, fused):
    ckpt = tmp_path / "c.ckpt"
    (tmp_path / "s.py").write_text(textwrap.dedent(f'''
        import numpy as np, fastnn as fnn
        rng = np.random.default_rng(0)
        X = rng.standard_normal((2000, 10)).astype(np.float32); y = rng.integers(0, 3, 2000)
        net = fnn.NeuralNetwork([fnn.FullyConnected(10, 32), fnn.ReLU(), fnn.FullyConnected(32, 3)], seed=0)
        net.fit(X, y, epochs=100000, verbose=1, fused={fused!r}, checkpoint={str(ckpt)!r}, checkpoint_every=1)
    '''))
    rc = _run_in_a_terminal_then_close_it([sys.executable, str(tmp_path / "s.py")], ckpt, tmp_path,
                                          _env(tmp_path))
    assert rc == -signal.SIGHUP
    fnn.load(ckpt)
