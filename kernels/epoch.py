"""The fused whole-epoch kernel: every mini-batch of an epoch of a dense network, inside one Numba call.

Network: L fully connected layers, layer k computing A[k+1] = f_k(A[k] @ W[k] + b[k]), with f_k an
activation code (activations.IDENTITY for none); a softmax-cross-entropy (class ids or distributions),
sigmoid-cross-entropy (binary / multilabel; "correct" is subset accuracy) or L2 head, each optionally
weighted per sample (softmax_ce.py's docstring: scikit-learn's weighting); an SGD (weight decay, momentum,
Nesterov) or Adam / AdamW update of the flat parameter buffer of which every W[k], b[k] is a view.

Plain SGD updates each layer inside its weight-gradient GEMM, W[k] += (-lr)·A[k]ᵀ·D[k+1] (BLAS beta = 1):
no gradient buffer is written and no separate pass over the weights is made. Before any weight changes,
the step proves that it stays finite: every delta D[k] must be finite, the bound
|dW| ≤ batch·max|A[k]|·max|D[k+1]| must stay far below the dtype's maximum, and so must lr times it added
to a running bound on max|W[k]|. Every other optimizer (OPT_MOMENTUM: SGD with momentum, Nesterov or
weight decay; OPT_ADAM: Adam and AdamW) writes the gradients, checks their norms and updates the flat
buffer with the checked kernel of kernels/optim.py that the per-layer path uses, so both agree bit for bit.

scikit-learn's L2 penalty (hyper[6] = alpha > 0; explicit-gradient kinds only): each layer's weight
gradient gets + alpha / nb · W[k] (biases are not decayed) and the batch's loss
+ 0.5 · alpha · Σ_k ||W[k]||² / nb, from the weights before the step.

Arguments (C-contiguous, one float dtype unless said):
  X (n, d); labels (n,) int64 and targets (n, m) — the one not used by ``loss_kind`` may be empty;
  order (n,) int64, the epoch's sample order; batch_size;
  W, b, dW, db: tuples of the L weight (in_k, out_k), bias (out_k,) arrays and their gradients;
  A: tuple of L+1 buffers (batch_size, width_k), A[0] the gathered input batch; D: tuple of L+1 buffers
  for dL/dA[k] (D[0] unused, may be (0, 0)); Z: tuple of L buffers (batch_size, out_k) for the
  pre-activations of the layers whose activation needs them (activations.NEEDS_Z), (0, 0) for the others;
  codes (L,) int64: the activation codes; act_params (L,) float64: their parameters; loss_kind: LOSS_*;
  params, grads: the flat 1-D buffers; offsets (L+1,) int64, layer k's segment of params/grads;
  opt_kind: OPT_*; slot1, slot2: optimizer state (empty when unused);
  hyper (HYPER_SIZE,) float64: [lr, momentum or beta1, beta2, eps, weight_decay, nesterov (SGD) or
    decoupled weight decay (AdamW) as 1.0 / 0.0, sklearn_alpha, sklearn_eps (Adam: 1.0 puts eps outside
    the bias correction, as scikit-learn does)] — built by Optimizer.kernel_spec();
  step0: Adam steps taken before this epoch;
  x_absmax: max |X| (float64); norms (L,) float64: receives each layer's squared gradient norm summed over
  the epoch (explicit-gradient optimizers only); status (3,) int64: receives [failed batch (1-based) or 0,
  failed layer or -1, what failed: FAIL_LOSS, FAIL_GRADIENT or FAIL_UPDATE];
  label_buf (batch_size,) int64 / target_buf (batch_size, m): gathered targets; blas_threads: the most
  BLAS threads a GEMM may use (small GEMMs get one, see _blas.matmul); sample_weights (n,) in X's dtype,
  gathered per batch like the labels, or empty (0,) for the unweighted loss (bit-identical to no weights);
  dropout (kernels/dropout.py) after layer k's activation where drop_thr[k] > 0: Y tuple of L buffers
  (batch_size, out_k) for the activation's output before dropout ((0, 0) for layers without dropout), drop_thr
  (L,) int64 keep thresholds, drop_scale (L,) float64 scales 1/(1-p), dkey the epoch's uint64 key (batch b of
  the epoch, 0-based, row i: masks keyed (dkey, b, i), as the per-layer path keys them). The mask is applied
  to A[k+1] in the forward pass and to the delta of layer k in the backward pass.
Returns (loss summed over samples, correct predictions, steps taken, scikit-learn L2 penalty summed over
the batches as scikit-learn adds it to the loss (0 unless hyper[6] > 0)). On a non-finite loss, gradient or
update, or a weight that could overflow, the kernel stops before that batch's update: the parameters stay those of
the last finite step.
"""
import math

