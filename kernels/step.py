"""THE training step of a dense network, written once: the pieces that the epoch drivers (epoch.py: the
serial epoch, the batch-parallel epoch, and the two kernels of a distributed step) schedule over
mini-batches, row blocks and parameter ranges. The pieces are ``inline_kernel`` (IR-inlined where they are
called: no separately compiled function of their own) unless said.

Network: L fully connected layers, layer k computing A[k+1] = f_k(A[k] @ W[k] + b[k]), f_k an activation
code (activations.py; IDENTITY for none), optionally followed by inverted dropout (dropout.py); a fused
loss head (softmax cross-entropy on class ids or on distributions, sigmoid cross-entropy, L2; each
optionally weighted per sample as scikit-learn weights it, softmax_ce.py); SGD (weight decay, momentum,
Nesterov) or Adam / AdamW on the flat parameter buffer of which every W[k], b[k] is a view.

The pieces (rows r0:r1 of the mini-batch that starts at row ``start`` of the epoch's order) take the
records' fields they use, not the records, and the drivers call them one level deep: Numba increfs every
array of a record wherever an inlined piece binds it (records passed down through the pieces doubled the
epoch kernel's unoptimised LLVM code), and every level of IR inlining re-runs Numba's untyped passes over
the level below; together they took the default fit's epoch kernel from 2.2 to 3.3 s of compile. The
drivers take the records and unpack them once.
  layer_forward       one layer's rows: GEMM, bias + activation (dense.py's per-layer forward is its copy)
  forward_rows        gather the rows of X, then layer_forward and dropout per layer
  input_bound, first_bad_row   max |x| of the gathered rows, exactly (inf when one holds NaN/Inf: the
                      drivers' input check, DESIGN §4); the first row holding NaN/Inf
  HEADS[loss_kind]    the loss head on the last layer's rows: (loss, correct), dL/dA[L] into D[L]
  deltas              D[k] for k = L-1 .. 1: GEMM by W[k]ᵀ, then back through dropout and activation
  row_bounds          bounds on max |A[k]|, max |D[k]| of the rows (plain SGD's proof of finiteness)
  layer_gradient      dW = aᵀ·dy, db = column sums of dy, over a parameter range (or a whole layer; dense.py
                      calls it too); column_sums (a kernel of its own) the bias part
  penalty_gradient    scikit-learn's L2: grads += alpha/denom · W (weights only, not biases)
  weight_penalty / penalty_factor   Σ||W[k]||² and the factor that makes it scikit-learn's loss term
  batch_denominator   the batch's rows, or its sample-weight sum (scikit-learn's sw_sum)
  sgd_limit, sgd_grad_bound, sgd_proven, layer_bound   plain SGD's proof that a step stays finite
  sgd_in_gemm         plain SGD inside the weight-gradient GEMM (or through dW/db on the last batch)
  UPDATES[opt_kind]   (is_finite, write) of an explicit-gradient optimizer over a flat range (optim.py)
  fail                write the verdict into ``status``

The records (collections.namedtuple, which Numba types as tuples: no per-process cost, cached like
arguments; built once per fit by fastnn/engines/fused.py; this module is the one place that knows their
fields). One float dtype ("f") throughout: float32 or float64; all arrays C-contiguous.
  Network(W, b, codes, act_params, drop_thr, drop_scale, params, offsets)
    W, b: tuples of the L weight (in_k, out_k) f and bias (out_k,) f arrays, views of ``params``;
    codes (L,) int64 activation codes; act_params (L,) float64 their parameters;
    drop_thr (L,) int64 dropout keep thresholds (0: no dropout after layer k), drop_scale (L,) float64 1/(1-p);
    params (P,) f the flat parameter buffer; offsets (L+1,) int64, layer k's segment of params and grads
    (its weights, row-major, then its bias).
  Scratch(A, D, Z, Y, dW, db, grads, label_buf, target_buf, weight_buf, norms, status, x_bits)
    A: tuple of L+1 (batch_size, width_k) f, A[0] the gathered input rows; D: tuple of L+1 dL/dA[k]
    (D[0] unused, may be (0, 0)); Z: tuple of L (batch_size, out_k) pre-activations for the layers whose
    activation derivative reads them (activations.NEEDS_Z), (0, 0) for the others; Y: tuple of L
    (batch_size, out_k) activation outputs before dropout ((0, 0) for layers without dropout);
    dW, db: tuples of the gradient views of ``grads`` (P,) f; label_buf (batch_size,) int64 or (0,),
    target_buf (batch_size, m) f or (0, 0), weight_buf (batch_size,) f or (0,) unweighted: the gathered
    labels / targets / sample weights; outputs: norms (L,) float64, each layer's squared gradient norm
    summed over the epoch (explicit-gradient optimizers), status (3,) int64 [failed batch (1-based) or 0,
    where: the failed layer or -1 — for FAIL_INPUT the row of X that holds NaN/Inf —, what failed:
    FAIL_LOSS / FAIL_GRADIENT / FAIL_UPDATE / FAIL_INPUT]; x_bits: A[0] flat, viewed as integers of its
    width (int32 for float32, int64 for float64), for ``input_bound``.
  Data(X, labels, targets, sample_weights, order, batch_size, dkey)
    X (n, d) f, not checked for NaN/Inf: the drivers check the rows they gather (``input_bound``);
    labels (n,) int64 or targets (n, m) f — the one the loss does not use is empty; sample_weights (n,) f
    or (0,) (bit-identical to no weights); order (n,) int64 the epoch's sample order; batch_size int; dkey
    uint64, the epoch's dropout key (batch b of the epoch, 0-based, row i: masks keyed (dkey, b, i), as
    the per-layer path keys them).
  Optimizer(lr, momentum, beta2, eps, weight_decay, nesterov_or_decoupled, sklearn_alpha, sklearn_eps,
            slot1, slot2, step0)
    the hyperparameters, float: momentum is SGD's momentum or Adam's beta1; nesterov_or_decoupled 1.0/0.0
    is SGD's Nesterov switch or Adam's decoupled weight decay (AdamW); sklearn_alpha > 0 adds scikit-
    learn's L2 penalty (explicit-gradient kinds only); sklearn_eps 1.0 puts Adam's eps outside the bias
    correction, as scikit-learn does. slot1, slot2 (P,) f the optimizer state (velocity; Adam's m, v),
    (0,) when unused; step0 int, the steps taken before this epoch (Adam's bias correction counts from 1).
    Optimizer.kernel_spec() (fastnn/optimizers.py) gives the hyperparameters as a float64 array in
    HYPER_FIELDS order (``hyper_array``); ``optimizer_record`` makes the record from it.

The input is checked where it is read: every driver checks the rows it gathered (input_bound)
before the batch's loss and update, and stops with FAIL_INPUT and the first bad row (in the batch's order)
when one holds NaN or Inf — so that a fit makes no pass over X of its own (fastnn/training.py).

Plain SGD (OPT_SGD) updates each layer inside its weight-gradient GEMM, W[k] += (-lr)·A[k]ᵀ·D[k+1] (BLAS
beta = 1): no gradient buffer is written and no separate pass over the weights is made. Before any weight
changes, the step proves that it stays finite: every delta D[k] must be finite, the bound
|dW| ≤ batch·max|A[k]|·max|D[k+1]| (max|A[0]|: the batch's own rows, exactly) must stay far below the
dtype's maximum, and so must lr times it added
to a running bound on max|W[k]| (measured before the epoch's first batch, grown by each step's bound, and
measured again when the proof fails with it). Every other optimizer (OPT_MOMENTUM: SGD with momentum,
Nesterov or weight decay; OPT_ADAM: Adam and AdamW) writes the gradients, checks their norms and the
update's finiteness and updates the flat buffer with the arithmetic of optim.py that the per-layer path
uses, so both agree bit for bit.
"""
import math
from collections import namedtuple

