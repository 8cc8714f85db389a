"""The batch-parallel epoch driver: the serial epoch of epoch.py, its every mini-batch split in T blocks; it
only schedules the pieces of step.py over row blocks and parameter ranges.

Threads started by fastnn/engines/fused.py all call the kernel ``variant(loss_kind, opt_kind)`` as
``kernel(t, T, sync, team, net, scratch, data, opt)``; they claim blocks from a shared counter (_sync.py),
so that what is computed depends on T alone — bit-identical for a given T — and a thread that the OS does
not schedule holds nobody up but for the block it is running. Per mini-batch of nb rows, three phases of
T blocks, each phase starting when the previous one is done:

0. rows: block b takes rows [b·nb/T, (b+1)·nb/T) — gathers them and measures their max |x| (the input
   check: phase 1 refuses the batch in every block when any block's rows hold NaN/Inf, naming the first
   such row in the batch's order), runs the forward pass, the loss head
   (divided by the whole batch's rows or weight sum, so that the blocks add up to the batch) and the
   backward pass of the deltas D[k] for its rows, with single-threaded GEMMs; then, for each layer split
   by rows (below), its gradient partials from those rows, A[k][r0:r1]ᵀ·D[k+1][r0:r1] and their column
   sums, into its own buffer team.gpart[k][b] (the rows it has just written, still in its cache).
1. gradients: block b takes rows [b·in_k/T, (b+1)·in_k/T) of every weight matrix W[k] (in_k, out_k)
   and columns [b·out_k/T, (b+1)·out_k/T) of every bias, and their gradients: a layer split by ranges
   computes them over the whole batch, dW[k][i0:i1] = A[k][:, i0:i1]ᵀ · D[k+1] (one GEMM reading the
   activations and deltas that every block wrote) and the column sums; a layer split by rows sums the T
   blocks' partials of those ranges, in block order (so the bits depend on T alone). Then, for either,
   scikit-learn's penalty gradient, the squared norms, and whether the update of its range stays finite.
2. update: every block sums the per-block partials (loss, penalty, norms, finiteness) in block order,
   so all reach the same verdict; then it updates its parameter ranges with the checked optimizer
   arithmetic of optim.py (the per-layer path's); block 0 adds the batch to the epoch's totals.

Plain SGD (OPT_SGD) has two phases per batch, as fast as the serial kernel's step: phase 0 also bounds
max |A[k]| and max |D[k]| of its rows, and phase 1 proves the step finite from those bounds (the serial
kernel's proof) and updates each block's ranges inside the weight-gradient GEMM,
W[k][i0:i1] += -lr·A[k][:, i0:i1]ᵀ·D[k+1] — no gradient buffer, no pass over the weights but the GEMM.
The running bound on max |W[k]| (team.wbound, inf on entry) is measured when the proof fails with it —
so on the epoch's first batch, before its first update: phase 1 then updates nothing; each block bounds its
own ranges of the failing layers (the bound is monotone in max |x|, so the max over the blocks is exactly
the whole layer's bound, as the serial kernel measures it) and block 0 inserts one extra phase
(``team.schedule``) that takes that max, proves again, then updates — so no block measures weights that
another block is updating, and the result is a function of (seed, T) whatever the threads' timing.

The gradient split, per layer (``row_split``; forced for every layer by the module's SPLIT): by rows when
in_k·out_k < rows·(in_k + out_k), rows the batch size — when a block's own partial buffer (in_k·out_k,
written in phase 0 and read back, T of them, in phase 1) is smaller than the whole batch's activations
and deltas of the layer (rows·(in_k + out_k)) that the range split's GEMM reads, (T-1)/T of them just
written by other cores. Both splits do the same multiply-adds; rows adds T·in_k·out_k additions per step.
Plain SGD sums a row-split layer's partials over its ranges into the gradient buffer, then p -= lr·g
(optim.sgd: the serial kernel's last-batch arithmetic) after the same proof; the other layers keep the
in-GEMM update. The rule's cells (T = 2): tabular 100-100-5 batch 200 and small 64-128-10 batch 64: rows,
rows; mnist 784-256-128-10 batch 128: ranges, rows, rows (784·256 = 200,704 > 128·1,040 = 133,120); at
batch 1024 rows for all three; wide 1024-4096-4096-10 batch 512: ranges, ranges, rows. The rule is
the traffic argument above, not yet fitted to timings. Measured (2026-12-06, the 2-core Xeon under other
engineers' load; team.clock, µs per step of work in phases 0+1+2, both blocks of T = 2 run by one thread,
median of 7 epochs, ranges -> rule): small 39.2 -> 43.5, tabular 125.5 -> 125.3, mnist128 1116 -> 1164
— alone, the partials cost 0-11 % more work (the extra partial buffers and their sum); the gain is meant
to come from two blocks at once, where the issue's idle profile has the range split's phase 1 per block
at small 7 -> 14, tabular 47.5 -> 69, mnist128 243 -> 319 µs (alone -> concurrent). Two threads at once
could not be measured under that load (thread 0 retired the other in most epochs): to be measured idle.

When thread 0 has waited for the others longer than it worked (a core shared with other work: see
_sync.py), the others retire and thread 0 runs the remaining blocks alone, with the same numbers.

Arguments: t (the thread's index), T (the blocks per phase), ``sync`` (_sync.SYNC_SIZE,) int64 zeroed,
``team`` (a Team record, shared by the threads, below), and the records of step.py (net, scratch, data,
opt; scratch.weight_buf is needed (batch_size,) when the loss is weighted). All are shared by the threads.
scratch.status must hold [0, -1, FAIL_LOSS] and scratch.norms zeros on entry. On a gathered row holding
NaN/Inf, a non-finite loss, gradient or update the kernel stops before that batch's update (``status`` as in
epoch.py). A thread that raises sets ``sync``'s abort flag (fastnn/engines/fused.py): the others return at
once.

Team(partials, totals, wbound, clock, schedule, gpart):
  partials (T, partials_columns(L)) float64: each block's partial results (columns below);
  totals (4,) float64 zeroed: receives the epoch's (loss summed over samples, correct, steps, penalty);
  wbound (T, L) float64 of inf: plain SGD's running bounds on max |W[k]|, one copy per block (all equal);
  clock (T, 4) int64 zeroed: receives each thread's CPU cycles spent waiting and working in phases
  0, 1, 2 (for benchmarks: where the time goes); schedule (1,) int64 zeroed: the phases plain SGD inserted,
  packed in one word that block 0 writes atomically — (index of the latest one) · 2³² + (how many so far);
  gpart: tuple of L arrays in the network's dtype, (T, (in_k + 1)·out_k) for a layer split by rows (block
  b's partials laid out as the layer's segment of the parameter buffer: weights row-major, then bias),
  (T, 0) for a layer split by ranges (the engine allocates them once per fit: ``row_split`` says which).
"""
import math
from collections import namedtuple

