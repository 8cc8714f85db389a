"""Ctrl-C (SIGINT) during fit: stops after the current batch (per-layer path) or epoch (fused path), keeps
the network at the last completed step and the history, writes the checkpoint, raises KeyboardInterrupt
(fastnn.errors.TrainingInterrupted) and restores the previous SIGINT handler."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import fastnn as fnn
from fastnn import io
from fastnn.engines import fused
from fastnn.errors import TrainingInterrupted
from fastnn.engines.local import LocalRun
from tests import helpers

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def make_net(opt=None):
    return helpers.make_net((5, 16, 3), opt=opt or fnn.Adam(lr=0.01), act=fnn.ReLU)


def make_data(n=100):
    return helpers.make_data(n, features=5, classes=3, seed=3)


def sigint_at_loss_call(net, *calls):
    """Make the per-layer path send this process SIGINT during its n-th loss evaluation (for n in calls)."""
    forward, count = net.loss._forward, [0]

    def wrapped(*args):
        count[0] += 1
        if count[0] in calls:
            os.kill(os.getpid(), signal.SIGINT)
        return forward(*args)

    net.loss._forward = wrapped      # an instance attribute: the loss's type (and config) stay the same
    return net


@pytest.mark.parametrize("at", [1, 7, 10, 11, 23, 40])
def test_per_layer_path_stops_after_the_current_batch(tmp_path, default_sigint, at):
    X, y = make_data()                                   # 100 samples, batch 10: 10 batches per epoch
    path = tmp_path / "c.ckpt"
    ref = make_net()
    h_ref = ref.fit(X, y, epochs=4, batch_size=10, verbose=0, fused=False)

    net = sigint_at_loss_call(make_net(), at)
    with pytest.raises(KeyboardInterrupt) as info:
        net.fit(X, y, epochs=4, batch_size=10, verbose=0, fused=False, checkpoint=path)
    err = info.value
    assert isinstance(err, TrainingInterrupted)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler      # restored
    epoch, batch = (at - 1) // 10 + 1, (at - 1) % 10 + 1                      # the batch that was running
    if batch == 10:
        assert (err.epoch, err.batch) == (epoch, 10) and f"after epoch {epoch}" in str(err)
    else:
        assert (err.epoch, err.batch) == (epoch, batch) and f"after batch {batch} of 10" in str(err)
    assert net.optimizer.steps == at                                          # the current batch completed
    assert err.history is net.history and len(net.history["loss"]) == at // 10
    assert net.history["loss"] == h_ref["loss"][:at // 10]
    assert err.checkpoint == str(path) and str(path) in str(err)
    # the checkpoint holds exactly the network as it stopped ...
    saved = fnn.load(path)
    assert np.array_equal(saved._flat_params, net._flat_params) and saved.optimizer.steps == at
    # ... and resuming from it (mid-epoch) finishes bit-identically to the uninterrupted run
    resumed = make_net()
    h = resumed.fit(X, y, epochs=4, batch_size=10, verbose=0, fused=False, checkpoint=path)
    assert np.array_equal(resumed._flat_params, ref._flat_params)
    assert h["loss"] == h_ref["loss"] and h["accuracy"] == h_ref["accuracy"]


def test_interrupt_without_checkpoint_keeps_network_and_history(default_sigint):
    X, y = make_data()
    net = sigint_at_loss_call(make_net(fnn.SGD(lr=0.1, momentum=0.5)), 25)
    with pytest.raises(TrainingInterrupted) as info:
        net.fit(X, y, epochs=5, batch_size=10, verbose=0, fused=False)
    assert info.value.checkpoint is None and "checkpoint" not in str(info.value)
    assert len(net.history["loss"]) == 2 and net.optimizer.steps == 25
    assert np.isfinite(net._flat_params).all()
    # the network is usable and trainable afterwards
    net.loss._forward = type(net.loss)._forward.__get__(net.loss)
    net.fit(X, y, epochs=1, batch_size=10, verbose=0, fused=False)
    assert net.optimizer.steps == 35


def test_second_ctrl_c_aborts_at_once(default_sigint):
    X, y = make_data()
    net = make_net()
    forward = net.loss._forward

    def twice(*args):
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
        return forward(*args)

    net.loss._forward = twice
    with pytest.raises(KeyboardInterrupt) as info:
        net.fit(X, y, epochs=2, batch_size=10, verbose=0, fused=False)
    assert not isinstance(info.value, TrainingInterrupted)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_fused_path_stops_after_the_current_epoch(tmp_path, default_sigint, monkeypatch):
    X, y = make_data(400)
    path = tmp_path / "c.ckpt"
    ref = make_net()
    ref.fit(X, y, epochs=3000, batch_size=40, verbose=0)
    net = make_net()
    run_epoch = fused.EpochRunner.__call__

    def interrupted_during_epoch_7(runner, order, epoch, progress):    # Ctrl-C arrives while epoch 7's kernel runs
        if epoch == 7:
            os.kill(os.getpid(), signal.SIGINT)
        return run_epoch(runner, order, epoch)

    monkeypatch.setattr(fused.EpochRunner, "__call__", interrupted_during_epoch_7)
    with pytest.raises(TrainingInterrupted) as info:
        net.fit(X, y, epochs=3000, batch_size=40, verbose=0, checkpoint=path, checkpoint_every=1000)
    monkeypatch.undo()
    err = info.value
    assert err.batch == err.batches == 10 and err.epoch == 7
    assert net.optimizer.steps == 10 * err.epoch and len(net.history["loss"]) == err.epoch
    assert io.load_metadata(path)["extra"]["checkpoint"]["epoch"] == err.epoch   # written on the way out
    resumed = make_net()
    resumed.fit(X, y, epochs=3000, batch_size=40, verbose=0, checkpoint=path, checkpoint_every=1000)
    assert np.array_equal(resumed._flat_params, ref._flat_params)


def test_handler_only_in_main_thread_and_only_over_the_default(default_sigint):
    X, y = make_data()
    seen = []

    def custom(signum, frame):
        seen.append(signum)

    signal.signal(signal.SIGINT, custom)
    net = sigint_at_loss_call(make_net(), 3)
    net.fit(X, y, epochs=1, batch_size=10, verbose=0, fused=False)   # the application's handler runs
    assert seen == [signal.SIGINT] and signal.getsignal(signal.SIGINT) is custom
    assert net.optimizer.steps == 10
    signal.signal(signal.SIGINT, signal.default_int_handler)

    result = {}

    def train():
        try:
            result["history"] = make_net().fit(X, y, epochs=2, batch_size=10, verbose=0)
        except BaseException as exc:  # noqa: BLE001 - reported below
            result["error"] = exc

    thread = threading.Thread(target=train)
    thread.start()
    thread.join()
    assert "error" not in result and len(result["history"]["loss"]) == 2
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


# ------------------------------------------------------------------------------------ a real Ctrl-C
CHILD = textwrap.dedent("""
    import json, signal, sys
    import numpy as np
    import fastnn as fnn
    from fastnn import io
    from fastnn.engines import fused

    signal.signal(signal.SIGINT, signal.default_int_handler)     # whatever the parent had
    path, kind, epochs = sys.argv[1], sys.argv[2], int(sys.argv[3])
    rng = np.random.default_rng(1)
    X = rng.standard_normal((2000, 20)).astype(np.float32)
    y = rng.integers(0, 5, 2000)

    def make():
        return fnn.NeuralNetwork([fnn.FullyConnected(20, 64), fnn.ReLU(), fnn.FullyConnected(64, 5)],
                                 optimizer=fnn.Adam(lr=0.001), seed=0)

    use_fused = "auto" if kind == "fused" else False
    make().fit(X[:64], y[:64], epochs=1, batch_size=32, verbose=0, fused=use_fused)    # warm up the kernels
    net = make()
    if sys.argv[5] == "signal":      # say "ready" from inside training, once the second epoch is under way
        calls = [0]
        if kind == "fused":
            run_epoch = fused.EpochRunner.__call__
            def announce(runner, order, epoch, progress=None):
                if epoch == 2:
                    print("ready", flush=True)
                return run_epoch(runner, order, epoch, progress)
            fused.EpochRunner.__call__ = announce
        else:
            loss_forward = net.loss._forward
            def announce(out, target, *weights):
                calls[0] += 1
                if calls[0] == 70:           # 63 batches an epoch
                    print("ready", flush=True)
                return loss_forward(out, target, *weights)
            net.loss._forward = announce
    else:
        print("ready", flush=True)
    try:
        net.fit(X, y, epochs=epochs, batch_size=32, verbose=0, fused=use_fused,
                checkpoint=None if path == "-" else path, checkpoint_every=None if path == "-" else 10**6)
    except KeyboardInterrupt as exc:
        info = {"type": type(exc).__name__, "message": str(exc), "epoch": exc.epoch, "batch": exc.batch,
                "batches": exc.batches, "steps": net.optimizer.steps, "history": len(net.history["loss"]),
                "finite": bool(np.isfinite(net._flat_params).all()),
                "handler_restored": signal.getsignal(signal.SIGINT) is signal.default_int_handler}
        if path != "-":
            saved = fnn.load(path)
            info["checkpoint_matches"] = bool(np.array_equal(saved._flat_params, net._flat_params))
        print(json.dumps(info), flush=True)
        sys.exit(130)
    np.save(sys.argv[4], net._flat_params)
    print(json.dumps({"done": True}), flush=True)
