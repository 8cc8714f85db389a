"""Rosenblatt's perceptron: y = sign(w·x + b), trained by the perceptron rule."""
import math
import warnings

import numpy as np

from . import _checks, _memory
from .errors import TrainingDivergedError


def _weights(self, value, name):
    arr = np.zeros(self.n_features)
    _checks.values_into(arr, value, name)
    return arr


def _classes(value, name):
    if value is None:
        return None
    arr = np.asarray(value)
    if arr.ndim != 1 or len(arr) != 2 or arr[0] == arr[1]:
        raise ValueError(f"{name} must be None or the two class labels (an array of 2 distinct values), "
                         f"got {value!r:.80}")
    return arr


class _WeightsAttr(_checks.Checked):
    """weights: validated against the perceptron's n_features (copied into a new float64 array)."""

    def __set__(self, obj, value):
        obj.__dict__[self.key] = _weights(obj, value, self.name)


class Perceptron(_checks.Guarded):
    """A single linear threshold unit for two classes.

    ``fit(X, y)`` applies Rosenblatt's rule, w += lr·t·x and b += lr·t for each misclassified sample
    (t = ±1), sweeping the data until an epoch has no mistakes or ``epochs`` is reached. Labels may be any
    two values; ``predict`` returns them. ``n_features`` is read-only; ``lr``, ``weights`` (n_features,
    finite), ``bias`` (finite), ``classes_`` (None or two labels) and ``converged`` are validated when
    assigned.
    """

    n_features = _checks.ReadOnly(lambda self: self._n_features, "fixed at construction; build a new Perceptron")
    lr = _checks.Checked(lambda v, name: _checks.positive_float(v, name))
    weights = _WeightsAttr(None)
    bias = _checks.Checked(_checks.real)
    classes_ = _checks.Checked(_classes)
    converged = _checks.Checked(_checks.flag)

    def __init__(self, n_features, lr=1.0, seed=None):
        n_features = _checks.positive_int(n_features, "n_features")
        _memory.check_fits(3 * 8 * n_features, f"a Perceptron with {n_features:,} features (its float64 weights "
                                               f"and their working copies)")
        self._n_features = n_features
        self.lr = _checks.positive_float(lr, "lr")
        rng = np.random.default_rng(seed)
        self.weights = rng.standard_normal(self.n_features) * 0.01
        self.bias = 0.0
        self.classes_ = None
        self.converged = False

    def _check_weights(self):
        """``weights`` is validated when assigned, but its array can be changed in place: a NaN or infinity
        there would make every activation NaN (a "divergence" at the first sample, or class 0 for every row)."""
        if not np.isfinite(self.weights).all():
            bad = np.flatnonzero(~np.isfinite(self.weights))
            raise ValueError(f"Perceptron.weights holds NaN or infinite values (at {bad[:5].tolist()}"
                             f"{', ...' if len(bad) > 5 else ''}; changed in place?): assign finite weights "
                             f"or make a new Perceptron")

    def decision_function(self, X):
        """w·x + b for each row of X (n, n_features), float64 (n,)."""
        self._check_weights()
        X = _checks.matrix(X, "X", np.float64, self.n_features)
        with np.errstate(over="ignore", invalid="ignore"):
            return X @ self.weights + self.bias

    def fit(self, X, y, epochs=100):
        """Rosenblatt's rule over the data in order, epoch after epoch, until an epoch makes no mistake
        (``converged``) or ``epochs`` epochs have run. Every argument is checked before anything changes: a
        refused call leaves the perceptron as it was. A weight or an activation w·x + b that overflows to
        NaN or infinity raises TrainingDivergedError (epoch, and the sample as its ``batch``, counted from
        1); the perceptron then keeps the last finite weights and bias, with the new ``classes_`` and
        ``converged`` False. An interruption (Ctrl-C) keeps the updates made before it, weights and bias
        together."""
        self._check_weights()
        X = _checks.matrix(X, "X", np.float64, self.n_features)
        epochs = _checks.positive_int(epochs, "epochs")
        y = np.asarray(y)
        if y.shape != (len(X),):
            raise ValueError(f"y must have shape ({len(X)},), got {y.shape}")
        classes = np.unique(y)
        if len(classes) != 2:
            raise ValueError(f"y must hold exactly two classes for a perceptron, got {len(classes)}")
        t = np.where(y == classes[1], 1.0, -1.0)
        lr = self.lr
        state = (self.weights.copy(), float(self.bias))     # replaced whole, so weights and bias stay paired
        converged, diverged = False, None
        try:
            with np.errstate(over="ignore", invalid="ignore"):
                for epoch in range(1, epochs + 1):
                    mistakes = 0
                    for i, (xi, ti) in enumerate(zip(X, t)):
                        w, b = state
                        activation = xi @ w + b
                        if not math.isfinite(activation):
                            diverged = TrainingDivergedError(epoch, i + 1, what="activation w·x + b")
                            break
                        if ti * activation <= 0:
                            new_w, new_b = w + lr * ti * xi, b + lr * ti
                            if not (math.isfinite(new_b) and np.isfinite(new_w).all()):
                                diverged = TrainingDivergedError(epoch, i + 1, what="perceptron's weights")
                                break
                            state = (new_w, new_b)
                            mistakes += 1
                    if diverged is not None:
                        break
                    if mistakes == 0:
                        converged = True
                        break
        finally:
            self.weights, self.bias = state
            self.classes_ = classes
            self.converged = converged
        if diverged is not None:
            raise diverged
        return self

    def predict(self, X):
        if self.classes_ is None:
            raise RuntimeError("Perceptron.predict called before fit")
        activation = self.decision_function(X)
        bad = np.flatnonzero(~np.isfinite(activation))
        if len(bad):           # finite X and weights whose w·x + b overflows: no class can be read from it
            warnings.warn(f"Perceptron.predict: w·x + b is NaN or infinite for {len(bad)} of {len(activation)} "
                          f"rows (the first: row {bad[0]}; the values of X or the weights are too large): "
                          f"those rows are given class {self.classes_[0]}", RuntimeWarning, stacklevel=2)
        return np.where(activation > 0, self.classes_[1], self.classes_[0])

    def score(self, X, y):
        return float(np.mean(self.predict(X) == np.asarray(y)))
