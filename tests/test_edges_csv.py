"""--no-header: a headerless CSV (np.savetxt's, many exports) trains, evaluates and predicts with its columns
named 1, 2, ... by position; without it the refusal names the option. The library's load_csv, load_table
and read_csv_rows take header=False alike."""
import numpy as np
import pytest

from fastnn import data
from fastnn.cli import main


@pytest.fixture
def files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((120, 3))
    y = (X[:, 0] > 0).astype(int)
    np.savetxt("nh.csv", np.c_[X, y], delimiter=",", fmt=["%.5f"] * 3 + ["%d"])
    np.savetxt("nolabel.csv", X, delimiter=",", fmt="%.5f")
    np.savez("d.npz", X=X.astype(np.float32), y=y)
    return tmp_path


def _err(capsys):
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


def test_without_the_option_the_refusal_names_it(files, capsys):
    assert main(["train", "--data", "nh.csv", "-q", "--epochs", "1"]) == 2
    assert "--no-header" in _err(capsys)
    m = main(["train", "--data", "nh.csv", "--no-header", "-q", "--epochs", "1", "--save", "m.safetensors"])
    assert m == 0, capsys.readouterr().err
    capsys.readouterr()
    for command in (["evaluate", "m.safetensors", "nh.csv"], ["predict", "m.safetensors", "nolabel.csv"]):
        assert main(command) == 2
        assert "--no-header" in _err(capsys)


def test_train_evaluate_predict_by_position(files, capsys):
    assert main(["train", "--data", "nh.csv", "--no-header", "-q", "--epochs", "2", "--save", "m.safetensors"]) == 0
    from fastnn import io
    meta = io.load_metadata("m.safetensors")
    assert meta["extra"]["features"] == ["1", "2", "3"] and meta["extra"]["target"] == "4"
    capsys.readouterr()
    assert main(["evaluate", "m.safetensors", "nh.csv", "--no-header"]) == 0
    assert "120 samples" in capsys.readouterr().out              # the first row is a sample, not lost
    assert main(["predict", "m.safetensors", "nolabel.csv", "--no-header"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1 + 120
    assert main(["predict", "m.safetensors", "nh.csv", "--no-header", "--out", "p.csv"]) == 0
    assert len((files / "p.csv").read_text().splitlines()) == 1 + 120


def test_target_and_drop_by_position(files, capsys):
    assert main(["train", "--data", "nh.csv", "--no-header", "--target", "4", "--drop", "2", "-q", "--epochs", "1",
                 "--save", "m2.safetensors"]) == 0
    from fastnn import io
    assert io.load_metadata("m2.safetensors")["extra"]["features"] == ["1", "3"]
    capsys.readouterr()
    assert main(["train", "--data", "nh.csv", "--no-header", "--target", "9", "-q"]) == 2
    assert "'9'" in _err(capsys)


@pytest.mark.parametrize("command", [["train", "--data", "d.npz", "--no-header"], ["train", "--data", "moons",
                                                                                   "--no-header"]])
def test_the_option_applies_to_csv_only(files, capsys, command):
    assert main(command + ["-q"]) == 2
    assert "--no-header applies only to .csv files" in _err(capsys)


def test_the_option_on_predict_and_evaluate_applies_to_csv_only(files, capsys):
    assert main(["train", "--data", "d.npz", "-q", "--epochs", "1", "--save", "n.safetensors"]) == 0
    capsys.readouterr()
    for command in (["evaluate", "n.safetensors", "d.npz", "--no-header"],
                    ["predict", "n.safetensors", "moons", "--no-header"]):
        assert main(command) == 2
        assert "--no-header applies only to .csv files" in _err(capsys)


def test_headerless_faults_are_one_clear_line(files, capsys):
    (files / "ragged.csv").write_text("1,2,0\n3,4,1\n5,6\n")
    (files / "empty.csv").write_text("\n\n")
    (files / "headed.csv").write_text("a,b,label\n" + "".join(f"{i},{i % 3},{i % 2}\n" for i in range(30)))
    for name, words in (("ragged.csv", "line 3: 2 fields, the first row has 3"), ("empty.csv", "no data rows"),
                        ("headed.csv", "line 1")):
        assert main(["train", "--data", name, "--no-header", "-q"]) == 2
        line = _err(capsys)
        assert name in line and words in line, line


def test_the_library_reads_headerless_files(files):
    header, rows, lines = data.read_csv_rows("nh.csv", header=False)
    assert header == ["1", "2", "3", "4"] and len(rows) == 120 and lines[0] == 1
    X, y, features, classes = data.load_csv("nh.csv", header=False)
    assert X.shape == (120, 3) and features == ["1", "2", "3"] and classes is None
    X2, y2, features2, _ = data.load_csv("nh.csv", header=False, target=1, drop=[2])
    assert features2 == ["3", "4"] and X2.shape == (120, 2)
    table = data.load_table("nh.csv", header=False)
    assert table["features"] == ["1", "2", "3"] and table["target"] == "4" and len(table["labels"]) == 120
    d = data.load_dataset("nh.csv", header=False)
    assert d["X"].shape == (120, 3)
    with pytest.raises(ValueError, match="header=False"):
        data.load_csv("nh.csv")
