"""The integrity check covers the whole model / checkpoint file (fastnn.io's seal), not only the tensors: a
flipped byte anywhere — the length field, the JSON metadata (history, the shuffle generator state,
EarlyStopping's best weights and the training state of a checkpoint, the layer configs) or the tensor data —
and a truncated file are one ValueError naming the file and saying it is damaged. Files written before the
seal (or whose header another program rewrote) are still read, checked by everything else."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import safetensors.numpy

import fastnn as fnn
from fastnn import io
from tests import helpers


def _net():
    return helpers.make_net((4, 6, 3), opt=fnn.Adam(lr=0.01), act=fnn.ReLU)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("files")
    X, y = helpers.make_data(40, features=4, classes=3, seed=2)
    Xv, yv = helpers.make_data(12, features=4, classes=3, seed=3)
    net = _net()
    net.fit(X, y, epochs=3, batch_size=8, verbose=0, seed=5, validation_data=(Xv, yv),
            callbacks=[fnn.callbacks.EarlyStopping(patience=50)])
    net.save(d / "model.safetensors")
    ckpt = d / "run.ckpt"
    _net().fit(X, y, epochs=3, batch_size=8, verbose=0, seed=5, validation_data=(Xv, yv), checkpoint=ckpt,
               callbacks=[fnn.callbacks.EarlyStopping(patience=50)])
    meta = io.load_metadata(ckpt)
    assert meta["extra"]["checkpoint"]["callbacks"]       # (EarlyStopping's state, best weights, is in the JSON)
    return {"model": d / "model.safetensors", "checkpoint": ckpt, "data": (X, y, Xv, yv)}


def _damaged(path, call):
    with pytest.raises(ValueError) as info:
        call(path)
    msg = str(info.value)
    assert str(path) in msg and "damaged" in msg, msg
    return msg


def _offsets(size, header_end):
    """Every byte of the length field and the header, and a stride through the tensor data (with its last)."""
    return sorted(set(range(header_end)) | set(range(header_end, size, 7)) | {size - 1})


@pytest.mark.parametrize("kind", ["model", "checkpoint"])
@pytest.mark.parametrize("bit", [0x01, 0x80])
def test_a_flipped_byte_anywhere_is_one_damaged_file_error(files, tmp_path, kind, bit):
    data = files[kind].read_bytes()
    header_end = 8 + int.from_bytes(data[:8], "little")
    bad = tmp_path / f"bad.{kind}"
    seen = 0
    for off in _offsets(len(data), header_end):
        b = bytearray(data)
        b[off] ^= bit
        bad.write_bytes(bytes(b))
        _damaged(bad, fnn.load)
        _damaged(bad, io.load_metadata)      # (fastnn info, the CLI's resume epoch)
        seen += 1
    assert seen > header_end


def test_a_damaged_checkpoint_stops_the_resume_with_that_error(files, tmp_path):
    X, y, Xv, yv = files["data"]
    data = files["checkpoint"].read_bytes()
    header_end = 8 + int.from_bytes(data[:8], "little")
    bad = tmp_path / "bad.ckpt"
    for off in list(range(0, header_end, 23)) + [header_end + 3, len(data) - 2]:
        b = bytearray(data)
        b[off] ^= 0x04
        bad.write_bytes(bytes(b))
        net = _net()
        before = net._flat_params.copy()
        msg = _damaged(bad, lambda p: net.fit(X, y, epochs=4, batch_size=8, verbose=0, seed=5, checkpoint=p,
                                              validation_data=(Xv, yv),
                                              callbacks=[fnn.callbacks.EarlyStopping(patience=50)]))
        assert "cannot resume from checkpoint" in msg
        assert np.array_equal(net._flat_params, before)


@pytest.mark.parametrize("kind", ["model", "checkpoint"])
def test_a_truncated_or_extended_file_is_damaged(files, tmp_path, kind):
    data = files[kind].read_bytes()
    bad = tmp_path / "bad"
    for n in (len(data) - 1, len(data) - 8, len(data) // 2, 60, 9):
        bad.write_bytes(data[:n])
        _damaged(bad, fnn.load)
    bad.write_bytes(data + b"\0" * 8)
    _damaged(bad, fnn.load)


def _unsealed(path, out):
    """``path`` written as fastnn wrote files before the seal: the same tensors and metadata, no seal."""
    tensors = safetensors.numpy.load_file(str(path))
    header, _ = helpers.read_parts(path)
    meta = dict(header["__metadata__"])
    meta.pop(io.FILE_CHECKSUM_KEY)
    out.write_bytes(safetensors.numpy.save(tensors, metadata=meta))
    return out


@pytest.mark.parametrize("kind", ["model", "checkpoint"])
def test_files_written_before_the_seal_still_load(files, tmp_path, kind):
    old = _unsealed(files[kind], tmp_path / "old.safetensors")
    assert io.seal_check(old.read_bytes()) is None
    a, b = fnn.load(files[kind]), fnn.load(old)
    assert np.array_equal(a._flat_params, b._flat_params) and a.history == b.history
    assert io.load_metadata(old) == io.load_metadata(files[kind])
    data = bytearray(old.read_bytes())           # their tensors are still covered by the tensor checksum
    data[-1] ^= 0x10
    old.write_bytes(bytes(data))
    _damaged(old, fnn.load)


def test_resaving_keeps_the_seal_and_the_file_round_trips(files, tmp_path):
    net = fnn.load(files["model"])
    net.save(tmp_path / "again.safetensors")
    data = (tmp_path / "again.safetensors").read_bytes()
    stored, computed = io.seal_check(data)
    assert stored == computed and data[8:io.SEAL_AT] == io.SEAL_PREFIX
    assert set(safetensors.numpy.load(data)) == set(safetensors.numpy.load(files["model"].read_bytes()))


def test_fastnn_info_and_predict_on_a_damaged_file_say_so_in_one_line(files, tmp_path):
    data = bytearray(files["model"].read_bytes())
    data[200] ^= 0x02                  # inside the JSON metadata
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(bytes(data))
    np.savez(tmp_path / "d.npz", X=files["data"][0], y=files["data"][1])
    env = dict(os.environ, NUMBA_CACHE_DIR=os.environ.get("NUMBA_CACHE_DIR", str(tmp_path / "c")))
    for args in (["info", str(bad)], ["predict", str(bad), str(tmp_path / "d.npz")],
                 ["evaluate", str(bad), str(tmp_path / "d.npz")]):
        r = subprocess.run([sys.executable, "-m", "fastnn"] + args, capture_output=True, text=True, timeout=300,
                           env=env)
        lines = [line for line in r.stderr.splitlines() if line.strip()]
        assert r.returncode == 2 and len(lines) == 1, r.stderr
        assert "damaged" in lines[0] and str(bad) in lines[0], r.stderr
