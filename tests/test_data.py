"""Tests for fastnn.data: bundled digits, splitting, toy generators, npz/csv loaders."""
import numpy as np
import pytest

from fastnn import data
from fastnn.data import load_csv, parse_labels, read_csv_rows
from fastnn.preprocessing import parse_number


# ------------------------------------------------------------------------------------------- digits

def test_load_digits_shapes_dtypes_ranges():
    X, y = data.load_digits()
    assert X.shape == (1797, 64) and X.dtype == np.float32
    assert y.shape == (1797,) and y.dtype == np.int64
    assert X.min() == 0.0 and X.max() == 1.0
    counts = np.bincount(y)
    assert len(counts) == 10 and counts.min() >= 170 and counts.max() <= 190


def test_load_digits_unscaled_float64():
    X, y = data.load_digits(scale=False, dtype=np.float64)
    assert X.dtype == np.float64 and X.max() == 16.0
    assert np.array_equal(X, np.round(X))
    Xs, _ = data.load_digits(dtype=np.float64)
    np.testing.assert_allclose(Xs * 16, X)


def test_load_digits_matches_scikit_learn():
    datasets = pytest.importorskip("sklearn.datasets")
    ref = datasets.load_digits()
    X, y = data.load_digits(scale=False, dtype=np.float64)
    assert np.array_equal(X, ref.data) and np.array_equal(y, ref.target)


def test_load_digits_rejects_integer_dtype():
    with pytest.raises(ValueError, match="dtype"):
        data.load_digits(dtype=np.int32)


def test_digits_split_is_stratified_75_25():
    X_tr, X_te, y_tr, y_te = data.digits_split()
    assert X_tr.shape == (1347, 64) and X_te.shape == (450, 64)
    assert y_tr.dtype == y_te.dtype == np.int64
    _, y = data.load_digits()
    for c, n_c in enumerate(np.bincount(y)):
        assert abs(np.sum(y_te == c) - 0.25 * n_c) <= 1
        assert abs(np.sum(y_tr == c) - 0.75 * n_c) <= 1


# ------------------------------------------------------------------------------------------- split

def _indexed_split(n=200, seed=0, stratify=True, test_size=0.25, classes=3):
    X = np.arange(n).reshape(n, 1)  # X holds each row's index
    y = np.arange(n) % classes
    return data.train_test_split(X, y, test_size=test_size, stratify=stratify, seed=seed)


@pytest.mark.parametrize("stratify", [True, False])
def test_split_disjoint_covering_and_rows_match(stratify):
    X_tr, X_te, y_tr, y_te = _indexed_split(stratify=stratify)
    tr, te = X_tr[:, 0], X_te[:, 0]
    assert len(np.intersect1d(tr, te)) == 0
    assert np.array_equal(np.sort(np.concatenate([tr, te])), np.arange(200))
    assert len(te) == 50 if not stratify else abs(len(te) - 50) <= 3
    assert np.array_equal(y_tr, tr % 3) and np.array_equal(y_te, te % 3)  # labels follow their rows


def test_split_deterministic_per_seed():
    a, b, c = _indexed_split(seed=0), _indexed_split(seed=0), _indexed_split(seed=1)
    for u, v in zip(a, b):
        assert np.array_equal(u, v)
    assert not np.array_equal(a[1], c[1])


def test_split_output_is_shuffled():
    X_tr, X_te, y_tr, _ = _indexed_split()
    assert not np.all(np.diff(X_tr[:, 0]) > 0)  # not in index order
    assert not np.all(np.diff(y_tr) >= 0)  # not grouped by class


def test_split_stratified_proportions():
    y = np.repeat([0, 1, 2], [100, 40, 8])
    X = np.zeros((len(y), 2))
    _, _, y_tr, y_te = data.train_test_split(X, y, test_size=0.25)
    assert list(np.bincount(y_te)) == [25, 10, 2]
    assert list(np.bincount(y_tr)) == [75, 30, 6]


@pytest.mark.parametrize("test_size", [0, 1, 1.5, -0.1, True, "0.2", float("nan")])
def test_split_rejects_bad_test_size(test_size):
    with pytest.raises(ValueError, match="test_size"):
        data.train_test_split(np.zeros((10, 2)), np.zeros(10), test_size=test_size)


def test_split_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="same length"):
        data.train_test_split(np.zeros((10, 2)), np.zeros(9))


def test_split_rejects_empty():
    with pytest.raises(ValueError, match="at least 2 samples"):
        data.train_test_split(np.zeros((0, 2)), np.zeros(0))


