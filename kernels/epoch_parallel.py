"""The batch-parallel epoch kernel: the fused epoch of epoch.py, run by T threads at once.

Every one of the T threads calls the kernel ``variant(loss_kind, opt_kind)`` with its index t (fastnn/fused.py starts them);
they step through the epoch's mini-batches together, meeting at barriers (_sync.py). Per mini-batch of
nb rows:

1. rows: thread t takes rows [t·nb/T, (t+1)·nb/T) — gathers them, runs the forward pass, the loss head
   (divided by the whole batch's rows or weight sum, so that the blocks add up to the batch) and the
   backward pass of the deltas D[k] for its rows, with single-threaded GEMMs.  — barrier —
2. parameters: thread t takes rows [t·in_k/T, (t+1)·in_k/T) of every weight matrix W[k] (in_k, out_k)
   and columns [t·out_k/T, (t+1)·out_k/T) of every bias: their gradients over the whole batch,
   dW[k][i0:i1] = A[k][:, i0:i1]ᵀ · D[k+1] (one GEMM; no per-thread partial to reduce), the column sums,
   scikit-learn's penalty gradient, the squared norms, and whether the update of its range stays finite.
   — barrier —
3. every thread sums the per-thread partials (loss, correct, penalty, norms, finiteness) in thread order,
   so all take the same decision and the result is bit-identical for a given T; then it updates its
   parameter range with the checked optimizer arithmetic of optim.py (the per-layer path's). — barrier —

Arguments: those of epoch.train_epoch (its module docstring), without the serial kernel's bound-tracking
ones (x_absmax, blas_threads), plus t, T, ``sync`` (_sync.SYNC_SIZE,) int64 shared by the threads, zeroed
before they start, ``partials`` (T, L + 4) float64 shared scratch, and ``weight_buf`` (batch_size,) in X's
dtype (or (0,) unweighted) shared. Plain SGD takes the explicit-gradient route here (the serial kernel's
in-GEMM update cannot be split by range). Thread 0 returns the epoch's (loss summed over samples, correct,
steps, penalty) and writes ``status``; the others return the same figures. A thread that raises makes the
others leave at their next barrier (fused.py sets ``sync``'s abort flag).
"""
import math

import numpy as np

from . import optim
from ._blas import matmul, set_threads_local
from ._jit import inline_kernel, specialize
from ._sync import barrier
from .dense import column_sums
from .epoch import (FAIL_GRADIENT, FAIL_LOSS, FAIL_UPDATE, HEADS, OPT_ADAM, OPT_MOMENTUM, OPT_SGD, _LOSS_NAMES,
                    delta_through, forward_rows)

_LOSS, _RIGHT, _PENALTY, _FINITE = 0, 1, 2, 3      # columns of ``partials``; norms of layer k at 4 + k


@inline_kernel
def _span(t, T, n):
    """Thread t's share [lo, hi) of range(n), split in T nearly equal blocks."""
    return t * n // T, (t + 1) * n // T


@inline_kernel
def _sgd_finite(p, g, v, unused, hyper, step):
    return optim.sgd_momentum_is_finite(p, g, v, hyper[0], hyper[1], hyper[4], hyper[5] != 0)


@inline_kernel
def _sgd_write(p, g, v, unused, hyper, step):
    optim.sgd_momentum(p, g, v, hyper[0], hyper[1], hyper[4], hyper[5] != 0)


@inline_kernel
def _adam_finite(p, g, m, v, hyper, step):
    return optim.adam_is_finite(p, g, m, v, hyper[0], hyper[1], hyper[2], hyper[3], step, hyper[4],
                                hyper[5] != 0, hyper[7] != 0)


@inline_kernel
def _adam_write(p, g, m, v, hyper, step):
    optim.adam(p, g, m, v, hyper[0], hyper[1], hyper[2], hyper[3], step, hyper[4], hyper[5] != 0,
               hyper[7] != 0)


@inline_kernel
def _slot(s, lo, hi):
    """The state slice of a parameter range; an empty slot (no momentum) stays empty."""
    return s[lo:hi] if s.size else s


_HEAD = _FINITE_UPDATE = _WRITE_UPDATE = None     # bound per variant by specialize()


