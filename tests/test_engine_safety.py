"""One engine, one plan, state no public call can corrupt (issue: one engine). Each test is one of the
reproductions that crashed, raced or returned garbage before the plan and the training sessions."""
import copy
import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import fastnn as fnn


def make_net(dtype=np.float32, opt=None, seed=0, hidden=16):
    return fnn.NeuralNetwork([fnn.FullyConnected(6, hidden, dtype=dtype), fnn.ReLU(),
                              fnn.FullyConnected(hidden, 3, dtype=dtype)],
                             optimizer=opt or fnn.SGD(lr=0.05), seed=seed)


def data(n=200, dtype=np.float32, seed=1):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 6)).astype(dtype), rng.integers(0, 3, n)


# -- structure fixed at construction --------------------------------------------------------------
def test_layers_are_fixed_after_construction():
    net = make_net()
    assert isinstance(net.layers, tuple)
    with pytest.raises(AttributeError, match="fixed at construction"):
        net.layers = [fnn.FullyConnected(6, 3)]
    with pytest.raises(AttributeError):
        net.layers.append(fnn.ReLU())


@pytest.mark.parametrize("name,value", [("out_features", 3_000_000), ("in_features", 7), ("dtype", np.float64)])
def test_layer_shape_and_dtype_are_read_only(name, value):
    fc = fnn.FullyConnected(4, 3)
    with pytest.raises(AttributeError, match="fixed at construction"):
        setattr(fc, name, value)
    assert fc.forward(np.ones((2, 4), np.float32)).shape == (2, 3)


def test_a_layer_belongs_to_one_network():
    fc = fnn.FullyConnected(6, 3)
    first = fnn.NeuralNetwork([fc])
    with pytest.raises(ValueError, match="already belongs to another NeuralNetwork"):
        fnn.NeuralNetwork([fc])
    with pytest.raises(ValueError, match="appears twice"):
        relu = fnn.ReLU()
        fnn.NeuralNetwork([fnn.FullyConnected(6, 6), relu, fnn.FullyConnected(6, 6), relu])
    loss = first.loss
    with pytest.raises(ValueError, match="already belongs"):
        fnn.NeuralNetwork([fnn.FullyConnected(6, 3)], loss=loss)
    del first       # a network that is gone no longer owns its layers
    import gc
    gc.collect()
    fnn.NeuralNetwork([fc])


def test_mixed_dtype_stack_is_refused():
    with pytest.raises(ValueError, match="one dtype"):
        fnn.NeuralNetwork([fnn.FullyConnected(4, 3, dtype=np.float32), fnn.FullyConnected(3, 2, dtype=np.float64)])


def test_negative_seed_names_seed():
    with pytest.raises(ValueError, match="seed"):
        make_net(seed=-1)


def test_copies_are_independent_and_train():
    net = make_net()
    X, y = data()
    for twin in (copy.deepcopy(net), pickle.loads(pickle.dumps(net))):
        assert all(layer.owner is twin for layer in twin.layers) and twin.loss.owner is twin
        twin.fit(X, y, epochs=2, verbose=0)
        assert not np.array_equal(twin.params[0], net.params[0])
    assert all(layer.owner is net for layer in net.layers)


# -- forward / backward pairing -------------------------------------------------------------------
@pytest.mark.parametrize("intruder", ["layer", "activation", "loss"])
def test_backward_after_a_direct_call_is_refused(intruder):
    net = make_net()
    X, y = data(64)
    net.forward(X[:16], y[:16])
    other = np.ones((40, 16), np.float32)
    if intruder == "layer":
        net.layers[0].forward(np.ones((40, 6), np.float32))
    elif intruder == "activation":
        net.layers[1].forward(other)
    else:
        net.loss.forward(np.ones((40, 3), np.float32), np.zeros(40, np.int64))
    with pytest.raises(RuntimeError, match="forward\\(x, y\\) again"):
        net.backward()
    net.forward(X[:16], y[:16])       # the lecture's sequence works again after a fresh forward
    net.backward()
    net.step()


def test_backward_needs_forward_with_targets():
    with pytest.raises(RuntimeError, match="forward\\(x, y\\)"):
        make_net().backward()


def test_predict_between_forward_and_backward_is_harmless():
    net, ref = make_net(), make_net()
    X, y = data(32)
    for n in (net, ref):
        n.forward(X, y)
    net.predict(np.ones((100, 6), np.float32))       # no buffer of the network is touched
    net.backward()
    ref.backward()
    assert all(np.array_equal(a, b) for a, b in zip(net.grads, ref.grads))


# -- fit: batch size, shuffling stream -------------------------------------------------------------
@pytest.mark.parametrize("fused", [True, False])
def test_huge_batch_size_is_one_full_batch(fused):
    X, y = data(50)
    a, b = make_net(), make_net()
    ha = a.fit(X, y, epochs=2, batch_size=2 ** 63, verbose=0, fused=fused)
    hb = b.fit(X, y, epochs=2, batch_size=50, verbose=0, fused=fused)
    assert a.optimizer.steps == 2 and ha["loss"] == hb["loss"]
    assert all(np.array_equal(p, q) for p, q in zip(a.params, b.params))


