"""MLPClassifier / MLPRegressor: scikit-learn's multi-layer perceptrons, trained by fastnn.

Drop-in replacements for ``sklearn.neural_network.MLPClassifier`` / ``MLPRegressor``: the same parameter
names, defaults and fitted attributes, and the same training algorithm (scikit-learn's Glorot-uniform
initialisation drawn from ``random_state``, the same shuffling, mini-batches, L2 penalty, tol /
n_iter_no_change convergence test, early stopping and ConvergenceWarning). The network itself is a
``fastnn.NeuralNetwork`` of FullyConnected + activation layers trained with ``fastnn.SGD`` / ``fastnn.Adam``
by fastnn's one training loop (``fastnn.training.Trainer``) on the fused whole-epoch kernel: scikit-learn's
sample orders come in through ``sample_order``, its L2 penalty (``alpha``) and Adam epsilon through the
optimizer's scikit-learn options, its convergence test, learning-rate rules and early stopping through a
callback (``_SklearnRules``).

scikit-learn is optional. When it is installed the estimators derive from ``sklearn.base.BaseEstimator``
and ``ClassifierMixin`` / ``RegressorMixin`` and validate input with scikit-learn's own ``validate_data``,
so Pipeline, GridSearchCV, clone and scikit-learn's estimator checks work; without it they provide
get_params / set_params / score themselves and validate input with fastnn's checks.

Differences from scikit-learn (each raises a clear error rather than doing something else):

* ``solver="lbfgs"`` and ``MLPRegressor(loss="poisson")`` are not supported.
* a classifier needs at least two classes (scikit-learn fits a constant model to one class).
* training and prediction compute in ``dtype`` (an extra parameter, float32 by default; scikit-learn
  computes in the input's float dtype). What comes back follows scikit-learn's dtypes: ``coefs_`` and
  ``intercepts_`` are in the float dtype of the data the model was first fitted on (float32 input: float32,
  anything else: float64), ``predict_proba`` and regression predictions in the result type of that and of
  the predicted input's float dtype — values computed in ``dtype`` and converted. Pass
  ``dtype=np.float64`` for scikit-learn's precision too.
* sparse input is accepted but densified.
* the parameters are checked as scikit-learn's ``_parameter_constraints`` check them (NaN, ±inf and
  strings are refused where it refuses them), with these differences: a bool where a number is expected
  (``max_iter=True``, ``random_state=True``) is refused — scikit-learn reads it as 1; ``momentum=1`` with
  ``solver="sgd"`` is refused (fastnn's SGD needs a momentum < 1); a ``learning_rate_init`` beyond the
  range of ``dtype`` is refused before training (scikit-learn's float32 fit fails with non-finite weights).
* rates and Adam's epsilon below ``dtype``'s smallest normal number (a tiny ``learning_rate_init`` or
  ``epsilon``, or an invscaling rate after a large ``power_t``) are raised to that number, where scikit-learn
  goes on with a negligible rate or fails partway (a ``power_t`` whose power overflows float64); see
  ``_invscaling_rate``.
* a fit from scratch that fails partway (for instance a diverging one) leaves the estimator as it was
  before the call, where scikit-learn leaves it half-fitted.

The binary and multilabel classifiers use one logistic output per label, as scikit-learn does, so
``coefs_`` has scikit-learn's shapes everywhere (the last layer is (hidden, 1) for a binary problem).
``coefs_`` / ``intercepts_`` are views of the network's weights when their dtype is ``dtype`` (else copies):
changing them in place or assigning new arrays to them is picked up by the next predict / fit (checked:
shapes, finite values). ``set_params`` on a fitted estimator works as in scikit-learn: ``activation`` and
``dtype`` apply from the next predict and warm-started fit on (the fitted weights are kept);
``hidden_layer_sizes`` applies at the next fit, and a warm start (or partial_fit) with sizes that differ
from the fitted network's raises ValueError; the other parameters apply at the next fit.
"""
import contextlib
import inspect
import math
import numbers

import numpy as np

from . import _checks
from .data import r2_score
from .errors import TrainingDivergedError
from .layers import FullyConnected, ReLU, Sigmoid, TanH
from .losses import L2Loss, SigmoidCrossEntropy, SoftmaxCrossEntropy
from .network import NeuralNetwork, warn_nonfinite_outputs
from .optimizers import SGD, Adam
from .threads import get_num_threads
from .training import CompileNotice, Trainer

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.exceptions import ConvergenceWarning, DataConversionWarning, NotFittedError
    from sklearn.utils import check_random_state
    from sklearn.utils.multiclass import type_of_target, unique_labels
    from sklearn.utils.validation import check_is_fitted
    from sklearn.utils import check_array as _sk_check_array
    # fastnn checks X's finiteness itself: predict in one pass (fastnn._checks.ensure_finite), fit and
    # partial_fit in the fused kernel, as it gathers the rows (_fit_checked); scikit-learn's own check would
    # be a pass over X of its own
    _SK_NO_FINITE_CHECK = ({"ensure_all_finite": False} if "ensure_all_finite" in
                           inspect.signature(_sk_check_array).parameters else {"force_all_finite": False})
    try:  # scikit-learn >= 1.6
        from sklearn.utils.validation import validate_data as _sk_validate_data
    except ImportError:  # pragma: no cover - older scikit-learn
        def _sk_validate_data(estimator, *args, **kwargs):
            return estimator._validate_data(*args, **kwargs)
    HAVE_SKLEARN = True
except ImportError:  # pragma: no cover - exercised only without scikit-learn
    HAVE_SKLEARN = False

    class ConvergenceWarning(UserWarning):
        """The optimizer stopped at max_iter before the convergence criterion was met."""

    class DataConversionWarning(UserWarning):
        """The input data was converted (e.g. a column-vector y was flattened)."""

    class NotFittedError(ValueError, AttributeError):
        """The estimator is used before fit."""

__all__ = ["MLPClassifier", "MLPRegressor", "ConvergenceWarning", "NotFittedError", "HAVE_SKLEARN"]

_ACTIVATION_LAYERS = {"identity": None, "logistic": Sigmoid, "tanh": TanH, "relu": ReLU}
_SOLVERS = ("sgd", "adam")
_LEARNING_RATES = ("constant", "invscaling", "adaptive")


# ------------------------------------------------------------------------------------ without sklearn

if not HAVE_SKLEARN:  # pragma: no cover - exercised only without scikit-learn
    import inspect

    def check_random_state(seed):
        if seed is None or seed is np.random:
            return np.random.mtrand._rand
        if isinstance(seed, numbers.Integral) and not isinstance(seed, bool):
            return np.random.RandomState(seed)
        if isinstance(seed, np.random.RandomState):
            return seed
        raise ValueError(f"{seed!r} cannot be used to seed a numpy.random.RandomState instance")

    def check_is_fitted(estimator):
        if not hasattr(estimator, "coefs_"):
            raise NotFittedError(f"This {type(estimator).__name__} instance is not fitted yet. Call 'fit' "
                                 "with appropriate arguments before using this estimator.")

    def unique_labels(y):
        return np.unique(np.asarray(y))

    def type_of_target(y, input_name="y"):
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] > 1:
            if y.dtype.kind in "biuf" and np.isin(y, (0, 1)).all():
                return "multilabel-indicator"
            return "multiclass-multioutput"
        if y.ndim == 2:
            y = y[:, 0]
        if y.dtype.kind == "f" and (y != np.round(y)).any():
            return "continuous"
        return "binary" if len(np.unique(y)) <= 2 else "multiclass"

    class BaseEstimator:
        """Minimal get_params / set_params / repr in scikit-learn's style."""

        @classmethod
        def _get_param_names(cls):
            sig = inspect.signature(cls.__init__)
            return sorted(p.name for p in sig.parameters.values()
                          if p.name != "self" and p.kind != p.VAR_KEYWORD)

        def get_params(self, deep=True):
            return {name: getattr(self, name) for name in self._get_param_names()}

        def set_params(self, **params):
            valid = self._get_param_names()
            for key, value in params.items():
                if key not in valid:
                    raise ValueError(f"Invalid parameter {key!r} for estimator {type(self).__name__}. "
                                     f"Valid parameters are: {valid!r}.")
                setattr(self, key, value)
            return self

        def __repr__(self):
            defaults = {p.name: p.default for p in inspect.signature(type(self).__init__).parameters.values()}
            changed = [f"{k}={v!r}" for k, v in self.get_params().items()
                       if not (isinstance(defaults.get(k), type(v)) and defaults.get(k) == v)]
            return f"{type(self).__name__}({', '.join(changed)})"

    class ClassifierMixin:
        _estimator_type = "classifier"

        def score(self, X, y):
            """Mean accuracy (subset accuracy for multilabel targets)."""
            pred, y = self.predict(X), np.asarray(y)
            if pred.ndim == 2:
                return float(np.mean(np.all(pred == y.reshape(pred.shape), axis=1)))
            return float(np.mean(pred == y.reshape(-1)))

    class RegressorMixin:
        _estimator_type = "regressor"

        def score(self, X, y):
            """R² (uniform average over outputs)."""
            return _r2(np.asarray(y, np.float64), self.predict(X))


