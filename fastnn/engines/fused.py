"""The bridge to the fused whole-epoch kernels: which networks they cover, the records they receive (built
once per fit: kernels/step.py's Network, Scratch, Data and Optimizer), and which one runs an epoch — the
serial kernel (kernels/epoch.py) or, where fastnn.threads' ``batch_parallel_threads`` says splitting a
mini-batch pays, the batch-parallel one (kernels/epoch_parallel.py) on threads started here.

The Trainer uses them for networks made of FullyConnected layers, each optionally followed by one
Activation (``layers.fused_activation``: ReLU, LeakyReLU, GELU, Identity, ...) and then optionally one
Dropout (not after the last FullyConnected: the head reads that layer's output), with a loss that has a
fused head (``Loss.fused_kind``: SoftmaxCrossEntropy, SigmoidCrossEntropy, L2Loss) and SGD, Adam or AdamW.
"""
import contextlib
import signal
import threading

import numpy as np

from .. import _checks, signals, threads
from ..errors import TrainingDivergedError
from ..kernels import epoch as kernels
from ..kernels import epoch_parallel, step
from ..kernels._jit import is_compiled
from ..kernels._sync import ABORT, SYNC_SIZE
from ..kernels.activations import IDENTITY, needs_z
from ..layers import Dropout, FullyConnected, fused_activation
from ..optimizers import SGD, Adam, AdamW

_FAILURES = {kernels.FAIL_LOSS: "loss", kernels.FAIL_GRADIENT: "gradient",
             kernels.FAIL_UPDATE: "parameter update"}
_LOSS_TEXT = {kernels.LOSS_CE_LABELS: "softmax-CE labels", kernels.LOSS_CE_DENSE: "softmax-CE distributions",
              kernels.LOSS_L2: "L2", kernels.LOSS_SIGMOID: "sigmoid-CE"}
_LOSS_KINDS = {"ce_labels": kernels.LOSS_CE_LABELS, "ce_dense": kernels.LOSS_CE_DENSE, "l2": kernels.LOSS_L2,
               "sigmoid": kernels.LOSS_SIGMOID}

#: thread counts whose kernel every new EpochRunner also compiles (or loads) before its first epoch, besides
#: the one its fit runs on: ``fastnn compile`` (fastnn.precompile) sets it in its worker processes, so that a
#: tiny fit there leaves both the serial and the batch-parallel kernel of its configuration in the cache
COMPILE_ALSO = ()


def _plan(net):
    """(list of FullyConnected, activation codes (L,) int64, activation parameters (L,) float64, the Dropout
    layer after each FullyConnected or None) or raise ValueError saying what is not covered."""
    fcs, codes, act_params, drops = [], [], [], []
    layers = net.layers
    for i, layer in enumerate(layers):
        kind = type(layer)
        if kind is FullyConnected:
            fcs.append(layer)
            codes.append(IDENTITY)
            act_params.append(0.0)
            drops.append(None)
        elif fused_activation(layer) and fcs and layers[i - 1] is fcs[-1]:
            codes[-1], act_params[-1] = layer.code, float(layer.param)
        elif kind is Dropout and fcs and drops[-1] is None and \
                (layers[i - 1] is fcs[-1] or (fused_activation(layers[i - 1]) and layers[i - 2] is fcs[-1])):
            if not any(type(later) is FullyConnected for later in layers[i + 1:]):
                raise ValueError(f"layers[{i}] (Dropout) comes after the last FullyConnected")
            drops[-1] = layer
        else:
            raise ValueError(f"layers[{i}] ({kind.__name__}) is not a FullyConnected, one activation after it "
                             f"or one Dropout after those")
    if net.loss.fused_kind(2) not in _LOSS_KINDS:
        raise ValueError(f"the loss {type(net.loss).__name__} has no fused head (SoftmaxCrossEntropy, "
                         f"SigmoidCrossEntropy and L2Loss have)")
    if type(net.optimizer) not in (SGD, Adam, AdamW):
        raise ValueError(f"the optimizer {type(net.optimizer).__name__} is not SGD, Adam or AdamW")
    return fcs, np.array(codes, np.int64), np.array(act_params, np.float64), drops


def supports(net):
    """(True, "") when the fused epoch kernel can train ``net``, else (False, the reason)."""
    try:
        _plan(net)
    except ValueError as exc:
        return False, str(exc)
    return True, ""


