"""Non-finite outputs from finite inputs (NaN or infinite weights, weights or rows of X that overflow inside the
network): every prediction and score path says so (predict's RuntimeWarning, naming the first row) and never
returns a number that looks valid — evaluate's and the estimators' scores are NaN (an infinite loss stays
infinite), predict_proba warns even where the probabilities come out as exact 0s and 1s (DESIGN §5).

Before: evaluate counted NaN rows as class 0 (accuracy 0.38 from NaN weights), predict_proba, the estimators'
predict_proba / predict_log_proba and MLPRegressor.predict said nothing, MLPClassifier.score returned an
accuracy and MLPRegressor.score raised scikit-learn's "Input contains NaN" about finite X and y."""
import warnings

import numpy as np
import pytest

import fastnn as fnn
from fastnn.network import PREDICT_CHUNK

WARNING = "NaN or infinite"
LOSSES = {"softmax": fnn.SoftmaxCrossEntropy, "sigmoid": fnn.SigmoidCrossEntropy, "l2": fnn.L2Loss,
          "ce": fnn.CrossEntropyLoss}


class Doubled(fnn.Layer):
    """A custom layer (the per-layer inference path)."""

    def _forward(self, x):
        return x * 2

    def _backward(self, dy, need_input_grad=True):
        return dy * 2


