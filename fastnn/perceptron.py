"""Rosenblatt's perceptron: y = sign(w·x + b), trained by the perceptron rule."""
import numpy as np

from . import _checks


class Perceptron:
    """A single linear threshold unit for two classes.

    ``fit(X, y)`` applies Rosenblatt's rule, w += lr·t·x and b += lr·t for each misclassified sample
    (t = ±1), sweeping the data until an epoch has no mistakes or ``epochs`` is reached. Labels may be any
    two values; ``predict`` returns them.
    """

    def __init__(self, n_features, lr=1.0, seed=None):
        self.n_features = _checks.positive_int(n_features, "n_features")
        self.lr = _checks.positive_float(lr, "lr")
        rng = np.random.default_rng(seed)
        self.weights = rng.standard_normal(self.n_features) * 0.01
        self.bias = 0.0
        self.classes_ = None
        self.converged = False

    def decision_function(self, X):
        X = _checks.matrix(X, "X", np.float64, self.n_features)
        return X @ self.weights + self.bias

    def fit(self, X, y, epochs=100):
        X = _checks.matrix(X, "X", np.float64, self.n_features)
        y = np.asarray(y)
        if y.shape != (len(X),):
            raise ValueError(f"y must have shape ({len(X)},), got {y.shape}")
        classes = np.unique(y)
        if len(classes) != 2:
            raise ValueError(f"y must hold exactly two classes for a perceptron, got {len(classes)}")
        self.classes_ = classes
        t = np.where(y == classes[1], 1.0, -1.0)
        self.converged = False
        for _ in range(_checks.positive_int(epochs, "epochs")):
            mistakes = 0
            for xi, ti in zip(X, t):
                if ti * (xi @ self.weights + self.bias) <= 0:
                    self.weights += self.lr * ti * xi
                    self.bias += self.lr * ti
                    mistakes += 1
            if mistakes == 0:
                self.converged = True
                break
        return self

    def predict(self, X):
        if self.classes_ is None:
            raise RuntimeError("Perceptron.predict called before fit")
        return np.where(self.decision_function(X) > 0, self.classes_[1], self.classes_[0])

    def score(self, X, y):
        return float(np.mean(self.predict(X) == np.asarray(y)))