def test_split_rejects_stratify_on_regression_targets():
    X, y = np.zeros((20, 2)), np.linspace(0, 1, 20)
    with pytest.raises(ValueError, match="stratify"):
        data.train_test_split(X, y)
    X_tr, X_te, _, _ = data.train_test_split(X, y, stratify=False)
    assert len(X_tr) == 15 and len(X_te) == 5


# ------------------------------------------------------------------------------------------- toys

def test_xor_classic_points():
    X, y = data.make_xor()
    assert X.dtype == np.float32 and y.dtype == np.int64
    assert np.array_equal(X, [[0, 0], [0, 1], [1, 0], [1, 1]])
    assert np.array_equal(y, [0, 1, 1, 0])


def test_xor_sampled_with_noise():
    X, y = data.make_xor(n=400, noise=0.1, seed=3)
    assert X.shape == (400, 2) and y.shape == (400,)
    assert list(np.bincount(y)) == [200, 200]
    corners = np.round(X).astype(int)
    assert np.array_equal(y, corners[:, 0] ^ corners[:, 1])  # noise 0.1 never crosses the midline here
    assert 0.05 < np.std(X - corners) < 0.15
    assert np.array_equal(X, data.make_xor(n=400, noise=0.1, seed=3)[0])


@pytest.mark.parametrize("classes", [2, 3, 5])
def test_spirals(classes):
    X, y = data.make_spirals(n=1001, classes=classes, seed=1)
    assert X.shape == (1001, 2) and X.dtype == np.float32 and y.dtype == np.int64
    counts = np.bincount(y)
    assert len(counts) == classes and counts.max() - counts.min() <= 1
    assert np.all(np.hypot(X[:, 0], X[:, 1]) <= 1 + 1e-6)
    assert not np.all(np.diff(y) >= 0)  # shuffled


def test_spirals_noise_free_points_lie_on_their_arm():
    X, y = data.make_spirals(n=300, classes=3, noise=0.0, dtype=np.float64)
    r = np.hypot(X[:, 0], X[:, 1])
    angle = np.arctan2(X[:, 0], X[:, 1])  # x = r sin t, y = r cos t
    expected = 4 * r + 2 * np.pi * y / 3
    diff = np.angle(np.exp(1j * (angle - expected)))
    assert np.all(np.abs(diff[r > 1e-9]) < 1e-9)


def test_moons_shapes_labels_geometry():
    X, y = data.make_moons(n=1000, noise=0.0, dtype=np.float64)
    assert X.shape == (1000, 2) and y.dtype == np.int64 and list(np.bincount(y)) == [500, 500]
    np.testing.assert_allclose(np.hypot(X[y == 0, 0], X[y == 0, 1]), 1.0)  # upper arc on the unit circle
    np.testing.assert_allclose(np.hypot(X[y == 1, 0] - 1, X[y == 1, 1] - 0.5), 1.0)
    assert np.all(X[y == 0, 1] >= -1e-12) and np.all(X[y == 1, 1] <= 0.5 + 1e-12)


def test_moons_noise_and_seed():
    a, b, c = data.make_moons(seed=0), data.make_moons(seed=0), data.make_moons(seed=1)
    assert np.array_equal(a[0], b[0]) and not np.array_equal(a[0], c[0])
    assert a[0].dtype == np.float32


@pytest.mark.parametrize("call", [lambda: data.make_moons(n=0), lambda: data.make_spirals(classes=1),
                                  lambda: data.make_xor(n=10, noise=-1), lambda: data.make_xor(n=2.5)])
def test_generators_reject_bad_arguments(call):
    with pytest.raises(ValueError, match="n|classes|noise"):
        call()


# ------------------------------------------------------------------------------------------- npz

def test_npz_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    arrays = dict(X=rng.normal(size=(20, 3)), y=rng.integers(0, 3, 20), X_test=rng.normal(size=(5, 3)),
                  y_test=rng.integers(0, 3, 5))
    p = tmp_path / "d.npz"
    np.savez(p, **arrays)
    out = data.load_npz(p)
    for k, v in arrays.items():
        assert np.array_equal(out[k], v)
    np.savez(p, X=arrays["X"], y=arrays["y"], extra=np.ones(3))
    out = data.load_npz(str(p))
    assert out["X_test"] is None and out["y_test"] is None and "extra" not in out


def _npz_error(tmp_path, **arrays):
    p = tmp_path / "bad.npz"
    np.savez(p, **arrays)
    with pytest.raises(ValueError) as e:
        data.load_npz(p)
    assert str(p) in str(e.value)
    return str(e.value)