_r2 = r2_score       # scikit-learn's r2_score (uniform average over outputs, force_finite, sample weights)


# ------------------------------------------------------------------------------- network pieces

class _Model:
    """The fastnn network behind a fitted estimator, and what training needs to reach into it."""

    def __init__(self, n_units, activation, out_kind, dtype, optimizer):
        layers = []
        act = _ACTIVATION_LAYERS[activation]
        for i, (n_in, n_out) in enumerate(zip(n_units[:-1], n_units[1:])):
            layers.append(FullyConnected(n_in, n_out, dtype=dtype, seed=0))
            if act is not None and i < len(n_units) - 2:
                layers.append(act())
        loss = {"softmax": SoftmaxCrossEntropy, "logistic": SigmoidCrossEntropy, "identity": L2Loss}[out_kind]()
        if out_kind == "identity":      # scikit-learn reports the squared error averaged over the outputs
            loss.report_scale = 1.0 / n_units[-1]
        self.net = NeuralNetwork(layers, loss=loss, optimizer=optimizer)
        self.fcs = [layer for layer in layers if isinstance(layer, FullyConnected)]
        self.activation, self.out_kind, self.dtype = activation, out_kind, np.dtype(dtype)

    def set_weights(self, coefs, intercepts):
        if len(coefs) != len(self.fcs) or len(intercepts) != len(self.fcs):
            raise ValueError(f"coefs_ and intercepts_ must hold {len(self.fcs)} arrays (one per layer), "
                             f"got {len(coefs)} and {len(intercepts)}")
        for i, (fc, w, b) in enumerate(zip(self.fcs, coefs, intercepts)):
            for name, value, attr in ((f"coefs_[{i}]", w, "weights"), (f"intercepts_[{i}]", b, "bias")):
                if value is not getattr(fc, attr):
                    try:
                        setattr(fc, attr, value)
                    except (TypeError, ValueError) as exc:
                        raise type(exc)(f"{name}: {exc}") from None

    def outputs(self, X):
        """The network's raw output (logits / regression outputs) for checked X, a new array."""
        return self.net.forward(X)


class _SklearnOrder:
    """scikit-learn's sample orders: each epoch shuffles the previous epoch's order with ``random_state``
    (``sklearn.utils.shuffle(sample_idx, random_state=rs)``), or keeps 0..n-1 without shuffling."""

    def __init__(self, rs, n, shuffle):
        self.rs, self.shuffle, self.idx = rs, shuffle, np.arange(n)

    def __call__(self, n):
        if self.shuffle:
            perm = np.arange(n)
            self.rs.shuffle(perm)
            self.idx = self.idx[perm]
        return self.idx


class _SklearnRules:
    """The end of each scikit-learn iteration, as a training-loop callback: the fitted attributes
    (n_iter_, loss_, loss_curve_, t_), the tol / n_iter_no_change test on the loss or the validation score,
    the learning-rate rules (invscaling, adaptive) and the ConvergenceWarning."""

    def __init__(self, est, opt, n, early_stopping, X_val, Y_val, w_val, incremental):
        self.est, self.opt, self.n, self.incremental = est, opt, n, incremental
        self.early_stopping, self.val = early_stopping, (X_val, Y_val, w_val)

    def on_epoch_end(self, epoch, history):
        est, opt = self.est, self.opt
        est.n_iter_ += 1
        est.loss_ = history["loss"][-1]
        est.t_ += self.n
        est.loss_curve_.append(est.loss_)
        if est.verbose:
            print("Iteration %d, loss = %.8f" % (est.n_iter_, est.loss_))
        est._update_no_improvement_count(self.early_stopping, *self.val)
        est._iteration_ends(opt)
        if est._no_improvement_count > est.n_iter_no_change:
            what = "Validation score" if self.early_stopping else "Training loss"
            msg = ("%s did not improve more than tol=%f for %d consecutive epochs."
                   % (what, est.tol, est.n_iter_no_change))
            if est._trigger_stopping(opt, msg):
                return True
            est._no_improvement_count = 0
        if not self.incremental and est.n_iter_ == est.max_iter:
            _checks.warn_at_caller("Stochastic Optimizer: Maximum iterations (%d) reached and the optimization "
                                   "hasn't converged yet." % est.max_iter, ConvergenceWarning)
        return False


def _is_int(value, allow_bool=False):
    return isinstance(value, numbers.Integral) and (allow_bool or not isinstance(value, (bool, np.bool_)))


def _in_interval(value, kind, left, right, closed):
    """scikit-learn's ``Interval(kind, left, right, closed).is_satisfied_by(value)``: an instance of ``kind``
    (numbers.Real includes ints and numpy scalars), not NaN, inside the bounds, where a missing bound is
    ±inf and so excludes ±inf itself — except that a bool is no number here (scikit-learn reads True as 1:
    ``max_iter=True``, ``random_state=True``; fastnn refuses them as the slip they most likely are)."""
    if not isinstance(value, kind) or isinstance(value, (bool, np.bool_)):
        return False
    if not isinstance(value, numbers.Integral) and math.isnan(value):
        return False
    lo = -math.inf if left is None else left
    hi = math.inf if right is None else right
    if (value < lo) if closed in ("left", "both") else (value <= lo):
        return False
    return not ((value > hi) if closed in ("right", "both") else (value >= hi))


def _check_interval(est, pname, kind, left, right, closed, alternatives=""):
    value = getattr(est, pname)
    if _in_interval(value, kind, left, right, closed):
        return
    what = "an int" if kind is numbers.Integral else "a finite number" if right is None else "a number"
    lo = "(" if closed in ("right", "neither") else "["
    hi = ")" if closed in ("left", "neither") or right is None else "]"
    span = f"{lo}{left}, {'inf' if right is None else right}{hi}"
    raise ValueError(f"{pname} must be {alternatives}{what} in {span}, got {value!r:.80}")


def _check_option(est, pname, options):
    value = getattr(est, pname)
    if not (isinstance(value, str) and value in options):
        raise ValueError(f"{pname} must be one of {sorted(options)}, got {value!r:.80}")


# ------------------------------------------------------------------------------------------ base

