"""Saving and loading networks: one safetensors file, never a pickle (DESIGN §5).

The file holds every parameter as a tensor ("layers.0.weights", "layers.0.bias", ...), the optimizer
state ("optimizer.state.{i}.{j}", slot j of the optimizer's parameter array i) and, in the safetensors
metadata under the key "fastnn", one JSON document::

    {"format": "fastnn", "format_version": 1, "architecture": net.config(), "dtype": "float32",
     "optimizer_steps": 12, "optimizer_state": [2] or null, "history": {...}, "extra": {...} or null}

and beside it, under "fastnn_tensors_crc32", a CRC-32 of the tensors (``tensor_checksum``: names, dtypes,
shapes, bytes), verified by ``load`` after every other check — a flipped byte in the weights or the
optimizer state is a ValueError, not a model (files written without it still load). So a fastnn model
also opens in any safetensors reader.

The whole file is sealed too: the header is written with "fastnn_file_crc32" as the first entry of the
safetensors metadata, at a fixed offset (``SEAL_PREFIX``), holding the CRC-32 of every byte of the file (the
length field, the header — the JSON document with the history, the generator state, the callbacks' state
such as EarlyStopping's best weights, the layer configs — and the tensor data) computed with those 8 hex
digits as "00000000". ``load`` and ``load_metadata`` check it: a damaged file (any flipped byte, a truncated
file) is one ValueError that names the file and says it is damaged (with what the damage broke, when a
check failed first). Files written before the seal (their header does not start with it) are still read
as before, checked by everything else: refusing them would lose users' models, and nothing about them is
less safe than it was (they were never sealed); so is a file whose header another program rewrote (a JSON
writer moves the entry; a flipped byte cannot), checked by everything else. A header whose start is within
a few bytes of the seal's is a sealed file damaged there, not an old file.

Loading rebuilds the objects from the JSON through the type maps (``LAYER_TYPES``, ``LOSS_TYPES``,
``OPTIMIZER_TYPES``) only, and checks the file before trusting it: header size, JSON, format version, the
architecture's types and values, and that every tensor is present with exactly the shape and dtype the architecture implies. Any problem is a ValueError
naming the file; nothing in the file is ever executed.
"""
import json
import math
import numbers
import os
import secrets
import stat
import zlib

try:
    import fcntl
except ImportError:      # Windows: stale temporaries are then never removed
    fcntl = None

import numpy as np
import safetensors.numpy

from . import _paths
from .layers import LAYER_TYPES, register_layer
from .losses import LOSS_TYPES
from . import network
from .network import NeuralNetwork
from .optimizers import OPTIMIZER_TYPES

FORMAT = "fastnn"
FORMAT_VERSION = 2        # 2: the "preprocessing" entry; files without one are still written as version 1
# every top-level metadata key ``_metadata`` writes (any other is refused: a file fastnn did not write)
_METADATA_KEYS = frozenset({"format", "format_version", "architecture", "dtype", "optimizer_steps",
                            "optimizer_state", "history", "shuffle_state", "extra", "preprocessing"})
METADATA_KEY = "fastnn"
CHECKSUM_KEY = "fastnn_tensors_crc32"     # beside METADATA_KEY in the safetensors metadata
FILE_CHECKSUM_KEY = "fastnn_file_crc32"   # the whole file's CRC-32: the header's first entry (see above)
SEAL_PREFIX = b'{"__metadata__":{"' + FILE_CHECKSUM_KEY.encode() + b'":"'
SEAL_AT = 8 + len(SEAL_PREFIX)            # the offset of the seal's 8 hex digits in the file
_SEAL_BLANK = b"00000000"
MAX_HEADER_BYTES = 100 * 1024 * 1024
PARAM_NAMES = {"FullyConnected": ("weights", "bias")}


# -- saving ---------------------------------------------------------------------------------------
def _param_names(layer):
    """Tensor names of a layer's params, in params order ("weights", "bias" for FullyConnected)."""
    n = len(layer.params)
    names = PARAM_NAMES.get(type(layer).__name__)
    return tuple(names) if names is not None and len(names) == n else tuple(str(k) for k in range(n))


