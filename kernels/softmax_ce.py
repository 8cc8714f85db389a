"""Softmax and the losses of the classifier head.

Every loss returns the mean over the batch (accumulated in float64) and writes dL/d(input) into ``grad``
(same shape as the input). Labels are either integer class ids ``(batch,)`` int64 or a target
distribution ``(batch, classes)`` (one-hot, or soft labels) in the input's dtype. Softmax subtracts the row
maximum (log-sum-exp), so logits of ±1e4 give finite losses and gradients; so does the sigmoid
cross-entropy (max(z, 0) - z·t + log1p(exp(-|z|))).

Sample weights: every loss takes an optional last argument ``w`` (batch,) in the input's dtype. Without
it (omitted, compiled apart) the loss is the plain mean, loss = Σ_i l_i / n and grad_i = ∇l_i / n —
unchanged, bit for bit. With it the loss is scikit-learn's MLP weighting (``_backprop``: np.average with
``weights=sample_weight`` for the loss, deltas multiplied by w_i and divided by sw_sum = Σ w):

    loss = Σ_i w_i l_i / Σ_i w_i,        grad_i = w_i ∇l_i / Σ_i w_i.

A batch whose weights sum to zero has loss 0 and gradient 0 (scikit-learn would divide by zero).
The fused heads are compiled once per dtype: ``<head>_w`` takes ``w`` always as an array, (0,) for the
unweighted loss (the kernels call these); ``<head>`` is the same with ``w`` optional, for Python callers.

The fused heads (softmax_ce_*, l2, sigmoid_ce) take ``norm``: -1 (the default) divides by the rows (or the
weights) given, as above; ``norm`` ≥ 0 is the whole batch's row count (or weight sum), so that a
block of a batch's rows (the batch-parallel kernel, epoch_parallel.py) gets the batch's gradient, and the
blocks' losses add up to the batch's.
"""
import math

import numpy as np

from ._jit import internal_kernel, kernel


@internal_kernel
def _weight_sum(w, like):
    """Σ w in float64 (the sample weights of a batch, one per row of ``like``)."""
    s = 0.0
    for i in range(like.shape[0]):
        s += w[i]
    return s


@kernel
def softmax(z, out):
    """Row-wise softmax of z (batch, classes) into out (may alias z)."""
    n, m = z.shape
    for i in range(n):
        zmax = z[i, 0]
        for j in range(1, m):
            if z[i, j] > zmax:
                zmax = z[i, j]
        s = 0.0
        for j in range(m):
            e = math.exp(z[i, j] - zmax)
            out[i, j] = e
            s += e
        inv = out.dtype.type(1 / s)
        for j in range(m):
            out[i, j] *= inv


@kernel
def softmax_backward(y, dy, dx):
    """dx = y * (dy - sum(dy * y)) row by row, from the softmax output y."""
    n, m = y.shape
    for i in range(n):
        s = 0.0
        for j in range(m):
            s += dy[i, j] * y[i, j]
        for j in range(m):
            dx[i, j] = y[i, j] * (dy[i, j] - s)


@kernel
def softmax_ce_labels_w(z, labels, grad, w, norm):
    """Fused softmax cross-entropy from logits z and int labels; grad = (softmax - onehot) / batch
    (weighted: see the module's docstring)."""
    n, m = z.shape
    total = 0.0
    inv_n = 1.0 / n if norm < 0 else 1.0 / norm
    weighted = w.size > 0         # (0,): unweighted
    wsum = 1.0
    if weighted:
        wsum = _weight_sum(w, grad) if norm < 0 else norm
        if wsum == 0:
            grad[:] = 0
            return 0.0
    for i in range(n):
        if weighted:
            inv_n = w[i] / wsum
        zmax = z[i, 0]
        for j in range(1, m):
            if z[i, j] > zmax:
                zmax = z[i, j]
        s = 0.0
        for j in range(m):
            e = math.exp(z[i, j] - zmax)
            grad[i, j] = e
            s += e
        c = labels[i]
        # log Σ exp(z - max) - (z_c - max): adding max first would lose log s next to a huge max (G3)
        row_loss = math.log(s) - (float(z[i, c]) - float(zmax))
        if not weighted:
            total += row_loss
        else:
            total += w[i] * row_loss
        scale = grad.dtype.type(inv_n / s)
        for j in range(m):
            grad[i, j] *= scale
        grad[i, c] -= inv_n
    if weighted:
        return total / wsum
    return total * inv_n