def _broken(kind, loss, dtype, custom=False, rows=50):
    """(net, X, y): a 4-8-3 network whose last layer's weights are NaN / infinite / overflowing ``kind``, or
    ("row") finite, with one row of X that overflows; X finite either way."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((rows, 4)).astype(dtype)
    last = fnn.FullyConnected(8, 3, dtype=dtype, seed=2)
    layers = [fnn.FullyConnected(4, 8, dtype=dtype, seed=1), Doubled() if custom else fnn.ReLU(), last]
    if loss == "ce":
        layers.append(fnn.SoftMax())
    net = fnn.NeuralNetwork(layers, loss=LOSSES[loss](), seed=0)
    big = np.finfo(dtype).max
    if kind == "nan":
        last.weights[0, :] = np.nan
    elif kind == "inf":
        last.weights[:, 1] = np.inf
    elif kind == "overflow":
        last.weights[...] = big
    else:                               # one row of X, the last one (the last chunk when X has several)
        X[-1] = big
    if loss in ("softmax", "ce"):
        y = rng.integers(0, 3, rows)
    elif loss == "sigmoid":
        y = rng.integers(0, 2, (rows, 3)).astype(dtype)
    else:
        y = rng.standard_normal((rows, 3)).astype(dtype)
    return net, X, y


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("loss", list(LOSSES))
@pytest.mark.parametrize("kind", ["nan", "inf", "overflow", "row"])
def test_network_calls_warn_and_scores_are_nan(kind, loss, dtype):
    net, X, y = _broken(kind, loss, dtype)
    assert not np.isfinite(net.forward(X)).all()          # the premise: finite X, non-finite outputs
    with pytest.warns(RuntimeWarning, match=WARNING):
        net.predict(X)
    if net.classification:
        with pytest.warns(RuntimeWarning, match=WARNING):
            net.predict_proba(X)
    with pytest.warns(RuntimeWarning, match=WARNING):
        scores = net.evaluate(X, y)
    assert np.isnan(scores["loss"]) or np.isinf(scores["loss"]), scores
    if net.classification:
        assert np.isnan(scores["accuracy"]), scores


@pytest.mark.parametrize("kind", ["nan", "row"])
def test_custom_layer_path_warns_and_scores_are_nan(kind):
    net, X, y = _broken(kind, "softmax", np.float32, custom=True)
    for call in (net.predict, net.predict_proba):
        with pytest.warns(RuntimeWarning, match=WARNING):
            call(X)
    with pytest.warns(RuntimeWarning, match=WARNING):
        scores = net.evaluate(X, y)
    assert np.isnan(scores["loss"]) and np.isnan(scores["accuracy"])


def test_a_bad_row_in_a_later_chunk_is_found_and_named():
    rows = PREDICT_CHUNK + 7
    net, X, y = _broken("row", "softmax", np.float32, rows=rows)
    with pytest.warns(RuntimeWarning, match=f"row {rows - 1} of X"):
        scores = net.evaluate(X, y)
    assert np.isnan(scores["accuracy"])
    with pytest.warns(RuntimeWarning, match=f"row {rows - 1} of X"):
        net.predict_proba(X)


@pytest.mark.parametrize("loss", list(LOSSES))
def test_finite_outputs_stay_silent(loss):
    net, X, y = _broken("none", loss, np.float32)
    X[-1] = 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        net.predict(X)
        if net.classification:
            net.predict_proba(X)
        scores = net.evaluate(X, y)
    assert all(np.isfinite(v) for v in scores.values())


# ------------------------------------------------------------------------------------------------- estimators
def _estimator(target, dtype):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 4)).astype(dtype)
    y = {"multiclass": rng.integers(0, 3, 60), "binary": rng.integers(0, 2, 60),
         "multilabel": rng.integers(0, 2, (60, 3)), "regression": rng.standard_normal(60),
         "regression2": rng.standard_normal((60, 2))}[target]
    cls = fnn.MLPRegressor if target.startswith("regression") else fnn.MLPClassifier
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")       # (3 iterations: not converged)
        est = cls(hidden_layer_sizes=(8,), max_iter=3, random_state=0, dtype=dtype).fit(X, y)
    return est, X, y


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["nan", "overflow"])
@pytest.mark.parametrize("target", ["multiclass", "binary", "multilabel", "regression", "regression2"])
def test_estimator_calls_warn_and_scores_are_nan(target, kind, dtype):
    est, X, y = _estimator(target, dtype)
    est.coefs_[-1][...] = np.nan if kind == "nan" else np.finfo(dtype).max
    calls = [est.predict]
    if isinstance(est, fnn.MLPClassifier):
        calls += [est.predict_proba, est.predict_log_proba]
    for call in calls:
        with pytest.warns(RuntimeWarning, match=WARNING):
            call(X)
    for weights in (None, np.linspace(0.5, 1.5, len(X))):
        with pytest.warns(RuntimeWarning, match=WARNING):
            assert np.isnan(est.score(X, y, sample_weight=weights))


@pytest.mark.parametrize("target", ["multiclass", "binary", "multilabel", "regression", "regression2"])
def test_estimator_scores_unchanged_when_finite(target):
    """score computes its labels from one pass of the network: the same as scikit-learn's score of predict."""
    from sklearn.metrics import accuracy_score, r2_score
    est, X, y = _estimator(target, np.float32)
    w = np.linspace(0.5, 1.5, len(X))
    metric = r2_score if target.startswith("regression") else accuracy_score
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for weights in (None, w):
            assert est.score(X, y, sample_weight=weights) == metric(y, est.predict(X), sample_weight=weights)


def test_a_fits_validation_records_nan_scores_without_the_warning():
    """A fit's own validation (evaluate from the fit's thread) puts NaN in the history and leaves the
    explaining to the fit (the CLI prints one line for a diverged fit); evaluate called by the user warns."""
    net, X, y = _broken("none", "softmax", np.float32)
    X[-1] = 1.0                                 # ("none": no overflowing row of X either)
    net.layers[2].weights[...] = 1e30           # finite outputs (~1e30) on X, infinite on 1e10 X
    net.optimizer = fnn.SGD(lr=1e-30)
    X_val = X * np.float32(1e10)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")      # (a GradientHealthWarning about 1e30 weights may come)
        history = net.fit(X, y, epochs=1, batch_size=10, verbose=0, validation_data=(X_val, y))
    assert not [w for w in seen if WARNING in str(w.message)]
    assert np.isfinite(history["loss"][0]) and np.isnan(history["val_accuracy"][0])
    with pytest.warns(RuntimeWarning, match=WARNING):
        assert np.isnan(net.evaluate(X_val, y)["accuracy"])
