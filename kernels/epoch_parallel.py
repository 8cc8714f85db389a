"""The batch-parallel epoch kernel: the fused epoch of epoch.py, its every mini-batch split in T blocks.

Threads started by fastnn/fused.py all call the kernel ``variant(loss_kind, opt_kind)``; they claim blocks
from a shared counter (_sync.py), so that what is computed depends on T alone — bit-identical for a given
T — and a thread that the OS does not schedule holds nobody up but for the block it is running. Per
mini-batch of nb rows, three phases of T blocks, each phase starting when the previous one is done:

0. rows: block b takes rows [b·nb/T, (b+1)·nb/T) — gathers them, runs the forward pass, the loss head
   (divided by the whole batch's rows or weight sum, so that the blocks add up to the batch) and the
   backward pass of the deltas D[k] for its rows, with single-threaded GEMMs.
1. gradients: block b takes rows [b·in_k/T, (b+1)·in_k/T) of every weight matrix W[k] (in_k, out_k)
   and columns [b·out_k/T, (b+1)·out_k/T) of every bias: their gradients over the whole batch,
   dW[k][i0:i1] = A[k][:, i0:i1]ᵀ · D[k+1] (one GEMM; no per-thread partial to reduce), the column sums,
   scikit-learn's penalty gradient, the squared norms, and whether the update of its range stays finite.
2. update: every block sums the per-block partials (loss, penalty, norms, finiteness) in block order,
   so all reach the same verdict; then it updates its parameter ranges with the checked optimizer
   arithmetic of optim.py (the per-layer path's); block 0 adds the batch to the epoch's totals.

When thread 0 has waited for the others longer than it worked (a core shared with other work: see
_sync.py), the others retire and thread 0 runs the remaining blocks alone, with the same numbers.

Arguments: those of epoch.train_epoch (its module docstring), without the serial kernel's bound-tracking
ones (x_absmax, blas_threads), plus t (the thread's index), T (the blocks per phase), ``sync``
(_sync.SYNC_SIZE,) int64 zeroed, ``partials`` (T, L + 4) float64, ``totals`` (4,) float64 zeroed: receives
the epoch's (loss summed over samples, correct, steps, penalty), and ``weight_buf`` (batch_size,) in X's
dtype (or (0,) unweighted); ``status`` must hold [0, -1, FAIL_LOSS] and ``norms`` zeros on entry. All are
shared by the threads. Plain SGD takes the explicit-gradient route here (the serial kernel's in-GEMM
update cannot be split by range). On a non-finite loss, gradient or update the kernel stops before that
batch's update (``status`` as in epoch.py). A thread that raises sets ``sync``'s abort flag (fused.py):
the others return at once.
"""
import math

import numpy as np

from . import optim
from ._blas import matmul, set_threads_local
from ._jit import inline_kernel, specialize
from ._sync import CLAIMED, DONE, RETIRE, STOP, atomic_add, atomic_load, atomic_store, cycles, wait_until_done
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


@inline_kernel
def _ranges(k, blk, T, W, offsets):
    """Block blk's parameter ranges of layer k: rows [i0, i1) of W[k], columns [j0, j1) of b[k], and their
    flat ranges [w0, w1), [c0, c1) in the parameter buffer."""
    fan_in, fan_out = W[k].shape
    i0, i1 = _span(blk, T, fan_in)
    j0, j1 = _span(blk, T, fan_out)
    bias = offsets[k] + fan_in * fan_out
    return i0, i1, j0, j1, offsets[k] + i0 * fan_out, offsets[k] + i1 * fan_out, bias + j0, bias + j1


@inline_kernel
def _batch_denominator(sample_weights, order, start, nb):
    """The batch's rows, or its weight sum (scikit-learn's sw_sum) summed as the serial kernel sums it."""
    if sample_weights.size == 0:
        return float(nb)
    denom = 0.0
    for i in range(nb):
        denom += sample_weights[order[start + i]]
    return denom


@inline_kernel
def _stop(sync, status, blk, batch, layer, what):
    """Every block of a phase reaches the same verdict; block 0 writes it, and the threads stop claiming."""
    if blk == 0:
        status[0], status[1], status[2] = batch, layer, what
    atomic_store(sync, STOP, 1)


_HEAD = _FINITE_UPDATE = _WRITE_UPDATE = None     # bound per variant by specialize()
_PHASES = 3      # per mini-batch: rows, gradients, update


