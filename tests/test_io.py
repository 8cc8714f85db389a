"""fastnn.io: safetensors round trips, hostile files and atomic writes."""
import json
import os
import pickle

import numpy as np
import pytest
import safetensors.numpy

import fastnn as fnn
from tests.helpers import edit_header, edit_meta, read_parts
from fastnn import io as fio


# -- helpers ----------------------------------------------------------------------------------------
def make_net(dtype=np.float32, optimizer=None, loss=None, n_out=3):
    layers = [fnn.FullyConnected(5, 7, dtype=dtype, seed=1), fnn.TanH(),
              fnn.FullyConnected(7, 6, init="xavier", dtype=dtype), fnn.ReLU(),
              fnn.FullyConnected(6, n_out, dtype=dtype)]
    return fnn.NeuralNetwork(layers, loss=loss, optimizer=optimizer or fnn.Adam(lr=0.01), seed=3)


def data(dtype=np.float32, n=40):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, 5)).astype(dtype)
    return X, (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0)


def trained(tmp_path, dtype=np.float32, optimizer=None):
    net = make_net(dtype, optimizer)
    X, y = data(dtype)
    net.fit(X, y, epochs=3, batch_size=8, validation_data=(X[:10], y[:10]), verbose=0)
    path = tmp_path / "model.safetensors"
    net.save(path)
    return net, path


def assert_rejected(path, *words):
    with pytest.raises(ValueError) as info:
        fnn.load(path)
    msg = str(info.value)
    assert str(path) in msg
    for w in words:
        assert w in msg, msg
    return msg


# -- round trips ------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_round_trip_bit_identical(tmp_path, dtype, opt):
    optimizer = fnn.SGD(lr=0.05, momentum=0.9) if opt == "sgd" else fnn.Adam(lr=0.01)
    net, path = trained(tmp_path, dtype, optimizer)
    net2 = fnn.load(path)
    assert type(net2.optimizer) is type(net.optimizer)
    assert net2.optimizer.config() == net.optimizer.config()
    assert net2.config() == net.config() and net2.dtype == np.dtype(dtype)
    for a, b in zip(net.params, net2.params):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    X, y = data(dtype)
    assert np.array_equal(net.predict(X), net2.predict(X))
    assert np.array_equal(net.predict_proba(X), net2.predict_proba(X))
    assert net2.history == net.history and set(net2.history) >= {"loss", "accuracy", "val_loss"}
    assert net2.optimizer.steps == net.optimizer.steps == 15
    for s1, s2 in zip(net.optimizer.state, net2.optimizer.state):
        assert len(s1) == len(s2) == net.optimizer.n_slots
        for a, b in zip(s1, s2):
            assert np.array_equal(a, b) and a is not b
    # the optimizer state really is restored: training on gives the same weights, bit for bit
    net.fit(X, y, epochs=2, batch_size=8, verbose=0)
    net2.fit(X, y, epochs=2, batch_size=8, verbose=0)
    for a, b in zip(net.params, net2.params):
        assert np.array_equal(a, b)


def test_loaded_weights_are_copies(tmp_path):
    net, path = trained(tmp_path)
    a, b = fnn.load(path), fnn.load(path)
    a.layers[0].weights[0, 0] += 1
    assert a.layers[0].weights[0, 0] != b.layers[0].weights[0, 0]


def test_untrained_regression_net(tmp_path):
    net = make_net(np.float64, fnn.SGD(lr=0.1), fnn.L2Loss(), n_out=2)
    path = tmp_path / "reg.safetensors"
    fio.save(net, str(path))
    net2 = fnn.load(str(path))
    assert net2.optimizer.state is None and net2.optimizer.steps == 0 and net2.history == {}
    assert isinstance(net2.loss, fnn.L2Loss) and isinstance(net2.optimizer, fnn.SGD)
    X, _ = data(np.float64)
    assert np.array_equal(net.predict(X), net2.predict(X))


def test_plain_safetensors_reader_and_metadata(tmp_path):
    net, _ = trained(tmp_path)
    path = tmp_path / "extra.safetensors"
    fio.save(net, path, extra={"classes": np.array([3, 5, 9]), "name": "demo"})
    tensors = safetensors.numpy.load_file(str(path))
    assert np.array_equal(tensors["layers.0.weights"], net.layers[0].weights)
    assert np.array_equal(tensors["layers.4.bias"], net.layers[4].bias)
    assert set(tensors) == {"layers.0.weights", "layers.0.bias", "layers.2.weights", "layers.2.bias",
                            "layers.4.weights", "layers.4.bias", "optimizer.state.0.0", "optimizer.state.0.1"}
    header, _ = read_parts(path)
    meta = json.loads(header["__metadata__"]["fastnn"])
    assert meta["format"] == "fastnn" and meta["format_version"] == 1
    assert meta["architecture"] == json.loads(json.dumps(net.config()))
    assert meta["extra"] == {"classes": [3, 5, 9], "name": "demo"}
    assert fio.load_metadata(path) == meta
    assert fio.load_with_metadata(path)[1]["extra"]["classes"] == [3, 5, 9]