@pytest.mark.parametrize("fused", [True, False])
def test_repeated_fits_continue_the_shuffling_stream(fused, tmp_path):
    X, y = data(96)
    once, thrice = make_net(opt=fnn.Adam(lr=0.01)), make_net(opt=fnn.Adam(lr=0.01))
    once.fit(X, y, epochs=3, batch_size=16, verbose=0, fused=fused)
    for _ in range(3):
        thrice.fit(X, y, epochs=1, batch_size=16, verbose=0, fused=fused)
    assert all(np.array_equal(p, q) for p, q in zip(once.params, thrice.params))
    # the stream travels with a saved model
    path = tmp_path / "m.safetensors"
    thrice.save(path)
    loaded = fnn.load(path)
    for n in (thrice, loaded):
        n.fit(X, y, epochs=1, batch_size=16, verbose=0, fused=fused)
    assert all(np.array_equal(p, q) for p, q in zip(thrice.params, loaded.params))
    # another seed starts another stream
    other = make_net(opt=fnn.Adam(lr=0.01))
    other.fit(X, y, epochs=1, batch_size=16, verbose=0, fused=fused, seed=5)
    first = make_net(opt=fnn.Adam(lr=0.01))
    first.fit(X, y, epochs=1, batch_size=16, verbose=0, fused=fused)
    assert not np.array_equal(other.params[0], first.params[0])


def test_history_records_the_learning_rate():
    X, y = data(64)
    h = make_net(opt=fnn.SGD(lr=0.03)).fit(X, y, epochs=3, verbose=0)
    assert h["lr"] == [0.03] * 3


@pytest.mark.parametrize("bad,match", [(dict(validation_split=1.0), "validation_split"),
                                       (dict(validation_split=0.2, validation_data=(np.ones((3, 6)), [0, 1, 2])),
                                        "not both"),
                                       (dict(class_weight=[1, 2]), "class_weight"),
                                       (dict(class_weight={7: 1.0}), "class ids"),
                                       (dict(callbacks=[object()]), "on_epoch_end"),
                                       (dict(sample_weight=np.ones(3)), "sample_weight"),
                                       (dict(sample_weight=-np.ones(64)), "non-negative"),
                                       (dict(sample_weight=np.zeros(64)), "zero for every")])
def test_fit_arguments_are_checked(bad, match):
    X, y = data(64)
    with pytest.raises((ValueError, TypeError), match=match):
        make_net().fit(X, y, epochs=1, verbose=0, **bad)


def test_validation_split_takes_the_last_rows():
    X, y = data(100)
    a, b = make_net(), make_net()
    ha = a.fit(X, y, epochs=2, verbose=0, validation_split=0.25)
    hb = b.fit(X[:75], y[:75], epochs=2, verbose=0, validation_data=(X[75:], y[75:]))
    assert ha["val_loss"] == hb["val_loss"] and ha["loss"] == hb["loss"]


def test_callbacks_can_stop_training():
    class StopAtTwo:
        def __init__(self):
            self.seen = []

        def on_epoch_end(self, epoch, history):
            self.seen.append((epoch, len(history["loss"])))
            return epoch == 2

    cb = StopAtTwo()
    X, y = data(64)
    h = make_net().fit(X, y, epochs=10, verbose=0, callbacks=[cb])
    assert len(h["loss"]) == 2 and cb.seen == [(1, 1), (2, 2)]


# -- threads ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("fused", [True, False])
def test_predict_from_threads_while_fit_runs(fused):
    X, y = data(2000)
    net = make_net(hidden=64)
    errors, started = [], threading.Event()

    def train():
        try:
            started.set()
            net.fit(X, y, epochs=15, batch_size=32, verbose=0, fused=fused)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    t = threading.Thread(target=train)
    t.start()
    started.wait()
    outputs = []
    while t.is_alive() or not outputs:
        out = net.predict_proba(X[:300])
        assert out.shape == (300, 3) and np.isfinite(out).all()
        np.testing.assert_allclose(out.sum(axis=1), 1, rtol=1e-5)
        outputs.append(out)
        net.evaluate(X[:100], y[:100])
    t.join()
    assert not errors, errors
    # after training, predict is the network's function of its final weights
    final = net.predict_proba(X[:300])
    assert np.array_equal(final, net.predict_proba(X[:300]))


def test_second_concurrent_fit_is_refused():
    X, y = data(4000)
    net = make_net(hidden=64)
    inside = threading.Event()

    class Signal:
        def on_epoch_end(self, epoch, history):
            inside.set()
            release.wait(10)
            return False

    release = threading.Event()
    t = threading.Thread(target=lambda: net.fit(X, y, epochs=2, verbose=0, callbacks=[Signal()]))
    t.start()
    assert inside.wait(30)
    try:
        with pytest.raises(RuntimeError, match="already training"):
            net.fit(X, y, epochs=1, verbose=0)
        with pytest.raises(RuntimeError, match="already training"):
            net.forward(X[:4], y[:4])
        with pytest.raises(RuntimeError):
            net.layers[0].forward(X[:4])
        net.predict(X[:10])       # predicting is always allowed
    finally:
        release.set()
        t.join()
    net.fit(X, y, epochs=1, verbose=0)      # and training again once the first fit ended


