"""Learning-rate schedules: the learning rate of each epoch, as a pure function of what came before it.

The protocol: a schedule is an object with one method ::

    lr(epoch, base_lr, history, samples_seen) -> float

giving the learning rate for epoch ``epoch`` (1-based) from the base rate (the optimizer's lr when the fit
began), ``history`` (the fit's history dict of the epochs *before* ``epoch``: lists per key, so
``history["val_loss"]`` holds ``epoch - 1`` values) and ``samples_seen`` (training samples processed before
the epoch, scikit-learn's ``t_``). A schedule keeps no state, so a fit resumed from a checkpoint gets
bit-identical rates: ReduceLROnPlateau replays the monitored history to find its current rate. ::

    sched = fnn.schedules.StepLR(step_size=10, gamma=0.5)
    history = {"loss": [], "val_loss": []}
    for epoch in range(1, epochs + 1):
        net.optimizer.lr = sched.lr(epoch, base_lr, history, samples_seen)
        ...                                  # run the epoch, append to history, add to samples_seen

``get(spec)`` turns what a user passes as ``lr_schedule`` into a schedule: a schedule object, ``None``, or a
function ``f(epoch) -> lr``. ``config()`` gives a schedule's constructor arguments (JSON-able) and
``SCHEDULE_TYPES`` maps class names back to classes, so ``to_config`` / ``from_config`` round-trip a schedule
through a checkpoint. Every rate a schedule returns is checked: one that is not a finite positive number
raises ValueError naming the schedule and the epoch.

StepLR, ExponentialLR, CosineAnnealingLR and ReduceLROnPlateau give the rates of torch.optim.lr_scheduler's
classes of the same names (epoch ``e`` here is the rate torch's optimizer holds after ``e - 1`` calls of
``scheduler.step()``); InverseScaling is scikit-learn's ``learning_rate="invscaling"``.
"""
import math
import numbers
from collections.abc import Mapping

import numpy as np

from . import _checks
from ._checks import Checked, Guarded

__all__ = ["rate_problem", "Schedule", "StepLR", "ExponentialLR", "CosineAnnealingLR", "InverseScaling", "ReduceLROnPlateau",
           "FunctionSchedule", "SCHEDULE_TYPES", "get", "to_config", "from_config"]


# -- argument checks ---------------------------------------------------------------------------------------
def _is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _int(value, name, owner, minimum):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < minimum:
        need = "a positive integer" if minimum == 1 else "a non-negative integer"
        raise ValueError(f"{owner}: {name} must be {need}, got {value!r}")
    return int(value)


def _real(value, name, owner, *, low=None, low_open=False, high=None, high_open=False):
    """A finite real number in the given interval, as a float; ValueError naming ``name`` otherwise."""
    ok = _is_real(value) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        if low is None and high is None:
            need = "a finite number"
        elif high is None:
            need = f"a finite number {'>' if low_open else '>='} {low:g}"
        else:
            need = f"a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"{owner}: {name} must be {need}, got {value!r}")
    return float(value)


