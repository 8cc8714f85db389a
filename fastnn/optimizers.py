"""Optimizers: in-place updates of a list of parameter arrays from the matching gradients.

A NeuralNetwork passes its one flat parameter buffer, so a step is one kernel call. The updates are those
of torch.optim.SGD and torch.optim.Adam, step for step. A step that would make any value NaN or infinite
writes nothing and raises NonFiniteUpdateError.
"""
import numpy as np

from . import _checks
from .errors import NonFiniteUpdateError
from .kernels import optim as kernels
from .threads import parallel_pays


class Optimizer:
    """Base class: keeps per-parameter state, created on the first step and reset by ``reset()``.

    Subclasses implement ``_is_finite(p, g, slots)``, ``_update(p, g, slots, parallel)`` and
    ``_checked(p, g, slots)`` (check and update in one kernel call) over flat 1-D views.
    """

    n_slots = 0

    def __init__(self):
        self.state = None
        self.steps = 0
        self._bound = None

    def reset(self):
        """Forget momentum / moments and the step count."""
        self.state, self.steps, self._bound = None, 0, None

    def ensure_state(self, params):
        """Create zeroed state (``n_slots`` arrays per parameter) unless it exists with these shapes."""
        shapes = [(p.shape, p.dtype) for p in params]
        if self.state is None or len(self.state) != len(params) or \
                any(len(s) != self.n_slots or (s and (s[0].shape, s[0].dtype) != sh)
                    for s, sh in zip(self.state, shapes)):
            self.state = [[np.zeros_like(p) for _ in range(self.n_slots)] for p in params]
        return self.state

    def _flat_views(self, params, grads):
        """Checked flat views of params, grads and state; cached while the same lists are passed."""
        bound = self._bound
        if bound is not None and bound[0] is params and bound[1] is grads and bound[2] is self.state:
            return bound[3]
        if len(params) != len(grads):
            raise ValueError(f"got {len(params)} parameter arrays but {len(grads)} gradient arrays")
        for p, g in zip(params, grads):
            if p.shape != g.shape or p.dtype != g.dtype:
                raise ValueError(f"gradient {g.shape} {g.dtype} does not match parameter {p.shape} {p.dtype}")
            if not (p.flags.c_contiguous and g.flags.c_contiguous):
                raise ValueError("parameters and gradients must be C-contiguous arrays")
        self.ensure_state(params)
        flats = [(p.reshape(-1), g.reshape(-1), [s.reshape(-1) for s in slots])
                 for p, g, slots in zip(params, grads, self.state)]
        self._bound = (params, grads, self.state, flats)
        return flats

    def step(self, params, grads):
        """Update every array of ``params`` in place from the matching array of ``grads``.

        Raises NonFiniteUpdateError, before changing anything, if the update would make a value non-finite.
        """
        flats = self._flat_views(params, grads)
        self.steps += 1
        if len(flats) == 1 and not parallel_pays(flats[0][0].size):
            p, g, slots = flats[0]
            if not self._checked(p, g, slots):
                self.steps -= 1
                raise NonFiniteUpdateError(0)
            return
        for i, (p, g, slots) in enumerate(flats):
            if not self._is_finite(p, g, slots):
                self.steps -= 1
                raise NonFiniteUpdateError(i)
        for p, g, slots in flats:
            self._update(p, g, slots, parallel_pays(p.size))

    def config(self):
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}(" + ", ".join(f"{k}={v!r}" for k, v in self.config().items()) + ")"


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum: v = μ·v + g; p -= lr·v (torch.optim.SGD)."""

    def __init__(self, lr=0.01, momentum=0.0):
        super().__init__()
        self.lr = _checks.positive_float(lr, "lr")
        self.momentum = _checks.fraction(momentum, "momentum")
        self.n_slots = 1 if self.momentum else 0

    def _is_finite(self, p, g, slots):
        if self.momentum:
            return kernels.sgd_momentum_is_finite(p, g, slots[0], self.lr, self.momentum)
        return kernels.sgd_is_finite(p, g, self.lr)

    def _checked(self, p, g, slots):
        if self.momentum:
            return kernels.sgd_momentum_checked(p, g, slots[0], self.lr, self.momentum)
        return kernels.sgd_checked(p, g, self.lr)

    def _update(self, p, g, slots, parallel):
        if self.momentum:
            run = kernels.sgd_momentum_parallel if parallel else kernels.sgd_momentum
            run(p, g, slots[0], self.lr, self.momentum)
        else:
            (kernels.sgd_parallel if parallel else kernels.sgd)(p, g, self.lr)

    def config(self):
        return {"lr": self.lr, "momentum": self.momentum}


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015, Algorithm 1), bias-corrected as in torch.optim.Adam."""

    n_slots = 2

    def __init__(self, lr=0.001, beta1=0.9, beta2=0.999, eps=1e-8):
        super().__init__()
        self.lr = _checks.positive_float(lr, "lr")
        self.beta1 = _checks.fraction(beta1, "beta1")
        self.beta2 = _checks.fraction(beta2, "beta2")
        self.eps = _checks.positive_float(eps, "eps")

    def _args(self, p, g, slots):
        return p, g, slots[0], slots[1], self.lr, self.beta1, self.beta2, self.eps, self.steps

    def _is_finite(self, p, g, slots):
        return kernels.adam_is_finite(*self._args(p, g, slots))

    def _checked(self, p, g, slots):
        return kernels.adam_checked(*self._args(p, g, slots))

    def _update(self, p, g, slots, parallel):
        (kernels.adam_parallel if parallel else kernels.adam)(*self._args(p, g, slots))

    def config(self):
        return {"lr": self.lr, "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps}


OPTIMIZER_TYPES = {cls.__name__: cls for cls in (SGD, Adam)}