@kernel
def softmax_ce_labels(z, labels, grad, w=None, norm=-1.0):
    """``softmax_ce_labels_w`` with ``w`` optional (None or left out: unweighted)."""
    if w is None:
        return softmax_ce_labels_w(z, labels, grad, np.empty(0, grad.dtype), norm)
    return softmax_ce_labels_w(z, labels, grad, w, norm)


@kernel
def softmax_ce_dense_w(z, t, grad, w, norm):
    """Fused softmax cross-entropy against a target distribution t (batch, classes).

    loss_i = sum_j t_ij (lse_i - z_ij); grad = (sum_j t_ij * softmax_i - t_i) / batch (weighted: see the
    module's docstring).
    """
    n, m = z.shape
    total = 0.0
    inv_n = 1.0 / n if norm < 0 else 1.0 / norm
    weighted = w.size > 0         # (0,): unweighted
    wsum = 1.0
    if weighted:
        wsum = _weight_sum(w, grad) if norm < 0 else norm
        if wsum == 0:
            grad[:] = 0
            return 0.0
    for i in range(n):
        if weighted:
            inv_n = w[i] / wsum
        zmax = z[i, 0]
        for j in range(1, m):
            if z[i, j] > zmax:
                zmax = z[i, j]
        s = 0.0
        for j in range(m):
            e = math.exp(z[i, j] - zmax)
            grad[i, j] = e
            s += e
        log_s = math.log(s)          # lse - z_j as log s - (z_j - max): exact next to a huge max (G3)
        tsum = 0.0
        row = 0.0
        for j in range(m):
            tsum += t[i, j]
            if t[i, j] != 0:
                if not weighted:
                    total += t[i, j] * (log_s - (float(z[i, j]) - float(zmax)))
                else:
                    row += t[i, j] * (log_s - (float(z[i, j]) - float(zmax)))
        if weighted:
            total += w[i] * row
        scale = tsum * inv_n / s
        for j in range(m):
            grad[i, j] = grad[i, j] * scale - t[i, j] * inv_n
    if weighted:
        return total / wsum
    return total * inv_n


@kernel
def softmax_ce_dense(z, t, grad, w=None, norm=-1.0):
    """``softmax_ce_dense_w`` with ``w`` optional (None or left out: unweighted)."""
    if w is None:
        return softmax_ce_dense_w(z, t, grad, np.empty(0, grad.dtype), norm)
    return softmax_ce_dense_w(z, t, grad, w, norm)


@kernel
def cross_entropy_labels(p, labels, grad, w=None):
    """Cross-entropy on probabilities p with int labels: mean of -log p[label].

    p is clamped below at the dtype's smallest normal number so that a zero probability gives a large,
    finite loss instead of inf.
    """
    n, m = p.shape
    tiny = np.finfo(p.dtype).tiny
    total = 0.0
    inv_n = 1.0 / n
    grad[:] = 0
    if w is not None:
        wsum = _weight_sum(w, grad)
        if wsum == 0:
            grad[:] = 0
            return 0.0
    for i in range(n):
        pc = max(p[i, labels[i]], tiny)
        if w is None:
            total -= math.log(pc)
        else:
            inv_n = w[i] / wsum
            total -= w[i] * math.log(pc)
        grad[i, labels[i]] = -inv_n / pc
    if w is not None:
        return total / wsum
    return total * inv_n


@kernel
def cross_entropy_dense(p, t, grad, w=None):
    """Cross-entropy on probabilities p against a target distribution t: mean of -sum_j t_j log p_j
    (weighted: see the module's docstring)."""
    n, m = p.shape
    tiny = np.finfo(p.dtype).tiny
    total = 0.0
    inv_n = 1.0 / n
    if w is not None:
        wsum = _weight_sum(w, grad)
        if wsum == 0:
            grad[:] = 0
            return 0.0
    for i in range(n):
        row = 0.0
        if w is not None:
            inv_n = w[i] / wsum
        for j in range(m):
            pj = max(p[i, j], tiny)
            if t[i, j] != 0:
                if w is None:
                    total -= t[i, j] * math.log(pj)
                else:
                    row -= t[i, j] * math.log(pj)
            grad[i, j] = -t[i, j] * inv_n / pj
        if w is not None:
            total += w[i] * row
    if w is not None:
        return total / wsum
    return total * inv_n