""")


def _run(script, path, kind, epochs, out, sigint_after=None):
    mode = "plain" if sigint_after is None else "signal"
    proc = subprocess.Popen([sys.executable, str(script), str(path), kind, str(epochs), str(out), mode],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, NUMBA_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
                                     OMP_NUM_THREADS="1"))
    assert proc.stdout.readline().strip() == "ready"
    if sigint_after is not None:       # "ready" came from inside the second epoch: training is under way
        time.sleep(sigint_after)
        proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    return proc.returncode, json.loads(stdout.strip().splitlines()[-1]), stderr


@pytest.mark.parametrize("kind", ["per-layer", "fused"])
def test_real_sigint_in_a_subprocess(tmp_path, kind):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    epochs = 800 if kind == "per-layer" else 1000           # about 1.5 s each
    rc, info, err = _run(script, "-", kind, epochs, tmp_path / "ref.npy")
    assert rc == 0 and info == {"done": True}, err
    path = tmp_path / "run.ckpt"
    rc, info, err = _run(script, path, kind, epochs, tmp_path / "run.npy", sigint_after=0.0)
    assert rc == 130, err
    assert info["type"] == "TrainingInterrupted" and info["message"].startswith("training interrupted")
    assert info["finite"] and info["handler_restored"] and info["checkpoint_matches"]
    n = info["batches"]
    assert info["steps"] == (info["epoch"] - 1) * n + info["batch"]
    if kind == "fused":
        assert info["batch"] == n                     # stops at an epoch boundary
    assert info["history"] == info["epoch"] - (info["batch"] < n)
    # the same command again resumes and ends bit-identical to the uninterrupted run
    rc, done, err = _run(script, path, kind, epochs, tmp_path / "run.npy")
    assert rc == 0 and done == {"done": True}, err
    assert np.array_equal(np.load(tmp_path / "run.npy"), np.load(tmp_path / "ref.npy"))


# ------------------------------------------- a burst of signals at every point of the loop (issue 20 class 3)
def burst():
    """Two SIGINTs at once: the first asks training to stop, the second to abort at once."""
    signal.raise_signal(signal.SIGINT)
    signal.raise_signal(signal.SIGINT)


class BurstAt:
    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, epoch, history):
        if epoch == self.epoch:
            burst()


def _burst_points(monkeypatch, tmp_path):
    """point -> (fit keyword arguments, a function that arms the burst): each fires at epoch 2's end (or
    before epoch 3's rate is set), where the loop has trained exactly 2 epochs."""
    from fastnn import checkpoint as ckpt

    def at_validation():
        real, calls = LocalRun.evaluate, [0]

        def evaluate(self, net, X, y):
            calls[0] += 1
            if calls[0] == 2:
                burst()
            return real(self, net, X, y)
        monkeypatch.setattr(LocalRun, "evaluate", evaluate)

    def at_checkpoint():
        real = ckpt.write

        def write(path, net, epoch, *args, **kwargs):
            if epoch == 2:
                burst()
            return real(path, net, epoch, *args, **kwargs)
        monkeypatch.setattr(ckpt, "write", write)

    def schedule(epoch):
        if epoch == 3:
            burst()
        return 0.01

    Xv, yv = make_data(30)
    return {
        "validation": (dict(validation_data=(Xv, yv)), at_validation),
        "callback": (dict(callbacks=[BurstAt(2)]), lambda: None),
        "checkpoint": (dict(checkpoint=tmp_path / "c.ckpt", checkpoint_every=1), at_checkpoint),
        "between_epochs": (dict(lr_schedule=schedule), lambda: None),
    }


