"""The batch-parallel epoch kernel: the fused epoch of epoch.py, its every mini-batch split in T blocks.

Threads started by fastnn/engines/fused.py all call the kernel ``variant(loss_kind, opt_kind)``; they claim blocks
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

Plain SGD (OPT_SGD) has two phases per batch, as fast as the serial kernel's step: phase 0 also bounds
max |A[k]| and max |D[k]| of its rows, and phase 1 proves the step finite from those bounds (the serial
kernel's proof) and updates each block's ranges inside the weight-gradient GEMM,
W[k][i0:i1] += -lr·A[k][:, i0:i1]ᵀ·D[k+1] — no gradient buffer, no pass over the weights but the GEMM.

When thread 0 has waited for the others longer than it worked (a core shared with other work: see
_sync.py), the others retire and thread 0 runs the remaining blocks alone, with the same numbers.

Arguments: those of epoch.train_epoch (its module docstring) but ``blas_threads`` (every GEMM here is
single-threaded), plus t (the thread's index), T (the blocks per phase), ``sync`` (_sync.SYNC_SIZE,) int64
zeroed, ``partials`` (T, partials_columns(L)) float64, ``clock`` (T, 4) int64 zeroed: receives each
thread's CPU cycles spent waiting and working in phases 0, 1, 2 (for benchmarks: where the time goes), ``totals`` (4,) float64 zeroed: receives the epoch's
(loss summed over samples, correct, steps, penalty), ``wbound`` (T, L) float64 of inf (plain SGD's running
bounds), and ``weight_buf`` (batch_size,) in X's dtype (or (0,) unweighted); ``status`` must hold
[0, -1, FAIL_LOSS] and ``norms`` zeros on entry. All are shared by the threads. On a non-finite loss,
gradient or update the kernel stops before that batch's update (``status`` as in epoch.py). A thread that
raises sets ``sync``'s abort flag (fastnn/engines/fused.py): the others return at once.
"""
import math

import numpy as np

from . import optim
from ._blas import gemm, matmul, set_threads_local
from ._jit import inline_kernel, specialize
from ._sync import CLAIMED, DONE, RETIRE, STOP, atomic_add, atomic_load, atomic_store, cycles, wait_until_done
from .dense import column_sums
from .epoch import (FAIL_GRADIENT, FAIL_LOSS, FAIL_UPDATE, HEADS, OPT_ADAM, OPT_MOMENTUM, OPT_SGD, _LOSS_NAMES,
                    _absmax_bound, _sgd_bias, delta_through, forward_rows)

# columns of ``partials``: one row per block; the squared gradient norm of layer k at _NORMS + k, bounds on
# max |A[k]| (k ≥ 1) at _NORMS + L + k and on max |D[k]| at _NORMS + 2·L + k (plain SGD): partials_columns
_LOSS, _RIGHT, _PENALTY, _FINITE, _NORMS = 0, 1, 2, 3, 4


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


@inline_kernel
def _deltas(blk, r0, r1, W, A, D, Z, codes, act_params, Y, drop_thr, drop_scale, dkey, batch, partials, loss, right,
            bounds):
    """Phase 0, block blk, after its rows' forward pass and loss: their deltas; with ``bounds`` (plain SGD),
    bounds on max |A[k]| and max |D[k]| of its rows for the update's proof of finiteness."""
    L = len(W)
    if r1 > r0:
        if bounds:
            partials[blk, _NORMS + 2 * L + L] = _absmax_bound(D[L][r0:r1])
        for k in range(L - 1, 0, -1):
            dx = D[k][r0:r1]
            matmul(D[k + 1][r0:r1], False, W[k], True, dx, 0)
            delta_through(k, r0, r1, codes, act_params, A, Z, Y, drop_thr, drop_scale, dkey, batch, dx)
            if bounds:
                partials[blk, _NORMS + 2 * L + k] = _absmax_bound(dx)
                partials[blk, _NORMS + L + k] = _absmax_bound(A[k][r0:r1])
    elif bounds:
        for k in range(1, L + 1):
            partials[blk, _NORMS + 2 * L + k] = 0.0
            partials[blk, _NORMS + L + k - 1] = 0.0
    partials[blk, _LOSS] = loss
    partials[blk, _RIGHT] = right


@inline_kernel
def _block_sum(partials, T, column):
    """Σ over the blocks of one column of ``partials``, in block order (the same on every thread)."""
    total = 0.0
    for s in range(T):
        total += partials[s, column]
    return total


@inline_kernel
def _block_max(partials, T, column):
    top = 0.0
    for s in range(T):
        top = max(top, partials[s, column])
    return top


@inline_kernel
def _add_batch(partials, T, L, nb, penalty, totals, norms, with_norms):
    """Block 0, once the batch's update is done: the epoch's totals, in batch order."""
    right = 0
    for s in range(T):
        right += int(partials[s, _RIGHT])
    if with_norms:
        for k in range(L):
            norms[k] += _block_sum(partials, T, _NORMS + k)
    totals[0] += _block_sum(partials, T, _LOSS) * nb
    totals[1] += right
    totals[2] += 1
    totals[3] += penalty


