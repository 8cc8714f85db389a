"""A value that cannot be represented in the dtype asked for is refused at load, naming the file, the line
(or row of the array) and the column — never an index in a shuffled split (issue 20, item 7)."""
import numpy as np
import pytest

from fastnn import cli, data


def write_csv(path, cell, dtype_note=""):
    path.write_text("a,b,label\n1.0,2.0,0\n3.0,4.0,1\n" f"5.0,{cell},0\n" "7.0,8.0,1\n")
    return path


@pytest.mark.parametrize("cell", ["1e39", "-1e39", "3.5e38", "1E+39"])
def test_csv_cell_beyond_float32_is_refused_naming_line_and_column(tmp_path, cell):
    path = write_csv(tmp_path / "t.csv", cell)
    with pytest.raises(ValueError, match=rf"t.csv, line 4, column 'b': .*beyond the range of float32"):
        data.load_csv(path)
    with pytest.raises(ValueError, match=r"line 4, column 'b'"):
        data.load_dataset(str(path))
    X, _, _, _ = data.load_csv(path, dtype=np.float64)          # representable in float64: loaded as is
    assert X[2, 1] == float(cell)


@pytest.mark.parametrize("cell", ["1e309", "-1e309", "inf", "nan"])
def test_csv_cell_beyond_float64_is_refused_in_a_float64_load(tmp_path, cell):
    path = write_csv(tmp_path / "t.csv", cell)
    with pytest.raises(ValueError, match=r"line 4, column 'b'"):
        data.load_csv(path, dtype=np.float64)


@pytest.mark.parametrize("value", [1e39, -1e39])
@pytest.mark.parametrize("key", ["X", "X_test"])
def test_npz_value_beyond_float32_is_refused_naming_array_row_and_column(tmp_path, value, key):
    arrays = {"X": np.ones((5, 3)), "y": np.zeros(5, np.int64), "X_test": np.ones((4, 3)),
              "y_test": np.zeros(4, np.int64)}
    arrays[key][2, 1] = value
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(ValueError, match=rf"d.npz: array '{key}', row 2, column 1: .*beyond the range of float32"):
        data.load_dataset(str(tmp_path / "d.npz"))
    d = data.load_dataset(str(tmp_path / "d.npz"), dtype=np.float64)
    assert d[key][2, 1] == value


@pytest.mark.parametrize("cell", ["1e39", "-1e39"])
def test_cli_train_and_predict_name_the_line_of_a_value_beyond_float32(tmp_path, capsys, monkeypatch, cell):
    monkeypatch.chdir(tmp_path)
    rows = "\n".join(f"{i % 7}.5,{i % 5}.25,{i % 2}" for i in range(40))
    (tmp_path / "ok.csv").write_text("a,b,label\n" + rows + "\n")
    (tmp_path / "big.csv").write_text("a,b,label\n" + rows.replace("3.5,3.25", f"3.5,{cell}", 1) + "\n")
    assert cli.main(["train", "--data", "big.csv", "--epochs", "1", "-q"]) == 2
    err = capsys.readouterr().err
    assert "big.csv" in err and "line 5" in err and "'b'" in err and "float32" in err, err
    assert cli.main(["train", "--data", "ok.csv", "--epochs", "1", "-q", "--save", "m.safetensors"]) == 0
    capsys.readouterr()
    for command in ("predict", "evaluate"):
        assert cli.main([command, "m.safetensors", "big.csv"]) == 2
        err = capsys.readouterr().err
        assert "big.csv" in err and "line 5" in err and "'b'" in err and "float32" in err, err