import numpy as np
from numba import types
from numba.extending import overload

from . import optim
from ._blas import gemm, matmul
from ._jit import OPTIONS, inline_kernel, internal_kernel, kernel, specialize
from .activations import GROUPS, KERNELS as ACTIVATION_KERNELS, add_bias
from .activations import group as activation_group
from .batch import gather, gather_rows
from .dropout import apply as dropout_apply
from .softmax_ce import (count_correct_dense, count_correct_indicators, count_correct_labels, l2_w, sigmoid_ce_w,
                         softmax_ce_dense_w, softmax_ce_labels_w)

LOSS_CE_LABELS, LOSS_CE_DENSE, LOSS_L2, LOSS_SIGMOID = 0, 1, 2, 3
LOSS_NAMES = {LOSS_CE_LABELS: "labels", LOSS_CE_DENSE: "dense", LOSS_L2: "l2", LOSS_SIGMOID: "sigmoid"}
OPT_SGD, OPT_MOMENTUM, OPT_ADAM = 0, 1, 2      # plain SGD (in-GEMM); explicit-gradient SGD; Adam / AdamW
OPT_NAMES = {OPT_SGD: "sgd", OPT_MOMENTUM: "momentum", OPT_ADAM: "adam"}
FAIL_LOSS, FAIL_GRADIENT, FAIL_UPDATE, FAIL_INPUT = 0, 1, 2, 3

