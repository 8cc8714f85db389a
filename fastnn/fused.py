"""The bridge to the fused whole-epoch kernel (kernels/epoch.py): which networks it covers, and the
buffers it needs. The Trainer uses it for networks made of FullyConnected layers, each optionally followed
by one ReLU / Sigmoid / TanH, with SoftmaxCrossEntropy or L2Loss and SGD, Adam or AdamW."""
import numpy as np

from . import _checks, threads
from .errors import TrainingDivergedError
from .kernels import epoch as kernels
from .kernels._blas import set_threads_local
from .kernels.activations import IDENTITY
from .layers import FullyConnected, ReLU, Sigmoid, TanH
from .losses import L2Loss, SoftmaxCrossEntropy
from .optimizers import SGD, Adam, AdamW

_FAILURES = {kernels.FAIL_LOSS: "loss", kernels.FAIL_GRADIENT: "gradient",
             kernels.FAIL_UPDATE: "parameter update"}
_ACTIVATIONS = {ReLU: ReLU.code, Sigmoid: Sigmoid.code, TanH: TanH.code}


def _plan(net):
    """(list of FullyConnected, activation codes) or raise ValueError saying what is not covered."""
    fcs, codes = [], []
    for i, layer in enumerate(net.layers):
        kind = type(layer)
        if kind is FullyConnected:
            fcs.append(layer)
            codes.append(IDENTITY)
        elif kind in _ACTIVATIONS and fcs and codes[-1] == IDENTITY and net.layers[i - 1] is fcs[-1]:
            codes[-1] = _ACTIVATIONS[kind]
        else:
            raise ValueError(f"layers[{i}] ({kind.__name__}) is not a FullyConnected or one activation after it")
    if type(net.loss) not in (SoftmaxCrossEntropy, L2Loss):
        raise ValueError(f"the loss {type(net.loss).__name__} is not SoftmaxCrossEntropy or L2Loss")
    if type(net.optimizer) not in (SGD, Adam, AdamW):
        raise ValueError(f"the optimizer {type(net.optimizer).__name__} is not SGD, Adam or AdamW")
    return fcs, np.array(codes, np.int64)


def supports(net):
    """(True, "") when the fused epoch kernel can train ``net``, else (False, the reason)."""
    try:
        _plan(net)
    except ValueError as exc:
        return False, str(exc)
    return True, ""


class EpochRunner:
    """Holds the buffers of the fused kernel for one fit; ``run(order, epoch)`` trains one epoch.

    X and y must already be checked by the network (C-contiguous, the network's dtype, labels in range).
    """

    def __init__(self, net, X, y, batch_size):
        self.net, self.X, self.batch_size = net, X, batch_size
        fcs, self.codes = _plan(net)
        dtype, rows = net.dtype, min(batch_size, len(X))
        self.W = tuple(fc.weights for fc in fcs)
        self.b = tuple(fc.bias for fc in fcs)
        self.dW = tuple(fc.grad_weights for fc in fcs)
        self.db = tuple(fc.grad_bias for fc in fcs)
        widths = [fcs[0].in_features] + [fc.out_features for fc in fcs]
        self.A = tuple(np.empty((rows, w), dtype) for w in widths)
        self.D = (np.empty((0, 0), dtype),) + tuple(np.empty((rows, w), dtype) for w in widths[1:])
        self.norms = np.zeros(len(fcs), np.float64)
        self.x_absmax = _checks.absmax(X)
        self.status = np.zeros(3, np.int64)
        if y.ndim == 1:
            self.loss_kind = kernels.LOSS_CE_LABELS
            self.labels, self.targets = y, np.empty((0, 0), dtype)
        else:
            self.loss_kind = kernels.LOSS_L2 if type(net.loss) is L2Loss else kernels.LOSS_CE_DENSE
            self.labels, self.targets = np.empty(0, np.int64), y
        self.label_buf = np.empty(rows if y.ndim == 1 else 0, np.int64)
        self.target_buf = np.empty((rows, y.shape[1]) if y.ndim == 2 else (0, 0), dtype)

    def _optimizer_args(self):
        """(opt_kind, [slot1, slot2], hyper) for the kernel: the optimizer's kernel_spec() and its state,
        checked by ensure_state against the flat parameter buffer (empty arrays for unused slots)."""
        opt, net = self.net.optimizer, self.net
        opt_kind, hyper = opt.kernel_spec()
        slots = [s.reshape(-1) for s in opt.ensure_state(net._opt_params)[0]]
        empty = np.empty(0, net.dtype)
        slots += [empty] * (2 - len(slots))
        return opt_kind, slots, hyper

    def __call__(self, order, epoch):
        net, opt = self.net, self.net.optimizer
        opt_kind, (slot1, slot2), hyper = self._optimizer_args()
        previous = set_threads_local(threads.blas_threads())
        try:
            loss_sum, correct, steps = kernels.train_epoch(
                self.X, self.labels, self.targets, order, self.batch_size, self.W, self.b, self.dW, self.db,
                self.A, self.D, self.codes, self.loss_kind, net._flat_params, net._flat_grads,
                net._offsets, opt_kind, slot1, slot2, hyper, opt.steps, self.x_absmax, self.norms,
                self.status, self.label_buf, self.target_buf, threads.blas_threads())
        finally:
            set_threads_local(previous)
        opt.steps += steps
        failed_batch, failed_layer, what = (int(v) for v in self.status)
        if failed_batch:
            layer = None if failed_layer < 0 else net._param_layers[failed_layer]
            raise TrainingDivergedError(epoch, failed_batch, layer, what=_FAILURES[what])
        return loss_sum / len(self.X), int(correct)