def _choice(value, name, owner, choices):
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{owner}: {name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def _monitored_values(history, key, count, owner):
    """The first ``count`` values of ``history[key]`` as floats; ValueError naming the key and the keys
    present when it is missing or too short. (ReduceLROnPlateau.)"""
    if count <= 0:
        return []
    if key not in history:
        raise ValueError(f"{owner} monitors {key!r}, which is not in the history "
                         f"(keys present: {sorted(map(str, history)) or 'none'})")
    values = history[key]
    if len(values) < count:
        raise ValueError(f"{owner} monitors {key!r}: need {count} values, the history has {len(values)}")
    return [float(v) for v in values[:count]]


def _attr(check, owner, *args, **kwargs):
    """A schedule's hyperparameter as an attribute validated on every assignment (by the constructor's check)."""
    return Checked(lambda value, name: check(value, name, owner, *args, **kwargs))


def _monitor(value, name, owner):
    if not isinstance(value, str) or not value:
        raise ValueError(f"{owner}: {name} must be a non-empty string (a history key), got {value!r:.80}")
    return value


def _function(value, name, owner):
    if not callable(value) and not callable(getattr(value, "lr", None)):
        raise TypeError(f"{owner}: {name} must be a function f(epoch) -> lr, got {type(value).__name__}")
    return value


def rate_problem(lr, dtype):
    """Why the learning rate ``lr`` cannot drive a network of ``dtype`` ("" when it can): the kernels compute
    in the network's dtype, where a rate beyond its range is inf (every update infinite) and one below its
    smallest number is 0 (no update at all)."""
    dt = np.dtype(dtype)
    with np.errstate(over="ignore"):
        cast = float(np.asarray(lr, dtype=np.float64).astype(dt))
    if not math.isfinite(cast):
        return f"beyond the {dt.name} range of the network (max {float(np.finfo(dt).max):.3g})"
    if lr > 0 and cast == 0:
        return f"below the smallest {dt.name} number (it would be 0 in the network's {dt.name} arithmetic)"
    return ""


# -- the base class ----------------------------------------------------------------------------------------
class Schedule(Guarded):
    """Base class. Subclasses implement ``_rate(epoch, base_lr, history, samples_seen)`` and ``config()``;
    ``lr`` checks the arguments and the result around it."""

    # appended to the error when the schedule gives a rate that is not finite and positive
    _bad_rate_hint = ""

    def lr(self, epoch, base_lr, history=None, samples_seen=0, dtype=None):
        """The learning rate for epoch ``epoch`` (1-based); see the module docstring. Given ``dtype`` (the
        network's), a rate that dtype cannot represent is refused too."""
        name = type(self).__name__
        epoch = _int(epoch, "epoch", f"{name}.lr", 1)
        base_lr = _real(base_lr, "base_lr", f"{name}.lr", low=0.0, low_open=True)
        if history is None:
            history = {}
        elif not isinstance(history, Mapping):
            raise TypeError(f"{name}.lr: history must be a dict of per-epoch lists, got {type(history).__name__}")
        samples_seen = _int(samples_seen, "samples_seen", f"{name}.lr", 0)
        try:
            rate = self._rate(epoch, base_lr, history, samples_seen)
        except OverflowError:                     # float ** raises where float * gives inf
            rate = math.inf
        return self._checked_rate(rate, epoch, None if dtype is None else _checks.float_dtype(dtype))

    def _checked_rate(self, rate, epoch, dtype=None):
        """``rate`` as a float: ValueError naming the schedule and the epoch unless it is a finite positive
        real number (not a bool) — and, given ``dtype``, one that the network's dtype represents."""
        value = None
        if _is_real(rate):
            try:
                value = float(rate)
            except OverflowError:                 # an int beyond float64 (10 ** 400)
                value = math.inf
        if value is None or not math.isfinite(value) or value <= 0:
            shown = f"an int of {len(str(abs(rate)))} digits" if isinstance(rate, numbers.Integral) \
                and value == math.inf else f"{rate!r:.60}"
            what = "" if value is not None else f" ({type(rate).__name__}, not a number)"
            raise ValueError(f"schedule {self!r:.200} gave lr={shown}{what} for epoch {epoch}; a learning rate "
                             f"must be a finite positive number{self._bad_rate_hint}")
        if dtype is not None:
            problem = rate_problem(value, dtype)
            if problem:
                raise ValueError(f"schedule {self!r:.200} gave lr={value!r} for epoch {epoch}, {problem}"
                                 f"{self._bad_rate_hint}")
        return value

    # the epochs whose rates bound every rate of a fit (history-free schedules: the rate is monotone in the
    # epoch); None: the schedule depends on the history and cannot be checked ahead
    def _extreme_epochs(self, first, last):
        return None

    def check_fit(self, first, last, base_lr, samples_per_epoch, dtype):
        """Before a fit's first epoch: ValueError, naming the schedule and the epoch, when a rate of epochs
        ``first``..``last`` would be refused mid-fit (not positive, or not representable in ``dtype``) — for
        the schedules whose rates do not depend on the history (a ReduceLROnPlateau or a user's function is
        checked each epoch)."""
        def check(epoch):
            self.lr(epoch, base_lr, None, (epoch - 1) * samples_per_epoch, dtype=dtype)

        for epoch in sorted(set(self._extreme_epochs(first, last) or ())):
            try:
                check(epoch)
            except ValueError:
                for earlier in range(first, min(epoch, first + 100_000)):    # name the first epoch refused
                    check(earlier)
                raise

    def _rate(self, epoch, base_lr, history, samples_seen):
        raise NotImplementedError

    def config(self):
        """The constructor arguments (JSON-able): ``type(s)(**s.config())`` is an equal schedule."""
        raise NotImplementedError

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other):
        return type(self) is type(other) and self.config() == other.config()

    def __hash__(self):
        return hash((type(self).__name__, repr(self)))