def test_npz_missing_key(tmp_path):
    assert "missing array 'y'" in _npz_error(tmp_path, X=np.zeros((3, 2)))


def test_npz_object_array_refused(tmp_path):
    msg = _npz_error(tmp_path, X=np.array([[1, "a"], [2, None]], dtype=object), y=np.zeros(2))
    assert "object arrays" in msg


def test_npz_mismatched_lengths(tmp_path):
    assert "len(X)=4 != len(y)=3" in _npz_error(tmp_path, X=np.zeros((4, 2)), y=np.zeros(3))
    assert "len(X_test)=2 != len(y_test)=1" in _npz_error(
        tmp_path, X=np.zeros((4, 2)), y=np.zeros(4), X_test=np.zeros((2, 2)), y_test=np.zeros(1))


def test_npz_bad_X(tmp_path):
    assert "2-D numeric" in _npz_error(tmp_path, X=np.zeros(4), y=np.zeros(4))
    assert "2-D numeric" in _npz_error(tmp_path, X=np.array([["a"], ["b"]]), y=np.zeros(2))
    assert "NaN or Inf" in _npz_error(tmp_path, X=np.array([[np.nan]]), y=np.zeros(1))
    assert "features" in _npz_error(tmp_path, X=np.zeros((4, 2)), y=np.zeros(4),
                                    X_test=np.zeros((2, 3)), y_test=np.zeros(2))
    assert "together" in _npz_error(tmp_path, X=np.zeros((4, 2)), y=np.zeros(4), X_test=np.zeros((2, 2)))


def test_npz_not_a_zip(tmp_path):
    p = tmp_path / "text.npz"
    p.write_text("hello, not a zip")
    with pytest.raises(ValueError, match="not a readable .npz"):
        data.load_npz(p)
    q = tmp_path / "plain.npz"
    with open(q, "wb") as fh:
        np.save(fh, np.zeros(3))
    with pytest.raises(ValueError, match="not an .npz archive"):
        data.load_npz(q)


def test_npz_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        data.load_npz(tmp_path / "nope.npz")


# ------------------------------------------------------------------------------------------- csv

def _write(tmp_path, text, name="d.csv"):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_csv_integer_labels_last_column(tmp_path):
    p = _write(tmp_path, "a,b,label\n1,2.5,0\n\n3,-4e-1,2\n")
    X, y, names, classes = data.load_csv(p)
    assert X.dtype == np.float32 and np.array_equal(X, np.array([[1, 2.5], [3, -0.4]], dtype=np.float32))
    assert y.dtype == np.int64 and list(y) == [0, 2]
    assert names == ["a", "b"] and classes is None


def test_csv_string_labels_named_target(tmp_path):
    p = _write(tmp_path, "species,x1,x2\nsetosa,1,2\nvirginica,3,4\nsetosa,5,6\nversicolor,7,8\n")
    X, y, names, classes = data.load_csv(p, target="species", dtype=np.float64)
    assert X.dtype == np.float64 and X.shape == (4, 2) and X[3, 1] == 8
    assert classes == ["setosa", "versicolor", "virginica"]
    assert list(y) == [0, 2, 0, 1] and y.dtype == np.int64
    assert names == ["x1", "x2"]


def test_csv_float_labels_are_regression_targets(tmp_path):
    X, y, _, classes = data.load_csv(_write(tmp_path, "x,t\n1,0.5\n2,1\n"))
    assert y.dtype == np.float64 and list(y) == [0.5, 1.0] and classes is None


def test_csv_round_trip_with_csv_writer(tmp_path):
    import csv
    rng = np.random.default_rng(1)
    X0, y0 = rng.normal(size=(30, 4)), rng.integers(0, 5, 30)
    p = tmp_path / "rt.csv"
    with open(p, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["f0", "f1", "f2", "f3", "y"])
        w.writerows([[*(repr(float(v)) for v in row), int(t)] for row, t in zip(X0, y0)])
    X, y, names, _ = data.load_csv(p, dtype=np.float64)
    assert np.array_equal(X, X0) and np.array_equal(y, y0) and names == ["f0", "f1", "f2", "f3"]


def _csv_error(tmp_path, text, **kw):
    p = _write(tmp_path, text, "bad.csv")
    with pytest.raises(ValueError) as e:
        data.load_csv(p, **kw)
    assert str(p) in str(e.value)
    return str(e.value)


def test_csv_missing_target_column(tmp_path):
    msg = _csv_error(tmp_path, "a,b\n1,2\n", target="label")
    assert "no column named 'label'" in msg and "['a', 'b']" in msg