@kernel
def l2_w(pred, target, grad, w, norm):
    """0.5 * ||pred - target||² summed over outputs, mean over the batch; grad = (pred - target) / batch
    (weighted: see the module's docstring)."""
    n, m = pred.shape
    total = 0.0
    inv_n = 1.0 / n if norm < 0 else 1.0 / norm
    weighted = w.size > 0         # (0,): unweighted
    wsum = 1.0
    if weighted:
        wsum = _weight_sum(w, grad) if norm < 0 else norm
        if wsum == 0:
            grad[:] = 0
            return 0.0
    for i in range(n):
        row = 0.0
        if weighted:
            inv_n = w[i] / wsum
        for j in range(m):
            d = pred[i, j] - target[i, j]
            if not weighted:
                total += 0.5 * d * d
            else:
                row += 0.5 * d * d
            grad[i, j] = d * inv_n
        if weighted:
            total += w[i] * row
    if weighted:
        return total / wsum
    return total * inv_n


@kernel
def l2(pred, target, grad, w=None, norm=-1.0):
    """``l2_w`` with ``w`` optional (None or left out: unweighted)."""
    if w is None:
        return l2_w(pred, target, grad, np.empty(0, grad.dtype), norm)
    return l2_w(pred, target, grad, w, norm)


@kernel
def sigmoid_ce_w(z, t, grad, w, norm):
    """Sigmoid cross-entropy from logits z (batch, outputs) against targets t (batch, outputs) in [0, 1]
    (0/1 labels, multilabel indicators or soft targets); torch's BCEWithLogitsLoss(reduction="sum") / batch.

    loss = mean_i Σ_j [max(z_ij, 0) - z_ij·t_ij + log1p(exp(-|z_ij|))]; grad = (sigmoid(z) - t) / batch
    (weighted: see the module's docstring). exp only ever sees -|z|, so any finite logit gives a finite
    loss and gradient. Computed in float64, stored in the input's dtype.
    """
    n, m = z.shape
    total = 0.0
    inv_n = 1.0 / n if norm < 0 else 1.0 / norm
    weighted = w.size > 0         # (0,): unweighted
    wsum = 1.0
    if weighted:
        wsum = _weight_sum(w, grad) if norm < 0 else norm
        if wsum == 0:
            grad[:] = 0
            return 0.0
    for i in range(n):
        row = 0.0
        if weighted:
            inv_n = w[i] / wsum
        for j in range(m):
            x = np.float64(z[i, j])
            y = np.float64(t[i, j])
            e = math.exp(-abs(x))
            row += max(x, 0.0) - x * y + math.log1p(e)
            p = 1.0 / (1.0 + e) if x >= 0 else e / (1.0 + e)
            grad[i, j] = (p - y) * inv_n
        if not weighted:
            total += row
        else:
            total += w[i] * row
    if weighted:
        return total / wsum
    return total * inv_n


@kernel
def sigmoid_ce(z, t, grad, w=None, norm=-1.0):
    """``sigmoid_ce_w`` with ``w`` optional (None or left out: unweighted)."""
    if w is None:
        return sigmoid_ce_w(z, t, grad, np.empty(0, grad.dtype), norm)
    return sigmoid_ce_w(z, t, grad, w, norm)


@kernel
def sigmoid(z, out):
    """out = 1 / (1 + exp(-z)) elementwise (may alias z), stable for any finite z."""
    a = z.reshape(-1)
    b = out.reshape(-1)
    for k in range(a.size):
        x = np.float64(a[k])
        e = math.exp(-abs(x))
        b[k] = 1.0 / (1.0 + e) if x >= 0 else e / (1.0 + e)


@kernel
def count_correct_indicators(out, t):
    """How many rows of logits out (batch, outputs) predict every label of t right: out > 0 where
    t > 0.5, out <= 0 elsewhere (subset accuracy, as scikit-learn's accuracy_score on multilabel)."""
    correct = 0
    for i in range(out.shape[0]):
        right = True
        for j in range(out.shape[1]):
            if (out[i, j] > 0) != (t[i, j] > 0.5):
                right = False
                break
        correct += right
    return correct


@kernel
def count_correct_labels(out, labels):
    """How many rows of out (batch, classes) have their argmax (first maximum) equal to the label."""
    correct = 0
    for i in range(out.shape[0]):
        best = 0
        for j in range(1, out.shape[1]):
            if out[i, j] > out[i, best]:
                best = j
        correct += best == labels[i]
    return correct


@kernel
def count_correct_dense(out, t):
    """How many rows of out and of the target distribution t share their argmax."""
    correct = 0
    for i in range(out.shape[0]):
        best = tbest = 0
        for j in range(1, out.shape[1]):
            if out[i, j] > out[i, best]:
                best = j
            if t[i, j] > t[i, tbest]:
                tbest = j
        correct += best == tbest
    return correct