from . import optim
from ._blas import matmul
from ._jit import inline_kernel, internal_kernel, specialize
from ._sync import CLAIMED, DONE, RETIRE, STOP, atomic_add, atomic_load, atomic_store, cycles, wait_until_done
from .step import (CHAINS, FULL_CHAIN, chain_suffix, FAIL_GRADIENT, FAIL_INPUT, FAIL_LOSS, FAIL_UPDATE, HEADS, LOSS_NAMES, OPT_ADAM, OPT_MOMENTUM,
                   OPT_SGD, UPDATES, _absmax_bound, batch_denominator, column_sums, deltas, first_bad_row,
                   forward_rows, input_bound, layer_gradient, penalty_decay, penalty_factor, penalty_gradient,
                   row_bounds, sgd_grad_bound, sgd_in_gemm, sgd_limit, sgd_proven, slot)

Team = namedtuple("Team", "partials totals wbound clock schedule gpart")

# columns of ``partials``: one row per block; the squared gradient norm of layer k at _NORMS + k; max |x| of
# the block's gathered rows at _amax(L) (inf: one holds NaN/Inf) and the first such row of X at _BAD (-1:
# none); plain SGD: bounds on max |A[k]| (k ≥ 1) at _amax(L) + k, on max |D[k]| at _dmax(L) + k, and on
# max |W[k]|, |b[k]| over the block's own ranges at _wmax(L) + k, when measured (see partials_columns)
_LOSS, _RIGHT, _PENALTY, _FINITE, _BAD, _NORMS = 0, 1, 2, 3, 4, 5
_PACK = 1 << 32              # team.schedule[0] = (index of the latest extra phase) · _PACK + (extra phases so far)


@inline_kernel
def _amax(L):
    return _NORMS + L


@inline_kernel
def _dmax(L):
    return _NORMS + 2 * L


