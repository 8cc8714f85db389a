"""``fastnn evaluate`` on data whose outputs overflow the model (finite inputs, values beyond what its dtype
holds inside the network): the scores line, then one error line naming the problem and exit 1 — a NaN
score is not a result; the warning is said once, also for a regression model (whose RMSE / R² predict
again). Finite outputs: exit 0 and no warning."""
import csv

import numpy as np
import pytest

import fastnn as fnn
from fastnn.cli import main


def _model(tmp_path, regression):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 3)).astype(np.float32)
    if regression:
        net = fnn.NeuralNetwork([fnn.FullyConnected(3, 8), fnn.ReLU(), fnn.FullyConnected(8, 1)],
                                loss=fnn.L2Loss(), optimizer=fnn.SGD(lr=0.01), seed=0)
        net.fit(X, X[:, :1], epochs=2, batch_size=16, verbose=0)
    else:
        net = fnn.NeuralNetwork([fnn.FullyConnected(3, 8), fnn.ReLU(), fnn.FullyConnected(8, 2)],
                                loss=fnn.SoftmaxCrossEntropy(), optimizer=fnn.SGD(lr=0.01), seed=0)
        net.fit(X, (X[:, 0] > 0).astype(int), epochs=2, batch_size=16, verbose=0)
    path = tmp_path / "model.safetensors"
    net.save(path)
    return path


def _csv(path, rows):
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["a", "b", "c", "label"])
        writer.writerows(rows)
    return path


@pytest.mark.parametrize("regression", [False, True])
def test_evaluate_with_outputs_that_overflow_exits_1_with_one_line(tmp_path, capsys, regression):
    model = _model(tmp_path, regression)
    data = _csv(tmp_path / "big.csv", [[3e38, -3e38, 3e38, 1], [0.5, 0.1, -0.2, 0]])
    assert main(["evaluate", str(model), str(data)]) == 1
    out, err = capsys.readouterr()
    assert "2 samples from" in out
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastnn: error: the scores are not numbers: "), err
    assert "NaN or infinite" in lines[0]


@pytest.mark.parametrize("regression", [False, True])
def test_evaluate_with_finite_outputs_exits_0_and_says_nothing_more(tmp_path, capsys, regression):
    model = _model(tmp_path, regression)
    data = _csv(tmp_path / "ok.csv", [[0.3, -1.0, 2.0, 1], [0.5, 0.1, -0.2, 0]])
    assert main(["evaluate", str(model), str(data)]) == 0
    out, err = capsys.readouterr()
    assert "2 samples from" in out and err == ""
