"""`fastnn train / predict / evaluate / info` on the kind of CSV file a user brings: an id column (text or row
numbers), a free-text column, unscaled measurements, an integer target, rows sorted by class. Run through
``fastnn.cli.main`` in-process (capsys), as the command line runs them; plus the bounded checkpoint history.
"""
import csv

import numpy as np
import pytest

import fastnn as fnn
from fastnn import checkpoint as ckpt
from fastnn import cli, io


def wine_csv(path, n=180, seed=0, constant=False):
    """A wine-like file sorted by class: 'id' (text), 'row' (0..n-1), 'name' (text), four measurements of
    very different scales (proline ~ 1000), optionally a constant column, and the integer 'quality'."""
    rng = np.random.default_rng(seed)
    y = np.sort(rng.integers(0, 3, n))
    X = rng.normal(size=(n, 4)) + y[:, None] * np.array([1.5, -1.0, 0.8, 0.0])
    X[:, 3] = 700 + 150 * X[:, 3] + 250 * y
    header = ["id", "row", "name", "alcohol", "acid", "ash", "proline"] + (["const"] if constant else []) \
        + ["quality"]
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for i in range(n):
            w.writerow([f"S{i:04d}", i, f"wine {i}", *(f"{v:.4f}" for v in X[i])] + (["3.5"] if constant else [])
                       + [int(y[i])])
    return X, y


