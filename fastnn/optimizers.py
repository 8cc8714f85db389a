"""Optimizers: in-place updates of a list of parameter arrays from the matching gradients.

A NeuralNetwork passes its one flat parameter buffer, so a step is one kernel call. The updates are those
of torch.optim.SGD (weight decay, momentum, Nesterov), torch.optim.Adam (coupled L2 weight decay) and
torch.optim.AdamW (decoupled weight decay), step for step. A step that would make any value NaN or
infinite writes nothing and raises NonFiniteUpdateError.

Every hyperparameter is validated when it is assigned (``opt.lr = -1`` raises ValueError naming ``lr``),
and the state (``state[i][j]``: slot j of parameter array i) is sized from the current hyperparameters
and checked before every step, per-layer or fused, so that no kernel can read or write out of bounds.
"""
import numpy as np

from . import _checks
from .errors import NonFiniteUpdateError
from .kernels import optim as kernels
from .layers import Owned
from .threads import parallel_pays


_real = _checks.real


def _positive(value, name):
    value = _real(value, name)
    if value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return value


def _non_negative(value, name):
    value = _real(value, name)
    if value < 0:
        raise ValueError(f"{name} must be a non-negative finite number, got {value!r}")
    return value


def _fraction(value, name):
    value = _real(value, name)
    if not 0 <= value < 1:
        raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")
    return value


_flag = _checks.flag


_Hyper = _checks.Checked     # a hyperparameter: checked by ``check(value, name)`` on every assignment

#: the largest step count (Adam's bias correction reads it as an exact float64 and an int64)
MAX_STEPS = 2 ** 53


def _steps(value, name):
    return _checks.integer(value, name, 0, MAX_STEPS)


def _state(value, name):
    """None, or a list (one per parameter array) of lists of NumPy arrays; each slot's shape, dtype and
    layout are checked against the parameters at the next step (``ensure_state``)."""
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or not all(isinstance(s, (list, tuple)) for s in value):
        raise TypeError(f"{name} must be None or a list of lists of arrays (slot j of parameter array i at "
                        f"[i][j]), got {type(value).__name__}")
    for i, slots in enumerate(value):
        for j, arr in enumerate(slots):
            if not isinstance(arr, np.ndarray):
                raise TypeError(f"{name}[{i}][{j}] must be a NumPy array, got {type(arr).__name__}")
    return [list(slots) for slots in value]


def _nonfinite_cause(p, g, slots):
    """Why a step's update of ``p`` (gradient ``g``, optimizer state ``slots``) is not finite: one pass over
    each, on the failure path only (NonFiniteUpdateError's ``cause``)."""
    for cause, arrays in (("parameters", (p,)), ("gradient", (g,)), ("state", tuple(slots))):
        if any(not np.isfinite(a).all() for a in arrays):
            return cause
    return "update"


