"""The driver of a distributed step (fastnn/engines/distributed.py's fused engine): between two allreduces of
the flat gradient buffer over MPI ranks, ONE kernel call per global mini-batch does the update of the
previous batch from the summed gradient and then this rank's gradient of the next.

``step_kernel(loss_kind, opt_kind)(held, done_rows, done_denom, step, start, r0, r1, batch, norm,
blas_threads) -> (failed layer, what failed or -1, penalty, loss, correct)``, where ``held = hold(net, scratch,
data, opt)`` (once per epoch) holds the records of step.py sized for the WHOLE global batch:

1. when ``done_rows`` > 0: the checked update of the global batch just summed (its rows ``done_rows``, its
   rows or sample-weight sum ``done_denom``, Adam's ``step`` from 1) — epoch.py's ``update_kernel``:
   scikit-learn's penalty and its gradient, the gradient norms, the optimizer, written only when every
   value stays finite. On a refusal nothing is written and the call returns at once.
2. when ``start`` ≥ 0: rows r0:r1 of the global batch that starts at row ``start`` of data.order
   (``batch``: its 0-based index in the epoch) — forward, the loss head divided by ``norm`` (the whole
   global batch's rows or sample-weight sum, so that the ranks' gradients add up to the global batch's),
   deltas, weight and bias gradients into scratch.grads (zeros when r1 == r0). The rows sit at their
   positions in the global batch, so their Dropout masks are keyed (epoch key, batch, r0 + i): the masks
   one process with the global batch draws. The loss is the head's (these rows' summed loss / norm);
   when it is not finite the backward pass is skipped and ``grads`` holds stale values (the engine then
   poisons them, and every rank refuses the next update alike).

One call instead of two, and the records held in one Numba structure (``Held``, a StructRef made by ``hold``
once per epoch) instead of passed as they are, because a call unboxes every array of its arguments: the
four records' ~40 arrays cost ~7 µs a call on a 100-100-5 network, one ``Held`` ~0.7 µs (the minimum of
7 × 3000 calls of a kernel that returns at once; a typed List instead: 1.6 µs, and ~2 s more to compile),
against ~45 µs for the gradient of 100 of its rows. ``hold`` and the kernels that take a ``Held`` are cached
on disk like every kernel (~0.7 s to compile ``hold`` once per records' types, ~10 ms to load it warm).
"""
import math

from numba import types
from numba.experimental import structref

from ._jit import kernel, specialize
from .epoch import update_kernel
from .step import CHAINS, FULL_CHAIN, chain_suffix, HEADS, LOSS_NAMES, OPT_MOMENTUM, OPT_NAMES, OPT_SGD, deltas, forward_rows, layer_gradient  # noqa: F401

_HEAD = _UPDATE = None     # bound per variant by specialize()


@structref.register
class HeldType(types.StructRef):
    """Numba's type of ``Held``: one field, ``records`` (the tuple of step.py's four records)."""

    def preprocess_fields(self, fields):
        return tuple((name, types.unliteral(typ)) for name, typ in fields)


class Held(structref.StructRefProxy):
    """One epoch's records (net, scratch, data, opt) as one object for the step kernel (module docstring):
    it refers to the records' arrays, and keeps them alive while it lives. Made by ``hold``."""


structref.define_proxy(Held, HeldType, ["records"])


@kernel
def hold(net, scratch, data, opt):
    """The records of one epoch in one ``Held``: what the step kernel takes (module docstring)."""
    return Held((net, scratch, data, opt))


def _distributed_step(held, done_rows, done_denom, step, start, r0, r1, batch, norm, blas_threads):
    """See the module's docstring."""
    net, scratch, data, opt = held.records
    layer, what, penalty = -1, -1, 0.0
    if done_rows > 0:
        layer, what, penalty = _UPDATE(net, scratch, opt, done_rows, done_denom, step)
        if what >= 0:
            return layer, what, penalty, 0.0, 0
    loss, right = 0.0, 0
    if start >= 0:
        if r1 > r0:
            W = net.W          # one field per statement (a tuple assignment builds and unpacks a tuple: epoch.py)
            A = scratch.A
            D = scratch.D
            forward_rows(data.X, data.order, start, r0, r1, W, net.b, net.codes, net.act_params, A, scratch.Z,
                         scratch.Y, net.drop_thr, net.drop_scale, data.dkey, batch, blas_threads)
            L = len(W)
            loss, right = _HEAD(A[L][r0:r1], D[L][r0:r1], data.labels, data.targets, data.order, start, r0,
                                scratch.label_buf, scratch.target_buf, data.sample_weights, scratch.weight_buf, norm)
            if math.isfinite(loss):
                deltas(W, net.codes, net.act_params, A, D, scratch.Z, scratch.Y, net.drop_thr, net.drop_scale,
                       data.dkey, batch, r0, r1, blas_threads)
                for k in range(L - 1, -1, -1):
                    dy = D[k + 1][r0:r1]
                    layer_gradient(A[k][r0:r1], dy, scratch.dW[k], dy, scratch.db[k], blas_threads)
        else:
            scratch.grads[:] = 0
    return layer, what, penalty, loss, right


_KERNELS = {}


def step_kernel(loss_kind, opt_kind, chain=FULL_CHAIN):
    """The compiled distributed step for this loss, optimizer and chain (step.chain_key of the network; made
    on first use). Plain SGD (OPT_SGD) takes the explicit update p -= lr·g of
    OPT_MOMENTUM: a summed gradient cannot be applied inside the weight-gradient GEMMs."""
    update = OPT_MOMENTUM if opt_kind == OPT_SGD else opt_kind
    key = loss_kind, update, chain
    if key not in _KERNELS:
        pieces = CHAINS[chain]
        _KERNELS[key] = specialize(
            _distributed_step, f"{LOSS_NAMES[loss_kind]}_{OPT_NAMES[update]}{chain_suffix(chain)}",
            compile_with=kernel, _HEAD=HEADS[loss_kind], _UPDATE=update_kernel(update),
            forward_rows=pieces.forward_rows, deltas=pieces.deltas)
    return _KERNELS[key]
