"""fastnn train on raw CSVs (issue 21, build 2): every problem at once, --categorical, --missing, missing
labels never a class, --standardize scaling a regression target, R² and the mean-predictor RMSE."""
import re
import warnings

import numpy as np
import pytest

import fastnn as fnn
from fastnn import cli, io

from .test_preprocessing import penguins_csv


@pytest.fixture
def penguins(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return str(penguins_csv(tmp_path / "penguins.csv"))


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_every_problem_of_a_raw_file_is_reported_at_once(penguins, capsys):
    code, _, err = run(capsys, "train", "--data", penguins, "--target", "species")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1
    assert "columns 'island', 'sex' are text" in lines[0] and "--categorical" in lines[0]
    for column in ("bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "sex"):
        assert f"'{column}'" in lines[0].split("missing cells")[1]
    assert "--missing drop|mean|median|most_frequent" in lines[0]


def test_the_fill_is_said_with_its_counts(penguins, capsys):
    code, out, _ = run(capsys, "train", "--data", penguins, "--target", "species", "--categorical", "auto",
                       "--missing", "median", "--epochs", 2)
    assert code == 0
    line = next(line for line in out.splitlines() if line.startswith("columns"))
    assert "filled with the training median" in line and "body_mass_g 2" in line
    assert "one-hot: island (3), sex (2)" in line


@pytest.mark.parametrize("token", ["NA", "", "nan", "?"])
def test_a_missing_label_is_never_a_class(tmp_path, monkeypatch, capsys, token):
    monkeypatch.chdir(tmp_path)
    rows = [f"{i % 5}.0,{(i * 3) % 7}.0,{'ab'[i % 2]}" for i in range(40)]
    rows[7] = f"1.0,2.0,{token}"
    rows[19] = f"3.0,1.0,{token}"
    (tmp_path / "t.csv").write_text("x,z,label\n" + "\n".join(rows) + "\n")
    code, _, err = run(capsys, "train", "--data", "t.csv", "--epochs", 1)
    assert code == 2 and "2 missing label(s)" in err and "line 9, 21" in err and "--missing drop" in err
    code, out, _ = run(capsys, "train", "--data", "t.csv", "--epochs", 1, "--missing", "drop", "--save",
                       "m.safetensors")
    assert code == 0 and "2 row(s) without a label dropped" in out
    assert fnn.load("m.safetensors").preprocessing.classes == ["a", "b"]


def body_mass(capsys, penguins, *extra):
    code, out, err = run(capsys, "train", "--data", penguins, "--target", "body_mass_g", "--categorical", "auto",
                         "--missing", "drop", "--task", "regression", "--epochs", 60, *extra)
    assert code == 0, err
    line = next(line for line in out.splitlines() if line.startswith("validation loss"))
    rmse = float(re.search(r"RMSE (\d+\.\d+), R² (-?\d+\.\d+)", line).group(1))
    r2 = float(re.search(r"R² (-?\d+\.\d+)", line).group(1))
    baseline = float(re.search(r"training mean: RMSE (\d+\.\d+)", line).group(1))
    return rmse, r2, baseline, err


def test_standardize_scales_a_regression_target_and_is_never_worse(penguins, capsys):
    raw_rmse, raw_r2, baseline, _ = body_mass(capsys, penguins)
    rmse, r2, baseline2, err = body_mass(capsys, penguins, "--standardize", "--save", "r.safetensors")
    assert baseline == baseline2
    assert rmse <= raw_rmse and r2 >= raw_r2
    assert r2 > 0 and rmse < baseline                  # better than predicting the training mean
    assert "--standardize" not in err                  # no advice to use the flag given
    net = fnn.load("r.safetensors")
    assert net.preprocessing.target is not None
    meta = io.load_metadata("r.safetensors")["preprocessing"]["target"]
    assert 3000 < meta["mean"][0] < 5500 and 300 < meta["std"][0] < 1500   # grams
    code, out, _ = run(capsys, "evaluate", "r.safetensors", penguins, "--missing", "drop")
    assert code == 0 and "R²" in out and "predicting the mean" in out


def test_a_warning_never_recommends_a_step_already_taken():
    """The exploding-gradient advice reads the network's preprocessing: no "--standardize" for a network
    whose inputs are standardized already."""
    from fastnn.health import scaling_advice
    from fastnn.preprocessing import Preprocessing
    rng = np.random.default_rng(0)
    X = rng.standard_normal((20, 3)) * 1000
    net = fnn.NeuralNetwork([fnn.FullyConnected(3, 2)], loss=fnn.L2Loss(), seed=0)
    assert "standardise them" in scaling_advice(net)
    net.preprocessing = Preprocessing.fit(X, standardize=True)
    assert "--standardize" not in scaling_advice(net) and "already standardized" in scaling_advice(net)
    net.preprocessing = Preprocessing.fit(X, standardize=False)
    assert "standardise them" in scaling_advice(net)
