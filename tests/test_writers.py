"""Every file fastnn writes goes through one checked atomic writer (io.atomic_write, _paths.output_target):
a FIFO, a device, a directory, a socket, a dangling symlink or a symlink to a FIFO is refused with a
ValueError (the CLI: one error line, exit 2) naming the path, at once, and is left as it was (issue 20,
item 6). Each writer is tried with each kind of target."""
import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import stat
import tempfile

import numpy as np
import pytest

import fastnn as fnn
from fastnn import cli, io, plotting

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs, sockets and mknod are POSIX")
HAVE_ONNX = importlib.util.find_spec("onnx") is not None
HAVE_MPL = importlib.util.find_spec("matplotlib") is not None
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@contextlib.contextmanager
def no_hang(seconds=60):
    """A writer that blocks (opening a FIFO for writing waits for a reader) fails the test instead."""
    def alarm(signum, frame):
        raise AssertionError(f"the writer blocked for {seconds} s")
    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def make_target(kind, directory):
    """A path of the given kind in ``directory`` (short: a socket path must fit in 108 bytes)."""
    path = os.path.join(directory, "out")
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        os.mkdir(path)
    elif kind == "dangling symlink":
        os.symlink(os.path.join(directory, "nowhere", "x"), path)
    elif kind == "symlink to a fifo":
        os.mkfifo(os.path.join(directory, "pipe"))
        os.symlink(os.path.join(directory, "pipe"), path)
    elif kind == "socket":
        s = socket.socket(socket.AF_UNIX)
        s.bind(path)
        s.close()
    elif kind == "character device":        # a /dev/null twin, in a temporary directory only
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    return path


KINDS = ["fifo", "directory", "dangling symlink", "symlink to a fifo", "socket",
         pytest.param("character device", marks=pytest.mark.skipif(not IS_ROOT, reason="mknod needs root"))]
WORDS = {"fifo": "FIFO", "directory": "directory", "dangling symlink": "dangling", "symlink to a fifo": "FIFO",
         "socket": "socket", "character device": "character device"}


@pytest.fixture
def short_dir():
    d = tempfile.mkdtemp(prefix="fnw", dir="/tmp")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def snapshot(path):
    st = os.lstat(path)
    return stat.S_IFMT(st.st_mode), st.st_ino


def net_and_file(directory):
    net = fnn.NeuralNetwork([fnn.FullyConnected(2, 4), fnn.TanH(), fnn.FullyConnected(4, 2)], seed=0)
    model = os.path.join(directory, "m.safetensors")
    net.save(model)
    return net, model


def python_writers(net):
    writers = {
        "net.save": lambda p: net.save(p),
        "io.save": lambda p: io.save(net, p),
        "io.atomic_write": lambda p: io.atomic_write(p, b"data"),
    }
    if HAVE_ONNX:
        writers["export_onnx"] = lambda p: net.export_onnx(p)
    if HAVE_MPL:
        writers["plot_history"] = lambda p: plotting.plot_history({"loss": [1.0, 0.5]}, p)
    return writers


@pytest.mark.parametrize("kind", KINDS)
def test_python_writers_refuse_what_is_not_a_regular_file(kind, short_dir):
    net, _ = net_and_file(short_dir)
    path = make_target(kind, short_dir)
    before = snapshot(path)
    for name, write in python_writers(net).items():
        with no_hang(), pytest.raises(ValueError) as info:
            write(path)
        assert path in str(info.value) and WORDS[kind] in str(info.value), (name, str(info.value))
        assert snapshot(path) == before, name                    # left as it was
    assert not [f for f in os.listdir(short_dir) if f.endswith(".tmp")]


def cli_writers(model, data):
    writers = {"train --save": ["train", "--data", "xor", "--epochs", "1", "-q", "--save"],
               "predict --out": ["predict", model, data, "--out"]}
    if HAVE_ONNX:
        writers["export --onnx"] = ["export", model, "--onnx"]
    if HAVE_MPL:
        writers["train --plot"] = ["train", "--data", "xor", "--epochs", "1", "-q", "--plot"]
        writers["demo xor --plot"] = ["demo", "xor", "--plot"]
    return writers


@pytest.mark.parametrize("kind", KINDS)
def test_cli_writers_refuse_what_is_not_a_regular_file(kind, short_dir, capsys):
    _, model = net_and_file(short_dir)
    data = os.path.join(short_dir, "d.npz")
    np.savez(data, X=np.zeros((3, 2), np.float32), y=np.zeros(3, np.int64))
    path = make_target(kind, short_dir)
    before = snapshot(path)
    for name, argv in cli_writers(model, data).items():
        with no_hang():
            code = cli.main(argv + [path])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and err[0].startswith("fastnn: error: "), (name, err)
        assert path in err[0] and WORDS[kind] in err[0], (name, err[0])
        assert snapshot(path) == before, name


def test_a_symlink_to_a_regular_file_is_followed_and_stays_a_link(short_dir):
    net, model = net_and_file(short_dir)
    target = os.path.join(short_dir, "real.safetensors")
    open(target, "wb").close()
    link = os.path.join(short_dir, "link.safetensors")
    os.symlink(target, link)
    net.save(link)
    assert os.path.islink(link) and os.path.getsize(target) > 0
    assert all(np.array_equal(a, b) for a, b in zip(fnn.load(link).params, net.params))


def test_a_missing_directory_is_named(short_dir):
    net, _ = net_and_file(short_dir)
    for write in python_writers(net).values():
        with pytest.raises(ValueError, match="directory .*nope does not exist"):
            write(os.path.join(short_dir, "nope", "x"))


def test_checkpoints_are_written_by_the_same_writer(short_dir, monkeypatch):
    """checkpoint.py (another module) writes through io.save -> io.atomic_write: a spy sees the write."""
    seen = []
    real = io.atomic_write

    def spy(path, data, what="file"):
        seen.append(path)
        return real(path, data, what)

    monkeypatch.setattr(io, "atomic_write", spy)
    net = fnn.NeuralNetwork([fnn.FullyConnected(2, 4), fnn.TanH(), fnn.FullyConnected(4, 2)], seed=0)
    X, y = np.zeros((8, 2), np.float32), np.zeros(8, np.int64)
    ck = os.path.join(short_dir, "ck.safetensors")
    net.fit(X, y, epochs=2, verbose=0, checkpoint=ck)
    assert ck in [os.fspath(p) for p in seen]