def _json_default(obj):
    """JSON for NumPy scalars and arrays (e.g. class labels in ``extra``); anything else is an error."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON-serialisable")


json_default = _json_default     # public: checkpoints and the MPI agreement encode configurations the same way


def _tensors(net):
    """name -> array for every parameter and optimizer state array of ``net``."""
    tensors = {}
    for i, layer in enumerate(net.layers):
        for name, p in zip(_param_names(layer), layer.params):
            tensors[f"layers.{i}.{name}"] = np.ascontiguousarray(p)
    for i, slots in enumerate(net.optimizer.state or []):
        for j, s in enumerate(slots):
            tensors[f"optimizer.state.{i}.{j}"] = np.ascontiguousarray(s)
    return tensors


def _history_value(v):
    """A history entry: a number, or a list of numbers (per-layer values such as history["grad_norm"])."""
    if isinstance(v, (list, tuple, np.ndarray)):
        return [float(x) for x in v]
    return float(v)


def _layer_is_registered(layer):
    return LAYER_TYPES.get(type(layer).__name__) is type(layer)


def check_savable(net, what="save"):
    """ValueError, saying what to do, unless a model file can rebuild every part of ``net``.

    Files rebuild layers, the loss and the optimizer from their type maps only (``LAYER_TYPES``, ``LOSS_TYPES``,
    ``OPTIMIZER_TYPES``), so a custom Layer subclass must be registered (``fastnn.register_layer``) and be
    rebuildable as ``cls(**config())`` with params of the same shapes; custom losses and optimizers cannot
    be saved. Checked at ``save`` and before a checkpointed fit, never at load: a file that is written can
    be read. ``what`` names the caller in the message ("save", "checkpoint=")."""
    for i, layer in enumerate(net.layers):
        cls = type(layer)
        if not _layer_is_registered(layer):
            raise ValueError(f"{what}: layers[{i}] is {cls.__module__}.{cls.__qualname__}, a custom layer (not "
                             f"one of fastnn's built-in layers) that is not registered, so a model file could not rebuild it; register it with "
                             f"fastnn.register_layer({cls.__name__}) (or @fastnn.register_layer above its class) "
                             f"— its params are saved as tensors and its config() as JSON, and load rebuilds it "
                             f"as {cls.__name__}(**config())")
        if cls.__module__ != register_layer.__module__:
            _check_rebuildable(layer, i, what)
    if net.history:
        try:
            check_history_values({k: [[float(e) for e in x] if isinstance(x, (list, tuple, np.ndarray)) else float(x)
                                      for x in v] for k, v in net.history.items()})
        except ValueError as exc:
            raise ValueError(f"{what}: net.history cannot be stored, a model file could not be read back: {exc} "
                             f"(assign net.history = None, or fix the entry)") from None
    for part, kinds, obj, types in (("the loss", "losses", net.loss, LOSS_TYPES),
                                    ("the optimizer", "optimizers", net.optimizer, OPTIMIZER_TYPES)):
        if types.get(type(obj).__name__) is not type(obj):
            raise ValueError(f"{what}: {part} is {type(obj).__qualname__}, a custom class; model files rebuild "
                             f"{kinds} from fastnn's own types only ({', '.join(sorted(types))}): "
                             f"use one of them to save, or keep the weights yourself (net.params)")


def _check_rebuildable(layer, i, what):
    """A registered custom layer must come back from its JSON config with params of the same layout."""
    cls = type(layer)
    config = layer.config()
    if not isinstance(config, dict):
        raise ValueError(f"{what}: layers[{i}] ({cls.__name__}).config() must return a dict of constructor "
                         f"arguments, got {type(config).__name__}")
    try:
        config = json.loads(json.dumps(config, default=_json_default))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what}: layers[{i}] ({cls.__name__}).config() is not JSON-serialisable ({exc})") from None
    try:
        rebuilt = cls(**config)
    except Exception as exc:
        raise ValueError(f"{what}: layers[{i}] cannot be rebuilt as {cls.__name__}(**config()) with "
                         f"config() = {config!r:.200}: {type(exc).__name__}: {exc}; a model file could be "
                         f"written but not loaded") from None
    have = [(np.shape(p), getattr(p, "dtype", None)) for p in layer.params]
    again = [(np.shape(p), getattr(p, "dtype", None)) for p in rebuilt.params]
    if have != again or not all(isinstance(p, np.ndarray) for p in layer.params):
        raise ValueError(f"{what}: layers[{i}] ({cls.__name__}) rebuilt from its config() has params "
                         f"{again}, but the layer has {have}; config() must return every constructor argument "
                         f"that shapes the params (and params must be NumPy arrays)")


def _metadata(net, extra):
    state = net.optimizer.state
    pre = net.preprocessing
    meta = {"format": FORMAT, "format_version": 1 if pre is None else 2, "architecture": net.config(),
            "dtype": net.dtype.name, "optimizer_steps": int(net.optimizer.steps),
            "optimizer_state": None if state is None else [len(slots) for slots in state],
            "history": {k: [_history_value(v) for v in vals] for k, vals in (net.history or {}).items()},
            "shuffle_state": _shuffle_state_json(net.shuffle_state), "extra": extra}
    if pre is not None:       # data only (fastnn.preprocessing): older fastnn refuses the file (version 2)
        meta["preprocessing"] = pre.to_json()
    try:
        return json.dumps(meta, default=_json_default)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"cannot save the model: its configuration or `extra` is not JSON-serialisable "
                         f"({exc})") from None


def _shuffle_state_json(state):
    """The (seed, bit generator state) of the network's shuffling stream as JSON, or None."""
    if state is None:
        return None
    seed, bits = state
    return {"seed": seed, "bit_generator": bits}