def _train_epoch_parallel(t, T, sync, partials, X, labels, targets, order, batch_size, W, b, dW, db, A, D, Z,
                          codes, act_params, loss_kind, params, grads, offsets, opt_kind, slot1, slot2, hyper,
                          step0, norms, status, label_buf, target_buf, weight_buf, sample_weights, Y, drop_thr,
                          drop_scale, dkey):
    """Thread t's part of one epoch (see the module's docstring)."""
    set_threads_local(1)
    n = X.shape[0]
    L = len(W)
    alpha = hyper[6]
    weighted = sample_weights.size > 0
    loss_sum = 0.0
    penalty_sum = 0.0
    correct = 0
    steps = 0
    if t == 0:
        status[0], status[1], status[2] = 0, -1, FAIL_LOSS
        norms[:] = 0
    batch = 0
    for start in range(0, n, batch_size):
        batch += 1
        nb = min(batch_size, n - start)
        denom = float(nb)
        if weighted:              # scikit-learn's sw_sum, summed as the serial kernel sums it
            denom = 0.0
            for i in range(nb):
                denom += sample_weights[order[start + i]]
        # 1. this thread's rows: forward, loss, deltas
        r0, r1 = _span(t, T, nb)
        loss, right = 0.0, 0
        if r1 > r0:
            forward_rows(X, order, start, r0, r1, W, b, A, Z, codes, act_params, 0, Y, drop_thr, drop_scale,
                         dkey, batch - 1)
            loss, right = _HEAD(loss_kind, A[L][r0:r1], D[L][r0:r1], labels, targets, order, start, r0,
                                label_buf, target_buf, sample_weights, weight_buf, denom)
            for k in range(L - 1, 0, -1):
                dx = D[k][r0:r1]
                matmul(D[k + 1][r0:r1], False, W[k], True, dx, 0)
                delta_through(k, r0, r1, codes, act_params, A, Z, Y, drop_thr, drop_scale, dkey, batch - 1, dx)
        partials[t, _LOSS] = loss
        partials[t, _RIGHT] = right
        if not barrier(sync, T):
            return loss_sum, correct, steps, penalty_sum
        loss, right = 0.0, 0
        for s in range(T):
            loss += partials[s, _LOSS]
            right += int(partials[s, _RIGHT])
        if not math.isfinite(loss):
            if t == 0:
                status[0], status[1], status[2] = batch, -1, FAIL_LOSS
            return loss_sum, correct, steps, penalty_sum
        # 2. this thread's parameter ranges: gradients, penalty, norms, finiteness of the update
        decay = params.dtype.type(alpha / denom if denom > 0 else 0.0)
        penalty = 0.0
        finite = True
        step = step0 + steps + 1
        for k in range(L):
            fan_in, fan_out = W[k].shape
            i0, i1 = _span(t, T, fan_in)
            j0, j1 = _span(t, T, fan_out)
            w0, w1 = offsets[k] + i0 * fan_out, offsets[k] + i1 * fan_out
            c0, c1 = offsets[k] + fan_in * fan_out + j0, offsets[k] + fan_in * fan_out + j1
            if alpha != 0:
                penalty += optim.squared_norm(params, w0, w1)
            if i1 > i0:
                matmul(A[k][:nb, i0:i1], True, D[k + 1][:nb], False, dW[k][i0:i1], 0)
                if alpha != 0:
                    for i in range(w0, w1):
                        grads[i] += decay * params[i]
            if j1 > j0:
                column_sums(D[k + 1][:nb, j0:j1], db[k][j0:j1])
            partials[t, 4 + k] = optim.squared_norm(grads, w0, w1) + optim.squared_norm(grads, c0, c1)
            for lo, hi in ((w0, w1), (c0, c1)):
                if hi > lo and finite:
                    finite = _FINITE_UPDATE(params[lo:hi], grads[lo:hi], _slot(slot1, lo, hi), _slot(slot2, lo, hi),
                                            hyper, step)
        partials[t, _PENALTY] = penalty
        partials[t, _FINITE] = 1.0 if finite else 0.0
        if not barrier(sync, T):
            return loss_sum, correct, steps, penalty_sum
        # 3. the same decision on every thread, then the update of this thread's ranges
        penalty = 0.0
        if alpha != 0:
            for s in range(T):
                penalty += partials[s, _PENALTY]
            penalty *= 0.5 * alpha * nb / denom if denom > 0 else 0.0
            if not math.isfinite(penalty):
                if t == 0:
                    status[0], status[1], status[2] = batch, -1, FAIL_LOSS
                return loss_sum, correct, steps, penalty_sum
        for k in range(L):
            sq = 0.0
            for s in range(T):
                sq += partials[s, 4 + k]
            if not math.isfinite(sq):
                if t == 0:
                    status[0], status[1], status[2] = batch, k, FAIL_GRADIENT
                return loss_sum, correct, steps, penalty_sum
            if t == 0:
                norms[k] += sq
        for s in range(T):
            if partials[s, _FINITE] == 0:
                if t == 0:
                    status[0], status[1], status[2] = batch, -1, FAIL_UPDATE
                return loss_sum, correct, steps, penalty_sum
        for k in range(L):
            fan_in, fan_out = W[k].shape
            i0, i1 = _span(t, T, fan_in)
            j0, j1 = _span(t, T, fan_out)
            w0, w1 = offsets[k] + i0 * fan_out, offsets[k] + i1 * fan_out
            c0, c1 = offsets[k] + fan_in * fan_out + j0, offsets[k] + fan_in * fan_out + j1
            for lo, hi in ((w0, w1), (c0, c1)):
                if hi > lo:
                    _WRITE_UPDATE(params[lo:hi], grads[lo:hi], _slot(slot1, lo, hi), _slot(slot2, lo, hi),
                                  hyper, step)
        correct += right
        steps += 1
        loss_sum += loss * nb
        penalty_sum += penalty
        if not barrier(sync, T):      # the new weights are written before any thread reads them
            return loss_sum, correct, steps, penalty_sum
    return loss_sum, correct, steps, penalty_sum


_UPDATES = {"sgd": (_sgd_finite, _sgd_write), "adam": (_adam_finite, _adam_write)}
_OPT_UPDATE = {OPT_SGD: "sgd", OPT_MOMENTUM: "sgd", OPT_ADAM: "adam"}
_VARIANTS = {(loss, update): specialize(_train_epoch_parallel, f"{_LOSS_NAMES[loss]}_{update}", _HEAD=head,
                                        _FINITE_UPDATE=finite, _WRITE_UPDATE=write)
             for loss, head in HEADS.items() for update, (finite, write) in _UPDATES.items()}


def variant(loss_kind, opt_kind):
    """The compiled kernel for this loss and optimizer, called as
    ``variant(...)(t, T, sync, partials, X, labels, ...)`` (arguments: the module's docstring)."""
    return _VARIANTS[loss_kind, _OPT_UPDATE[opt_kind]]
