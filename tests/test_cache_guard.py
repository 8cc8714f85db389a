"""kernels/_jit.py's on-disk kernel cache at the edges a user meets: damaged files, another signature's or
an older source's entry, a cache directory deleted or replaced mid-process, no writable directory at all.
Every case: the kernel runs and gives the right result, at most one line on stderr, never a traceback —
and a result never depends on whether the cache was warm.

Each case runs in a fresh interpreter with its own empty NUMBA_CACHE_DIR and calls small kernels
(kernels/batch.py's gathers, a fraction of a second to compile), but the one cold/warm fit."""
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

# one kernel, two signatures (float32 and float64 rows), the result checked against numpy; prints
# "<dtype> ok <hits>" per call (hits: signatures this process loaded from the disk cache)
_GATHER = """
    import sys
    import numpy as np
    from fastnn.kernels import batch
    for name in sys.argv[1:]:
        src = np.arange(24, dtype=name).reshape(6, 4)
        order = np.array([5, 0, 3, 1, 4, 2])
        out = np.empty((4, 4), name)
        batch.gather_rows(src, order, 1, out)
        assert np.array_equal(out, src[order[1:5]]), (name, out)
        print(name, "ok", sum(batch.gather_rows.stats.cache_hits.values()), flush=True)
"""


def _python(code, cache, *args, prelude="", **env):
    """Run ``prelude`` + ``code`` in a fresh interpreter with NUMBA_CACHE_DIR=cache (and ``env``): (returncode,
    stdout lines, stderr lines)."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache), **env)
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(prelude) + textwrap.dedent(code), *args],
                         capture_output=True, text=True, timeout=600, env=env)
    return out.returncode, out.stdout.split("\n")[:-1], out.stderr.split("\n")[:-1]


def _entries(cache, suffix):
    files = sorted(pathlib.Path(cache).glob(f"*/batch.gather_rows-*{suffix}"))
    assert files, f"no {suffix} file of gather_rows in the cache"
    return files


def _filled(tmp_path, *dtypes):
    cache = tmp_path / "cache"
    rc, out, err = _python(_GATHER, cache, *dtypes)
    assert rc == 0 and err == [] and out == [f"{d} ok 0" for d in dtypes], (out, err)
    return cache


@pytest.mark.parametrize("damage", ["truncated index", "garbage index", "empty index", "truncated data",
                                    "garbage data", "empty data"])
def test_a_damaged_cache_file_is_compiled_again_and_replaced(tmp_path, damage):
    cache = _filled(tmp_path, "float32")
    which, kind = damage.split()
    for path in _entries(cache, ".nbi" if kind == "index" else ".nbc"):
        data = path.read_bytes()
        path.write_bytes({"truncated": data[:len(data) // 2], "garbage": os.urandom(len(data)),
                          "empty": b""}[which])
    rc, out, err = _python(_GATHER, cache, "float32")
    assert rc == 0 and err == [] and out == ["float32 ok 0"], (out, err)       # compiled again, no traceback
    rc, out, err = _python(_GATHER, cache, "float32")
    assert rc == 0 and err == [] and out == ["float32 ok 1"], (out, err)       # and saved over the damage


def test_an_index_entry_whose_data_file_holds_another_signature_is_a_miss(tmp_path):
    """What two processes saving two signatures of one kernel at the same moment (Numba writes the index and
    the data file one after the other, unlocked) can leave: never call the other signature's code."""
    cache = _filled(tmp_path, "float32", "float64")
    first, second = _entries(cache, ".nbc")
    a, b = first.read_bytes(), second.read_bytes()
    first.write_bytes(b)
    second.write_bytes(a)
    rc, out, err = _python(_GATHER, cache, "float32", "float64")
    assert rc == 0 and err == [] and out == ["float32 ok 0", "float64 ok 0"], (out, err)
    rc, out, err = _python(_GATHER, cache, "float32", "float64")
    assert rc == 0 and err == [] and out == ["float32 ok 1", "float64 ok 2"], (out, err)


def test_a_data_file_of_an_older_source_is_a_miss(tmp_path):
    """A writer killed between the index and the data file (or an upgrade racing a writer) leaves an index of
    the current source naming an older source's data file: its stamp says so."""
    cache = _filled(tmp_path, "float32")
    stale = """
        from numba.core import caching
        from fastnn.kernels import _jit
        real = caching.IndexDataCacheFile._save_data

        def save_data(self, name, data):          # what an older source's process wrote into that file
            tag, stamp, key, payload = data
            real(self, name, (tag, b"an older source", key, payload))

        _jit._KernelCacheFile._save_data = save_data
    """
    for path in _entries(cache, ".nbc"):
        path.unlink()
    rc, out, err = _python(_GATHER, cache, "float32", prelude=stale)      # writes the "older" data file
    assert rc == 0 and err == [] and out == ["float32 ok 0"], (out, err)
    rc, out, err = _python(_GATHER, cache, "float32")
    assert rc == 0 and err == [] and out == ["float32 ok 0"], (out, err)      # not loaded: compiled again


