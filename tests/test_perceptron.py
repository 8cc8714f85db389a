"""fastnn.Perceptron beyond the lecture's happy path: a refused fit changes nothing, and weights or
activations that overflow are a TrainingDivergedError, never a silently "converged" perceptron of NaNs."""
import warnings

import numpy as np
import pytest

import fastnn as fnn

X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)
AND = np.array([-1, -1, -1, 1])


def state(p):
    return p.weights.copy(), p.bias, None if p.classes_ is None else p.classes_.copy(), p.converged


def assert_same_state(a, b):
    np.testing.assert_array_equal(a[0], b[0])
    assert a[1] == b[1] and a[3] == b[3]
    if a[2] is None or b[2] is None:
        assert a[2] is None and b[2] is None
    else:
        np.testing.assert_array_equal(a[2], b[2])


@pytest.mark.parametrize("call", [
    dict(epochs=0), dict(epochs=-1), dict(epochs=1.5), dict(epochs="10"), dict(epochs=None),
    dict(y=np.array([5, 5, 5, 7, 7])), dict(y=np.array([5, 6, 7, 7])), dict(y=np.array([5, 5, 5, 5])),
    dict(y=np.array([[5], [5], [5], [7]])), dict(X=np.ones((4, 3))), dict(X=np.array([[0, np.nan]] * 4)),
    dict(X=np.array([[0, np.inf]] * 4)),
], ids=lambda c: ",".join(f"{k}={v!r:.20}" for k, v in c.items()))
@pytest.mark.parametrize("fitted", [False, True])
def test_a_refused_fit_changes_nothing(call, fitted):
    p = fnn.Perceptron(2, seed=0)
    if fitted:
        p.fit(X, AND)
    before = state(p)
    args = dict(X=X, y=np.array([5, 5, 5, 7]), epochs=10)
    args.update(call)
    with pytest.raises((ValueError, TypeError)):
        p.fit(args["X"], args["y"], epochs=args["epochs"])
    assert_same_state(before, state(p))


@pytest.mark.parametrize("case", ["weights", "activation-inf", "activation-nan"])
def test_overflow_is_divergence_and_keeps_the_last_finite_weights(case):
    p = fnn.Perceptron(2, seed=0)
    if case == "weights":            # finite inputs whose update overflows float64
        data, lr = X * 1e308, 1e10
    else:                            # finite weights and inputs whose activation is ±inf or inf - inf
        p.weights = [1e308, 1e308] if case == "activation-inf" else [1e308, -1e308]
        data, lr = X * 10.0, 1.0
    p.lr = lr
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # no NumPy overflow warning leaks out either
        with pytest.raises(fnn.TrainingDivergedError) as info:
            p.fit(data, AND, epochs=5)
    assert info.value.epoch == 1 and info.value.batch >= 1
    assert np.isfinite(p.weights).all() and np.isfinite(p.bias)
    assert p.converged is False
    np.testing.assert_array_equal(p.classes_, [-1, 1])


def test_the_rule_is_rosenblatts_step_for_step():
    """The fit applies w += lr·t·x, b += lr·t on each mistake, in order (a plain-Python replay)."""
    p = fnn.Perceptron(2, lr=0.5, seed=3)
    w, b = p.weights.copy(), p.bias
    y = np.array([-1, 1, 1, 1])                # OR
    p.fit(X, y, epochs=50)
    for _ in range(50):
        mistakes = 0
        for xi, ti in zip(X, y):
            if ti * (xi @ w + b) <= 0:
                w, b = w + 0.5 * ti * xi, b + 0.5 * ti
                mistakes += 1
        if mistakes == 0:
            break
    np.testing.assert_array_equal(p.weights, w)
    assert p.bias == b and p.converged and (p.predict(X) == y).all()