def _check_shuffle_state(value):
    """The shuffling stream saved by ``_shuffle_state_json``, checked; ValueError when malformed."""
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) != {"seed", "bit_generator"}:
        raise ValueError("metadata shuffle_state must be null or an object {seed, bit_generator}")
    seed = value["seed"]
    if seed is not None and (not _is_int(seed) or seed < 0):
        raise ValueError(f"metadata shuffle_state.seed must be null or a non-negative integer, got {seed!r:.50}")
    rng = np.random.default_rng()
    try:
        rng.bit_generator.state = value["bit_generator"]
    except (TypeError, ValueError, KeyError, OverflowError) as exc:
        raise ValueError(f"metadata shuffle_state.bit_generator is not a generator state ({exc!s:.100})") from None
    return seed, rng.bit_generator.state


def save(net, path, extra=None):
    """Write ``net`` (parameters, optimizer state, architecture, history) to one safetensors file.

    ``extra`` is an optional JSON-serialisable dict stored with the model (e.g. an estimator's class
    labels; NumPy arrays become lists); read it back with ``load_metadata(path)["extra"]``. The write is
    atomic: a temporary file in the same directory is written, fsynced and renamed onto ``path``; if
    anything fails, the temporary file is removed and a file already at ``path`` is left untouched.
    """
    write_model(net, path, extra, "model file")


def write_model(net, path, extra, what):
    """``save``, its errors naming the file as ``what`` ("model file"; fastnn.checkpoint: "checkpoint")."""
    if not isinstance(net, NeuralNetwork):
        raise TypeError(f"net must be a fastnn NeuralNetwork, got {type(net).__name__}")
    if extra is not None and not isinstance(extra, dict):
        raise TypeError(f"extra must be a dict or None, got {type(extra).__name__}")
    check_savable(net)
    _paths.output_target(path, what)          # refused before any work
    tensors = _tensors(net)
    data = safetensors.numpy.save(tensors, metadata={METADATA_KEY: _metadata(net, extra),
                                                     CHECKSUM_KEY: tensor_checksum(tensors)})
    atomic_write(path, seal(data), what)


def seal(data):
    """The safetensors file ``data`` (bytes) with its header rewritten to start with the whole-file
    checksum entry (FILE_CHECKSUM_KEY, at SEAL_AT) and the CRC-32 of every byte written into it."""
    n = int.from_bytes(data[:8], "little")
    header = json.loads(bytes(data[8:8 + n]).decode("utf-8"))
    meta = dict(header.pop("__metadata__", None) or {})
    meta.pop(FILE_CHECKSUM_KEY, None)
    head = json.dumps({"__metadata__": {FILE_CHECKSUM_KEY: _SEAL_BLANK.decode(), **meta}, **header},
                      separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)       # (the tensor data stays 8-byte aligned, as safetensors writes it)
    out = bytearray(len(head).to_bytes(8, "little"))
    out += head
    out += memoryview(data)[8 + n:]
    if bytes(out[8:SEAL_AT]) != SEAL_PREFIX:      # pragma: no cover - (json.dumps keeps the order given)
        raise AssertionError("the model file's header does not start with its checksum entry")
    out[SEAL_AT:SEAL_AT + 8] = f"{zlib.crc32(out):08x}".encode()
    return bytes(out)


