"""Tests for fastnn.estimators: MLPClassifier / MLPRegressor as drop-in replacements for scikit-learn's.

scikit-learn's own estimator checks, equivalence with sklearn.neural_network step for step (float64), the
documented behaviour (warm_start, partial_fit, early stopping, convergence, random_state, string labels,
pickling, errors), accuracy on the bundled digits, and the estimators without scikit-learn installed.
"""
import copy
import pickle
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

from fastnn.data import digits_split
from fastnn.estimators import ConvergenceWarning, MLPClassifier, MLPRegressor, NotFittedError

try:
    import sklearn  # noqa: F401
    from sklearn.utils.estimator_checks import parametrize_with_checks
    HAVE_SKLEARN = True
except ImportError:  # pragma: no cover
    HAVE_SKLEARN = False

needs_sklearn = pytest.mark.skipif(not HAVE_SKLEARN, reason="scikit-learn is not installed")
no_convergence_warning = pytest.mark.filterwarnings("ignore::fastnn.estimators.ConvergenceWarning")


@pytest.fixture(scope="module", autouse=True)
def _single_threaded_blas():
    """These tests train small networks, where BLAS threads only add contention on a busy machine (a
    several-fold slowdown measured on 2 shared cores); the previous limits are restored afterwards."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        yield
        return
    with threadpool_limits(1, user_api="blas"):
        yield


@pytest.fixture(scope="module")
def digits():
    return digits_split()


@pytest.fixture(scope="module")
def digits64():
    return digits_split(dtype=np.float64)


def _smooth_regression(n=600, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.uniform(-2, 2, (n, 2))
    return X, np.sin(X[:, 0]) * np.cos(X[:, 1]) + 0.3 * X[:, 0]


# ------------------------------------------------------------------------- scikit-learn's checks

# scikit-learn checks whose tolerance is below what float32 and the BLAS guarantee: expected to fail on some
# machines (non-strict: they pass on others). Marked for every estimator: the cause is in the BLAS, not in
# one solver.
MACHINE_DEPENDENT_CHECKS = {
    "check_methods_sample_order_invariance": (
        "float32 predict_proba of permuted rows differs in the last bit: measured 6e-8 against scikit-learn's "
        "rtol 1e-7 (float32 eps is 1.2e-7) for solver='sgd' on AMD Zen 5 with OPENBLAS_CORETYPE=Haswell, and "
        "on an Intel Xeon with the same core type; OpenBLAS's sgemm rounds a row differently depending on "
        "its position in the kernel's register block, and fastnn does not promise bit-identical rows under "
        "permutation (DESIGN 6: a float32 comparison at rtol 1e-7 is a bug in the test)"),
}

# Checks that compare two float32 fits at scikit-learn's rtol 1e-7 (about one float32 eps): fastnn computes
# in float32 by default, so two mathematically equal fits that sum in different orders differ in the last
# bits. check_sample_weight_equivalence_on_dense_data fits 15 samples with integer weights against the same
# samples repeated: one full batch each, the same gradient up to float32 summation order; measured 6e-8
# absolute (3.9e-7 relative) in predict_proba. (scikit-learn lists it as an expected failure for its own
# MLPRegressor with solver="sgd".) In float64 the same comparison holds, see test_sample_weight_*.
FLOAT32_PRECISION_CHECKS = {
    "check_sample_weight_equivalence_on_dense_data": "float32 summation order: measured 6e-8 in predict_proba "
                                                      "against rtol 1e-7 (weights vs repeated rows)",
    "check_sample_weight_equivalence_on_sparse_data": "float32 summation order, as on dense data",
}

if HAVE_SKLEARN:
    @no_convergence_warning
    @parametrize_with_checks([MLPClassifier(max_iter=100), MLPRegressor(max_iter=100),
                              MLPClassifier(solver="sgd", hidden_layer_sizes=(20, 10), activation="tanh",
                                            max_iter=100)])
    def test_sklearn_estimator_checks(estimator, check, request):
        name = getattr(check, "func", check).__name__
        if name in MACHINE_DEPENDENT_CHECKS:
            request.applymarker(pytest.mark.xfail(strict=False, reason=MACHINE_DEPENDENT_CHECKS[name]))
        if name in FLOAT32_PRECISION_CHECKS:
            request.applymarker(pytest.mark.xfail(strict=False, reason=FLOAT32_PRECISION_CHECKS[name]))
        check(estimator)


@no_convergence_warning
@pytest.mark.parametrize("params", [dict(), dict(solver="sgd", hidden_layer_sizes=(20, 10), activation="tanh")],
                         ids=["adam-relu", "sgd-tanh"])
def test_predict_proba_row_order_within_float32_rounding(params):
    """What check_methods_sample_order_invariance (expected to fail on some machines, above) should test:
    permuting the rows permutes predict_proba, up to float32 rounding. The bound is computed, not guessed:
    layer by layer, a float32 dot product of K terms plus a bias is within gamma = (K + 1) * eps of the
    exact value relative to the sum of the absolute values of its terms (Higham, 3.1), so two evaluations
    that sum in different orders differ by at most 2 * gamma * (|a| |W| + |b|), plus |W|^T of the difference
    their inputs already had (tanh and ReLU are 1-Lipschitz; their own rounding adds 2 * 4 eps |a|); the
    softmax's Jacobian has row sums 2 p (1 - p) <= 1/2, so the probabilities differ by at most half the
    logits' largest difference, plus 2 * 4 eps of their own rounding."""
    rng = np.random.RandomState(0)
    X = 3 * rng.uniform(size=(200, 7))
    y = (X[:, 0] + X[:, 1]).astype(int) % 3
    est = MLPClassifier(max_iter=20, random_state=0, **params).fit(X, y)
    perm = rng.permutation(len(X))
    direct, permuted = est.predict_proba(X), est.predict_proba(X[perm])
    eps = float(np.finfo(est.dtype).eps)       # the dtype it computes in (its outputs are float64)
    a = X.astype(est.dtype).astype(np.float64)
    spread = np.zeros_like(a)           # the inputs are the same float32 values in both calls
    for i, (W, b) in enumerate(zip(est.coefs_, est.intercepts_)):
        W, b = np.asarray(W, np.float64), np.asarray(b, np.float64)
        gamma = (W.shape[0] + 1) * eps
        spread = 2 * gamma * (np.abs(a) @ np.abs(W) + np.abs(b)) + spread @ np.abs(W)
        z = a @ W + b
        if i < len(est.coefs_) - 1:
            a = np.tanh(z) if est.activation == "tanh" else np.maximum(z, 0)
            spread = spread + 8 * eps * np.abs(a)
    bound = 0.5 * spread.max(axis=1, keepdims=True) + 8 * eps
    assert np.all(np.abs(permuted - direct[perm]) <= bound[perm]), np.abs(permuted - direct[perm]).max()