@pytest.mark.parametrize("fused", ["auto", False])
@pytest.mark.parametrize("point", ["validation", "callback", "checkpoint", "between_epochs"])
def test_a_burst_anywhere_in_the_loop_leaves_a_consistent_network(tmp_path, default_sigint, monkeypatch,
                                                                   fused, point):
    """A second Ctrl-C aborts at once, but never inside the epoch's bookkeeping, a checkpoint write or an
    optimizer step: afterwards no thread is left, the handler is restored, every history list has the
    same completed epochs, and weights, moments and optimizer.steps are those of an uninterrupted 2-epoch
    fit; the network trains on."""
    X, y = make_data()
    kwargs, arm = _burst_points(monkeypatch, tmp_path)[point]
    threads = threading.active_count()
    net = make_net()
    arm()
    with pytest.raises(KeyboardInterrupt):
        net.fit(X, y, epochs=5, batch_size=10, verbose=0, fused=fused, **kwargs)
    monkeypatch.undo()
    assert threading.active_count() == threads
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert {len(v) for v in net.history.values()} == {2}
    ref = make_net()
    ref.fit(X, y, epochs=2, batch_size=10, verbose=0, fused=fused)
    helpers.same_state(net, ref)
    assert net.optimizer.lr == 0.01                        # no scheduled rate left behind
    if point == "checkpoint":                              # the write the burst hit completed
        helpers.same_state(fnn.load(tmp_path / "c.ckpt"), ref)
    net.fit(X, y, epochs=1, batch_size=10, verbose=0, fused=fused)
    assert net.optimizer.steps == 30


