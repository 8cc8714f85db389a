"""Determinism and thread safety: the same seed and thread count give bit-identical weights on both
training paths; predict / predict_proba / evaluate / forward from many Python threads at once on one network
give the serial answers; independent networks train concurrently as they do alone."""
import threading

import numba
import numpy as np
import pytest

import fastnn as fnn

OPTIMIZERS = {"sgd": lambda: fnn.SGD(lr=0.05), "momentum": lambda: fnn.SGD(lr=0.05, momentum=0.9),
              "adam": lambda: fnn.Adam(lr=0.003)}


def make_net(opt="adam", sizes=(12, 32, 32, 5), act=fnn.ReLU, dtype=np.float32, seed=0):
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(fnn.FullyConnected(a, b, dtype=dtype))
        if i < len(sizes) - 2:
            layers.append(act())
    return fnn.NeuralNetwork(layers, optimizer=OPTIMIZERS[opt](), seed=seed)


def make_data(n=500, features=12, classes=5, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, features)).astype(dtype), rng.integers(0, classes, n)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("fused", ["auto", False])
@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
def test_same_seed_same_threads_bit_identical(opt, fused, dtype):
    X, y = make_data(dtype=dtype)
    runs = []
    for _ in range(2):
        net = make_net(opt, dtype=dtype)
        history = net.fit(X, y, epochs=3, batch_size=32, verbose=0, fused=fused, seed=11)
        runs.append((net._flat_params.copy(), history, [s.copy() for sl in net.optimizer.state for s in sl]))
    (p0, h0, s0), (p1, h1, s1) = runs
    assert np.array_equal(p0, p1)
    assert all(np.array_equal(a, b) for a, b in zip(s0, s1))
    assert h0["loss"] == h1["loss"] and h0["grad_norm"] == h1["grad_norm"]
    # another shuffling seed gives another run
    other = make_net(opt, dtype=dtype)
    other.fit(X, y, epochs=3, batch_size=32, verbose=0, fused=fused, seed=12)
    assert not np.array_equal(other._flat_params, p0)