import numpy as np
from numba import types
from numba.extending import overload

from . import optim
from .dropout import apply as dropout_apply
from ._blas import gemm, matmul
from ._jit import OPTIONS, inline_kernel, internal_kernel, specialize
from .activations import add_bias, bias_activate, scale_by_derivative
from .batch import gather, gather_rows
from .dense import column_sums
from .softmax_ce import (count_correct_dense, count_correct_indicators, count_correct_labels, l2_w, sigmoid_ce_w,
                         softmax_ce_dense_w, softmax_ce_labels_w)

LOSS_CE_LABELS, LOSS_CE_DENSE, LOSS_L2, LOSS_SIGMOID = 0, 1, 2, 3
_LOSS_NAMES = {LOSS_CE_LABELS: "labels", LOSS_CE_DENSE: "dense", LOSS_L2: "l2", LOSS_SIGMOID: "sigmoid"}
OPT_SGD, OPT_MOMENTUM, OPT_ADAM = 0, 1, 2      # plain SGD (in-GEMM); explicit-gradient SGD; Adam / AdamW
HYPER_SIZE = 8
_OPT_NAMES = {OPT_SGD: "sgd", OPT_MOMENTUM: "momentum", OPT_ADAM: "adam"}
FAIL_LOSS, FAIL_GRADIENT, FAIL_UPDATE = 0, 1, 2


@inline_kernel
def _fail(status, batch, layer, what):
    status[0] = batch
    status[1] = layer
    status[2] = what


def _absmax_bound(x):
    """An upper bound (within a factor 2) on max |x| over a C-contiguous float array; inf if any NaN/Inf.

    Works on the bit patterns as integers — |x| is the pattern without its sign bit, ordered like the
    magnitudes, with Inf and NaN above every finite value — so the loop vectorises without fastmath.
    Callable from kernels only; each dtype compiles only its own loop (see the overload below).
    """
    raise TypeError("_absmax_bound is callable from Numba kernels only")


@overload(_absmax_bound, jit_options=OPTIONS)
def _absmax_bound_for(x):
    if not isinstance(x, types.Array) or x.dtype not in (types.float32, types.float64):
        return None
    width = x.dtype.bitwidth
    mantissa = 23 if width == 32 else 52
    bias = 127 if width == 32 else 1023
    int_type = np.int32 if width == 32 else np.int64
    magnitude = (1 << (width - 1)) - 1          # every bit but the sign

    def bound(x):
        bits = x.reshape(-1).view(int_type)
        mask = int_type(magnitude)
        top = int_type(0)
        for i in range(bits.size):
            v = bits[i] & mask
            if v > top:
                top = v
        exponent = (int(top) >> mantissa) - bias
        return np.inf if exponent == bias + 1 else math.ldexp(1.0, exponent + 1)
    return bound


@internal_kernel
def _sgd_bias(b, dy, db, lr):
    """b -= lr · column sums of dy; db receives the sums (rows outer, so the loops vectorise)."""
    column_sums(dy, db)
    step = b.dtype.type(lr)
    for j in range(b.size):
        b[j] -= step * db[j]


@inline_kernel
def forward_rows(X, order, start, r0, r1, W, b, A, Z, codes, act_params, blas_threads, Y, drop_thr, drop_scale,
                 dkey, batch):
    """Rows r0:r1 of the batch starting at ``start``: A[k+1] = f_k(A[k] @ W[k] + b[k]); Z[k] keeps the
    pre-activation where f_k's derivative reads it. Layer k with dropout (drop_thr[k] > 0): f_k's output
    goes to Y[k] and A[k+1] is its dropped copy."""
    gather_rows(X, order, start + r0, A[0][r0:r1])
    for k in range(len(W)):
        out = Y[k][r0:r1] if drop_thr[k] > 0 else A[k + 1][r0:r1]
        if Z[k].shape[0] > 0:
            z = Z[k][r0:r1]
            matmul(A[k][r0:r1], False, W[k], False, z, blas_threads)
            bias_activate(z, b[k], codes[k], act_params[k], out)
            add_bias(z, b[k])
        else:
            matmul(A[k][r0:r1], False, W[k], False, out, blas_threads)
            bias_activate(out, b[k], codes[k], act_params[k], out)
        if drop_thr[k] > 0:
            dropout_apply(dkey, batch, r0, drop_thr[k], drop_scale[k], out, A[k + 1][r0:r1])


