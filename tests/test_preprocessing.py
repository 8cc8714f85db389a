"""fastnn.preprocessing: a model carries its preprocessing as data, applied the same by predict, the CLI
and the ONNX graph; hostile stored entries are clear errors."""
import copy
import csv
import importlib.util
import json

import numpy as np
import pytest

import fastnn as fnn
from fastnn import io as fio
from fastnn.preprocessing import Preprocessing

HAVE_ORT = importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None
HAVE_PANDAS = importlib.util.find_spec("pandas") is not None
EPS32 = float(np.finfo(np.float32).eps)


def table(n=120, seed=0):
    """A raw table: two numeric columns on very different scales, two text columns, some holes."""
    rng = np.random.default_rng(seed)
    X = np.empty((n, 4), dtype=object)
    X[:, 0] = np.round(rng.normal(40, 5, n), 1)
    X[:, 1] = rng.choice(["Biscoe", "Dream", "Torgersen"], n)
    X[:, 2] = np.round(rng.normal(4000, 800, n))
    X[:, 3] = rng.choice(["male", "female"], n)
    X[3, 0] = None
    X[5, 1] = "NA"
    X[7, 2] = np.nan
    y = np.where(X[:, 1] == "Dream", "b", "a").astype(object)
    y[X[:, 3] == "female"] = "c"
    return X, y, ["bill", "island", "mass", "sex"]


def classifier(pre, outputs=3, dtype=np.float32):
    net = fnn.NeuralNetwork([fnn.FullyConnected(pre.n_features, 16, dtype=dtype), fnn.TanH(),
                             fnn.FullyConnected(16, outputs, dtype=dtype)], optimizer=fnn.Adam(lr=0.02), seed=0)
    net.preprocessing = pre
    return net


@pytest.fixture(scope="module")
def trained():
    X, y, names = table()
    pre = Preprocessing.fit(X, columns=names, categorical="auto", missing="median", standardize=True,
                            classes=["a", "b", "c"])
    net = classifier(pre)
    net.fit(X, y, epochs=40, batch_size=16, verbose=0)
    return net, X, y


def test_fit_learns_columns_fills_and_scaling():
    X, _, names = table()
    pre = Preprocessing.fit(X, columns=names, categorical="auto", missing="median", standardize=True)
    kinds = {c["name"]: c["kind"] for c in pre.columns}
    assert kinds == {"bill": "numeric", "island": "categorical", "mass": "numeric", "sex": "categorical"}
    assert pre.n_features == 1 + 3 + 1 + 2
    bill = pre.columns[0]
    values = np.array([v for v in X[:, 0] if v is not None], float)
    assert bill["fill"] == np.median(values)
    Z = pre.transform(X, np.float64)
    assert abs(Z[:, 0].mean()) < 1e-12 and abs(Z[:, 0].std() - 1) < 1e-12   # the filled column, standardized
    assert np.array_equal(Z[:, 1:4].sum(axis=1), np.ones(len(X)))           # one-hot, the hole filled
    assert pre.encoded_names[1:4] == ["island=Biscoe", "island=Dream", "island=Torgersen"]


def test_statistics_come_from_the_training_rows_only():
    X, _, names = table()
    rows = np.arange(0, 60)
    pre = Preprocessing.fit(X, columns=names, categorical="auto", missing="mean", standardize=True, rows=rows)
    mass = np.array([np.nan if v != v else v for v in X[rows, 2]], float)
    assert pre.columns[2]["fill"] == pytest.approx(np.nanmean(mass), rel=1e-15)


def test_every_problem_of_a_table_is_reported_at_once():
    X, _, names = table()
    with pytest.raises(ValueError) as info:
        Preprocessing.fit(X, columns=names)
    text = str(info.value)
    assert "'island', 'sex' are text" in text and "--categorical island,sex" in text
    assert "'bill' 1" in text and "'mass' 1" in text and "--missing" in text


def test_predict_returns_class_names_and_takes_raw_rows(trained):
    net, X, y = trained
    pred = net.predict(X)
    assert set(pred.tolist()) <= {"a", "b", "c"} and np.mean(pred == y) > 0.9
    assert net.predict_proba(X).shape == (len(X), 3)
    scores = net.evaluate(X, y)
    assert scores["accuracy"] == np.mean(pred == y)