class Optimizer(Owned):
    """Base class: keeps per-parameter state, created on the first step and reset by ``reset()``.

    An optimizer belongs to one network (``owner``): its state (momentum, moments, the step count) is that
    network's, so giving it to a second network while the first still uses it raises ValueError — build
    one optimizer per network. ``steps`` (an int in [0, 2**53]) and ``state`` are validated when assigned,
    like every hyperparameter.

    Subclasses define ``n_slots`` (from the current hyperparameters), ``kernel_spec()``, and the kernels
    ``_is_finite(p, g, slots)``, ``_update(p, g, slots, parallel)`` and ``_checked(p, g, slots)`` (check
    and update in one call) over flat 1-D views.

    Private, for the scikit-learn estimators, fused path only: ``_sklearn_alpha`` (float ≥ 0, default 0),
    scikit-learn's L2 penalty alpha/(2·batch)·Σ||W||² on the weights (not the biases), added to the
    gradient and to the loss the epoch kernel reports.
    """

    _sklearn_alpha = _Hyper(_non_negative)
    steps = _checks.Checked(_steps)
    state = _checks.Checked(_state)

    def _used_by(self, net):
        return net.__dict__.get("_optimizer") is self

    def __init__(self):
        self.state = None
        self.steps = 0
        self._bound = None
        self._sklearn_alpha = 0.0

    @property
    def n_slots(self):
        """State arrays per parameter array, from the current hyperparameters."""
        return 0

    def reset(self):
        """Forget momentum / moments and the step count."""
        self.state, self.steps, self._bound = None, 0, None

    def _check_hyper(self, fused):
        """ValueError for a combination of hyperparameters no step can take (each is valid alone)."""
        if not fused and self._sklearn_alpha:
            raise ValueError("_sklearn_alpha (scikit-learn's L2 penalty) needs the fused path: "
                             "fit(..., fused=True); Optimizer.step does not apply it")

    def check_for(self, dtype):
        """ValueError when ``lr`` cannot drive a network of ``dtype``: the kernels compute in that dtype, where
        a rate beyond its range (``SGD(lr=1e39)`` for float32) is inf and one below its smallest number is 0.
        Run by fit and step (the rate may be assigned at any time)."""
        from .schedules import rate_problem
        problem = rate_problem(self.lr, dtype)
        if problem:
            raise ValueError(f"{type(self).__name__}.lr = {self.lr!r} is {problem}; give a rate the network's "
                             f"{np.dtype(dtype).name} arithmetic can represent")

    def check_hyperparameters(self):
        """ValueError when the hyperparameters, each valid alone, make a combination no step can take
        (SGD's nesterov=True with momentum 0): what fit and step refuse, for a caller that stores them."""
        self._check_hyper(fused=True)

    def ensure_state(self, params):
        """The state checked against ``params`` (a list of C-contiguous float arrays); returns it.

        Zeroed state (``n_slots`` arrays per parameter array) is created when there is none or when the
        number of arrays or of slots changed (a hyperparameter change, another network). Otherwise every
        slot must be a writeable C-contiguous array of its parameter's exact shape and dtype, else
        ValueError naming ``state[i][j]`` (call ``reset()`` to start afresh).
        """
        if self.steps > MAX_STEPS // 2:      # room for any fit: its steps are counted after the epoch ran
            raise ValueError(f"{type(self).__name__}.steps is {self.steps}, beyond {MAX_STEPS // 2} (2**52) "
                             f"that training can continue from; call reset() or assign a smaller step count")
        n, state = self.n_slots, self.state
        if state is not None and not (isinstance(state, (list, tuple))
                                      and all(isinstance(s, (list, tuple)) for s in state)):
            raise TypeError(f"optimizer state must be None or a list of lists of arrays, got "
                            f"{type(state).__name__}")
        if state is None or len(state) != len(params) or any(len(s) != n for s in state):
            self.state = [[np.zeros_like(p, order="C") for _ in range(n)] for p in params]
            self._bound = None
            return self.state
        for i, (p, slots) in enumerate(zip(params, state)):
            for j, s in enumerate(slots):
                if not (isinstance(s, np.ndarray) and s.shape == p.shape and s.dtype == p.dtype
                        and s.flags.c_contiguous and s.flags.writeable):
                    got = (f"a {'' if s.flags.writeable else 'read-only '}"
                           f"{'' if s.flags.c_contiguous else 'non-contiguous '}{s.dtype} array of shape "
                           f"{s.shape}" if isinstance(s, np.ndarray) else type(s).__name__)
                    raise ValueError(f"optimizer state[{i}][{j}] must be a writeable C-contiguous {p.dtype} "
                                     f"array of shape {p.shape}, got {got} (call reset() to start afresh)")
        return state

    def _flat_views(self, params, grads):
        """Checked flat views of params, grads and state; cached while the same lists, the same state
        arrays and the same slot count are passed (a kernel never gets a view of an array that was not
        checked: any replaced slot, list or hyperparameter that changes the slot count misses the cache)."""
        bound, state = self._bound, self.state
        if bound is not None and bound[0] is params and bound[1] is grads and bound[2] is state \
                and bound[3] == self.n_slots:
            slots = [s for group in state for s in group]
            if len(slots) == len(bound[4]) and all(a is b for a, b in zip(slots, bound[4])):
                return bound[5]
        state = self.ensure_state(params)
        if len(params) != len(grads):
            raise ValueError(f"got {len(params)} parameter arrays but {len(grads)} gradient arrays")
        for p, g in zip(params, grads):
            if p.shape != g.shape or p.dtype != g.dtype:
                raise ValueError(f"gradient {g.shape} {g.dtype} does not match parameter {p.shape} {p.dtype}")
            if not (p.flags.c_contiguous and g.flags.c_contiguous):
                raise ValueError("parameters and gradients must be C-contiguous arrays")
        flats = [(p.reshape(-1), g.reshape(-1), [s.reshape(-1) for s in slots])
                 for p, g, slots in zip(params, grads, state)]
        self._bound = (params, grads, state, self.n_slots, [s for slots in state for s in slots], flats)
        return flats

    def step(self, params, grads):
        """Update every array of ``params`` in place from the matching array of ``grads``.

        Raises NonFiniteUpdateError, before changing anything, if the update would make a value non-finite;
        ValueError for hyperparameters no step can take (Nesterov without momentum, the fused-only
        scikit-learn options) or state that does not match ``params`` (see ``ensure_state``).
        """
        self._check_hyper(fused=False)
        flats = self._flat_views(params, grads)
        if self.steps >= MAX_STEPS:
            raise ValueError(f"{type(self).__name__}.steps reached its limit {MAX_STEPS}; call reset()")
        self.steps += 1
        if len(flats) == 1 and not parallel_pays(flats[0][0].size):
            p, g, slots = flats[0]
            if not self._checked(p, g, slots):
                self.steps -= 1
                raise NonFiniteUpdateError(0, _nonfinite_cause(p, g, slots))
            return
        for i, (p, g, slots) in enumerate(flats):
            if not self._is_finite(p, g, slots):
                self.steps -= 1
                raise NonFiniteUpdateError(i, _nonfinite_cause(p, g, slots))
        for p, g, slots in flats:
            self._update(p, g, slots, parallel_pays(p.size))

    def kernel_spec(self):
        """(opt_kind, hyper) for the epoch kernel: an OPT_* code of kernels/step.py and the float64 array
        (HYPER_SIZE,) of its hyperparameters in kernels/step.py's HYPER_FIELDS order."""
        raise NotImplementedError

    def _hyper(self, **values):
        """The hyperparameter array from named values (kernels/step.py's HYPER_FIELDS), with this
        optimizer's sklearn_alpha; missing ones 0."""
        from .kernels.step import hyper_array      # on use: importing the kernels loads the BLAS
        return hyper_array(sklearn_alpha=self._sklearn_alpha, **values)

    def config(self):
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}(" + ", ".join(f"{k}={v!r}" for k, v in self.config().items()) + ")"