@inline_kernel
def _wmax(L):
    return _NORMS + 3 * L + 1


#: forces the gradient split of every layer (tests, benchmarks): None, the rule (``row_split``); "rows", every
#: layer from per-block partials; "ranges", every layer by parameter ranges over the whole batch
SPLIT = None


def row_split(widths, rows, T):
    """Per layer (widths[k] -> widths[k+1]), whether phase 0 computes its gradient as per-block partials
    from each block's own rows (True) or phase 1 by parameter ranges over the whole batch (False): the
    rule of the module's docstring for a batch of ``rows`` rows cut in T blocks, or SPLIT when set."""
    if SPLIT is not None and SPLIT not in ("rows", "ranges"):
        raise ValueError(f"epoch_parallel.SPLIT must be None, 'rows' or 'ranges', not {SPLIT!r}")
    out = []
    for fan_in, fan_out in zip(widths[:-1], widths[1:]):
        if SPLIT is None:
            out.append(T > 1 and fan_in * fan_out < rows * (fan_in + fan_out))
        else:
            out.append(SPLIT == "rows")
    return out


def partials_columns(L):
    """The columns of ``partials`` for a network of L layers."""
    return _NORMS + 4 * L + 1


@inline_kernel
def _span(t, T, n):
    """Thread t's share [lo, hi) of range(n), split in T nearly equal blocks."""
    return t * n // T, (t + 1) * n // T


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
def _stop(sync, status, blk, batch, layer, what):
    """Every block of a phase reaches the same verdict; each block writes it (the same values), and the
    threads stop claiming. (Block 0 alone wrote it before: a thread that had claimed block 0 but ran it
    after another block's stop returned at the STOP flag, and the epoch ended with no verdict — a fit
    that trained past a NaN row of X, a few times in 1000 with 3 threads.)"""
    status[0], status[1], status[2] = batch, layer, what
    atomic_store(sync, STOP, 1)


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
def _first_bad(partials, T):
    """The first row of X holding NaN/Inf that the blocks found, in block (= the batch's) order; -1 if none."""
    for s in range(T):
        if partials[s, _BAD] >= 0:
            return int(partials[s, _BAD])
    return -1


@internal_kernel
def row_partials(a, dy, own):
    """Phase 0, a layer split by rows: one block's gradient partials of the layer from its own rows a =
    A[k][r0:r1], dy = D[k+1][r0:r1] into ``own`` (gpart[k][blk], laid out as the layer's segment of the
    parameter buffer: weights row-major, then bias): aᵀ·dy, then the column sums of dy; zeros when the
    block has no rows. A kernel of its own (arrays only): inlined, it cost the driver ~0.5 s of compile
    per variant; this way every variant links the one cached copy."""
    fan_in, fan_out = a.shape[1], dy.shape[1]
    if a.shape[0] == 0:
        own[:] = 0
        return
    matmul(a, True, dy, False, own[:fan_in * fan_out].reshape((fan_in, fan_out)), 0)
    column_sums(dy[:, 0:fan_out], own[fan_in * fan_out:])     # (the 'A' layout of the range split's call)


