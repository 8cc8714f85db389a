"""No hang, no lost file, no silent garbage from files (issue 13).

Every path a user gives is opened only as a regular file: a FIFO, device, directory or socket is refused
at once. A hang would stall the suite, so every FIFO case runs in a subprocess with a timeout. CSV lines
are read with a bound, npz arrays have their declared size checked before allocation, checkpoint
temporaries of a live writer survive a second process, loaded weights and resume values are checked,
and malformed files give ValueError only.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import tracemalloc
import zipfile

import numpy as np
import pytest

import fastnn as fnn
from fastnn import _memory, _paths, checkpoint as ckpt, data, initializers, io

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
posix_only = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs and flock are POSIX")
HANG_TIMEOUT = 120      # generous: a child imports fastnn (and may load compiled kernels); a hang is forever


def make_net(seed=0):
    return fnn.NeuralNetwork([fnn.FullyConnected(4, 8), fnn.TanH(), fnn.FullyConnected(8, 3)],
                             optimizer=fnn.Adam(lr=0.01), seed=seed)


def make_data(n=40, seed=1):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 4)).astype(np.float32), rng.integers(0, 3, n)


def run_python(code, cwd):
    """Run ``code`` in a fresh interpreter; a hang fails the test (TimeoutExpired) instead of the suite."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=HANG_TIMEOUT)


# ------------------------------------------------------------------------------ FIFOs: refused, no hang
FIFO_CALLS = {
    "fnn.load": "fnn.load(P)",
    "io.load_metadata": "io.load_metadata(P)",
    "data.load_csv": "data.load_csv(P)",
    "data.load_npz": "data.load_npz(P)",
    "data.load_dataset": "data.load_dataset(P)",
    "fit(checkpoint=)": "net = fnn.NeuralNetwork([fnn.FullyConnected(2, 2)])\n"
                        "net.fit(np.zeros((4, 2), np.float32), np.zeros(4, np.int64), checkpoint=P, verbose=0)",
}


