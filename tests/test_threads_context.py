"""``fnn.num_threads(n)`` blocks as users write them (issue 18 item 3): per asyncio task as well as per thread,
left in any order, one object shared by threads; misuse named in a RuntimeError; the environment variables
that set the default (fastnn's own checked, OMP_THREAD_LIMIT honoured).

Before: the blocks were a thread-local stack of counts — two asyncio tasks of one thread saw each other's
count after an ``await``, leaving blocks out of order popped the wrong count, ``__exit__`` in another thread
raised AttributeError and without ``__enter__`` IndexError; FASTNN_NUM_THREADS=0 / abc was ignored without a
word and OMP_THREAD_LIMIT not at all."""
import asyncio
import os
import subprocess
import sys
import threading

import numba
import numpy as np
import pytest

import fastnn as fnn

needs_two = pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs NUMBA_NUM_THREADS >= 2")


@pytest.fixture(autouse=True)
def restore_threads():
    before = fnn.threads._process_threads
    yield
    fnn.threads._process_threads = before


@needs_two
def test_asyncio_tasks_each_keep_their_own_block():
    fnn.set_num_threads(2)

    async def task(n, seen):
        with fnn.num_threads(n):
            for _ in range(3):
                await asyncio.sleep(0)          # the other task runs here, inside its own block
                seen.append((n, fnn.get_num_threads(), fnn.threads.blas_threads()))

    async def both():
        seen = []
        await asyncio.gather(task(1, seen), task(2, seen), task(1, seen))
        return seen
    seen = asyncio.run(both())
    assert len(seen) == 9 and all(n == got == blas for n, got, blas in seen), seen
    assert fnn.get_num_threads() == 2


@needs_two
def test_blocks_left_out_of_order_keep_the_open_ones():
    fnn.set_num_threads(2)
    outer, inner = fnn.num_threads(1), fnn.num_threads(2)
    outer.__enter__()
    inner.__enter__()
    outer.__exit__(None, None, None)            # the outer block ends first: the inner one is still open
    assert fnn.get_num_threads() == 2
    inner.__exit__(None, None, None)
    fnn.set_num_threads(1)
    a, b = fnn.num_threads(2), fnn.num_threads(1)
    a.__enter__()
    b.__enter__()
    a.__exit__(None, None, None)
    assert fnn.get_num_threads() == 1           # b's
    b.__exit__(None, None, None)
    assert fnn.get_num_threads() == 1           # the process's


@needs_two
def test_one_block_object_nested_and_shared_by_threads():
    fnn.set_num_threads(2)
    one = fnn.num_threads(1)
    with one:
        with one:
            assert fnn.get_num_threads() == 1
        assert fnn.get_num_threads() == 1
    assert fnn.get_num_threads() == 2
    barrier, seen, errors = threading.Barrier(3), [], []

    def worker():
        try:
            with one:
                barrier.wait(timeout=30)        # all three inside the same object's block at once
                seen.append(fnn.get_num_threads())
                barrier.wait(timeout=30)
            seen.append(fnn.get_num_threads())
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
    workers = [threading.Thread(target=worker) for _ in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert not errors, errors
    assert sorted(seen) == [1, 1, 1, 2, 2, 2]


@needs_two
def test_a_block_in_main_is_not_a_worker_threads():
    import concurrent.futures
    fnn.set_num_threads(2)
    with fnn.num_threads(1):
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            assert list(pool.map(lambda _: fnn.get_num_threads(), range(4))) == [2] * 4
        t = threading.Thread(target=lambda: seen.append(fnn.get_num_threads()))
        seen = []
        t.start()
        t.join()
        assert seen == [2] and fnn.get_num_threads() == 1


def test_exit_where_not_entered_is_a_clear_error():
    with pytest.raises(RuntimeError, match="num_threads: __exit__ without a matching __enter__"):
        fnn.num_threads(1).__exit__(None, None, None)
    block = fnn.num_threads(1)
    before = fnn.get_num_threads()
    with block:
        errors = []

        def leave():
            try:
                block.__exit__(None, None, None)
            except RuntimeError as exc:
                errors.append(str(exc))
        t = threading.Thread(target=leave)
        t.start()
        t.join()
        assert len(errors) == 1 and "num_threads" in errors[0]
        assert fnn.get_num_threads() == 1        # still open here
    assert fnn.get_num_threads() == before


@pytest.mark.parametrize("n", [np.int64(1), np.int32(1), np.uint8(1)])
def test_numpy_integer_counts_are_counts(n):
    with fnn.num_threads(n) as got:
        assert got == 1 and fnn.get_num_threads() == 1 and type(fnn.get_num_threads()) is int
    fnn.set_num_threads(n)
    assert fnn.get_num_threads() == 1


# ------------------------------------------------------------------------------------- environment variables
def _child(env_changes, code="import fastnn; print(fastnn.get_num_threads())"):
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_NUM_THREADS", "OMP_THREAD_LIMIT", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                        "FASTNN_NUM_THREADS")}
    env.update(env_changes)
    out = subprocess.run([sys.executable, "-W", "always", "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return int(out.stdout.split()[-1]), out.stderr


@needs_two
@pytest.mark.parametrize("value", ["0", "-1", "1.5", "abc", "two"])
def test_a_bad_fastnn_num_threads_is_named_and_ignored(value):
    default, _ = _child({})
    got, stderr = _child({"FASTNN_NUM_THREADS": value})
    assert got == default
    assert "RuntimeWarning" in stderr and "FASTNN_NUM_THREADS must be a positive integer" in stderr \
        and repr(value) in stderr, stderr


@needs_two
@pytest.mark.parametrize("env, want", [({"OMP_THREAD_LIMIT": "1"}, 1), ({"OMP_NUM_THREADS": "1,2"}, 1),
                                       ({"OMP_NUM_THREADS": "garbage"}, None), ({"FASTNN_NUM_THREADS": "1"}, 1),
                                       ({"FASTNN_NUM_THREADS": "1", "OMP_NUM_THREADS": "2"}, 1)])
def test_thread_variables_set_the_default(env, want):
    default, _ = _child({})
    got, stderr = _child(env)
    assert got == (default if want is None else want)
    assert "FASTNN_NUM_THREADS must be" not in stderr


@needs_two
def test_a_block_as_a_decorator_in_several_threads():
    fnn.set_num_threads(2)

    @fnn.num_threads(1)
    def inside():
        return fnn.get_num_threads()
    seen = []
    workers = [threading.Thread(target=lambda: seen.append(inside())) for _ in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert inside() == 1 and seen == [1, 1, 1] and fnn.get_num_threads() == 2
