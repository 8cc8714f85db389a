"""Losses: ``forward(pred, target) -> float`` (mean over the batch), ``backward() -> dL/dpred``.

Classification targets are int class ids (batch,) or a target distribution / one-hot (batch, classes);
regression targets are (batch, outputs). The gradient lives in a buffer reused by the next forward.
"""
import numpy as np

from . import _checks
from .kernels import softmax_ce as kernels
from .layers import Owned


class Loss(Owned):
    """Base class; subclasses set the kernels and whether targets are class labels."""

    classification = True
    _label_kernel = _dense_kernel = None

    def __init__(self):
        self._grad_buf = None
        self._grad = None

    def _check(self, pred, target):
        pred = _checks.matrix(pred, "pred", _checks.float_dtype_of(pred), check_finite=False)
        n, m = pred.shape
        if self.classification:
            target = _checks.labels(target, "target", n, m, pred.dtype)
        else:
            target = _checks.targets(target, "target", n, m, pred.dtype)
        return pred, target

    def forward(self, pred, target):
        """Mean loss over the batch for pred (batch, outputs) and target; checked."""
        pred, target = self._check(pred, target)
        self._direct_call()
        return self._forward(pred, target)

    def _forward(self, pred, target):
        buf = self._grad_buf
        if buf is None or buf.shape[0] < pred.shape[0] or buf.shape[1] != pred.shape[1] \
                or buf.dtype != pred.dtype:
            buf = self._grad_buf = np.empty(pred.shape, pred.dtype)
        self._grad = grad = buf[:pred.shape[0]]
        kernel = self._label_kernel if target.ndim == 1 else self._dense_kernel
        return float(kernel(pred, target, grad))

    def evaluate(self, pred, target):
        """The mean loss of checked pred / target without touching this loss's buffers (so that it can run
        in any thread, beside a training step)."""
        kernel = self._label_kernel if target.ndim == 1 else self._dense_kernel
        return float(kernel(pred, target, np.empty(pred.shape, pred.dtype)))

    def backward(self):
        """dL/dpred of the last forward, shape (batch, outputs)."""
        if self._grad is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        return self._grad

    def config(self):
        return {}

    def __repr__(self):
        return f"{type(self).__name__}()"


class SoftmaxCrossEntropy(Loss):
    """Softmax + cross-entropy fused, from logits (the 'softmax loss'): stable for any finite logits.

    loss = mean_i [logsumexp(z_i) - z_i,label]; gradient (softmax(z) - onehot) / batch.
    """
    _label_kernel = staticmethod(kernels.softmax_ce_labels)
    _dense_kernel = staticmethod(kernels.softmax_ce_dense)

    @staticmethod
    def output_probabilities(out):
        """Class probabilities from the network's output (logits)."""
        proba = np.empty_like(out)
        kernels.softmax(out, proba)
        return proba


class CrossEntropyLoss(Loss):
    """Cross-entropy on probabilities (the output of a SoftMax layer): mean_i -log p_i,label."""
    _label_kernel = staticmethod(kernels.cross_entropy_labels)
    _dense_kernel = staticmethod(kernels.cross_entropy_dense)

    @staticmethod
    def output_probabilities(out):
        return np.array(out)


class L2Loss(Loss):
    """0.5 * ||pred - target||² summed over outputs, mean over the batch; for regression."""
    classification = False
    _dense_kernel = staticmethod(kernels.l2)


LOSS_TYPES = {cls.__name__: cls for cls in (SoftmaxCrossEntropy, CrossEntropyLoss, L2Loss)}
