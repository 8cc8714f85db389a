"""fastnn train / evaluate: the class count is the number of distinct labels, train and evaluate report the
same R² (scikit-learn's r2_score) for the same model and data, and a CSV written without a header row is
refused even when its first row holds text."""
import csv
import re

import numpy as np
import pytest

import fastnn as fnn
from fastnn import cli
from fastnn.data import r2_score, read_csv_rows


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def _csv(name, labels, seed=0):
    rs = np.random.RandomState(seed)
    with open(name, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["a", "b", "y"])
        for v in labels:
            w.writerow([rs.randn() + (v if isinstance(v, int) else 0), rs.randn(), v])
    return name


# -- 3. the class count --------------------------------------------------------------------------------------
@pytest.mark.parametrize("label", [0, 3, 7])
def test_one_integer_class_is_refused_whatever_its_id(capsys, label):
    code, _, err = run(capsys, "train", "--data", _csv("one.csv", [label] * 40), "--epochs", 1, "-q")
    assert code == 2 and f"needs at least 2 classes, but the labels are all {label}" in err


def test_one_integer_class_in_an_npz_is_refused(capsys):
    rs = np.random.RandomState(0)
    np.savez("one.npz", X=rs.randn(40, 3), y=np.full(40, 3))
    code, _, err = run(capsys, "train", "--data", "one.npz", "--epochs", 1, "-q")
    assert code == 2 and "needs at least 2 classes, but the labels are all 3" in err


@pytest.mark.parametrize("ids", [(0, 5), (1, 2, 3), (2, 10, 40)])
def test_class_ids_with_gaps_make_one_output_per_distinct_id(capsys, ids):
    """{0, 5} is two classes, not six: the model has one output per distinct id, and predicts and evaluates
    in the ids themselves (stored as its class names)."""
    labels = [ids[i % len(ids)] for i in range(60)]
    code, out, err = run(capsys, "train", "--data", _csv("gaps.csv", labels), "--epochs", 30, "-q", "--save",
                         "g.safetensors")
    assert code == 0, err
    net = fnn.load("g.safetensors")
    assert net.n_outputs == len(ids)
    assert net.preprocessing.classes == [str(i) for i in ids]
    code, out, err = run(capsys, "evaluate", "g.safetensors", "gaps.csv")
    assert code == 0 and "accuracy" in out, err
    pred = net.predict(np.array([[10.0, 0.0], [-10.0, 0.0]]))
    assert set(pred.tolist()) <= {str(i) for i in ids}


def test_ids_0_to_k_keep_their_model_unchanged(capsys):
    """Labels 0..k-1 stay class ids (no class names): the models trained before are what they were."""
    code, _, err = run(capsys, "train", "--data", _csv("ids.csv", [i % 3 for i in range(60)]), "--epochs", 2,
                       "-q", "--save", "i.safetensors")
    assert code == 0, err
    net = fnn.load("i.safetensors")
    assert net.n_outputs == 3 and (net.preprocessing is None or net.preprocessing.classes is None)


def test_gapped_ids_in_an_npz_with_a_test_set(capsys):
    rs = np.random.RandomState(0)
    X, Xt = rs.randn(80, 3), rs.randn(40, 3)
    y, yt = np.where(X[:, 0] > 0, 5, 0), np.where(Xt[:, 0] > 0, 5, 0)
    np.savez("g.npz", X=X, y=y, X_test=Xt, y_test=yt)
    code, out, err = run(capsys, "train", "--data", "g.npz", "--epochs", 30, "-q", "--save", "g.safetensors")
    assert code == 0, err
    assert fnn.load("g.safetensors").n_outputs == 2
    train_acc = float(re.search(r"test accuracy (\d\.\d+)", out).group(1))
    code, out, err = run(capsys, "evaluate", "g.safetensors", "g.npz")
    assert code == 0, err
    assert float(re.search(r"accuracy (\d\.\d+)", out).group(1)) == train_acc


