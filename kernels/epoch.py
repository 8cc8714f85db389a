"""Drivers of the training step (step.py): they only schedule its pieces over the mini-batches of an epoch.

- ``variant(loss_kind, opt_kind)``: the serial epoch, called as ``kernel(net, scratch, data, opt,
  blas_threads)`` with the records of step.py (Network, Scratch, Data, Optimizer; their fields: step.py's
  docstring) and the most BLAS threads a GEMM may use (small GEMMs get one, see _blas.matmul). Every
  mini-batch of the epoch in order: forward, loss head, deltas, then either plain SGD inside the
  weight-gradient GEMMs (OPT_SGD, after proving the step finite) or the gradients into ``grads`` and the
  checked update of an explicit-gradient optimizer (OPT_MOMENTUM, OPT_ADAM) — ``apply_update`` below.
  Returns (loss summed over samples, correct predictions, steps taken, scikit-learn L2 penalty summed over
  the batches as scikit-learn adds it to the loss (0 unless sklearn_alpha > 0)); writes scratch.norms
  (each layer's squared gradient norm summed over the epoch, explicit-gradient optimizers) and
  scratch.status. On a gathered row of X that holds NaN or Inf (checked as it is gathered: the caller makes
  no pass over X), a non-finite loss, gradient or update, or a weight that could overflow, the kernel
  stops before that batch's update: the parameters stay those of the last finite step, and status says
  [batch (1-based), layer or -1 (for FAIL_INPUT: the first bad row of X in the batch's order),
  FAIL_INPUT / FAIL_LOSS / FAIL_GRADIENT / FAIL_UPDATE].
- The batch-parallel epoch is the driver of epoch_parallel.py (the same pieces over row blocks and
  parameter ranges, on fastnn's threads).
- The two halves of an explicit-gradient step, for a driver that combines gradients between them (the
  distributed engine: an allreduce of ``grads`` over MPI ranks):
  ``gradient_kernel(loss_kind)(net, scratch, data, start, nb, batch, norm, blas_threads) -> (loss, correct)``
  and ``update_kernel(opt_kind)(net, scratch, opt, nb, denom, step) -> (failed layer, what failed, penalty)``
  (their docstrings: ``_batch_gradient`` and ``_apply_update``). The serial epoch's explicit-gradient
  step is their two passes (``_gradient_pass``'s pieces, called by the driver itself to save a level of
  inlining, and ``_update_pass``) one after the other, with norm = -1, denom = step.batch_denominator and
  step = opt.step0 + batches before + 1, so a driver that calls the two kernels in that order with those
  arguments gets the serial epoch's numbers bit for bit (tests/test_step.py).
"""
import math

import numpy as np

from . import optim
from ._jit import inline_kernel, specialize
from .step import (CHAINS, FULL_CHAIN, chain_suffix, FAIL_GRADIENT, FAIL_INPUT, FAIL_LOSS, FAIL_UPDATE, HEADS, HYPER_SIZE, LOSS_CE_DENSE,  # noqa: F401
                   LOSS_CE_LABELS,
                   LOSS_L2, LOSS_NAMES, LOSS_SIGMOID, OPT_ADAM, OPT_MOMENTUM, OPT_NAMES, OPT_SGD, UPDATES,
                   _absmax_bound, batch_denominator, deltas, fail, first_bad_row, forward_rows, input_bound,
                   layer_bound, layer_gradient, penalty_decay, penalty_factor, penalty_gradient, row_bounds,
                   sgd_grad_bound, sgd_in_gemm, sgd_limit, sgd_proven, weight_penalty)

_LOSS_NAMES = LOSS_NAMES
_HEAD = _FINITE = _WRITE = _GRADIENT = _UPDATE = None     # bound per variant by specialize()