@inline_kernel
def delta_through(k, r0, r1, codes, act_params, A, Z, Y, drop_thr, drop_scale, dkey, batch, dx):
    """dx (dL/dA[k], rows r0:r1 of the batch) -> dL/d(pre-activation of layer k-1): through layer k-1's
    dropout, then its activation (whose output is Y[k-1] when it has dropout, else A[k])."""
    if drop_thr[k - 1] > 0:
        dropout_apply(dkey, batch, r0, drop_thr[k - 1], drop_scale[k - 1], dx, dx)
        scale_by_derivative(codes[k - 1], act_params[k - 1], Y[k - 1][r0:r1], Z[k - 1][r0:r1], dx)
    else:
        scale_by_derivative(codes[k - 1], act_params[k - 1], A[k][r0:r1], Z[k - 1][r0:r1], dx)


@inline_kernel
def _head_labels(loss_kind, logits, head, labels, targets, order, start, r0, label_buf, target_buf,
                 sample_weights, weight_buf, norm):
    """Softmax cross-entropy against the class ids of rows r0:r0+len(logits) of the batch: (loss, correct
    predictions); ``norm``: softmax_ce's (-1: these rows are the batch)."""
    r1 = r0 + logits.shape[0]
    yb = label_buf[r0:r1]
    gather(labels, order, start + r0, yb)
    wb = weight_buf[r0:r1]           # (0,) unweighted
    if sample_weights.size:
        gather(sample_weights, order, start + r0, wb)
    loss = softmax_ce_labels_w(logits, yb, head, wb, norm)
    return loss, count_correct_labels(logits, yb)


def _head_targets(loss_kind, logits, head, labels, targets, order, start, r0, label_buf, target_buf,
                  sample_weights, weight_buf, norm):
    """The loss ``_LOSS`` (softmax cross-entropy on distributions, sigmoid cross-entropy or L2; bound per
    variant, see _TARGET_HEADS) against the target rows r0:r0+len(logits) of the batch: (loss, ``_COUNT``
    correct); ``norm`` as for _head_labels."""
    r1 = r0 + logits.shape[0]
    tb = target_buf[r0:r1]
    gather_rows(targets, order, start + r0, tb)
    wb = weight_buf[r0:r1]           # (0,) unweighted
    if sample_weights.size:
        gather(sample_weights, order, start + r0, wb)
    loss = _LOSS(logits, tb, head, wb, norm)
    return loss, _COUNT(logits, tb)


@inline_kernel
def _no_count(out, t):
    """Regression: no correct predictions to count."""
    return 0


_LOSS = _COUNT = None     # bound per variant of _head_targets by specialize()
_TARGET_HEADS = {
    kind: specialize(_head_targets, _LOSS_NAMES[kind], compile_with=inline_kernel, _LOSS=loss, _COUNT=count)
    for kind, loss, count in ((LOSS_CE_DENSE, softmax_ce_dense_w, count_correct_dense), (LOSS_L2, l2_w, _no_count),
                              (LOSS_SIGMOID, sigmoid_ce_w, count_correct_indicators))}
HEADS = {LOSS_CE_LABELS: _head_labels, **_TARGET_HEADS}