class SGD(Optimizer):
    """Stochastic gradient descent as torch.optim.SGD (dampening 0): g += weight_decay·p; with momentum
    v = μ·v + g and g = g + μ·v (Nesterov) or v; p -= lr·g. State: the velocity when momentum > 0.
    Nesterov needs a momentum > 0 (checked at construction and at every step)."""

    lr = _Hyper(_positive)
    momentum = _Hyper(_fraction)
    nesterov = _Hyper(_flag)
    weight_decay = _Hyper(_non_negative)

    def __init__(self, lr=0.01, momentum=0.0, nesterov=False, weight_decay=0.0):
        super().__init__()
        self.lr, self.momentum, self.nesterov, self.weight_decay = lr, momentum, nesterov, weight_decay
        self._check_hyper(fused=True)

    @property
    def n_slots(self):
        return 1 if self.momentum else 0

    def _check_hyper(self, fused):
        if self.nesterov and not self.momentum:
            raise ValueError("nesterov=True needs a momentum > 0 (as torch.optim.SGD); set momentum or "
                             "nesterov=False")
        super()._check_hyper(fused)

    def _args(self, p, slots):
        velocity = slots[0] if slots else np.empty(0, p.dtype)
        return velocity, self.lr, self.momentum, self.weight_decay, self.nesterov

    def _plain(self):
        return not (self.momentum or self.weight_decay or self.nesterov)

    def _is_finite(self, p, g, slots):
        if self._plain():
            return kernels.sgd_is_finite(p, g, self.lr)
        return kernels.sgd_momentum_is_finite(p, g, *self._args(p, slots))

    def _checked(self, p, g, slots):
        if self._plain():
            return kernels.sgd_checked(p, g, self.lr)
        return kernels.sgd_momentum_checked(p, g, *self._args(p, slots))

    def _update(self, p, g, slots, parallel):
        if self._plain():
            (kernels.sgd_parallel if parallel else kernels.sgd)(p, g, self.lr)
        else:
            run = kernels.sgd_momentum_parallel if parallel else kernels.sgd_momentum
            run(p, g, *self._args(p, slots))

    def kernel_spec(self):
        from .kernels.step import OPT_MOMENTUM, OPT_SGD
        self._check_hyper(fused=True)
        kind = OPT_SGD if self._plain() and not self._sklearn_alpha else OPT_MOMENTUM
        return kind, self._hyper(lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay,
                                 nesterov_or_decoupled=float(self.nesterov))

    def config(self):
        return {"lr": self.lr, "momentum": self.momentum, "nesterov": self.nesterov,
                "weight_decay": self.weight_decay}


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015, Algorithm 1), bias-corrected as in torch.optim.Adam, with coupled L2 weight
    decay (g += weight_decay·p). State: the first and second moment estimates.

    Private, for the scikit-learn estimators, fused path only: ``_sklearn_eps = True`` puts epsilon where
    scikit-learn does, p -= lr·sqrt(1 - β2^t)/(1 - β1^t) · m / (sqrt(v) + eps).
    """

    lr = _Hyper(_positive)
    beta1 = _Hyper(_fraction)
    beta2 = _Hyper(_fraction)
    eps = _Hyper(_positive)
    weight_decay = _Hyper(_non_negative)
    _sklearn_eps = _Hyper(_flag)
    _decoupled = False

    def __init__(self, lr=0.001, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0):
        super().__init__()
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps
        self.weight_decay = weight_decay
        self._sklearn_eps = False

    @property
    def n_slots(self):
        return 2

    def _check_hyper(self, fused):
        if not fused and self._sklearn_eps:
            raise ValueError("_sklearn_eps (scikit-learn's epsilon placement) needs the fused path: "
                             "fit(..., fused=True); Optimizer.step does not apply it")
        super()._check_hyper(fused)

    def _args(self, p, g, slots):
        return (p, g, slots[0], slots[1], self.lr, self.beta1, self.beta2, self.eps, self.steps,
                self.weight_decay, self._decoupled, self._sklearn_eps)

    def _is_finite(self, p, g, slots):
        return kernels.adam_is_finite(*self._args(p, g, slots))

    def _checked(self, p, g, slots):
        return kernels.adam_checked(*self._args(p, g, slots))

    def _update(self, p, g, slots, parallel):
        (kernels.adam_parallel if parallel else kernels.adam)(*self._args(p, g, slots))

    def kernel_spec(self):
        self._check_hyper(fused=True)
        from .kernels.step import OPT_ADAM
        return OPT_ADAM, self._hyper(lr=self.lr, momentum=self.beta1, beta2=self.beta2, eps=self.eps,
                                     weight_decay=self.weight_decay, nesterov_or_decoupled=float(self._decoupled),
                                     sklearn_eps=float(self._sklearn_eps))

    def config(self):
        return {"lr": self.lr, "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps,
                "weight_decay": self.weight_decay}


class AdamW(Adam):
    """Adam with decoupled weight decay as torch.optim.AdamW: p *= 1 - lr·weight_decay, then the Adam step
    (Loshchilov & Hutter 2019). State: the first and second moment estimates."""

    _decoupled = True

    def __init__(self, lr=0.001, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01):
        super().__init__(lr=lr, beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay)


OPTIMIZER_TYPES = {cls.__name__: cls for cls in (SGD, Adam, AdamW)}