def _gradient_pass(X, labels, targets, sample_weights, order, dkey, start, nb, batch, norm, W, b, codes, act_params,
                   drop_thr, drop_scale, A, D, Z, Y, dW, db, label_buf, target_buf, weight_buf, blas_threads):
    """_batch_gradient on the records' fields (its docstring); ``_HEAD`` bound per loss."""
    L = len(W)
    forward_rows(X, order, start, 0, nb, W, b, codes, act_params, A, Z, Y, drop_thr, drop_scale, dkey, batch,
                 blas_threads)
    loss, right = _HEAD(A[L][:nb], D[L][:nb], labels, targets, order, start, 0, label_buf, target_buf,
                        sample_weights, weight_buf, norm)
    if not math.isfinite(loss):
        return loss, right
    deltas(W, codes, act_params, A, D, Z, Y, drop_thr, drop_scale, dkey, batch, 0, nb, blas_threads)
    for k in range(L - 1, -1, -1):
        dy = D[k + 1][:nb]
        layer_gradient(A[k][:nb], dy, dW[k], dy, db[k], blas_threads)
    return loss, right


def _update_pass(W, params, grads, offsets, norms, opt, nb, denom, step):
    """_apply_update on the records' fields (its docstring); ``_FINITE``, ``_WRITE`` bound per optimizer."""
    L = len(W)
    alpha = opt.sklearn_alpha
    penalty = 0.0
    if alpha != 0:
        penalty = weight_penalty(W, params, offsets) * penalty_factor(alpha, nb, denom)
        if not math.isfinite(penalty):
            return -1, FAIL_LOSS, penalty
        decay = penalty_decay(params, alpha, denom)
        for k in range(L):
            penalty_gradient(params, grads, offsets[k], offsets[k] + W[k].size, decay)
    for k in range(L):
        s = optim.squared_norm(grads, offsets[k], offsets[k + 1])
        if not math.isfinite(s):
            return k, FAIL_GRADIENT, penalty
        norms[k] += s
    if not _FINITE(params, grads, opt.slot1, opt.slot2, opt, step):
        return -1, FAIL_UPDATE, penalty
    _WRITE(params, grads, opt.slot1, opt.slot2, opt, step)
    return -1, -1, penalty


def _batch_gradient(net, scratch, data, start, nb, batch, norm, blas_threads):
    """The gradient of the mini-batch of nb rows starting at ``start`` of data.order (``batch``: its
    0-based index in the epoch, for the dropout masks) into scratch.grads (dW, db), WITHOUT any update:
    forward, the loss head (norm -1: divided by these rows or their weight sum; norm ≥ 0: by norm instead,
    e.g. the whole distributed batch's rows or weight sum, so that summing the ranks' grads gives the whole
    batch's gradient), deltas, weight and bias gradients. No penalty gradient (that is apply_update's).
    Returns (loss, correct predictions) — the loss as the head returns it (these rows' summed loss divided
    as ``norm`` says); when it is not finite the backward pass is skipped and ``grads`` holds the previous
    batch's gradients. GEMMs use up to blas_threads threads."""
    return _GRADIENT(data.X, data.labels, data.targets, data.sample_weights, data.order, data.dkey, start, nb, batch,
                     norm, net.W, net.b, net.codes, net.act_params, net.drop_thr, net.drop_scale, scratch.A,
                     scratch.D, scratch.Z, scratch.Y, scratch.dW, scratch.db, scratch.label_buf, scratch.target_buf,
                     scratch.weight_buf, blas_threads)


def _apply_update(net, scratch, opt, nb, denom, step):
    """The checked update from the gradients in scratch.grads (one rank's, or the sum over ranks): with
    opt.sklearn_alpha > 0, scikit-learn's L2 penalty 0.5·alpha·Σ||W[k]||²·nb/denom (nb: the batch's rows,
    denom: its rows or sample-weight sum — step.batch_denominator —, both of the whole batch) and its
    gradient alpha/denom·W[k] added to grads; each layer's squared gradient norm, added to scratch.norms;
    then the optimizer's update (step.UPDATES) at ``step`` (counted from 1: opt.step0 + batches before + 1)
    over the flat buffer, written only when every parameter and state value stays finite. Returns (failed
    layer or -1, what failed — FAIL_LOSS (the penalty), FAIL_GRADIENT, FAIL_UPDATE, or -1 when the update
    was applied —, the penalty to add to the batch's summed loss). On a failure nothing of params or the
    optimizer state is written (grads may hold the penalty gradient, norms the layers before the failed one)."""
    return _UPDATE(net.W, net.params, scratch.grads, net.offsets, scratch.norms, opt, nb, denom, step)


