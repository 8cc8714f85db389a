"""Softmax and the losses of the classifier head.

Every loss returns the mean over the batch (accumulated in float64) and writes dL/d(input) into ``grad``
(same shape as the input). Labels are either integer class ids ``(batch,)`` int64 or a target
distribution ``(batch, classes)`` (one-hot, or soft labels) in the input's dtype. Softmax subtracts the row
maximum (log-sum-exp), so logits of ±1e4 give finite losses and gradients.
"""
import math

import numpy as np

from ._jit import kernel


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
def softmax_ce_labels(z, labels, grad):
    """Fused softmax cross-entropy from logits z and int labels; grad = (softmax - onehot) / batch."""
    n, m = z.shape
    total = 0.0
    inv_n = 1.0 / n
    for i in range(n):
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
        total += zmax + math.log(s) - z[i, c]
        scale = grad.dtype.type(inv_n / s)
        for j in range(m):
            grad[i, j] *= scale
        grad[i, c] -= inv_n
    return total * inv_n


@kernel
def softmax_ce_dense(z, t, grad):
    """Fused softmax cross-entropy against a target distribution t (batch, classes).

    loss_i = sum_j t_ij (lse_i - z_ij); grad = (sum_j t_ij * softmax_i - t_i) / batch.
    """
    n, m = z.shape
    total = 0.0
    inv_n = 1.0 / n
    for i in range(n):
        zmax = z[i, 0]
        for j in range(1, m):
            if z[i, j] > zmax:
                zmax = z[i, j]
        s = 0.0
        for j in range(m):
            e = math.exp(z[i, j] - zmax)
            grad[i, j] = e
            s += e
        lse = zmax + math.log(s)
        tsum = 0.0
        for j in range(m):
            tsum += t[i, j]
            if t[i, j] != 0:
                total += t[i, j] * (lse - z[i, j])
        scale = tsum * inv_n / s
        for j in range(m):
            grad[i, j] = grad[i, j] * scale - t[i, j] * inv_n
    return total * inv_n


@kernel
def cross_entropy_labels(p, labels, grad):
    """Cross-entropy on probabilities p with int labels: mean of -log p[label].

    p is clamped below at the dtype's smallest normal number so that a zero probability gives a large,
    finite loss instead of inf.
    """
    n, m = p.shape
    tiny = np.finfo(p.dtype).tiny
    total = 0.0
    inv_n = 1.0 / n
    grad[:] = 0
    for i in range(n):
        pc = max(p[i, labels[i]], tiny)
        total -= math.log(pc)
        grad[i, labels[i]] = -inv_n / pc
    return total * inv_n


@kernel
def cross_entropy_dense(p, t, grad):
    """Cross-entropy on probabilities p against a target distribution t: mean of -sum_j t_j log p_j."""
    n, m = p.shape
    tiny = np.finfo(p.dtype).tiny
    total = 0.0
    inv_n = 1.0 / n
    for i in range(n):
        for j in range(m):
            pj = max(p[i, j], tiny)
            if t[i, j] != 0:
                total -= t[i, j] * math.log(pj)
            grad[i, j] = -t[i, j] * inv_n / pj
    return total * inv_n


@kernel
def l2(pred, target, grad):
    """0.5 * ||pred - target||² summed over outputs, mean over the batch; grad = (pred - target) / batch."""
    n, m = pred.shape
    total = 0.0
    inv_n = 1.0 / n
    for i in range(n):
        for j in range(m):
            d = pred[i, j] - target[i, j]
            total += 0.5 * d * d
            grad[i, j] = d * inv_n
    return total * inv_n


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