Network = namedtuple("Network", "W b codes act_params drop_thr drop_scale params offsets")
Scratch = namedtuple("Scratch", "A D Z Y dW db grads label_buf target_buf weight_buf norms status x_bits")
Data = namedtuple("Data", "X labels targets sample_weights order batch_size dkey")
HYPER_FIELDS = ("lr", "momentum", "beta2", "eps", "weight_decay", "nesterov_or_decoupled", "sklearn_alpha",
                "sklearn_eps")
HYPER_SIZE = len(HYPER_FIELDS)
Optimizer = namedtuple("Optimizer", HYPER_FIELDS + ("slot1", "slot2", "step0"))


def hyper_array(**values):
    """The float64 array (HYPER_SIZE,) of the hyperparameters named by HYPER_FIELDS (missing ones 0)."""
    unknown = set(values) - set(HYPER_FIELDS)
    if unknown:
        raise TypeError(f"unknown hyperparameters {sorted(unknown)}")
    return np.array([float(values.get(name, 0.0)) for name in HYPER_FIELDS], np.float64)


def replace(record, **fields):
    """A copy of ``record`` with some fields replaced (namedtuple's _replace, under a public name)."""
    return record._replace(**fields)


def optimizer_record(hyper, slot1, slot2, step0):
    """The Optimizer record from ``hyper_array``'s array, the state slots and the steps taken."""
    return Optimizer(*(float(v) for v in hyper), slot1=slot1, slot2=slot2, step0=int(step0))


@inline_kernel
def fail(status, batch, layer, what):
    status[0] = batch
    status[1] = layer
    status[2] = what