def _train_epoch(net, scratch, data, opt, blas_threads):
    """One epoch of an explicit-gradient optimizer (see the module's docstring): per batch, the pieces of
    ``_gradient_pass`` (head ``_HEAD``), then ``_UPDATE`` (the pass of _apply_update), bound per loss and
    optimizer by ``variant``, so that a network compiles only the code it uses. GEMMs get BLAS threads by
    _blas.matmul; the caller restores its BLAS thread setting."""
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
    n, d = X.shape
    L = len(W)
    loss_sum = 0.0
    penalty_sum = 0.0
    correct = 0
    steps = 0
    fail(status, 0, -1, FAIL_LOSS)
    norms[:] = 0
    batch = 0
    for start in range(0, n, batch_size):
        batch += 1
        nb = min(batch_size, n - start)
        # _gradient_pass's pieces, called here rather than through it: one level of inlining less
        forward_rows(X, order, start, 0, nb, W, b, codes, act_params, A, Z, Y, drop_thr, drop_scale, dkey, batch - 1,
                     blas_threads)
        x_bound = input_bound(x_bits, 0, nb * d)
        if x_bound == math.inf:           # a gathered row holds NaN/Inf: refused before the batch's update
            fail(status, batch, order[start + first_bad_row(A[0], 0, nb)], FAIL_INPUT)
            return loss_sum, correct, steps, penalty_sum
        loss, right = _HEAD(A[L][:nb], D[L][:nb], labels, targets, order, start, 0, label_buf, target_buf,
                            sample_weights, weight_buf, -1.0)
        if not math.isfinite(loss):
            fail(status, batch, -1, FAIL_LOSS)
            return loss_sum, correct, steps, penalty_sum
        deltas(W, codes, act_params, A, D, Z, Y, drop_thr, drop_scale, dkey, batch - 1, 0, nb, blas_threads)
        for k in range(L - 1, -1, -1):
            dy = D[k + 1][:nb]
            layer_gradient(A[k][:nb], dy, dW[k], dy, db[k], blas_threads)
        layer, what, penalty = _UPDATE(W, params, grads, offsets, norms, opt, nb,
                                       batch_denominator(sample_weights, order, start, nb), opt.step0 + steps + 1)
        if what >= 0:
            fail(status, batch, layer, what)
            return loss_sum, correct, steps, penalty_sum
        correct += right
        steps += 1
        loss_sum += loss * nb
        penalty_sum += penalty
    return loss_sum, correct, steps, penalty_sum


def _train_epoch_plain(net, scratch, data, opt, blas_threads):
    """One epoch of plain SGD (see the module's docstring): per batch, forward, head ``_HEAD``, deltas, the
    proof that the step stays finite (bounds of the batch's rows in amax, dmax — amax[0] the batch's
    max |x|, exactly, from the input check; wbound, the running bounds
    on max |W[k]|, measured before the epoch's first update and again when the proof fails with them),
    then the update inside the weight-gradient GEMMs (through dW, db on the epoch's last batch)."""
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
    n, d = X.shape
    L = len(W)
    amax = np.empty(L + 1)            # bounds on max |A[k]| of the current batch
    dmax = np.empty(L + 1)            # bounds on max |D[k]|
    wbound = np.empty(L)              # running bounds on max |W[k]|, max |b[k]|
    lr = opt.lr
    limit = sgd_limit(params)
    loss_sum = 0.0
    correct = 0
    steps = 0
    fail(status, 0, -1, FAIL_LOSS)
    norms[:] = 0
    batch = 0
    for start in range(0, n, batch_size):
        batch += 1
        nb = min(batch_size, n - start)
        forward_rows(X, order, start, 0, nb, W, b, codes, act_params, A, Z, Y, drop_thr, drop_scale, dkey, batch - 1,
                     blas_threads)
        x_bound = input_bound(x_bits, 0, nb * d)
        if x_bound == math.inf:           # a gathered row holds NaN/Inf: refused before the batch's update
            fail(status, batch, order[start + first_bad_row(A[0], 0, nb)], FAIL_INPUT)
            return loss_sum, correct, steps, 0.0
        amax[0] = x_bound
        loss, right = _HEAD(A[L][:nb], D[L][:nb], labels, targets, order, start, 0, label_buf, target_buf,
                            sample_weights, weight_buf, -1.0)
        if not math.isfinite(loss):
            fail(status, batch, -1, FAIL_LOSS)
            return loss_sum, correct, steps, 0.0
        deltas(W, codes, act_params, A, D, Z, Y, drop_thr, drop_scale, dkey, batch - 1, 0, nb, blas_threads)
        row_bounds(A, D, 0, nb, amax, dmax)
        if batch == 1:                    # the weights' bounds before the epoch's first update
            for k in range(L):
                wbound[k] = layer_bound(params, offsets, k)
        for k in range(L - 1, -1, -1):
            grad_bound = sgd_grad_bound(nb, amax[k], dmax[k + 1])
            if not sgd_proven(lr, grad_bound, wbound[k], limit):
                wbound[k] = layer_bound(params, offsets, k)
                if not sgd_proven(lr, grad_bound, wbound[k], limit):
                    fail(status, batch, k, FAIL_UPDATE)
                    return loss_sum, correct, steps, 0.0
        for k in range(L):
            bias = offsets[k] + W[k].size
            sgd_in_gemm(A[k][:nb], D[k + 1][:nb], W[k], dW[k], D[k + 1][:nb], b[k], db[k], params, grads, offsets[k],
                        bias, bias, offsets[k + 1], lr, start + nb >= n, blas_threads)
            wbound[k] += lr * nb * max(amax[k], 1.0) * dmax[k + 1]
        correct += right
        steps += 1
        loss_sum += loss * nb
    return loss_sum, correct, steps, 0.0


