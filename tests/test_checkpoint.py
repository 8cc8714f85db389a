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
from fastnn.errors import TrainingInterrupted
from tests.helpers import make_data, make_net, same_history, same_state

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")



# ------------------------------------------------------------------------------------ in-process resume
@pytest.mark.parametrize("fused", ["auto", False])
@pytest.mark.parametrize("opt", ["adam", "momentum", "sgd"])
def test_resume_is_bit_identical(tmp_path, opt, fused):
    X, y = make_data()
    Xv, yv = make_data(40, seed=5)
    kwargs = dict(batch_size=16, verbose=0, fused=fused, validation_data=(Xv, yv))
    ref = make_net(opt=opt)
    h_ref = ref.fit(X, y, epochs=7, **kwargs)
    path = tmp_path / "run.ckpt"
    first = make_net(opt=opt)
    first.fit(X, y, epochs=3, checkpoint=path, checkpoint_every=2, **kwargs)   # writes after epochs 2 and 3
    assert io.load_metadata(path)["extra"]["checkpoint"]["epoch"] == 3
    # a restarted script: a network in the state the checkpoint's run started from (another one is refused:
    # test_a_network_trained_since_is_not_overwritten)
    resumed = make_net(opt=opt)
    h = resumed.fit(X, y, epochs=7, checkpoint=path, checkpoint_every=2, **kwargs)
    same_state(ref, resumed)
    same_history(h_ref, h)
    assert len(h["loss"]) == 7 and resumed.history is h
    # the checkpoint after the last epoch holds the final state
    final = fnn.load(path)
    same_state(ref, final)
    # rerunning a finished command changes nothing and returns the history
    again = make_net(opt=opt)
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
    net = make_net(opt="momentum")
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
    (lambda X, y: (make_net(opt="momentum"), X, y, {}), "different network"),
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
    for bad in (0, -1, 1.5, True):      # None is the default policy (checkpoint.Store.due)
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
    with pytest.warns(RuntimeWarning, match="written with 999 threads"):
        make_net().fit(X, y, epochs=3, batch_size=32, verbose=0, checkpoint=path)


@pytest.mark.parametrize("bad", [0, -1, "x", None, 2.5, True, [2]])
def test_a_bad_thread_count_is_informational(tmp_path, bad):
    """G7: "threads" only explains last-bit differences; a value that is not a positive int resumes with
    a warning about "an unknown number of" threads, never an error (10**9 is reported as written)."""
    X, y, path = _checkpointed(tmp_path)
    meta = io.load_metadata(path)
    net = fnn.load(path)
    meta["extra"]["checkpoint"]["threads"] = bad
    io.save(net, path, extra=meta["extra"])
    with pytest.warns(RuntimeWarning, match="written with an unknown number of threads"):
        make_net().fit(X, y, epochs=3, batch_size=32, verbose=0, checkpoint=path)


def test_history_values_share_the_model_files_check():
    """G6: one validator for model files and checkpoints."""
    assert ckpt.check_history_values is io.check_history_values


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


