"""Crash-safe checkpoints with exact resume: fit(..., checkpoint=PATH, checkpoint_every=N).

The central test is real: a subprocess training with checkpoint_every=1 is killed with SIGKILL at random
moments, several times, and restarted with the same command until it completes; its final weights must be
bit-identical (np.array_equal) to those of an uninterrupted run. A crash inside the checkpoint write itself
must leave the previous checkpoint intact.
"""
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import fastnn as fnn
from fastnn import checkpoint as ckpt
from fastnn import io

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")

OPTIMIZERS = {"sgd": lambda: fnn.SGD(lr=0.05), "momentum": lambda: fnn.SGD(lr=0.05, momentum=0.9),
              "adam": lambda: fnn.Adam(lr=0.01)}


def make_net(opt="adam", sizes=(6, 12, 4), seed=0):
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(fnn.FullyConnected(a, b))
        if i < len(sizes) - 2:
            layers.append(fnn.TanH())
    return fnn.NeuralNetwork(layers, optimizer=OPTIMIZERS[opt](), seed=seed)


def make_data(n=150, features=6, classes=4, seed=1):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, features)).astype(np.float32), rng.integers(0, classes, n)


def same_state(a, b):
    assert np.array_equal(a._flat_params, b._flat_params)
    assert a.optimizer.steps == b.optimizer.steps
    sa, sb = a.optimizer.state or [], b.optimizer.state or []
    assert len(sa) == len(sb)
    for x, y in zip(sa, sb):
        assert all(np.array_equal(u, v) for u, v in zip(x, y))


def same_history(h1, h2):
    assert set(h1) == set(h2)
    for key in h1:
        if key != "time":
            assert h1[key] == h2[key], key


# ------------------------------------------------------------------------------------ in-process resume
@pytest.mark.parametrize("fused", ["auto", False])
@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
def test_resume_is_bit_identical(tmp_path, opt, fused):
    X, y = make_data()
    Xv, yv = make_data(40, seed=5)
    kwargs = dict(batch_size=16, verbose=0, fused=fused, validation_data=(Xv, yv))
    ref = make_net(opt)
    h_ref = ref.fit(X, y, epochs=7, **kwargs)
    path = tmp_path / "run.ckpt"
    first = make_net(opt)
    first.fit(X, y, epochs=3, checkpoint=path, checkpoint_every=2, **kwargs)   # writes after epochs 2 and 3
    assert io.load_metadata(path)["extra"]["checkpoint"]["epoch"] == 3
    resumed = make_net(opt, seed=123)      # other initial weights: all overwritten by the checkpoint
    resumed.seed = 0                       # (the architecture, seed included, must match)
    h = resumed.fit(X, y, epochs=7, checkpoint=path, checkpoint_every=2, **kwargs)
    same_state(ref, resumed)
    same_history(h_ref, h)
    assert len(h["loss"]) == 7 and resumed.history is h
    # the checkpoint after the last epoch holds the final state
    final = fnn.load(path)
    same_state(ref, final)
    # rerunning a finished command changes nothing and returns the history
    again = make_net(opt)
    h2 = again.fit(X, y, epochs=7, checkpoint=path, **kwargs)
    same_state(ref, again)
    same_history(h_ref, h2)


def test_resume_without_shuffle_and_with_seed_none(tmp_path):
    X, y = make_data()
    for shuffle, seed in ((False, 0), (True, None)):
        path = tmp_path / f"{shuffle}-{seed}.ckpt"
        a = make_net()
        a.fit(X, y, epochs=2, batch_size=32, shuffle=shuffle, seed=seed, verbose=0, checkpoint=path)
        b = make_net()
        b.fit(X, y, epochs=4, batch_size=32, shuffle=shuffle, seed=seed, verbose=0, checkpoint=path)
        assert np.isfinite(b._flat_params).all() and len(b.history["loss"]) == 4
        if seed is not None:
            ref = make_net()
            ref.fit(X, y, epochs=4, batch_size=32, shuffle=shuffle, seed=seed, verbose=0)
            same_state(ref, b)


