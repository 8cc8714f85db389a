"""The data side of distributed training: which rows each rank owns, memory-mapped inputs, and the
checks and fingerprint of a rank's shard (see fastnn.engines.distributed)."""
import os
import re
import struct
import zipfile

import numpy as np

from .. import _checks, _paths

__all__ = ["shard_range", "split", "open_array", "resolve_data", "check_mapped", "sample_fingerprint"]

CHECK_ROWS = 65536  # rows validated at a time when checking a memory-mapped shard


def shard_range(n, rank, size):
    """The contiguous rows [start, stop) of ``n`` that rank ``rank`` of ``size`` owns (sizes differ by <= 1)."""
    base, extra = divmod(n, size)
    start = rank * base + min(rank, extra)
    return start, start + base + (rank < extra)


def split(n, size):
    """Sizes of ``size`` consecutive pieces of ``n`` rows, as even as possible (larger pieces first)."""
    base, extra = divmod(n, size)
    return [base + (r < extra) for r in range(size)]


# -- memory-mapped inputs ---------------------------------------------------------------------------
def open_array(path, key=None):
    """An array from ``path``: ``.npy`` memory-mapped; member ``key`` of an ``.npz`` memory-mapped when stored
    uncompressed (``np.savez``), read into memory when compressed. The maps are copy-on-write (``mode="c"``:
    nothing is ever written to the file, and the array is writable, so the kernels take it with the type of
    an in-memory array instead of compiling a read-only variant). Never unpickles; only a regular file is
    opened (a FIFO or device is refused at once instead of blocking)."""
    path = os.fspath(path)
    _paths.check_regular(path, "data file")
    try:
        return _open_array(path, key)
    except (ValueError, OSError, EOFError) as exc:     # (np.load's words name no file: "mmap length is greater
        text = str(exc)                                  # than file size", "cannot reshape array ...")
        if path in text:
            raise
        raise ValueError(f"{path}: not a readable array file ({text or type(exc).__name__})") from None


def _open_array(path, key):
    if path.lower().endswith(".npy"):
        return np.load(path, mmap_mode="c", allow_pickle=False)
    if not path.lower().endswith(".npz"):
        raise ValueError(f"{path}: expected a .npy or .npz file")
    name = f"{key}.npy"
    try:
        with zipfile.ZipFile(path) as zf:
            info = zf.getinfo(name)
    except KeyError:
        raise ValueError(f"{path}: the archive has no array {key!r}") from None
    except zipfile.BadZipFile as exc:
        raise ValueError(f"{path}: not a readable .npz file ({exc})") from None
    if info.compress_type == zipfile.ZIP_STORED:
        with open(path, "rb") as f:
            f.seek(info.header_offset)
            header = f.read(30)
            if header[:4] == b"PK\x03\x04":
                name_len, extra_len = struct.unpack("<HH", header[26:30])
                f.seek(info.header_offset + 30 + name_len + extra_len)
                version = np.lib.format.read_magic(f)
                if version in ((1, 0), (2, 0)):
                    read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                            else np.lib.format.read_array_header_2_0)
                    shape, fortran, dtype = read(f)
                    if not dtype.hasobject:
                        return np.memmap(path, dtype=dtype, mode="c", offset=f.tell(), shape=shape,
                                         order="F" if fortran else "C")
    with np.load(path, allow_pickle=False) as z:   # compressed (np.savez_compressed): read it whole
        return z[key]


def resolve_data(X, y):
    """(X, y, mapped): arrays or memory maps from arrays / paths."""
    mapped = False
    if isinstance(X, (str, os.PathLike)):
        path = os.fspath(X)
        _exists(path, "X")
        X, mapped = open_array(path, "X"), True
        if y is None:
            if not path.lower().endswith(".npz"):
                raise ValueError("y is required when X is a .npy file (give y as an array or .npy path)")
            y = open_array(path, "y")
    if isinstance(y, (str, os.PathLike)):
        _exists(os.fspath(y), "y")
        y = open_array(y, "y")
    if y is None:
        raise ValueError("y is required")
    return X, y, mapped


def _exists(path, name):
    """ValueError unless ``path`` names a regular file: 'no such file' when nothing is there, else what it is
    (a directory, a FIFO: fastnn._paths.check_regular's words)."""
    if not os.path.exists(path):
        raise ValueError(f"{name}: no such file {path!r}")
    try:
        _paths.check_regular(path, "data file")
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


def check_mapped(net, X, rank, size):
    """Validate this rank's shard of a memory-mapped X (shape, dtype, NaN/Inf) chunk by chunk."""
    if X.dtype.kind not in "biuf":
        raise TypeError(f"X must hold real numbers, got dtype {X.dtype}")
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (samples, features), got shape {X.shape}")
    if X.shape[0] == 0:
        raise ValueError("X is empty: it has 0 rows (samples)")
    if X.shape[1] != net.n_features:
        raise ValueError(f"X must have {net.n_features} features (columns), got {X.shape[1]}")
    start, stop = shard_range(X.shape[0], rank, size)
    for lo in range(start, stop, CHECK_ROWS):
        hi = min(stop, lo + CHECK_ROWS)
        try:
            _checks.matrix(X[lo:hi], "X", net.dtype, net.n_features)
        except ValueError as exc:       # its index is the chunk's: made X's (row lo + i)
            text = re.sub(r"index \((\d+), (\d+)\)", lambda m: f"index ({lo + int(m[1])}, {m[2]})", str(exc))
            raise ValueError(f"{text} (checking rows {lo}..{hi - 1} of this rank's shard {start}..{stop - 1})") \
                from None
    return np.asarray(X)      # an ndarray over the map (Numba's gather takes it; pages load on use)


def sample_fingerprint(X, y):
    """A cheap fingerprint of memory-mapped data for checkpoints: shapes, dtypes and up to 1024 spread rows."""
    from ..checkpoint import fingerprint
    rows = np.unique(np.linspace(0, X.shape[0] - 1, min(1024, X.shape[0])).astype(np.int64))
    return "sampled:" + fingerprint(np.asarray(X[rows]), np.asarray(y[rows]),
                                    np.array(X.shape + y.shape, np.int64))