# ------------------------------------------------------- everything a resume depends on (issue 20 class 4)
class SigintAt:
    """Sends this process SIGINT at the end of epoch ``epoch`` (None: never): the loop finishes the epoch,
    writes the checkpoint and raises TrainingInterrupted, as Ctrl-C in a notebook does."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, epoch, history):
        if epoch == self.epoch:
            signal.raise_signal(signal.SIGINT)


class AddsKey:
    """A callback in the Keras habit: adds its own history key (from epoch 2 on)."""

    def on_epoch_end(self, epoch, history):
        if epoch >= 2:
            history.setdefault("twice_loss", []).append(2 * history["loss"][-1])


def _early():
    return fnn.callbacks.EarlyStopping(monitor="val_loss", patience=3, restore_best_weights=True)


RESUMABLE = {
    "early_stopping": dict(callbacks=_early),
    "early_stopping_acc": dict(callbacks=lambda: fnn.callbacks.EarlyStopping(monitor="accuracy", patience=2,
                                                                             min_delta=0.5)),
    "history_key": dict(callbacks=AddsKey),
    "plateau": dict(lr_schedule=lambda: fnn.schedules.ReduceLROnPlateau(patience=1, factor=0.5)),
    "step": dict(lr_schedule=lambda: fnn.schedules.StepLR(2, 0.5)),
    "exponential": dict(lr_schedule=lambda: fnn.schedules.ExponentialLR(0.8)),
    "cosine": dict(lr_schedule=lambda: fnn.schedules.CosineAnnealingLR(5, eta_min=1e-4)),
    "invscaling": dict(lr_schedule=lambda: fnn.schedules.InverseScaling(0.5)),
}


def _resumable_fit(net, X, y, path, kind, stop_at, epochs=10, fused="auto"):
    spec = RESUMABLE[kind]
    cbs = [spec["callbacks"]()] if "callbacks" in spec else []
    schedule = spec["lr_schedule"]() if "lr_schedule" in spec else None
    Xv, yv = make_data(n=60, seed=9)
    h = net.fit(X, y, epochs=epochs, batch_size=32, verbose=0, fused=fused, checkpoint=path,
                validation_data=(Xv, yv), lr_schedule=schedule, callbacks=cbs + [SigintAt(stop_at)])
    return h, cbs


@pytest.mark.parametrize("fused", ["auto", False])
@pytest.mark.parametrize("kind", sorted(RESUMABLE))
def test_interrupted_then_the_same_call_again_equals_the_uninterrupted_fit(tmp_path, default_sigint, kind, fused):
    """Ctrl-C after epoch 3, then the same call in the same process (a notebook), then a third with a fresh
    network (a new process): all equal the uninterrupted fit bit for bit — weights, optimizer, rate,
    history (with the key a callback adds), EarlyStopping's best / wait / restored weights."""
    X, y = make_data(n=200)
    ref = make_net()
    h_ref, cb_ref = _resumable_fit(ref, X, y, tmp_path / "ref.ckpt", kind, None, fused=fused)
    for fresh in (False, True):
        net, path = make_net(), tmp_path / f"run{fresh}.ckpt"
        with pytest.raises(TrainingInterrupted):
            _resumable_fit(net, X, y, path, kind, 3, fused=fused)
        if fresh:
            net = make_net()
        h, cbs = _resumable_fit(net, X, y, path, kind, None, fused=fused)
        same_state(net, ref)
        assert net.optimizer.lr == ref.optimizer.lr
        same_history(h, h_ref)
        for a, b in zip(cbs, cb_ref):
            if isinstance(a, fnn.callbacks.EarlyStopping):
                assert (a.best, a.best_epoch, a.wait, a.stopped_epoch) == (b.best, b.best_epoch, b.wait,
                                                                           b.stopped_epoch)
        again, _ = _resumable_fit(make_net(), X, y, path, kind, None, fused=fused)    # a finished run
        same_history(again, h_ref)


def _rewrite(path, change):
    """Rewrite the checkpoint at ``path`` after ``change(history, state)`` edits its metadata, in the file's
    header as a hostile writer would (fastnn's own writer refuses a history that a reader would refuse)."""
    from tests.helpers import edit_meta
    edit_meta(path, lambda meta: change(meta["history"], meta["extra"]["checkpoint"]))


@pytest.mark.parametrize("change, words", [
    (lambda h, s: h["loss"].__setitem__(0, float("nan")), r"history\['loss'\]\[0\] is nan"),
    (lambda h, s: h["loss"].__setitem__(1, -3.0), r"history\['loss'\]\[1\] is -3.0"),
    (lambda h, s: h["accuracy"].__setitem__(0, 7.5), r"history\['accuracy'\]\[0\] is 7.5.*\[0, 1\]"),
    (lambda h, s: h["val_accuracy"].__setitem__(0, -0.1), r"history\['val_accuracy'\]"),
    (lambda h, s: h["lr"].__setitem__(0, 0.0), r"history\['lr'\]\[0\] is 0.0"),
    (lambda h, s: h["time"].__setitem__(0, float("inf")), r"history\['time'\]"),
    (lambda h, s: h["grad_norm"].__setitem__(0, [1.0, -2.0]), r"history\['grad_norm'\]"),
    (lambda h, s: h.__setitem__("mine", [float("nan")]), r"history\['mine'\]"),
    (lambda h, s: h.__setitem__("mine", [1.0] * 9), r"history\['mine'\] has 9"),
    (lambda h, s: h.pop("val_loss"), "lack"),
    (lambda h, s: s.__setitem__("lr", -1.0), "lr must be"),
    (lambda h, s: s.__setitem__("stopped", "yes"), "stopped"),
    (lambda h, s: s["callbacks"][0]["state"].__setitem__("wait", -1), "EarlyStopping.*wait"),
    (lambda h, s: s["callbacks"][0]["state"].__setitem__("best", "zz"), "EarlyStopping.*best"),
    (lambda h, s: s["callbacks"][0]["state"].__setitem__("best_weights", None), "best weights"),
    (lambda h, s: s["callbacks"][0]["state"]["best_weights"][0].__setitem__("shape", [2, 2]), "EarlyStopping"),
    (lambda h, s: s["callbacks"][0].__setitem__("config", {"patience": 99}), "callbacks"),
    (lambda h, s: s.__setitem__("callbacks", []), "callbacks"),
])
def test_a_hostile_training_state_is_refused_clearly(tmp_path, default_sigint, change, words):
    X, y = make_data(n=200)
    net, path = make_net(), tmp_path / "c.ckpt"
    with pytest.raises(TrainingInterrupted):
        _resumable_fit(net, X, y, path, "early_stopping", 3)
    _rewrite(path, change)
    net = make_net()
    before = [p.copy() for p in net.params]
    with pytest.raises(ValueError, match=words):
        _resumable_fit(net, X, y, path, "early_stopping", None)
    assert all(np.array_equal(p, q) for p, q in zip(before, net.params))      # nothing restored