# -- 4. one R² -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("standardize", [True, False])
def test_train_and_evaluate_report_the_same_r2(capsys, standardize):
    rs = np.random.RandomState(0)
    X = rs.randn(400, 5) * [1, 10, 100, 1e3, 1e-3] + 50
    y = X[:, 0] * 3 + X[:, 1] / 10 + rs.randn(400) * 0.1
    Xt = rs.randn(100, 5) * [1, 10, 100, 1e3, 1e-3] + 50
    np.savez("reg.npz", X=X, y=y, X_test=Xt, y_test=Xt[:, 0] * 3 + Xt[:, 1] / 10)
    flags = ["--standardize"] if standardize else []
    code, out, err = run(capsys, "train", "--data", "reg.npz", *flags, "--hidden", 0, "--epochs", 20, "-q",
                         "--save", "r.safetensors")
    assert code == 0, err
    r2_train = re.search(r"R² (-?\d+\.\d+)", out).group(1)
    code, out2, err = run(capsys, "evaluate", "r.safetensors", "reg.npz")
    assert code == 0, err
    assert re.search(r"R² (-?\d+\.\d+)", out2).group(1) == r2_train
    net = fnn.load("r.safetensors")
    d = np.load("reg.npz")
    assert f"{r2_score(d['y_test'], net.predict(d['X_test'])):.4f}" == r2_train


def test_r2_score_is_scikit_learns():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rs = np.random.RandomState(0)
    cases = [(rs.randn(30), rs.randn(30), None), (np.full(10, 2.0), np.full(10, 2.0), None),
             (np.full(10, 2.0), np.full(10, 2.5), None), (rs.randn(20, 3), rs.randn(20, 3), None),
             (np.c_[np.full(20, 1.0), rs.randn(20)], np.c_[np.full(20, 1.0), rs.randn(20)], None),
             (rs.randn(25), rs.randn(25), rs.rand(25))]
    for t, p, w in cases:
        assert r2_score(t, p, w) == pytest.approx(sklearn_metrics.r2_score(t, p, sample_weight=w), rel=1e-12,
                                                  abs=1e-12)


def test_a_constant_target_scores_as_scikit_learn(capsys):
    """Evaluate on a test set whose target is constant: 0.0 (not -inf) when not predicted exactly."""
    rs = np.random.RandomState(0)
    np.savez("c.npz", X=rs.randn(100, 2), y=rs.randn(100), X_test=rs.randn(20, 2), y_test=np.full(20, 3.0))
    code, out, err = run(capsys, "train", "--data", "c.npz", "--hidden", 0, "--epochs", 2, "-q", "--save",
                         "c.safetensors")
    assert code == 0 and "R² 0.0000" in out and "inf" not in out, (out, err)
    code, out, err = run(capsys, "evaluate", "c.safetensors", "c.npz")
    assert code == 0 and "R² 0.0000" in out and "inf" not in out, (out, err)


# -- 5. a CSV without a header row ---------------------------------------------------------------------------
def _nohdr(name, first):
    rs = np.random.RandomState(0)
    with open(name, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(first)
        for i in range(30):
            w.writerow([round(rs.randn(), 3), ["red", "blue"][i % 2], i % 2])
    return name


@pytest.mark.parametrize("first", [["1.117", "red", "0"], ["-2e-3", "blue", "1"], ["3", "red", "1"],
                                   ["0.5", "green", "1"]])
def test_a_headerless_csv_with_text_is_refused(capsys, first):
    """The first row is a sample (a fractional number, or a text that is one of its column's values): the
    file has no header row; reading it as names would lose a sample and name the columns "1.117", "red"."""
    path = _nohdr("nohdr.csv", first)
    with pytest.raises(ValueError, match="looks like data, not column names.*needs a header row"):
        read_csv_rows(path)
    code, _, err = run(capsys, "train", "--data", path, "--categorical", "auto", "--epochs", 1, "-q")
    assert code == 2 and "looks like data" in err


@pytest.mark.parametrize("first", [["x", "colour", "label"], ["1", "colour", "label"], ["x", "0.5", "y"],
                                   ["0.5", "colour", "y"], ["a", "b", "1.5"]])
def test_a_real_header_over_such_rows_is_still_a_header(first):
    names, rows, _ = read_csv_rows(_nohdr("hdr.csv", first))
    assert names == first and len(rows) == 30


def test_one_hot_labels_of_one_class_are_refused(capsys):
    rs = np.random.RandomState(0)
    y = np.zeros((40, 3), dtype=np.int64)
    y[:, 1] = 1
    np.savez("oh.npz", X=rs.randn(40, 3), y=y)
    code, _, err = run(capsys, "train", "--data", "oh.npz", "--epochs", 1, "-q")
    assert code == 2 and "needs at least 2 classes, but the one-hot labels are all class 1" in err
    y[::2] = [1, 0, 0]
    np.savez("oh2.npz", X=rs.randn(40, 3), y=y)
    code, _, err = run(capsys, "train", "--data", "oh2.npz", "--epochs", 1, "-q")
    assert code == 0, err
