"""A forked child works after every kind of fastnn call (issue 18 item 3), variants beside test_threads.py's:
evaluate, the estimators' fit / score / partial_fit, gradcheck of a network, a big-batch per-layer fit, fits
in a worker thread and in a thread pool, and a fork while another thread is fitting (its first fit: loading
kernels) or predicting — each
followed by an ``os.fork()`` child and a multiprocessing fork child that fit and predict and exit 0 (a hang
is a failure: timeouts).

Before: a child forked while another thread fitted waited forever in predict for the network's
``weights_changing`` lock (held by the parent's epoch), or in its first kernel for Numba's compiler lock."""
import subprocess
import sys

import pytest

_SCRIPT = r"""
import multiprocessing as mp, os, sys, threading, time, warnings
import numpy as np
import fastnn as fnn
warnings.simplefilter("ignore")

def make(sizes, dtype=np.float32):
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(fnn.FullyConnected(a, b, dtype=dtype))
        if i < len(sizes) - 2:
            layers.append(fnn.ReLU())
    return fnn.NeuralNetwork(layers, optimizer=fnn.Adam(lr=1e-3), seed=0)

rng = np.random.default_rng(0)
X = rng.standard_normal((2048, 64)).astype(np.float32)
y = rng.integers(0, 10, 2048)
net = make([64, 256, 10])
kind, background = sys.argv[1], None
if kind == "evaluate":
    net.evaluate(np.tile(X, (5, 1)), np.tile(y, 5))
elif kind == "estimators":
    est = fnn.MLPClassifier(hidden_layer_sizes=(256,), max_iter=2, batch_size=512).fit(X, y)
    est.score(X, y), est.predict_proba(X)
    fnn.MLPRegressor(hidden_layer_sizes=(32,), max_iter=2).partial_fit(X, y.astype(float))
elif kind == "gradcheck_network":
    fnn.gradcheck(make([5, 7, 3], np.float64), np.ones((4, 5)), np.array([0, 1, 2, 0]))
elif kind == "fit_per_layer_big_batch":
    net.fit(X, y, epochs=1, batch_size=2048, verbose=0, fused=False)
elif kind == "fits_in_threads":
    t = threading.Thread(target=lambda: net.fit(X, y, epochs=1, batch_size=128, verbose=0))
    t.start(); t.join()
    import concurrent.futures
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda b: make([64, 128, 10]).fit(X, y, epochs=1, batch_size=b, verbose=0), [128, 2048]))
elif kind.startswith("during"):
    # the modules fastnn imports on first use are imported here first (a fork while another thread holds
    # an import lock is Python's hazard, not fastnn's); then a thread fits (holding the network's
    # weights_changing lock for each epoch; "during_first_fit": also loading float64 kernels, under
    # Numba's compiler lock) or predicts while this one forks
    warm = make([64, 16, 10])
    warm.fit(X[:256], y[:256], epochs=1, batch_size=32, verbose=0)
    warm.fit(X[:256], y[:256], epochs=1, batch_size=32, verbose=0, fused=False)
    warm.predict_proba(X[:8]), warm.evaluate(X[:8], y[:8])
    if kind == "during_first_fit":
        net = make([64, 256, 10], np.float64)
        X64 = X.astype(np.float64)
        background = threading.Thread(target=lambda: [net.fit(X64, y, epochs=1, batch_size=b, verbose=0)
                                                      for b in (128, 2048) * 2])
    elif kind == "during_fit":      # epochs long enough that the fork falls inside one
        Xbig, ybig = np.tile(X, (8, 1)), np.tile(y, 8)
        background = threading.Thread(target=lambda: [net.fit(Xbig, ybig, epochs=1, batch_size=b, verbose=0)
                                                      for b in (128, 2048) * 2])
    else:
        background = threading.Thread(target=lambda: [net.predict_proba(np.tile(X, (5, 1))) for _ in range(10)])
    background.start()
    time.sleep(0.1)

def work():
    small = make([64, 16, 10])
    small.fit(X[:256], y[:256], epochs=1, batch_size=32, verbose=0)
    other = make([64, 128, 10])
    other.fit(X, y, epochs=1, batch_size=2048, verbose=0)
    Xn = np.tile(X, (5, 1)).astype(net.dtype)
    return net.predict_proba(Xn).shape[0] == len(Xn) and small.predict(X[:8]).shape == (8,)

def by_os_fork():
    pid = os.fork()
    if pid == 0:
        ok = False
        try:
            ok = work()
        finally:
            os._exit(0 if ok else 3)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    return "hung"

def child(q):
    q.put(work())

def by_multiprocessing():
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=child, args=(q,))
    p.start()
    p.join(120)
    if p.is_alive():
        p.kill()
        return "hung"
    return p.exitcode if p.exitcode else (0 if q.get(timeout=10) else "wrong result")

results = [by_os_fork(), by_multiprocessing()]
if background is not None:
    background.join()
print("RESULTS", results)
sys.exit(0 if results == [0, 0] else 1)
"""


@pytest.mark.parametrize("kind", ["evaluate", "estimators", "gradcheck_network", "fit_per_layer_big_batch",
                                  "fits_in_threads", "during_first_fit", "during_fit", "during_predict"])
def test_fork_after_or_during_a_call_leaves_a_working_child(kind):
    out = subprocess.run([sys.executable, "-c", _SCRIPT, kind], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, (out.stdout[-2000:], out.stderr[-3000:])
    assert "OpenMP" not in out.stderr, out.stderr[-3000:]