def test_csv_non_numeric_cell_names_line_and_column(tmp_path):
    msg = _csv_error(tmp_path, "a,b,y\n1,2,0\n3,oops,1\n")
    assert "line 3" in msg and "column 'b'" in msg and "'oops'" in msg
    assert "column 'a'" in _csv_error(tmp_path, "a,b,y\n,2,0\n")  # empty cell
    assert "'nan'" in _csv_error(tmp_path, "a,b,y\n1,2,0\nnan,1,1\n")


def test_csv_empty_file_and_no_rows(tmp_path):
    assert "empty file" in _csv_error(tmp_path, "")
    assert "no data rows" in _csv_error(tmp_path, "a,b\n\n")


def test_csv_other_problems(tmp_path):
    assert "2 fields" in _csv_error(tmp_path, "a,b,y\n1,2,0\n1,2\n")
    assert "duplicate" in _csv_error(tmp_path, "a,a,y\n1,2,0\n")
    assert "at least one feature" in _csv_error(tmp_path, "y\n1\n")
    assert "empty label" in _csv_error(tmp_path, "a,y\n1,\n")


def test_csv_text_column_is_named_with_the_advice_to_drop_it(tmp_path):
    """A string id column used to fail as "column 'id': expected a finite number, got 'S0000'"."""
    text = "id,name,a,quality\n" + "".join(f"S{i:04d},wine {i},{i * 0.5},{i % 3}\n" for i in range(6))
    msg = _csv_error(tmp_path, text)
    assert "column 'id' is text" in msg and "--drop id" in msg and "line 2: 'S0000'" in msg
    msg = _csv_error(tmp_path, text, drop=["id"])
    assert "column 'name' is text" in msg and "--drop name" in msg
    X, y, names, classes = data.load_csv(_write(tmp_path, text, "ok.csv"), drop=["id", "name"])
    assert names == ["a"] and X.shape == (6, 1) and list(y) == [0, 1, 2, 0, 1, 2] and classes is None
    assert data.load_csv(_write(tmp_path, text, "ok.csv"), drop="id,name".split(","))[2] == ["a"]


def test_csv_drop_problems(tmp_path):
    text = "id,a,y\n1,2,0\n2,3,1\n"
    assert "no column named 'idx' to drop" in _csv_error(tmp_path, text, drop=["idx"])
    assert "cannot drop the target column 'y'" in _csv_error(tmp_path, text, drop=["y"])
    assert "no feature columns left" in _csv_error(tmp_path, text, drop=["id", "a"])
    with pytest.raises(ValueError, match="drop"):
        data.load_dataset("digits", drop=["x"])


def test_id_like_columns():
    rng = np.random.default_rng(0)
    n = 50
    X = np.column_stack([np.arange(n),                        # row numbers 0..n-1
                         rng.permutation(n) + 1000,           # a shuffled id
                         np.sort(rng.choice(10_000, n, replace=False)),   # sorted ids with gaps
                         rng.normal(size=n),                  # a measurement
                         rng.integers(0, 20, n),              # an integer feature with repeats
                         rng.choice(10_000, n, replace=False)])           # distinct integers, no order
    found = data.id_like_columns(X, ["row", "shuffled", "sorted", "x", "count", "code"])
    assert [name for name, _ in found] == ["row", "shuffled", "sorted"]
    assert "0..49" in found[0][1] and "increasing" in found[0][1] and "shuffled" in found[1][1]
    assert data.id_like_columns(X[:5]) == []                  # too few rows to tell


# ------------------------------------------------------------------------------------------- load_dataset

@pytest.mark.parametrize("name,n_train,n_test", [("digits", 1347, 450), ("xor", 400, None),
                                                 ("spirals", 750, 250), ("moons", 750, 250)])
def test_load_dataset_names(name, n_train, n_test):
    d = data.load_dataset(name)
    assert set(d) == {"X", "y", "X_test", "y_test", "classes", "features", "name"}
    assert d["name"] == name and d["classes"] is None
    assert len(d["X"]) == len(d["y"]) == n_train and d["X"].dtype == np.float32 and d["y"].dtype == np.int64
    if n_test is None:
        assert d["X_test"] is None and d["y_test"] is None
    else:
        assert len(d["X_test"]) == len(d["y_test"]) == n_test


def test_load_dataset_digits_is_digits_split():
    d = data.load_dataset("digits", seed=4)
    X_tr, X_te, y_tr, y_te = data.digits_split(seed=4)
    assert np.array_equal(d["X"], X_tr) and np.array_equal(d["y_test"], y_te)