@pytest.mark.parametrize("at", [1, 5, 10, 13])
def test_a_burst_inside_an_optimizer_step_lets_the_step_finish(default_sigint, monkeypatch, at):
    """Both signals arrive while step ``at`` runs: the step completes (weights, Adam moments and steps
    together), then KeyboardInterrupt; the state equals a fit stopped cleanly after ``at`` steps."""
    X, y = make_data()
    net = make_net()
    opt_type, calls = type(net.optimizer), [0]
    real = opt_type.step

    def step(self, params, grads):
        calls[0] += 1
        if calls[0] == at:
            burst()                       # delivered now, inside the loop's critical section
        return real(self, params, grads)
    monkeypatch.setattr(opt_type, "step", step)
    with pytest.raises(KeyboardInterrupt) as info:
        net.fit(X, y, epochs=3, batch_size=10, verbose=0, fused=False)
    monkeypatch.undo()
    assert not isinstance(info.value, TrainingInterrupted)
    assert net.optimizer.steps == at
    ref = sigint_at_loss_call(make_net(), at)              # one signal: stops cleanly after step `at`
    with pytest.raises(TrainingInterrupted):
        ref.fit(X, y, epochs=3, batch_size=10, verbose=0, fused=False)
    helpers.same_state(net, ref)


def test_critical_holds_a_second_signal_until_it_ends(default_sigint):
    from fastnn import signals
    flag, done = signals.StopFlag(), []
    with pytest.raises(KeyboardInterrupt):
        with signals.deferred(flag):
            with signals.critical():
                burst()
                done.append("after the burst")
                with signals.critical():       # nested: held until the outermost ends
                    done.append("nested")
                done.append("end")
    assert done == ["after the burst", "nested", "end"] and flag.signal_name == "SIGINT"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
