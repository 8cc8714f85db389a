"""A failed call loses nothing the user owns (issue: a failed warm_start / partial_fit kept the network as the
error left it). The rule (MLPClassifier / MLPRegressor.fit's docstring): a call that fails — an error raised
mid-fit, divergence, bad data found mid-fit — leaves the estimator exactly as before the call, on every path
(fit again, warm_start fit, partial_fit, with early_stopping or not); a Ctrl-C keeps the progress made (as
scikit-learn: a warning, the completed epochs). Checked by the state itself and by what the next call does:
the estimator that failed then trains bit for bit as a copy that never made the failed call."""
import os
import pickle
import signal
import warnings

import numpy as np
import pytest

from fastnn import estimators
from fastnn.estimators import MLPClassifier, MLPRegressor


def _data(kind, n=60, seed=0):
    rs = np.random.RandomState(seed)
    X = rs.randn(n, 4)
    y = (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 0.5) if kind == "clf" else X @ rs.randn(4) + 0.1
    return X, y


def _est(kind, solver, early_stopping, warm_start, random_state=0):
    cls = MLPClassifier if kind == "clf" else MLPRegressor
    return cls(hidden_layer_sizes=(7,), solver=solver, max_iter=6, batch_size=16, tol=0, n_iter_no_change=100,
               early_stopping=early_stopping, warm_start=warm_start, random_state=random_state,
               learning_rate_init=0.01)


def _same(a, b):
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.dtype == b.dtype and \
            np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, float) and isinstance(b, float) and np.isnan(a) and np.isnan(b):
        return True
    return type(a) is type(b) and a == b


def _state(est):
    """Everything the user owns: the public and private attributes (copies), the network's parameters,
    the optimizer's step count, rate and state."""
    d = {}
    for k, v in vars(est).items():
        if k in ("_model", "_handed_copies", "_random_state"):
            continue
        if isinstance(v, np.random.RandomState):
            d[k] = v.get_state()
        elif isinstance(v, list):
            d[k] = [np.array(x) if isinstance(x, np.ndarray) else x for x in v]
        elif isinstance(v, np.ndarray):
            d[k] = v.copy()
        else:
            d[k] = v
    model = getattr(est, "_model", None)
    if model is not None:
        opt = model.net.optimizer
        d["~params"] = [p.copy() for p in model.net.params]
        d["~opt"] = (type(opt).__name__, opt.steps, opt.lr,
                     None if opt.state is None else [[s.copy() for s in slots] for slots in opt.state])
    return d


def _differences(a, b):
    return sorted(k for k in set(a) | set(b) if k not in a or k not in b or not _same(a[k], b[k]))


def _raise_at(monkeypatch, call):
    real, count = estimators._SklearnRules.on_epoch_end, [0]

    def on_epoch_end(self, epoch, history):
        count[0] += 1
        result = real(self, epoch, history)      # (the epoch's attributes are updated, then the error)
        if count[0] == call:
            raise RuntimeError("boom mid-fit")
        return result
    monkeypatch.setattr(estimators._SklearnRules, "on_epoch_end", on_epoch_end)


def _call(est, path, X, y):
    if path == "partial_fit":
        if isinstance(est, MLPClassifier):
            return est.partial_fit(X, y, classes=np.unique(_data("clf")[1]))
        return est.partial_fit(X, y)
    return est.fit(X, y)


FAILURES = ("raise", "diverge", "nan_row")


def _failing(failure, kind, monkeypatch, path):
    """(X, y) of the failed call, after arming the failure."""
    X, y = _data(kind, seed=1)
    if failure == "raise":
        _raise_at(monkeypatch, 1 if path == "partial_fit" else 2)
    elif failure == "diverge":
        X = X * 1e30
        if kind == "reg":
            y = y * 1e30
    else:                                # a NaN in the last row: found by the kernel mid-epoch
        X = X.copy()
        X[-1, 0] = np.nan
    return X, y