def test_a_history_value_a_checkpoint_cannot_hold_is_refused_clearly(tmp_path):
    X, y = make_data()
    net = make_net()

    class Text:
        def on_epoch_end(self, epoch, history):
            history.setdefault("note", []).append("fine")
    with pytest.raises((TypeError, ValueError), match=r"history\['note'\].*'fine'"):
        net.fit(X, y, epochs=2, verbose=0, checkpoint=tmp_path / "c.ckpt", callbacks=[Text()])


def test_a_stopped_fit_is_finished_when_run_again(tmp_path):
    """EarlyStopping stopped the fit: running the same call again trains nothing more and restores the
    same best weights (it used to train on from the checkpoint)."""
    X, y = make_data(n=200)
    Xv, yv = make_data(n=60, seed=9)
    runs = []
    for _ in range(2):
        net, cb = make_net(opt="sgd", lr=2.0), fnn.callbacks.EarlyStopping(patience=1)
        h = net.fit(X, y, epochs=30, verbose=0, checkpoint=tmp_path / "c.ckpt", validation_data=(Xv, yv),
                    callbacks=[cb])
        runs.append((net, h, cb))
    (a, ha, ca), (b, hb, cb) = runs
    assert ca.stopped_epoch and len(ha["loss"]) == ca.stopped_epoch < 30
    same_history(ha, hb)
    assert all(np.array_equal(p, q) for p, q in zip(a.params, b.params))


def test_default_policy_writes_by_cost_and_always_at_the_end(tmp_path, monkeypatch):
    """checkpoint_every=None: a write after epoch e only when the time since the last write is at least
    COST_RATIO x the last write's cost (and MIN_INTERVAL); always after the last epoch."""
    X, y = make_data()
    epochs_written = []
    real = ckpt.write

    def spy(path, net, epoch, *args, **kwargs):
        epochs_written.append(epoch)
        return real(path, net, epoch, *args, **kwargs)
    monkeypatch.setattr(ckpt, "write", spy)
    monkeypatch.setattr(ckpt, "MIN_INTERVAL", 3600.0)          # no epoch is 'due' by time
    make_net().fit(X, y, epochs=20, verbose=0, checkpoint=tmp_path / "a.ckpt")
    assert epochs_written == [20]
    epochs_written.clear()
    monkeypatch.setattr(ckpt, "MIN_INTERVAL", 0.0)
    monkeypatch.setattr(ckpt, "COST_RATIO", 0.0)               # every epoch is due
    make_net().fit(X, y, epochs=5, verbose=0, checkpoint=tmp_path / "b.ckpt")
    assert epochs_written == [1, 2, 3, 4, 5]
    epochs_written.clear()
    monkeypatch.setattr(ckpt, "MIN_INTERVAL", 3600.0)
    make_net().fit(X, y, epochs=6, verbose=0, checkpoint=tmp_path / "c.ckpt", checkpoint_every=2)
    assert epochs_written == [2, 4, 6]                          # an explicit N means every N epochs


def _readme_net():
    return fnn.NeuralNetwork([fnn.FullyConnected(6, 32), fnn.GELU(), fnn.Dropout(0.2), fnn.FullyConnected(32, 4)],
                             loss=fnn.SoftmaxCrossEntropy(), optimizer=fnn.AdamW(lr=3e-3, weight_decay=1e-2),
                             seed=0)


class SigintAtLoss:
    """SIGINT during the n-th batch's loss of the per-layer engine: a Ctrl-C mid-epoch."""

    def __init__(self, net, n):
        forward, self.count = net.loss.forward_unchecked, [0]

        def wrapped(*args):
            self.count[0] += 1
            if self.count[0] == n:
                signal.raise_signal(signal.SIGINT)
            return forward(*args)
        net.loss.forward_unchecked = wrapped