@internal_kernel
def sum_partials(parts, w0, w1, c0, c1, dw, db):
    """Phase 1, a layer split by rows: dw[:] = Σ_s parts[s, w0:w1] and db[:] = Σ_s parts[s, c0:c1] over the
    T = len(parts) blocks' partials, in block order (the same bits whatever the timing); [w0, w1), [c0, c1)
    a block's ranges of the layer's weights and bias relative to its segment. A kernel of its own, not
    inlined: the driver calls it from two places, and every variant links the one cached copy."""
    for out, lo in ((dw, w0), (db, c0)):
        for i in range(out.size):
            out[i] = parts[0, lo + i]
        for s in range(1, parts.shape[0]):
            for i in range(out.size):
                out[i] += parts[s, lo + i]


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
def _sgd_phase(g, blk, T, batch, nb, last, remeasured, W, b, params, offsets, A, D, dW, db, grads, lr,
               team, sync, norms, status):
    """Phase 1 of plain SGD, block blk: the serial kernel's proof that the step stays finite (the bounds of
    phase 0, and the running bounds on max |W[k]|, of which each block keeps its own copy, team.wbound[blk]),
    then the update of its parameter ranges inside the weight-gradient GEMM; on the epoch's last batch
    through the gradient buffer instead, as the serial kernel does. When the proof fails with the running
    bound of some layer: no update — each block bounds its own ranges of those layers and block 0 inserts
    the extra phase (``remeasured``) in which the max over the blocks replaces the running bound."""
    L = len(W)
    partials = team.partials
    wbound = team.wbound
    limit = sgd_limit(params)
    if remeasured:                # the layers measured in phase 1 (their column > 0): the max over the blocks
        for k in range(L):
            measured = _block_max(partials, T, _wmax(L) + k)
            if measured > 0:
                wbound[blk, k] = measured
    measure = False
    for k in range(L - 1, -1, -1):
        amax = _block_max(partials, T, _amax(L) + k)         # k = 0: max |x| of the batch, exactly
        grad_bound = sgd_grad_bound(nb, amax, _block_max(partials, T, _dmax(L) + k + 1))
        top = 0.0                 # 0: layer k not measured
        if not sgd_proven(lr, grad_bound, wbound[blk, k], limit):
            if remeasured:
                _stop(sync, status, blk, batch + 1, k, FAIL_UPDATE)
                return
            i0, i1, j0, j1, w0, w1, c0, c1 = _ranges(k, blk, T, W, offsets)    # this block's ranges of layer k
            top = _absmax_bound(params[w0:w1]) if w1 > w0 else 0.0
            top = max(top, _absmax_bound(params[c0:c1]) if c1 > c0 else 0.0)
            measure = True
        if not remeasured:        # (in the extra phase the other blocks read these columns)
            partials[blk, _wmax(L) + k] = top
    if measure:
        if blk == 0:              # one atomic word: the other blocks of this phase may be reading it
            atomic_store(team.schedule, 0, (g + 1) * _PACK + atomic_load(team.schedule, 0) % _PACK + 1)
        return
    gpart = team.gpart
    for k in range(L):
        i0, i1, j0, j1, w0, w1, c0, c1 = _ranges(k, blk, T, W, offsets)
        if gpart[k].shape[1] > 0:         # split by rows: the blocks' partials summed, then p -= lr·g
            base = offsets[k]
            sum_partials(gpart[k], w0 - base, w1 - base, c0 - base, c1 - base, grads[w0:w1], grads[c0:c1])
            optim.sgd(params[w0:w1], grads[w0:w1], lr)
            optim.sgd(params[c0:c1], grads[c0:c1], lr)
        else:
            sgd_in_gemm(A[k][:nb, i0:i1], D[k + 1][:nb], W[k][i0:i1], dW[k][i0:i1], D[k + 1][:nb, j0:j1],
                        b[k][j0:j1], db[k][j0:j1], params, grads, w0, w1, c0, c1, lr, last, 0)
        amax = _block_max(partials, T, _amax(L) + k)         # k = 0: max |x| of the batch, exactly
        wbound[blk, k] += lr * nb * max(amax, 1.0) * _block_max(partials, T, _dmax(L) + k + 1)
    if blk == 0:
        _add_batch(partials, T, L, nb, 0.0, team.totals, norms, False)


@inline_kernel
def _gradients(blk, T, nb, denom, W, A, D, dW, db, params, grads, offsets, alpha, partials, gpart):
    """Phase 1 (explicit-gradient optimizers), block blk: the gradients of its parameter ranges (+ scikit-
    learn's penalty gradient), their squared norms, the penalty's part. A layer split by rows sums the
    blocks' partials of phase 0 over the ranges; the others compute them over the whole batch."""
    decay = penalty_decay(params, alpha, denom)
    penalty = 0.0
    for k in range(len(W)):
        i0, i1, j0, j1, w0, w1, c0, c1 = _ranges(k, blk, T, W, offsets)
        if alpha != 0:
            penalty += optim.squared_norm(params, w0, w1)
        if gpart[k].shape[1] > 0:
            base = offsets[k]
            sum_partials(gpart[k], w0 - base, w1 - base, c0 - base, c1 - base, grads[w0:w1], grads[c0:c1])
        else:
            layer_gradient(A[k][:nb, i0:i1], D[k + 1][:nb], dW[k][i0:i1], D[k + 1][:nb, j0:j1], db[k][j0:j1], 0)
        if alpha != 0:
            penalty_gradient(params, grads, w0, w1, decay)
        partials[blk, _NORMS + k] = optim.squared_norm(grads, w0, w1) + optim.squared_norm(grads, c0, c1)
    partials[blk, _PENALTY] = penalty