def seal_check(data):
    """(stored, computed) CRC-32 hex strings of a sealed file's ``data`` (see ``seal``): equal for an intact
    file; None for a file written before the seal, or whose header another program rewrote (a JSON writer
    moves the entry: no flipped byte can), which the other checks then read. A header that starts within 3
    bytes of the seal's
    prefix, or a seal whose digits are not 8 lowercase hex digits, is a damaged seal: ("damaged", ...)."""
    start = bytes(data[8:SEAL_AT])
    crc = zlib.crc32(memoryview(data)[:SEAL_AT])
    crc = zlib.crc32(_SEAL_BLANK, crc)
    crc = zlib.crc32(memoryview(data)[SEAL_AT + 8:], crc)
    computed = f"{crc:08x}"
    if start != SEAL_PREFIX:
        near = (len(start) == len(SEAL_PREFIX) and sum(a != b for a, b in zip(start, SEAL_PREFIX)) <= 3) or \
            (0 < len(start) < len(SEAL_PREFIX) and SEAL_PREFIX.startswith(start))     # (cut short inside it)
        return ("damaged", computed) if near else None     # (a header another program rewrote: unsealed)
    stored = bytes(data[SEAL_AT:SEAL_AT + 8])
    if len(stored) < 8 or not all(c in b"0123456789abcdef" for c in stored):
        return "damaged", computed
    return stored.decode("ascii"), computed


def damaged_message(name, check, detail=None):
    """The one error of a damaged file: names it, says it is damaged, and what the damage broke."""
    stored, computed = check
    what = ("its checksum entry is damaged" if stored == "damaged" else
            f"its bytes do not match the CRC-32 written with it ({stored} stored, {computed} computed)")
    broke = f" — {detail}" if detail else ""
    return (f"{name}: damaged file: {what}: the file was changed or damaged after fastnn wrote it (a disk or "
            f"copy error, a partial download, an edit); restore it from a copy or write it again{broke}")


def tensor_checksum(tensors):
    """The CRC-32 (8 hex digits) of every tensor's name, dtype, shape and bytes, in name order: stored in the
    safetensors metadata beside the fastnn document (a reader that does not know it ignores it), checked
    by ``load`` so that a flipped byte in the weights or the optimizer state is an error, not a model."""
    crc = 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        crc = zlib.crc32(f"{name}|{a.dtype.str}|{a.shape}|".encode(), crc)
        crc = zlib.crc32(memoryview(a).cast("B") if a.size else b"", crc)
    return f"{crc:08x}"


def temporary_name(path):
    """The name of a fresh temporary for an atomic write of ``path``: ``.{name}.{pid}.{16 hex}.tmp`` in
    the same directory. The writer's pid in the name, and an flock the writer holds while writing, let
    ``checkpoint.remove_stale_temporaries`` delete a temporary only when its writer is provably gone."""
    directory, base = os.path.split(os.fspath(path))     # the directory as given (see _paths.output_target)
    return os.path.join(directory, f".{base}.{os.getpid()}.{secrets.token_hex(8)}.tmp")


