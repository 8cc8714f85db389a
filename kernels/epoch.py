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
  scratch.status. On a non-finite loss, gradient or update, or a weight that could overflow, the kernel
  stops before that batch's update: the parameters stay those of the last finite step, and status says
  [batch (1-based), layer or -1, FAIL_LOSS / FAIL_GRADIENT / FAIL_UPDATE].
- The batch-parallel epoch is the driver of epoch_parallel.py (the same pieces over row blocks and
  parameter ranges, on fastnn's threads).
- The two halves of an explicit-gradient step, for a driver that combines gradients between them (the
  distributed engine: an allreduce of ``grads`` over MPI ranks):
  ``gradient_kernel(loss_kind)(net, scratch, data, start, nb, batch, norm, blas_threads) -> (loss, correct)``
  and ``update_kernel(opt_kind)(net, scratch, opt, nb, denom, step) -> (failed layer, what failed, penalty)``
  (their docstrings: ``_batch_gradient`` and ``_apply_update``). The serial epoch's explicit-gradient
  step is exactly these two inlined one after the other, so a driver that calls them in the same order
  with the same arguments gets the serial epoch's numbers bit for bit.
"""
import math

import numpy as np

from . import optim
from ._jit import inline_kernel, kernel, specialize
from .step import (FAIL_GRADIENT, FAIL_LOSS, FAIL_UPDATE, HEADS, HYPER_SIZE, LOSS_CE_DENSE,  # noqa: F401
                   LOSS_CE_LABELS, LOSS_L2, LOSS_NAMES, LOSS_SIGMOID, OPT_ADAM, OPT_MOMENTUM, OPT_NAMES, OPT_SGD,
                   UPDATES, _absmax_bound, batch_denominator, deltas, fail, forward_rows, layer_bound, layer_gradient,
                   penalty_decay, penalty_factor, penalty_gradient, row_bounds, sgd_grad_bound, sgd_in_gemm,
                   sgd_limit, sgd_proven, weight_penalty)

_LOSS_NAMES = LOSS_NAMES
_HEAD = _FINITE = _WRITE = _GRADIENT = _APPLY = _STEP = None     # bound per variant by specialize()


def _batch_gradient(net, scratch, data, start, nb, batch, norm, blas_threads):
    """The gradient of the mini-batch of nb rows starting at ``start`` of data.order (``batch``: its
    0-based index in the epoch, for the dropout masks) into scratch.grads (dW, db), WITHOUT any update:
    forward, the loss head ``_HEAD`` (norm -1: divided by these rows or their weight sum; norm ≥ 0: by
    norm instead, e.g. the whole distributed batch's rows or weight sum, so that summing the ranks' grads
    gives the whole batch's gradient), deltas, weight and bias gradients. No penalty gradient (that is
    apply_update's). Returns (loss, correct predictions) — the loss as the head returns it (the rows'
    summed loss divided as ``norm`` says); when it is not finite the backward pass is skipped and
    ``grads`` holds the previous batch's gradients."""
    forward_rows(net, scratch, data, start, 0, nb, batch, blas_threads)
    loss, right = _HEAD(scratch, data, start, 0, nb, norm)
    if not math.isfinite(loss):
        return loss, right
    deltas(net, scratch, data, 0, nb, batch, blas_threads)
    for k in range(len(net.W) - 1, -1, -1):
        dy = scratch.D[k + 1][:nb]
        layer_gradient(scratch.A[k][:nb], dy, scratch.dW[k], dy, scratch.db[k], blas_threads)
    return loss, right


def _apply_update(net, scratch, opt, nb, denom, step):
    """The checked update from the gradients in scratch.grads (one rank's, or the sum over ranks): with
    opt.sklearn_alpha > 0, scikit-learn's L2 penalty 0.5·alpha·Σ||W[k]||²·nb/denom (nb: the batch's rows,
    denom: its rows or sample-weight sum, both of the whole batch) and its gradient alpha/denom·W[k] added
    to grads; each layer's squared gradient norm, added to scratch.norms; then the update ``_FINITE`` /
    ``_WRITE`` of the optimizer (step.UPDATES) at ``step`` (counted from 1) over the flat buffer, written
    only when every parameter and state value stays finite. Returns (failed layer or -1, what failed —
    FAIL_LOSS (the penalty), FAIL_GRADIENT, FAIL_UPDATE, or -1 when the update was applied —, the penalty
    to add to the batch's summed loss). On a failure nothing of params or the state is written (grads
    may hold the penalty gradient)."""
    L = len(net.W)
    alpha = opt.sklearn_alpha
    penalty = 0.0
    if alpha != 0:
        penalty = weight_penalty(net) * penalty_factor(alpha, nb, denom)
        if not math.isfinite(penalty):
            return -1, FAIL_LOSS, penalty
        decay = penalty_decay(net.params, alpha, denom)
        for k in range(L):
            penalty_gradient(net.params, scratch.grads, net.offsets[k], net.offsets[k] + net.W[k].size, decay)
    for k in range(L):
        s = optim.squared_norm(scratch.grads, net.offsets[k], net.offsets[k + 1])
        if not math.isfinite(s):
            return k, FAIL_GRADIENT, penalty
        scratch.norms[k] += s
    if not _FINITE(net.params, scratch.grads, opt.slot1, opt.slot2, opt, step):
        return -1, FAIL_UPDATE, penalty
    _WRITE(net.params, scratch.grads, opt.slot1, opt.slot2, opt, step)
    return -1, -1, penalty


def _explicit_step(net, scratch, data, opt, start, nb, batch, amax, dmax, wbound, last, step, blas_threads):
    """One batch of an explicit-gradient optimizer: ``_GRADIENT`` then ``_APPLY`` (the inlined copies of
    _batch_gradient and _apply_update). Returns (loss, correct, failed layer, what failed or -1, penalty)."""
    loss, right = _GRADIENT(net, scratch, data, start, nb, batch, -1.0, blas_threads)
    if not math.isfinite(loss):
        return loss, right, -1, FAIL_LOSS, 0.0
    layer, what, penalty = _APPLY(net, scratch, opt, nb, batch_denominator(data, start, nb), step)
    return loss, right, layer, what, penalty


def _plain_sgd_step(net, scratch, data, opt, start, nb, batch, amax, dmax, wbound, last, step, blas_threads):
    """One batch of plain SGD: forward, head ``_HEAD``, deltas, the proof that the step stays finite
    (bounds of this batch's rows in amax, dmax; wbound, the running bounds on max |W[k]|, measured again
    when the proof fails with them), then the update inside the weight-gradient GEMMs. Returns as
    _explicit_step (penalty 0: scikit-learn's penalty takes the explicit-gradient step)."""
    L = len(net.W)
    A, D = scratch.A, scratch.D
    forward_rows(net, scratch, data, start, 0, nb, batch, blas_threads)
    loss, right = _HEAD(scratch, data, start, 0, nb, -1.0)
    if not math.isfinite(loss):
        return loss, right, -1, FAIL_LOSS, 0.0
    deltas(net, scratch, data, 0, nb, batch, blas_threads)
    row_bounds(scratch, 0, nb, amax, dmax)
    lr = opt.lr
    limit = sgd_limit(net.params)
    for k in range(L - 1, -1, -1):
        grad_bound = sgd_grad_bound(nb, amax[k], dmax[k + 1])
        if not sgd_proven(lr, grad_bound, wbound[k], limit):
            wbound[k] = layer_bound(net, k)
            if not sgd_proven(lr, grad_bound, wbound[k], limit):
                return loss, right, k, FAIL_UPDATE, 0.0
    for k in range(L):
        bias = net.offsets[k] + net.W[k].size
        sgd_in_gemm(A[k][:nb], D[k + 1][:nb], net.W[k], scratch.dW[k], D[k + 1][:nb], net.b[k], scratch.db[k],
                    net.params, scratch.grads, net.offsets[k], bias, bias, net.offsets[k + 1], lr, last,
                    blas_threads)
        wbound[k] += lr * nb * max(amax[k], 1.0) * dmax[k + 1]
    return loss, right, -1, -1, 0.0


def _train_epoch(net, scratch, data, opt, blas_threads):
    """One epoch (see the module's docstring); GEMMs get BLAS threads by _blas.matmul.

    A template: ``_STEP`` is bound per variant (see ``variant``), so that a network compiles only the loss
    and optimizer code it uses. The caller restores its BLAS thread setting.
    """
    n = data.X.shape[0]
    L = len(net.W)
    amax = np.empty(L + 1)            # bounds on max |A[k]| of the current batch (plain SGD)
    dmax = np.empty(L + 1)            # bounds on max |D[k]|
    wbound = np.empty(L)              # running bounds on max |W[k]|, max |b[k]|, measured before the first batch
    amax[0] = data.x_absmax
    if _PLAIN_SGD:
        for k in range(L):
            wbound[k] = layer_bound(net, k)
    loss_sum = 0.0
    penalty_sum = 0.0
    correct = 0
    steps = 0
    fail(scratch.status, 0, -1, FAIL_LOSS)
    scratch.norms[:] = 0
    batch = 0
    for start in range(0, n, data.batch_size):
        batch += 1
        nb = min(data.batch_size, n - start)
        loss, right, layer, what, penalty = _STEP(net, scratch, data, opt, start, nb, batch - 1, amax, dmax, wbound,
                                                  start + nb >= n, opt.step0 + steps + 1, blas_threads)
        if what >= 0:
            fail(scratch.status, batch, layer, what)
            return loss_sum, correct, steps, penalty_sum
        correct += right
        steps += 1
        loss_sum += loss * nb
        penalty_sum += penalty
    return loss_sum, correct, steps, penalty_sum


_PLAIN_SGD = False
_GRADIENTS = {loss: specialize(_batch_gradient, LOSS_NAMES[loss], compile_with=inline_kernel, _HEAD=head)
              for loss, head in HEADS.items()}
_APPLIES = {opt: specialize(_apply_update, OPT_NAMES[opt], compile_with=inline_kernel, _FINITE=finite, _WRITE=write)
            for opt, (finite, write) in UPDATES.items()}


def _step(loss, opt):
    name = f"{LOSS_NAMES[loss]}_{OPT_NAMES[opt]}"
    if opt == OPT_SGD:
        return specialize(_plain_sgd_step, name, compile_with=inline_kernel, _HEAD=HEADS[loss])
    return specialize(_explicit_step, name, compile_with=inline_kernel, _GRADIENT=_GRADIENTS[loss], _APPLY=_APPLIES[opt])


_VARIANTS = {(loss, opt): specialize(_train_epoch, f"{LOSS_NAMES[loss]}_{OPT_NAMES[opt]}", _STEP=_step(loss, opt),
                                     _PLAIN_SGD=opt == OPT_SGD)
             for loss in HEADS for opt in OPT_NAMES}


def variant(loss_kind, opt_kind):
    """The compiled serial epoch kernel for this loss and optimizer (called as the module's docstring says)."""
    return _VARIANTS[loss_kind, opt_kind]


_GRADIENT_KERNELS, _UPDATE_KERNELS = {}, {}


def gradient_kernel(loss_kind):
    """The compiled ``_batch_gradient`` for this loss (made on first use)."""
    if loss_kind not in _GRADIENT_KERNELS:
        _GRADIENT_KERNELS[loss_kind] = specialize(_batch_gradient, f"{LOSS_NAMES[loss_kind]}_kernel",
                                                  _HEAD=HEADS[loss_kind])
    return _GRADIENT_KERNELS[loss_kind]


def update_kernel(opt_kind):
    """The compiled ``_apply_update`` for this optimizer kind, OPT_MOMENTUM or OPT_ADAM (made on first use).
    Plain SGD (OPT_SGD) updates inside its GEMMs, which cannot take a combined gradient: use OPT_MOMENTUM
    with the same Optimizer record (momentum, weight decay and Nesterov 0: the update p -= lr·g)."""
    if opt_kind not in _UPDATE_KERNELS:
        finite, write = UPDATES[opt_kind]
        _UPDATE_KERNELS[opt_kind] = specialize(_apply_update, f"{OPT_NAMES[opt_kind]}_kernel", _FINITE=finite,
                                               _WRITE=write)
    return _UPDATE_KERNELS[opt_kind]
