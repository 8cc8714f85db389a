"""scikit-learn: MLPClassifier(solver="sgd", learning_rate_init=0.01, momentum=0, nesterovs_momentum=False,
alpha=0, batch_size=b, max_iter=1, shuffle=True, tol=0), one ``partial_fit`` per epoch (one pass over the
data with a fresh shuffle; float32 data stay float32).

Differences that scikit-learn does not let us remove: with two classes (the tiny cell) its output layer is a
single logistic unit (16-1) instead of a 2-way softmax; its weights start Glorot-uniform. Its per-epoch
input validation and label binarisation are part of its epoch, as they are for any user of it.
"""
import time
import warnings

import numpy as np

from .. import matrix
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
        self.model = MLPClassifier(hidden_layer_sizes=tuple(cell.sizes[1:-1]), activation="relu", solver="sgd",
                                   learning_rate_init=matrix.LR, learning_rate="constant", momentum=0.0,
                                   nesterovs_momentum=False, alpha=0.0, batch_size=cell.batch, max_iter=1,
                                   shuffle=True, tol=0.0, random_state=seed, early_stopping=False)
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
        out = {"sklearn": sklearn.__version__, "blas": blas_info()}
        if self._started:
            out["coef_dtype"] = str(self.model.coefs_[0].dtype)
            out["out_activation"] = self.model.out_activation_
        return out