@posix_only
@pytest.mark.parametrize("call", sorted(FIFO_CALLS))
def test_fifo_is_refused_at_once(tmp_path, call):
    suffix = {"data.load_csv": ".csv", "data.load_npz": ".npz", "data.load_dataset": ".csv"}.get(call, ".bin")
    fifo = tmp_path / f"pipe{suffix}"
    os.mkfifo(fifo)
    code = (f"import numpy as np, fastnn as fnn\nfrom fastnn import data, io\nP = {str(fifo)!r}\ntry:\n"
            f"{textwrap.indent(FIFO_CALLS[call], '    ')}\n"
            f"except ValueError as exc:\n    print('ValueError:', exc)\n")
    proc = run_python(code, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "ValueError:" in proc.stdout and "FIFO" in proc.stdout and "pipe" in proc.stdout


@posix_only
@pytest.mark.parametrize("args", [("predict", "{fifo}", "digits"), ("info", "{fifo}"),
                                  ("evaluate", "{model}", "{fifo}.csv"), ("predict", "{model}", "{fifo}.npz"),
                                  ("train", "--data", "{fifo}.csv", "--epochs", "1")])
def test_cli_refuses_a_fifo_at_once(tmp_path, args):
    model = tmp_path / "m.safetensors"
    fnn.NeuralNetwork([fnn.FullyConnected(64, 10)], seed=0).save(model)
    fifo = tmp_path / "pipe"
    for name in ("pipe", "pipe.csv", "pipe.npz"):
        os.mkfifo(tmp_path / name)
    argv = [a.format(fifo=fifo, model=model) for a in args]
    proc = run_python(f"import sys\nfrom fastnn.cli import main\nsys.exit(main({argv!r}))", tmp_path)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "FIFO" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_directory_device_and_socket_are_refused(tmp_path):
    with pytest.raises(ValueError, match="directory"):
        fnn.load(tmp_path)
    with pytest.raises(ValueError, match="character device"):
        data.load_csv("/dev/null")
    with pytest.raises(ValueError, match="character device"):
        io.load_metadata("/dev/null")
    with pytest.raises(FileNotFoundError):
        fnn.load(tmp_path / "missing.safetensors")
    if hasattr(socket, "AF_UNIX"):
        path = tmp_path / "s.sock"
        with socket.socket(socket.AF_UNIX) as sock:
            sock.bind(str(path))
            with pytest.raises(ValueError, match="socket"):
                fnn.load(path)
            with pytest.raises(ValueError, match="socket"):
                data.load_npz(path)


# --------------------------------------------------------------------------------- bounded CSV reads
@posix_only
def test_csv_from_dev_zero_fails_fast(tmp_path):
    """A symlink to /dev/zero (an endless stream without newlines) is refused, not read forever."""
    link = tmp_path / "zeros.csv"
    os.symlink("/dev/zero", link)
    proc = run_python(f"""
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))   # a runaway read dies, not the machine
        from fastnn import data
        try:
            data.load_csv({str(link)!r})
        except ValueError as exc:
            print("ValueError:", exc)
        """, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "ValueError:" in proc.stdout and "zeros.csv" in proc.stdout


def _sparse(path, nbytes, prefix=b""):
    """A file of ``prefix`` then zero bytes up to ``nbytes`` (sparse: costs no disk), with no newline."""
    with open(path, "wb") as fh:
        fh.write(prefix)
        fh.truncate(nbytes)
    return path


def test_csv_header_longer_than_the_limit_is_refused(tmp_path):
    path = _sparse(tmp_path / "long.csv", _paths.MAX_LINE_CHARS + 2, b"a,b")
    with pytest.raises(ValueError, match=r"long\.csv, line 1: longer than 16,777,216 characters"):
        data.load_csv(path)


def test_csv_line_limit_bounds_memory(tmp_path, monkeypatch):
    """A 64 MiB line is refused after reading about the limit: memory is bounded by it, not the file."""
    limit = 1 << 20
    monkeypatch.setattr(_paths, "MAX_LINE_CHARS", limit)
    path = _sparse(tmp_path / "row.csv", 64 << 20, b"a,b\n1,2\n3,")
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"row\.csv, line 3: longer than 1,048,576 characters"):
            data.load_csv(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * limit        # a str of the limit is 1-4 bytes per char, plus the reader's buffers


def test_duplicate_header_check_is_linear(tmp_path):
    n = 10 ** 5
    names = [f"c{i}" for i in range(n)]
    path = tmp_path / "wide.csv"
    path.write_text(",".join(names) + "\n" + ",".join(["1"] * n) + "\n")
    X, y, features, _ = data.load_csv(path)
    assert X.shape == (1, n - 1) and len(features) == n - 1 and y.tolist() == [1]
    names[5], names[n - 1] = "c7", "c3"
    path.write_text(",".join(names) + "\n" + ",".join(["1"] * n) + "\n")
    with pytest.raises(ValueError, match=r"duplicate column names in the header: \['c3', 'c7'\]"):
        data.load_csv(path)


# ------------------------------------------------------------------------------ npz declared sizes
def _npy_bytes(shape, descr="<f8", payload=b"\0" * 64):
    header = repr({"descr": descr, "fortran_order": False, "shape": shape}).encode("latin1")
    header += b" " * (-(len(header) + 11) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + payload


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_npz_with_a_huge_declared_shape_is_a_value_error(tmp_path, compression):
    """A header declaring 1.6 TB (the issue's file declared 1.46 TiB) is refused before allocating."""
    path = tmp_path / "huge.npz"
    with zipfile.ZipFile(path, "w", compression) as zf:
        zf.writestr("X.npy", _npy_bytes((400_000, 500_000)))
        zf.writestr("y.npy", _npy_bytes((400_000,), "<i8"))
    with pytest.raises(ValueError, match=r"huge\.npz: array 'X' declares shape \(400000, 500000\)"):
        data.load_npz(path)
    with pytest.raises(ValueError, match="declares"):
        data.load_dataset(str(path))


def test_npz_larger_than_available_memory_is_a_value_error(tmp_path, monkeypatch):
    path = tmp_path / "d.npz"
    np.savez(path, X=np.zeros((100, 10)), y=np.zeros(100))
    monkeypatch.setattr(_memory, "available_bytes", lambda: 1000)
    with pytest.raises(ValueError, match=r"d\.npz: array 'X' of shape \(100, 10\).* 8,000 bytes.* 1,000"):
        data.load_npz(path)


# ------------------------------------------------------------------------ checkpoint temporaries
def _dead_pid():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@posix_only
def test_a_second_fit_keeps_the_first_writers_temporary(tmp_path):
    """Process A holds a checkpoint temporary (as io's atomic write does: its pid in the name, an flock).
    A second process's fit(checkpoint=P) must leave it; once A is gone (SIGKILL), the next fit removes it."""
    path = tmp_path / "c.ckpt"
    writer = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import fcntl, os, sys, time
        sys.path.insert(0, {ROOT!r})
        from fastnn import io
        tmp = io.temporary_name({str(path)!r})
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, b"half written")
        print(tmp, flush=True)
        time.sleep(600)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        tmp = writer.stdout.readline().strip()
        assert os.path.exists(tmp) and str(writer.pid) in os.path.basename(tmp)
        X, y = make_data()
        make_net().fit(X, y, epochs=1, verbose=0, checkpoint=path)
        assert os.path.exists(tmp) and path.exists()            # the live writer's file survived
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    make_net().fit(X, y, epochs=2, verbose=0, checkpoint=path)
    assert not os.path.exists(tmp)                                # its writer is gone: removed


@posix_only
def test_a_locked_temporary_of_an_unknown_pid_is_kept(tmp_path):
    """A pid that is not alive here (another container sharing the directory) is not proof enough: the
    writer's flock is checked too."""
    import fcntl
    path = tmp_path / "c.ckpt"
    tmp = tmp_path / f".c.ckpt.{_dead_pid()}.00112233445566ff.tmp"
    with open(tmp, "wb") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        ckpt.remove_stale_temporaries(path)
        assert tmp.exists()
    ckpt.remove_stale_temporaries(path)
    assert not tmp.exists()


def test_check_writable_names_the_directory(tmp_path):
    with pytest.raises(ValueError, match=f"the directory {tmp_path / 'nope'} does not exist"):
        ckpt.check_writable(tmp_path / "nope" / "c.ckpt")
    ckpt.check_writable(tmp_path / "c.ckpt")
    assert os.listdir(tmp_path) == []                            # the probe leaves nothing behind


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc (Linux)")
def test_unwritable_checkpoint_directory_fails_before_the_first_epoch():
    """/proc/self refuses new files even for root (a chmod'ed directory would not stop root)."""
    net, (X, y) = make_net(), make_data()
    before = net._flat_params.copy()
    with pytest.raises(ValueError, match="cannot write to the directory /proc/self"):
        net.fit(X, y, epochs=1, verbose=0, checkpoint="/proc/self/c.ckpt")
    assert np.array_equal(net._flat_params, before) and not net.history.get("loss")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root may write a read-only directory")
def test_read_only_checkpoint_directory(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(ValueError, match=f"cannot write to the directory {ro}"):
            ckpt.check_writable(ro / "c.ckpt")
    finally:
        ro.chmod(0o700)


# --------------------------------------------------------------------- weights and resume values
def test_non_finite_weights_are_refused(tmp_path):
    net = make_net()
    net.layers[2].weights[1, 2] = np.nan
    net.save(tmp_path / "nan.safetensors")
    with pytest.raises(ValueError, match=r"nan\.safetensors.*'layers\.2\.weights' holds 1 NaN or infinite"):
        fnn.load(tmp_path / "nan.safetensors")
    net = make_net()
    X, y = make_data()
    net.fit(X, y, epochs=1, verbose=0)                            # Adam state exists now
    net.optimizer.state[0][1][3] = np.inf
    net.save(tmp_path / "inf.safetensors")
    with pytest.raises(ValueError, match=r"'optimizer\.state\.0\.1' holds 1 NaN or infinite"):
        fnn.load(tmp_path / "inf.safetensors")
    path = tmp_path / "c.ckpt"                                    # a checkpoint is a model file too
    make_net().fit(X, y, epochs=1, verbose=0, checkpoint=path)
    _edited_checkpoint(path, lambda state: None)                  # rewritten unchanged: still resumes
    make_net().fit(X, y, epochs=1, verbose=0, checkpoint=path)
    saved, meta = io.load_with_metadata(path)
    saved.layers[0].bias[0] = -np.inf
    io.save(saved, path, extra=meta["extra"])
    with pytest.raises(ValueError, match=r"cannot resume from checkpoint.*'layers\.0\.bias' holds 1 NaN"):
        make_net().fit(X, y, epochs=2, verbose=0, checkpoint=path)


def _edited_checkpoint(path, edit):
    """Rewrite the checkpoint at ``path`` with ``edit(state)`` applied to its training state."""
    saved, meta = io.load_with_metadata(path)
    edit(meta["extra"]["checkpoint"])
    io.save(saved, path, extra=meta["extra"])


BAD_STATES = {
    "partial.correct": lambda s: s.update(partial={"batches": 2, "loss_sum": 1.5, "correct": 10 ** 9}),
    "partial.loss_sum": lambda s: s.update(partial={"batches": 2, "loss_sum": float("nan"), "correct": 3}),
    "partial.batches": lambda s: s.update(partial={"batches": 99, "loss_sum": 1.5, "correct": 3}),
    "rng.state.state": lambda s: s["rng"]["state"].update(state=2 ** 200),
    "rng.state.inc": lambda s: s["rng"]["state"].update(inc=-1),
    "rng.uinteger": lambda s: s["rng"].update(uinteger=2 ** 64),
    "rng must be": lambda s: s.update(rng={"bit_generator": "MT19937"}),
    "epoch must be": lambda s: s.update(epoch=-3),
}


@pytest.mark.parametrize("field", sorted(BAD_STATES))
def test_out_of_range_resume_values_are_refused(tmp_path, field):
    """Hand-edited checkpoint values (the issue's correct = 10**9 gave accuracy 3,906,250) are refused
    with a ValueError naming the field — never OverflowError, never taken as they are."""
    X, y = make_data(n=40)
    path = tmp_path / "c.ckpt"
    kwargs = dict(batch_size=8, verbose=0, fused=False)        # the per-layer path resumes mid-epoch
    make_net().fit(X, y, epochs=1, checkpoint=path, **kwargs)
    if field.startswith("partial"):
        def edit(state):
            BAD_STATES[field](state)
            state["epoch"] = 0
        saved, meta = io.load_with_metadata(path)
        edit(meta["extra"]["checkpoint"])
        saved.history = {}
        io.save(saved, path, extra=meta["extra"])
    else:
        _edited_checkpoint(path, BAD_STATES[field])
    net = make_net()
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        net.fit(X, y, epochs=3, checkpoint=path, **kwargs)


def test_a_consistent_partial_epoch_still_resumes(tmp_path):
    """The checks refuse only impossible values: correct <= samples of the batches done is accepted."""
    X, y = make_data(n=40)
    path = tmp_path / "c.ckpt"
    kwargs = dict(batch_size=8, verbose=0, fused=False)
    make_net().fit(X, y, epochs=1, checkpoint=path, **kwargs)
    saved, meta = io.load_with_metadata(path)
    meta["extra"]["checkpoint"].update(epoch=0, partial={"batches": 2, "loss_sum": 1.5, "correct": 16})
    saved.history = {}
    io.save(saved, path, extra=meta["extra"])
    history = make_net().fit(X, y, epochs=1, checkpoint=path, **kwargs)
    assert len(history["loss"]) == 1


# ---------------------------------------------------------------------------------------- fuzzing
def _mutations(blob, rng, count):
    """``count`` corrupted copies of ``blob``: bytes flipped in the header or anywhere, or truncated."""
    header_end = 8 + int.from_bytes(blob[:8], "little")
    for k in range(count):
        b = bytearray(blob)
        kind = k % 3
        if kind == 2:
            yield bytes(b[:int(rng.integers(0, len(b)))])
            continue
        end = header_end if kind == 0 else len(b)
        for i in rng.integers(0, end, int(rng.integers(1, 4))):
            b[i] = int(rng.integers(0, 256))
        yield bytes(b)


ODD_VALUES = (-1, 0, 2 ** 70, -(2 ** 70), 1e308, float("nan"), float("inf"), "x", None, True, [], {}, [1, 2])


def _leaves(node, path=()):
    """(path, value) of every leaf of a JSON value, paths as key/index tuples."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _leaves(v, path + (k,))
    elif isinstance(node, list) and node:
        for i, v in enumerate(node):
            yield from _leaves(v, path + (i,))
    else:
        yield path, node


def _set(node, path, value):
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value


def _json_mutations(blob, rng, count):
    """Files whose safetensors header and fastnn metadata are valid JSON with one leaf replaced by an odd
    value (a negative, huge, NaN, wrong-typed or empty one): what a hand edit or a hostile file does."""
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:8 + n])
    meta = json.loads(header["__metadata__"]["fastnn"])
    meta_leaves = list(_leaves(meta))
    tensor_leaves = [p for p in _leaves(header) if p[0][0] != "__metadata__"]
    for k in range(count):
        h, m = json.loads(json.dumps(header)), json.loads(json.dumps(meta))
        value = ODD_VALUES[int(rng.integers(len(ODD_VALUES)))]
        if k % 4 == 3:
            _set(h, tensor_leaves[int(rng.integers(len(tensor_leaves)))][0], value)
        else:
            _set(m, meta_leaves[int(rng.integers(len(meta_leaves)))][0], value)
        h["__metadata__"]["fastnn"] = json.dumps(m)
        text = json.dumps(h).encode()
        yield len(text).to_bytes(8, "little") + text + blob[8 + n:]


def test_fuzzed_model_files_give_value_errors_only(tmp_path):
    net = make_net()
    X, y = make_data()
    net.fit(X, y, epochs=1, verbose=0)
    net.save(tmp_path / "good.safetensors")
    blob = (tmp_path / "good.safetensors").read_bytes()
    rng = np.random.default_rng(0)
    path = tmp_path / "bad.safetensors"
    for mutated in [*_mutations(blob, rng, 150), *_json_mutations(blob, rng, 200)]:
        path.write_bytes(mutated)
        for reader in (fnn.load, io.load_metadata):
            try:
                reader(path)
            except ValueError:
                pass


@pytest.mark.filterwarnings("ignore:checkpoint .* was written with")
def test_fuzzed_checkpoints_give_value_errors_only(tmp_path):
    X, y = make_data()
    good = tmp_path / "good.ckpt"
    make_net().fit(X, y, epochs=2, verbose=0, checkpoint=good, fused=False, batch_size=8)
    blob = good.read_bytes()
    rng = np.random.default_rng(1)
    path = tmp_path / "bad.ckpt"
    for mutated in [*_mutations(blob, rng, 20), *_json_mutations(blob, rng, 80)]:
        path.write_bytes(mutated)
        try:
            make_net().fit(X, y, epochs=2, verbose=0, checkpoint=path, fused=False, batch_size=8)
        except ValueError:
            pass


def test_fuzzed_npz_files_give_value_errors_only(tmp_path):
    good = tmp_path / "good.npz"
    np.savez_compressed(good, X=np.ones((20, 3)), y=np.arange(20))
    blob = good.read_bytes()
    rng = np.random.default_rng(2)
    path = tmp_path / "bad.npz"
    for k in range(150):
        b = bytearray(blob)
        if k % 3 == 2:
            b = b[:int(rng.integers(0, len(b)))]
        else:
            for i in rng.integers(0, len(b), int(rng.integers(1, 4))):
                b[i] = int(rng.integers(0, 256))
        path.write_bytes(bytes(b))
        try:
            data.load_npz(path)
        except ValueError:
            pass


# --------------------------------------------------------------------------- initialisation memory
@pytest.mark.parametrize("name", ["he", "xavier", "uniform"])
def test_float32_initialisation_has_no_float64_temporaries(name):
    init, rng = initializers.get(name), np.random.default_rng(0)
    n, m = 1000, 500
    tracemalloc.start()
    try:
        w = init(n, m, rng, np.float32)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert w.dtype == np.float32 and w.shape == (n, m) and np.isfinite(w).all()
    assert peak <= 1.5 * w.nbytes          # was 5x: a float64 draw, a float64 product, the float32 cast


def test_initialisers_keep_their_distributions():
    """float64 draws are exactly the textbook formulas; float32 ones have the right scale."""
    rng = lambda: np.random.default_rng(7)          # noqa: E731
    n, m = 300, 200
    assert np.array_equal(initializers.he(n, m, rng(), np.float64),
                          rng().standard_normal((n, m)) * np.sqrt(2.0 / n))
    a = np.sqrt(6.0 / (n + m))
    assert np.array_equal(initializers.xavier(n, m, rng(), np.float64), rng().uniform(-a, a, (n, m)))
    assert np.array_equal(initializers.uniform(n, m, rng(), np.float64),
                          rng().uniform(-1 / np.sqrt(n), 1 / np.sqrt(n), (n, m)))
    w = initializers.he(n, m, rng(), np.float32)
    se = np.sqrt(2.0 / n) * np.sqrt(2.0 / (n * m))          # standard error of the sample std
    assert abs(w.std(dtype=np.float64) - np.sqrt(2.0 / n)) < 6 * se
    u = initializers.xavier(n, m, rng(), np.float32)
    assert -a <= u.min() and u.max() <= a


def test_a_layer_larger_than_memory_is_refused_before_allocating(monkeypatch):
    with pytest.raises(ValueError, match=r"FullyConnected\(1000000, 1000000\) layer of float32.*"
                                         r"12,000,012,000,000 bytes"):
        fnn.FullyConnected(10 ** 6, 10 ** 6)
    monkeypatch.setattr(_memory, "available_bytes", lambda: 10 ** 6)
    with pytest.raises(ValueError, match=r"FullyConnected\(300, 300\) layer of float64.*2,167,200 bytes.*"
                                         r"1,000,000 bytes"):
        fnn.FullyConnected(300, 300, dtype=np.float64)
    fnn.FullyConnected(100, 100)       # 121,200 bytes: fits


# ------------------------------------------------------------------------------------------ seed
def test_network_seed_is_checked():
    layers = lambda: [fnn.FullyConnected(2, 2)]     # noqa: E731
    with pytest.raises(ValueError, match="seed must be a non-negative integer or None, got -1"):
        fnn.NeuralNetwork(layers(), seed=-1)
    for bad in (1.5, "3", True, [1, 2]):
        with pytest.raises(TypeError, match="seed"):
            fnn.NeuralNetwork(layers(), seed=bad)
    assert fnn.NeuralNetwork(layers(), seed=np.int64(3)).seed == 3
    assert json.dumps(fnn.NeuralNetwork(layers(), seed=np.uint8(3)).config()["seed"]) == "3"