@inline_kernel
def _sgd_step(opt_kind, nb, W, b, dW, db, A, D, Z, codes, act_params, params, offsets, hyper, amax, dmax,
              wbound, grads, slot1, slot2, step, norms, last, blas_threads, denom, Y, drop_thr, drop_scale, dkey,
              batch):
    """Backward pass and plain SGD update inside the weight-gradient GEMMs, once the bound proves every
    new weight (and weight gradient) finite. On the epoch's ``last`` batch the gradients are written to
    dW, db and the update is taken from them (one pass over the weights instead of a second GEMM), so that
    the epoch's gradient norms are those of the per-layer path.
    Returns (failed layer or -1, what failed, 0.0) with what = -1 for success."""
    L = len(W)
    lr = hyper[0]
    limit = np.finfo(params.dtype).max / 4.0
    dmax[L] = _absmax_bound(D[L][:nb])
    for k in range(L - 1, 0, -1):
        dx = D[k][:nb]
        matmul(D[k + 1][:nb], False, W[k], True, dx, blas_threads)
        delta_through(k, 0, nb, codes, act_params, A, Z, Y, drop_thr, drop_scale, dkey, batch, dx)
        dmax[k] = _absmax_bound(dx)
        amax[k] = _absmax_bound(A[k][:nb])
    for k in range(L - 1, -1, -1):
        grad_bound = nb * max(amax[k], 1.0) * dmax[k + 1]
        if not (lr * grad_bound + wbound[k] < limit and grad_bound < limit):
            wbound[k] = _absmax_bound(params[offsets[k]:offsets[k + 1]])
            if not (lr * grad_bound + wbound[k] < limit and grad_bound < limit):
                return k, FAIL_UPDATE, 0.0
    for k in range(L):
        if last:
            matmul(A[k][:nb], True, D[k + 1][:nb], False, dW[k], blas_threads)
            column_sums(D[k + 1][:nb], db[k])
            optim.sgd(params[offsets[k]:offsets[k + 1]], grads[offsets[k]:offsets[k + 1]], lr)
        else:
            gemm(-lr, A[k][:nb], True, D[k + 1][:nb], False, 1.0, W[k], blas_threads)
            _sgd_bias(b[k], D[k + 1][:nb], db[k], lr)
        wbound[k] += lr * nb * max(amax[k], 1.0) * dmax[k + 1]
    return -1, -1, 0.0


def _explicit_step(opt_kind, nb, W, b, dW, db, A, D, Z, codes, act_params, params, offsets, hyper, amax,
                   dmax, wbound, grads, slot1, slot2, step, norms, last, blas_threads, denom, Y, drop_thr,
                   drop_scale, dkey, batch):
    """Backward pass into the gradient buffer (+ scikit-learn's L2 penalty gradient), gradient norms, then
    the checked update ``_UPDATE`` (bound per optimizer, see _EXPLICIT_STEPS). Returns (failed layer or -1,
    what failed, the penalty 0.5·alpha·Σ||W[k]||²·nb/denom to add to the batch's summed loss) with what = -1
    for success. ``denom`` is the batch's row count, or its sum of sample weights (scikit-learn's sw_sum)."""
    L = len(W)
    alpha = hyper[6]
    penalty = 0.0
    if alpha != 0:
        for k in range(L):
            penalty += optim.squared_norm(params, offsets[k], offsets[k] + W[k].size)
        penalty *= 0.5 * alpha * nb / denom if denom > 0 else 0.0
        if not math.isfinite(penalty):
            return -1, FAIL_LOSS, penalty
    decay = params.dtype.type(alpha / denom if denom > 0 else 0.0)
    for k in range(L - 1, -1, -1):
        dy = D[k + 1][:nb]
        matmul(A[k][:nb], True, dy, False, dW[k], blas_threads)
        column_sums(dy, db[k])
        if alpha != 0:
            for i in range(offsets[k], offsets[k] + W[k].size):
                grads[i] += decay * params[i]
        if k > 0:
            dx = D[k][:nb]
            matmul(dy, False, W[k], True, dx, blas_threads)
            delta_through(k, 0, nb, codes, act_params, A, Z, Y, drop_thr, drop_scale, dkey, batch, dx)
    for k in range(L):
        s = optim.squared_norm(grads, offsets[k], offsets[k + 1])
        if not math.isfinite(s):
            return k, FAIL_GRADIENT, penalty
        norms[k] += s
    if not _UPDATE(params, grads, slot1, slot2, hyper, step):
        return -1, FAIL_UPDATE, penalty
    return -1, -1, penalty


@inline_kernel
def _momentum_update(params, grads, velocity, unused, hyper, step):
    """The checked explicit-gradient SGD update (hyper: the module's docstring); False if it wrote nothing.
    velocity is empty (and untouched) when the momentum is 0."""
    return optim.sgd_momentum_checked(params, grads, velocity, hyper[0], hyper[1], hyper[4], hyper[5] != 0)


@inline_kernel
def _adam_update(params, grads, m, v, hyper, step):
    """The checked Adam / AdamW update (hyper: the module's docstring); False if it wrote nothing."""
    return optim.adam_checked(params, grads, m, v, hyper[0], hyper[1], hyper[2], hyper[3], step, hyper[4],
                              hyper[5] != 0, hyper[7] != 0)


_UPDATE = None      # bound per variant of _explicit_step by specialize()
_EXPLICIT_STEPS = {
    OPT_MOMENTUM: specialize(_explicit_step, "momentum", compile_with=inline_kernel, _UPDATE=_momentum_update),
    OPT_ADAM: specialize(_explicit_step, "adam", compile_with=inline_kernel, _UPDATE=_adam_update)}


