"""fastnn predict / evaluate match a CSV's columns by name, in any order, extra columns ignored and said;
a missing column is an error naming it — never a silent fallback to positions (issue 20, item 11)."""
import numpy as np
import pytest

import fastnn as fnn
from fastnn import cli


def write(path, header, rows):
    path.write_text(",".join(header) + "\n" + "\n".join(",".join(map(str, r)) for r in rows) + "\n")


@pytest.fixture
def model(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    label = (X[:, 0] + 2 * X[:, 1] - X[:, 2] > 0).astype(int)
    rows = [[f"id{i}", *(f"{v:.4f}" for v in X[i]), label[i]] for i in range(60)]
    write(tmp_path / "train.csv", ["id", "a", "b", "c", "label"], rows)
    assert cli.main(["train", "--data", "train.csv", "--target", "label", "--drop", "id", "--epochs", "20", "-q",
                     "--save", "m.safetensors"]) == 0
    capsys.readouterr()
    return X, label, rows


@pytest.mark.parametrize("command", ["predict", "evaluate"])
@pytest.mark.parametrize("header, missing", [(["id", "a", "c", "label"], "'b'"), (["a", "label"], "'b', 'c'"),
                                            (["A", "B", "C", "label"], "'a', 'b', 'c'")])
def test_a_missing_column_is_named(model, tmp_path, capsys, command, header, missing):
    write(tmp_path / "new.csv", header, [[1] * len(header)] * 3)
    assert cli.main([command, "m.safetensors", "new.csv"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"no column {missing}" in err[0] and "by name" in err[0], err


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_columns_in_another_order_with_extras_give_the_same_answer(model, tmp_path, capsys, command):
    X, label, rows = model
    write(tmp_path / "same.csv", ["id", "a", "b", "c", "label"], rows)
    shuffled = [[r[4], r[3], "x", r[1], r[2], r[0]] for r in rows]
    write(tmp_path / "moved.csv", ["label", "c", "note", "a", "b", "id"], shuffled)
    assert cli.main([command, "m.safetensors", "same.csv"]) == 0
    same = capsys.readouterr()
    assert cli.main([command, "m.safetensors", "moved.csv"]) == 0
    moved = capsys.readouterr()
    assert moved.out.replace("moved.csv", "same.csv") == same.out
    assert "ignoring the column(s) note, id" in moved.err
    net = fnn.load("m.safetensors")
    if command == "predict":
        cols = {"a": X[:, 0], "b": X[:, 1], "c": X[:, 2]}
        assert moved.out.split()[1:] == [str(v) for v in net.predict({k: np.round(v, 4) for k, v in cols.items()})]


def test_a_model_trained_on_arrays_takes_a_csv_by_position(tmp_path, monkeypatch, capsys):
    """An .npz has no column names: its model (--standardize stores x0, x1, ...) reads a CSV by position."""
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 3)) * [1, 100, 1000]
    y = (X[:, 0] > 0).astype(int)
    np.savez("a.npz", X=X, y=y)
    write(tmp_path / "a.csv", ["p", "q", "r", "label"], [[*x, t] for x, t in zip(X, y)])
    assert cli.main(["train", "--data", "a.npz", "--standardize", "-q", "--save", "a.safetensors"]) == 0
    capsys.readouterr()
    assert cli.main(["evaluate", "a.safetensors", "a.csv"]) == 0
    by_csv = capsys.readouterr().out.split("|")[:2]
    assert cli.main(["evaluate", "a.safetensors", "a.npz", "--split", "train"]) == 0
    assert capsys.readouterr().out.split("|")[:2] == by_csv