def atomic_write(path, data, what="file"):
    """Write bytes to ``path`` through a temporary file + fsync + os.replace (+ fsync of the directory).

    THE writer of every file fastnn writes (model files, checkpoints, ONNX files, plots, the CLI's CSV
    output): ``_paths.output_target`` first refuses, with a ValueError naming the path and never blocking, a
    target that is not a new path or a regular file (a FIFO, a device, a directory, a socket, a dangling
    symlink); a symlink to a regular file is followed and stays a symlink. ``what`` names the file in
    messages ("model file", "ONNX file", ...). Every error names ``path``, never the temporary: ValueError
    when no file can be created in the directory (permissions, a read-only or virtual file system such
    as /proc), OSError (its class and errno kept) when the write or the rename fails (a full disk)."""
    path = _paths.output_target(path, what)
    directory = os.path.dirname(path) or os.curdir
    tmp = temporary_name(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    except OSError as exc:     # the user's path in the message, not the writer's temporary
        raise ValueError(f"cannot write the {what} {path}: cannot create a file in the directory "
                         f"{directory} ({exc.strerror or exc})") from None
    try:
        f = os.fdopen(fd, "wb")
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    try:
        if fcntl is not None:           # held until the file is closed (after the write and fsync)
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        with f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if not stat.S_ISREG(os.stat(path).st_mode if os.path.lexists(path) else stat.S_IFREG):
            _paths.output_target(path, what)     # became a FIFO, a device, a directory since: refused
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError) and not isinstance(exc, ValueError):
            raise type(exc)(exc.errno, f"cannot write the {what} {path}: {exc.strerror or exc}") from None
        raise
    try:  # make the rename itself durable; not possible on every platform / file system
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


# -- loading: reading and checking the file ---------------------------------------------------------
def _read_header(f, path):
    """The safetensors header as a dict, checked: a sane length field and a valid JSON object."""
    try:
        size = os.fstat(f.fileno()).st_size
    except (AttributeError, OSError, ValueError):     # (a BytesIO over the file's bytes)
        size = len(f.getbuffer())
    head = f.read(8)
    if len(head) < 8:
        raise ValueError(f"{path}: not a fastnn model file: {size} bytes is too short for a safetensors "
                         f"header")
    n = int.from_bytes(head, "little")
    if n > MAX_HEADER_BYTES or n > size - 8:
        raise ValueError(f"{path}: not a fastnn model file: the safetensors header length field says {n} "
                         f"bytes, but only {size - 8} bytes follow it (limit {MAX_HEADER_BYTES})")
    try:
        header = json.loads(f.read(n).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ValueError(f"{path}: not a fastnn model file: the safetensors header is not valid "
                         f"JSON") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path}: not a fastnn model file: the safetensors header is not a JSON object")
    return header


def _check_metadata(header, path):
    """The decoded fastnn metadata dict of a parsed header; ValueError if absent, malformed or too new."""
    meta = header.get("__metadata__")
    text = meta.get(METADATA_KEY) if isinstance(meta, dict) else None
    if not isinstance(text, str):
        raise ValueError(f"{path}: not a fastnn model file: the safetensors metadata has no "
                         f"'{METADATA_KEY}' entry")
    try:
        meta = json.loads(text)
    except (ValueError, RecursionError):
        raise ValueError(f"{path}: corrupt fastnn model file: the '{METADATA_KEY}' metadata is not valid "
                         f"JSON") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{path}: not a fastnn model file: metadata 'format' is not {FORMAT!r}")
    version = meta.get("format_version")
    if not _is_int(version) or version < 1:
        raise ValueError(f"{path}: corrupt fastnn model file: bad format_version {version!r}")
    if version > FORMAT_VERSION:
        raise ValueError(f"{path}: the file has fastnn format version {version}, but this fastnn reads "
                         f"version {FORMAT_VERSION} only; upgrade fastnn to load it")
    unknown = sorted(set(meta) - _METADATA_KEYS, key=str)
    if unknown:
        raise ValueError(f"{path}: corrupt fastnn model file: unknown metadata key(s) {unknown!r:.200} (a "
                         f"version {version} file has only {sorted(_METADATA_KEYS)})")
    if version < 2 and "preprocessing" in meta:
        raise ValueError(f"{path}: corrupt fastnn model file: a 'preprocessing' entry needs format version 2, "
                         f"the file says {version}")
    return meta


def _open(path):
    """Open ``path`` for reading as a regular file (FileNotFoundError if missing; ValueError at once, never
    a blocking open, for a FIFO, device, directory or socket)."""
    return _paths.open_regular(path, "model file")


def load_metadata(path):
    """The decoded fastnn metadata (architecture, dtype, history, extra, ...) of a model file.

    Reads and checks only the header (cheap; for ``fastnn info``); ``load`` checks the tensors too.
    """
    name = os.fspath(path)
    with _open(path) as f:
        data = f.read()
    check = seal_check(data)
    damaged = check is not None and check[0] != check[1]
    try:
        header = _read_header(io_bytes(data), name)
        meta = _check_metadata(header, name)
    except ValueError as exc:
        if damaged:
            raise ValueError(damaged_message(name, check, _detail(exc, name))) from None
        raise
    if damaged:
        raise ValueError(damaged_message(name, check))
    return meta