def test_checkpoint_file_contents(tmp_path):
    X, y = make_data()
    path = tmp_path / "c.ckpt"
    net = make_net("momentum")
    net.fit(X, y, epochs=3, batch_size=50, verbose=0, checkpoint=path, seed=7)
    meta = io.load_metadata(path)
    state = meta["extra"]["checkpoint"]
    assert state["epoch"] == 3 and state["partial"] is None and state["version"] == ckpt.VERSION
    assert state["settings"]["batch_size"] == 50 and state["settings"]["seed"] == 7
    rng = np.random.default_rng(7)
    for _ in range(3):
        rng.permutation(len(X))
    assert state["rng"] == rng.bit_generator.state            # the generator's state before epoch 4
    assert meta["optimizer_steps"] == 9 and len(meta["history"]["grad_norm"]) == 3
    json.dumps(meta)                                           # plain JSON, no pickle anywhere
    with open(path, "rb") as f:
        assert b"pickle" not in f.read()


def test_failed_write_leaves_previous_checkpoint(tmp_path, monkeypatch):
    X, y = make_data()
    path = tmp_path / "c.ckpt"
    make_net().fit(X, y, epochs=2, batch_size=32, verbose=0, checkpoint=path)
    before = path.read_bytes()
    real_replace = os.replace

    def failing_replace(src, dst):
        raise OSError(28, "No space left on device (simulated)")

    monkeypatch.setattr(os, "replace", failing_replace)
    net = make_net()
    with pytest.raises(OSError, match="simulated"):
        net.fit(X, y, epochs=5, batch_size=32, verbose=0, checkpoint=path)
    monkeypatch.setattr(os, "replace", real_replace)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["c.ckpt"]            # the temporary file was removed


def dead_pid():
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_stale_temporaries_are_removed(tmp_path):
    """Only a temporary whose writer is provably gone (its pid is not alive) is removed; one with a live
    writer's pid, or without a pid (nothing proves its writer gone), is left alone."""
    X, y = make_data()
    path = tmp_path / "c.ckpt"
    stale = tmp_path / f".c.ckpt.{dead_pid()}.0123456789abcdef.tmp"
    stale.write_bytes(b"half a checkpoint")
    live = tmp_path / f".c.ckpt.{os.getppid()}.0123456789abcdef.tmp"
    live.write_bytes(b"being written")
    unprovable = tmp_path / ".c.ckpt.0123456789abcdef.tmp"
    unprovable.write_bytes(b"x")
    unrelated = tmp_path / ".c.ckpt.notmine.tmp"
    unrelated.write_bytes(b"x")
    make_net().fit(X, y, epochs=1, batch_size=32, verbose=0, checkpoint=path)
    assert not stale.exists() and path.exists()
    assert live.exists() and unprovable.exists() and unrelated.exists()


# ------------------------------------------------------------------------------------ refusing to resume
def _checkpointed(tmp_path, **kwargs):
    X, y = make_data()
    path = tmp_path / "c.ckpt"
    make_net().fit(X, y, epochs=2, batch_size=32, verbose=0, checkpoint=path, **kwargs)
    return X, y, path


@pytest.mark.parametrize("change,words", [
    (lambda X, y: (make_net(sizes=(6, 10, 4)), X, y, {}), "different network"),
    (lambda X, y: (make_net("momentum"), X, y, {}), "different network"),
    (lambda X, y: (make_net(seed=1), X, y, {}), "different network"),
    (lambda X, y: (make_net(), X, y, {"batch_size": 16}), "batch_size"),
    (lambda X, y: (make_net(), X, y, {"seed": 3}), "seed"),
    (lambda X, y: (make_net(), X, y, {"shuffle": False}), "shuffle"),
    (lambda X, y: (make_net(), X, y, {"fused": False}), "fused"),
    (lambda X, y: (make_net(), X * 2, y, {}), "training data"),
    (lambda X, y: (make_net(), X[:-1], y[:-1], {}), "training data"),
    (lambda X, y: (make_net(), X, y, {"validation_data": (X, y)}), "validation"),
    (lambda X, y: (make_net(), X, y, {"epochs": 1}), "beyond epochs=1"),
])
def test_mismatching_checkpoint_is_refused(tmp_path, change, words):
    X, y, path = _checkpointed(tmp_path)
    before = path.read_bytes()
    net, X2, y2, kwargs = change(X, y)
    kwargs = {"batch_size": 32, "epochs": 4, **kwargs}
    weights = net._flat_params.copy()
    with pytest.raises(ValueError, match="checkpoint") as info:
        net.fit(X2, y2, verbose=0, checkpoint=path, **kwargs)
    assert words in str(info.value), str(info.value)
    assert np.array_equal(net._flat_params, weights)            # nothing restored
    assert path.read_bytes() == before                          # nothing overwritten


