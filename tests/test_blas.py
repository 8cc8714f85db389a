"""The BLAS the kernels call (kernels/_blas.py): which one it is, that its GEMMs are right, and that
several Python threads may run them at once.

Error bound of a GEMM (Higham, Accuracy and Stability of Numerical Algorithms, 3.5): each entry of
C = A·B computed in floating point is within gamma_k * sum_p |a_ip| |b_pj| of the exact one, gamma_k =
k*eps / (1 - k*eps) ~ k*eps for sums of k products. The reference (float64 matmul of the same data) adds
its own error, far smaller for float32 data and of the same order for float64; alpha, beta·C and the
reference add a few more roundings each. So the tests allow 4 * k * eps * (|alpha| |A||B| + |beta| |C|),
entrywise; a wrong stride, transpose or row slice gives errors of O(|A||B|) itself.
"""
import importlib.metadata
import importlib.util
import os
import subprocess
import sys
import threading

import numba
import numpy as np
import pytest

from fastnn.kernels import _blas

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WHEEL = importlib.util.find_spec("scipy_openblas32") is not None


@numba.njit(nogil=True)
def _gemm(alpha, a, trans_a, b, trans_b, beta, c, threads):
    _blas.gemm(alpha, a, trans_a, b, trans_b, beta, c, threads)


@numba.njit(nogil=True)
def _gemm_rows(alpha, a, ra, b, rb, beta, c, rc):
    """The GEMM on the first rows of a, b and c: row slices, whose leading dimension is the full width."""
    _blas.gemm(alpha, a[:ra], False, b[:rb], False, beta, c[:rc], 0)


@numba.njit(nogil=True)
def _repeat_gemm(a, b, c, out, times):
    """``times`` GEMMs c = a·b on one BLAS thread, each result copied into out[i]."""
    for i in range(times):
        _blas.gemm(1.0, a, False, b, False, 0.0, c, 1)
        out[i] = c


def _bound(dtype, k, alpha, a, b, beta, c):
    eps = np.finfo(dtype).eps
    a, b, c = (np.abs(x.astype(np.float64)) for x in (a, b, c))
    return 4 * max(k, 1) * eps * (abs(alpha) * (a @ b) + abs(beta) * c) + np.finfo(dtype).tiny


def _check(dtype, m, n, k, trans_a, trans_b, alpha, beta, seed, threads=1):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(dtype)
    c = rng.standard_normal((m, n)).astype(dtype)
    op_a, op_b = (a.T if trans_a else a), (b.T if trans_b else b)
    want = alpha * (op_a.astype(np.float64) @ op_b.astype(np.float64)) + beta * c.astype(np.float64)
    got = c.copy()
    _gemm(alpha, a, trans_a, b, trans_b, beta, got, threads)
    assert np.all(np.abs(got - want) <= _bound(dtype, k, alpha, op_a, op_b, beta, c))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m,n,k", [(200, 100, 100), (64, 64, 128), (128, 256, 784), (32, 16, 16), (1, 1, 1),
                                   (7, 3, 513), (300, 1, 50), (1, 300, 50)])
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("threads", [1, 2])
def test_gemm_agrees_with_matmul(dtype, m, n, k, trans_a, trans_b, threads):
    """On one thread (the serial copy) and on two (the shared instance, the GEMMs large enough)."""
    _check(dtype, m, n, k, trans_a, trans_b, 1.0, 0.0, seed=m * 7 + n * 3 + k, threads=threads)
    _check(dtype, m, n, k, trans_a, trans_b, -0.01, 1.0, seed=m + n + k, threads=threads)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gemm_on_row_slices(dtype):
    """Row slices of wider arrays: lda/ldb/ldc are the parents' widths, only the first rows change."""
    rng = np.random.default_rng(3)
    a, b, c = (rng.standard_normal(s).astype(dtype) for s in ((90, 40), (40, 30), (90, 30)))
    for ra, rc in ((90, 90), (17, 17), (1, 1)):
        got = c.copy()
        _gemm_rows(0.5, a, ra, b, 40, 2.0, got, rc)
        want = 0.5 * (a[:ra].astype(np.float64) @ b.astype(np.float64)) + 2.0 * c[:rc].astype(np.float64)
        assert np.all(np.abs(got[:rc] - want) <= _bound(dtype, 40, 0.5, a[:ra], b, 2.0, c[:rc]))
        np.testing.assert_array_equal(got[rc:], c[rc:])


