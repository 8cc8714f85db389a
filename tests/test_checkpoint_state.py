"""A checkpoint never replaces training done in memory; what a checkpoint needs is checked before the first
epoch; its tensors carry a checksum (the red team's rt3 findings, fixed as classes)."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastnn as fnn
from fastnn import checkpoint as ckpt, io
from tests.helpers import edit_header, edit_meta, make_data, make_net, same_state

ROOT = Path(__file__).resolve().parents[1]
KW = dict(batch_size=32, verbose=0)


def _weights(net):
    return [p.copy() for p in net.params]


# ------------------------------------------------------------- 1. the state a run started from, in the file
@pytest.mark.parametrize("fused", ["auto", False])
def test_a_network_trained_since_is_not_overwritten(tmp_path, fused):
    X, y = make_data()
    path = tmp_path / "c.ckpt"
    net = make_net()
    net.fit(X, y, epochs=3, checkpoint=path, fused=fused, **KW)
    net.fit(X, y, epochs=4, fused=fused, **KW)                 # trained further, without the checkpoint
    before, steps = _weights(net), net.optimizer.steps
    with pytest.raises(ValueError, match="was trained since") as info:
        net.fit(X, y, epochs=5, checkpoint=path, fused=fused, **KW)
    assert str(path) in str(info.value) and "new checkpoint path" in str(info.value)
    assert all(np.array_equal(a, b) for a, b in zip(before, net.params)) and net.optimizer.steps == steps
    # variants: another network's weights; the optimizer state alone changed
    stranger = make_net(seed=123)
    stranger.seed = 0              # the architecture (seed included) matches: only the weights differ
    with pytest.raises(ValueError, match="is not the state the run started from"):
        stranger.fit(X, y, epochs=5, checkpoint=path, fused=fused, **KW)
    other = make_net()
    other.fit(X, y, epochs=3, checkpoint=tmp_path / "d.ckpt", fused=fused, **KW)
    other.optimizer.steps += 1
    with pytest.raises(ValueError, match="is not the state the run started from"):
        other.fit(X, y, epochs=5, checkpoint=tmp_path / "d.ckpt", fused=fused, **KW)


@pytest.mark.parametrize("fused", ["auto", False])
def test_a_keras_style_loop_trains_in_every_call(tmp_path, fused):
    X, y = make_data()
    path = tmp_path / "c.ckpt"
    net, ref = make_net(), make_net()
    for _ in range(4):
        h = net.fit(X, y, epochs=1, checkpoint=path, fused=fused, **KW)
        ref.fit(X, y, epochs=1, fused=fused, **KW)
        assert len(h["loss"]) == 1
    same_state(net, ref)
    assert fnn.load(path).optimizer.steps == ref.optimizer.steps      # the file holds the last call's end
    # the loop with a growing epoch count: each call resumes the unfinished run
    grow, whole = make_net(), make_net()
    for epochs in (1, 2, 3):
        grow.fit(X, y, epochs=epochs, checkpoint=tmp_path / "g.ckpt", fused=fused, **KW)
    whole.fit(X, y, epochs=3, checkpoint=tmp_path / "w.ckpt", fused=fused, **KW)
    same_state(grow, whole)


def test_a_restarted_script_resumes_and_a_finished_run_returns_at_once(tmp_path):
    X, y = make_data()
    path = tmp_path / "c.ckpt"
    first = make_net()
    first.fit(X, y, epochs=3, checkpoint=path, **KW)
    again = make_net()                       # the same script again: the start state
    h = again.fit(X, y, epochs=3, checkpoint=path, **KW)
    same_state(again, first)
    assert len(h["loss"]) == 3
    longer = make_net()
    longer.fit(X, y, epochs=5, checkpoint=path, **KW)       # extended: resumes after epoch 3
    ref = make_net()
    ref.fit(X, y, epochs=5, **KW)
    same_state(longer, ref)


def test_an_older_checkpoint_without_the_start_state_keeps_the_old_behaviour(tmp_path):
    X, y = make_data()
    path = tmp_path / "c.ckpt"
    make_net().fit(X, y, epochs=2, checkpoint=path, **KW)
    assert len(io.load_metadata(path)["extra"]["checkpoint"]["start"]) == 64
    edit_meta(path, lambda meta: meta["extra"]["checkpoint"].pop("start"))
    other = make_net(seed=123)
    other.seed = 0
    other.fit(X, y, epochs=2, checkpoint=path, **KW)        # loaded, as before the fingerprint existed
    same_state(other, fnn.load(path))


@pytest.mark.parametrize("bad", ["xyz", 5, "0" * 63, "G" * 64])
def test_a_corrupt_start_state_is_refused(tmp_path, bad):
    X, y = make_data()
    path = tmp_path / "c.ckpt"
    make_net().fit(X, y, epochs=2, checkpoint=path, **KW)
    edit_meta(path, lambda meta: meta["extra"]["checkpoint"].__setitem__("start", bad))
    with pytest.raises(ValueError, match="corrupt training state: start"):
        make_net().fit(X, y, epochs=3, checkpoint=path, **KW)


# ------------------------------------------------------------- 2. the validation data is a setting
@pytest.mark.parametrize("change", ["other_arrays", "split_fraction", "none_to_some"])
def test_resuming_with_other_validation_data_is_refused(tmp_path, change):
    X, y = make_data(200)
    Xv, yv = make_data(40, seed=5)
    first = {"other_arrays": dict(validation_data=(Xv, yv)), "split_fraction": dict(validation_split=0.2),
             "none_to_some": {}}[change]
    second = {"other_arrays": dict(validation_data=(Xv * 2, yv)), "split_fraction": dict(validation_split=0.25),
              "none_to_some": dict(validation_data=(Xv, yv))}[change]
    path = tmp_path / "c.ckpt"
    make_net().fit(X, y, epochs=2, checkpoint=path, **first, **KW)
    with pytest.raises(ValueError, match="other settings.*validation"):
        make_net().fit(X, y, epochs=4, checkpoint=path, **second, **KW)
    make_net().fit(X, y, epochs=4, checkpoint=path, **first, **KW)      # the same: resumed


def test_an_older_checkpoint_without_the_validation_fingerprint_resumes(tmp_path):
    X, y = make_data(200)
    Xv, yv = make_data(40, seed=5)
    path = tmp_path / "c.ckpt"
    make_net().fit(X, y, epochs=2, checkpoint=path, validation_data=(Xv, yv), **KW)
    edit_meta(path, lambda meta: meta["extra"]["checkpoint"]["settings"].pop("validation_data"))
    net = make_net()
    h = net.fit(X, y, epochs=3, checkpoint=path, validation_data=(Xv, yv), **KW)
    assert len(h["val_loss"]) == 3


# ------------------------------------------------------------- 3. refused before the first epoch
class Count:
    def __init__(self):
        self.n = 0

    def on_epoch_end(self, epoch, history):
        self.n += 1
        return False


def _paths_refused(tmp_path):
    os.symlink(tmp_path / "nowhere", tmp_path / "dangling")
    os.symlink(tmp_path / "missing" / "f", tmp_path / "dangling2")
    return {"trailing_sep": (str(tmp_path / "x") + os.sep, "ends in"),
            "long_name": (str(tmp_path / ("a" * 250)), "file name is"),
            "dangling": (tmp_path / "dangling", "dangling"), "dangling_dir": (tmp_path / "dangling2", "dangling"),
            "dotdot": (str(tmp_path / "sub") + os.sep + os.pardir + os.sep + "x", "does not exist"),
            "relative_dotdot": (os.path.join("no_such_dir_fixA", os.pardir, "x"), "does not exist")}


@pytest.mark.parametrize("kind", ["trailing_sep", "long_name", "dangling", "dangling_dir", "dotdot",
                                  "relative_dotdot"])
def test_an_unusable_checkpoint_path_is_refused_before_the_first_epoch(tmp_path, kind, monkeypatch):
    monkeypatch.chdir(tmp_path)
    X, y = make_data()
    path, words = _paths_refused(tmp_path)[kind]
    net, count = make_net(), Count()
    with pytest.raises(ValueError, match=words):
        net.fit(X, y, epochs=50, checkpoint=path, callbacks=[count], **KW)
    assert count.n == 0 and net.optimizer.steps == 0
    # the same rules for a model file (the shared writer), before any work
    with pytest.raises(ValueError, match=words):
        net.save(path)


def test_a_directory_after_dotdot_that_exists_is_fine(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    X, y = make_data()
    make_net().fit(X, y, epochs=1, checkpoint=os.path.join("sub", os.pardir, "c.ckpt"), **KW)
    assert (tmp_path / "c.ckpt").is_file()
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


class NanState:
    def on_epoch_end(self, epoch, history):
        return False

    def state_dict(self):
        return {"a": np.float32(np.nan)}

    def load_state_dict(self, state):
        pass


class TextKey:
    def on_epoch_end(self, epoch, history):
        history.setdefault("note", []).append("text")
        return False


def test_a_callback_state_a_checkpoint_cannot_hold_is_refused_before_training(tmp_path):
    X, y = make_data()
    net, count = make_net(), Count()
    with pytest.raises(ValueError, match="NanState.*before the first epoch"):
        net.fit(X, y, epochs=50, checkpoint=tmp_path / "c.ckpt", callbacks=[NanState(), count], **KW)
    assert count.n == 0 and not (tmp_path / "c.ckpt").exists()


def test_a_text_history_entry_is_refused_at_its_first_epoch(tmp_path):
    X, y = make_data()
    net, count = make_net(), Count()
    with pytest.raises(ValueError, match=r"history\['note'\].*epoch 1"):
        net.fit(X, y, epochs=50, checkpoint=tmp_path / "c.ckpt", callbacks=[TextKey(), count], **KW)
    assert count.n <= 1
    make_net().fit(X, y, epochs=2, callbacks=[TextKey()], **KW)        # without a checkpoint: allowed


# ------------------------------------------------------------- 5. the tensors' checksum
def _flip_tensor_byte(path, back=5):
    data = bytearray(Path(path).read_bytes())
    data[-back] ^= 0xFF
    Path(path).write_bytes(bytes(data))


@pytest.mark.parametrize("back", [1, 5, 40])
def test_a_flipped_tensor_byte_is_refused(tmp_path, back):
    X, y = make_data()
    path = tmp_path / "c.ckpt"
    make_net().fit(X, y, epochs=2, checkpoint=path, **KW)
    _flip_tensor_byte(path, back)
    with pytest.raises(ValueError, match="checksum"):
        make_net().fit(X, y, epochs=3, checkpoint=path, **KW)
    model = tmp_path / "m.st"
    make_net().save(model)
    _flip_tensor_byte(model, back)
    with pytest.raises(ValueError, match="checksum"):
        fnn.load(model)


def test_a_file_without_the_checksum_still_loads(tmp_path):
    model = tmp_path / "m.st"
    net = make_net()
    net.save(model)
    edit_header(model, lambda header: header["__metadata__"].pop(io.CHECKSUM_KEY))
    same_state(fnn.load(model), net)


# ------------------------------------------------------------- 6. checkpoint_every needs a checkpoint
def test_checkpoint_every_without_a_checkpoint_is_refused(tmp_path):
    X, y = make_data()
    net = make_net()
    with pytest.raises(ValueError, match="checkpoint_every=3 is given without checkpoint="):
        net.fit(X, y, epochs=2, checkpoint_every=3, **KW)
    assert net.optimizer.steps == 0
    with pytest.raises(ValueError, match="checkpoint_every"):
        fnn.Trainer(net, checkpoint_every=1)
    trainer = fnn.Trainer(net, epochs=1, verbose=0, checkpoint=tmp_path / "c.ckpt", checkpoint_every=1)
    trainer.checkpoint = None
    with pytest.raises(ValueError, match="without checkpoint="):
        trainer.fit(X, y)


# ------------------------------------------------------------- 4. the CLI's output paths, as given
def _cli(*args, cwd):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return subprocess.run([sys.executable, "-m", "fastnn", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize("option", [["--save", "sub/../m.st"], ["--checkpoint", "sub/../c.ck"],
                                    ["--checkpoint-every", "2"], ["--checkpoint", "x/"]])
def test_cli_output_paths_are_refused_before_training(tmp_path, option):
    proc = _cli("train", "-q", "--data", "xor", "--epochs", "100000", *option, cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("fastnn: error: ") and ("does not exist" in line or "--checkpoint" in line
                                                   or "ends in" in line), line


def test_the_same_call_again_after_early_stopping_restored_its_best_weights(tmp_path):
    """A fit stopped by EarlyStopping(restore_best_weights=True) returns the best weights, not the ones the
    checkpoint holds: the same network and call again (a notebook cell run twice) is case (b) — that run
    finished, so a new one starts from the network as it is — not a refusal; a fresh network (a restarted
    script) still gets the first run's result at once."""
    X, y = make_data(200)
    Xv = make_data(60, seed=9)[0]
    yv = np.random.default_rng(3).integers(0, 4, 60)        # random labels: val_loss rises soon
    path = tmp_path / "c.ckpt"

    def fit(net):
        return net.fit(X, y, epochs=60, checkpoint=path, validation_data=(Xv, yv), lr_schedule=None,
                       callbacks=[fnn.callbacks.EarlyStopping(patience=2, restore_best_weights=True)], **KW)
    net = make_net(lr=0.05)
    h = fit(net)
    assert len(h["loss"]) < 60                       # stopped early
    first, steps = _weights(net), net.optimizer.steps
    assert not all(np.array_equal(a, b) for a, b in zip(first, fnn.load(path).params))   # best != last
    fresh = make_net(lr=0.05)
    fit(fresh)
    assert all(np.array_equal(a, b) for a, b in zip(first, fresh.params))
    fit(net)                                          # a new run from the restored weights
    assert net.optimizer.steps > steps
    net.fit(X, y, epochs=4, **KW)                     # trained since, without the checkpoint: refused
    with pytest.raises(ValueError, match="is not the state the run started from"):
        fit(net)


def test_cli_predict_and_export_check_their_output_path_as_given(tmp_path):
    proc = _cli("train", "-q", "--data", "xor", "--epochs", "2", "--save", "m.st", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for args in (["predict", "m.st", "xor", "--out", "sub/../p.csv"], ["export", "m.st", "--onnx", "sub/../m.onnx"]):
        proc = _cli(*args, cwd=tmp_path)
        assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
        assert "sub/.. does not exist" in proc.stderr, proc.stderr
    assert sorted(os.listdir(tmp_path)) == ["m.st"]