def test_unserialisable_config_is_a_clear_error(tmp_path):
    net = fnn.NeuralNetwork([fnn.FullyConnected(2, 2, seed=np.random.default_rng(0))])
    path = tmp_path / "m.safetensors"
    with pytest.raises(ValueError, match="JSON"):
        net.save(path)
    with pytest.raises(ValueError, match="JSON"):
        fio.save(make_net(), path, extra={"f": object()})
    assert os.listdir(tmp_path) == []


# -- hostile and broken files -------------------------------------------------------------------------
class Evil:
    """Unpickling this would create the marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_is_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "model.safetensors"
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(Evil(str(control)))).close()
    assert control.exists()  # the payload works when unpickled...
    path.write_bytes(pickle.dumps(Evil(str(marker))))
    assert_rejected(path, "not a fastnn model file")
    with pytest.raises(ValueError):
        fio.load_metadata(path)
    assert not marker.exists()


def test_npz_with_object_arrays(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "model.npz"
    np.savez(path, a=np.array([Evil(str(marker))], dtype=object), w=np.ones(3))
    assert_rejected(path)
    assert not marker.exists()


def test_missing_file_and_not_a_regular_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        fnn.load(tmp_path / "nope.safetensors")
    if os.path.exists("/dev/zero"):
        with pytest.raises(ValueError, match="regular file"):
            fnn.load("/dev/zero")


def test_truncated_files(tmp_path):
    _, path = trained(tmp_path)
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    cut = tmp_path / "cut.safetensors"
    for size in sorted({0, 3, 7, 8, 9, 8 + n // 2, 8 + n - 1, 8 + n, 8 + n + 1, (len(raw) + 8 + n) // 2,
                        len(raw) - 1}):
        cut.write_bytes(raw[:size])
        assert_rejected(cut)


@pytest.mark.parametrize("seed", range(5))
def test_random_bytes(tmp_path, seed):
    rng = np.random.default_rng(seed)
    path = tmp_path / "noise.safetensors"
    path.write_bytes(rng.bytes(int(rng.integers(1, 5000))))
    assert_rejected(path)
    body = rng.bytes(600)  # a plausible small header length followed by garbage
    path.write_bytes((500).to_bytes(8, "little") + body)
    assert_rejected(path)


def test_header_length_field_lies(tmp_path):
    _, path = trained(tmp_path)
    raw = path.read_bytes()
    for n in (2 ** 60, 2 ** 64 - 1, len(raw)):
        path.write_bytes(n.to_bytes(8, "little") + raw[8:])
        assert_rejected(path, "header length", f"says {n} bytes")


def test_header_lies_about_shapes_and_offsets(tmp_path):
    _, good = trained(tmp_path)
    path = tmp_path / "lie.safetensors"

    def variant(fn):
        path.write_bytes(good.read_bytes())
        edit_header(path, fn)
        return assert_rejected(path)

    def bigger_shape(h):
        h["layers.0.weights"]["shape"] = [50, 70]

    def transposed_shape(h):  # same byte count: only the architecture check catches it
        h["layers.0.weights"]["shape"] = [7, 5]

    def past_end(h):
        start, end = h["layers.0.weights"]["data_offsets"]
        h["layers.0.weights"]["data_offsets"] = [start + 10 ** 9, end + 10 ** 9]

    def overlap(h):
        h["layers.0.bias"]["data_offsets"] = h["layers.0.weights"]["data_offsets"]

    def wrong_dtype(h):  # float32 bytes relabelled as float16 with twice the elements
        h["layers.0.weights"]["dtype"] = "F16"
        h["layers.0.weights"]["shape"] = [5, 14]

    def bad_json(h):
        h.clear()

    for fn in (bigger_shape, past_end, overlap, wrong_dtype, bad_json):
        variant(fn)
    assert "shape" in variant(transposed_shape)
    path.write_bytes(good.read_bytes())
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    path.write_bytes(raw[:8] + b"{" * n + raw[8 + n:])  # not JSON (and deeply nested)
    assert_rejected(path, "not valid JSON")


def meta_variant(tmp_path, fn):
    _, good = trained(tmp_path)
    path = tmp_path / "meta.safetensors"
    path.write_bytes(good.read_bytes())
    edit_meta(path, fn)
    return path


def test_newer_format_version(tmp_path):
    path = meta_variant(tmp_path, lambda m: m.update(format_version=3))
    assert_rejected(path, "version 3", "reads version 2")
    with pytest.raises(ValueError, match="version 2"):
        fio.load_metadata(path)
    for bad in ("1", None, 0, True, 1.0):
        edit_meta(path, lambda m: m.update(format_version=bad))
        assert_rejected(path, "format_version")


def test_unknown_type_names(tmp_path):
    for name in ("os.system", "Evil", "__import__", "Layer", "Loss", "Optimizer", "pickle.loads"):
        for where in ("layer", "loss", "optimizer"):
            def change(m):
                if where == "layer":
                    m["architecture"]["layers"][1] = [name, {}]
                else:
                    m["architecture"][where] = [name, {}]
            assert_rejected(meta_variant(tmp_path, change), f"{where} ", "unknown type", repr(name))


@pytest.mark.parametrize("change", [
    lambda m: m.update(format="pytorch"),
    lambda m: m["architecture"]["layers"].__setitem__(0, "FullyConnected"),
    lambda m: m["architecture"]["layers"].__setitem__(0, ["FullyConnected", [5, 7]]),
    lambda m: m["architecture"]["layers"][0][1].update(in_features=-5),
    lambda m: m["architecture"]["layers"][0][1].update(in_features="5"),
    lambda m: m["architecture"]["layers"][0][1].update(dtype="object"),
    lambda m: m["architecture"]["layers"][0][1].update(init="eval"),
    lambda m: m["architecture"]["layers"][0][1].update(surprise=1),
    lambda m: m["architecture"]["layers"][0][1].update(in_features=10 ** 6, out_features=10 ** 6),
    lambda m: m["architecture"]["layers"].extend([["FullyConnected", {"in_features": 3,
                                                                       "out_features": 3}]] * 10 ** 4),
    lambda m: m["architecture"].update(layers=[]),
    lambda m: m["architecture"].update(seed="0"),
    lambda m: m["architecture"]["optimizer"][1].update(lr=float("nan")),
    lambda m: m["architecture"]["optimizer"][1].update(beta1=2),
    lambda m: m["architecture"]["loss"][1].update(x=1),
    lambda m: m.update(dtype="float64"),
    lambda m: m.update(optimizer_steps=-1),
    lambda m: m.update(optimizer_steps=2 ** 70),
    lambda m: m.update(optimizer_state=[3]),
    lambda m: m.update(optimizer_state=None),  # state tensors present but not declared
    lambda m: m.update(history={"loss": ["a"]}),
    lambda m: m.update(history=[1, 2]),
    lambda m: m.update(extra=[1]),
    lambda m: m.pop("architecture"),
])
def test_bad_metadata(tmp_path, change):
    assert_rejected(meta_variant(tmp_path, change))


def test_metadata_not_json_or_missing(tmp_path):
    _, good = trained(tmp_path)
    path = tmp_path / "m.safetensors"
    for meta in ({"fastnn": "{not json"}, {"fastnn": "[" * 100000 + "]" * 100000}, {"other": "x"}, None):
        path.write_bytes(good.read_bytes())

        def change(h, meta=meta):
            if meta is None:
                del h["__metadata__"]
            else:
                h["__metadata__"] = meta
        edit_header(path, change)
        assert_rejected(path)
    safetensors.numpy.save_file({"w": np.ones((2, 2), np.float32)}, str(path))
    assert_rejected(path, "no 'fastnn'")


def tensor_variant(tmp_path, fn):
    net, good = trained(tmp_path)
    tensors = safetensors.numpy.load_file(str(good))
    header, _ = read_parts(good)
    fn(tensors)
    path = tmp_path / "t.safetensors"
    safetensors.numpy.save_file(tensors, str(path), metadata=header["__metadata__"])
    return path


@pytest.mark.parametrize("change, words", [
    (lambda t: t.update({"layers.2.weights": np.zeros((7, 5), np.float32)}), ["layers.2.weights", "shape"]),
    (lambda t: t.update({"layers.4.bias": np.zeros(4, np.float32)}), ["layers.4.bias"]),
    (lambda t: t.update({"layers.0.bias": np.zeros(7, np.float64)}), ["dtype"]),
    (lambda t: t.update({"layers.0.bias": np.zeros(7, np.int32)}), ["dtype"]),
    (lambda t: t.pop("layers.0.weights"), ["missing", "layers.0.weights"]),
    (lambda t: t.pop("optimizer.state.0.1"), ["missing"]),
    (lambda t: t.update({"layers.1.weights": np.zeros((7, 7), np.float32)}), ["unexpected"]),
    (lambda t: t.update({"optimizer.state.0.2": np.zeros(1, np.float32)}), ["unexpected"]),
    (lambda t: t.update({"optimizer.state.0.0": np.zeros(5, np.float32)}), ["shape"]),
])
def test_wrong_tensors(tmp_path, change, words):
    assert_rejected(tensor_variant(tmp_path, change), *words)


# -- atomic writes ----------------------------------------------------------------------------------
@pytest.mark.parametrize("target", ["replace", "fsync", "serialize"])
def test_failed_write_leaves_old_file(tmp_path, monkeypatch, target):
    net, path = trained(tmp_path)
    before = path.read_bytes()
    other = make_net()
    other.layers[0].weights = np.zeros((5, 7))

    def boom(*args, **kwargs):
        raise OSError("disk on fire")
    if target == "serialize":
        monkeypatch.setattr(fio.safetensors.numpy, "save", boom)
    else:
        monkeypatch.setattr(fio.os, target, boom)
    with pytest.raises(OSError, match="disk on fire"):
        other.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["model.safetensors"]
    assert np.array_equal(fnn.load(path).layers[0].weights, net.layers[0].weights)


def test_save_overwrites_atomically(tmp_path):
    net, path = trained(tmp_path)
    other = make_net(np.float64, fnn.SGD(lr=0.1, momentum=0.5))
    other.save(path)
    assert fnn.load(path).dtype == np.float64
    assert sorted(os.listdir(tmp_path)) == ["model.safetensors"]


# -- a model file's history gets the checkpoint's value check (G6), unknown metadata is refused (G7) ----
@pytest.mark.parametrize("history,words", [
    ({"loss": [float("nan"), 1.0, 1.0]}, ["history['loss'][0]", "finite"]),
    ({"loss": [-3.0, 1.0, 1.0]}, ["history['loss'][0]", ">= 0"]),
    ({"accuracy": [7.5]}, ["history['accuracy'][0]", "in [0, 1]"]),
    ({"lr": [0.0]}, ["history['lr'][0]", "> 0"]),
    ({"loss": [float("inf")]}, ["history['loss'][0]"]),
    ({"grad_norm": [[1.0, float("nan")]]}, ["history['grad_norm'][0]"]),
    ({"mine": [float("nan")]}, ["history['mine'][0]", "finite"]),
])
def test_history_values_are_checked_as_in_checkpoints(tmp_path, history, words):
    assert_rejected(meta_variant(tmp_path, lambda m: m.update(history=history)), *words)


def test_history_a_callback_started_late_loads(tmp_path):
    path = meta_variant(tmp_path, lambda m: m.update(history={"loss": [1.0, 0.5], "mine": [-2.0]}))
    assert fnn.load(path).history == {"loss": [1.0, 0.5], "mine": [-2.0]}


@pytest.mark.parametrize("key", ["unknown_key", "code", "Format"])
def test_unknown_metadata_key_is_refused(tmp_path, key):
    assert_rejected(meta_variant(tmp_path, lambda m: m.update({key: 1})), "unknown metadata key", key)


def test_versions_one_and_two_load(tmp_path):
    _, path = trained(tmp_path)
    assert fio.load_metadata(path)["format_version"] == 1        # what save writes without preprocessing
    edit_meta(path, lambda m: m.update(format_version=2))
    fnn.load(path)
    edit_meta(path, lambda m: m.update(format_version=1, preprocessing=None))
    assert_rejected(path, "'preprocessing' entry needs format version 2")


# -- the atomic writer's errors name the user's path, never its temporary (L9, L10) -----------------------
@pytest.mark.parametrize("write", ["save", "export_onnx", "checkpoint"])
@pytest.mark.parametrize("target", ["missing/new/", "here/", "/proc/self/status", "/proc/self/new_file"])
def test_unwritable_targets_name_the_path(tmp_path, write, target):
    if target.startswith("/proc") and not os.path.isdir("/proc/self"):
        pytest.skip("no /proc")
    path = target if target.startswith("/") else f"{tmp_path}/{target}"
    net = make_net()
    X, y = data()
    calls = {"save": lambda: net.save(path), "export_onnx": lambda: net.export_onnx(path),
             "checkpoint": lambda: net.fit(X, y, epochs=1, verbose=0, checkpoint=path)}
    if write == "export_onnx":
        pytest.importorskip("onnx")
    with pytest.raises(ValueError) as info:
        calls[write]()
    msg = str(info.value)
    assert path in msg and ".tmp" not in msg, msg
    assert not list(tmp_path.glob("**/.*.tmp"))


def test_failed_write_names_the_path_and_keeps_errno(tmp_path, monkeypatch):
    def full(*args):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(fio.os, "fsync", full)
    path = tmp_path / "m.safetensors"
    with pytest.raises(OSError) as info:
        make_net().save(path)
    assert info.value.errno == 28 and str(path) in str(info.value) and ".tmp" not in str(info.value)
    assert not list(tmp_path.iterdir())