class StepLR(Schedule):
    """``base_lr * gamma ** ((epoch - 1) // step_size)``: the rate decays by ``gamma`` every ``step_size``
    epochs (torch.optim.lr_scheduler.StepLR)."""

    step_size = _attr(_int, "StepLR", 1)
    gamma = _attr(_real, "StepLR", low=0.0, low_open=True)

    def __init__(self, step_size, gamma=0.1):
        self.step_size = _int(step_size, "step_size", "StepLR", 1)
        self.gamma = _real(gamma, "gamma", "StepLR", low=0.0, low_open=True)

    def _rate(self, epoch, base_lr, history, samples_seen):
        return base_lr * self.gamma ** ((epoch - 1) // self.step_size)

    def config(self):
        return {"step_size": self.step_size, "gamma": self.gamma}

    def _extreme_epochs(self, first, last):       # monotone in the epoch
        return (first, last)


class ExponentialLR(Schedule):
    """``base_lr * gamma ** (epoch - 1)`` (torch.optim.lr_scheduler.ExponentialLR)."""

    gamma = _attr(_real, "ExponentialLR", low=0.0, low_open=True)

    def __init__(self, gamma):
        self.gamma = _real(gamma, "gamma", "ExponentialLR", low=0.0, low_open=True)

    def _rate(self, epoch, base_lr, history, samples_seen):
        return base_lr * self.gamma ** (epoch - 1)

    def config(self):
        return {"gamma": self.gamma}

    def _extreme_epochs(self, first, last):       # monotone in the epoch
        return (first, last)


class CosineAnnealingLR(Schedule):
    """``eta_min + (base_lr - eta_min) * (1 + cos(pi * (epoch - 1) / T_max)) / 2``: half a cosine from
    ``base_lr`` at epoch 1 down to ``eta_min`` at epoch ``T_max + 1``, then back up (the closed form of
    torch.optim.lr_scheduler.CosineAnnealingLR). With ``eta_min=0`` epoch ``T_max + 1`` would get a rate of
    0, which is an error: train at most ``T_max`` epochs or give ``eta_min > 0``."""

    _bad_rate_hint = " (CosineAnnealingLR reaches eta_min at epoch T_max + 1: give eta_min > 0 or T_max >= epochs)"

    T_max = _attr(_int, "CosineAnnealingLR", 1)
    eta_min = _attr(_real, "CosineAnnealingLR", low=0.0)

    def __init__(self, T_max, eta_min=0.0):
        self.T_max = _int(T_max, "T_max", "CosineAnnealingLR", 1)
        self.eta_min = _real(eta_min, "eta_min", "CosineAnnealingLR", low=0.0)

    def _rate(self, epoch, base_lr, history, samples_seen):
        t = epoch - 1
        return self.eta_min + (base_lr - self.eta_min) * (1 + math.cos(math.pi * t / self.T_max)) / 2

    def config(self):
        return {"T_max": self.T_max, "eta_min": self.eta_min}

    def _extreme_epochs(self, first, last):
        # the rate falls from epoch 1 to its minimum eta_min at epoch T_max + 1, rises back by 2 T_max + 1, ...
        period = 2 * self.T_max
        low = self.T_max + 1 + max(0, -(-(first - self.T_max - 1) // period)) * period   # the first at/after `first`
        return (first, last) + ((low,) if low <= last else ())


class InverseScaling(Schedule):
    """scikit-learn's ``learning_rate="invscaling"``: ``base_lr / (samples_seen + 1) ** power_t``, where
    ``samples_seen`` counts the training samples processed before the epoch (scikit-learn's ``t_``)."""

    power_t = _attr(_real, "InverseScaling", low=0.0)

    def __init__(self, power_t=0.5):
        self.power_t = _real(power_t, "power_t", "InverseScaling", low=0.0)

    def _rate(self, epoch, base_lr, history, samples_seen):
        # the expression of sklearn.neural_network._stochastic_optimizers.SGDOptimizer.iteration_ends
        return float(base_lr) / (samples_seen + 1) ** self.power_t

    def config(self):
        return {"power_t": self.power_t}

    def _extreme_epochs(self, first, last):       # monotone in samples_seen
        return (first, last)


class ReduceLROnPlateau(Schedule):
    """Divide the rate by ``1 / factor`` when ``history[monitor]`` has not improved for more than
    ``patience`` epochs (torch.optim.lr_scheduler.ReduceLROnPlateau, argument for argument).

    The rate of epoch ``e`` is found by replaying torch's ``step(metric)`` over the first ``e - 1`` monitored
    values, starting from ``base_lr``. An improvement is ``a < best * (1 - threshold)`` (min, rel),
    ``a < best - threshold`` (min, abs), ``a > best * (1 + threshold)`` (max, rel) or ``a > best + threshold``
    (max, abs); after a reduction ``cooldown`` epochs count as neither good nor bad; the rate never goes
    below ``min_lr`` and changes smaller than ``eps`` are ignored. NaN never improves.

    The replay is cached (the state after the longest history prefix seen), so a fit of E epochs costs
    O(E) in total rather than O(E^2); the cache never changes a result.
    """

    monitor = _attr(_monitor, "ReduceLROnPlateau")
    factor = _attr(_real, "ReduceLROnPlateau", low=0.0, low_open=True, high=1.0, high_open=True)
    patience = _attr(_int, "ReduceLROnPlateau", 0)
    mode = _attr(_choice, "ReduceLROnPlateau", ("min", "max"))
    threshold = _attr(_real, "ReduceLROnPlateau", low=0.0)
    threshold_mode = _attr(_choice, "ReduceLROnPlateau", ("rel", "abs"))
    cooldown = _attr(_int, "ReduceLROnPlateau", 0)
    min_lr = _attr(_real, "ReduceLROnPlateau", low=0.0)
    eps = _attr(_real, "ReduceLROnPlateau", low=0.0)

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, mode="min", threshold=1e-4,
                 threshold_mode="rel", cooldown=0, min_lr=0.0, eps=1e-8):
        owner = "ReduceLROnPlateau"
        if not isinstance(monitor, str) or not monitor:
            raise ValueError(f"{owner}: monitor must be a non-empty string (a history key), got {monitor!r}")
        self.monitor = monitor
        self.factor = _real(factor, "factor", owner, low=0.0, low_open=True, high=1.0, high_open=True)
        self.patience = _int(patience, "patience", owner, 0)
        self.mode = _choice(mode, "mode", owner, ("min", "max"))
        self.threshold = _real(threshold, "threshold", owner, low=0.0)
        self.threshold_mode = _choice(threshold_mode, "threshold_mode", owner, ("rel", "abs"))
        self.cooldown = _int(cooldown, "cooldown", owner, 0)
        self.min_lr = _real(min_lr, "min_lr", owner, low=0.0)
        self.eps = _real(eps, "eps", owner, low=0.0)
        self._cache = None

    def config(self):
        return {"monitor": self.monitor, "factor": self.factor, "patience": self.patience, "mode": self.mode,
                "threshold": self.threshold, "threshold_mode": self.threshold_mode, "cooldown": self.cooldown,
                "min_lr": self.min_lr, "eps": self.eps}

    def _is_better(self, a, best):
        if self.mode == "min":
            return a < best * (1.0 - self.threshold) if self.threshold_mode == "rel" else a < best - self.threshold
        return a > best * (self.threshold + 1.0) if self.threshold_mode == "rel" else a > best + self.threshold

    def _step(self, state, current):
        """torch's ReduceLROnPlateau.step on ``state = (lr, best, num_bad_epochs, cooldown_counter)``."""
        lr, best, bad, cooldown_counter = state
        if self._is_better(current, best):
            best, bad = current, 0
        else:
            bad += 1
        if cooldown_counter > 0:
            cooldown_counter -= 1
            bad = 0
        if bad > self.patience:
            new_lr = max(lr * self.factor, self.min_lr)
            if lr - new_lr > self.eps:
                lr = new_lr
            cooldown_counter, bad = self.cooldown, 0
        return lr, best, bad, cooldown_counter

    def _rate(self, epoch, base_lr, history, samples_seen):
        values = _monitored_values(history, self.monitor, epoch - 1, "ReduceLROnPlateau")
        key = (base_lr, tuple(self.config().items()))
        cache = self._cache
        if cache is not None and cache[0] == key and len(cache[1]) <= len(values) \
                and values[:len(cache[1])] == cache[1]:
            done, state = cache[1], cache[2]
        else:
            done, state = [], (base_lr, math.inf if self.mode == "min" else -math.inf, 0, 0)
        for v in values[len(done):]:
            state = self._step(state, v)
        self._cache = (key, values, state)
        return state[0]


class FunctionSchedule(Schedule):
    """Wraps a user's function ``f(epoch) -> lr`` (or a user's object with its own ``lr`` method) so that its
    rates are checked like every schedule's. Not saved in checkpoints (``to_config`` gives None): pass it
    again when resuming."""

    fn = _attr(_function, "FunctionSchedule")

    def __init__(self, fn):
        if not callable(fn) and not callable(getattr(fn, "lr", None)):
            raise TypeError(f"FunctionSchedule: fn must be a function f(epoch) -> lr, got {type(fn).__name__}")
        self.fn = fn

    def _rate(self, epoch, base_lr, history, samples_seen):
        if callable(getattr(self.fn, "lr", None)):
            return self.fn.lr(epoch, base_lr, history, samples_seen)
        return self.fn(epoch)

    def config(self):
        return {"fn": getattr(self.fn, "__qualname__", None) or repr(self.fn)}

    def __repr__(self):
        return f"FunctionSchedule({getattr(self.fn, '__qualname__', None) or self.fn!r})"

    def __eq__(self, other):
        return type(self) is type(other) and self.fn is other.fn

    def __hash__(self):
        return id(self.fn)


SCHEDULE_TYPES = {cls.__name__: cls for cls in
                  (StepLR, ExponentialLR, CosineAnnealingLR, InverseScaling, ReduceLROnPlateau)}


def get(spec):
    """The schedule for ``spec``: a Schedule is returned as is, None gives None, a function ``f(epoch) -> lr``
    (or any object with a method ``lr(epoch, base_lr, history, samples_seen)``) is wrapped in a
    FunctionSchedule so its rates are checked. Anything else is a TypeError."""
    if spec is None or isinstance(spec, Schedule):
        return spec
    if isinstance(spec, type):
        hint = f": write {spec.__name__}(...)" if issubclass(spec, Schedule) else ""
        raise TypeError(f"lr_schedule must be a schedule object, not the class {spec.__name__}{hint}")
    if callable(getattr(spec, "lr", None)) or callable(spec):
        return FunctionSchedule(spec)
    raise TypeError(f"lr_schedule must be a fastnn.schedules schedule, a function f(epoch) -> lr or None, "
                    f"got {type(spec).__name__}")


def to_config(schedule):
    """``{"type": name, "config": {...}}`` for a built-in schedule (JSON-able), None for None and for a
    FunctionSchedule (a function cannot be saved)."""
    if schedule is None or type(schedule).__name__ not in SCHEDULE_TYPES \
            or SCHEDULE_TYPES[type(schedule).__name__] is not type(schedule):
        return None
    return {"type": type(schedule).__name__, "config": schedule.config()}


def from_config(config):
    """The schedule ``to_config`` described (None for None); ValueError for an unknown type."""
    if config is None:
        return None
    if not isinstance(config, Mapping) or "type" not in config:
        raise ValueError(f"a schedule config must be a dict with 'type' and 'config', got {config!r}")
    cls = SCHEDULE_TYPES.get(config["type"])
    if cls is None:
        raise ValueError(f"unknown schedule type {config['type']!r}; known: {', '.join(SCHEDULE_TYPES)}")
    return cls(**dict(config.get("config", {})))