def io_bytes(data):
    """A read-only file object over ``data`` with a ``fileno``-free ``fstat`` (see ``_read_header``)."""
    import io as _io
    return _io.BytesIO(data)


def _detail(exc, name):
    text = str(exc)
    return text[len(name) + 2:] if text.startswith(f"{name}: ") else text


# -- loading: rebuilding the network ----------------------------------------------------------------
def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _spec(entry, what, types, hint=""):
    """(class, kwargs) from a [type name, kwargs dict] pair, the class looked up in ``types`` only."""
    if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)
            and isinstance(entry[1], dict)):
        raise ValueError(f"{what} must be a [type name, arguments] pair, got {entry!r:.200}")
    cls = types.get(entry[0])
    if cls is None:
        raise ValueError(f"{what} has the unknown type {entry[0]!r:.100}; known: {sorted(types)}{hint}")
    return cls, entry[1]


def _layer_hint(name):
    if not isinstance(name, str) or not name.isidentifier():
        return ""
    return (f". If {name} is a custom Layer subclass, import the code that defines it and register it with "
            f"fastnn.register_layer({name}) before loading")


def _check_size(kwargs, what, budget):
    """Refuse layer sizes the file cannot hold before a constructor allocates them; the budget left."""
    n, m = kwargs.get("in_features"), kwargs.get("out_features")
    if _is_int(n) and _is_int(m):
        budget -= n * m + m
        if budget < 0:
            raise ValueError(f"{what} declares {n}x{m} weights, more than the file holds")
    return budget


def _build(meta, budget):
    """The NeuralNetwork described by ``meta`` (constructors run their own argument checks)."""
    arch = meta.get("architecture")
    if not isinstance(arch, dict) or not isinstance(arch.get("layers"), list):
        raise ValueError("metadata 'architecture' must be an object with a 'layers' list")
    layers = []
    for i, entry in enumerate(arch["layers"]):
        name = entry[0] if isinstance(entry, list) and entry else None
        cls, kwargs = _spec(entry, f"layer {i}", LAYER_TYPES, _layer_hint(name))
        budget = _check_size(kwargs, f"layer {i}", budget)
        layers.append(cls(**kwargs))
    loss_cls, loss_kwargs = _spec(arch.get("loss"), "loss", LOSS_TYPES)
    opt_cls, opt_kwargs = _spec(arch.get("optimizer"), "optimizer", OPTIMIZER_TYPES)
    seed = arch.get("seed")
    if seed is not None and not _is_int(seed):
        raise ValueError(f"architecture seed must be an integer or null, got {seed!r:.100}")
    net = NeuralNetwork(layers, loss=loss_cls(**loss_kwargs), optimizer=opt_cls(**opt_kwargs), seed=seed)
    if meta.get("dtype") != net.dtype.name:
        raise ValueError(f"metadata dtype {meta.get('dtype')!r:.100} does not match the layers' "
                         f"{net.dtype.name}")
    return net


def _expected_tensors(net, meta):
    """(name -> an array of the shape and dtype that tensor must have, for every tensor the architecture
    implies (the parameters themselves for "layers.*"), the optimizer state layout)."""
    expected = {}
    for i, layer in enumerate(net.layers):
        for name, p in zip(_param_names(layer), layer.params):
            expected[f"layers.{i}.{name}"] = p
    slots = meta.get("optimizer_state")
    if slots is not None:
        targets = net.plan().opt_params
        n_slots = net.optimizer.n_slots
        if not (isinstance(slots, list) and len(slots) == len(targets)
                and all(_is_int(s) and s == n_slots for s in slots)):
            raise ValueError(f"metadata optimizer_state must be null or {[n_slots] * len(targets)} for this "
                             f"architecture, got {slots!r:.200}")
        for i, p in enumerate(targets):
            for j in range(n_slots):
                expected[f"optimizer.state.{i}.{j}"] = p
    return expected, slots