@inline_kernel
def _gradients(blk, T, nb, denom, W, A, D, dW, db, params, grads, offsets, hyper, partials):
    """Phase 1 (explicit-gradient optimizers), block blk: the gradients of its parameter ranges (+ scikit-
    learn's penalty gradient), their squared norms, the penalty's part."""
    alpha = hyper[6]
    decay = params.dtype.type(alpha / denom if denom > 0 else 0.0)
    penalty = 0.0
    for k in range(len(W)):
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
        partials[blk, _NORMS + k] = optim.squared_norm(grads, w0, w1) + optim.squared_norm(grads, c0, c1)
    partials[blk, _PENALTY] = penalty


@inline_kernel
def _verdict(blk, T, batch, nb, denom, L, alpha, partials, status, sync):
    """Phase 2 (explicit-gradient optimizers), block blk: the verdict on the batch, the same in every block:
    (go on, the batch's scikit-learn penalty)."""
    penalty = 0.0
    if alpha != 0:
        penalty = _block_sum(partials, T, _PENALTY)
        penalty *= 0.5 * alpha * nb / denom if denom > 0 else 0.0
        if not math.isfinite(penalty):
            _stop(sync, status, blk, batch + 1, -1, FAIL_LOSS)
            return False, penalty
    for k in range(L):
        if not math.isfinite(_block_sum(partials, T, _NORMS + k)):
            _stop(sync, status, blk, batch + 1, k, FAIL_GRADIENT)
            return False, penalty
    for s in range(T):
        if partials[s, _FINITE] == 0:
            _stop(sync, status, blk, batch + 1, -1, FAIL_UPDATE)
            return False, penalty
    return True, penalty


@inline_kernel
def _sgd_update(blk, T, batch, nb, last, W, b, A, D, dW, db, params, grads, offsets, hyper, x_absmax, wbound,
                partials, totals, norms, status, sync):
    """Phase 1 of plain SGD, block blk: the serial kernel's proof that the step stays finite (the bounds of
    phase 0, and a running bound on max |W[k]|, of which each block keeps its own copy, wbound[blk]), then
    the update of its parameter ranges inside the weight-gradient GEMM, W[k][i0:i1] += -lr·A[k][:, i0:i1]ᵀ·D;
    on the epoch's last batch through the gradient buffer instead, as the serial kernel does."""
    L = len(W)
    lr = hyper[0]
    limit = np.finfo(params.dtype).max / 4.0
    for k in range(L - 1, -1, -1):
        amax = x_absmax if k == 0 else _block_max(partials, T, _NORMS + L + k)
        grad_bound = nb * max(amax, 1.0) * _block_max(partials, T, _NORMS + 2 * L + k + 1)
        if not (lr * grad_bound + wbound[blk, k] < limit and grad_bound < limit):
            wbound[blk, k] = _absmax_bound(params[offsets[k]:offsets[k + 1]])
            if not (lr * grad_bound + wbound[blk, k] < limit and grad_bound < limit):
                _stop(sync, status, blk, batch + 1, k, FAIL_UPDATE)
                return
    for k in range(L):
        i0, i1, j0, j1, w0, w1, c0, c1 = _ranges(k, blk, T, W, offsets)
        if last:
            if i1 > i0:
                matmul(A[k][:nb, i0:i1], True, D[k + 1][:nb], False, dW[k][i0:i1], 0)
            if j1 > j0:
                column_sums(D[k + 1][:nb, j0:j1], db[k][j0:j1])
            optim.sgd(params[w0:w1], grads[w0:w1], lr)
            optim.sgd(params[c0:c1], grads[c0:c1], lr)
        else:
            if i1 > i0:
                gemm(-lr, A[k][:nb, i0:i1], True, D[k + 1][:nb], False, 1.0, W[k][i0:i1], 0)
            if j1 > j0:
                _sgd_bias(b[k][j0:j1], D[k + 1][:nb, j0:j1], db[k][j0:j1], lr)
        amax = x_absmax if k == 0 else _block_max(partials, T, _NORMS + L + k)
        wbound[blk, k] += lr * nb * max(amax, 1.0) * _block_max(partials, T, _NORMS + 2 * L + k + 1)
    if blk == 0:
        _add_batch(partials, T, L, nb, 0.0, totals, norms, False)


_HEAD = _FINITE_UPDATE = _WRITE_UPDATE = None     # bound per variant by specialize()
_PLAIN_SGD = False                                # True: the variant of plain SGD (two phases per batch)