# -------------------------------------------------------- the same numbers as sklearn.neural_network

EQUIVALENT_CONFIGS = [
    dict(),
    dict(solver="sgd", learning_rate_init=0.1),
    dict(solver="sgd", nesterovs_momentum=False, momentum=0.5, learning_rate_init=0.05, batch_size=64),
    dict(solver="sgd", learning_rate="invscaling", learning_rate_init=0.5),
    dict(solver="sgd", learning_rate="adaptive", learning_rate_init=0.2, tol=1e-2, n_iter_no_change=2),
    dict(alpha=0.1, activation="tanh", hidden_layer_sizes=(30, 20)),
    dict(activation="logistic", shuffle=False, batch_size=100),
    dict(activation="identity", hidden_layer_sizes=()),
    dict(early_stopping=True, n_iter_no_change=3, validation_fraction=0.2),
    dict(tol=1e-2, n_iter_no_change=2),
]


@needs_sklearn
@no_convergence_warning
@pytest.mark.parametrize("params", EQUIVALENT_CONFIGS, ids=lambda p: ",".join(f"{k}={v}" for k, v in p.items()))
def test_classifier_matches_sklearn_step_for_step(digits64, params):
    """In float64 with the same random_state, fastnn reproduces scikit-learn's training run: same
    initialisation, shuffling, L2 penalty, updates, convergence test and early stopping."""
    from sklearn.neural_network import MLPClassifier as SkMLPClassifier
    Xtr, Xte, ytr, _ = digits64
    Xtr, ytr = Xtr[:700], ytr[:700]
    params = dict(dict(random_state=3, max_iter=15), **params)
    ours = MLPClassifier(dtype=np.float64, **params).fit(Xtr, ytr)
    ref = SkMLPClassifier(**params).fit(Xtr, ytr)
    assert ours.n_iter_ == ref.n_iter_ and ours.t_ == ref.t_
    np.testing.assert_allclose(ours.loss_curve_, ref.loss_curve_, rtol=1e-9)
    np.testing.assert_allclose(ours.loss_, ref.loss_, rtol=1e-9)
    assert ours._no_improvement_count == ref._no_improvement_count
    if params.get("early_stopping"):
        assert ours.best_loss_ is None and ref.best_loss_ is None
        np.testing.assert_allclose(ours.validation_scores_, ref.validation_scores_)
        assert ours.best_validation_score_ == ref.best_validation_score_
    else:
        np.testing.assert_allclose(ours.best_loss_, ref.best_loss_, rtol=1e-9)
        assert ours.validation_scores_ is None and ours.best_validation_score_ is None
    for a, b in zip(ours.coefs_ + ours.intercepts_, ref.coefs_ + ref.intercepts_):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, atol=1e-9)
    np.testing.assert_allclose(ours.predict_proba(Xte), ref.predict_proba(Xte), atol=1e-9)
    assert (ours.n_layers_, ours.n_outputs_, ours.out_activation_) == (ref.n_layers_, ref.n_outputs_,
                                                                      ref.out_activation_)


@needs_sklearn
@no_convergence_warning
@pytest.mark.parametrize("target", ["binary", "multilabel"])
def test_binary_and_multilabel_match_sklearn(digits64, target):
    """One logistic output per label, as in scikit-learn: same shapes, losses and probabilities."""
    from sklearn.neural_network import MLPClassifier as SkMLPClassifier
    Xtr, Xte, ytr, _ = digits64
    y = np.where(ytr % 2, "odd", "even") if target == "binary" else \
        np.stack([ytr % 2, ytr > 4, ytr == 3], axis=1).astype(int)
    params = dict(random_state=0, max_iter=10, solver="sgd", alpha=1e-3)
    ours = MLPClassifier(dtype=np.float64, **params).fit(Xtr, y)
    ref = SkMLPClassifier(**params).fit(Xtr, y)
    assert [w.shape for w in ours.coefs_] == [w.shape for w in ref.coefs_]
    assert ours.out_activation_ == ref.out_activation_ == "logistic"
    assert ours.n_outputs_ == ref.n_outputs_
    np.testing.assert_array_equal(ours.classes_, ref.classes_)
    np.testing.assert_allclose(ours.loss_curve_, ref.loss_curve_, rtol=1e-9)
    np.testing.assert_allclose(ours.predict_proba(Xte), ref.predict_proba(Xte), atol=1e-9)
    np.testing.assert_array_equal(ours.predict(Xte), ref.predict(Xte))
    assert ours.predict_proba(Xte).shape == ((len(Xte), 2) if target == "binary" else (len(Xte), 3))


@needs_sklearn
@no_convergence_warning
@pytest.mark.parametrize("n_outputs", [1, 2])
def test_regressor_matches_sklearn(n_outputs):
    from sklearn.neural_network import MLPRegressor as SkMLPRegressor
    X, y = _smooth_regression(300)
    if n_outputs == 2:
        y = np.stack([y, X[:, 0] * X[:, 1]], axis=1)
    for params in (dict(), dict(solver="sgd", learning_rate_init=0.01, early_stopping=True)):
        params = dict(dict(random_state=1, max_iter=12, alpha=0.01), **params)
        ours = MLPRegressor(dtype=np.float64, **params).fit(X, y)
        ref = SkMLPRegressor(**params).fit(X, y)
        np.testing.assert_allclose(ours.loss_curve_, ref.loss_curve_, rtol=1e-9)
        np.testing.assert_allclose(ours.predict(X), ref.predict(X), atol=1e-9)
        assert ours.predict(X).shape == ref.predict(X).shape == y.shape
        if params.get("early_stopping"):
            np.testing.assert_allclose(ours.validation_scores_, ref.validation_scores_, rtol=1e-9)


@needs_sklearn
@no_convergence_warning
def test_partial_fit_matches_sklearn(digits64):
    from sklearn.neural_network import MLPClassifier as SkMLPClassifier
    Xtr, _, ytr, _ = digits64
    ours = MLPClassifier(dtype=np.float64, random_state=0, hidden_layer_sizes=(40,))
    ref = SkMLPClassifier(random_state=0, hidden_layer_sizes=(40,))
    for i in range(4):
        part = slice(300 * i, 300 * i + 400)
        kwargs = {"classes": np.arange(10)} if i == 0 else {}
        ours.partial_fit(Xtr[part], ytr[part], **kwargs)
        ref.partial_fit(Xtr[part], ytr[part], **kwargs)
    assert ours.n_iter_ == ref.n_iter_ == 1 and ours.t_ == ref.t_
    np.testing.assert_allclose(ours.loss_curve_, ref.loss_curve_, rtol=1e-9)
    np.testing.assert_allclose(ours.coefs_[0], ref.coefs_[0], atol=1e-9)


