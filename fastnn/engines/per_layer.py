"""The per-layer engine: one epoch of any network (custom layers too), layer by layer, batch by batch.

See fastnn.engines for the protocol. Batch b's Dropout masks are keyed (progress.dropout_key, b, 0)
(layers.Dropout), the same masks the fused kernel draws.
"""
import math

import numpy as np

from .. import signals
from .._checks import NonFiniteInput
from ..errors import NonFiniteUpdateError, TrainingDivergedError
from ..kernels import batch as batch_kernels
from ..layers import has_keyed_layers
from ..network import count_correct


def step(net, plan, epoch, batch):
    """``plan.optimizer.step`` on the plan's parameters, as one step that a signal cannot cut in half (the
    weights, the moments and ``optimizer.steps`` change together); a non-finite gradient or update raises
    TrainingDivergedError naming epoch, batch (1-based) and, for a gradient, the layer."""
    try:
        with signals.critical(), net.weights_changing():
            plan.optimizer.step(list(plan.opt_params), list(plan.opt_grads))
    except NonFiniteUpdateError:
        norms = net.gradient_norms()
        if np.isfinite(norms).all():
            raise TrainingDivergedError(epoch, batch, what="parameter update") from None
        layer = plan.param_layers[int(np.argmin(np.isfinite(norms)))]
        raise TrainingDivergedError(epoch, batch, layer, what="gradient") from None


class LayerEpoch:
    """``LayerEpoch(net, X, y, batch_size, weights)(order, epoch, progress)`` -> (mean loss, correct).

    X (n, features), y (n,) labels or (n, outputs), weights None or (n,): checked by the loop. Batch
    buffers are allocated once per fit; the batch's rows are gathered into them by ``order``.
    """

    #: the rows of each batch are checked as they are gathered (NaN/Inf: ``_checks.NonFiniteInput``), so the
    #: loop makes no pass over X first — and X written by a callback mid-fit is checked too, as in the fused
    #: kernel
    checks_input = True

    def __init__(self, net, X, y, batch_size, weights):
        self.net, self.X, self.y, self.bs, self.weights = net, X, y, batch_size, weights
        self.x_buf = np.empty((batch_size,) + X.shape[1:], X.dtype)
        self.y_buf = np.empty((batch_size,) + y.shape[1:], y.dtype)
        self.w_buf = None if weights is None else np.empty(batch_size, weights.dtype)
        self.gather_y = batch_kernels.gather if y.ndim == 1 else batch_kernels.gather_rows
        self.keyed = has_keyed_layers(net)

    def __call__(self, order, epoch, progress):
        net, X, bs = self.net, self.X, self.bs
        loss_sum, correct, first = progress.loss_sum, progress.correct, progress.batches
        plan = progress.plan if progress.plan is not None else net.plan()
        loss_fn = plan.loss
        for b, start in enumerate(range(first * bs, len(X), bs), first):
            progress.check()
            nb = min(bs, len(X) - start)
            xb, yb = self.x_buf[:nb], self.y_buf[:nb]
            batch_kernels.gather_rows(X, order, start, xb)
            if not np.isfinite(xb).all():
                bad = int(np.argmin(np.isfinite(xb).all(axis=1)))
                raise NonFiniteInput(int(order[start + bad]))
            self.gather_y(self.y, order, start, yb)
            out = net.train_forward(xb, (progress.dropout_key, b, 0)) if self.keyed else net.train_forward(xb)
            wb = None
            if self.weights is not None:
                wb = self.w_buf[:nb]
                batch_kernels.gather(self.weights, order, start, wb)
            loss = loss_fn.forward_unchecked(out, yb, wb)
            if not math.isfinite(loss):
                raise TrainingDivergedError(epoch, b + 1)
            if net.classification:
                correct += count_correct(out, yb, loss_fn)
            net.train_backward()
            step(net, plan, epoch, b + 1)
            loss_sum += loss * nb * loss_fn.report_scale
            progress.done(b + 1, loss_sum, correct)
        return loss_sum / len(X), correct