# -- SIGTERM ------------------------------------------------------------------------------------------
def test_sigterm_stops_cleanly_with_a_checkpoint(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent("""
        import json, sys
        import numpy as np
        import fastnn as fnn
        rng = np.random.default_rng(0)
        X = rng.standard_normal((2000, 10)).astype(np.float32); y = rng.integers(0, 3, 2000)
        net = fnn.NeuralNetwork([fnn.FullyConnected(10, 32), fnn.ReLU(), fnn.FullyConnected(32, 3)], seed=0)

        class Ready:
            def on_epoch_end(self, epoch, history):
                if epoch == 2:
                    print("ready", flush=True)
                return False
        try:
            net.fit(X, y, epochs=100000, verbose=0, fused=False, checkpoint=sys.argv[1], callbacks=[Ready()])
        except KeyboardInterrupt as exc:
            print(json.dumps({"type": type(exc).__name__, "signal": exc.signal_name, "epoch": exc.epoch,
                              "checkpoint": exc.checkpoint}), flush=True)
            sys.exit(143)
    """))
    path = tmp_path / "run.ckpt"
    proc = subprocess.Popen([sys.executable, str(script), str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 143, err
    info = json.loads(out.strip().splitlines()[-1])
    assert info["type"] == "TrainingInterrupted" and info["signal"] == "SIGTERM"
    assert info["checkpoint"] == str(path) and os.path.exists(path)
    assert fnn.io.load_metadata(path)["extra"]["checkpoint"]["epoch"] >= 2


def test_cli_sigterm_exits_143_with_one_line(tmp_path):
    """`fastnn train` stopped by SIGTERM (what Slurm and container runtimes send first): the checkpoint is
    written, the exit code is 143 and stderr says where it stopped in one line."""
    import shutil
    import time
    exe = shutil.which("fastnn") or os.path.join(os.path.dirname(sys.executable), "fastnn")
    ckpt = tmp_path / "run.ckpt"
    proc = subprocess.Popen([exe, "train", "--data", "digits", "--epochs", "100000", "--quiet",
                             "--checkpoint", str(ckpt), "--checkpoint-every", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not ckpt.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert ckpt.exists(), proc.stderr.read() if proc.poll() is not None else "no checkpoint within 120 s"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 143, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "interrupted" in lines[0] and str(ckpt) in lines[0], err


# -- the caller's arrays written during a fit ------------------------------------------------------
@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("label", [3, -1, 10 ** 9])
def test_labels_written_by_a_callback_mid_fit_change_nothing(fused, label):
    """Class ids index the kernels' arrays: a fit reads its own copy of them, so a callback that writes an
    out-of-range id into the caller's y (which crashed the process, or trained on a wrapped index) changes
    nothing — the fit equals one whose y was never touched. In a child process: the old failure was a crash."""
    script = textwrap.dedent(f"""
        import numpy as np, fastnn as fnn
        def run(write):
            rng = np.random.default_rng(0)
            X = rng.standard_normal((200, 5)).astype(np.float32); y = rng.integers(0, 3, 200)
            class Writer(fnn.callbacks.Callback):
                def on_epoch_end(self, epoch, history):
                    if write:
                        y[7] = {label}
            net = fnn.NeuralNetwork([fnn.FullyConnected(5, 8), fnn.ReLU(), fnn.FullyConnected(8, 3)],
                                    loss=fnn.SoftmaxCrossEntropy(), seed=0)
            net.fit(X, y, epochs=3, verbose=0, fused={fused}, callbacks=[Writer()])
            return [p.copy() for p in net.plan().opt_params]
        assert all(np.array_equal(a, b) for a, b in zip(run(True), run(False)))
        print("same")
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "same", proc.stderr[-2000:]


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_x_written_non_finite_by_a_callback_is_refused_alike_by_both_engines(bad):
    """Both engines check the rows they gather, so NaN/Inf written into X between epochs gives the boundary's
    ValueError (naming X and the index) from the per-layer engine too, not a divergence error."""
    messages = []
    for fused in (True, False):
        X, y = data()

        class Writer(fnn.callbacks.Callback):
            def on_epoch_end(self, epoch, history):
                X[100, 2] = bad
        net = make_net()
        before = [p.copy() for p in net.plan().opt_params]
        with pytest.raises(ValueError, match=r"X contains 1 NaN or infinite value\(s\), the first at index "
                                             r"\(100, 2\)") as err:
            net.fit(X, y, epochs=3, verbose=0, fused=fused, callbacks=[Writer()])
        messages.append(str(err.value))
        assert all(np.array_equal(a, b) for a, b in zip(before, net.plan().opt_params))     # put back
    assert messages[0] == messages[1]