def _check_tensors(tensors, expected):
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        parts = [f"{what} tensors {names[:10]}" for what, names in (("missing", missing),
                                                                     ("unexpected", unexpected)) if names]
        raise ValueError(f"the tensors do not match the architecture: {'; '.join(parts)}")
    for name, dst in expected.items():
        arr = tensors[name]
        if arr.shape != dst.shape or arr.dtype != dst.dtype:
            raise ValueError(f"tensor {name!r} has shape {arr.shape} and dtype {arr.dtype}, the architecture "
                             f"needs {dst.shape} {dst.dtype}")
        if not np.isfinite(arr).all():
            bad = int(np.count_nonzero(~np.isfinite(arr)))
            raise ValueError(f"tensor {name!r} holds {bad} NaN or infinite value(s); a model's weights and "
                             f"optimizer state must be finite")


def _is_number(x):
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


# what a history entry of the training loop may hold: (low, high); "lr" must also be > 0
HISTORY_RANGES = {"loss": (0.0, math.inf), "val_loss": (0.0, math.inf), "accuracy": (0.0, 1.0),
                  "val_accuracy": (0.0, 1.0), "time": (0.0, math.inf), "grad_norm": (0.0, math.inf),
                  "lr": (0.0, math.inf)}


def check_history_values(history):
    """ValueError naming the first entry of the loop's keys out of its range (or not finite); a rate must be
    finite and > 0. Keys a callback added: finite numbers or lists of them. THE value check of a history
    read from a file: model files (``load``) and checkpoints share it."""
    for key, values in history.items():
        low, high = HISTORY_RANGES.get(key, (-math.inf, math.inf))
        for i, v in enumerate(values):
            for x in (v if isinstance(v, list) else [v]):
                ok = math.isfinite(x) and low <= x <= high and (key != "lr" or x > 0)
                if not ok:
                    rule = "> 0" if key == "lr" else (f"in [{low:g}, {high:g}]" if math.isfinite(high)
                                                      else f">= {low:g}" if math.isfinite(low) else "finite")
                    raise ValueError(f"history[{key!r}][{i}] is {x!r}; it must be finite and {rule}")


def _check_history(history):
    """Names -> per-epoch lists of numbers, or of lists of numbers (history["grad_norm"]: one per layer);
    values checked by ``check_history_values``. (Lengths are not compared: a checkpoint keeps the lists a
    schedule replays longer than the others, see fastnn.checkpoint.)"""
    ok = isinstance(history, dict) and all(
        isinstance(k, str) and isinstance(v, list)
        and all(_is_number(x) or (isinstance(x, list) and all(map(_is_number, x))) for x in v)
        for k, v in history.items())
    if not ok:
        raise ValueError("metadata history must map names to lists of numbers (or of lists of numbers)")
    history = {k: [[float(e) for e in x] if isinstance(x, list) else float(x) for x in v]
               for k, v in history.items()}
    check_history_values(history)
    return history


def load_with_metadata(path):
    """(network, metadata dict): ``load`` plus the decoded metadata (``["extra"]`` for estimators)."""
    name = os.fspath(path)
    with _open(path) as f:
        data = f.read()
    check = seal_check(data)
    damaged = check is not None and check[0] != check[1]
    try:
        return _load_checked(data, name, check)
    except ValueError as exc:
        if damaged:     # the damage, named first, and what it broke
            raise ValueError(damaged_message(name, check, _detail(exc, name))) from None
        raise