_HEAD = _STEP = None     # bound per variant of _train_epoch by specialize()


def _train_epoch(X, labels, targets, order, batch_size, W, b, dW, db, A, D, Z, codes, act_params, loss_kind,
                 params, grads, offsets, opt_kind, slot1, slot2, hyper, step0, x_absmax, norms, status,
                 label_buf, target_buf, blas_threads, sample_weights, Y, drop_thr, drop_scale, dkey):
    """One epoch (see the module's docstring); GEMMs get BLAS threads by _blas.matmul.

    A template: ``_HEAD`` and ``_STEP`` are bound per variant (see ``train_epoch``), so that a network
    compiles only the loss and optimizer code it uses. The caller restores its BLAS thread setting.
    """
    n = X.shape[0]
    L = len(W)
    amax = np.empty(L + 1)            # bounds on max |A[k]| of the current batch
    dmax = np.empty(L + 1)            # bounds on max |D[k]|
    wbound = np.empty(L)              # a running bound on max |W[k]|, max |b[k]|: measured on first use
    for k in range(L):
        wbound[k] = np.inf
    amax[0] = x_absmax
    weight_buf = np.empty(batch_size if sample_weights.size else 0, sample_weights.dtype)
    loss_sum = 0.0
    penalty_sum = 0.0
    correct = 0
    steps = 0
    _fail(status, 0, -1, FAIL_LOSS)
    norms[:] = 0
    batch = 0
    for start in range(0, n, batch_size):
        batch += 1
        nb = min(batch_size, n - start)
        forward_rows(X, order, start, 0, nb, W, b, A, Z, codes, act_params, blas_threads, Y, drop_thr, drop_scale,
                     dkey, batch - 1)
        loss, right = _HEAD(loss_kind, A[L][:nb], D[L][:nb], labels, targets, order, start, 0, label_buf,
                            target_buf, sample_weights, weight_buf, -1.0)
        if not math.isfinite(loss):
            _fail(status, batch, -1, FAIL_LOSS)
            return loss_sum, correct, steps, penalty_sum
        denom = float(nb)
        if sample_weights.size:          # scikit-learn's sw_sum: the batch's weights, summed in float64
            denom = 0.0
            for i in range(nb):
                denom += weight_buf[i]
        layer, what, penalty = _STEP(opt_kind, nb, W, b, dW, db, A, D, Z, codes, act_params, params, offsets,
                                     hyper, amax, dmax, wbound, grads, slot1, slot2, step0 + steps + 1, norms,
                                     start + nb >= n, blas_threads, denom, Y, drop_thr, drop_scale, dkey,
                                     batch - 1)
        if what >= 0:
            _fail(status, batch, layer, what)
            return loss_sum, correct, steps, penalty_sum
        correct += right
        steps += 1
        loss_sum += loss * nb
        penalty_sum += penalty
    return loss_sum, correct, steps, penalty_sum


_STEPS = {OPT_SGD: _sgd_step, **_EXPLICIT_STEPS}
_VARIANTS = {(loss, opt): specialize(_train_epoch, f"{_LOSS_NAMES[loss]}_{_OPT_NAMES[opt]}", _HEAD=head,
                                     _STEP=step)
             for loss, head in HEADS.items() for opt, step in _STEPS.items()}


def variant(loss_kind, opt_kind):
    """The compiled epoch kernel for this loss and optimizer (all arguments given: the module's docstring)."""
    return _VARIANTS[loss_kind, opt_kind]


def train_epoch(X, labels, targets, order, batch_size, W, b, dW, db, A, D, Z, codes, act_params, loss_kind,
                params, grads, offsets, opt_kind, *rest):
    """Run the variant of the epoch kernel for this loss and optimizer (arguments: module docstring;
    ``sample_weights`` may be left out for the unweighted loss, the dropout arguments for none)."""
    if len(rest) == 10:           # the argument list before sample_weights
        rest = rest + (np.empty(0, X.dtype),)
    if len(rest) == 11:           # no dropout
        rest = rest + (tuple(np.empty((0, 0), X.dtype) for _ in W), np.zeros(len(W), np.int64),
                       np.ones(len(W)), np.uint64(0))
    kernel_ = _VARIANTS[loss_kind, opt_kind]
    return kernel_(X, labels, targets, order, batch_size, W, b, dW, db, A, D, Z, codes, act_params, loss_kind,
                   params, grads, offsets, opt_kind, *rest)