# ------------------------------------------------------------------------------------- accuracy

@needs_sklearn
@no_convergence_warning
def test_digits_defaults_accuracy_close_to_sklearn(digits):
    from sklearn.neural_network import MLPClassifier as SkMLPClassifier
    Xtr, Xte, ytr, yte = digits
    ours = MLPClassifier(random_state=0).fit(Xtr, ytr).score(Xte, yte)
    ref = SkMLPClassifier(random_state=0).fit(Xtr, ytr).score(Xte, yte)
    assert ours >= 0.95
    assert abs(ours - ref) <= 0.03


@no_convergence_warning
def test_digits_defaults_accuracy(digits):
    Xtr, Xte, ytr, yte = digits
    clf = MLPClassifier().fit(Xtr, ytr)
    assert clf.score(Xte, yte) >= 0.95
    assert clf.coefs_[0].dtype == np.float32 and clf.coefs_[0].shape == (64, 100)


@no_convergence_warning
def test_regressor_fits_smooth_function():
    X, y = _smooth_regression(800)
    reg = MLPRegressor(hidden_layer_sizes=(64, 64), max_iter=300, random_state=0).fit(X[:600], y[:600])
    assert reg.score(X[600:], y[600:]) > 0.95
    assert reg.predict(X[:5]).shape == (5,)
    assert reg.out_activation_ == "identity" and reg.n_outputs_ == 1


# --------------------------------------------------------------------------- scikit-learn tooling

@needs_sklearn
@no_convergence_warning
def test_pipeline_and_grid_search(digits):
    from sklearn.base import clone
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    Xtr, Xte, ytr, yte = digits
    pipe = Pipeline([("scale", StandardScaler()), ("mlp", MLPClassifier(max_iter=60, random_state=0))])
    assert pipe.fit(Xtr, ytr).score(Xte, yte) > 0.9
    grid = GridSearchCV(pipe, {"mlp__alpha": [1e-4, 1.0], "mlp__hidden_layer_sizes": [(16,), (64,)]}, cv=3)
    grid.fit(Xtr[:600], ytr[:600])
    assert set(grid.best_params_) == {"mlp__alpha", "mlp__hidden_layer_sizes"}
    assert grid.score(Xte, yte) > 0.85
    assert len(grid.cv_results_["mean_test_score"]) == 4
    fresh = clone(grid.best_estimator_.named_steps["mlp"])
    assert not hasattr(fresh, "coefs_") and fresh.get_params()["max_iter"] == 60


@no_convergence_warning
def test_drop_in_swap_in_a_typical_script():
    """A typical scikit-learn script with ``from sklearn.neural_network import MLPClassifier`` swapped
    for ``from fastnn import MLPClassifier``."""
    pytest.importorskip("sklearn")
    script = textwrap.dedent("""
        import numpy as np
        from sklearn.datasets import load_iris
        from sklearn.metrics import accuracy_score, classification_report
        from sklearn.model_selection import train_test_split
        from sklearn.preprocessing import StandardScaler
        from fastnn import MLPClassifier

        X, y = load_iris(return_X_y=True)
        names = load_iris().target_names[y]
        X_train, X_test, y_train, y_test = train_test_split(X, names, random_state=1, stratify=names)
        scaler = StandardScaler().fit(X_train)
        clf = MLPClassifier(hidden_layer_sizes=(50,), max_iter=500, random_state=1)
        clf.fit(scaler.transform(X_train), y_train)
        pred = clf.predict(scaler.transform(X_test))
        proba = clf.predict_proba(scaler.transform(X_test))
        report = classification_report(y_test, pred)
        acc = accuracy_score(y_test, pred)
    """)
    namespace = {}
    exec(compile(script, "typical_script.py", "exec"), namespace)
    assert namespace["acc"] > 0.85
    assert namespace["proba"].shape == (len(namespace["X_test"]), 3)
    assert set(namespace["pred"]) <= {"setosa", "versicolor", "virginica"}


# ------------------------------------------------------------------------------------- behaviour