def test_a_dict_of_columns_is_matched_by_name_in_any_order(trained):
    net, X, _ = trained
    cols = {"sex": X[:, 3], "extra": np.zeros(len(X)), "mass": X[:, 2], "island": X[:, 1], "bill": X[:, 0]}
    assert np.array_equal(net.predict(cols), net.predict(X))
    del cols["mass"]
    with pytest.raises(ValueError, match="no column 'mass'"):
        net.predict(cols)


@pytest.mark.skipif(not HAVE_PANDAS, reason="pandas is not installed")
def test_a_dataframe_is_matched_by_name(trained):
    import pandas as pd
    net, X, _ = trained
    frame = pd.DataFrame(X[:, ::-1], columns=["sex", "mass", "island", "bill"])
    assert np.array_equal(net.predict(frame), net.predict(X))


def test_save_and_load_keep_the_preprocessing(trained, tmp_path):
    net, X, _ = trained
    net.save(tmp_path / "m.safetensors")
    loaded = fnn.load(tmp_path / "m.safetensors")
    assert loaded.preprocessing.to_json() == net.preprocessing.to_json()
    assert np.array_equal(loaded.predict(X), net.predict(X))
    assert fio.load_metadata(tmp_path / "m.safetensors")["format_version"] == 2


def test_unseen_category_and_unfilled_hole_name_the_column_and_value(trained):
    net, X, _ = trained
    bad = X.copy()
    bad[9, 1] = "Atlantis"
    with pytest.raises(ValueError, match=r"column 'island', row 9: the category 'Atlantis' was not seen"):
        net.predict(bad)
    pre = Preprocessing.fit(X[[i for i in range(len(X)) if i not in (3, 5, 7)]], columns=["bill", "island", "mass", "sex"],
                            categorical="auto")
    with pytest.raises(ValueError, match="column 'bill' has 1 missing cell.*row 3"):
        pre.transform(X)
    for text in ("abc", "True"):
        bad = X.copy()
        bad[2, 0] = text
        with pytest.raises(ValueError, match=f"column 'bill', row 2: '{text}' is not a number"):
            net.predict(bad)


@pytest.mark.parametrize("value", [1e39, -1e39, "1e39", "-1e39", np.inf, "inf"])
def test_values_beyond_float32_are_refused_naming_the_cell(trained, value):
    net, X, _ = trained
    bad = X.copy()
    bad[4, 2] = value
    with pytest.raises(ValueError, match=r"column 'mass', row 4: .* is not a finite float32"):
        net.predict(bad)
    with pytest.raises(ValueError, match=r"column 'mass', row 4"):
        Preprocessing.fit(bad, columns=["bill", "island", "mass", "sex"], categorical="auto", missing="mean")


def hostile_variants(good):
    def edit(f):
        d = copy.deepcopy(good)
        f(d)
        return d
    yield edit(lambda d: d.update(columns=[])), "non-empty list"
    yield edit(lambda d: d["columns"][0].update(kind="code")), "kind must be"
    yield edit(lambda d: d["columns"][0].update(mean=float("nan"))), "finite number"
    yield edit(lambda d: d["columns"][0].update(std=0.0)), "std > 0"
    yield edit(lambda d: d["columns"][0].update(extra="__import__('os')")), "exactly"
    yield edit(lambda d: d["columns"][1].update(categories="abc")), "categories"
    yield edit(lambda d: d["columns"][1].update(categories=["x", "x"])), "categories"
    yield edit(lambda d: d["columns"][1].update(fill="nowhere")), "fill must be"
    yield edit(lambda d: d["columns"][1].update(name=d["columns"][0]["name"])), "duplicate"
    yield edit(lambda d: d.update(classes=[1, 2, 3])), "classes"
    yield edit(lambda d: d.update(classes=["a", "b"])), "class names"
    yield edit(lambda d: d.update(target={"mean": [0.0], "std": [-1.0]})), "target"
    yield edit(lambda d: d["columns"].pop()), "inputs"
    yield "a string", "must be an object"


def test_hostile_or_corrupt_stored_preprocessing_is_a_clear_error(trained, tmp_path):
    net, _, _ = trained
    path = tmp_path / "m.safetensors"
    net.save(path)
    _, meta = fio.load_with_metadata(path)
    good = meta["preprocessing"]
    import safetensors.numpy
    tensors = safetensors.numpy.load_file(str(path))
    for bad, words in hostile_variants(good):
        meta2 = dict(meta, preprocessing=bad)
        safetensors.numpy.save_file(tensors, str(tmp_path / "bad.safetensors"),
                                    metadata={"fastnn": json.dumps(meta2)})
        with pytest.raises(ValueError) as info:
            fnn.load(tmp_path / "bad.safetensors")
        assert "bad.safetensors" in str(info.value) and "preprocessing" in str(info.value), info.value
        assert words in str(info.value), (words, str(info.value))