@pytest.mark.parametrize("replaced_by", ["nothing", "a file"])
def test_the_cache_directory_removed_between_two_compiles_of_one_process(tmp_path, replaced_by):
    """The first kernel is saved, the directory removed (or a file put in its place), the second kernel
    compiled: it runs; removed, the directory is made again and it is saved; replaced, one line says the
    cache cannot be written, once however many kernels it could not keep."""
    cache = tmp_path / "cache"
    code = """
        import shutil, sys
        import numpy as np
        from fastnn.kernels import batch
        order = np.arange(5)
        out = np.empty(3)
        batch.gather(np.arange(5.0), order, 1, out)
        shutil.rmtree(sys.argv[1])
        if sys.argv[2] == "a file":
            open(sys.argv[1], "w").close()
        for name in ("float32", "float64", "int64"):
            src = np.arange(24, dtype=name).reshape(6, 4)
            rows = np.empty((4, 4), name)
            batch.gather_rows(src, order, 1, rows)
            assert np.array_equal(rows, src[1:5])
        print(out.tolist())
    """
    rc, out, err = _python(code, cache, str(cache), replaced_by)
    assert rc == 0 and out == ["[1.0, 2.0, 3.0]"], (out, err)
    if replaced_by == "nothing":
        assert err == [] and len(_entries(cache, ".nbc")) == 3
    else:
        assert len(err) == 1 and err[0].startswith("fastnn: Numba's kernel cache cannot be written") and \
            "NUMBA_CACHE_DIR" in err[0], err


def test_no_writable_cache_directory_anywhere(tmp_path):
    """The package's directory read-only (an installed copy), NUMBA_CACHE_DIR and the user's cache directory
    too: importing fastnn says nothing and compiles nothing; the kernels compile and run; one line, once, says
    that they are not kept."""
    no_writes = """
        import errno, tempfile
        def refused(*args, **kwargs):         # every directory's writability probe fails, as on a read-only fs
            raise OSError(errno.EROFS, "Read-only file system")
        tempfile.TemporaryFile = refused
        import fastnn
        import sys
        print("imported", flush=True)
        sys.stderr.flush()
    """
    rc, out, err = _python(_GATHER, tmp_path / "cache", "float32", "float64", prelude=no_writes,
                           HOME=str(tmp_path / "home"), XDG_CACHE_HOME=str(tmp_path / "home" / ".cache"))
    assert rc == 0 and out == ["imported", "float32 ok 0", "float64 ok 0"], (out, err)
    assert len(err) == 1 and err[0].startswith("fastnn: Numba's kernel cache cannot be written") and \
        "NUMBA_CACHE_DIR" in err[0], err


def test_a_fit_gives_the_same_bits_on_an_empty_cache_and_on_the_warm_one(tmp_path):
    """The fused fit (Dropout, sample weights, Adam) and predict in a process that compiles every kernel,
    then in one that loads them all: bit-identical weights, history and predictions."""
    code = """
        import hashlib
        import numpy as np
        import fastnn as fnn
        rng = np.random.default_rng(1)
        X = rng.standard_normal((120, 5)).astype(np.float32)
        y = rng.integers(0, 3, 120)
        net = fnn.NeuralNetwork([fnn.FullyConnected(5, 8), fnn.ReLU(), fnn.Dropout(0.25), fnn.FullyConnected(8, 3)],
                                optimizer=fnn.Adam(lr=0.01), seed=0)
        from numba.core import event
        with event.install_recorder("numba:compile") as compiles:
            history = net.fit(X, y, epochs=2, batch_size=16, verbose=0, sample_weight=np.linspace(0.5, 1, 120))
            arrays = list(net.params) + [np.asarray(history["loss"]), net.predict_proba(X)]
        print(hashlib.sha256(b"".join(np.ascontiguousarray(a).tobytes() for a in arrays)).hexdigest())
        print(len(compiles.buffer))
    """
    cache = tmp_path / "cache"
    rc, cold, err = _python(code, cache)
    assert rc == 0 and err == [], err
    rc, warm, err = _python(code, cache)
    assert rc == 0 and err == [], err
    assert warm[0] == cold[0]
    assert int(cold[1]) > 0 and int(warm[1]) == 0, (cold, warm)      # compiled, then loaded: nothing compiled


# two processes saving two signatures of one kernel at once: each waits at a barrier (a file per process), then
# saves with Numba's index write slowed down, so that without a lock both read the empty index before either
# writes it; prints the signatures this process compiled
_RACE = """
    import os, sys, time
    import numpy as np
    from numba.core import caching
    from fastnn.kernels import batch
    me, other, barrier = sys.argv[1], sys.argv[2], sys.argv[3]
    real = caching.IndexDataCacheFile._save_index

    def slow(self, overloads):
        time.sleep(0.5)
        real(self, overloads)
    caching.IndexDataCacheFile._save_index = slow
    open(os.path.join(barrier, me), "w").close()
    while not os.path.exists(os.path.join(barrier, other)):
        time.sleep(0.01)
    src = np.arange(24, dtype=me).reshape(6, 4)
    out = np.empty((4, 4), me)
    batch.gather_rows(src, np.array([5, 0, 3, 1, 4, 2]), 1, out)
    print(me, "ok", flush=True)
"""


def test_two_processes_saving_one_kernel_at_once_keep_both_entries(tmp_path):
    """Numba's save is read-index, add, write-index, write-data: two processes at once (fastnn compile's
    workers, joblib or MPI ranks) lost one entry (and wrote one data file name twice). The guarded cache locks
    each kernel's index while it saves: both signatures load in a third process."""
    cache, barrier = tmp_path / "cache", tmp_path / "barrier"
    barrier.mkdir()
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache))
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(_RACE), me, other, str(barrier)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for me, other in (("float32", "float64"), ("float64", "float32"))]
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0 and out.endswith(" ok\n") and err == "", err
    rc, out, err = _python(_GATHER, cache, "float32", "float64")
    assert rc == 0 and err == [] and out == ["float32 ok 1", "float64 ok 2"], (out, err)