def test_warm_start_continues_training(digits):
    Xtr, _, ytr, _ = digits
    with pytest.warns(ConvergenceWarning, match="Maximum iterations"):
        clf = MLPClassifier(max_iter=5, warm_start=True, random_state=0).fit(Xtr, ytr)
    first = list(clf.loss_curve_)
    coefs = clf.coefs_[0].copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(Xtr, ytr)
    assert clf.n_iter_ == 5 and clf.t_ == 10 * len(Xtr)
    assert len(clf.loss_curve_) == 10 and clf.loss_curve_[:5] == first
    assert clf.loss_curve_[5] < first[-1]  # continued from the trained weights, not re-initialised
    assert not np.array_equal(clf.coefs_[0], coefs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.set_params(warm_start=False).fit(Xtr, ytr)
    assert len(clf.loss_curve_) == 5 and clf.t_ == 5 * len(Xtr)
    with pytest.raises(ValueError, match="same classes"):
        clf.set_params(warm_start=True).fit(Xtr[ytr < 5], ytr[ytr < 5])


def test_partial_fit_continues_training(digits):
    Xtr, Xte, ytr, yte = digits
    clf = MLPClassifier(random_state=0)
    with pytest.raises(ValueError, match="classes must be passed"):
        clf.partial_fit(Xtr, ytr)
    scores = []
    for epoch in range(8):
        clf.partial_fit(Xtr, ytr, classes=np.arange(10) if epoch == 0 else None)
        scores.append(clf.score(Xte, yte))
    assert clf.n_iter_ == 1 and len(clf.loss_curve_) == 8 and clf.t_ == 8 * len(Xtr)
    assert clf.loss_curve_[-1] < clf.loss_curve_[0] and scores[-1] > scores[0]
    assert scores[-1] > 0.85
    # a batch need not contain every class, but may not bring a new one
    clf.partial_fit(Xtr[ytr < 3], ytr[ytr < 3])
    with pytest.raises(ValueError, match="not in `self.classes_`"):
        clf.partial_fit(Xtr, ytr + 1)
    with pytest.raises(ValueError, match="is not the same as on last call"):
        clf.partial_fit(Xtr, ytr, classes=np.arange(11))
    with pytest.raises(ValueError, match="not in `classes`"):
        MLPClassifier().partial_fit(Xtr, ytr, classes=np.arange(5))
    with pytest.raises(ValueError, match="early_stopping"):
        MLPClassifier(early_stopping=True).partial_fit(Xtr, ytr, classes=np.arange(10))
    # partial_fit after fit continues the fitted model
    X, y = _smooth_regression(300)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg = MLPRegressor(max_iter=20, random_state=0).fit(X, y)
    before = reg.loss_
    for _ in range(5):
        reg.partial_fit(X, y)
    assert len(reg.loss_curve_) == 25 and reg.loss_ < before


def test_early_stopping_fills_validation_scores(digits):
    Xtr, _, ytr, _ = digits
    clf = MLPClassifier(early_stopping=True, n_iter_no_change=3, tol=0.05, max_iter=100,
                        random_state=0).fit(Xtr, ytr)
    assert clf.n_iter_ < 100  # stopped by the validation criterion, without a ConvergenceWarning
    assert len(clf.validation_scores_) == clf.n_iter_ == len(clf.loss_curve_)
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    assert 0.5 < clf.best_validation_score_ <= 1 and clf.best_loss_ is None
    reg = MLPRegressor(early_stopping=True, max_iter=30, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg.fit(*_smooth_regression(300))
    assert len(reg.validation_scores_) == reg.n_iter_ and reg.best_validation_score_ > 0


def test_early_stopping_restores_best_weights(digits64):
    Xtr, _, ytr, _ = digits64
    params = dict(early_stopping=True, tol=0.0, random_state=0, dtype=np.float64)
    clf = MLPClassifier(n_iter_no_change=1, max_iter=60, **params).fit(Xtr, ytr)
    best = int(np.argmax(clf.validation_scores_))
    assert best + 1 < clf.n_iter_ < 60  # stopped, some epochs after the best one
    assert clf.best_validation_score_ == clf.validation_scores_[best]
    # the same run cut at the best epoch ends with the weights the early-stopped model restored
    cut = MLPClassifier(n_iter_no_change=1000, max_iter=best + 1, **params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        cut.fit(Xtr, ytr)
    assert cut.validation_scores_ == clf.validation_scores_[:best + 1]
    for a, b in zip(clf.coefs_ + clf.intercepts_, cut.coefs_ + cut.intercepts_):
        np.testing.assert_array_equal(a, b)


def test_convergence_by_tol_and_convergence_warning(digits):
    Xtr, _, ytr, _ = digits
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        clf = MLPClassifier(tol=0.1, n_iter_no_change=2, max_iter=200, random_state=0).fit(Xtr, ytr)
    assert clf.n_iter_ < 200 and clf._no_improvement_count == 3
    assert clf.best_loss_ == min(clf.loss_curve_) and clf.loss_ == clf.loss_curve_[-1]
    with pytest.warns(ConvergenceWarning, match=r"Maximum iterations \(3\) reached"):
        MLPClassifier(max_iter=3).fit(Xtr, ytr)


@no_convergence_warning
def test_random_state_makes_results_reproducible(digits):
    Xtr, Xte, ytr, _ = digits
    runs = [MLPClassifier(hidden_layer_sizes=(32,), max_iter=5, random_state=seed).fit(Xtr, ytr)
            for seed in (7, 7, 8)]
    np.testing.assert_array_equal(runs[0].predict_proba(Xte), runs[1].predict_proba(Xte))
    assert runs[0].loss_curve_ == runs[1].loss_curve_
    assert not np.array_equal(runs[0].coefs_[0], runs[2].coefs_[0])
    rs = np.random.RandomState(3)
    a = MLPRegressor(max_iter=3, random_state=rs).fit(*_smooth_regression(100))
    b = MLPRegressor(max_iter=3, random_state=rs).fit(*_smooth_regression(100))
    assert not np.array_equal(a.coefs_[0], b.coefs_[0])  # a RandomState instance advances


def test_unknown_fit_arguments_are_a_clear_error(digits):
    Xtr, _, ytr, _ = digits
    with pytest.raises(TypeError, match="unexpected keyword"):
        MLPClassifier().fit(Xtr, ytr, epochs=3)
    with pytest.raises(ValueError, match="sample_weight"):
        MLPClassifier(max_iter=2).fit(Xtr, ytr, sample_weight=-np.ones(len(Xtr)))


@needs_sklearn
@no_convergence_warning
@pytest.mark.parametrize("params", [dict(), dict(solver="sgd", alpha=0.01, learning_rate_init=0.05),
                                    dict(early_stopping=True, validation_fraction=0.2, n_iter_no_change=2),
                                    dict(batch_size=64, alpha=1e-3)],
                         ids=["adam", "sgd-alpha", "early-stopping", "batches-alpha"])
def test_sample_weight_matches_sklearn(digits64, params):
    """Weighted fits reproduce scikit-learn's (float64): each batch's loss and gradient are the weighted
    means, the L2 penalty is divided by the batch's weight sum, early stopping splits and scores weighted."""
    from sklearn.neural_network import MLPClassifier as SkMLPClassifier, MLPRegressor as SkMLPRegressor
    Xtr, _, ytr, _ = digits64
    Xtr, ytr = Xtr[:500], ytr[:500]
    w = np.random.RandomState(4).uniform(0, 3, len(Xtr))
    w[::7] = 0
    params = dict(dict(random_state=2, max_iter=8, hidden_layer_sizes=(24,)), **params)
    for ours, ref, y in ((MLPClassifier(dtype=np.float64, **params), SkMLPClassifier(**params), ytr),
                         (MLPRegressor(dtype=np.float64, **params), SkMLPRegressor(**params),
                          np.stack([ytr / 9.0, Xtr[:, 10]], axis=1))):
        ours.fit(Xtr, y, sample_weight=w)
        ref.fit(Xtr, y, sample_weight=w)
        assert ours.n_iter_ == ref.n_iter_
        np.testing.assert_allclose(ours.loss_curve_, ref.loss_curve_, rtol=1e-9)
        for a, b in zip(ours.coefs_, ref.coefs_):
            np.testing.assert_allclose(a, b, atol=1e-9)
        if params.get("early_stopping"):
            np.testing.assert_allclose(ours.validation_scores_, ref.validation_scores_, rtol=1e-9)
    unweighted = MLPClassifier(dtype=np.float64, **params).fit(Xtr, ytr)
    weighted = MLPClassifier(dtype=np.float64, **params).fit(Xtr, ytr, sample_weight=w)
    assert not np.allclose(unweighted.coefs_[0], weighted.coefs_[0])


def test_estimators_train_on_the_fused_kernel(digits, monkeypatch):
    """Every configuration scikit-learn allows runs on the fused whole-epoch kernel: the per-layer engine is
    never entered."""
    from fastnn.engines.per_layer import LayerEpoch

    def refuse(*args, **kwargs):
        raise AssertionError("the per-layer engine ran")

    monkeypatch.setattr(LayerEpoch, "__call__", refuse)
    Xtr, _, ytr, _ = digits
    Xtr, ytr = Xtr[:300], ytr[:300]
    multilabel = np.stack([ytr % 2, ytr > 4], axis=1)
    configs = [dict(), dict(solver="sgd", nesterovs_momentum=True), dict(solver="sgd", momentum=0.0),
               dict(solver="sgd", learning_rate="invscaling"), dict(solver="sgd", learning_rate="adaptive"),
               dict(early_stopping=True), dict(alpha=0.0), dict(activation="logistic"),
               dict(activation="identity"), dict(activation="tanh", dtype=np.float64)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for params in configs:
            MLPClassifier(max_iter=3, random_state=0, **params).fit(Xtr, ytr, sample_weight=np.ones(len(ytr)))
            MLPClassifier(max_iter=3, random_state=0, **params).fit(Xtr, ytr % 2)
            MLPClassifier(max_iter=3, random_state=0, **params).fit(Xtr, multilabel)
            MLPRegressor(max_iter=3, random_state=0, **params).fit(Xtr, ytr / 9.0)
            MLPClassifier(random_state=0, **{k: v for k, v in params.items() if k != "early_stopping"}
                          ).partial_fit(Xtr, ytr, classes=np.arange(10))


@no_convergence_warning
@pytest.mark.parametrize("labels", [["cat", "dog", "emu"], ["no", "yes"], [-1, 1], [3.0, 10.0, 20.0, 99.0]])
def test_class_labels_round_trip(digits, labels):
    Xtr, Xte, ytr, yte = digits
    labels = np.array(labels)
    ytr_l, yte_l = labels[ytr % len(labels)], labels[yte % len(labels)]
    clf = MLPClassifier(max_iter=20, random_state=0).fit(Xtr, list(ytr_l))
    np.testing.assert_array_equal(clf.classes_, np.sort(labels))
    pred = clf.predict(Xte)
    assert pred.dtype == clf.classes_.dtype and set(pred) <= set(labels)
    assert clf.score(Xte, yte_l) > 0.5
    proba = clf.predict_proba(Xte)
    assert proba.shape == (len(Xte), len(labels))
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)
    np.testing.assert_array_equal(clf.classes_[np.argmax(proba, axis=1)], pred)
    np.testing.assert_allclose(clf.predict_log_proba(Xte), np.log(proba), rtol=1e-6)
    assert clf.n_outputs_ == (1 if len(labels) == 2 else len(labels))
    assert clf.out_activation_ == ("logistic" if len(labels) == 2 else "softmax")


@no_convergence_warning
def test_fitted_attributes_and_dtype(digits):
    Xtr, Xte, ytr, _ = digits
    clf = MLPClassifier(hidden_layer_sizes=(20, 10), max_iter=3, random_state=0, dtype=np.float64)
    for name in ("coefs_", "classes_", "loss_", "n_iter_"):
        assert not hasattr(clf, name)
    clf.fit(Xtr.astype(np.float32), ytr)
    assert [w.shape for w in clf.coefs_] == [(64, 20), (20, 10), (10, 10)]
    assert [b.shape for b in clf.intercepts_] == [(20,), (10,), (10,)]
    # scikit-learn's dtypes (issue 21 item 8): coefs_ in the fitted input's float dtype, whatever ``dtype``
    assert all(w.dtype == np.float32 for w in clf.coefs_ + clf.intercepts_)
    assert clf.n_layers_ == 4 and clf.n_outputs_ == 10 and clf.n_features_in_ == 64
    assert clf.n_iter_ == 3 and clf.t_ == 3 * len(Xtr) and len(clf.loss_curve_) == 3
    assert clf.predict_proba(Xte.astype(np.float64)).dtype == np.float64
    assert clf.predict_proba(Xte.astype(np.float32)).dtype == np.float32
    assert isinstance(clf.loss_, float) and np.isfinite(clf.loss_)


@no_convergence_warning
def test_coefs_are_live_views_and_assignable(digits):
    Xtr, Xte, ytr, _ = digits
    clf = MLPClassifier(hidden_layer_sizes=(16,), max_iter=3, random_state=0).fit(Xtr, ytr)
    clf.intercepts_[-1][:] = 0
    clf.coefs_[-1][:] = 0  # in place: the model changes
    np.testing.assert_allclose(clf.predict_proba(Xte[:4]), 0.1, rtol=1e-6)
    clf.coefs_ = [np.ones_like(w) for w in clf.coefs_]  # new arrays: picked up by predict and fit
    clf.intercepts_ = [np.zeros_like(b) for b in clf.intercepts_]
    # All-ones weights: the 10 logits are equal in exact arithmetic, but each is a float32 sum that the BLAS
    # may order differently per column: each layer's sums of K terms are within gamma_K = K eps of exact,
    # relative to the sum of the terms (all >= 0 here), so two logits differ by at most 2 (gamma_64 +
    # gamma_16) * z, z the exact logit; the softmax of logits that differ by d is within exp(d) - 1 of 1/10.
    x = Xte[:4].astype(np.float64)
    z = 16 * x.sum(axis=1, keepdims=True)               # 64 -> 16 (ReLU of sums >= 0) -> 10, all weights 1
    eps = float(np.finfo(clf.coefs_[0].dtype).eps)
    rtol = np.expm1(2 * (64 + 16) * eps * z) + 4 * eps
    assert np.all(np.abs(clf.predict_proba(Xte[:4]) - 0.1) <= 0.1 * rtol)
    clf.set_params(warm_start=True).fit(Xtr, ytr)
    assert clf.coefs_[0] is clf._model.fcs[0].weights
    with pytest.raises(ValueError, match="must have shape"):
        clf.coefs_ = [np.ones((3, 3))] + clf.coefs_[1:]
        clf.predict(Xte)


@no_convergence_warning
@pytest.mark.parametrize("how", ["pickle", "deepcopy", "copy"])
def test_pickle_and_copy(digits, how):
    Xtr, Xte, ytr, _ = digits
    clf = MLPClassifier(hidden_layer_sizes=(16,), max_iter=3, random_state=0).fit(Xtr, ytr)
    dup = {"pickle": lambda m: pickle.loads(pickle.dumps(m)), "deepcopy": copy.deepcopy,
           "copy": copy.copy}[how](clf)
    np.testing.assert_array_equal(dup.predict_proba(Xte), clf.predict_proba(Xte))
    # the copy continues with the optimizer state (Adam moments) and does not touch the original
    original = clf.coefs_[0].copy()
    dup.partial_fit(Xtr, ytr)
    np.testing.assert_array_equal(clf.coefs_[0], original)
    clf.partial_fit(Xtr, ytr)
    np.testing.assert_array_equal(dup.coefs_[0], clf.coefs_[0])


def test_errors(digits):
    Xtr, Xte, ytr, _ = digits
    with pytest.raises(NotFittedError):
        MLPClassifier().predict(Xte)
    with pytest.raises(ValueError, match="lbfgs.*not supported"):
        MLPClassifier(solver="lbfgs").fit(Xtr, ytr)
    with pytest.raises(ValueError, match="poisson.*not supported"):
        MLPRegressor(loss="poisson").fit(Xtr, ytr)
    for bad in (dict(activation="softplus"), dict(solver="rmsprop"), dict(learning_rate="cosine"),
                dict(hidden_layer_sizes=(10, 0)), dict(alpha=-1.0), dict(batch_size=0), dict(momentum=1.5),
                dict(max_iter=0), dict(learning_rate_init=0.0), dict(validation_fraction=1.0)):
        with pytest.raises(ValueError):
            MLPClassifier(**bad).fit(Xtr[:50], ytr[:50])
    with pytest.raises(TypeError, match="float32 or float64"):
        MLPClassifier(dtype=np.int32).fit(Xtr[:50], ytr[:50])
    with pytest.raises(ValueError, match="at least 2 classes.*only one class"):
        MLPClassifier().fit(Xtr[:20], np.zeros(20))
    with pytest.raises(ValueError, match="Unknown label type"):
        MLPClassifier().fit(Xtr[:20], np.linspace(0, 1, 20))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MLPClassifier(max_iter=2).fit(Xtr, ytr)
    with pytest.raises(ValueError, match="features"):
        clf.predict(Xte[:, :10])
    bad = Xte.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        clf.predict(bad)
    with pytest.raises(ValueError, match="non-finite"):
        rng = np.random.RandomState(0)
        X = rng.randn(100, 3) * 1e3
        MLPRegressor(solver="sgd", learning_rate_init=1.0, max_iter=50).fit(X, X.sum(axis=1) * 1e3)
    with pytest.raises(ValueError, match="non-finite"):  # an update that overflows float32
        MLPRegressor(solver="sgd", learning_rate_init=1e38, max_iter=5).fit(X, X.sum(axis=1))


@no_convergence_warning
def test_verbose_and_batch_size_clipping(digits, capsys):
    Xtr, _, ytr, _ = digits
    with pytest.warns(UserWarning, match="batch_size"):
        MLPClassifier(max_iter=2, verbose=True, batch_size=10_000, early_stopping=True).fit(Xtr, ytr)
    out = capsys.readouterr().out
    assert "Iteration 1, loss = " in out and "Validation score: " in out


@no_convergence_warning
def test_sparse_input_is_densified(digits):
    sparse = pytest.importorskip("scipy.sparse")
    Xtr, Xte, ytr, _ = digits
    a = MLPClassifier(max_iter=3, random_state=0).fit(sparse.csr_matrix(Xtr), ytr)
    b = MLPClassifier(max_iter=3, random_state=0).fit(Xtr, ytr)
    np.testing.assert_array_equal(a.predict_proba(sparse.csc_matrix(Xte)), b.predict_proba(Xte))


# --------------------------------------------------------------------------- without scikit-learn

def test_works_without_sklearn():
    """Blocks ``import sklearn`` in a fresh interpreter: the estimators still fit, predict, score,
    validate, get/set params, pickle and raise NotFittedError."""
    code = textwrap.dedent("""
        import sys, pickle, warnings
        sys.modules["sklearn"] = None
        import numpy as np
        import fastnn.estimators as E
        assert not E.HAVE_SKLEARN
        from fastnn.data import digits_split
        Xtr, Xte, ytr, yte = digits_split()
        names = np.array(list("abcdefghij"))
        clf = E.MLPClassifier(max_iter=25, random_state=0)
        try:
            clf.predict(Xte)
            raise AssertionError("predict before fit")
        except E.NotFittedError:
            pass
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            clf.fit(Xtr, names[ytr])
        assert any(issubclass(w.category, E.ConvergenceWarning) for w in caught)
        assert clf.score(Xte, names[yte]) > 0.85, clf.score(Xte, names[yte])
        assert set(clf.predict(Xte)) <= set(names)
        assert clf.get_params()["max_iter"] == 25 and clf.set_params(alpha=0.5).alpha == 0.5
        assert repr(clf) == "MLPClassifier(alpha=0.5, max_iter=25, random_state=0)", repr(clf)
        for bad, msg in ((Xte[:, :5], "5 features"), (np.full((2, 64), np.nan), "NaN")):
            try:
                clf.predict(bad)
                raise AssertionError(msg)
            except ValueError as exc:
                assert msg in str(exc), exc
        es = E.MLPClassifier(max_iter=20, early_stopping=True, random_state=0).fit(Xtr, ytr)
        assert len(es.validation_scores_) == es.n_iter_
        reg = E.MLPRegressor(max_iter=40, random_state=0).fit(Xtr, ytr.astype(float))
        assert reg.score(Xte, yte) > 0.5
        dup = pickle.loads(pickle.dumps(reg))
        assert np.array_equal(dup.predict(Xte), reg.predict(Xte))
        part = E.MLPClassifier(random_state=0)
        part.partial_fit(Xtr, ytr, classes=np.arange(10))
        part.partial_fit(Xtr, ytr)
        assert len(part.loss_curve_) == 2
        print("OK")
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("OK")


# -- set_params on a fitted estimator follows scikit-learn (issue 20 item 10) -------------------------
def _sk_twin(ours, X, y, **params):
    """A scikit-learn estimator fitted briefly, then given our fitted weights: the same model in sklearn."""
    sk_neural = pytest.importorskip("sklearn.neural_network")
    cls = sk_neural.MLPClassifier if isinstance(ours, MLPClassifier) else sk_neural.MLPRegressor
    sk = cls(**{k: v for k, v in ours.get_params().items() if k != "dtype"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk.set_params(max_iter=1).fit(X, y)
    sk.set_params(max_iter=ours.max_iter)
    sk.coefs_ = [w.astype(np.float64) for w in ours.coefs_]
    sk.intercepts_ = [b.astype(np.float64) for b in ours.intercepts_]
    return sk


@no_convergence_warning
@pytest.mark.parametrize("change", [{"activation": "tanh"}, {"activation": "logistic"},
                                    {"activation": "identity"}, {"dtype": np.float32}])
def test_set_params_on_a_fitted_classifier_changes_predictions_as_sklearn(digits64, change):
    Xtr, Xte, ytr, _ = digits64
    clf = MLPClassifier(hidden_layer_sizes=(12,), max_iter=3, random_state=0, dtype=np.float64).fit(Xtr, ytr)
    sk = _sk_twin(clf, Xtr, ytr)
    clf.set_params(**change)
    sk.set_params(**{k: v for k, v in change.items() if k != "dtype"})
    assert clf.get_params()[next(iter(change))] == next(iter(change.values()))
    dtype = np.dtype(clf.get_params()["dtype"])
    tol = 200 * np.finfo(dtype).eps
    np.testing.assert_allclose(clf.predict_proba(Xte), sk.predict_proba(Xte), rtol=tol, atol=tol)
    assert clf.predict_proba(Xte).dtype == np.float64           # the fitted input's dtype, as sklearn


@no_convergence_warning
@pytest.mark.parametrize("change", [{"activation": "tanh"}, {"activation": "logistic", "alpha": 0.01},
                                    {"learning_rate_init": 0.01}, {"solver": "sgd", "momentum": 0.5},
                                    {"batch_size": 50, "shuffle": False}])
def test_set_params_then_warm_start_trains_the_reported_architecture_like_sklearn(digits64, change):
    Xtr, Xte, ytr, _ = digits64
    clf = MLPClassifier(hidden_layer_sizes=(12,), max_iter=2, random_state=0, dtype=np.float64).fit(Xtr, ytr)
    sk = _sk_twin(clf, Xtr, ytr)
    for est in (clf, sk):
        est.set_params(warm_start=True, max_iter=2, **change)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.fit(Xtr, ytr)
    for a, b in zip(clf.coefs_ + clf.intercepts_, sk.coefs_ + sk.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-9)
    # a changed architecture: a warm start refuses it clearly, a cold fit builds it
    clf.set_params(hidden_layer_sizes=(7,))
    with pytest.raises(ValueError, match="hidden_layer_sizes"):
        clf.fit(Xtr, ytr)
    with pytest.raises(ValueError, match="hidden_layer_sizes"):
        clf.partial_fit(Xtr, ytr)
    clf.set_params(warm_start=False).fit(Xtr, ytr)
    assert [w.shape[1] for w in clf.coefs_] == [7, 10]
    clf.set_params(activation="softmax")
    with pytest.raises(ValueError, match="activation"):
        clf.predict(Xte)


@no_convergence_warning
def test_regressor_set_params_and_output_dtype_follow_sklearn():
    X, y = _smooth_regression(200)
    reg = MLPRegressor(hidden_layer_sizes=(8,), max_iter=3, random_state=0, dtype=np.float64).fit(X, y)
    sk = _sk_twin(reg, X, y)
    reg.set_params(activation="tanh")
    sk.set_params(activation="tanh")
    np.testing.assert_allclose(reg.predict(X), sk.predict(X), rtol=1e-12, atol=1e-12)
    reg32 = MLPRegressor(hidden_layer_sizes=(8,), max_iter=3, random_state=0).fit(X, y)     # float32 training
    assert reg32.predict(X).dtype == np.float64 and reg32.coefs_[0].dtype == np.float64
    assert reg32.predict(X.astype(np.float32)).dtype == np.float64    # float64 coefs promote, as sklearn's
    reg32.coefs_[0][:] = 0                                             # copies: still picked up by predict
    reg32.intercepts_[0][:] = 0
    np.testing.assert_allclose(reg32.predict(X[:3]), reg32.intercepts_[-1][0] + 0 * X[:3, 0], rtol=1e-6)


def test_convergence_warning_points_at_the_callers_line(digits):
    Xtr, _, ytr, _ = digits
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        MLPClassifier(hidden_layer_sizes=(8,), max_iter=1, random_state=0).fit(Xtr, ytr); line = sys._getframe().f_lineno  # noqa: E702,E501
    found = [w for w in caught if issubclass(w.category, ConvergenceWarning)]
    assert found and found[0].filename == __file__ and found[0].lineno == line


# -- fitted attributes: hostile assignments give a clear error at the next call, never garbage ---------
_HOSTILE_FITTED = [None, 7, -1, 2 ** 64, 1.5, "x", [1], [], np.zeros(3), np.zeros((2, 2)), [np.zeros((64, 3))],
                   {}, np.array(["a", "b"])]


@pytest.mark.parametrize("cls", [MLPClassifier, MLPRegressor])
def test_every_fitted_attribute_assigned_a_hostile_value_fails_clearly(digits, cls):
    Xtr, Xte, ytr, _ = digits
    Xtr, ytr = Xtr[:300], ytr[:300]

    def fitted():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return cls(hidden_layer_sizes=(6,), max_iter=2, random_state=0).fit(Xtr, ytr)

    names = sorted(n for n in vars(fitted()) if n.endswith("_") and not n.startswith("_"))
    assert "coefs_" in names and "n_features_in_" in names
    for name in names:
        for value in _HOSTILE_FITTED:
            est = fitted()
            setattr(est, name, value)
            for call in ("predict", "predict_proba", "score", "partial_fit"):
                if not hasattr(est, call):
                    continue
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        if call == "score":
                            est.score(Xte, ytr[:len(Xte)] if len(Xte) <= len(ytr) else None)
                        elif call == "partial_fit":
                            est.partial_fit(Xtr, ytr)
                        else:
                            out = getattr(est, call)(Xte)
                            assert len(out) == len(Xte), (name, value, call)
                            if call == "predict" and cls is MLPClassifier:
                                assert set(np.unique(out)) <= set(np.unique(ytr)) or name == "classes_", \
                                    (name, value, call)
                except (ValueError, TypeError, AttributeError) as exc:
                    assert "numba" not in type(exc).__module__, (name, value, call, exc)


def test_data_conversion_and_batch_size_warnings_point_at_the_callers_line(digits):
    Xtr, _, ytr, _ = digits
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        MLPClassifier(hidden_layer_sizes=(4,), max_iter=1, batch_size=10 ** 6, random_state=0).fit(Xtr[:100], ytr[:100, None]); line = sys._getframe().f_lineno  # noqa: E702,E501
    mine = [w for w in caught if "column-vector" in str(w.message) or "batch_size" in str(w.message)]
    assert len(mine) == 2 and all(w.filename == __file__ and w.lineno == line for w in mine)


# -- fastnn's own messages, not scikit-learn's or numpy's (L11, L12) ----------------------------------------
@pytest.mark.parametrize("cls", [MLPClassifier, MLPRegressor])
@pytest.mark.parametrize("bad", [-1, 2 ** 32, 2 ** 64, -(2 ** 70), 1.5, "x", True, np.random.default_rng(0)])
def test_bad_random_state_is_refused_by_fastnn(cls, bad):
    X = np.random.default_rng(0).random((20, 3))
    y = (X[:, 0] > .5).astype(int)
    with pytest.raises(ValueError, match=r"random_state must be None, an int in \[0, 2\*\*32 - 1\]"):
        cls(random_state=bad, max_iter=2).fit(X, y)


@pytest.mark.parametrize("cls", [MLPClassifier, MLPRegressor])
def test_random_state_edges_and_instances_are_accepted(cls):
    X = np.random.default_rng(0).random((20, 3))
    y = (X[:, 0] > .5).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for rs in (0, 2 ** 32 - 1, np.int64(5), np.random.RandomState(1), None):
            cls(random_state=rs, max_iter=2).fit(X, y)


@pytest.mark.parametrize("cls", [MLPClassifier, MLPRegressor])
@pytest.mark.parametrize("fraction", [0, 0.0, -0.0])
def test_early_stopping_needs_a_validation_fraction(cls, fraction):
    X = np.random.default_rng(0).random((20, 3))
    y = (X[:, 0] > .5).astype(int)
    with pytest.raises(ValueError, match="validation_fraction must be > 0 with early_stopping=True"):
        cls(early_stopping=True, validation_fraction=fraction, max_iter=2).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cls(early_stopping=False, validation_fraction=fraction, max_iter=2).fit(X, y)   # unused: fine


@no_convergence_warning
@pytest.mark.parametrize("target", ["binary", "multiclass", "multilabel", "regression", "regression2"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_outputs_are_computed_in_dtype_then_converted(target, dtype):
    """Every output is computed in the estimator's ``dtype`` and converted once at the end, so the float32
    and float64 copies of the same X give the same values, up to that one conversion (CI's fuzz run found [1 - p, p] computed after
    the conversion: the binary column 1 - p differed in float32's last bit)."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(40, 5)).astype(np.float32)
    y = {"binary": rng.integers(0, 2, 40) * 2 - 1, "multiclass": rng.integers(0, 3, 40),
         "multilabel": rng.integers(0, 2, (40, 3)), "regression": rng.normal(size=40),
         "regression2": rng.normal(size=(40, 2))}[target]
    make = MLPRegressor if target.startswith("regression") else MLPClassifier
    methods = ("predict",) if make is MLPRegressor else ("predict", "predict_proba", "predict_log_proba")
    outs = {}
    for x_dtype in (np.float32, np.float64):
        model = make(hidden_layer_sizes=(7,), max_iter=3, random_state=0, dtype=dtype).fit(X.astype(x_dtype), y)
        outs[x_dtype] = [getattr(model, m)(X.astype(x_dtype)) for m in methods]
    for m, a, b in zip(methods, outs[np.float32], outs[np.float64]):
        if m != "predict" or make is MLPRegressor:      # float32 X: float32 out (scikit-learn), converted once
            assert b.dtype == np.float64 and a.dtype == np.float32, m
        np.testing.assert_array_equal(a, b.astype(a.dtype), err_msg=m)


@no_convergence_warning
def test_float32_copies_of_float64_weights_do_not_round_them():
    """dtype=float64 fitted on float32 X hands out float32 copies as coefs_ (scikit-learn's dtypes); an
    unchanged copy must not be written back (it would round the weights), a changed one is, and a pickle
    round trip keeps the float64 weights."""
    import pickle
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(30, 4)), rng.integers(0, 3, 30)
    b = MLPClassifier(hidden_layer_sizes=(6,), max_iter=2, random_state=0, dtype=np.float64)
    b.fit(X.astype(np.float32).astype(np.float64), y)
    a32 = MLPClassifier(hidden_layer_sizes=(6,), max_iter=2, random_state=0, dtype=np.float64)
    a32.fit(X.astype(np.float32), y)
    assert a32.coefs_[0].dtype == np.float32
    for model in (a32, pickle.loads(pickle.dumps(a32))):
        np.testing.assert_array_equal(model.predict_proba(X), b.predict_proba(X))
        np.testing.assert_array_equal(model._model.fcs[0].weights, b._model.fcs[0].weights)
    a32.coefs_[1][0, 0] += 1.0                          # a change in place is taken in (rounded, as given)
    assert a32._model.fcs[1].weights[0, 0] != a32.coefs_[1][0, 0]
    a32.predict(X)
    assert a32._model.fcs[1].weights[0, 0] == a32.coefs_[1][0, 0]
    np.testing.assert_array_equal(a32._model.fcs[0].weights, b._model.fcs[0].weights)   # layer 0 untouched


@no_convergence_warning
@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_warm_started_early_stopping_fits_follow_sklearn(kind):
    """scikit-learn restores the best weights with ``coefs_ = _best_coefs`` (no copy): a warm-started fit that
    never beats the previous best_validation_score_ ends with its own last weights, not the previous best.
    Three fits in a row equal scikit-learn's in float64, whether or not a fit improves (rates chosen so that
    both happen)."""
    import sklearn.neural_network as skn
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 6))
    if kind == "classifier":
        y = (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 1)
    else:
        y = X[:, 0] - 2 * X[:, 1] + 0.1 * rng.standard_normal(300)
    for lr in (0.01, 0.3):
        kw = dict(hidden_layer_sizes=(8,), random_state=1, learning_rate_init=lr, batch_size=32, warm_start=True,
                  max_iter=5, early_stopping=True)
        ours = (MLPClassifier if kind == "classifier" else MLPRegressor)(dtype=np.float64, **kw)
        theirs = (skn.MLPClassifier if kind == "classifier" else skn.MLPRegressor)(**kw)
        for _ in range(3):
            ours.fit(X, y)
            theirs.fit(X, y)
            np.testing.assert_allclose(ours.validation_scores_, theirs.validation_scores_, rtol=1e-12, atol=1e-12)
            for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
                np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


@no_convergence_warning
def test_predict_warns_when_outputs_overflow():
    """A finite X whose outputs overflow float32 would be predicted as classes_[0] without a word: one
    RuntimeWarning names the row (predict_proba shows the NaN itself)."""
    X, y = digits_split()[0][:200], digits_split()[2][:200]
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=2, random_state=0).fit(X, y)
    big = X.copy()
    big[3] = 3e38
    clf.coefs_[0][:] = 1.0                   # every hidden unit sums 64 values of 3e38: inf in float32
    with pytest.warns(RuntimeWarning, match=r"for row 3 of X"):
        clf.predict(big)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        clf.predict(X)                       # finite outputs: no warning
