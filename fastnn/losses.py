"""Losses: ``forward(pred, target, weights=None) -> float`` (mean over the batch), ``backward() -> dL/dpred``.

Classification targets are int class ids (batch,) or a target distribution / one-hot (batch, classes);
SigmoidCrossEntropy takes 0/1 labels (batch,) / (batch, 1) or multilabel indicators (batch, k) (soft targets
in [0, 1] too); regression targets are (batch, outputs). The gradient lives in a buffer reused by the next
forward.

A loss also owns what its targets and outputs mean: ``check_target`` validates targets for it,
``predictions`` turns outputs into what ``predict`` returns, ``count_correct`` scores a batch and
``fused_kind`` names its head in the fused epoch kernel (the network and the engines ask, never guess).

Sample weights (batch,) in the prediction's dtype, as scikit-learn's MLP weights a mini-batch
(``_backprop``): loss = Σ_i w_i l_i / Σ_i w_i and dL/dpred_i = w_i ∇l_i / Σ_i w_i, where l_i is sample i's
unweighted loss; a batch whose weights sum to 0 has loss 0 and gradient 0. Without weights, the plain mean.
"""
import numpy as np

from . import _checks
from .kernels import softmax_ce as kernels
from .layers import Owned


class Loss(Owned):
    """Base class; subclasses set the kernels and whether targets are class labels."""

    classification = True
    _label_kernel = _dense_kernel = None
    #: True when the kernels are fused heads ``<head>_w(pred, target, grad, w, norm)`` (weights always an
    #: array, (0,) when unweighted): the one signature the fused epoch kernel compiles too, so that a fit's
    #: validation or evaluate compiles no second variant of the same math
    _explicit_weights = False

    #: the factor between the loss a fit reports and the one it differentiates (scikit-learn's MLPRegressor
    #: reports the squared error averaged over outputs but steps with its sum's gradient); 1 unless set.
    report_scale = _checks.Checked(lambda value, name: _checks.positive_float(value, name), default=1.0)

    def __init__(self):
        self._grad_buf = None
        self._grad = None

    def _used_by(self, net):
        return net.__dict__.get("_loss") is self

    def _check(self, pred, target, weights=None):
        pred = _checks.matrix(pred, "pred", _checks.float_dtype_of(pred))
        n, m = pred.shape
        self._check_pred(pred)
        target = self.check_target(target, "target", n, m, pred.dtype)
        if weights is not None:
            weights = _checks.sample_weights(weights, "weights", n, pred.dtype)
        return pred, target, weights

    def _check_pred(self, pred):
        """Hook for losses whose input must mean something more than finite numbers (ValueError)."""

    def forward(self, pred, target, weights=None):
        """Mean loss over the batch for pred (batch, outputs) and target; checked.

        ``weights`` (batch,) non-negative sample weights or None (see the module's docstring).
        """
        checked = self._check(pred, target, weights)
        self._direct_call()
        return self._forward(*checked)

    def forward_unchecked(self, pred, target, weights=None):
        """The engines' unchecked forward (inputs as ``_forward`` documents them); the mean loss."""
        return self._forward(pred, target, weights)

    def _forward(self, pred, target, weights=None):
        """Unchecked forward: pred (batch, outputs) C-contiguous float32/float64, target as
        ``check_target`` returns it, weights None or (batch,) C-contiguous in pred's dtype."""
        buf = self._grad_buf
        if buf is None or buf.shape[0] < pred.shape[0] or buf.shape[1] != pred.shape[1] \
                or buf.dtype != pred.dtype:
            buf = self._grad_buf = np.empty(pred.shape, pred.dtype)
        self._grad = grad = buf[:pred.shape[0]]
        return self._run_kernel(pred, target, grad, weights)

    def _run_kernel(self, pred, target, grad, weights=None):
        kernel = self._label_kernel if target.ndim == 1 else self._dense_kernel
        if self._explicit_weights:
            return float(kernel(pred, target, grad, np.empty(0, pred.dtype) if weights is None else weights, -1.0))
        if weights is None:
            return float(kernel(pred, target, grad))
        return float(kernel(pred, target, grad, weights))

    def evaluate(self, pred, target):
        """The mean loss of checked pred / target without touching this loss's buffers (so that it can run
        in any thread, beside a training step)."""
        return self._run_kernel(pred, target, np.empty(pred.shape, pred.dtype))

    def backward(self):
        """dL/dpred of the last forward, shape (batch, outputs)."""
        if self._grad is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        return self._grad

    # -- what the targets and outputs mean ---------------------------------------------------------
    def check_target(self, y, name, n_samples, n_outputs, dtype):
        """``y`` validated for this loss, C-contiguous: classifiers' int64 class ids (n,) or float
        (n, classes) distributions of ``dtype`` (each row non-negative, summing to 1); regression
        (n, outputs) of ``dtype``. ValueError / TypeError naming ``name`` otherwise."""
        if self.classification:
            return _checks.labels(y, name, n_samples, n_outputs, dtype)
        return _checks.targets(y, name, n_samples, n_outputs, dtype)

    def predictions(self, out):
        """What ``predict`` returns for a batch of outputs (n, outputs): int64 class ids (n,) by argmax
        (first maximum) for classifiers, the outputs themselves for regression."""
        if self.classification:
            return np.argmax(out, axis=1)
        return out

    def count_correct(self, out, target):
        """How many rows of out (n, outputs) are predicted right for a checked target (int); 0 for
        regression. Classifiers: argmax equal to the class id, or to the target distribution's argmax."""
        if not self.classification:
            return 0
        if target.ndim == 1:
            return int(kernels.count_correct_labels(out, target))
        return int(kernels.count_correct_dense(out, target))

    def fused_kind(self, target_ndim):
        """The fused epoch kernel's head for this loss with checked targets of ``target_ndim`` dimensions:
        "ce_labels", "ce_dense", "l2", "sigmoid", or None when the kernel has none (subclasses included:
        the kernel cannot know what they override)."""
        return _FUSED_KINDS.get(type(self), {}).get(target_ndim)

    def config(self):
        return {}

    def __repr__(self):
        return f"{type(self).__name__}()"