@inline_kernel
def _verdict(blk, T, batch, nb, denom, L, alpha, partials, status, sync):
    """Phase 2 (explicit-gradient optimizers), block blk: the verdict on the batch, the same in every block:
    (go on, the batch's scikit-learn penalty)."""
    penalty = 0.0
    if alpha != 0:
        penalty = _block_sum(partials, T, _PENALTY) * penalty_factor(alpha, nb, denom)
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


_HEAD = _FINITE_UPDATE = _WRITE_UPDATE = None     # bound per variant by specialize()
_PLAIN_SGD = False                                # True: the variant of plain SGD (two phases per batch)


def _train_epoch_parallel(t, T, sync, team, net, scratch, data, opt):
    """Run blocks of one epoch until none is left (see the module's docstring); t is this thread's index:
    which blocks it runs depends on the others."""
    X = data.X
    labels = data.labels
    targets = data.targets
    sample_weights = data.sample_weights
    order = data.order
    W = net.W
    b = net.b
    codes = net.codes
    act_params = net.act_params
    params = net.params
    offsets = net.offsets
    drop_thr = net.drop_thr
    drop_scale = net.drop_scale
    dkey = data.dkey
    A = scratch.A
    D = scratch.D
    Z = scratch.Z
    Y = scratch.Y
    dW = scratch.dW
    db = scratch.db
    grads = scratch.grads
    label_buf = scratch.label_buf
    target_buf = scratch.target_buf
    weight_buf = scratch.weight_buf
    norms = scratch.norms
    status = scratch.status
    x_bits = scratch.x_bits
    batch_size = data.batch_size
    partials = team.partials
    clock = team.clock
    schedule = team.schedule
    gpart = team.gpart
    slot1 = opt.slot1
    slot2 = opt.slot2
    n, d = X.shape
    L = len(W)
    per_batch = 2 if _PLAIN_SGD else 3       # phases: rows, (gradients, update) or (in-GEMM update)
    phases = per_batch * ((n + batch_size - 1) // batch_size)
    waited = worked = 0
    while True:
        if t > 0 and atomic_load(sync, RETIRE) != 0:
            return
        claimed = atomic_add(sync, CLAIMED, 1)
        g, blk = claimed // T, claimed % T
        if not _PLAIN_SGD and g >= phases:        # (plain SGD may insert phases: known once g - 1 is done)
            return
        before = cycles()
        if not wait_until_done(sync, g * T) or atomic_load(sync, STOP) != 0:
            return
        began = cycles()
        waited += began - before
        clock[t, 0] += began - before
        remeasured = False
        g_plan = g
        if _PLAIN_SGD:            # every phase before g is done, and so are its insertions
            state = atomic_load(schedule, 0)
            at, extra = state // _PACK, state % _PACK
            if at > g:            # inserted during this phase g (by its block 0): it comes after it
                extra -= 1
            remeasured = at == g
            g_plan = g - extra
            if g_plan >= phases:
                return
        batch, phase = g_plan // per_batch, g_plan % per_batch        # batch: 0-based
        start = batch * batch_size
        nb = min(batch_size, n - start)
        denom = batch_denominator(sample_weights, order, start, nb)
        step = opt.step0 + batch + 1          # every batch before this one took its step
        if phase == 0:            # this block's rows: forward, loss, deltas (plain SGD: and their bounds)
            r0, r1 = _span(blk, T, nb)
            loss, right = 0.0, 0
            partials[blk, _amax(L)] = 0.0
            partials[blk, _BAD] = -1.0
            if r1 > r0:
                forward_rows(X, order, start, r0, r1, W, b, codes, act_params, A, Z, Y, drop_thr, drop_scale, dkey,
                             batch, 0)
                x_bound = input_bound(x_bits, r0 * d, r1 * d)
                partials[blk, _amax(L)] = x_bound
                if x_bound == math.inf:       # phase 1 refuses the batch (every block alike)
                    partials[blk, _BAD] = float(order[start + first_bad_row(A[0], r0, r1)])
                loss, right = _HEAD(A[L][r0:r1], D[L][r0:r1], labels, targets, order, start, r0, label_buf,
                                    target_buf, sample_weights, weight_buf, denom)
                deltas(W, codes, act_params, A, D, Z, Y, drop_thr, drop_scale, dkey, batch, r0, r1, 0)
                if _PLAIN_SGD:
                    row_bounds(A, D, r0, r1, partials[blk, _amax(L):_amax(L) + L],
                               partials[blk, _dmax(L):_dmax(L) + L + 1])
            elif _PLAIN_SGD:
                for k in range(1, L + 1):
                    partials[blk, _dmax(L) + k] = 0.0
                    partials[blk, _amax(L) + k - 1] = 0.0
            for k in range(L):    # the layers split by rows: this block's gradient partials (zeros: no rows)
                if gpart[k].shape[1] > 0:
                    row_partials(A[k][r0:r1], D[k + 1][r0:r1], gpart[k][blk])
            partials[blk, _LOSS] = loss
            partials[blk, _RIGHT] = right
        elif phase == 1 and _block_max(partials, T, _amax(L)) == math.inf:      # a gathered row holds NaN/Inf
            _stop(sync, status, blk, batch + 1, _first_bad(partials, T), FAIL_INPUT)
        elif phase == 1 and not math.isfinite(_block_sum(partials, T, _LOSS)):
            _stop(sync, status, blk, batch + 1, -1, FAIL_LOSS)
        elif _PLAIN_SGD:
            _sgd_phase(g, blk, T, batch, nb, start + nb >= n, remeasured, W, b, params, offsets, A, D, dW, db, grads,
                       opt.lr, team, sync, norms, status)
        elif phase == 1:          # this block's parameter ranges: gradients, and is their update finite?
            _gradients(blk, T, nb, denom, W, A, D, dW, db, params, grads, offsets, opt.sklearn_alpha, partials,
                       gpart)
            finite = True
            for k in range(L):
                i0, i1, j0, j1, w0, w1, c0, c1 = _ranges(k, blk, T, W, offsets)
                for lo, hi in ((w0, w1), (c0, c1)):
                    if hi > lo and finite:
                        finite = _FINITE_UPDATE(params[lo:hi], grads[lo:hi], slot(slot1, lo, hi), slot(slot2, lo, hi),
                                                opt, step)
            partials[blk, _FINITE] = 1.0 if finite else 0.0
        else:                     # the verdict, then the update of this block's parameter ranges
            go_on, penalty = _verdict(blk, T, batch, nb, denom, L, opt.sklearn_alpha, partials, status, sync)
            if go_on:
                for k in range(L):
                    i0, i1, j0, j1, w0, w1, c0, c1 = _ranges(k, blk, T, W, offsets)
                    for lo, hi in ((w0, w1), (c0, c1)):
                        if hi > lo:
                            _WRITE_UPDATE(params[lo:hi], grads[lo:hi], slot(slot1, lo, hi), slot(slot2, lo, hi), opt,
                                          step)
                if blk == 0:
                    _add_batch(partials, T, L, nb, penalty, team.totals, norms, True)
        atomic_add(sync, DONE, 1)
        ended = cycles()
        clock[t, 1 + phase] += ended - began
        if t == 0:
            worked += ended - began
            if waited > worked and g >= 4 * per_batch:      # another thread holds us up: run on alone
                atomic_store(sync, RETIRE, 1)


_UPDATE_NAMES = {OPT_MOMENTUM: "sgd", OPT_ADAM: "adam"}
_VARIANTS = {}


def variant(loss_kind, opt_kind, chain=FULL_CHAIN):
    """The compiled kernel for this loss, optimizer and chain (step.chain_key of the network; the default
    runs every network), called as ``variant(...)(t, T, sync, team, net, scratch, data, opt)`` (arguments: the module's
    docstring). Made on first use: each compiles only its head, its update and its chain's pieces (the
    plain-SGD variant binds the explicit updates too, on branches it never takes)."""
    key = loss_kind, opt_kind, chain
    if key not in _VARIANTS:
        pieces = CHAINS[chain]
        plain = opt_kind == OPT_SGD
        finite, write = UPDATES[OPT_MOMENTUM if plain else opt_kind]
        name = f"{LOSS_NAMES[loss_kind]}_{'plain_sgd' if plain else _UPDATE_NAMES[opt_kind]}"
        _VARIANTS[key] = specialize(_train_epoch_parallel, name + chain_suffix(chain),
                                    _HEAD=HEADS[loss_kind], _FINITE_UPDATE=finite, _WRITE_UPDATE=write,
                                    _PLAIN_SGD=plain, forward_rows=pieces.forward_rows, deltas=pieces.deltas)
    return _VARIANTS[key]
