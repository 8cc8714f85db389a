"""fastnn.engines.shards.open_array (a distributed fit's data files, memory-mapped): a damaged file is a
ValueError that names it — a truncated .npy, a .npz member whose data is cut, a header that is not NumPy's
(np.load's own words, "mmap length is greater than file size", named no file: on K ranks the agreed error
did not say which of the fit's paths was bad)."""
import zipfile

import numpy as np
import pytest

from fastnn.engines.shards import open_array


def _truncated_npy(path):
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f8", "fortran_order": False, "shape": (1000, 5)})
        f.write(b"\0" * 80)


def test_a_truncated_npy_is_named(tmp_path):
    path = tmp_path / "X.npy"
    _truncated_npy(path)
    with pytest.raises(ValueError, match=f"{path}: not a readable array file"):
        open_array(path)


def test_a_truncated_npz_member_is_named(tmp_path):
    path = tmp_path / "data.npz"
    _truncated_npy(tmp_path / "X.npy")
    with zipfile.ZipFile(path, "w") as zf:          # stored (uncompressed): memory-mapped
        zf.write(tmp_path / "X.npy", "X.npy")
    with pytest.raises(ValueError, match=f"{path}: not a readable array file"):
        open_array(path, "X")


def test_a_file_that_is_not_numpys_is_named(tmp_path):
    path = tmp_path / "X.npy"
    path.write_bytes(b"this is not an array")
    with pytest.raises(ValueError, match=str(path)):
        open_array(path)


def test_a_good_file_still_opens(tmp_path):
    np.save(tmp_path / "X.npy", np.arange(6.0).reshape(3, 2))
    np.testing.assert_array_equal(open_array(tmp_path / "X.npy"), np.arange(6.0).reshape(3, 2))