class SoftmaxCrossEntropy(Loss):
    """Softmax + cross-entropy fused, from logits (the 'softmax loss'): stable for any finite logits.

    loss = mean_i [logsumexp(z_i) - z_i,label]; gradient (softmax(z) - onehot) / batch.
    """
    _label_kernel = staticmethod(kernels.softmax_ce_labels_w)
    _dense_kernel = staticmethod(kernels.softmax_ce_dense_w)
    _explicit_weights = True

    @staticmethod
    def output_probabilities(out):
        """Class probabilities from the network's output (logits)."""
        proba = np.empty_like(out)
        kernels.softmax(out, proba)
        return proba


class CrossEntropyLoss(Loss):
    """Cross-entropy on probabilities (the output of a SoftMax layer): mean_i -log p_i,label.

    ``pred`` must be probabilities: finite, in [0, 1] and each row summing to 1, both within
    ``probability_tolerance`` (a network using this loss must end in a SoftMax layer; for logits use
    SoftmaxCrossEntropy, which is also stabler)."""
    _label_kernel = staticmethod(kernels.cross_entropy_labels)
    _dense_kernel = staticmethod(kernels.cross_entropy_dense)

    @staticmethod
    def probability_tolerance(dtype, width):
        """How far a row of ``width`` probabilities of ``dtype`` may sum from 1: a SoftMax's rounding
        (16·width·eps) plus one central-difference step (4·cbrt(eps)), so that finite differences
        of this loss, which move one probability at a time, still see probabilities."""
        eps = float(np.finfo(dtype).eps)
        return 4 * float(np.cbrt(eps)) + 16 * width * eps

    def _check_pred(self, pred):
        tol = self.probability_tolerance(pred.dtype, pred.shape[1])
        bad = (pred < -tol) | (pred > 1 + tol)
        if bad.any():
            i, j = (int(k) for k in np.argwhere(bad)[0])
            raise ValueError(f"CrossEntropyLoss takes probabilities in [0, 1], but pred[{i}, {j}] is "
                             f"{float(pred[i, j])!r} ({int(bad.sum())} value(s) outside [0, 1]); for logits use "
                             f"SoftmaxCrossEntropy")
        sums = pred.sum(axis=1, dtype=np.float64)
        off = np.abs(sums - 1) > tol
        if off.any():
            i = int(np.argmax(off))
            raise ValueError(f"CrossEntropyLoss takes probabilities, but row {i} of pred sums to "
                             f"{sums[i]:.6g}, not 1 (tolerance {tol:.2g}; {int(off.sum())} row(s) off); end the "
                             f"network in a SoftMax layer, or use SoftmaxCrossEntropy on logits")

    @staticmethod
    def output_probabilities(out):
        return np.array(out)


class SigmoidCrossEntropy(Loss):
    """Sigmoid + binary cross-entropy fused, from logits: binary (one output) or multilabel (k outputs).

    pred: logits (batch, k), float32/float64. target: 0/1 labels (batch,) or (batch, 1) for one output;
    (batch, k) 0/1 indicators (soft targets in [0, 1] allowed) for k outputs.
    loss = mean_i Σ_j [max(z_ij, 0) - z_ij·y_ij + log1p(exp(-|z_ij|))] (stable: logits of ±1e4 give finite
    loss and gradient), gradient (sigmoid(z) - y) / batch — torch.nn.BCEWithLogitsLoss(reduction="sum")
    divided by the batch. ``predict`` gives int64 0/1 labels, (n,) for one output and (n, k) indicators
    for k; accuracy is subset accuracy (a row counts when every label is right), as scikit-learn's.
    """
    _dense_kernel = staticmethod(kernels.sigmoid_ce_w)
    _explicit_weights = True

    def check_target(self, y, name, n_samples, n_outputs, dtype):
        """(n, k) C-contiguous ``dtype`` targets in [0, 1]; (n,) is accepted for one output."""
        return _checks.indicators(y, name, n_samples, n_outputs, dtype)

    def predictions(self, out):
        """int64 0/1 labels: (n,) for one output, (n, k) indicators for k outputs (logit > 0)."""
        labels = (out > 0).astype(np.int64)
        return labels[:, 0] if labels.shape[1] == 1 else labels

    def count_correct(self, out, target):
        """Rows whose every label is right: logit > 0 exactly where the target is > 0.5."""
        return int(kernels.count_correct_indicators(out, target))

    @staticmethod
    def output_probabilities(out):
        """sigmoid(logits), the probability of each label, same shape and dtype as ``out``."""
        proba = np.empty_like(out)
        kernels.sigmoid(out, proba)
        return proba


class L2Loss(Loss):
    """0.5 * ||pred - target||² summed over outputs, mean over the batch; for regression."""
    classification = False
    _dense_kernel = staticmethod(kernels.l2_w)
    _explicit_weights = True


LOSS_TYPES = {cls.__name__: cls for cls in (SoftmaxCrossEntropy, CrossEntropyLoss, SigmoidCrossEntropy, L2Loss)}

_FUSED_KINDS = {SoftmaxCrossEntropy: {1: "ce_labels", 2: "ce_dense"}, L2Loss: {2: "l2"},
                SigmoidCrossEntropy: {2: "sigmoid"}}