def test_model_file_or_corrupt_file_is_refused(tmp_path):
    X, y = make_data()
    model = tmp_path / "model.fnn"
    make_net().save(model)
    with pytest.raises(ValueError, match="not a training checkpoint"):
        make_net().fit(X, y, epochs=2, verbose=0, checkpoint=model)
    _, _, path = _checkpointed(tmp_path)
    data = path.read_bytes()
    for bad in (data[:len(data) // 2], b"", b"\x00" * 64, data[:8] + b"[" + data[9:]):
        path.write_bytes(bad)
        with pytest.raises(ValueError, match="checkpoint"):
            make_net().fit(X, y, epochs=4, batch_size=32, verbose=0, checkpoint=path)
    # a tampered training state
    path.write_bytes(data)
    net, meta = io.load_with_metadata(path)
    for key, value in (("epoch", -1), ("rng", {"bit_generator": "PCG64", "state": "x"}),
                       ("partial", {"batches": 99, "loss_sum": 0.0, "correct": 0}), ("version", 99)):
        extra = json.loads(json.dumps(meta["extra"]))
        extra["checkpoint"][key] = value
        io.save(net, path, extra=extra)
        with pytest.raises(ValueError, match="checkpoint"):
            make_net().fit(X, y, epochs=4, batch_size=32, verbose=0, checkpoint=path)


def test_checkpoint_arguments_are_checked(tmp_path):
    net = make_net()
    X, y = make_data()
    for bad, exc in ((123, TypeError), (b"x.ckpt", TypeError), ("", ValueError), (str(tmp_path), ValueError),
                     (str(tmp_path / "missing-dir" / "c.ckpt"), ValueError)):
        with pytest.raises(exc, match="checkpoint"):
            net.fit(X, y, epochs=1, verbose=0, checkpoint=bad)
    for bad in (0, -1, 1.5, True, None):
        with pytest.raises(ValueError, match="checkpoint_every"):
            net.fit(X, y, epochs=1, verbose=0, checkpoint=tmp_path / "c.ckpt", checkpoint_every=bad)

    class Custom(fnn.ReLU):
        pass

    custom = fnn.NeuralNetwork([fnn.FullyConnected(6, 5), Custom(), fnn.FullyConnected(5, 4)], seed=0)
    with pytest.raises(ValueError, match="built-in"):
        custom.fit(X, y, epochs=1, verbose=0, checkpoint=tmp_path / "c.ckpt")
    assert not (tmp_path / "c.ckpt").exists()


def test_thread_count_change_warns(tmp_path, monkeypatch):
    X, y, path = _checkpointed(tmp_path)
    meta = io.load_metadata(path)
    net = fnn.load(path)
    meta["extra"]["checkpoint"]["threads"] = 999
    io.save(net, path, extra=meta["extra"])
    with pytest.warns(RuntimeWarning, match="Numba threads"):
        make_net().fit(X, y, epochs=3, batch_size=32, verbose=0, checkpoint=path)


# ------------------------------------------------------------------------------------ SIGKILL, for real
CHILD = textwrap.dedent("""
    import os, signal, sys, time
    import numpy as np
    import fastnn as fnn

    path, epochs, kind, opt, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
    kill_at_write = int(os.environ.get("KILL_AT_WRITE", "0"))
    if kill_at_write:       # die inside the n-th checkpoint write: after the temporary file, before the rename
        writes = [0]
        real_replace = os.replace

        def replace(src, dst):
            writes[0] += 1
            if writes[0] == kill_at_write:
                os.kill(os.getpid(), signal.SIGKILL)
            return real_replace(src, dst)

        os.replace = replace
    rng = np.random.default_rng(1)
    X = rng.standard_normal((400, 10)).astype(np.float32)
    y = rng.integers(0, 4, 400)

    def make():
        o = {"adam": lambda: fnn.Adam(lr=0.003), "momentum": lambda: fnn.SGD(lr=0.02, momentum=0.9),
             "sgd": lambda: fnn.SGD(lr=0.05)}[opt]()
        return fnn.NeuralNetwork([fnn.FullyConnected(10, 32), fnn.ReLU(), fnn.FullyConnected(32, 32),
                                  fnn.TanH(), fnn.FullyConnected(32, 4)], optimizer=o, seed=0)

    fused = "auto" if kind == "fused" else False
    make().fit(X[:32], y[:32], epochs=1, batch_size=16, verbose=0, fused=fused)   # load/compile the kernels
    print("ready", flush=True)
    start = time.perf_counter()
    net = make()
    net.fit(X, y, epochs=epochs, batch_size=16, verbose=0, fused=fused, checkpoint=path, checkpoint_every=1)
    np.save(out, net._flat_params)
    print("done", time.perf_counter() - start, flush=True)
""")


def _child_env():
    env = dict(os.environ)
    for var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = "1"
    return env


def _start(script, path, epochs, kind, opt, out, env):
    return subprocess.Popen([sys.executable, str(script), str(path), str(epochs), kind, opt, str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _finish(proc, timeout=120):
    stdout, stderr = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"child failed ({proc.returncode}):\n{stdout}\n{stderr}"
    return float(stdout.split("done")[1])


def _checkpoint_epoch(path):
    if not os.path.exists(path):
        return 0
    return io.load_metadata(path)["extra"]["checkpoint"]["epoch"]


KILLS = int(os.environ.get("FASTNN_KILLS", "5"))


@pytest.mark.parametrize("kind,opt", [("fused", "adam"), ("per-layer", "momentum")])
def test_sigkill_at_random_moments_then_resume_is_bit_identical(tmp_path, kind, opt):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = _child_env()
    epochs = 120
    # the uninterrupted run (the same command, another checkpoint file)
    ref = _start(script, tmp_path / "ref.ckpt", epochs, kind, opt, tmp_path / "ref.npy", env)
    duration = _finish(ref)
    expected = np.load(tmp_path / "ref.npy")

    seed = int.from_bytes(os.urandom(4), "little")
    rand = random.Random(seed)
    path, out = tmp_path / "run.ckpt", tmp_path / "run.npy"
    killed, progress, in_write = 0, [], 0
    for _ in range(KILLS):
        proc = _start(script, path, epochs, kind, opt, out, env)
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        time.sleep(rand.uniform(0.0, 1.5 * duration / KILLS))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed += 1
        proc.communicate()
        progress.append(_checkpoint_epoch(path))
        in_write += any(name.endswith(".tmp") for name in os.listdir(tmp_path))
        if proc.returncode == 0:
            break
    final = _start(script, path, epochs, kind, opt, out, env)
    final.stdout.readline()
    _finish(final)
    got = np.load(out)
    assert np.array_equal(got, expected), (
        f"resumed weights differ from the uninterrupted run (random seed {seed}; checkpoint epochs after "
        f"each kill: {progress}; max abs diff {np.abs(got - expected).max()})")
    assert killed >= min(3, KILLS), f"only {killed} kills landed during training ({progress}, seed {seed})"
    assert progress == sorted(progress), progress
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]   # cleaned on restart
    print(f"\n{kind}/{opt}: survived {killed} SIGKILLs (checkpoint epochs {progress}, {in_write} inside a "
          f"checkpoint write; seed {seed})")


def test_sigkill_inside_the_checkpoint_write_keeps_the_previous_one(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = _child_env()
    epochs = 12
    ref = _start(script, tmp_path / "ref.ckpt", epochs, "fused", "sgd", tmp_path / "ref.npy", env)
    _finish(ref)
    path, out = tmp_path / "run.ckpt", tmp_path / "run.npy"
    for kill_at, epoch_before in ((4, 3), (2, 4), (3, 6)):   # each restart dies at its n-th write
        proc = _start(script, path, epochs, "fused", "sgd", out, dict(env, KILL_AT_WRITE=str(kill_at)))
        proc.communicate(timeout=120)
        assert proc.returncode == -signal.SIGKILL
        assert _checkpoint_epoch(path) == epoch_before         # the previous checkpoint, intact and loadable
        fnn.load(path)
        assert any(name.endswith(".tmp") for name in os.listdir(tmp_path))   # the write that died
    final = _start(script, path, epochs, "fused", "sgd", out, env)
    final.stdout.readline()
    _finish(final)
    assert np.array_equal(np.load(out), np.load(tmp_path / "ref.npy"))