def _chain_names(chain):
    """The global names a driver binds to the pieces of chain ``chain`` (step.CHAINS)."""
    pieces = CHAINS[chain]
    return dict(forward_rows=pieces.forward_rows, deltas=pieces.deltas)


_UPDATES = {opt: specialize(_update_pass, OPT_NAMES[opt], compile_with=inline_kernel, _FINITE=finite, _WRITE=write)
            for opt, (finite, write) in UPDATES.items()}
_VARIANTS, _GRADIENT_KERNELS, _UPDATE_KERNELS = {}, {}, {}


def variant(loss_kind, opt_kind, chain=FULL_CHAIN):
    """The compiled serial epoch kernel for this loss, optimizer and chain (step.chain_key of the network;
    the default runs every network), called as the module's docstring says. Made on first use."""
    key = loss_kind, opt_kind, chain
    if key not in _VARIANTS:
        name = f"{LOSS_NAMES[loss_kind]}_{OPT_NAMES[opt_kind]}{chain_suffix(chain)}"
        if opt_kind == OPT_SGD:
            _VARIANTS[key] = specialize(_train_epoch_plain, name, _HEAD=HEADS[loss_kind], **_chain_names(chain))
        else:
            _VARIANTS[key] = specialize(_train_epoch, name, _HEAD=HEADS[loss_kind], _UPDATE=_UPDATES[opt_kind],
                                        **_chain_names(chain))
    return _VARIANTS[key]


def gradient_kernel(loss_kind, chain=FULL_CHAIN):
    """The compiled ``_batch_gradient`` for this loss and chain (made on first use)."""
    key = loss_kind, chain
    if key not in _GRADIENT_KERNELS:
        name = LOSS_NAMES[loss_kind] + chain_suffix(chain)
        gradient = specialize(_gradient_pass, name, compile_with=inline_kernel, _HEAD=HEADS[loss_kind],
                              **_chain_names(chain))
        _GRADIENT_KERNELS[key] = specialize(_batch_gradient, name, _GRADIENT=gradient)
    return _GRADIENT_KERNELS[key]


def update_kernel(opt_kind):
    """The compiled ``_apply_update`` for this optimizer kind, OPT_MOMENTUM or OPT_ADAM (made on first use).
    Plain SGD (OPT_SGD) updates inside its GEMMs, which cannot take a combined gradient: use OPT_MOMENTUM
    with the same Optimizer record (momentum, weight decay and Nesterov 0: the update p -= lr·g)."""
    if opt_kind not in _UPDATE_KERNELS:
        _UPDATE_KERNELS[opt_kind] = specialize(_apply_update, OPT_NAMES[opt_kind], _UPDATE=_UPDATES[opt_kind])
    return _UPDATE_KERNELS[opt_kind]