class _BaseMLP(BaseEstimator):
    """Shared by MLPClassifier and MLPRegressor: parameter checks, the network, the training loop."""

    _is_classifier = False

    # -- parameters ---------------------------------------------------------------------------
    def _check_params(self, incremental):
        """The parameters checked as scikit-learn's ``_parameter_constraints`` check them (same accepted
        values: bools count as ints, numpy scalars as numbers, NaN and ±inf are outside every interval), then
        fastnn's own limits (no lbfgs, momentum < 1, a learning_rate_init the network's dtype can hold).
        Everything a constructor argument can make fail is refused here, before the first epoch."""
        name = type(self).__name__
        sizes = self.hidden_layer_sizes
        if _is_int(sizes):
            if sizes < 1:
                raise ValueError(f"hidden_layer_sizes must be an int >= 1 or an array-like, got {sizes!r}")
            sizes = [sizes]
        elif isinstance(sizes, str) or not (hasattr(sizes, "__len__") or hasattr(sizes, "shape")
                                            or hasattr(sizes, "__array__")) or getattr(sizes, "ndim", 1) == 0:
            raise ValueError(f"hidden_layer_sizes must be an int >= 1 or an array-like, got {sizes!r:.80}")
        sizes = list(sizes)
        if not all(_is_int(s) and s > 0 for s in sizes):      # (scikit-learn fails on bools and floats too)
            raise ValueError(f"hidden_layer_sizes must be > 0, got {self.hidden_layer_sizes!r}")
        _check_option(self, "activation", list(_ACTIVATION_LAYERS))
        if self.solver == "lbfgs":
            raise ValueError(f"solver='lbfgs' is not supported by fastnn's {name}; use solver='adam' (the "
                             f"default) or 'sgd', or sklearn.neural_network.{name} for L-BFGS")
        if not (isinstance(self.solver, str) and self.solver in _SOLVERS):
            raise ValueError(f"solver must be 'adam' or 'sgd' ('lbfgs' is not supported), got {self.solver!r}")
        _check_interval(self, "alpha", numbers.Real, 0, None, "left")
        if not (isinstance(self.batch_size, str) and self.batch_size == "auto"):
            _check_interval(self, "batch_size", numbers.Integral, 1, None, "left", "'auto' or ")
        _check_option(self, "learning_rate", list(_LEARNING_RATES))
        _check_interval(self, "learning_rate_init", numbers.Real, 0, None, "neither")
        _check_interval(self, "power_t", numbers.Real, 0, None, "left")
        _check_interval(self, "max_iter", numbers.Integral, 1, None, "left")
        _check_interval(self, "tol", numbers.Real, 0, None, "left")
        v = self.verbose
        if not (isinstance(v, (bool, np.bool_)) or _in_interval(v, numbers.Integral, 0, None, "left")):
            raise ValueError(f"verbose must be a bool or an int >= 0, got {v!r:.80}")
        _check_interval(self, "momentum", numbers.Real, 0, 1, "both")
        if self.solver == "sgd" and self.momentum == 1:
            raise ValueError("momentum=1 (a velocity that never decays) is not supported by fastnn's "
                             f"{name}: its SGD needs a momentum in [0, 1)")
        _check_interval(self, "validation_fraction", numbers.Real, 0, 1, "left")
        if self.early_stopping and not self.validation_fraction > 0:
            raise ValueError(f"validation_fraction must be > 0 with early_stopping=True (the validation set "
                             f"early stopping scores), got {self.validation_fraction!r}")
        rs = self.random_state
        if not (rs is None or isinstance(rs, np.random.RandomState)
                or _in_interval(rs, numbers.Integral, 0, 2 ** 32 - 1, "both")):
            raise ValueError(f"random_state must be None, an int in [0, 2**32 - 1] or a "
                             f"numpy.random.RandomState, got {rs!r:.80}")
        _check_interval(self, "beta_1", numbers.Real, 0, 1, "left")
        _check_interval(self, "beta_2", numbers.Real, 0, 1, "left")
        _check_interval(self, "epsilon", numbers.Real, 0, None, "neither")
        n_change = self.n_iter_no_change
        if not (_in_interval(n_change, numbers.Integral, 1, None, "left")
                or (isinstance(n_change, numbers.Real) and n_change == np.inf)):
            raise ValueError(f"n_iter_no_change must be an int >= 1 or np.inf, got {n_change!r}")
        _check_interval(self, "max_fun", numbers.Integral, 1, None, "left")
        for pname in ("shuffle", "warm_start", "nesterovs_momentum", "early_stopping"):
            if not isinstance(getattr(self, pname), (bool, np.bool_)):
                raise ValueError(f"{pname} must be True or False, got {getattr(self, pname)!r}")
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        dtype = _checks.float_dtype(self.dtype)
        if float(self.learning_rate_init) > float(np.finfo(dtype).max):
            raise ValueError(f"learning_rate_init={self.learning_rate_init!r} is beyond the {dtype.name} range "
                             f"of the network (max {float(np.finfo(dtype).max):.3g}); pass dtype=np.float64 or "
                             f"a smaller rate")
        return [int(s) for s in sizes], dtype

    # -- input validation ---------------------------------------------------------------------
    def _dtype(self):
        model = getattr(self, "_model", None)
        return model.dtype if model is not None else _checks.float_dtype(self.dtype)

    def _validate_X(self, X, reset, dtype=None, check_finite=True):
        """Checked X; ``check_finite=False`` (scikit-learn installed): X's finiteness is left to the caller
        (``_outputs``: the network learns it in its first layer's GEMM)."""
        dtype = self._dtype() if dtype is None else dtype
        if HAVE_SKLEARN:
            X = _sk_validate_data(self, X, accept_sparse=["csr", "csc"], dtype=dtype, order="C", reset=reset,
                                  **_SK_NO_FINITE_CHECK)
            X = _dense(X, dtype)
            if check_finite:
                X = self._finite(X)
        else:  # pragma: no cover
            if hasattr(X, "toarray"):
                X = X.toarray()
            X = _checks.matrix(X, "X", dtype)
            if reset:
                self.n_features_in_ = X.shape[1]
            elif X.shape[1] != self.n_features_in_:
                raise ValueError(f"X has {X.shape[1]} features, but {type(self).__name__} is expecting "
                                 f"{self.n_features_in_} features as input.")
        return _dense(X, dtype)

    def _validate_X_y(self, X, y, reset, dtype, check_finite=True):
        """Checked (X, y); ``check_finite=False`` (scikit-learn installed): X's finiteness is left to the
        caller (``_fit_checked``: the fused kernel checks every row it gathers), no pass over X here."""
        if HAVE_SKLEARN:
            X, y = _sk_validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                                     y_numeric=not self._is_classifier, dtype=dtype, order="C", reset=reset,
                                     **_SK_NO_FINITE_CHECK)      # y is still checked finite by scikit-learn
            X = _dense(X, dtype)
            if check_finite:
                X = self._finite(X)
        else:  # pragma: no cover
            if y is None:
                raise ValueError(f"This {type(self).__name__} estimator requires y to be passed, but the "
                                 "target y is None.")
            X = self._validate_X(X, reset, dtype)
            if hasattr(y, "toarray"):
                y = y.toarray()
            y = np.asarray(y)
            if y.ndim not in (1, 2) or y.shape[0] != X.shape[0]:
                raise ValueError(f"y must have shape ({X.shape[0]},) or ({X.shape[0]}, n_outputs) to match "
                                 f"X, got {y.shape}")
            if y.dtype.kind in "fc" and not np.isfinite(y).all():
                raise ValueError("Input y contains NaN or infinity.")
            if not self._is_classifier and y.dtype.kind not in "biuf":
                raise ValueError(f"y must be numeric for regression, got dtype {y.dtype}")
        if hasattr(y, "toarray"):
            y = y.toarray()
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            if HAVE_SKLEARN and not check_finite:
                self._finite(X)         # X's error before the warning, as when X is checked here
            _checks.warn_at_caller("A column-vector y was passed when a 1d array was expected. Please change "
                                   "the shape of y to (n_samples,), for example using ravel().",
                                   DataConversionWarning)
            y = y[:, 0]
        return _dense(X, dtype), y

    def _finite(self, X):
        """The dense, converted X after fastnn's one pass (finite; its |x| bound remembered for the network's
        checks in the caller's ``_checks.bound_scope``); scikit-learn's error message when it is not finite."""
        try:
            _checks.ensure_finite(X, "X", threads=get_num_threads() if X.size >= _checks.SCAN_SPLIT_ELEMENTS else 1)
        except ValueError:
            _sk_check_array(X, dtype=None, ensure_2d=False, estimator=self, input_name="X")   # its message
            raise
        return X

    # -- fitting ------------------------------------------------------------------------------
    def fit(self, X, y, sample_weight=None, **fit_params):
        """Fit the model to X (n_samples, n_features) and y; returns self.

        Trains for up to ``max_iter`` epochs (fewer when the loss / validation score stops improving by
        ``tol`` for ``n_iter_no_change`` epochs). With ``warm_start`` a fitted model continues training.
        ``sample_weight`` (n_samples,): weights of scikit-learn's MLP (each batch's loss and gradient are
        their weighted means, the L2 penalty divided by the batch's weight sum).

        Nothing the user owns is lost (every path: fit, warm_start fit, partial_fit, with or without
        early_stopping): a call that fails — a refused input, bad data found mid-fit, divergence, an
        exception raised during training — leaves the estimator as it was before the call (as scikit-learn
        leaves a refused call): the fitted network's weights, the optimizer's state and step count, every
        fitted attribute and the ``random_state`` generator; the error is raised. A Ctrl-C or SIGTERM / SIGHUP
        (TrainingInterrupted) is not a failure: as in scikit-learn, the fit stops at a batch boundary, warns
        "Training interrupted by user." and keeps the progress made so far (with early_stopping, the best
        weights seen), the attributes describing the epochs completed.
        """
        _reject_fit_params(self, "fit", fit_params)
        return self._fit(X, y, incremental=False, sample_weight=sample_weight)

    def _fit(self, X, y, incremental, classes=None, sample_weight=None):
        with _checks.bound_scope():      # X and the weights are checked once, here; the Trainer reuses that
            return self._fit_checked(X, y, incremental, classes, sample_weight)

    def _fit_checked(self, X, y, incremental, classes, sample_weight):
        sizes, dtype = self._check_params(incremental)
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        in_dtype = _input_float_dtype(X)
        if not first_pass:
            self._sync_model(sizes)
            dtype = self._model.dtype
        # X's finiteness: the fused kernel checks every row it gathers, so the fit makes no pass over X of its
        # own (early stopping's validation rows, which the kernel does not read, are scanned up front). Any
        # failure after this point with X not finite is reported as the check at the boundary would have:
        # scikit-learn's message, the estimator, its network and random state as before the call.
        lazy = HAVE_SKLEARN and not self.early_stopping
        # The rule (see ``fit``): a call that fails — a refused input, divergence, an error raised mid-fit —
        # leaves the estimator as it was before the call, whatever the path: a fit from scratch (it built a
        # new network: the previous fit's attributes are put back, whole), a warm-started fit and partial_fit
        # (the fitted network's weights, its optimizer's state and step count, the attributes and the random
        # state are put back as they were). Ctrl-C (KeyboardInterrupt, TrainingInterrupted) is no failure:
        # the fit keeps what it trained (``_fit_stochastic``).
        before = self._state_before_fit(weights=not first_pass)
        try:
            X, y = self._validate_X_y(X, y, reset=first_pass, dtype=dtype, check_finite=not lazy)
        except BaseException:     # (a Ctrl-C here: nothing was trained, nothing is kept)
            self._restore_state(before)
            raise
        try:
            return self._fit_validated(X, y, first_pass, in_dtype, sizes, dtype, incremental, classes,
                                       sample_weight)
        except BaseException as exc:
            self._restore_state(before)
            if isinstance(exc, Exception) and lazy and not math.isfinite(_checks.scan(X)):
                self._finite(X)       # raises scikit-learn's message for X
            raise

    def _state_before_fit(self, weights=False):
        """What a fit changes on the estimator: the attributes (lists copied), the network's optimizer
        object and its scikit-learn options, and the state of the random generator that ``random_state``
        names (None or a RandomState are the user's or NumPy's global one). ``weights`` (a fit that continues
        the fitted network: warm_start, partial_fit): also copies of the network's parameters, of its
        optimizer's attributes and state arrays, its history and the best weights early stopping keeps."""
        attrs = {k: (list(v) if type(v) is list else v) for k, v in self.__dict__.items()}
        model = attrs.get("_model")
        opt = None
        if model is not None:
            o = model.net.optimizer
            opt = (o, {k: o.__dict__[k] for k in ("_sklearn_alpha", "_sklearn_eps") if k in o.__dict__})
        rs = self.random_state
        rs = check_random_state(None) if rs is None else rs       # (None: NumPy's global RandomState)
        rs_state = rs.get_state() if isinstance(rs, np.random.RandomState) else None
        network = None
        if weights and model is not None:
            net, o = model.net, model.net.optimizer
            state = o.state
            network = (model, [p.copy() for p in net.params], o, dict(o.__dict__),
                       None if state is None else [[(a, a.copy()) for a in slots] for slots in state],
                       net.history,
                       {k: [(a, a.copy()) for a in attrs[k]] for k in ("_best_coefs", "_best_intercepts")
                        if type(attrs.get(k)) is list})
        return attrs, model, opt, rs, rs_state, network

    def _restore_state(self, before):
        attrs, model, opt, rs, rs_state, network = before
        if network is not None:        # the continued network, put back in place (coefs_ are views of it)
            model, params, o, o_dict, o_state, history, best = network
            with model.net.weights_changing():
                for p, saved in zip(model.net.params, params):
                    np.copyto(p, saved)
            o.__dict__.clear()
            o.__dict__.update(o_dict)
            for slots in o_state or ():
                for a, saved in slots:
                    np.copyto(a, saved)
            if model.net.history is not history:
                model.net.history = history
            for pairs in best.values():
                for a, saved in pairs:
                    if a.flags.writeable:
                        np.copyto(a, saved)
        if model is not None and opt is not None:
            o, options = opt
            for k in ("_sklearn_alpha", "_sklearn_eps"):
                o.__dict__.pop(k, None)
            o.__dict__.update(options)
            if model.net.optimizer is not o:
                model.net.optimizer = o
        self.__dict__.clear()
        self.__dict__.update(attrs)
        if rs_state is not None:
            rs.set_state(rs_state)

    def _fit_validated(self, X, y, first_pass, in_dtype, sizes, dtype, incremental, classes, sample_weight):
        Y = self._encode_targets(y, first_pass, incremental, classes, dtype)
        if sample_weight is not None:
            sample_weight = _checks.sample_weights(sample_weight, "sample_weight", X.shape[0], dtype)
        self._random_state = check_random_state(self.random_state)
        if first_pass:
            self._coef_dtype = in_dtype
            self._initialize(sizes, X.shape[1], Y, dtype)
        else:
            self._sync_from_attributes()
            self._point_attributes()
            self._check_continuation(X, Y)
        try:
            self._fit_stochastic(X, Y, incremental, sample_weight)
        finally:
            self._point_attributes()        # copies (another dtype than the network's) follow the weights
        return self

    def _sync_model(self, sizes=None):
        """The network made to match the parameters as get_params reports them (scikit-learn reads
        ``activation`` at every forward pass): a changed ``activation`` or ``dtype`` rebuilds the network
        around the fitted weights (the optimizer's state converted); ``sizes`` (warm start, partial_fit)
        must be the fitted hidden sizes. Assigned coefs_ / intercepts_ are taken in first."""
        self._sync_from_attributes()
        model = self._model
        if self.activation not in _ACTIVATION_LAYERS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATION_LAYERS)}, got {self.activation!r}")
        dtype = _checks.float_dtype(self.dtype, "dtype")
        if sizes is not None:
            fitted = [fc.out_features for fc in model.fcs[:-1]]
            if fitted != list(sizes):
                raise ValueError(f"hidden_layer_sizes={self.hidden_layer_sizes!r} differs from the fitted "
                                 f"network's {tuple(fitted)}; warm_start and partial_fit continue the fitted "
                                 f"network: set warm_start=False (and call fit) to train the new architecture")
        if model.activation == self.activation and model.dtype == dtype:
            return
        old = model.net.optimizer
        opt = type(old)(**old.config())
        opt.steps = old.steps
        if old.state is not None:
            opt.state = [[np.ascontiguousarray(s, dtype=dtype) for s in slots] for slots in old.state]
        units = [model.fcs[0].in_features] + [fc.out_features for fc in model.fcs]
        new = _Model(units, self.activation, model.out_kind, dtype, opt)
        new.set_weights([fc.weights for fc in model.fcs], [fc.bias for fc in model.fcs])
        self._model = new
        self._point_attributes()

    def _out_dtype(self, X):
        """scikit-learn's output dtype: the fitted coefficients' float dtype promoted with X's."""
        return np.result_type(getattr(self, "_coef_dtype", self._model.dtype), _input_float_dtype(X))
    def _initialize(self, sizes, n_features, Y, dtype):
        self.n_iter_ = 0
        self.t_ = 0
        self.n_outputs_ = self._n_outputs_for(Y)
        units = [n_features] + sizes + [self.n_outputs_]
        self.n_layers_ = len(units)
        self.out_activation_ = self._out_activation()
        self._model = _Model(units, self.activation, self.out_activation_, dtype, self._make_optimizer(dtype))
        self._has_optimizer = True
        rs = self._random_state
        factor = 2.0 if self.activation == "logistic" else 6.0
        for fc in self._model.fcs:  # scikit-learn's Glorot-uniform initialisation, in its order of draws
            bound = np.sqrt(factor / (fc.in_features + fc.out_features))
            fc.weights = rs.uniform(-bound, bound, (fc.in_features, fc.out_features))
            fc.bias = rs.uniform(-bound, bound, fc.out_features)
        self._point_attributes()
        self.loss_curve_ = []
        self._no_improvement_count = 0
        if self.early_stopping:
            self.validation_scores_ = []
            self.best_validation_score_ = -np.inf
            self.best_loss_ = None
        else:
            self.best_loss_ = np.inf
            self.validation_scores_ = None
            self.best_validation_score_ = None

    def _point_attributes(self):
        """coefs_ / intercepts_ become (new lists of) views of the network's weights — copies in the fitted
        input's dtype when that is not the network's (see the module docstring)."""
        fcs, dtype = self._model.fcs, getattr(self, "_coef_dtype", self._model.dtype)
        if dtype == self._model.dtype:
            self.coefs_ = [fc.weights for fc in fcs]
            self.intercepts_ = [fc.bias for fc in fcs]
        else:
            self.coefs_ = [fc.weights.astype(dtype) for fc in fcs]
            self.intercepts_ = [fc.bias.astype(dtype) for fc in fcs]
        # what each copy held when handed out: an unchanged copy is not written back (its rounding to the
        # fitted input's dtype would silently round the network's weights)
        self._handed_copies = {id(a): (a, a.copy()) for a in self.coefs_ + self.intercepts_
                               if dtype != self._model.dtype}

    def _sync_from_attributes(self):
        """Copy coefs_ / intercepts_ into the network if the user assigned new arrays to them (or they are
        copies in another dtype, which the user may have changed in place)."""
        model = self._model
        if not isinstance(self.coefs_, list) or not isinstance(self.intercepts_, list):
            raise TypeError(f"coefs_ and intercepts_ must be lists of arrays, got {type(self.coefs_).__name__} "
                            f"and {type(self.intercepts_).__name__}")
        if len(self.coefs_) != len(model.fcs) or len(self.intercepts_) != len(model.fcs):
            model.set_weights(self.coefs_, self.intercepts_)        # (raises: the count is wrong)
        coefs, intercepts = self._current_weights()
        if any(w is not fc.weights for w, fc in zip(coefs, model.fcs)) or \
                any(b is not fc.bias for b, fc in zip(intercepts, model.fcs)):
            model.set_weights(coefs, intercepts)
            return True
        return False

    def _current_weights(self):
        """(coefs, intercepts): coefs_ / intercepts_, with each handed-out copy that the user has not
        changed replaced by the network's own array (which it rounds)."""
        handed = getattr(self, "_handed_copies", {})

        def current(value, own):
            copy = handed.get(id(value))
            unchanged = copy is not None and copy[0] is value and isinstance(value, np.ndarray) and \
                value.shape == copy[1].shape and np.array_equal(value, copy[1])
            return own if unchanged else value

        fcs = self._model.fcs
        return ([current(w, fc.weights) for w, fc in zip(self.coefs_, fcs)],
                [current(b, fc.bias) for b, fc in zip(self.intercepts_, fcs)])

    def _check_continuation(self, X, Y):
        n_out = self._n_outputs_for(Y)
        if n_out != self.n_outputs_:
            raise ValueError(f"y has {n_out} outputs but the fitted model has {self.n_outputs_}; warm_start "
                             "and partial_fit need targets of the same shape")
        if self.validation_scores_ is None and self.early_stopping:
            self.validation_scores_, self.best_validation_score_ = [], -np.inf
        if self.best_loss_ is None and not self.early_stopping:
            self.best_loss_ = np.inf

    def _make_optimizer(self, dtype):
        """scikit-learn's SGD (momentum, Nesterov: the same steps as torch's formulation while the rate is
        constant; ``_set_lr`` keeps them equal when it changes) or Adam (epsilon placed as scikit-learn does).
        A learning_rate_init below ``dtype``'s smallest normal number (valid in scikit-learn, 0 or nearly in
        the network's arithmetic) starts at that number, as the invscaling rates do (``_invscaling_rate``)."""
        lr = max(float(self.learning_rate_init), _rate_floor(dtype))
        if self.solver == "sgd":
            return SGD(lr=lr, momentum=self.momentum,
                       nesterov=bool(self.nesterovs_momentum and self.momentum > 0))
        # (an epsilon below dtype's smallest normal number, valid in scikit-learn, is 0 or nearly in the
        # network's arithmetic, where a zero second moment would make the step 0/0: it is raised to that number)
        return Adam(lr=lr, beta1=self.beta_1, beta2=self.beta_2, eps=max(float(self.epsilon), _rate_floor(dtype)))

    def _fit_stochastic(self, X, Y, incremental, sample_weight):
        """scikit-learn's _fit_stochastic, as a client of fastnn's training loop on the fused kernel."""
        net = self._model.net
        if not incremental or not getattr(self, "_has_optimizer", False):
            net.optimizer = self._make_optimizer(self._model.dtype)
            self._has_optimizer = True
        opt = net.optimizer
        if opt.lr < _rate_floor(self._model.dtype):     # (a float64 rate kept by partial_fit after dtype=float32)
            _set_lr(opt, _rate_floor(self._model.dtype))
        opt._sklearn_alpha = float(self.alpha)
        if isinstance(opt, Adam):
            opt._sklearn_eps = True
        rs = self._random_state
        early_stopping = self.early_stopping
        X_val = Y_val = w_val = None
        if early_stopping:
            X, Y, sample_weight, X_val, Y_val, w_val = self._split_validation(X, Y, sample_weight, rs)
        n = X.shape[0]
        if self.batch_size == "auto":
            batch_size = min(200, n)
        else:
            if self.batch_size > n:
                if HAVE_SKLEARN and not early_stopping:
                    self._finite(X)     # X's error before the warning (_fit_checked left X to the kernel)
                _checks.warn_at_caller("Got `batch_size` less than 1 or larger than sample size. It is going "
                                       "to be clipped")
            batch_size = int(np.clip(self.batch_size, 1, n))
        rules = _SklearnRules(self, opt, n, early_stopping, X_val, Y_val, w_val, incremental)
        trainer = Trainer(net, batch_size=batch_size, epochs=1 if incremental else self.max_iter, verbose=0,
                          fused=True, callbacks=[rules], sample_order=_SklearnOrder(rs, n, self.shuffle))
        if HAVE_SKLEARN and not early_stopping and not trainer.input_checked_by_engine():
            self._finite(X)         # (_fit_checked left X's finiteness to the kernel, which does not check)
        self.n_iter_ = 0
        try:
            with CompileNotice() if self.verbose else contextlib.nullcontext():    # (the lines of verbose=True)
                trainer.fit(X, Y, sample_weight=sample_weight)
        except TrainingDivergedError as exc:
            raise ValueError(_diverged_message(self.n_iter_ + 1)) from exc
        except KeyboardInterrupt:
            _checks.warn_at_caller("Training interrupted by user.")
        if early_stopping and not getattr(self, "_best_is_live", False):   # restore the best weights
            self._model.set_weights(self._best_coefs, self._best_intercepts)
        # scikit-learn restores with ``coefs_ = _best_coefs`` (no copy): its best weights ARE the live ones
        # from then on, and a warm-started fit that never beats best_validation_score_ trains them in place
        # and "restores" its own last weights. The same here, so that warm_start sequences stay equal.
        self._best_is_live = bool(early_stopping)

    def _split_validation(self, X, Y, sample_weight, rs):
        """scikit-learn's early-stopping split (its train_test_split with random_state=rs); the sample
        weights split with the rows."""
        stratify = Y if self._is_classifier and self.n_outputs_ == 1 else None
        arrays = (X, Y) if sample_weight is None else (X, Y, sample_weight)
        if HAVE_SKLEARN:
            from sklearn.model_selection import train_test_split
            parts = train_test_split(*arrays, random_state=rs, test_size=self.validation_fraction,
                                     stratify=stratify)
        else:  # pragma: no cover - ShuffleSplit's arithmetic, not stratified
            n = X.shape[0]
            n_test = int(np.ceil(self.validation_fraction * n))
            n_train = int(np.floor((1 - self.validation_fraction) * n))
            perm = rs.permutation(n)
            test, train = perm[:n_test], perm[n_test:n_test + n_train]
            parts = [p for a in arrays for p in (a[train], a[test])]
        parts = [np.ascontiguousarray(p) for p in parts]
        if parts[1].shape[0] < 2:
            raise ValueError("The validation set is too small. Increase 'validation_fraction' or the size of "
                             "your dataset.")
        X_train, X_val, Y_train, Y_val = parts[:4]
        w_train, w_val = (parts[4], parts[5]) if sample_weight is not None else (None, None)
        return X_train, Y_train, w_train, X_val, Y_val, w_val

    def _update_no_improvement_count(self, early_stopping, X_val, Y_val, w_val=None):
        if early_stopping:
            score = self._validation_score(X_val, Y_val, w_val)
            self.validation_scores_.append(score)
            if self.verbose:
                print("Validation score: %f" % score)
            if score < self.best_validation_score_ + self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                self._best_coefs = [fc.weights.copy() for fc in self._model.fcs]
                self._best_intercepts = [fc.bias.copy() for fc in self._model.fcs]
                self._best_is_live = False
        else:
            if self.loss_curve_[-1] > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if self.loss_curve_[-1] < self.best_loss_:
                self.best_loss_ = self.loss_curve_[-1]

    def _iteration_ends(self, opt):
        """scikit-learn's SGDOptimizer.iteration_ends: the invscaling schedule (sgd only)."""
        if isinstance(opt, SGD) and self.learning_rate == "invscaling":
            _set_lr(opt, _invscaling_rate(self.learning_rate_init, self.t_, self.power_t, self._model.dtype))

    def _trigger_stopping(self, opt, msg):
        """scikit-learn's trigger_stopping: True to stop; 'adaptive' sgd divides the rate by 5 instead."""
        if isinstance(opt, SGD) and self.learning_rate == "adaptive":
            if opt.lr > 1e-6:
                _set_lr(opt, opt.lr / 5.0)
                if self.verbose:
                    print(msg + " Setting learning rate to %f" % opt.lr)
                return False
            if self.verbose:
                print(msg + " Learning rate too small. Stopping.")
            return True
        if self.verbose:
            print(msg + " Stopping.")
        return True

    # -- prediction ---------------------------------------------------------------------------
    def _outputs(self, X):
        """Raw network outputs for unchecked X (checks fitted state, features, NaN), from the network as the
        current parameters describe it (``_sync_model``)."""
        check_is_fitted(self)
        self._sync_model()
        self._check_fitted_labels()
        X = self._validate_X(X, reset=False, check_finite=False)
        try:
            return self._model.outputs(X)       # no pass over X: the network checks it in its first GEMM
        except ValueError:
            if HAVE_SKLEARN and not np.isfinite(X).all():
                self._finite(X)                 # scikit-learn's message for a non-finite X
            raise

    def _warned_outputs(self, X):
        """``_outputs`` for predict, predict_proba and score: with NeuralNetwork.predict's RuntimeWarning
        (naming the first row) when an output is NaN or infinite although X is finite — the weights or X's
        values overflow inside the network, and the labels, probabilities or scores made from such rows
        would look like real ones."""
        out = self._outputs(X)
        if not np.isfinite(out).all():
            warn_nonfinite_outputs(out, 0, out.dtype)
        return out

    def _check_fitted_labels(self):
        """The fitted attributes predict reads besides the weights (the classifier's ``classes_``)."""

    def export_onnx(self, path):
        """Write the fitted model as ONNX (fastnn.export): input "input" (batch, n_features_in_) in the
        estimator's dtype; outputs "logits" (the raw network output), "probabilities" (= predict_proba) and
        "label" (= predict: classes_ values; multilabel: indicators) for a classifier, "output" (batch,
        n_outputs) for a regressor. Returns the path."""
        from . import export
        check_is_fitted(self)
        self._sync_from_attributes()
        net = self._model.net
        if not isinstance(self, MLPClassifier):
            return export.export_onnx(net, path, head="regression")
        if self._y_type == "multiclass":
            return export.export_onnx(net, path, head="softmax", classes=self.classes_)
        if self._y_type == "binary":
            return export.export_onnx(net, path, head="binary", classes=self.classes_)
        return export.export_onnx(net, path, head="sigmoid")

    # -- pickling / copying: the network holds a lock and buffers; rebuild it from the attributes ----
    def __getstate__(self):
        state = super().__getstate__() if HAVE_SKLEARN else self.__dict__
        state = dict(state)
        model = state.pop("_model", None)
        state.pop("_handed_copies", None)
        if model is not None:
            # the network's weights in its own dtype (coefs_ may be rounded copies), with the user's changes
            state["_model_weights"] = self._current_weights()
            opt = model.net.optimizer
            state["_optimizer_snapshot"] = (type(opt).__name__, opt.config(), opt.steps, opt.state)
            state["_model_config"] = (model.activation, model.out_kind, model.dtype.name)
        return state

    def __setstate__(self, state):
        state = dict(state)
        snapshot = state.pop("_optimizer_snapshot", None)
        config = state.pop("_model_config", None)
        weights = state.pop("_model_weights", None)
        if HAVE_SKLEARN:
            super().__setstate__(state)
        else:  # pragma: no cover
            self.__dict__.update(state)
        if config is not None:
            name, opt_config, steps, opt_state = snapshot
            opt = {"SGD": SGD, "Adam": Adam}[name](**opt_config)
            opt.steps = steps
            if opt_state is not None:
                opt.state = [[np.array(s) for s in slots] for slots in opt_state]
            activation, out_kind, dtype = config
            units = [self.coefs_[0].shape[0]] + [w.shape[1] for w in self.coefs_]
            self._model = _Model(units, activation, out_kind, dtype, opt)
            self._model.set_weights(*(weights if weights is not None else (self.coefs_, self.intercepts_)))
            self._point_attributes()