@pytest.mark.parametrize("kind", ["clf", "reg"])
@pytest.mark.parametrize("solver", ["adam", "sgd"])
@pytest.mark.parametrize("early_stopping", [False, True])
@pytest.mark.parametrize("path", ["refit", "warm_start", "partial_fit"])
@pytest.mark.parametrize("failure", FAILURES)
def test_a_failed_call_leaves_the_fitted_estimator_as_it_was(monkeypatch, kind, solver, early_stopping, path,
                                                             failure):
    if path == "partial_fit" and early_stopping:
        pytest.skip("partial_fit refuses early_stopping=True (as scikit-learn)")
    X, y = _data(kind)
    est = _est(kind, solver, early_stopping, warm_start=(path == "warm_start"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _call(est, path if path == "partial_fit" else "fit", X, y)
        _call(est, path if path == "partial_fit" else "fit", X, y)   # (a second call: state to lose)
    twin = pickle.loads(pickle.dumps(est))
    before = _state(est)
    Xbad, ybad = _failing(failure, kind, monkeypatch, path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises((ValueError, RuntimeError)):
            _call(est, path, Xbad, ybad)
    monkeypatch.undo()
    assert _differences(before, _state(est)) == []
    with warnings.catch_warnings():       # and the next call trains as if the failed one was never made
        warnings.simplefilter("ignore")
        _call(est, path, X, y)
        _call(twin, path, X, y)
    assert _same([c for c in est.coefs_], [c for c in twin.coefs_])
    assert _same(est.loss_curve_, twin.loss_curve_) and est.n_iter_ == twin.n_iter_ and est.t_ == twin.t_


@pytest.mark.parametrize("path", ["warm_start", "partial_fit"])
def test_a_failed_call_puts_back_a_users_random_state_generator(monkeypatch, path):
    X, y = _data("clf")
    rs = np.random.RandomState(5)
    est = _est("clf", "sgd", False, warm_start=(path == "warm_start"), random_state=rs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _call(est, path if path == "partial_fit" else "fit", X, y)
    generator = rs.get_state()
    _raise_at(monkeypatch, 1)
    with pytest.raises(RuntimeError), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _call(est, path, X, y)
    assert _same(list(rs.get_state()), list(generator))


@pytest.mark.parametrize("kind", ["clf", "reg"])
@pytest.mark.parametrize("early_stopping", [False, True])
@pytest.mark.parametrize("path", ["fit", "warm_start", "partial_fit"])
def test_ctrl_c_keeps_the_progress_made(monkeypatch, kind, early_stopping, path):
    """Ctrl-C is no failure: a warning, and the weights and attributes of the epochs completed (the epoch
    cut short counts no iteration)."""
    if path == "partial_fit" and early_stopping:
        pytest.skip("partial_fit refuses early_stopping=True (as scikit-learn)")
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        X, y = _data(kind)
        est = _est(kind, "adam", early_stopping, warm_start=(path == "warm_start"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _call(est, "partial_fit" if path == "partial_fit" else "fit", X, y)
        before = _state(est)
        real, count = estimators._SklearnRules.on_epoch_end, [0]

        def on_epoch_end(self, epoch, history):
            count[0] += 1
            if count[0] == 1:
                os.kill(os.getpid(), signal.SIGINT)
            return real(self, epoch, history)
        monkeypatch.setattr(estimators._SklearnRules, "on_epoch_end", on_epoch_end)
        with pytest.warns(UserWarning, match="Training interrupted by user"):
            _call(est, "partial_fit" if path == "partial_fit" else path if path == "fit" else "fit", X, y)
        after = _state(est)
        if path == "fit":           # from scratch: one epoch completed
            assert est.n_iter_ == 1 and len(est.loss_curve_) == 1
        else:
            assert len(est.loss_curve_) == len(before["loss_curve_"]) + 1
        assert est._model.net.optimizer.steps > 0
        if not early_stopping:      # the weights are the trained ones, not the call's start
            assert not _same(after["~params"], before["~params"])
        assert all(np.isfinite(c).all() for c in est.coefs_)
        est.predict(X)
    finally:
        signal.signal(signal.SIGINT, previous)