def _train_epoch_parallel(t, T, sync, partials, totals, wbound, clock, X, labels, targets, order, batch_size, W, b, dW,
                          db, A, D, Z, codes, act_params, loss_kind, params, grads, offsets, opt_kind, slot1, slot2,
                          hyper, step0, x_absmax, norms, status, label_buf, target_buf, weight_buf, sample_weights,
                          Y, drop_thr, drop_scale, dkey):
    """Run blocks of one epoch until none is left (see the module's docstring); t is this thread's index:
    which blocks it runs depends on the others."""
    set_threads_local(1)
    n = X.shape[0]
    L = len(W)
    per_batch = 2 if _PLAIN_SGD else 3       # phases: rows, (gradients, update) or (in-GEMM update)
    phases = per_batch * ((n + batch_size - 1) // batch_size)
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
        clock[t, 0] += began - before
        batch, phase = g // per_batch, g % per_batch        # batch: 0-based
        start = batch * batch_size
        nb = min(batch_size, n - start)
        denom = _batch_denominator(sample_weights, order, start, nb)
        step = step0 + batch + 1          # every batch before this one took its step
        if phase == 0:            # this block's rows: forward, loss, deltas
            r0, r1 = _span(blk, T, nb)
            loss, right = 0.0, 0
            if r1 > r0:
                forward_rows(X, order, start, r0, r1, W, b, A, Z, codes, act_params, 0, Y, drop_thr, drop_scale,
                             dkey, batch)
                loss, right = _HEAD(loss_kind, A[L][r0:r1], D[L][r0:r1], labels, targets, order, start, r0,
                                    label_buf, target_buf, sample_weights, weight_buf, denom)
            _deltas(blk, r0, r1, W, A, D, Z, codes, act_params, Y, drop_thr, drop_scale, dkey, batch, partials, loss,
                    right, _PLAIN_SGD)
        elif phase == 1 and not math.isfinite(_block_sum(partials, T, _LOSS)):
            _stop(sync, status, blk, batch + 1, -1, FAIL_LOSS)
        elif _PLAIN_SGD:
            _sgd_update(blk, T, batch, nb, start + nb >= n, W, b, A, D, dW, db, params, grads, offsets, hyper,
                        x_absmax, wbound, partials, totals, norms, status, sync)
        elif phase == 1:          # this block's parameter ranges: gradients, and is their update finite?
            _gradients(blk, T, nb, denom, W, A, D, dW, db, params, grads, offsets, hyper, partials)
            finite = True
            for k in range(L):
                i0, i1, j0, j1, w0, w1, c0, c1 = _ranges(k, blk, T, W, offsets)
                for lo, hi in ((w0, w1), (c0, c1)):
                    if hi > lo and finite:
                        finite = _FINITE_UPDATE(params[lo:hi], grads[lo:hi], _slot(slot1, lo, hi),
                                                _slot(slot2, lo, hi), hyper, step)
            partials[blk, _FINITE] = 1.0 if finite else 0.0
        else:                     # the verdict, then the update of this block's parameter ranges
            go_on, penalty = _verdict(blk, T, batch, nb, denom, L, hyper[6], partials, status, sync)
            if go_on:
                for k in range(L):
                    i0, i1, j0, j1, w0, w1, c0, c1 = _ranges(k, blk, T, W, offsets)
                    for lo, hi in ((w0, w1), (c0, c1)):
                        if hi > lo:
                            _WRITE_UPDATE(params[lo:hi], grads[lo:hi], _slot(slot1, lo, hi), _slot(slot2, lo, hi),
                                          hyper, step)
                if blk == 0:
                    _add_batch(partials, T, L, nb, penalty, totals, norms, True)
        atomic_add(sync, DONE, 1)
        ended = cycles()
        clock[t, 1 + phase] += ended - began
        if t == 0:
            worked += ended - began
            if waited > worked and g >= 4 * per_batch:      # another thread holds us up: run on alone
                atomic_store(sync, RETIRE, 1)


def partials_columns(L):
    """The columns of ``partials`` for a network of L layers."""
    return _NORMS + 3 * L + 1


_UPDATES = {"sgd": (_sgd_finite, _sgd_write), "adam": (_adam_finite, _adam_write)}
_VARIANTS = {(loss, update): specialize(_train_epoch_parallel, f"{_LOSS_NAMES[loss]}_{update}", _HEAD=head,
                                        _FINITE_UPDATE=finite, _WRITE_UPDATE=write)
             for loss, head in HEADS.items() for update, (finite, write) in _UPDATES.items()}
_VARIANTS.update({(loss, "plain"): specialize(_train_epoch_parallel, f"{_LOSS_NAMES[loss]}_plain_sgd", _HEAD=head,
                                              _FINITE_UPDATE=_sgd_finite, _WRITE_UPDATE=_sgd_write, _PLAIN_SGD=True)
                  for loss, head in HEADS.items()})
_OPT_UPDATE = {OPT_SGD: "plain", OPT_MOMENTUM: "sgd", OPT_ADAM: "adam"}


def variant(loss_kind, opt_kind):
    """The compiled kernel for this loss and optimizer, called as
    ``variant(...)(t, T, sync, partials, totals, wbound, clock, X, labels, ...)`` (arguments: the module's
    docstring)."""
    return _VARIANTS[loss_kind, _OPT_UPDATE[opt_kind]]