def _invscaling_rate(lr_init, t, power_t, dtype):
    """scikit-learn's invscaling rate ``lr_init / (t + 1) ** power_t``, computed as it does (in float64, so
    every rate float64 can hold is scikit-learn's bit for bit), with two changes where scikit-learn's own
    arithmetic gives up: a power beyond float64's range (scikit-learn raises OverflowError partway through
    the fit) is a rate of 0, and a rate below ``dtype``'s smallest normal number (0 in float32 arithmetic
    after a large power_t) is raised to that number. scikit-learn goes on with a negligible rate there, and
    so does this: an update of tiny·gradient moves no weight that is not already tiny, and the momentum
    velocity (which scikit-learn keeps decaying at any rate) stays represented (``_set_lr``). Only rates
    scikit-learn's float64 run makes < 2.2e-308 change in float64, so its equality holds elsewhere."""
    try:
        lr = float(lr_init) / (t + 1) ** power_t
    except OverflowError:
        lr = 0.0
    return max(lr, _rate_floor(dtype))


def _rate_floor(dtype):
    return float(np.finfo(dtype).tiny)


def _set_lr(opt, lr):
    """Change an SGD optimizer's rate, rescaling its momentum buffer so that the update stays
    scikit-learn's (whose velocity holds lr·gradient, while torch-style momentum holds the gradient).
    When the rescaled buffer would overflow the network's dtype (a rate fallen to ~1e-38 in float32), the
    new rate is raised just enough to keep it finite: the velocity is still exactly scikit-learn's, only
    the new gradient's (negligible) share is larger."""
    if opt.state and opt.momentum and lr > 0:
        big = max((float(np.abs(s).max()) for slots in opt.state for s in slots if s.size), default=0.0)
        if big and math.isfinite(big):
            limit = float(np.finfo(opt.state[0][0].dtype).max) / 4
            if big * (opt.lr / lr) > limit:
                lr = opt.lr * big / limit
        for slots in opt.state:
            for s in slots:
                s *= opt.lr / lr
    opt.lr = lr