@pytest.mark.parametrize("fused, at", [("auto", None), (False, None), (False, 23)])
def test_the_readme_keras_example_with_a_checkpoint_resumes_exactly(tmp_path, default_sigint, fused, at):
    """README's example (AdamW, Dropout, cosine schedule, validation_split, EarlyStopping restoring the best
    weights) with checkpoint=: Ctrl-C after epoch 4 (or mid-epoch, batch 23) and the same call again ends
    as the uninterrupted fit — same epochs trained, same best epoch, same restored weights."""
    X, y = make_data(n=300)

    def fit(net, path, stop_epoch=None):
        early = fnn.callbacks.EarlyStopping(monitor="val_loss", patience=3)
        return net.fit(X, y, epochs=40, batch_size=32, validation_split=0.2, verbose=0, fused=fused,
                       lr_schedule=fnn.schedules.CosineAnnealingLR(T_max=40, eta_min=1e-5), checkpoint=path,
                       callbacks=[early, SigintAt(stop_epoch)]), early

    ref = _readme_net()
    h_ref, e_ref = fit(ref, tmp_path / "ref.ckpt")
    net, path = _readme_net(), tmp_path / "run.ckpt"
    if at is not None:
        SigintAtLoss(net, at)
    with pytest.raises(TrainingInterrupted):
        fit(net, path, None if at is not None else 4)
    resumed = _readme_net()
    h, early = fit(resumed, path)
    same_state(resumed, ref)
    same_history(h, h_ref)
    assert (early.best_epoch, early.stopped_epoch) == (e_ref.best_epoch, e_ref.stopped_epoch)


class CountingSchedule:
    """A user's schedule object with state (it counts its calls) and state_dict / load_state_dict."""

    def __init__(self):
        self.calls = 0

    def lr(self, epoch, base_lr, history, samples_seen):
        self.calls += 1
        return base_lr / self.calls

    def state_dict(self):
        return {"calls": self.calls}

    def load_state_dict(self, state):
        if not isinstance(state, dict) or not isinstance(state.get("calls"), int):
            raise ValueError("CountingSchedule: bad state")
        self.calls = state["calls"]


def test_a_stateful_schedule_object_resumes_exactly(tmp_path, default_sigint):
    X, y = make_data()
    ref = make_net()
    h_ref = ref.fit(X, y, epochs=6, verbose=0, lr_schedule=CountingSchedule(), checkpoint=tmp_path / "r.ckpt")
    net, path = make_net(), tmp_path / "c.ckpt"
    with pytest.raises(TrainingInterrupted):
        net.fit(X, y, epochs=6, verbose=0, lr_schedule=CountingSchedule(), checkpoint=path,
                callbacks=[SigintAt(3)])
    h = make_net().fit(X, y, epochs=6, verbose=0, lr_schedule=CountingSchedule(), checkpoint=path,
                       callbacks=[SigintAt(None)])
    assert h["lr"] == h_ref["lr"] == [0.01 / k for k in range(1, 7)]


def _function_schedule(epoch):
    return 0.01 * 0.9 ** epoch


@pytest.mark.parametrize("again", [None, fnn.schedules.StepLR(2), lambda epoch: 0.01])
def test_resuming_without_the_function_schedule_is_refused(tmp_path, again):
    X, y = make_data()
    path = tmp_path / "c.ckpt"
    make_net().fit(X, y, epochs=2, verbose=0, lr_schedule=_function_schedule, checkpoint=path)
    with pytest.raises(ValueError, match="lr_schedule"):
        make_net().fit(X, y, epochs=4, verbose=0, lr_schedule=again, checkpoint=path)
    h = make_net().fit(X, y, epochs=4, verbose=0, lr_schedule=_function_schedule, checkpoint=path)
    assert len(h["loss"]) == 4


def test_a_checkpoint_that_cannot_be_written_is_named_a_checkpoint_not_a_model_file(tmp_path):
    """rt8: a write that fails in the middle of a fit (here its directory removed by a callback) named the
    file 'the model file'; the user passed checkpoint=, and the message says 'checkpoint'."""
    import shutil
    sub = tmp_path / "sub"
    sub.mkdir()
    X = np.random.default_rng(0).standard_normal((64, 3)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    net = fnn.NeuralNetwork([fnn.FullyConnected(3, 4), fnn.ReLU(), fnn.FullyConnected(4, 2)],
                            fnn.SoftmaxCrossEntropy(), fnn.SGD(0.1), seed=0)

    class RemoveTheDirectory(fnn.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                shutil.rmtree(sub)
    with pytest.raises(ValueError, match=r"cannot write the checkpoint .*c\.ckpt") as info:
        net.fit(X, y, epochs=3, verbose=0, checkpoint=str(sub / "c.ckpt"), checkpoint_every=1,
                callbacks=[RemoveTheDirectory()])
    assert "model file" not in str(info.value)
