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