def _input_float_dtype(X):
    """The float dtype scikit-learn's validation would give X: float32 stays float32, anything else (float64,
    ints, lists, mixed DataFrames) becomes float64."""
    dt = getattr(X, "dtype", None)
    if dt is None and hasattr(X, "dtypes"):
        try:
            dt = np.result_type(*list(X.dtypes))
        except (TypeError, ValueError):
            dt = None
    try:
        return np.dtype(np.float32) if dt is not None and np.dtype(dt) == np.float32 else np.dtype(np.float64)
    except TypeError:
        return np.dtype(np.float64)


def _sorted_int_labels(classes):
    """Whether ``classes`` is a 1-D array of at least two strictly increasing integers (unique_labels' form)."""
    return isinstance(classes, np.ndarray) and classes.ndim == 1 and classes.dtype.kind in "iu" and \
        len(classes) >= 2 and bool((classes[1:] > classes[:-1]).all())


def _same_int_labels(given, classes):
    """True when ``given`` (partial_fit's ``classes``) is, element by element, the integer labels ``classes``
    (sorted, unique): then unique_labels(given) equals ``classes`` too, and need not be computed. False
    means "not known to be": the caller asks unique_labels."""
    if not _sorted_int_labels(classes) or not isinstance(given, (list, tuple, np.ndarray)):
        return False
    try:
        arr = np.asarray(given)
    except (TypeError, ValueError):       # (ragged): unique_labels says what is wrong
        return False
    return arr.shape == classes.shape and arr.dtype.kind in "iu" and \
        np.result_type(arr, classes).kind in "iu" and bool(np.array_equal(arr, classes))