class EpochRunner:
    """Holds the buffers of the fused kernel for one fit; ``run(order, epoch)`` trains one epoch.

    X and y must already be checked by the network (C-contiguous, the network's dtype, labels in range) —
    but for X's finiteness: the kernel checks each row as it gathers it (``checks_input``), and a row that
    holds NaN/Inf stops the epoch before that batch's update with ``fastnn._checks.NonFiniteInput(row)``
    (the steps before it are taken: the training loop puts the network back and raises the boundary's
    message). Its max |x| per batch is the one plain SGD's proof of finiteness uses.
    ``sample_weights``: None, or (n,) per-sample weights in the network's dtype, checked (finite,
    non-negative; ``fastnn._checks.sample_weights``); the loss is weighted as scikit-learn's MLP does
    (fastnn.losses).
    """

    #: the kernel checks the rows of X it gathers (finite; their max |x|): fit makes no pass over X of its
    #: own for this engine (fastnn.training asks the engine class, engines.local.LocalRun.engine_class)
    checks_input = True

    def __init__(self, net, X, y, batch_size, sample_weights=None):
        self.net, self.X, self.batch_size = net, X, batch_size
        fcs, self.codes, self.act_params, self.drops = _plan(net)
        # the kernels compiled: only this network's group of activations, and Dropout's code if it has one
        self.chain = step.chain_key(self.codes, any(drop is not None for drop in self.drops))
        dtype, rows = net.dtype, min(batch_size, len(X))
        self.W = tuple(fc.weights for fc in fcs)
        self.b = tuple(fc.bias for fc in fcs)
        self.dW = tuple(fc.grad_weights for fc in fcs)
        self.db = tuple(fc.grad_bias for fc in fcs)
        widths = [fcs[0].in_features] + [fc.out_features for fc in fcs]
        self.A = tuple(np.empty((rows, w), dtype) for w in widths)
        self.D = (np.empty((0, 0), dtype),) + tuple(np.empty((rows, w), dtype) for w in widths[1:])
        # the pre-activations, kept only for the activations whose derivative reads them
        self.Z = tuple(np.empty((rows, w) if needs_z(code) else (0, 0), dtype)
                       for w, code in zip(widths[1:], self.codes))
        # dropout: the activation's output before the mask (A[k+1] is after it); p is read at every epoch
        self.Y = tuple(np.empty((rows, w) if drop is not None else (0, 0), dtype)
                       for w, drop in zip(widths[1:], self.drops))
        self.drop_thr = np.zeros(len(fcs), np.int64)
        self.drop_scale = np.ones(len(fcs), np.float64)
        self.norms = np.zeros(len(fcs), np.float64)
        self.status = np.zeros(3, np.int64)
        kind = net.loss.fused_kind(y.ndim)
        if kind not in _LOSS_KINDS:
            raise ValueError(f"the fused path has no head for {type(net.loss).__name__} with {y.ndim}-D targets")
        self.loss_kind = _LOSS_KINDS[kind]
        if y.ndim == 1:
            self.labels, self.targets = y, np.empty((0, 0), dtype)
        else:
            self.labels, self.targets = np.empty(0, np.int64), y
        if sample_weights is None:
            self.sample_weights = np.empty(0, dtype)
        else:
            self.sample_weights = _checks.sample_weights(sample_weights, "sample_weight", len(X), dtype)
        self.label_buf = np.empty(rows if y.ndim == 1 else 0, np.int64)
        self.target_buf = np.empty((rows, y.shape[1]) if y.ndim == 2 else (0, 0), dtype)
        self.weight_buf = np.empty(rows if self.sample_weights.size else 0, dtype)
        self.widths, self.rows = widths, rows
        # the kernels' records (kernels/step.py); per epoch only the order, the dropout key, the optimizer's
        # hyperparameters, state and step count, and the flat buffers of that epoch's plan are replaced (here:
        # empty stand-ins of their types; ``records`` puts the plan's in)
        flat, no_offsets = np.empty(0, dtype), np.empty(0, np.int64)
        self.network = step.Network(W=self.W, b=self.b, codes=self.codes, act_params=self.act_params,
                                    drop_thr=self.drop_thr, drop_scale=self.drop_scale, params=flat,
                                    offsets=no_offsets)
        self.scratch = step.Scratch(A=self.A, D=self.D, Z=self.Z, Y=self.Y, dW=self.dW, db=self.db,
                                    grads=flat, label_buf=self.label_buf, target_buf=self.target_buf,
                                    weight_buf=self.weight_buf, norms=self.norms, status=self.status,
                                    x_bits=self.A[0].reshape(-1).view(np.int32 if dtype == np.float32 else np.int64))
        self.data = step.Data(X=X, labels=self.labels, targets=self.targets, sample_weights=self.sample_weights,
                              order=np.empty(0, np.int64), batch_size=int(batch_size), dkey=np.uint64(0))
        for T in COMPILE_ALSO:
            self.compile(T)

    def _optimizer_record(self, plan):
        """(opt_kind, the Optimizer record) for the kernel: the optimizer's kernel_spec() and its state,
        checked by ensure_state against the flat parameter buffer (empty arrays for unused slots)."""
        opt, net = plan.optimizer, self.net
        opt_kind, hyper = opt.kernel_spec()
        slots = [s.reshape(-1) for s in opt.ensure_state(list(plan.opt_params))[0]]
        empty = np.empty(0, net.dtype)
        slots += [empty] * (2 - len(slots))
        return opt_kind, step.optimizer_record(hyper, slots[0], slots[1], opt.steps)

    def records(self, order, plan, dkey):
        """(opt_kind, (network, scratch, data, optimizer)): the records of this fit with this epoch's order,
        dropout key, plan buffers and optimizer state."""
        opt_kind, opt = self._optimizer_record(plan)
        network = step.replace(self.network, params=plan.params, offsets=plan.offsets)
        scratch = step.replace(self.scratch, grads=plan.grads)
        return opt_kind, (network, scratch, step.replace(self.data, order=order, dkey=dkey), opt)

    def __call__(self, order, epoch, progress=None):
        for k, drop in enumerate(self.drops):
            if drop is not None:
                self.drop_thr[k], self.drop_scale[k] = drop.threshold, drop.scale
        net, opt = self.net, self.net.optimizer
        plan = getattr(progress, "plan", None) or net.plan()      # the loop's plan of this epoch, when given
        dkey = np.uint64(getattr(progress, "dropout_key", 0))
        T = threads.batch_parallel_threads(self.widths, self.rows, len(self.X))
        kernel, args = self._kernel_call(T, order, plan, dkey)
        totals = np.zeros(4, np.float64)      # loss sum, correct, steps applied, penalty sum
        with signals.held():
            try:
                with net.weights_changing():
                    if T > 1:
                        self._run_parallel(T, kernel, totals, args)
                    else:
                        totals[:] = kernel(*args)
            finally:
                opt.steps += int(totals[2])       # the steps the kernel applied, also when it raised
        loss_sum, correct, penalty_sum = float(totals[0]), int(totals[1]), float(totals[3])
        failed_batch, failed_layer, what = (int(v) for v in self.status)
        if failed_batch and what == kernels.FAIL_INPUT:      # a gathered row of X holds NaN/Inf (the layer slot
            raise _checks.NonFiniteInput(failed_layer)        # holds that row): the loop restores and explains
        if failed_batch:
            layer = None if failed_layer < 0 else plan.param_layers[failed_layer]
            raise TrainingDivergedError(epoch, failed_batch, layer, what=_FAILURES[what])
        return (loss_sum * net.loss.report_scale + penalty_sum) / len(self.X), int(correct)

    def _kernel_call(self, T, order, plan, dkey):
        """(the compiled kernel that runs this epoch on T threads, its arguments; for T > 1 those after
        the per-run ones, see _run_parallel)."""
        opt_kind, records = self.records(order, plan, dkey)
        if T > 1:
            return epoch_parallel.variant(self.loss_kind, opt_kind, self.chain), records
        return kernels.variant(self.loss_kind, opt_kind, self.chain), records + (threads.blas_threads(),)

    def _call_for(self, T):
        """(the kernel an epoch on T threads runs, arguments of the types it will be called with)."""
        kernel, args = self._kernel_call(T, np.empty(0, np.int64), self.net.plan(), np.uint64(0))
        if T > 1:
            args = (0, T, np.empty(SYNC_SIZE, np.int64), self._team(T)) + args
        return kernel, args

    def _ready(self, kernel, args):
        # loading the kernel from the cache runs LLVM: a Ctrl-C raised in there left llvmlite objects half
        # built (an "Exception ignored" traceback on stderr); held, it lands after the load
        with signals.held():
            return is_compiled(kernel, args)

    def compile_pending(self):
        """A line saying that the first epoch will compile its kernel (neither compiled in this process nor
        in Numba's on-disk cache), for a verbose fit to print before it starts; None when it is ready."""
        T = threads.batch_parallel_threads(self.widths, self.rows, len(self.X))
        if not self._ready(*self._call_for(T)):
            return (f"fastnn: compiling the fused kernel for {np.dtype(self.net.dtype).name} / "
                f"{_LOSS_TEXT[self.loss_kind]} / {type(self.net.optimizer).__name__}"
                f"{' (batch-parallel)' if T > 1 else ''} (first run only, a few seconds)")
        return None

    def compile(self, T):
        """Compile the kernel an epoch of this fit on ``T`` threads runs (1: the serial kernel, more: the
        batch-parallel one), or load it from Numba's on-disk cache, without running it (COMPILE_ALSO)."""
        from numba import typeof
        kernel, args = self._call_for(T)
        if not self._ready(kernel, args):
            kernel.compile(tuple(typeof(a) for a in args))

    def _team(self, T, totals=None):
        """The batch-parallel kernel's shared record for T blocks (kernels/epoch_parallel.py's Team)."""
        L = len(self.W)
        return epoch_parallel.Team(partials=np.zeros((T, epoch_parallel.partials_columns(L)), np.float64),
                                   totals=np.zeros(4, np.float64) if totals is None else totals,
                                   wbound=np.full((T, L), np.inf), clock=np.zeros((T, 4), np.int64),
                                   schedule=np.zeros(1, np.int64), gpart=self._gradient_partials(T))

    def _gradient_partials(self, T):
        """Per layer, the T blocks' gradient partials (T, layer's parameters) in the network's dtype for the
        layers that epoch_parallel.row_split splits by rows, (T, 0) for the others; kept between epochs."""
        split = epoch_parallel.row_split(self.widths, self.rows, T)
        key = (T, tuple(split))
        if getattr(self, "_gpart_key", None) != key:
            dtype = self.net.dtype
            self._gpart = tuple(np.zeros((T, (n_in + 1) * n_out if rows else 0), dtype)
                                for n_in, n_out, rows in zip(self.widths[:-1], self.widths[1:], split))
            self._gpart_key = key
        return self._gpart

    def _run_parallel(self, T, kernel, totals, args):
        """One epoch of the batch-parallel kernel, its phases cut in T blocks, run by T threads: this one
        and T - 1 started here. A thread that raises sets the abort flag of ``sync`` (the others return
        at once); the first exception is re-raised here, after every thread has returned. ``totals`` (4,)
        float64 zeros receives the epoch's (loss sum, correct, steps applied, penalty sum) as it goes."""
        sync = np.zeros(SYNC_SIZE, np.int64)
        self.team = team = self._team(T, totals)
        self.clock = team.clock           # cycles waiting / in each phase, per thread
        self.status[:] = (0, -1, kernels.FAIL_LOSS)
        self.norms[:] = 0
        errors = [None] * T

        def work(t):
            try:
                kernel(t, T, sync, team, *args)
            except BaseException as exc:     # noqa: B036 -- the other threads must not wait for this one
                errors[t] = exc
                sync[ABORT] = 1
        workers = [threading.Thread(target=work, args=(t,), name=f"fastnn-epoch-{t}", daemon=True)
                   for t in range(1, T)]
        try:
            for worker in workers:
                worker.start()
            work(0)
        finally:
            _join_all(workers, sync)
        for error in errors:
            if error is not None:
                raise error


def _join_all(workers, sync):
    """Join every started thread of ``workers``, whatever is raised meanwhile: an exception (a signal's
    handler raising KeyboardInterrupt) sets the abort flag of ``sync`` and is re-raised once all returned."""
    pending = None
    for worker in workers:
        while worker.ident is not None and worker.is_alive():
            try:
                worker.join()
            except BaseException as exc:     # noqa: B036 -- a thread must never outlive the fit
                sync[ABORT] = 1
                pending = pending or exc
    if pending is not None:
        raise pending