def test_thread_count_changes_at_most_the_last_bits():
    """Documented behaviour: the Numba kernels are elementwise per thread (identical results for any
    thread count); BLAS may split its sums differently with another thread count, so the results can differ
    by rounding. Bit-exactness is promised only for the same thread count.

    What bound is justified: not a per-weight one. Adam divides each update by sqrt(v), so for a weight
    whose gradient nearly cancels over the batch, a last-bit change of that gradient changes its update by
    a large fraction of lr: one weight in 165,893 differed by 1.6e-3 relative between 1 and 2 threads on an
    AMD Zen 5 (and 6e-3 here between two OPENBLAS_CORETYPE kernel families), while the network was the
    same to 2e-6. So the check is norm-wise and on the trained function:
    each of the T optimizer steps computes its gradient with GEMMs whose longest sums have K terms; their
    norm-wise relative rounding error is at most gamma_K ~ K * eps (Higham, Accuracy and Stability of
    Numerical Algorithms, 3.5), and to first order the T steps' errors add up. So the two runs' weights may
    differ by T * K * eps relative to what training changed (||w - w0||), and their per-epoch mean losses by
    T * K * eps relative. (16 * 512 * 1.19e-7 = 9.8e-4; four BLAS kernel families x 1 and 2 threads
    measured at most 1.9e-6 and 2.5e-8: the bound is far from what any machine has shown, and far below a
    real bug, which changes the weights by O(1) of the training change.)"""
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs 2 threads")
    n, features, batch, sizes, epochs = 2000, 64, 256, (64, 512, 256, 5), 2
    X, y = make_data(n, features)
    results = []
    before = fnn.threads.get_num_threads()
    try:
        for threads in (1, 2):
            fnn.set_num_threads(threads)
            net = make_net("adam", sizes=sizes)      # large enough for the parallel kernels
            w0 = net._flat_params.copy()
            history = net.fit(X, y, epochs=epochs, batch_size=batch, verbose=0)
            results.append((w0, net._flat_params.copy(), history["loss"]))
    finally:
        fnn.set_num_threads(before)
    (w0, w1, loss1), (w0b, w2, loss2) = results
    np.testing.assert_array_equal(w0, w0b)       # initialisation does not depend on the thread count
    steps = epochs * -(-n // batch)
    longest_sum = max(batch, *sizes)
    rtol = steps * longest_sum * np.finfo(np.float32).eps
    w1, w2, w0 = (a.astype(np.float64) for a in (w1, w2, w0))
    change = np.linalg.norm(w1 - w0)
    assert change > 0
    assert np.linalg.norm(w1 - w2) <= rtol * change, (np.linalg.norm(w1 - w2) / change, rtol)
    np.testing.assert_allclose(loss2, loss1, rtol=rtol, atol=0)


# ------------------------------------------------------------------------------------ concurrent inference
def _concurrently(n_threads, work):
    """Run work(thread_index) in n_threads threads released together; re-raise the first failure."""
    barrier = threading.Barrier(n_threads)
    errors = []

    def run(i):
        try:
            barrier.wait()
            work(i)
        except BaseException as exc:  # noqa: BLE001 - collected and re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


@pytest.mark.parametrize("regression", [False, True])
def test_predict_from_8_threads_x_100_calls_equals_serial(regression):
    rng = np.random.default_rng(5)
    if regression:
        net = fnn.NeuralNetwork([fnn.FullyConnected(12, 32), fnn.TanH(), fnn.FullyConnected(32, 3)],
                                loss=fnn.L2Loss(), seed=0)
    else:
        net = make_net()
    sizes = [1, 2, 7, 31, 64, 100, 257, 9000]            # 9000 rows: more than one inference chunk
    inputs = [rng.standard_normal((sizes[k % len(sizes)], 12)).astype(np.float32) for k in range(25)]
    targets = [rng.standard_normal((len(x), 3)) if regression else rng.integers(0, 5, len(x)) for x in inputs]
    methods = ["predict", "forward", "evaluate"] + ([] if regression else ["predict_proba"])

    def call(method, k):
        if method == "evaluate":
            return net.evaluate(inputs[k], targets[k])
        return getattr(net, method)(inputs[k])

    serial = {(m, k): call(m, k) for m in methods for k in range(len(inputs))}
    got = [[] for _ in range(8)]

    def work(i):
        for c in range(100):
            m, k = methods[(i + c) % len(methods)], (7 * i + c) % len(inputs)
            got[i].append(((m, k), call(m, k)))

    _concurrently(8, work)
    assert sum(len(g) for g in got) == 800
    for results in got:
        for key, value in results:
            expected = serial[key]
            if isinstance(expected, dict):
                assert value == expected, key
            else:
                assert value.dtype == expected.dtype and np.array_equal(value, expected), key


def test_independent_networks_train_concurrently_as_alone():
    X, y = make_data(300)
    configs = [("adam", "auto"), ("momentum", False), ("sgd", "auto"), ("adam", False)]

    def train(opt, fused):
        net = make_net(opt)
        net.fit(X, y, epochs=3, batch_size=16, verbose=0, fused=fused)
        return net._flat_params.copy()

    serial = [train(*c) for c in configs]
    results = [None] * len(configs)

    def work(i):
        results[i] = train(*configs[i])

    _concurrently(len(configs), work)
    for a, b in zip(serial, results):
        assert np.array_equal(a, b)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs NUMBA_NUM_THREADS >= 2")
@pytest.mark.parametrize("batch", [128, 1024], ids=["batch-parallel", "threaded-gemms"])
@pytest.mark.parametrize("meddling", ["fit", "predict", "set_num_threads"])
def test_a_fit_is_bit_identical_whatever_other_threads_do(batch, meddling, restore_threads):
    """A 784-256-10 fit on 2 threads (batch 128: the batch-parallel epoch, whose blocks run one-thread
    GEMMs; batch 1024: the serial epoch around 2-thread GEMMs, for which OpenBLAS rounds otherwise than on
    one) ends with the same bits while another Python thread fits (with multi-threaded GEMMs), predicts,
    or keeps changing the process's thread count. Before the BLAS thread count travelled with each GEMM
    (kernels/_blas.py), the other thread changed it under the fit: weights differed by up to 6e-8."""
    rng = np.random.default_rng(4)
    X, y = rng.standard_normal((2048, 784)).astype(np.float32), rng.integers(0, 10, 2048)

    def train():
        net = make_net("adam", sizes=(784, 256, 10))
        with fnn.num_threads(2):
            net.fit(X, y, epochs=1, batch_size=batch, verbose=0, seed=3)
        return net._flat_params.copy()

    alone = train()
    stop = threading.Event()
    other = make_net("momentum", sizes=(784, 256, 10), seed=1)

    def meddle():
        n = 0
        while not stop.is_set():
            if meddling == "fit":
                with fnn.num_threads(1 + n % 2):
                    other.fit(X[:1024], y[:1024], epochs=1, batch_size=1024, verbose=0)
            elif meddling == "predict":
                with fnn.num_threads(1 + n % 2):
                    other.predict_proba(X)
            else:
                fnn.set_num_threads(1 + n % 2)
            n += 1
    meddler = threading.Thread(target=meddle)
    meddler.start()
    try:
        runs = [train() for _ in range(3)]
    finally:
        stop.set()
        meddler.join()
    for run in runs:
        assert np.array_equal(run, alone), float(np.abs(run - alone).max())


# ------------------------------------------------------------------------------- thread counts as users mean them
MNIST = [784, 256, 128, 10]


def _in_worker(fn):
    """fn() run in a new Python thread (a web server's worker); its result, or its exception re-raised."""
    out = {}

    def run():
        try:
            out["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            out["error"] = exc
    t = threading.Thread(target=run)
    t.start()
    t.join()
    if "error" in out:
        raise out["error"]
    return out["value"]


@pytest.fixture
def restore_threads():
    before = fnn.threads._process_threads
    yield
    fnn.threads._process_threads = before


def test_set_num_threads_holds_in_every_thread(restore_threads):
    fnn.set_num_threads(1)
    assert fnn.get_num_threads() == 1
    assert _in_worker(fnn.get_num_threads) == 1
    # the count that decides a fit's workers and its GEMMs' BLAS threads, read in the worker thread
    assert _in_worker(lambda: fnn.threads.batch_parallel_threads(MNIST, 128, 1 << 16)) == 1
    assert _in_worker(fnn.threads.blas_threads) == 1


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs NUMBA_NUM_THREADS >= 2")
def test_set_num_threads_in_a_worker_governs_the_main_thread(restore_threads):
    fnn.set_num_threads(1)
    _in_worker(lambda: fnn.set_num_threads(2))
    assert fnn.get_num_threads() == 2
    assert fnn.threads.batch_parallel_threads(MNIST, 128, 1 << 16) == 2


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs NUMBA_NUM_THREADS >= 2")
def test_num_threads_block_is_this_threads_only_and_nests(restore_threads):
    fnn.set_num_threads(2)
    seen = []
    with fnn.num_threads(1) as n:
        assert n == 1 and fnn.get_num_threads() == 1
        seen.append(_in_worker(fnn.get_num_threads))        # another thread keeps the process's count
        with fnn.num_threads(2):
            assert fnn.get_num_threads() == 2
        assert fnn.get_num_threads() == 1
    assert fnn.get_num_threads() == 2 and seen == [2]
    with pytest.raises(RuntimeError):                        # restored when the block raises
        with fnn.num_threads(1):
            raise RuntimeError("boom")
    assert fnn.get_num_threads() == 2


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2", None, 10 ** 30, np.float64(2.0)])
def test_bad_thread_counts_are_refused_with_their_name(bad, restore_threads):
    before = fnn.get_num_threads()
    for call in (fnn.set_num_threads, fnn.num_threads):          # num_threads(n) refuses n when made
        with pytest.raises(ValueError, match="n must be"):
            call(bad)
    assert fnn.get_num_threads() == before


def _child_threads(env_changes, code="import fastnn; print(fastnn.get_num_threads())", preexec=None):
    import os
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "FASTNN_NUM_THREADS")}
    env.update(env_changes)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                         preexec_fn=preexec)
    assert out.returncode == 0, out.stderr
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs NUMBA_NUM_THREADS >= 2")
@pytest.mark.parametrize("variable", ["OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                      "FASTNN_NUM_THREADS"])
def test_the_usual_thread_variables_bound_the_default(variable):
    """joblib/loky workers and job schedulers say a process's share in these variables."""
    assert _child_threads({variable: "1"}) == 1


@pytest.mark.skipif(not hasattr(__import__("os"), "sched_setaffinity") or numba.config.NUMBA_NUM_THREADS < 2,
                    reason="needs sched_setaffinity and 2 cores")
def test_the_affinity_mask_bounds_the_default():
    import os
    assert _child_threads({}, preexec=lambda: os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})) == 1