def _train_epoch_parallel(t, T, sync, partials, totals, X, labels, targets, order, batch_size, W, b, dW, db, A, D,
                          Z, codes, act_params, loss_kind, params, grads, offsets, opt_kind, slot1, slot2, hyper,
                          step0, norms, status, label_buf, target_buf, weight_buf, sample_weights, Y, drop_thr,
                          drop_scale, dkey):
    """Run blocks of one epoch until none is left (see the module's docstring); t is this thread's index,
    used for nothing but its name: which blocks it runs depends on the others."""
    set_threads_local(1)
    n = X.shape[0]
    L = len(W)
    alpha = hyper[6]
    phases = _PHASES * ((n + batch_size - 1) // batch_size)
    waited = worked = 0
    while True:
        if t > 0 and atomic_load(sync, RETIRE) != 0:
            return
        claimed = atomic_add(sync, CLAIMED, 1)
        g, blk = claimed // T, claimed % T
        if g >= phases:
            return
        before = cycles()
        if not wait_until_done(sync, g * T) or atomic_load(sync, STOP) != 0:
            return
        began = cycles()
        waited += began - before
        batch, phase = g // _PHASES, g % _PHASES        # batch: 0-based
        start = batch * batch_size
        nb = min(batch_size, n - start)
        denom = _batch_denominator(sample_weights, order, start, nb)
        if phase == 0:            # rows: forward, loss, deltas
            r0, r1 = _span(blk, T, nb)
            loss, right = 0.0, 0
            if r1 > r0:
                forward_rows(X, order, start, r0, r1, W, b, A, Z, codes, act_params, 0, Y, drop_thr, drop_scale,
                             dkey, batch)
                loss, right = _HEAD(loss_kind, A[L][r0:r1], D[L][r0:r1], labels, targets, order, start, r0,
                                    label_buf, target_buf, sample_weights, weight_buf, denom)
                for k in range(L - 1, 0, -1):
                    dx = D[k][r0:r1]
                    matmul(D[k + 1][r0:r1], False, W[k], True, dx, 0)
                    delta_through(k, r0, r1, codes, act_params, A, Z, Y, drop_thr, drop_scale, dkey, batch, dx)
            partials[blk, _LOSS] = loss
            partials[blk, _RIGHT] = right
        elif phase == 1:          # gradients of this block's parameter ranges
            loss = 0.0
            for s in range(T):
                loss += partials[s, _LOSS]
            if not math.isfinite(loss):
                _stop(sync, status, blk, batch + 1, -1, FAIL_LOSS)
            else:
                decay = params.dtype.type(alpha / denom if denom > 0 else 0.0)
                penalty = 0.0
                finite = True
                step = step0 + batch + 1      # every batch before this one took its step
                for k in range(L):
                    i0, i1, j0, j1, w0, w1, c0, c1 = _ranges(k, blk, T, W, offsets)
                    if alpha != 0:
                        penalty += optim.squared_norm(params, w0, w1)
                    if i1 > i0:
                        matmul(A[k][:nb, i0:i1], True, D[k + 1][:nb], False, dW[k][i0:i1], 0)
                        if alpha != 0:
                            for i in range(w0, w1):
                                grads[i] += decay * params[i]
                    if j1 > j0:
                        column_sums(D[k + 1][:nb, j0:j1], db[k][j0:j1])
                    partials[blk, 4 + k] = optim.squared_norm(grads, w0, w1) + optim.squared_norm(grads, c0, c1)
                    for lo, hi in ((w0, w1), (c0, c1)):
                        if hi > lo and finite:
                            finite = _FINITE_UPDATE(params[lo:hi], grads[lo:hi], _slot(slot1, lo, hi),
                                                    _slot(slot2, lo, hi), hyper, step)
                partials[blk, _PENALTY] = penalty
                partials[blk, _FINITE] = 1.0 if finite else 0.0
        else:                     # the verdict (the same in every block), then the update of this block's ranges
            penalty = 0.0
            failed = False
            if alpha != 0:
                for s in range(T):
                    penalty += partials[s, _PENALTY]
                penalty *= 0.5 * alpha * nb / denom if denom > 0 else 0.0
                if not math.isfinite(penalty):
                    _stop(sync, status, blk, batch + 1, -1, FAIL_LOSS)
                    failed = True
            for k in range(L):
                if not failed:
                    sq = 0.0
                    for s in range(T):
                        sq += partials[s, 4 + k]
                    if not math.isfinite(sq):
                        _stop(sync, status, blk, batch + 1, k, FAIL_GRADIENT)
                        failed = True
            for s in range(T):
                if not failed and partials[s, _FINITE] == 0:
                    _stop(sync, status, blk, batch + 1, -1, FAIL_UPDATE)
                    failed = True
            if not failed:
                step = step0 + batch + 1      # every batch before this one took its step
                for k in range(L):
                    i0, i1, j0, j1, w0, w1, c0, c1 = _ranges(k, blk, T, W, offsets)
                    for lo, hi in ((w0, w1), (c0, c1)):
                        if hi > lo:
                            _WRITE_UPDATE(params[lo:hi], grads[lo:hi], _slot(slot1, lo, hi), _slot(slot2, lo, hi),
                                          hyper, step)
                if blk == 0:          # the epoch's figures, in batch order
                    loss, right = 0.0, 0
                    for s in range(T):
                        loss += partials[s, _LOSS]
                        right += int(partials[s, _RIGHT])
                    for k in range(L):
                        sq = 0.0
                        for s in range(T):
                            sq += partials[s, 4 + k]
                        norms[k] += sq
                    totals[0] += loss * nb
                    totals[1] += right
                    totals[2] += 1
                    totals[3] += penalty
        atomic_add(sync, DONE, 1)
        if t == 0:
            worked += cycles() - began
            if waited > worked and g >= _PHASES * 4:      # another thread holds us up: run on alone
                atomic_store(sync, RETIRE, 1)


_UPDATES = {"sgd": (_sgd_finite, _sgd_write), "adam": (_adam_finite, _adam_write)}
_OPT_UPDATE = {OPT_SGD: "sgd", OPT_MOMENTUM: "sgd", OPT_ADAM: "adam"}
_VARIANTS = {(loss, update): specialize(_train_epoch_parallel, f"{_LOSS_NAMES[loss]}_{update}", _HEAD=head,
                                        _FINITE_UPDATE=finite, _WRITE_UPDATE=write)
             for loss, head in HEADS.items() for update, (finite, write) in _UPDATES.items()}


def variant(loss_kind, opt_kind):
    """The compiled kernel for this loss and optimizer, called as
    ``variant(...)(t, T, sync, partials, totals, X, labels, ...)`` (arguments: the module's docstring)."""
    return _VARIANTS[loss_kind, _OPT_UPDATE[opt_kind]]