def test_assigning_a_preprocessing_that_does_not_fit_is_refused(trained):
    net, _, _ = trained
    with pytest.raises(TypeError):
        net.preprocessing = {"columns": []}
    small = Preprocessing([{"name": "a", "kind": "numeric", "fill": None, "mean": None, "std": None}])
    with pytest.raises(ValueError, match="the network takes 7"):
        net.preprocessing = small
    with pytest.raises(AttributeError):
        net.preprocessing.columns = []


def regression_data(n=300, seed=2):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3)) * [1.0, 10.0, 0.1]
    y = 4000 + 800 * np.tanh(X[:, 0]) + 30 * X[:, 1] + rng.normal(0, 50, n)
    return X, y


def test_a_scaled_regression_target_answers_in_its_units():
    X, y = regression_data()
    pre = Preprocessing.fit(X, y, standardize=True, scale_target=True)
    assert pre.target["mean"] == [pytest.approx(y.mean(), rel=1e-15)]
    net = fnn.NeuralNetwork([fnn.FullyConnected(3, 16, dtype=np.float64), fnn.TanH(),
                             fnn.FullyConnected(16, 1, dtype=np.float64)], loss=fnn.L2Loss(),
                            optimizer=fnn.Adam(lr=0.01), seed=0)
    net.preprocessing = pre
    net.fit(X, y, epochs=60, batch_size=32, verbose=0)
    pred = net.predict(X)
    assert pred.shape == (len(X), 1)
    rmse = np.sqrt(np.mean((pred[:, 0] - y) ** 2))
    assert rmse < 0.5 * y.std()                                    # learned, in grams, not in std units
    loss = net.evaluate(X, y)["loss"]
    assert loss == pytest.approx(0.5 * np.mean((pred[:, 0] - y) ** 2), rel=1e3 * np.finfo(np.float64).eps)


@pytest.mark.skipif(not HAVE_ORT, reason="onnx / onnxruntime are not installed (pip install 'fastnn[onnx]')")
def test_onnx_graph_applies_the_same_preprocessing(trained, tmp_path):
    import onnxruntime as ort

    from fastnn.export import onnx_feed
    net, X, _ = trained
    net.export_onnx(tmp_path / "m.onnx")
    session = ort.InferenceSession(str(tmp_path / "m.onnx"))
    label, proba = session.run(["label", "probabilities"], onnx_feed(net, X))
    assert np.array_equal(label.astype(object), net.predict(X))
    assert np.max(np.abs(proba - net.predict_proba(X))) < 100 * EPS32
    bad = X.copy()
    bad[0, 1] = "Atlantis"                              # unseen: onnxruntime refuses too
    with pytest.raises(Exception, match="Unknown Category"):
        session.run(None, onnx_feed(net, bad))


@pytest.mark.skipif(not HAVE_ORT, reason="onnx / onnxruntime are not installed (pip install 'fastnn[onnx]')")
def test_onnx_numeric_preprocessing_and_target_scaling(tmp_path):
    import onnxruntime as ort

    from fastnn.export import onnx_feed
    X, y = regression_data()
    X[5, 1] = np.nan
    pre = Preprocessing.fit(X, y, missing="median", standardize=True, scale_target=True)
    net = fnn.NeuralNetwork([fnn.FullyConnected(3, 8), fnn.TanH(), fnn.FullyConnected(8, 1)], loss=fnn.L2Loss(),
                            optimizer=fnn.Adam(lr=0.01), seed=0)
    net.preprocessing = pre
    net.fit(X, y, epochs=5, verbose=0)
    net.export_onnx(tmp_path / "r.onnx")
    out = ort.InferenceSession(str(tmp_path / "r.onnx")).run(["output"], onnx_feed(net, X))[0]
    pred = net.predict(X)
    assert np.max(np.abs(out - pred)) <= 100 * EPS32 * np.max(np.abs(pred))


