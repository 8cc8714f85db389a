"""predict, predict_proba, evaluate and forward use the thread count of the moment they were called for every
chunk and layer (issue 18 item 3, DESIGN §3: results are a function of the thread count, whatever other
threads do): a ``set_num_threads`` in another thread — or in a custom layer's code — while they run changes
nothing in their result.

Before: each layer's GEMM read the process's count when it ran, so a large predict during another thread's
``set_num_threads(1)`` / ``(2)`` came out as neither the 1-thread nor the 2-thread result (6 of 8 calls, 784-
1024-512-10 on 4 chunks)."""
import threading

import numba
import numpy as np
import pytest

import fastnn as fnn
from fastnn.network import PREDICT_CHUNK

pytestmark = pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs NUMBA_NUM_THREADS >= 2")


@pytest.fixture(autouse=True)
def restore_threads():
    before = fnn.threads._process_threads
    yield
    fnn.threads._process_threads = before


class Toggle(fnn.Layer):
    """A custom layer (identity) whose forward pass sets the process's thread count, as user code may."""

    def _forward(self, x):
        fnn.set_num_threads(3 - fnn.threads._process_threads if fnn.threads._process_threads else 1)
        return x

    def _backward(self, dy, need_input_grad=True):
        return dy


def _net(custom=False, dtype=np.float32):
    """784-256-10 (a K of 784: OpenBLAS rounds such GEMMs differently on 1 and 2 threads, where 96-128-96-10
    rounds alike); ``custom``: a Toggle layer first."""
    layers = [fnn.FullyConnected(784, 256, dtype=dtype, seed=1), fnn.TanH(), fnn.FullyConnected(256, 10, dtype=dtype, seed=2)]
    return fnn.NeuralNetwork(([Toggle()] if custom else []) + layers, seed=0)


def _data(dtype, rows=2 * PREDICT_CHUNK):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((rows, 784)).astype(dtype)
    return X, rng.integers(0, 10, len(X))


def _calls(net, X, y):
    return {"predict_proba": lambda: net.predict_proba(X), "forward": lambda: net.forward(X),
            "evaluate": lambda: np.array(list(net.evaluate(X, y).values()))}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_custom_layer_changing_the_count_mid_call_changes_nothing(dtype):
    X, y = _data(dtype, rows=256)
    net = _net(custom=True, dtype=dtype)
    for name, call in _calls(net, X, y).items():
        for n in (1, 2):
            fnn.set_num_threads(n)
            with fnn.num_threads(n):        # the block pins this thread's count; the layer's calls change the
                expected = call()           # process's, which the block hides
            fnn.set_num_threads(n)
            assert np.array_equal(call(), expected), name


def test_set_num_threads_in_another_thread_mid_call_changes_nothing():
    dtype = np.float32
    X, y = _data(dtype)
    net = _net(dtype=dtype)
    for name, call in _calls(net, X, y).items():
        alone = {}
        for n in (1, 2):
            with fnn.num_threads(n):
                alone[n] = call()
        stop = threading.Event()

        def meddle():
            k = 0
            while not stop.is_set():
                fnn.set_num_threads(1 + k % 2)
                k += 1
        meddler = threading.Thread(target=meddle)
        meddler.start()
        try:
            runs = [call() for _ in range(4)]
        finally:
            stop.set()
            meddler.join()
        for run in runs:
            assert np.array_equal(run, alone[1]) or np.array_equal(run, alone[2]), name