def _dense(X, dtype):
    if hasattr(X, "toarray"):
        X = X.toarray()
    return np.ascontiguousarray(X, dtype=dtype)


def _diverged_message(iteration):
    return (f"Solver produced non-finite parameter weights or loss (at iteration {iteration}). The input "
            "data may contain large values and need to be preprocessed, or learning_rate_init is too large.")


def _reject_fit_params(est, method, fit_params):
    if not fit_params:
        return
    raise TypeError(f"{type(est).__name__}.{method}() got unexpected keyword argument(s): "
                    f"{', '.join(sorted(fit_params))}")


# ------------------------------------------------------------------------------------ classifier

class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier (log-loss), scikit-learn's MLPClassifier trained by fastnn.

    Parameters are scikit-learn's (see sklearn.neural_network.MLPClassifier), plus ``dtype`` (float32 or
    float64: the precision of the network). ``solver="lbfgs"`` is not supported.

    Multiclass targets use a softmax output (``out_activation_ = "softmax"``); binary and multilabel
    targets one logistic output per label (``"logistic"``), as in scikit-learn.

    Fitted attributes: classes_, coefs_, intercepts_, loss_, best_loss_, loss_curve_, validation_scores_,
    best_validation_score_, n_iter_, t_, n_features_in_ (and feature_names_in_), n_layers_, n_outputs_,
    out_activation_.
    """

    _is_classifier = True
    loss = "log_loss"

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam", alpha=0.0001,
                 batch_size="auto", learning_rate="constant", learning_rate_init=0.001, power_t=0.5,
                 max_iter=200, shuffle=True, random_state=None, tol=1e-4, verbose=False, warm_start=False,
                 momentum=0.9, nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 dtype=np.float32):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.dtype = dtype

    def partial_fit(self, X, y, sample_weight=None, classes=None, **fit_params):
        """One epoch over (X, y), continuing from the current model. ``classes`` (every class label that
        will ever appear) is required on the first call. A call that fails leaves the model as it was before
        it; a Ctrl-C keeps the batches trained (see ``fit``)."""
        _reject_fit_params(self, "partial_fit", fit_params)
        first = getattr(self, "classes_", None) is None
        if first and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit.")
        if not first and classes is not None and not _same_int_labels(classes, self.classes_) \
                and not np.array_equal(self.classes_, unique_labels(classes)):
            raise ValueError(f"`classes={classes!r}` is not the same as on last call to partial_fit, was: "
                             f"{self.classes_!r}")
        return self._fit(X, y, incremental=True, classes=None if not first else classes,
                         sample_weight=sample_weight)

    # -- targets ------------------------------------------------------------------------------
    def _encode_targets(self, y, first_pass, incremental, classes, dtype):
        define = first_pass and (classes is not None or not incremental)
        if not define and not (self.warm_start and not incremental):
            Y = self._encode_known_int_labels(y, dtype)
            if Y is not None:
                return Y
        y_type = type_of_target(y, input_name="y")
        if y_type not in ("binary", "multiclass", "multilabel-indicator"):
            if y_type.startswith("continuous"):
                raise ValueError(f"Unknown label type: {y_type}. Maybe you are trying to fit a classifier, "
                                 "which expects discrete classes on a regression target with continuous values.")
            raise ValueError(f"Unknown label type: {y_type}: MLPClassifier supports binary, multiclass and "
                             "multilabel-indicator targets")
        define = first_pass and (classes is not None or not incremental)
        if define or getattr(self, "classes_", None) is None:
            if y_type == "multilabel-indicator":
                self._y_type, self.classes_ = y_type, np.arange(y.shape[1])
            else:
                labels = unique_labels(y if classes is None else classes)
                if len(labels) < 2:
                    raise ValueError(f"MLPClassifier needs samples of at least 2 classes in the data, but the "
                                     f"data contains only one class: {labels[0]!r}")
                if classes is not None:
                    unknown = np.setdiff1d(unique_labels(y), labels, assume_unique=True)
                    if len(unknown):
                        raise ValueError(f"`y` has classes not in `classes`: {unknown}. `classes` is {labels}.")
                self._y_type = "binary" if len(labels) == 2 else "multiclass"
                self.classes_ = labels
        else:
            if (y_type == "multilabel-indicator") != (self._y_type == "multilabel-indicator"):
                raise ValueError(f"y is {y_type} but the model was fitted on {self._y_type} targets")
            if y_type != "multilabel-indicator":
                labels = unique_labels(y)
                if self.warm_start and not incremental:
                    if set(labels) != set(self.classes_):
                        raise ValueError("warm_start can only be used where `y` has the same classes as in the "
                                         f"previous call to fit. Previously got {self.classes_}, `y` has {labels}")
                elif len(np.setdiff1d(labels, self.classes_, assume_unique=True)):
                    raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` has "
                                     f"{self.classes_}. 'y' has {labels}.")
            elif y.shape[1] != len(self.classes_):
                raise ValueError(f"y has {y.shape[1]} labels but the model was fitted on {len(self.classes_)}")
        if self._y_type == "multilabel-indicator":
            return np.ascontiguousarray(y, dtype=dtype)
        if self._y_type == "binary":
            return np.ascontiguousarray((y == self.classes_[1])[:, None], dtype=dtype)
        return np.ascontiguousarray(np.searchsorted(self.classes_, y), dtype=np.int64)

    def _encode_known_int_labels(self, y, dtype):
        """The encoded targets of integer labels y (n_samples,) when ``classes_`` (integers) is known and each
        label is one of them — exactly what the general path below returns then, without its two np.unique of
        y (scikit-learn's type_of_target and unique_labels): a range check when ``classes_`` is 0..m-1, else
        one searchsorted. None in every other case (the general path then decides, with its messages)."""
        classes = getattr(self, "classes_", None)
        if getattr(self, "_y_type", None) not in ("binary", "multiclass") or not _sorted_int_labels(classes) \
                or not isinstance(y, np.ndarray) or y.ndim != 1 or y.dtype.kind not in "iu" or not len(y) \
                or np.result_type(y, classes).kind not in "iu":       # (int64 with uint64: float64, inexact)
            return None
        m = len(classes)
        if classes[0] == 0 and classes[-1] == m - 1:     # (strictly increasing integers: 0, 1, ..., m - 1)
            if y.min() < 0 or y.max() >= m:
                return None
            idx = y
        else:
            idx = np.searchsorted(classes, y)
            if idx.max() >= m or not np.array_equal(classes[idx], y):
                return None
        if self._y_type == "binary":
            return np.ascontiguousarray((y == classes[1])[:, None], dtype=dtype)
        return np.ascontiguousarray(idx, dtype=np.int64)

    def _n_outputs_for(self, Y):
        if self._y_type == "multiclass":
            return len(self.classes_)
        return Y.shape[1]

    def _out_activation(self):
        return "softmax" if self._y_type == "multiclass" else "logistic"

    def _validation_score(self, X, Y, w=None):
        """Accuracy on the early-stopping split (Y encoded), weighted by w (scikit-learn's accuracy_score)."""
        out = self._model.outputs(X)
        if not np.isfinite(out).all():
            return np.nan
        if self._y_type == "multiclass":
            right = np.argmax(out, axis=1) == Y
        else:
            right = np.all((out > 0) == (Y > 0.5), axis=1)
        return float(np.average(right, weights=w))

    # -- prediction ---------------------------------------------------------------------------
    def _check_fitted_labels(self):
        n_out = self._model.fcs[-1].out_features
        need = 2 if self._y_type == "binary" else n_out
        classes = self.classes_
        if not isinstance(classes, np.ndarray) or classes.ndim != 1 or len(classes) != need:
            raise ValueError(f"classes_ must be a 1-D array of the {need} class labels the model was fitted "
                             f"on, got {classes!r:.80}")

    def predict(self, X):
        """Class labels (n_samples,) — or the indicator matrix (n_samples, n_labels) for multilabel."""
        return self._labels(self._warned_outputs(X))

    def score(self, X, y, sample_weight=None):
        """Mean accuracy (subset accuracy for multilabel targets), weighted by ``sample_weight``, as
        scikit-learn's; NaN, with predict's RuntimeWarning, when an output of the network is NaN or infinite
        (its NaN rows would count as ``classes_[0]``: an accuracy that looks real)."""
        out = self._warned_outputs(X)
        if not np.isfinite(out).all():
            return float("nan")
        pred = self._labels(out)
        if HAVE_SKLEARN:
            from sklearn.metrics import accuracy_score
            return float(accuracy_score(y, pred, sample_weight=sample_weight))
        y = np.asarray(y)
        right = np.all(pred == y.reshape(pred.shape), axis=1) if pred.ndim == 2 else pred == y.reshape(-1)
        return float(np.average(right, weights=sample_weight))

    def _labels(self, out):
        """predict's labels from the network's outputs ``out``."""
        if self._y_type == "multiclass":
            return self.classes_[np.argmax(out, axis=1)]
        if self._y_type == "binary":
            return self.classes_[(out[:, 0] > 0).astype(np.intp)]
        return (out > 0).astype(np.int64)

    def predict_proba(self, X):
        """Probability of each class, (n_samples, n_classes), columns in the order of ``classes_``.

        Binary problems give (n_samples, 2) = [1 - p, p]; multilabel the per-label probabilities."""
        proba = self._probabilities(X)
        return proba.astype(self._out_dtype(X), copy=False)

    def predict_log_proba(self, X):
        """log(predict_proba(X))."""
        proba = self._probabilities(X)
        with np.errstate(divide="ignore"):
            return np.log(proba, out=proba).astype(self._out_dtype(X), copy=False)

    def _probabilities(self, X):
        """predict_proba in the network's dtype: every value is computed there and converted once by the
        caller, so float32 and float64 copies of the same X give the same values (the module docstring)."""
        out = self._warned_outputs(X)           # (checks the fitted state first)
        proba = self._model.net.loss.output_probabilities(out)
        if self._y_type == "binary":
            return np.hstack([1 - proba, proba])
        return proba

    if HAVE_SKLEARN:
        def __sklearn_tags__(self):
            tags = super().__sklearn_tags__()
            tags.input_tags.sparse = True
            tags.classifier_tags.multi_label = True
            return tags

    def _more_tags(self):  # scikit-learn < 1.6
        return {"multilabel": True}


# ------------------------------------------------------------------------------------- regressor

class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor (squared error), scikit-learn's MLPRegressor trained by fastnn.

    Parameters are scikit-learn's (see sklearn.neural_network.MLPRegressor), plus ``dtype`` (float32 or
    float64). ``loss`` must be "squared_error" ("poisson" is not supported) and ``solver`` "adam" or "sgd".
    ``loss_`` is scikit-learn's: half the mean squared error over samples and outputs, plus the L2 penalty.
    """

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant", learning_rate_init=0.001,
                 power_t=0.5, max_iter=200, shuffle=True, random_state=None, tol=1e-4, verbose=False,
                 warm_start=False, momentum=0.9, nesterovs_momentum=True, early_stopping=False,
                 validation_fraction=0.1, beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10,
                 max_fun=15000, dtype=np.float32):
        self.loss = loss
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.dtype = dtype

    def _check_params(self, incremental):
        if self.loss != "squared_error":
            if self.loss == "poisson":
                raise ValueError("loss='poisson' is not supported by fastnn's MLPRegressor; use "
                                 "loss='squared_error' or sklearn.neural_network.MLPRegressor")
            raise ValueError(f"loss must be 'squared_error', got {self.loss!r}")
        return super()._check_params(incremental)

    def partial_fit(self, X, y, sample_weight=None, **fit_params):
        """One epoch over (X, y), continuing from the current model. A call that fails leaves the model as it
        was before it; a Ctrl-C keeps the batches trained (see ``fit``)."""
        _reject_fit_params(self, "partial_fit", fit_params)
        return self._fit(X, y, incremental=True, sample_weight=sample_weight)

    def _encode_targets(self, y, first_pass, incremental, classes, dtype):
        Y = np.ascontiguousarray(y.reshape(len(y), -1), dtype=dtype)
        if not np.isfinite(Y).all():
            raise ValueError("Input y contains NaN or infinity (or a value too large for "
                             f"{np.dtype(dtype).name}).")
        return Y

    def _n_outputs_for(self, Y):
        return Y.shape[1]

    def _out_activation(self):
        return "identity"

    def _validation_score(self, X, Y, w=None):
        out = self._model.outputs(X)
        if not np.isfinite(out).all():
            return np.nan
        return _r2(Y, out, w)

    def predict(self, X):
        """Predicted values, (n_samples,) for one output, else (n_samples, n_outputs); a RuntimeWarning when
        one is NaN or infinite (X is finite: the weights or X's values overflow inside the network)."""
        out = self._warned_outputs(X).astype(self._out_dtype(X), copy=False)
        return out[:, 0].copy() if out.shape[1] == 1 else out

    def score(self, X, y, sample_weight=None):
        """R² (uniform average over outputs), weighted by ``sample_weight``, as scikit-learn's; NaN, with
        predict's RuntimeWarning, when an output of the network is NaN or infinite (X and y being finite,
        scikit-learn's r2_score would blame its "Input")."""
        pred = self.predict(X)
        if not np.isfinite(pred).all():
            return float("nan")
        if HAVE_SKLEARN:
            from sklearn.metrics import r2_score as sklearn_r2
            return float(sklearn_r2(y, pred, sample_weight=sample_weight))
        return float(_r2(np.asarray(y, np.float64), pred, sample_weight))

    if HAVE_SKLEARN:
        def __sklearn_tags__(self):
            tags = super().__sklearn_tags__()
            tags.input_tags.sparse = True
            return tags