def penguins_csv(path, n=344, seed=1):
    """A palmerpenguins-like raw CSV: NA cells, text columns island/sex, string labels, year."""
    rng = np.random.default_rng(seed)
    species = rng.choice(["Adelie", "Chinstrap", "Gentoo"], n, p=[0.44, 0.2, 0.36])
    islands = {"Adelie": ["Torgersen", "Biscoe", "Dream"], "Chinstrap": ["Dream"], "Gentoo": ["Biscoe"]}
    base = {"Adelie": (38.8, 18.3, 190, 3700), "Chinstrap": (48.8, 18.4, 196, 3733),
            "Gentoo": (47.5, 15.0, 217, 5076)}
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["species", "island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g",
                    "sex", "year"])
        for i, s in enumerate(species):
            b = base[s]
            row = [s, rng.choice(islands[s]), f"{b[0] + rng.normal(0, 2.5):.1f}", f"{b[1] + rng.normal(0, 1):.1f}",
                   int(b[2] + rng.normal(0, 6)), int(b[3] + rng.normal(0, 400)), rng.choice(["male", "female"]),
                   rng.choice([2007, 2008, 2009])]
            if i in (3, 271):
                row[2:7] = ["NA"] * 5
            elif i % 37 == 5:
                row[6] = "NA" if i % 2 else ""
            w.writerow(row)
    return path


@pytest.mark.skipif(not HAVE_ORT, reason="onnx / onnxruntime are not installed (pip install 'fastnn[onnx]')")
def test_penguins_cli_python_and_onnx_give_the_same_labels_on_every_row(tmp_path, monkeypatch, capsys):
    import onnxruntime as ort

    from fastnn import cli
    from fastnn.export import onnx_feed
    monkeypatch.chdir(tmp_path)
    penguins_csv("penguins.csv")
    assert cli.main(["train", "--data", "penguins.csv", "--target", "species", "--categorical", "auto",
                     "--missing", "median", "--standardize", "--save", "m.safetensors", "--epochs", "20",
                     "-q"]) == 0
    out = capsys.readouterr().out
    assert "validation accuracy" in out
    assert cli.main(["predict", "m.safetensors", "penguins.csv"]) == 0
    cli_labels = capsys.readouterr().out.split()[1:]
    with open("penguins.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    raw = {name: np.array([r[k] for r in rows[1:]], dtype=object) for k, name in enumerate(rows[0])}
    net = fnn.load("m.safetensors")
    py_labels = net.predict(raw).tolist()
    assert cli_labels == py_labels and len(py_labels) == 344
    assert set(py_labels) <= {"Adelie", "Chinstrap", "Gentoo"}
    assert cli.main(["export", "m.safetensors", "--onnx", "m.onnx"]) == 0
    session = ort.InferenceSession("m.onnx")
    onnx_labels = session.run(["label"], onnx_feed(net, raw))[0].tolist()
    assert onnx_labels == py_labels
    assert cli.main(["evaluate", "m.safetensors", "penguins.csv"]) == 0
    assert "accuracy" in capsys.readouterr().out


def test_classes_auto_are_the_sorted_labels_and_fit_takes_them():
    X, y, names = table()
    pre = Preprocessing.fit(X, y, columns=names, categorical="auto", missing="most_frequent", classes="auto")
    assert pre.classes == ["a", "b", "c"]
    net = classifier(pre)
    history = net.fit(X, y, epochs=2, verbose=0, validation_data=(X[:10], y[:10]))
    assert set(net.predict(X).tolist()) <= {"a", "b", "c"}
    # the loop's validation ran on the encoded rows, once encoded: the same as evaluate on the raw rows now
    assert history["val_loss"][-1] == pytest.approx(net.evaluate(X[:10], y[:10])["loss"], rel=16 * EPS32)
    with pytest.raises(ValueError, match=r"labels the model does not know: \['z'\]"):
        net.evaluate(X[:3], ["a", "z", "b"])


def test_validation_data_of_a_numeric_model_is_scaled_once():
    """Numeric-only preprocessing keeps the width: encoding twice would pass every shape check silently."""
    X, y = regression_data()
    pre = Preprocessing.fit(X, y, standardize=True, scale_target=True)
    net = fnn.NeuralNetwork([fnn.FullyConnected(3, 8, dtype=np.float64), fnn.TanH(),
                             fnn.FullyConnected(8, 1, dtype=np.float64)], loss=fnn.L2Loss(), seed=0)
    net.preprocessing = pre
    history = net.fit(X[:200], y[:200], epochs=3, verbose=0, validation_data=(X[200:], y[200:]))
    scale = pre.target["std"][0] ** 2            # the loop's val_loss is in the scaled target's units
    assert history["val_loss"][-1] * scale == pytest.approx(net.evaluate(X[200:], y[200:])["loss"],
                                                            rel=1e3 * np.finfo(np.float64).eps)
