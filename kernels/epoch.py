"""The fused whole-epoch kernel: every mini-batch of an epoch of a dense network, inside one Numba call.

Network: L fully connected layers, layer k computing A[k+1] = f_k(A[k] @ W[k] + b[k]), with f_k an
activation code (activations.IDENTITY for none); a softmax-cross-entropy or L2 head; an SGD, momentum or
Adam update of the flat parameter buffer of which every W[k], b[k] is a view.

Arguments (all C-contiguous, one float dtype unless said):
  X (n, d); labels (n,) int64 and targets (n, m) — the one not used by ``loss_kind`` may be empty;
  order (n,) int64, the epoch's sample order; batch_size;
  W, b, dW, db: tuples of the L weight (in_k, out_k), bias (out_k,) arrays and their gradients;
  A: tuple of L+1 buffers (batch_size, width_k), A[0] the gathered input batch; D: tuple of L+1 buffers
  for dL/dA[k] (D[0] unused, may be a (0, 0) array); codes (L,) int64;
  loss_kind: LOSS_CE_LABELS, LOSS_CE_DENSE or LOSS_L2;
  params, grads: the flat 1-D buffers; offsets (L+1,) int64, layer k's segment of grads;
  opt_kind: OPT_SGD, OPT_MOMENTUM or OPT_ADAM; slot1, slot2: optimizer state (empty when unused);
  hyper: float64 [lr, momentum or beta1, beta2, eps]; step0: Adam steps taken before this epoch;
  norms (L,) float64: receives the squared gradient norm of each layer summed over the epoch's batches;
  status (2,) int64: receives [failed batch (1-based) or 0, failed layer or -1].
Returns (loss summed over samples, correct predictions, steps taken).
On a non-finite loss or gradient the kernel stops before that batch's update, so the parameters stay those
of the last finite step.
"""
import math

import numpy as np

from . import optim
from .activations import derivative
from .dense import bias_activate, column_sums
from .softmax_ce import count_correct_dense, count_correct_labels, l2, softmax_ce_dense, softmax_ce_labels
from ._jit import kernel

LOSS_CE_LABELS, LOSS_CE_DENSE, LOSS_L2 = 0, 1, 2
OPT_SGD, OPT_MOMENTUM, OPT_ADAM = 0, 1, 2


@kernel
def _gather(X, order, start, out):
    for i in range(out.shape[0]):
        src = order[start + i]
        for j in range(X.shape[1]):
            out[i, j] = X[src, j]


@kernel
def _gather_labels(labels, order, start, out):
    for i in range(out.shape[0]):
        out[i] = labels[order[start + i]]


@kernel
def _multiply_derivative(code, y, d):
    one = d.dtype.type(1)
    n, m = d.shape
    for i in range(n):
        for j in range(m):
            d[i, j] *= derivative(code, y[i, j], one)


@kernel
def train_epoch(X, labels, targets, order, batch_size, W, b, dW, db, A, D, codes, loss_kind,
                params, grads, offsets, opt_kind, slot1, slot2, hyper, step0, norms, status,
                label_buf, target_buf):
    n = X.shape[0]
    L = len(W)
    loss_sum = 0.0
    correct = 0
    steps = 0
    status[0] = 0
    status[1] = -1
    norms[:] = 0
    batch = 0
    for start in range(0, n, batch_size):
        batch += 1
        nb = min(batch_size, n - start)
        _gather(X, order, start, A[0][:nb])
        for k in range(L):
            out = A[k + 1][:nb]
            np.dot(A[k][:nb], W[k], out)
            bias_activate(out, b[k], codes[k])
        logits = A[L][:nb]
        head = D[L][:nb]
        if loss_kind == LOSS_CE_LABELS:
            yb = label_buf[:nb]
            _gather_labels(labels, order, start, yb)
            loss = softmax_ce_labels(logits, yb, head)
            correct += count_correct_labels(logits, yb)
        else:
            tb = target_buf[:nb]
            _gather(targets, order, start, tb)
            if loss_kind == LOSS_CE_DENSE:
                loss = softmax_ce_dense(logits, tb, head)
                correct += count_correct_dense(logits, tb)
            else:
                loss = l2(logits, tb, head)
        if not math.isfinite(loss):
            status[0] = batch
            return loss_sum, correct, steps
        for k in range(L - 1, -1, -1):
            dy = D[k + 1][:nb]
            np.dot(A[k][:nb].T, dy, dW[k])
            column_sums(dy, db[k])
            if k > 0:
                dx = D[k][:nb]
                np.dot(dy, W[k].T, dx)
                _multiply_derivative(codes[k - 1], A[k][:nb], dx)
        for k in range(L):
            s = optim.squared_norm(grads, offsets[k], offsets[k + 1])
            if not math.isfinite(s):
                status[0] = batch
                status[1] = k
                return loss_sum, correct, steps
            norms[k] += s
        if opt_kind == OPT_SGD:
            optim.sgd(params, grads, hyper[0])
        elif opt_kind == OPT_MOMENTUM:
            optim.sgd_momentum(params, grads, slot1, hyper[0], hyper[1])
        else:
            optim.adam(params, grads, slot1, slot2, hyper[0], hyper[1], hyper[2], hyper[3], step0 + steps + 1)
        steps += 1
        loss_sum += loss * nb
    return loss_sum, correct, steps
