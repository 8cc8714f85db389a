"""A script that Ctrl-C or SIGTERM stops inside fit ends as CPython ends one for Ctrl-C: by the signal (status
130 / 143 in a shell), after its atexit handlers ran and its open files were flushed — and
TrainingInterrupted stays an exception a script can catch."""
import os
import signal
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX signals")

SCRIPT = textwrap.dedent('''
    import atexit, os, signal, sys
    import numpy as np
    atexit.register(lambda: print("early atexit ran", flush=True))
    import fastnn as fnn
    from fastnn.errors import TrainingInterrupted
    log = open(sys.argv[2], "w")           # never closed: finalisation would flush it
    log.write("buffered line")
    rs = np.random.RandomState(0); X = rs.randn(64, 4).astype(np.float32); y = (X[:, 0] > 0).astype(int)
    net = fnn.NeuralNetwork([fnn.FullyConnected(4, 8, seed=1), fnn.ReLU(), fnn.FullyConnected(8, 2, seed=2)],
                            loss=fnn.SoftmaxCrossEntropy(), optimizer=fnn.SGD(lr=0.1), seed=0)

    class Kill:
        def on_epoch_end(self, epoch, history):
            if epoch == 1:
                os.kill(os.getpid(), getattr(signal, sys.argv[1]))
            return False

    atexit.register(lambda: print("late atexit ran", flush=True))
    print("stdout before", end="")         # no newline, not flushed: the exit flushes it
    if sys.argv[3] == "catch":
        try:
            net.fit(X, y, epochs=50, batch_size=16, verbose=0, callbacks=[Kill()])
        except TrainingInterrupted as exc:
            print(" caught", exc.signal_name)
        net.fit(X, y, epochs=1, batch_size=16, verbose=0)
    else:
        net.fit(X, y, epochs=50, batch_size=16, verbose=0, callbacks=[Kill()])
''')


def _run(tmp_path, sig, mode):
    script = tmp_path / "s.py"
    script.write_text(SCRIPT)
    log = tmp_path / "log.txt"
    env = dict(os.environ, NUMBA_CACHE_DIR=os.environ.get("NUMBA_CACHE_DIR", str(tmp_path / "cache")))
    r = subprocess.run([sys.executable, str(script), sig, str(log), mode], capture_output=True, text=True,
                       env=env, timeout=300)
    return r, log.read_text()


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_an_uncaught_interruption_exits_by_the_signal_after_the_exit_handlers(tmp_path, sig):
    r, log = _run(tmp_path, sig, "uncaught")
    assert r.returncode == -getattr(signal, sig), (r.returncode, r.stderr[-2000:])
    assert "TrainingInterrupted: training interrupted" in r.stderr          # the traceback is printed
    assert r.stdout.startswith("stdout before")
    assert "late atexit ran" in r.stdout and "early atexit ran" in r.stdout
    assert r.stdout.index("late atexit ran") < r.stdout.index("early atexit ran")     # (atexit's order)
    assert log == "buffered line"


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_a_caught_interruption_leaves_the_exit_status_alone(tmp_path, sig):
    r, log = _run(tmp_path, sig, "catch")
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"stdout before caught {sig}" in r.stdout and "early atexit ran" in r.stdout
    assert log == "buffered line"


def test_other_uncaught_errors_keep_status_1_after_a_fit(tmp_path):
    script = tmp_path / "e.py"
    script.write_text(textwrap.dedent('''
        import numpy as np, fastnn as fnn
        net = fnn.NeuralNetwork([fnn.FullyConnected(2, 2, seed=1)], loss=fnn.SoftmaxCrossEntropy(), seed=0)
        net.fit(np.zeros((4, 2), np.float32), np.array([0, 1, 0, 1]), epochs=1, verbose=0)
        raise KeyError("other")
    '''))
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, NUMBA_CACHE_DIR=os.environ.get("NUMBA_CACHE_DIR", str(tmp_path / "c"))))
    assert r.returncode == 1 and "KeyError: 'other'" in r.stderr