def train(capsys, *args):
    code = cli.main(["train", "--quiet", *map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err


def one_error(code, err):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastnn: error: "), err
    return lines[0]


def score(text, name):
    import re
    m = re.search(rf"{name} (\d+\.\d+)", text)
    assert m, f"no '{name}' in:\n{text}"
    return float(m.group(1))


@pytest.fixture
def wine(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    X, y = wine_csv(tmp_path / "wine.csv")
    return tmp_path / "wine.csv", X, y


# ---------------------------------------------------------------------------------------- --drop, ids

def test_text_column_is_refused_with_the_advice_to_drop_it(wine, capsys):
    path, _, _ = wine
    line = one_error(*train(capsys, "--data", path, "--epochs", 1)[::2])   # every text column at once
    assert "columns 'id', 'name' are text" in line and "--drop id,name" in line and "--categorical" in line
    line = one_error(*train(capsys, "--data", path, "--epochs", 1, "--drop", "id")[::2])
    assert "column 'name' is text" in line and "--drop name" in line
    line = one_error(*train(capsys, "--data", path, "--epochs", 1, "--drop", "id,nam")[::2])
    assert "no column named 'nam' to drop" in line
    line = one_error(*train(capsys, "--data", "digits", "--epochs", 1, "--drop", "id")[::2])
    assert "--drop applies only to .csv" in line


def test_id_like_numeric_column_warns_once_and_drop_silences_it(wine, capsys):
    path, _, _ = wine
    cli.main(["train", "--data", str(path), "--epochs", "1", "--drop", "id,name"])
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if "looks like a row id" in line]
    assert len(warnings) == 1 and "column 'row'" in warnings[0] and "--drop row" in warnings[0], err
    assert warnings[0].startswith("fastnn: warning: ")
    cli.main(["train", "--data", str(path), "--epochs", "1", "--drop", "id,name", "--drop", "row"])
    out = capsys.readouterr()
    assert "row id" not in out.err and "4 features (id, name, row dropped)" in out.out


# ------------------------------------------------------------------------------ the headline score

def test_headline_score_is_held_out_and_says_so(wine, capsys):
    path, _, _ = wine
    code, out, _ = train(capsys, "--data", path, "--drop", "id,name,row", "--epochs", 3)
    assert code == 0
    assert "validation accuracy" in out and "(held-out 20%, 35 samples)" in out and "train accuracy" not in out
    code, out, _ = train(capsys, "--data", path, "--drop", "id,name,row", "--epochs", 3, "--val-split", 0.3)
    assert "(held-out 30%, 54 samples)" in out or "(held-out 30%, 53 samples)" in out
    # with no held-out data at all, the training score is labelled as such, never as the result
    code, out, _ = train(capsys, "--data", path, "--drop", "id,name,row", "--epochs", 3, "--val-split", 0)
    assert "train accuracy" in out and "not held out" in out
    # a dataset with a test set reports the test set, and the validation score on its own line
    cli.main(["train", "--data", "moons", "--epochs", "2", "--val-split", "0.2", "--hidden", "8"])
    out = capsys.readouterr().out
    assert "test accuracy" in out and "(test set, 250 samples)" in out
    assert "validation accuracy" in out and "(held-out 20%, 150 samples)" in out


def test_val_split_is_stratified(wine, capsys, monkeypatch):
    """The file is sorted by class; the validation rows keep the class proportions (to one sample per class)."""
    path, _, y = wine
    from fastnn import data
    seen = {}
    real = data.train_test_split

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        seen.update(kwargs, y_train=out[2], y_val=out[3])
        return out

    monkeypatch.setattr(data, "train_test_split", spy)
    code, _, _ = train(capsys, "--data", path, "--drop", "id,name,row", "--epochs", 1, "--val-split", 0.25)
    assert code == 0 and seen["stratify"] is True
    expected = 0.25 * np.bincount(y)
    assert np.all(np.abs(np.bincount(seen["y_val"], minlength=3) - expected) <= 1)


# ----------------------------------------------------------------------------------- --standardize

def test_standardize_stores_training_statistics_and_predict_evaluate_apply_them(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    X, y = wine_csv(tmp_path / "wine.csv", constant=True)
    from fastnn import data
    seen = {}
    real = data.train_test_split

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        seen["X_train"] = out[0]
        return out

    monkeypatch.setattr(data, "train_test_split", spy)
    code, out, err = train(capsys, "--data", "wine.csv", "--drop", "id,name,row", "--standardize", "--epochs",
                           30, "--save", "w.safetensors")
    assert code == 0, err
    columns = io.load_metadata(tmp_path / "w.safetensors")["preprocessing"]["columns"]
    scaling = {k: [c[k] for c in columns] for k in ("mean", "std")}
    train_rows = seen["X_train"]                                 # the split is of row indices
    X_train = np.column_stack([np.round(X, 4), np.full(len(X), 3.5)])[train_rows]    # the file's values
    assert len(X_train) == 145                                   # the training rows only, not validation
    np.testing.assert_allclose(scaling["mean"], X_train.mean(0), rtol=1e-12)
    np.testing.assert_allclose(scaling["std"][:4], X_train[:, :4].std(0), rtol=1e-12)
    assert scaling["std"][4] == 1.0 and scaling["mean"][4] == 3.5          # the constant column: no 0 / 0
    # predict and evaluate take the raw file and scale it as training did; so does fnn.load(...).predict
    net = fnn.load(tmp_path / "w.safetensors")
    raw = np.array([[f"{v:.4f}" for v in row] + ["3.5"] for row in X], dtype=object)
    assert cli.main(["predict", "w.safetensors", "wine.csv"]) == 0
    predicted = np.array([int(v) for v in capsys.readouterr().out.split()[1:]])
    assert np.array_equal(predicted, net.predict(raw))
    bare = fnn.load(tmp_path / "w.safetensors")
    bare.preprocessing = None
    assert not np.array_equal(predicted, bare.predict(raw.astype(np.float32)))  # unscaled would differ
    assert cli.main(["evaluate", "w.safetensors", "wine.csv"]) == 0
    assert abs(score(capsys.readouterr().out, "accuracy") - np.mean(net.predict(raw) == y)) < 1e-4
    assert cli.main(["info", "w.safetensors"]) == 0
    info = capsys.readouterr().out
    assert "standardized" in info and "5 features" in info and "dropped: id, name, row" in info
    assert "validation accuracy" in info


def test_standardize_makes_unscaled_data_learnable(wine, capsys):
    path, _, _ = wine
    args = ["--data", path, "--drop", "id,name,row", "--epochs", 40, "--hidden", 16]
    _, raw, _ = train(capsys, *args)
    _, scaled, _ = train(capsys, *args, "--standardize")
    # measured: 0.29 unscaled (proline ~ 1000 swamps the rest), 0.80 standardized (seed 0, 40 epochs)
    assert score(scaled, "validation accuracy") >= 0.7
    assert score(scaled, "validation accuracy") >= score(raw, "validation accuracy") + 0.2


def test_malformed_stored_standardization_is_one_error_line(wine, capsys):
    path, _, _ = wine
    assert train(capsys, "--data", path, "--drop", "id,name,row", "--standardize", "--epochs", 1, "--save",
                 "w.safetensors")[0] == 0
    import json

    import safetensors.numpy
    meta = io.load_metadata("w.safetensors")
    meta["preprocessing"]["columns"][0]["std"] = 0.0
    tensors = safetensors.numpy.load_file("w.safetensors")
    safetensors.numpy.save_file(tensors, "bad.safetensors", metadata={"fastnn": json.dumps(meta)})
    code = cli.main(["predict", "bad.safetensors", str(path)])
    line = one_error(code, capsys.readouterr().err)
    assert "bad.safetensors" in line and "preprocessing column 0" in line and "std > 0" in line


# ------------------------------------------------------------------------------- task and class count

def test_integer_regression_target_gets_the_task_hint(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(3)
    X = rng.normal(size=(300, 3))
    price = np.round(300 + 50 * X[:, 0] - 20 * X[:, 1]).astype(int)        # ~250 distinct integer prices
    with open("houses.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["a", "b", "c", "price"])
        w.writerows([[*(f"{v:.4f}" for v in x), p] for x, p in zip(X, price)])
    line = one_error(*train(capsys, "--data", "houses.csv", "--epochs", 1)[::2])
    assert "classes from 300 samples" in line and "--task regression" in line and "--task classification" in line
    code, out, _ = train(capsys, "--data", "houses.csv", "--epochs", 2, "--task", "regression", "--standardize")
    assert code == 0 and "validation loss" in out and "RMSE" in out and "held-out 20%" in out


# ------------------------------------------------------------------------------------- checkpoints

def _data(n=120, seed=1):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 5)).astype(np.float32), rng.integers(0, 3, n)


def _net():
    return fnn.NeuralNetwork([fnn.FullyConnected(5, 8), fnn.TanH(), fnn.FullyConnected(8, 3)],
                             optimizer=fnn.Adam(lr=0.01), seed=0)


@pytest.mark.parametrize("schedule", [None, "plateau"])
def test_checkpoint_history_is_bounded_and_resume_stays_exact(tmp_path, monkeypatch, schedule):
    monkeypatch.setattr(ckpt, "HISTORY_EPOCHS", 5)
    X, y = _data()
    Xv, yv = _data(30, seed=2)

    def kwargs():
        sched = None if schedule is None else fnn.schedules.ReduceLROnPlateau(monitor="val_loss", patience=1,
                                                                             factor=0.5)
        return dict(batch_size=16, verbose=0, validation_data=(Xv, yv), lr_schedule=sched)

    ref = _net()
    h_ref = ref.fit(X, y, epochs=14, **kwargs())
    path = tmp_path / "run.ckpt"
    _net().fit(X, y, epochs=9, checkpoint=path, **kwargs())
    meta = io.load_metadata(path)
    state = meta["extra"]["checkpoint"]
    for key, values in meta["history"].items():
        whole = schedule is not None and key == "val_loss"       # the plateau schedule replays it
        assert len(values) == (9 if whole else 5), key
        assert state["history_dropped"].get(key, 0) == (0 if whole else 4)
    assert meta["history"]["loss"] == h_ref["loss"][4:9]
    resumed = _net()
    h = resumed.fit(X, y, epochs=14, checkpoint=path, **kwargs())
    assert np.array_equal(resumed._flat_params, ref._flat_params)
    assert h["loss"] == h_ref["loss"][4:] and h["lr"] == h_ref["lr"][4:]
    meta = io.load_metadata(path)                               # the last checkpoint, written after a resume
    assert meta["history"]["loss"] == h_ref["loss"][9:] and meta["extra"]["checkpoint"]["epoch"] == 14


def test_checkpoint_size_does_not_grow_with_epochs(tmp_path, monkeypatch):
    monkeypatch.setattr(ckpt, "HISTORY_EPOCHS", 10)
    X, y = _data()
    sizes = []
    for epochs in (10, 200):
        path = tmp_path / f"{epochs}.ckpt"
        _net().fit(X, y, epochs=epochs, batch_size=60, verbose=0, checkpoint=path, checkpoint_every=epochs)
        sizes.append(path.stat().st_size)
    assert sizes[1] < sizes[0] + 200, sizes                      # the epoch counters' digits, no more


def test_checkpoint_with_inconsistent_dropped_counts_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(ckpt, "HISTORY_EPOCHS", 3)
    X, y = _data()
    path = tmp_path / "run.ckpt"
    _net().fit(X, y, epochs=6, batch_size=40, verbose=0, checkpoint=path)
    net, meta = io.load_with_metadata(path)
    extra = meta["extra"]
    extra["checkpoint"]["history_dropped"]["loss"] = 2
    io.save(net, path, extra=extra)
    with pytest.raises(ValueError, match="corrupt training state.*history\\['loss'\\]"):
        _net().fit(X, y, epochs=8, batch_size=40, verbose=0, checkpoint=path)


def test_info_on_a_checkpoint_shows_the_training_state_not_the_rng(tmp_path, capsys):
    X, y = _data()
    path = tmp_path / "run.ckpt"
    _net().fit(X, y, epochs=4, batch_size=40, verbose=0, checkpoint=path, seed=3)
    state = io.load_metadata(path)["extra"]["checkpoint"]
    assert cli.main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "after epoch 4" in out and "batch 40" in out and "seed 3" in out and "120 training samples" in out
    assert "4 epochs trained" in out and "Adam(lr=0.01" in out and "parameters    75" in out
    assert str(state["rng"]["state"]["state"]) not in out and "PCG64" not in out and "rng" not in out
    assert max(len(line) for line in out.splitlines()) < 200