def test_which_blas():
    """With scipy-openblas32 installed (a dependency), the kernels call it, and it is new enough."""
    assert _blas.BLAS_NAME and _blas.BLAS_SOURCE in ("scipy-openblas32", "scipy")
    if os.environ.get("FASTNN_BLAS", "").lower() == "scipy":
        assert _blas.BLAS_SOURCE == "scipy"
        return
    if not WHEEL:
        pytest.skip("scipy-openblas32 is not installed: the kernels call SciPy's BLAS")
    assert _blas.BLAS_SOURCE == "scipy-openblas32", importlib.metadata.version("scipy-openblas32")
    assert _blas.BLAS_VERSION >= _blas.MIN_OPENBLAS == (0, 3, 34)
    assert _blas.BLAS_CONFIG.startswith("OpenBLAS 0.3.") and "scipy_openblas32" in _blas.BLAS_LIBRARY
    assert _blas.PER_CALL_THREADS


def test_openblas_coretype_is_honoured():
    """OPENBLAS_CORETYPE picks the kernel family of the kernels' BLAS too (the tests run with and without it)."""
    if _blas.BLAS_VERSION is None:
        pytest.skip("not an OpenBLAS")
    code = "from fastnn.kernels import _blas; print(_blas.BLAS_NAME)"
    env = dict(os.environ, OPENBLAS_CORETYPE="Haswell", PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "Haswell" in out.stdout and _blas.BLAS_SOURCE in out.stdout


def test_thread_count_control():
    """set_num_threads reaches the shared instance of the kernels' BLAS (for other callers of it: the
    kernels give each GEMM its count), never the serial copy, which threadpoolctl does not see."""
    import fastnn
    if not _blas.PER_CALL_THREADS or _blas.get_blas_threads() is None:
        pytest.skip("this BLAS has no thread control")
    before = fastnn.threads.get_num_threads()
    try:
        assert _blas.set_blas_threads(1) and _blas.get_blas_threads() == 1
        fastnn.set_num_threads(1)
        assert _blas.get_blas_threads() == 1
        if numba.config.NUMBA_NUM_THREADS >= 2:
            fastnn.set_num_threads(2)
            assert _blas.get_blas_threads() == 2
        if _blas.concurrent_one_thread_gemms() and _blas._serial["copy"] is not None:
            get = _blas._address(_blas._serial["copy"]["lib"], "scipy_openblas_get_num_threads",
                                 "openblas_get_num_threads")
            import ctypes
            assert ctypes.CFUNCTYPE(ctypes.c_int)(get)() == 1
            try:
                from threadpoolctl import threadpool_info
            except ImportError:
                return
            assert not any("/proc/self/fd" in str(info.get("filepath")) for info in threadpool_info())
    finally:
        fastnn.set_num_threads(before)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_concurrent_gemms_match_serial(dtype):
    """Four Python threads (the kernel releases the GIL) each run a few hundred single-threaded GEMMs at the
    same time; every result must equal the serial one bit for bit (same data, same BLAS thread count, so the
    same operations in the same order). A race between concurrent level-3 calls (OpenBLAS < 0.3.34 had
    such) would show as a differing or garbage result."""
    rng = np.random.default_rng(5)
    shapes = [(200, 100, 100), (64, 128, 64), (128, 784, 256), (32, 16, 16)]
    jobs = [(rng.standard_normal((m, k)).astype(dtype), rng.standard_normal((k, n)).astype(dtype))
            for m, k, n in shapes]
    times = 200
    serial = []
    for a, b in jobs:
        c = np.empty((a.shape[0], b.shape[1]), dtype)
        _gemm(1.0, a, False, b, False, 0.0, c, 1)
        serial.append(c)
    outs = [np.zeros((times,) + s.shape, dtype) for s in serial]
    errors = []

    def work(i):
        try:
            a, b = jobs[i]
            _repeat_gemm(a, b, np.empty_like(serial[i]), outs[i], times)
        except BaseException as e:      # noqa: BLE001 - reported by the main thread
            errors.append(e)
    _repeat_gemm(*jobs[0], np.empty_like(serial[0]), outs[0][:1], 1)     # compile before the race
    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for want, got in zip(serial, outs):
        bad = [i for i in range(times) if not np.array_equal(got[i], want)]
        assert not bad, f"{len(bad)} of {times} concurrent GEMMs differ from the serial result"


def test_fallback_to_scipy_blas():
    """FASTNN_BLAS=scipy: the kernels call SciPy's own BLAS (the path taken without the wheel), and are right."""
    code = ("import numpy as np, numba\n"
            "from fastnn.kernels import _blas\n"
            "@numba.njit\n"
            "def mm(a, b, c):\n"
            "    _blas.gemm(1.0, a, False, b, False, 0.0, c, 2)\n"
            "a = np.arange(12.0, dtype=np.float32).reshape(3, 4); b = np.ones((4, 2), np.float32)\n"
            "c = np.empty((3, 2), np.float32); mm(a, b, c)\n"
            "assert np.array_equal(c, a @ b), c\n"
            "print(_blas.BLAS_SOURCE, _blas.PER_CALL_THREADS, _blas.BLAS_NAME)\n")
    env = dict(os.environ, FASTNN_BLAS="scipy", PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("scipy True")


@numba.njit(nogil=True)
def _repeat_gemm_on(a, b, c, out, times, threads):
    """``times`` GEMMs c = a·b with ``threads`` as the GEMM's thread count, each result copied into out[i]."""
    for i in range(times):
        _blas.gemm(1.0, a, False, b, False, 0.0, c, threads)
        out[i] = c


@pytest.mark.parametrize("threads", [0, 1, 2])
def test_a_gemms_count_is_its_own_whatever_other_threads_set(threads):
    """OpenBLAS rounds a row differently on 1 and on 2 threads (measured: 128x784x256 sgemm, 4e-5): a
    GEMM's result must depend on the count it was given only (<= 1: one thread), while another thread
    keeps changing the shared instance's count (set_blas_threads, as fastnn.set_num_threads and
    threadpoolctl do) and runs GEMMs with other counts. Before, a count <= 0 meant "the shared count"
    (what the batch-parallel epoch used after setting it to 1 once), and other threads changed it."""
    if not _blas.PER_CALL_THREADS:
        pytest.skip("this BLAS has no thread control")
    _blas.concurrent_one_thread_gemms()     # (the copy; without it: tests/test_threads.py's subprocess case)
    rng = np.random.default_rng(11)
    a, b = rng.standard_normal((128, 784)).astype(np.float32), rng.standard_normal((784, 256)).astype(np.float32)
    times = 60
    alone = np.empty((1, 128, 256), np.float32)
    _blas.set_blas_threads(1)
    _repeat_gemm_on(a, b, np.empty((128, 256), np.float32), alone, 1, threads)
    out = np.zeros((times, 128, 256), np.float32)
    stop = threading.Event()

    def meddle():
        other = np.empty((4, 128, 256), np.float32)
        n = 0
        while not stop.is_set():
            _blas.set_blas_threads(1 + n % 2)
            _repeat_gemm_on(a, b, np.empty((128, 256), np.float32), other, 4, 1 if threads == 2 else 2)
            n += 1
    meddler = threading.Thread(target=meddle)
    meddler.start()
    try:
        _repeat_gemm_on(a, b, np.empty((128, 256), np.float32), out, times, threads)
    finally:
        stop.set()
        meddler.join()
        _blas.set_blas_threads(1)
    bad = [i for i in range(times) if not np.array_equal(out[i], alone[0])]
    assert not bad, f"{len(bad)} of {times} GEMMs on {threads} thread(s) differ from the same GEMM alone"


def test_the_serial_copy_is_loaded_on_first_need_only():
    """Importing fastnn and a main-thread fit that does not split its batches leave the copy unloaded
    (~30 ms of a warm start); a fit in another thread loads it."""
    code = ("import threading, numpy as np, fastnn as fnn\n"
            "from fastnn.kernels import _blas\n"
            "net = fnn.NeuralNetwork([fnn.FullyConnected(4, 3)], optimizer=fnn.SGD(lr=0.1))\n"
            "X, y = np.ones((32, 4), np.float32), np.arange(32) % 3\n"
            "net.fit(X, y, epochs=1, verbose=0)\n"
            "print(_blas._serial['tried'])\n"
            "t = threading.Thread(target=lambda: net.fit(X, y, epochs=1, verbose=0)); t.start(); t.join()\n"
            "print(_blas._serial['tried'])\n")
    out = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "True" if _blas.PER_CALL_THREADS else "False"]


def test_without_the_serial_copy():
    """FASTNN_BLAS_SERIAL_COPY=0 (what a platform without memfd_create gets): one-thread GEMMs go through
    the shared instance under the lock; still right, and the fused kernel does not split batches."""
    code = ("import numpy as np, numba, fastnn\n"
            "from fastnn.kernels import _blas\n"
            "@numba.njit(nogil=True)\n"
            "def mm(a, b, c, t):\n"
            "    _blas.gemm(1.0, a, False, b, False, 0.0, c, t)\n"
            "a = np.arange(12.0, dtype=np.float32).reshape(3, 4); b = np.ones((4, 2), np.float32)\n"
            "for t in (1, 2):\n"
            "    c = np.empty((3, 2), np.float32); mm(a, b, c, t)\n"
            "    assert np.array_equal(c, a @ b), c\n"
            "import threading\n"           # the locked one-thread path holds its count against a meddler
            "rng = np.random.default_rng(11)\n"
            "a = rng.standard_normal((128, 784)).astype(np.float32)\n"
            "b = rng.standard_normal((784, 256)).astype(np.float32)\n"
            "_blas.set_blas_threads(1); alone = np.empty((128, 256), np.float32); mm(a, b, alone, 1)\n"
            "stop = []\n"
            "def meddle():\n"
            "    n = 0\n"
            "    while not stop:\n"
            "        _blas.set_blas_threads(1 + n % 2); n += 1\n"
            "m = threading.Thread(target=meddle); m.start()\n"
            "try:\n"
            "    for i in range(40):\n"
            "        c = np.empty((128, 256), np.float32); mm(a, b, c, 1)\n"
            "        assert np.array_equal(c, alone), i\n"
            "finally:\n"
            "    stop.append(1); m.join()\n"
            "print(_blas.concurrent_one_thread_gemms(),\n"
            "      fastnn.threads.batch_parallel_threads([784, 256, 10], 1024, 60000))\n")
    env = dict(os.environ, FASTNN_BLAS_SERIAL_COPY="0", PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "1"]


def test_the_kernels_library_loads_with_a_short_spin_and_gives_the_environment_back(monkeypatch):
    """OpenBLAS's threads spin 2**28 cycles (~0.1 s) after a parallel call by default, taking a core from the
    batch-parallel kernel's workers right after a predict: fastnn loads its library with a short timeout
    (BLAS_THREAD_TIMEOUT), unless the user set one, and leaves the environment as it found it."""
    import os
    import subprocess
    import sys
    from fastnn.kernels import _blas
    monkeypatch.delenv("OPENBLAS_THREAD_TIMEOUT", raising=False)
    with _blas._short_spin():
        assert os.environ["OPENBLAS_THREAD_TIMEOUT"] == _blas.BLAS_THREAD_TIMEOUT
    assert "OPENBLAS_THREAD_TIMEOUT" not in os.environ
    monkeypatch.setenv("OPENBLAS_THREAD_TIMEOUT", "24")
    with _blas._short_spin():
        assert os.environ["OPENBLAS_THREAD_TIMEOUT"] == "24"          # the user's own
    assert os.environ["OPENBLAS_THREAD_TIMEOUT"] == "24"
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    out = subprocess.run([sys.executable, "-c", "import os, fastnn, fastnn.kernels._blas as b; "
                          "print(b.is_kernels_library, 'OPENBLAS_THREAD_TIMEOUT' in os.environ)"],
                         capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0 and out.stdout.strip().endswith("False"), out.stderr