def test_cgroup_quota_is_read_in_whole_cores(monkeypatch, tmp_path):
    import builtins
    files = {"/sys/fs/cgroup/cpu.max": "150000 100000\n"}
    real_open = builtins.open

    def fake_open(path, *args, **kwargs):
        if path in files:
            target = tmp_path / "cpu.max"
            target.write_text(files[path])
            return real_open(target, *args, **kwargs)
        if str(path).startswith("/sys/fs/cgroup"):
            raise FileNotFoundError(path)
        return real_open(path, *args, **kwargs)
    monkeypatch.setattr(builtins, "open", fake_open)
    assert fnn.threads._cgroup_cpu_quota() == 2
    files["/sys/fs/cgroup/cpu.max"] = "max 100000\n"
    assert fnn.threads._cgroup_cpu_quota() is None
    files["/sys/fs/cgroup/cpu.max"] = "garbage"
    assert fnn.threads._cgroup_cpu_quota() is None


# ------------------------------------------------------------------------------------------ fork after any call
_FORK_CHILD = """
import multiprocessing as mp, os, sys, threading
import numpy as np
import fastnn as fnn
from fastnn import threads

def make(sizes, fused_ok=True):
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(fnn.FullyConnected(a, b))
        if i < len(sizes) - 2:
            layers.append(fnn.ReLU())
    return fnn.NeuralNetwork(layers, optimizer=fnn.Adam(lr=1e-3), seed=0)

rng = np.random.default_rng(0)
kind = sys.argv[1]
X = rng.standard_normal((4096, 64)).astype(np.float32)
y = rng.integers(0, 10, 4096)
net = make([64, 256, 512, 10])
if kind == "fit_fused":
    net.fit(X, y, epochs=1, batch_size=64, verbose=0)
elif kind == "fit_batch_parallel":
    threads.batch_parallel_threads = lambda widths, rows, samples: 2
    net.fit(X, y, epochs=1, batch_size=64, verbose=0)
elif kind == "fit_per_layer":
    net.fit(X, y, epochs=1, batch_size=64, verbose=0, fused=False)
elif kind == "predict_in_worker":
    fnn.set_num_threads(1)
    t = threading.Thread(target=lambda: (net.predict_proba(np.tile(X, (2, 1))), net.evaluate(X, y)))
    t.start(); t.join()
elif kind == "predict":
    net.predict_proba(np.tile(X, (2, 1)))
elif kind == "gradcheck":
    fnn.gradcheck(fnn.FullyConnected(5, 3, dtype="float64", seed=0), np.ones((4, 5)))

def child(q):
    small = make([64, 16, 10])
    small.fit(X[:256], y[:256], epochs=1, batch_size=32, verbose=0)
    big = np.tile(X, (2, 1))
    out = []     # the calls that would enter a parallel region: large inputs, in this and in another thread
    t = threading.Thread(target=lambda: out.append(net.predict_proba(big).shape[0]))
    t.start(); t.join()
    out.append(net.predict_proba(big).shape[0])
    q.put(int(small.predict(X[:8]).shape[0]) if out == [len(big)] * 2 else -1)

ctx = mp.get_context("fork")
q = ctx.Queue()
p = ctx.Process(target=child, args=(q,))
p.start()
p.join(60)
if p.is_alive():
    p.kill()
    sys.exit("the forked child hung")
sys.exit(0 if p.exitcode == 0 and q.get(timeout=5) == 8 else f"the forked child failed: exit {p.exitcode}")
"""


@pytest.mark.parametrize("kind", ["fit_fused", "fit_batch_parallel", "fit_per_layer", "predict",
                                  "predict_in_worker", "gradcheck"])
def test_fork_after_any_call_leaves_a_working_child(kind):
    """multiprocessing forks by default on Linux: nothing fastnn started (its workers, BLAS's pool, a
    threading layer) may make the child unsafe."""
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", _FORK_CHILD, kind], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "OpenMP" not in out.stderr, out.stderr[-3000:]