def _load_checked(data, name, check):
    header = _read_header(io_bytes(data), name)
    meta = _check_metadata(header, name)
    try:
        tensors = safetensors.numpy.load(data)
    except Exception as exc:  # an untrusted-input parser: any failure means a corrupt file
        raise ValueError(f"{name}: corrupt safetensors file: {exc}") from None
    del data
    try:
        budget = sum(a.size for a in tensors.values())
        net = _build(meta, budget)
        expected, slots = _expected_tensors(net, meta)
        _check_tensors(tensors, expected)
        steps = meta.get("optimizer_steps")
        if not _is_int(steps) or not 0 <= steps < 2 ** 62:
            raise ValueError(f"metadata optimizer_steps must be a non-negative integer, got {steps!r:.100}")
        history = _check_history(meta.get("history", {}))
        shuffle_state = _check_shuffle_state(meta.get("shuffle_state"))
        if meta.get("extra") is not None and not isinstance(meta["extra"], dict):
            raise ValueError("metadata extra must be an object or null")
        preprocessing = _preprocessing(meta, net)
    except (TypeError, ValueError, KeyError, OverflowError, RecursionError) as exc:
        raise ValueError(f"{name}: invalid fastnn model file: {exc}") from None
    # last, so that a file edited on purpose (a test's NaN tensor) still meets the check that names it
    stored = (header.get("__metadata__") or {}).get(CHECKSUM_KEY)
    if stored is not None:          # files written before the checksum have none: not checked
        computed = tensor_checksum(tensors)
        if stored != computed:
            raise ValueError(f"{name}: corrupt fastnn model file: its tensor data (weights, optimizer state) "
                             f"does not match the checksum written with it (CRC-32 {stored!r:.20} stored, "
                             f"{computed!r} computed): the file was damaged after it was written")
    if check is not None and check[0] != check[1]:
        raise ValueError(damaged_message(name, check))
    for key, dst in expected.items():
        if key.startswith("layers."):
            dst[...] = tensors[key]
    _check_loaded_custom_layers(net, tensors, name)
    if slots is not None:
        net.optimizer.state = [[np.array(tensors[f"optimizer.state.{i}.{j}"], copy=True) for j in range(k)]
                               for i, k in enumerate(slots)]
    net.optimizer.steps = steps
    net.history = history
    net.shuffle_state = shuffle_state
    net.preprocessing = preprocessing
    return net, meta


def _preprocessing(meta, net):
    """The model's Preprocessing from metadata "preprocessing" (checked, ValueError naming the bad entry), or
    built from an older ``fastnn train`` file's extra (its --standardize mean/std, feature and class
    names), or None."""
    from .preprocessing import Preprocessing
    data = meta.get("preprocessing")
    if data is not None:
        try:
            pre = Preprocessing.from_json(data)
            pre.check_network(net)
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise ValueError(f"metadata preprocessing: {exc}") from None
        return pre
    extra = meta.get("extra") or {}
    cli_file = extra.get("trained_with") == "fastnn train" and isinstance(extra.get("features"), list)
    scaling = extra.get("standardize")
    if isinstance(scaling, bool):         # fastnn train's own record of the flag (its values are above)
        scaling = None
    if scaling is None and not cli_file:
        return None
    names = extra["features"] if cli_file else [f"x{k}" for k in range(net.n_features)]
    columns = []
    for k, name in enumerate(names):
        mean = std = None
        if scaling is not None:
            try:
                mean, std = float(scaling["mean"][k]), float(scaling["std"][k])
            except (TypeError, KeyError, IndexError, ValueError):
                raise ValueError("the stored standardization is malformed (expected a finite mean and a "
                                 f"positive std for each of the {len(names)} features)") from None
        columns.append({"name": str(name), "kind": "numeric", "fill": None, "mean": mean, "std": std})
    classes = extra.get("classes") if cli_file and net.classification else None
    try:
        pre = Preprocessing(columns, classes)
        pre.check_network(net)
    except ValueError as exc:
        if "std" in str(exc) or "mean" in str(exc):
            raise ValueError("the stored standardization is malformed (expected a finite mean and a positive "
                             f"std for each of the {len(names)} features)") from None
        raise
    return pre


def _check_loaded_custom_layers(net, tensors, name):
    """A custom layer's ``params`` must be its own arrays: the loaded values must be there when read again."""
    for i, layer in enumerate(net.layers):
        if type(layer).__module__ == register_layer.__module__:
            continue
        for pname, p in zip(_param_names(layer), layer.params):
            if not np.array_equal(p, tensors[f"layers.{i}.{pname}"]):
                raise ValueError(f"{name}: layers[{i}] ({type(layer).__name__}): the loaded values did not stay "
                                 f"in its params; a custom layer's params must return the layer's own arrays, "
                                 f"not copies")


def load(path):
    """The NeuralNetwork saved at ``path`` by ``save``: weights, optimizer state and steps, history.

    FileNotFoundError for a missing path; ValueError naming the file for anything that is not a valid
    fastnn safetensors model (never unpickles or executes anything from the file).
    """
    return load_with_metadata(path)[0]


network.provide("save", save)