def test_load_dataset_files(tmp_path):
    p = tmp_path / "d.npz"
    np.savez(p, X=np.ones((4, 2), dtype=np.int16), y=np.array([0, 1, 0, 1], dtype=np.uint8))
    d = data.load_dataset(p, dtype=np.float64)
    assert d["X"].dtype == np.float64 and d["y"].dtype == np.int64 and d["X_test"] is None
    c = _write(tmp_path, "lab,x\ncat,1\ndog,2\n", "d.CSV")
    d = data.load_dataset(str(c), target="lab")
    assert d["classes"] == ["cat", "dog"] and list(d["y"]) == [0, 1] and d["name"] == str(c)
    assert d["features"] == ["x"]


def test_load_dataset_unknown_name():
    with pytest.raises(ValueError, match=r"unknown dataset 'mnist'.*digits, xor, spirals, moons.*\.npz.*\.csv"):
        data.load_dataset("mnist")
    with pytest.raises(ValueError, match="unknown dataset"):
        data.load_dataset("data.txt")
    with pytest.raises(ValueError, match="target"):
        data.load_dataset("digits", target="y")


def test_submodules_are_reachable_from_a_plain_import():
    """`import fastnn; fastnn.data.load_digits()` works (in a fresh process: here fastnn.data is imported
    already), and an unknown attribute still names itself."""
    import subprocess
    import sys
    code = ("import fastnn, sys; X, y = fastnn.data.load_digits(); assert X.shape == (1797, 64)\n"
            "assert callable(fastnn.io.load) and callable(fastnn.checkpoint.fingerprint)\n"
            "try:\n    fastnn.nonexistent\nexcept AttributeError as e:\n    print(e)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "no attribute 'nonexistent'" in done.stdout


# -- CSV: an empty column name, non-standard number syntax (U4, U5) ------------------------------------------
@pytest.mark.parametrize("header,col", [("x1,,cat,label", 2), (",x,label", 1), ("x, ,label", 2)])
def test_empty_column_name_is_named(tmp_path, header, col):
    path = tmp_path / "e.csv"
    path.write_text(header + "\n" + ",".join(["1"] * len(header.split(","))) + "\n")
    for read in (lambda: load_csv(path, target="label"), lambda: read_csv_rows(path)):
        with pytest.raises(ValueError, match=f"empty column name in the header, column {col}"):
            read()


@pytest.mark.parametrize("cell", ["1_000", "1_0.5", "0x10", "1,5"])
def test_non_standard_numbers_are_refused_naming_line_and_column(tmp_path, cell):
    path = tmp_path / "u.csv"
    path.write_text("a,b,label\n1,2,0\n3,4,1\n" + f'"{cell}",4,1\n' + "5,6,0\n" * 3)
    with pytest.raises(ValueError, match=r"line 4, column 'a'|column 'a'.*line 4"):
        load_csv(path, target="label")


def test_underscore_labels_are_not_numbers():
    y, classes = parse_labels(np.array(["1_0", "2"]))
    assert classes == ["1_0", "2"]
    assert parse_number("1_000") is None and parse_number(" 1e3 ") == 1000.0


# -- a CSV without a header row ------------------------------------------------------------------------------
def _savetxt(path, rows, fmt="%.18e"):
    np.savetxt(path, np.asarray(rows, dtype=float), delimiter=",", fmt=fmt)
    return path


@pytest.mark.parametrize("reader", [lambda p: load_csv(p), lambda p: read_csv_rows(p),
                                    lambda p: data.load_table(p)], ids=["load_csv", "read_csv_rows", "load_table"])
@pytest.mark.parametrize("rows", [[[0.0, 0.5, 1.0], [1.0, 0.25, 0.0]],      # distinct numbers: one row lost, silently
                                  [[0.0, 0.0, 1.0], [1.0, 0.25, 0.0]],      # repeated: "duplicate column names"
                                  [[1.5, -2.0, 3.0]] * 3])
def test_a_csv_whose_first_row_is_data_is_refused_by_name(tmp_path, reader, rows):
    path = _savetxt(tmp_path / "x.csv", rows)
    with pytest.raises(ValueError, match=r"x\.csv: the first row is numbers \(.*\), not column names: a CSV "
                                         r"file needs a header row"):
        reader(path)


@pytest.mark.parametrize("header", ["0,1,2", "1,2,label", "x,0.5,y", "a,b,c"])
def test_integer_or_textual_column_names_are_still_a_header(tmp_path, header):
    path = tmp_path / "named.csv"
    path.write_text(header + "\n1.5,2,0\n0.5,1,1\n")
    names, rows, _ = read_csv_rows(path)
    assert names == header.split(",") and len(rows) == 2
