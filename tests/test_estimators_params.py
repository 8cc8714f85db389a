"""The estimators' parameters: accepted and refused as scikit-learn's _parameter_constraints decide, refused
before the first epoch, and rates that underflow the network's dtype carried on as scikit-learn does."""
import contextlib
import math
import warnings

import numpy as np
import pytest

from fastnn.estimators import ConvergenceWarning, MLPClassifier, MLPRegressor

try:
    from sklearn.neural_network import MLPClassifier as SkClassifier, MLPRegressor as SkRegressor
    from sklearn.utils._param_validation import InvalidParameterError, validate_parameter_constraints
    HAVE_SKLEARN = True
except ImportError:  # pragma: no cover
    HAVE_SKLEARN = False

needs_sklearn = pytest.mark.skipif(not HAVE_SKLEARN, reason="scikit-learn is not installed")

X = np.random.RandomState(0).randn(50, 4)
Y = np.arange(50) % 2


@contextlib.contextmanager
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


# -- 1. invscaling with a large power_t --------------------------------------------------------------------
@needs_sklearn
@pytest.mark.parametrize("power_t", [50.0, 200.0, 1000.0])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_large_power_t_trains_on_like_scikit_learn(power_t, dtype):
    """The rate underflows float32 after one epoch (power_t=50), and its power overflows float64 (200, 1000:
    scikit-learn raises OverflowError partway): fastnn goes on with a negligible rate, to scikit-learn's
    n_iter_ where scikit-learn finishes, and weights that barely move after the first epoch."""
    kw = dict(solver="sgd", learning_rate="invscaling", power_t=power_t, max_iter=20, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = MLPClassifier(dtype=dtype, **kw).fit(X, Y)
        assert all(np.isfinite(w).all() for w in est.coefs_)
        if power_t == 50.0:
            sk = SkClassifier(**kw).fit(X, Y)
            assert est.n_iter_ == sk.n_iter_
            if dtype == np.float64:     # every rate is scikit-learn's (none is below 2.2e-308): the
                for a, b in zip(est.coefs_, sk.coefs_):     # step-for-step test's tolerances
                    np.testing.assert_allclose(a, b, atol=1e-9)
                np.testing.assert_allclose(est.loss_curve_, sk.loss_curve_, rtol=1e-9)
            else:
                np.testing.assert_allclose(est.loss_curve_, sk.loss_curve_, rtol=1e3 * np.finfo(dtype).eps)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_invscaling_rate_floor_keeps_the_momentum_velocity(momentum):
    """A rate raised to float32's smallest normal number: the weights after it move only by the decaying
    velocity (momentum) or not at all (no momentum), never by NaN or inf."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = MLPRegressor(solver="sgd", learning_rate="invscaling", power_t=500.0, momentum=momentum,
                           max_iter=6, tol=0.0, n_iter_no_change=100, random_state=0, hidden_layer_sizes=(8,))
        est.fit(X, X[:, 0] * 1e3)
    assert est.n_iter_ == 6 and all(np.isfinite(w).all() for w in est.coefs_)
    assert est._model.net.optimizer.lr >= np.finfo(np.float32).tiny


@pytest.mark.parametrize("lr_init", [1e-45, 1e-320])
def test_tiny_learning_rate_init_and_epsilon_train(lr_init):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for solver in ("sgd", "adam"):
            est = MLPClassifier(solver=solver, learning_rate_init=lr_init, max_iter=3, random_state=0).fit(X, Y)
            assert est.n_iter_ == 3
        est = MLPClassifier(epsilon=1e-320, max_iter=3, random_state=0, hidden_layer_sizes=(50,)).fit(X, Y)
        assert all(np.isfinite(w).all() for w in est.coefs_)


@pytest.mark.parametrize("cls", [MLPClassifier, MLPRegressor])
@pytest.mark.parametrize("bad", [dict(power_t=math.inf), dict(tol=math.inf), dict(alpha=math.inf),
                                 dict(learning_rate_init=1e39), dict(verbose="yes"), dict(tol=np.float32("nan"))])
def test_refused_before_the_first_epoch_naming_the_parameter(cls, bad):
    """Refused at the start of fit, the estimator untouched: a fitted one keeps its fit."""
    (name, value), = bad.items()
    est = cls(solver="sgd", learning_rate="invscaling", max_iter=2, random_state=0)
    with pytest.raises(ValueError, match=name):
        est.set_params(**bad).fit(X, Y)
    assert not hasattr(est, "coefs_") and not hasattr(est, "n_iter_")
    with _quiet():
        est.set_params(**{name: cls().get_params()[name]}).fit(X, Y)
    before = [w.copy() for w in est.coefs_]
    with pytest.raises(ValueError, match=name):
        est.set_params(**bad).fit(X, Y)
    assert est.n_iter_ == 2
    for a, b in zip(before, est.coefs_):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("cls", [MLPClassifier, MLPRegressor])
def test_a_fresh_fit_that_diverges_leaves_the_previous_fit(cls):
    with _quiet():
        est = cls(max_iter=2, random_state=0).fit(X, Y)
    before = ([w.copy() for w in est.coefs_], est.n_iter_, list(est.loss_curve_))
    with pytest.raises(ValueError, match="non-finite"):
        est.set_params(alpha=1e308).fit(X, Y)
    assert est.n_iter_ == before[1] and est.loss_curve_ == before[2]
    for a, b in zip(before[0], est.coefs_):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(est.predict(X), est.set_params(alpha=1e-4).predict(X))
    fresh = cls(max_iter=2, random_state=0, alpha=1e308)
    with pytest.raises(ValueError, match="non-finite"):
        fresh.fit(X, Y)
    assert not hasattr(fresh, "coefs_")


# -- 2. the parameter checks are scikit-learn's ------------------------------------------------------------
_VALUES = [True, False, np.True_, 0, 1, 2, -1, np.int64(3), np.uint8(1), 0.0, 0.5, 1.0, 1.5, np.float32(0.5),
           np.float64(1e-3), 1e-320, math.nan, np.float32("nan"), math.inf, -math.inf, np.float32("inf"),
           "auto", "yes", None, (5,), 2 ** 32, 2 ** 64]
_PARAMS = ["alpha", "batch_size", "learning_rate_init", "power_t", "max_iter", "tol", "verbose", "momentum",
           "validation_fraction", "beta_1", "beta_2", "epsilon", "n_iter_no_change", "max_fun", "random_state",
           "shuffle", "warm_start", "nesterovs_momentum", "early_stopping", "activation", "solver",
           "learning_rate", "hidden_layer_sizes"]
_OPTIONS = {"activation": ["relu", "tanh", "logistic", "identity", "ReLU", "mish"],
            "solver": ["adam", "sgd", "SGD", "lbfgs"], "learning_rate": ["constant", "invscaling", "adaptive",
                                                                          "Constant"],
            "hidden_layer_sizes": [(5,), [], (), np.array([5, 3]), (5, np.int32(2)), (0,), (-1,), "abc", 0, 3,
                                   np.int64(3), (5.0,), (True,), ((2,),)]}


def _fastnn_accepts(cls, params):
    try:
        cls(**params)._check_params(incremental=False)
        return True
    except (ValueError, TypeError):
        return False


def _sklearn_accepts(sk_cls, params):
    try:
        validate_parameter_constraints(sk_cls._parameter_constraints, sk_cls(**params).get_params(deep=False),
                                       caller_name=sk_cls.__name__)
    except InvalidParameterError:
        return False
    sizes = params.get("hidden_layer_sizes")
    if sizes is not None and not isinstance(sizes, (int, np.integer)):    # what scikit-learn's fit does next
        try:
            units = [4] + list(sizes) + [1]
            if np.any(np.array(units) <= 0):
                return False
            for a, b in zip(units[:-1], units[1:]):
                np.zeros((a, b))
        except (TypeError, ValueError):
            return False
    return True


def _known_difference(name, value):
    """fastnn's documented differences (the estimators module docstring)."""
    if isinstance(value, (bool, np.bool_)) and name not in ("shuffle", "warm_start", "nesterovs_momentum",
                                                           "early_stopping", "verbose"):
        return True                         # a bool is no number (scikit-learn reads True as 1)
    if name == "solver" and value == "lbfgs":
        return True
    return False


@needs_sklearn
@pytest.mark.parametrize("cls,sk_cls", [(MLPClassifier, "SkClassifier"), (MLPRegressor, "SkRegressor")])
@pytest.mark.parametrize("name", _PARAMS)
def test_parameter_checks_are_scikit_learns(cls, sk_cls, name):
    sk_cls = {"SkClassifier": SkClassifier, "SkRegressor": SkRegressor}[sk_cls]
    values = _OPTIONS.get(name, _VALUES)
    if name == "momentum":
        values = values + [np.float64(1.0)]
    mismatches = []
    for value in values:
        params = {name: value}
        if name == "momentum":
            params["solver"] = "adam"           # (momentum=1 with sgd: a documented difference)
        if name == "early_stopping" and value:
            params["validation_fraction"] = 0.1
        ours, theirs = _fastnn_accepts(cls, params), _sklearn_accepts(sk_cls, params)
        if ours != theirs and not _known_difference(name, value):
            mismatches.append((value, "fastnn accepts" if ours else "fastnn refuses"))
    assert not mismatches, f"{name}: {mismatches}"


@pytest.mark.parametrize("params,match", [
    (dict(random_state=True), "random_state"), (dict(max_fun=True), "max_fun"),
    (dict(solver="sgd", momentum=1.0), "momentum=1"), (dict(solver="lbfgs"), "lbfgs"),
    (dict(verbose=-1), "verbose"), (dict(verbose=2.0), "verbose"), (dict(n_iter_no_change=-math.inf), "n_iter"),
    (dict(tol=-0.0 - 1e-300), "tol"), (dict(epsilon=math.inf), "epsilon")])
def test_documented_differences_and_edges_are_refused_clearly(params, match):
    with pytest.raises(ValueError, match=match):
        MLPClassifier(max_iter=2, **params).fit(X, Y)


@pytest.mark.parametrize("params", [dict(verbose=0), dict(verbose=np.int64(0)), dict(verbose=np.False_),
                                    dict(momentum=1.0), dict(n_iter_no_change=np.inf),
                                    dict(n_iter_no_change=np.float32("inf")), dict(tol=0), dict(alpha=np.int8(0)),
                                    dict(hidden_layer_sizes=np.array([3, 2])), dict(hidden_layer_sizes=())])
def test_values_scikit_learn_takes_are_taken(params):
    with _quiet():
        est = MLPClassifier(max_iter=2, random_state=0, **params).fit(X, Y)
    assert est.n_iter_ == 2


# -- 7. the README's claim: every scikit-learn estimator check passes in float64 ------------------------------
@needs_sklearn
@pytest.mark.parametrize("cls", [MLPClassifier, MLPRegressor])
@pytest.mark.parametrize("check_name", ["check_sample_weight_equivalence_on_dense_data",
                                        "check_sample_weight_equivalence_on_sparse_data",
                                        "check_methods_sample_order_invariance"])
def test_the_float32_exceptions_pass_in_float64(cls, check_name):
    from sklearn.utils import estimator_checks
    with _quiet():
        getattr(estimator_checks, check_name)(cls.__name__, cls(max_iter=50, dtype=np.float64))


@pytest.mark.parametrize("cls", [MLPClassifier, MLPRegressor])
def test_a_failed_refit_on_other_features_keeps_the_fitted_feature_count(cls):
    with _quiet():
        est = cls(max_iter=2, random_state=0).fit(X, Y)
    with pytest.raises(ValueError, match="non-finite"):
        est.set_params(alpha=1e308).fit(X[:, :3], Y)
    assert est.n_features_in_ == 4 and est.coefs_[0].shape[0] == 4
    est.set_params(alpha=1e-4).predict(X)


@pytest.mark.parametrize("sizes", [((2,), 3), np.array(5), (np.float64(3),), "5", iter([3])])
def test_odd_hidden_layer_sizes_are_refused_by_name(sizes):
    with pytest.raises(ValueError, match="hidden_layer_sizes"):
        MLPClassifier(hidden_layer_sizes=sizes, max_iter=2).fit(X, Y)