def _absmax_bound(x):
    """An upper bound (within a factor 2) on max |x| over a C-contiguous float array; inf if any NaN/Inf.

    Works on the bit patterns as integers — |x| is the pattern without its sign bit, ordered like the
    magnitudes, with Inf and NaN above every finite value — so the loop vectorises without fastmath. The
    bound is a monotone function of max |x|: the bound of a union of ranges is the max of their bounds.
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


@inline_kernel
def input_bound(bits, lo, hi):
    """max |x| over x.flat[lo:hi], exactly, as a float64 (0.0 for an empty range), inf when a value there is
    NaN or Inf; ``bits`` the float array x's flat int view of the same width (Scratch.x_bits: A[0]'s). The
    largest bit pattern without its sign (ordered like the magnitudes, Inf and NaN above every finite
    value; an integer max, which vectorises without fastmath), read back as the value it encodes."""
    mask = bits.dtype.type((1 << (8 * bits.itemsize - 1)) - 1)      # every bit but the sign (int64: wraps)
    top = bits.dtype.type(0)
    for i in range(lo, hi):
        v = bits.dtype.type(bits[i] & mask)      # the cast keeps the lanes' width (no widening)
        if v > top:
            top = v
    mantissa, bias = (23, 127) if bits.itemsize == 4 else (52, 1023)
    pattern = np.int64(top)
    field = pattern >> mantissa
    if field == 2 * bias + 1:                           # Inf or NaN
        return math.inf
    m = float(pattern & ((np.int64(1) << mantissa) - 1))
    if field == 0:                                      # zero or subnormal: m · 2^(1 - bias - mantissa)
        return math.ldexp(m, 1 - bias - mantissa)
    return math.ldexp(m + float(np.int64(1) << mantissa), field - bias - mantissa)     # exact in float64


@inline_kernel
def first_bad_row(a, r0, r1):
    """The first row i in r0:r1 of the 2-D ``a`` that holds NaN or Inf, or -1."""
    for i in range(r0, r1):
        for j in range(a.shape[1]):
            if not math.isfinite(a[i, j]):
                return i
    return -1


# ------------------------------------------------------------------------------------------- forward
def _layer_forward(a, w, b, code, param, z, out, blas_threads=0):
    """out = f(a @ w + b) for one layer's rows; z (same rows) keeps the pre-activation a @ w + b when it
    has rows (the activation's derivative reads it), else it is (0, 0) and unused. ``_ACTIVATE``: the
    bias + activation pass, bound per copy (``layer_forward`` here; dense.py's per-layer kernels)."""
    if z.shape[0] > 0:
        matmul(a, False, w, False, z, blas_threads)
        _ACTIVATE(z, b, code, param, out)
        add_bias(z, b)
    else:
        matmul(a, False, w, False, out, blas_threads)
        _ACTIVATE(out, b, code, param, out)


_ACTIVATE = None     # bound per copy of _layer_forward by specialize()


def _forward_rows(X, order, start, r0, r1, W, b, codes, act_params, A, Z, Y, drop_thr, drop_scale, dkey, batch,
                 blas_threads):
    """Rows r0:r1 of the batch starting at ``start``: A[k+1] = f_k(A[k] @ W[k] + b[k]); Z[k] keeps the
    pre-activation where f_k's derivative reads it. Layer k with dropout (drop_thr[k] > 0): f_k's output
    goes to Y[k] and A[k+1] is its dropped copy (masks keyed (dkey, batch, row), batch 0-based). The
    drivers check the gathered rows A[0][r0:r1] after it (``input_bound``). ``_LAYER_FORWARD``: layer_forward
    of one activation group (``CHAINS``)."""
    gather_rows(X, order, start + r0, A[0][r0:r1])
    for k in range(len(W)):
        out = Y[k][r0:r1] if _DROPOUT and drop_thr[k] > 0 else A[k + 1][r0:r1]
        _LAYER_FORWARD(A[k][r0:r1], W[k], b[k], codes[k], act_params[k], Z[k][r0:r1], out, blas_threads)
        if _DROPOUT and drop_thr[k] > 0:
            dropout_apply(dkey, batch, r0, drop_thr[k], drop_scale[k], out, A[k + 1][r0:r1])


# ------------------------------------------------------------------------------------------- loss heads
@inline_kernel
def _head_labels(logits, head, labels, targets, order, start, r0, label_buf, target_buf, sample_weights, weight_buf,
                 norm):
    """Softmax cross-entropy of ``logits`` (A[L]'s rows r0:r0+len(logits) of the batch) against their class
    ids: (loss, correct predictions), dL/dlogits into ``head`` (D[L]'s rows); ``norm``: softmax_ce's (-1:
    these rows are the batch)."""
    r1 = r0 + logits.shape[0]
    yb = label_buf[r0:r1]
    gather(labels, order, start + r0, yb)
    wb = weight_buf[r0:r1]           # (0,) unweighted
    if sample_weights.size:
        gather(sample_weights, order, start + r0, wb)
    loss = softmax_ce_labels_w(logits, yb, head, wb, norm)
    return loss, count_correct_labels(logits, yb)


def _head_targets(logits, head, labels, targets, order, start, r0, label_buf, target_buf, sample_weights, weight_buf,
                  norm):
    """The loss ``_LOSS`` (softmax cross-entropy on distributions, sigmoid cross-entropy or L2; bound per
    variant, see HEADS) against the target rows r0:r0+len(logits) of the batch: (loss, ``_COUNT``
    correct); arguments as for _head_labels."""
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
#: the loss head of each LOSS_* kind: head(logits, head, labels, targets, order, start, r0, label_buf, target_buf,
#: sample_weights, weight_buf, norm) -> (loss, correct)
HEADS = {LOSS_CE_LABELS: _head_labels, **{
    kind: specialize(_head_targets, LOSS_NAMES[kind], compile_with=inline_kernel, _LOSS=loss, _COUNT=count)
    for kind, loss, count in ((LOSS_CE_DENSE, softmax_ce_dense_w, count_correct_dense), (LOSS_L2, l2_w, _no_count),
                              (LOSS_SIGMOID, sigmoid_ce_w, count_correct_indicators))}}


@inline_kernel
def batch_denominator(sample_weights, order, start, nb):
    """The batch's rows, or its sample-weight sum (scikit-learn's sw_sum), summed in float64 in row order."""
    if sample_weights.size == 0:
        return float(nb)
    denom = 0.0
    for i in range(nb):
        denom += sample_weights[order[start + i]]
    return denom


# ------------------------------------------------------------------------------------------- backward
def _deltas(W, codes, act_params, A, D, Z, Y, drop_thr, drop_scale, dkey, batch, r0, r1, blas_threads):
    """The deltas of rows r0:r1, once the head wrote D[L]: for k = L-1 .. 1, D[k] = D[k+1] @ W[k]ᵀ, then
    back through layer k-1's dropout and its activation's derivative (read from its output — Y[k-1] when
    it has dropout, else A[k] — or from its pre-activation Z[k-1]). ``_SCALE``: scale_by_derivative of one
    activation group (``CHAINS``)."""
    for k in range(len(W) - 1, 0, -1):
        dx = D[k][r0:r1]
        matmul(D[k + 1][r0:r1], False, W[k], True, dx, blas_threads)
        if _DROPOUT and drop_thr[k - 1] > 0:
            dropout_apply(dkey, batch, r0, drop_thr[k - 1], drop_scale[k - 1], dx, dx)
            _SCALE(codes[k - 1], act_params[k - 1], Y[k - 1][r0:r1], Z[k - 1][r0:r1], dx)
        else:
            _SCALE(codes[k - 1], act_params[k - 1], A[k][r0:r1], Z[k - 1][r0:r1], dx)


_LAYER_FORWARD = _SCALE = None     # bound per chain by specialize()
_DROPOUT = True                    # False: a chain for networks without Dropout (its branches cut before typing)
#: The pieces that depend on a network's layers, per chain key (activation group, has dropout): the group of
#: activation kernels (activations.GROUPS) and whether the Dropout branches are compiled. A driver made from
#: ``CHAINS[key]`` compiles only what such networks run; ``chain_key`` picks the key of a network.
Chain = namedtuple("Chain", "layer_forward forward_rows deltas")
#: the chain that runs every network (every activation code, Dropout)
FULL_CHAIN = ("all", True)


def chain_key(codes, dropout):
    """The chain key of a network with these activation codes, with Dropout layers or not."""
    return activation_group(codes), bool(dropout)


def chain_suffix(key):
    """The suffix of a driver's name (its cache name) for chain ``key``: "" for the full chain."""
    group, dropout = key
    return "" if key == FULL_CHAIN else f"_{group}{'' if dropout else '_nodrop'}"


def _chain(key):
    group, dropout = key
    kernels = ACTIVATION_KERNELS[group]
    name = chain_suffix(key)[1:] or "all"
    forward = specialize(_layer_forward, f"inline_{group}", compile_with=inline_kernel, _ACTIVATE=kernels.bias_activate)
    return Chain(forward,
                 specialize(_forward_rows, name, compile_with=inline_kernel, _LAYER_FORWARD=forward, _DROPOUT=dropout),
                 specialize(_deltas, name, compile_with=inline_kernel, _SCALE=kernels.scale_by_derivative,
                            _DROPOUT=dropout))


CHAINS = {(group, dropout): _chain((group, dropout)) for group in GROUPS for dropout in (True, False)}
#: every network's pieces (the full chain), under their usual names
layer_forward, forward_rows, deltas = CHAINS[FULL_CHAIN]


@inline_kernel
def row_bounds(A, D, r0, r1, amax, dmax):
    """Bounds on max |A[k]| (k = 1 .. L-1, into amax[k]) and max |D[k]| (k = 1 .. L, into dmax[k]) over
    rows r0:r1 (r1 > r0), for plain SGD's proof of finiteness."""
    L = len(A) - 1
    dmax[L] = _absmax_bound(D[L][r0:r1])
    for k in range(L - 1, 0, -1):
        dmax[k] = _absmax_bound(D[k][r0:r1])
        amax[k] = _absmax_bound(A[k][r0:r1])


@kernel
def column_sums(dy, db):
    """db[j] = sum_i dy[i, j]; rows outer so the inner loop vectorises and no thread races on db."""
    db[:] = 0
    n, m = dy.shape
    for i in range(n):
        for j in range(m):
            db[j] += dy[i, j]


@inline_kernel
def layer_gradient(a, dy_w, dw, dy_b, db, blas_threads):
    """dw = aᵀ·dy_w and db = column sums of dy_b, each skipped when empty: a layer's weight and bias
    gradients over the batch, or those of a range of its rows (a = A[k][:, i0:i1], dw = dW[k][i0:i1]) and of
    its columns (dy_b = D[k+1][:, j0:j1], db = db[k][j0:j1])."""
    if dw.shape[0] > 0:
        matmul(a, True, dy_w, False, dw, blas_threads)
    if db.size > 0:
        column_sums(dy_b, db)


@inline_kernel
def penalty_gradient(params, grads, w0, w1, decay):
    """scikit-learn's L2 penalty gradient on the weights params[w0:w1]: grads += decay · params."""
    for i in range(w0, w1):
        grads[i] += decay * params[i]


@inline_kernel
def penalty_factor(alpha, nb, denom):
    """0.5 · alpha · nb / denom: Σ||W||² times this is the penalty scikit-learn adds to the batch's summed
    loss (0 when the batch's weights sum to 0)."""
    return 0.5 * alpha * nb / denom if denom > 0 else 0.0


@inline_kernel
def penalty_decay(params, alpha, denom):
    """alpha / denom in the parameters' dtype: the penalty gradient's factor (0 when denom is 0)."""
    return params.dtype.type(alpha / denom if denom > 0 else 0.0)


@inline_kernel
def weight_penalty(W, params, offsets):
    """Σ_k ||W[k]||² (the weights of each layer's segment of params), accumulated in float64 in layer order."""
    s = 0.0
    for k in range(len(W)):
        s += optim.squared_norm(params, offsets[k], offsets[k] + W[k].size)
    return s


# ------------------------------------------------------------------------------------------- plain SGD
@inline_kernel
def sgd_limit(params):
    """What every bound of plain SGD's proof must stay below: a quarter of the dtype's maximum."""
    return np.finfo(params.dtype).max / 4.0


@inline_kernel
def sgd_grad_bound(nb, amax, dmax):
    """A bound on |dW[k]| of a batch of nb rows from bounds on max |A[k]| and max |D[k+1]|."""
    return nb * max(amax, 1.0) * dmax


@inline_kernel
def sgd_proven(lr, grad_bound, wbound, limit):
    """Whether the step's weights (bounded by wbound + lr·grad_bound) and gradients stay below ``limit``."""
    return lr * grad_bound + wbound < limit and grad_bound < limit


@inline_kernel
def layer_bound(params, offsets, k):
    """A bound on max |W[k]|, |b[k]| (layer k's segment of the parameter buffer)."""
    return _absmax_bound(params[offsets[k]:offsets[k + 1]])


@internal_kernel
def sgd_bias(b, dy, db, lr):
    """b -= lr · column sums of dy; db receives the sums (rows outer, so the loops vectorise)."""
    column_sums(dy, db)
    step = b.dtype.type(lr)
    for j in range(b.size):
        b[j] -= step * db[j]


@inline_kernel
def sgd_in_gemm(a, dy_w, w, dw, dy_b, b, db, params, grads, w0, w1, c0, c1, lr, last, blas_threads):
    """Plain SGD of one layer's rows w (flat params[w0:w1]) and bias columns b (params[c0:c1]) inside the
    weight-gradient GEMM, w += (-lr)·aᵀ·dy_w, b -= lr·column sums of dy_b (into db). On the epoch's
    ``last`` batch the gradients are written to dw, db and the update taken from them (one pass over the
    weights instead of a second GEMM), so that the epoch's gradients are those of the per-layer path."""
    if last:
        layer_gradient(a, dy_w, dw, dy_b, db, blas_threads)
        optim.sgd(params[w0:w1], grads[w0:w1], lr)
        optim.sgd(params[c0:c1], grads[c0:c1], lr)
    else:
        if w1 > w0:
            gemm(-lr, a, True, dy_w, False, 1.0, w, blas_threads)
        if c1 > c0:
            sgd_bias(b, dy_b, db, lr)


# ------------------------------------------------------------------------------------------- explicit updates
@inline_kernel
def _momentum_is_finite(p, g, velocity, unused, opt, step):
    """Would the explicit-gradient SGD update of p (flat range) leave every value finite? velocity is
    empty (and untouched) when the momentum is 0."""
    return optim.sgd_momentum_is_finite(p, g, velocity, opt.lr, opt.momentum, opt.weight_decay,
                                        opt.nesterov_or_decoupled != 0)


@inline_kernel
def _momentum_write(p, g, velocity, unused, opt, step):
    """The explicit-gradient SGD update of p (flat range): torch.optim.SGD's."""
    optim.sgd_momentum(p, g, velocity, opt.lr, opt.momentum, opt.weight_decay, opt.nesterov_or_decoupled != 0)


@inline_kernel
def _adam_is_finite(p, g, m, v, opt, step):
    """Would the Adam / AdamW update of p (flat range) at ``step`` (from 1) leave every value finite?"""
    return optim.adam_is_finite(p, g, m, v, opt.lr, opt.momentum, opt.beta2, opt.eps, step, opt.weight_decay,
                                opt.nesterov_or_decoupled != 0, opt.sklearn_eps != 0)


@inline_kernel
def _adam_write(p, g, m, v, opt, step):
    """The Adam / AdamW update of p (flat range) at ``step``: torch.optim's (scikit-learn's eps with
    sklearn_eps)."""
    optim.adam(p, g, m, v, opt.lr, opt.momentum, opt.beta2, opt.eps, step, opt.weight_decay,
               opt.nesterov_or_decoupled != 0, opt.sklearn_eps != 0)


#: (is_finite, write) of each explicit-gradient optimizer, called as f(p, g, slot1, slot2, opt, step) on
#: flat ranges (slots sliced alike, or empty when unused: ``slot``)
UPDATES = {OPT_MOMENTUM: (_momentum_is_finite, _momentum_write), OPT_ADAM: (_adam_is_finite, _adam_write)}


@inline_kernel
def slot(s, lo, hi):
    """The state slice of a parameter range; an empty slot (no momentum) stays empty."""
    return s[lo:hi] if s.size else s
