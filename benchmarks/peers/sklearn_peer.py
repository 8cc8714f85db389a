"""scikit-learn: MLPClassifier(solver="sgd", learning_rate_init=0.01, momentum=0, nesterovs_momentum=False,
alpha=0, batch_size=b, max_iter=1, shuffle=True, tol=0), one ``partial_fit`` per epoch (one pass over the
data with a fresh shuffle; float32 data stay float32). On a cell with ``optimizer="adam"``: solver="adam",
learning_rate_init=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-8 (its defaults); partial_fit keeps the
optimizer (moments and step count) from one call to the next, so epochs continue one Adam run.

Differences that scikit-learn does not let us remove: with two classes (the tiny cell) its output layer is a
single logistic unit (16-1) instead of a 2-way softmax; its weights start Glorot-uniform; its Adam puts
epsilon outside the bias correction (p -= lr·sqrt(1 - b2^t)/(1 - b1^t) · m / (sqrt(v) + eps), where torch
divides sqrt(v) by sqrt(1 - b2^t) first: the same update but for eps's size, the same work). Its per-epoch
input validation and label binarisation are part of its epoch, as they are for any user of it.
"""
import time
import warnings

import numpy as np

from .base import PeerBase, blas_info


class Peer(PeerBase):
    name = "sklearn"
    label = "scikit-learn"

    @classmethod
    def available(cls):
        try:
            import sklearn  # noqa: F401
        except ImportError as exc:
            return False, f"scikit-learn not installed ({exc})"
        return True, ""

    def __init__(self, cell, X, y, seed=0):
        super().__init__(cell, X, y, seed=seed)
        from sklearn.neural_network import MLPClassifier
        h = cell.hyper
        if cell.optimizer == "adam":
            solver = {"solver": "adam", "beta_1": h["beta1"], "beta_2": h["beta2"], "epsilon": h["eps"]}
        else:
            solver = {"solver": "sgd", "momentum": 0.0, "nesterovs_momentum": False}
        self.model = MLPClassifier(hidden_layer_sizes=tuple(cell.sizes[1:-1]), activation="relu",
                                   learning_rate_init=h["lr"], learning_rate="constant", alpha=0.0,
                                   batch_size=cell.batch, max_iter=1, shuffle=True, tol=0.0, random_state=seed,
                                   early_stopping=False, **solver)
        self.classes = np.arange(cell.n_classes)
        self._started = False

    def epoch(self):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            start = time.perf_counter()
            if self._started:
                self.model.partial_fit(self.X, self.y)
            else:
                self.model.partial_fit(self.X, self.y, classes=self.classes)
                self._started = True
            return time.perf_counter() - start

    def loss(self):
        """NaN before the first epoch: scikit-learn builds its weights in the first partial_fit."""
        if not self._started:
            return float("nan")
        rows = self.eval_rows
        p = self.model.predict_proba(self.X[:rows]).astype(np.float64)
        p = np.maximum(p[np.arange(rows), self.y[:rows]], np.finfo(np.float64).tiny)
        return float(-np.mean(np.log(p)))

    def info(self):
        import sklearn
        out = {"sklearn": sklearn.__version__, "solver": self.model.solver, "blas": blas_info()}
        if self._started:
            out["coef_dtype"] = str(self.model.coefs_[0].dtype)
            out["out_activation"] = self.model.out_activation_
        return out
