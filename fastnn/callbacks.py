"""Callbacks: code the training loop runs at the end of every epoch, which may stop the fit.

The protocol: a callback is any object with ``on_epoch_end(epoch, history) -> bool``, called after each epoch
(``epoch`` 1-based; ``history`` the fit's history dict including that epoch, so ``history["val_loss"][-1]``
is its validation loss); returning True stops training after that epoch (None counts as False). Optional
``on_train_begin(net)`` and ``on_train_end(net)`` are called, when the object defines them, before the first
and after the last epoch of a fit (also when a callback stopped it). ``net.params`` is the list of the
network's parameter arrays. ::

    class PrintLoss:
        def on_epoch_end(self, epoch, history):
            print(epoch, history["loss"][-1])
            return history["loss"][-1] < 1e-3          # stop once the loss is small

    net.fit(X, y, epochs=100, callbacks=[PrintLoss(), fnn.callbacks.EarlyStopping(patience=5)])

A callback whose behaviour depends on earlier epochs keeps a checkpointed fit exact by defining
``state_dict() -> dict`` (JSON-able) and ``load_state_dict(state)`` (checks ``state`` before changing
anything): ``fit(checkpoint=...)`` stores the state with each checkpoint and gives it back on resume, after
``on_train_begin``. EarlyStopping has both; a callback without them is taken to have no state.

``CallbackList`` runs a list of callbacks by this protocol (every callback's on_epoch_end is called each
epoch, even after one asked to stop); ``get(spec)`` checks what a user passed as ``callbacks``.
"""
import base64
import math
import numbers

import numpy as np

from . import _checks

__all__ = ["Callback", "EarlyStopping", "CallbackList", "get"]


class Callback(_checks.Guarded):
    """Optional base class: every hook does nothing. Subclasses override what they need."""

    def on_train_begin(self, net):
        pass

    def on_epoch_end(self, epoch, history):
        return False

    def on_train_end(self, net):
        pass


def _net_params(net, owner):
    params = getattr(net, "params", None)
    if params is None or isinstance(params, np.ndarray) or not all(isinstance(p, np.ndarray) for p in params):
        raise TypeError(f"{owner}: net must have a 'params' list of parameter arrays, got {type(net).__name__}")
    return list(params)


class EarlyStopping(Callback):
    """Stop when ``history[monitor]`` has not improved for ``patience`` epochs (Keras' EarlyStopping).

    An epoch improves when its value is below ``best - min_delta`` (mode "min") or above ``best + min_delta``
    (mode "max"); mode "auto" is "max" when the key contains "acc" and "min" otherwise. Each epoch that does
    not improve adds one to ``wait``; training stops at the epoch where ``wait`` reaches ``patience``.
    With ``restore_best_weights`` the network's parameters are copied at the best epoch and written back in
    ``on_train_end`` when the best epoch is not the last one trained (whether or not this callback stopped
    the fit). NaN never improves.

    After a fit: ``stopped_epoch`` (the epoch this callback stopped at, 0 if it did not), ``best_epoch``
    (0 before any epoch) and ``best`` (the best monitored value; inf / -inf before any). The state is reset
    by ``on_train_begin``, so one object serves several fits.
    """

    # validated on every assignment, like the constructor's arguments (DESIGN §5)
    monitor = _checks.Checked(lambda v, name: _checks.nonempty_str(v, f"EarlyStopping: {name}"))
    patience = _checks.Checked(lambda v, name: _checks.integer(v, f"EarlyStopping: {name}", 0, 2 ** 62))
    min_delta = _checks.Checked(lambda v, name: _checks.positive_float(v, f"EarlyStopping: {name}", True))
    restore_best_weights = _checks.Checked(lambda v, name: _checks.flag(v, f"EarlyStopping: {name}"))
    mode = _checks.Checked(lambda v, name: _checks.choice(v, f"EarlyStopping: {name}", ("auto", "min", "max")))

    # the state: set by the callback itself (on_train_begin resets it, load_state_dict restores it); read-only
    _STATE_WHY = "it is this callback's state (reset by on_train_begin, restored from a checkpoint)"
    wait = _checks.ReadOnly(lambda self: self._wait, _STATE_WHY)
    stopped_epoch = _checks.ReadOnly(lambda self: self._stopped_epoch, _STATE_WHY)
    best_epoch = _checks.ReadOnly(lambda self: self._best_epoch, _STATE_WHY)
    best = _checks.ReadOnly(lambda self: self._best, _STATE_WHY)
    best_weights = _checks.ReadOnly(lambda self: _read_only_copies(self._best_weights), _STATE_WHY)

    def __init__(self, monitor="val_loss", patience=10, min_delta=0.0, restore_best_weights=True, mode="auto"):
        if not isinstance(monitor, str) or not monitor:
            raise ValueError(f"EarlyStopping: monitor must be a non-empty string (a history key), got {monitor!r}")
        if isinstance(patience, (bool, np.bool_)) or not isinstance(patience, numbers.Integral):
            raise _checks.NotAnIntegerError(f"EarlyStopping: patience must be a non-negative integer, got "
                                            f"{type(patience).__name__} {patience!r:.80}")
        if patience < 0:
            raise ValueError(f"EarlyStopping: patience must be a non-negative integer, got {patience!r}")
        if isinstance(min_delta, (bool, np.bool_)) or not isinstance(min_delta, numbers.Real) \
                or not math.isfinite(min_delta) or min_delta < 0:
            raise ValueError(f"EarlyStopping: min_delta must be a non-negative finite number, got {min_delta!r}")
        if not isinstance(restore_best_weights, (bool, np.bool_)):
            raise TypeError(f"EarlyStopping: restore_best_weights must be True or False, "
                            f"got {restore_best_weights!r}")
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"EarlyStopping: mode must be one of 'auto', 'min', 'max', got {mode!r}")
        self.monitor = monitor
        self.patience = int(patience)
        self.min_delta = float(min_delta)
        self.restore_best_weights = bool(restore_best_weights)
        self.mode = mode
        self._net = None
        self._reset()

    @property
    def direction(self):
        """"min" or "max": ``mode`` with "auto" resolved."""
        if self.mode != "auto":
            return self.mode
        return "max" if "acc" in self.monitor else "min"

    def config(self):
        return {"monitor": self.monitor, "patience": self.patience, "min_delta": self.min_delta,
                "restore_best_weights": self.restore_best_weights, "mode": self.mode}

    def __repr__(self):
        return "EarlyStopping(" + ", ".join(f"{k}={v!r}" for k, v in self.config().items()) + ")"

    def _reset(self):
        self._wait = 0
        self._stopped_epoch = 0
        self._best_epoch = 0
        self._best = math.inf if self.direction == "min" else -math.inf
        self._best_weights = None
        self._last_epoch = 0

    def _improves(self, value):
        # Keras' form, monitor_op(value -/+ min_delta, best), so boundary cases round as Keras' do
        if self.direction == "min":
            return value + self.min_delta < self.best
        return value - self.min_delta > self.best

    def _snapshot(self):
        self._best_weights = [p.copy() for p in _net_params(self._net, "EarlyStopping")]

    def on_train_begin(self, net):
        other = self._net
        if other is not None and other is not net and getattr(other, "in_training_call", False):
            raise RuntimeError("this EarlyStopping object is in use by a fit of another network that is still "
                               "running; give each concurrent fit its own EarlyStopping")
        if self.restore_best_weights:
            _net_params(net, "EarlyStopping")
        self._net = net
        self._reset()

    def on_epoch_end(self, epoch, history):
        if isinstance(epoch, (bool, np.bool_)) or not isinstance(epoch, numbers.Integral) or epoch < 1:
            raise ValueError(f"EarlyStopping.on_epoch_end: epoch must be a positive integer, got {epoch!r}")
        if self.restore_best_weights and self._net is None:
            raise ValueError("EarlyStopping(restore_best_weights=True) needs on_train_begin(net) before "
                             "on_epoch_end, to know whose weights to keep")
        if not hasattr(history, "get"):
            raise TypeError(f"EarlyStopping.on_epoch_end: history must be a dict of per-epoch lists, "
                            f"got {type(history).__name__}")
        if self.monitor not in history:
            raise ValueError(f"EarlyStopping monitors {self.monitor!r}, which is not in the history "
                             f"(keys present: {sorted(map(str, history)) or 'none'})")
        if len(history[self.monitor]) == 0:
            raise ValueError(f"EarlyStopping monitors {self.monitor!r}, but history[{self.monitor!r}] is empty "
                             f"at the end of epoch {epoch}")
        value = float(history[self.monitor][-1])
        self._last_epoch = epoch
        if self.restore_best_weights and self._best_weights is None:
            self._snapshot()                      # Keras: until something improves, the first epoch is best
            self._best_epoch = epoch
        self._wait += 1
        if self._improves(value):
            self._best, self._best_epoch, self._wait = value, epoch, 0
            if self.restore_best_weights:
                self._snapshot()
            return False
        if self._wait >= self.patience and epoch > 1:
            self._stopped_epoch = epoch
            return True
        return False

    def state_dict(self):
        """The state a resumed fit needs (JSON-able; floats as hex, the best weights as base64 bytes)."""
        weights = None if self._best_weights is None else [
            {"dtype": w.dtype.str, "shape": list(w.shape), "data": base64.b64encode(w.tobytes()).decode()}
            for w in self._best_weights]
        return {"wait": self.wait, "stopped_epoch": self.stopped_epoch, "best_epoch": self.best_epoch,
                "best": float(self.best).hex(), "last_epoch": self._last_epoch, "best_weights": weights}

    def load_state_dict(self, state):
        """Restore ``state_dict()``'s state; ValueError, changing nothing, when it is malformed or its
        weights do not fit the network given to on_train_begin."""
        if not isinstance(state, dict):
            raise ValueError(f"EarlyStopping state must be a dict, got {type(state).__name__}")
        ints = {}
        for key in ("wait", "stopped_epoch", "best_epoch", "last_epoch"):
            v = state.get(key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"EarlyStopping state {key!r} must be an integer >= 0, got {v!r:.60}")
            ints[key] = v
        if ints["best_epoch"] > ints["last_epoch"] or ints["stopped_epoch"] > ints["last_epoch"] \
                or ints["wait"] > ints["last_epoch"]:
            raise ValueError("EarlyStopping state: best_epoch, stopped_epoch and wait cannot exceed last_epoch")
        try:
            best = float.fromhex(state.get("best"))
        except (TypeError, ValueError):
            raise ValueError(f"EarlyStopping state 'best' must be a float in hex, got {state.get('best')!r:.60}") \
                from None
        if math.isnan(best) or best == (math.inf if self.direction == "max" else -math.inf):
            raise ValueError(f"EarlyStopping state 'best' is {best!r}, impossible for mode {self.direction!r}")
        weights = state.get("best_weights")
        restored = None
        if weights is not None:
            if not self.restore_best_weights:
                raise ValueError("EarlyStopping state has best weights but restore_best_weights is False")
            params = _net_params(self._net, "EarlyStopping") if self._net is not None else None
            if params is None or not isinstance(weights, list) or len(weights) != len(params):
                raise ValueError("EarlyStopping state: best_weights do not match the network's parameters")
            restored = []
            for p, w in zip(params, weights):
                try:
                    a = np.frombuffer(base64.b64decode(w["data"], validate=True), dtype=np.dtype(w["dtype"]))
                    a = a.reshape(w["shape"]).copy()
                except (TypeError, ValueError, KeyError) as exc:
                    raise ValueError(f"EarlyStopping state: a best weight is malformed ({exc})") from None
                if a.shape != p.shape or a.dtype != p.dtype or not np.isfinite(a).all():
                    raise ValueError("EarlyStopping state: best_weights do not match the network's parameters")
                restored.append(a)
        elif self.restore_best_weights and ints["last_epoch"] > 0:
            raise ValueError("EarlyStopping state lacks the best weights that restore_best_weights needs")
        self._wait, self._stopped_epoch, self._best_epoch = ints["wait"], ints["stopped_epoch"], ints["best_epoch"]
        self._last_epoch, self._best, self._best_weights = ints["last_epoch"], best, restored

    def on_train_end(self, net):
        if self.restore_best_weights and self._best_weights is not None and self.best_epoch != self._last_epoch:
            params = _net_params(net, "EarlyStopping")
            if [(p.shape, p.dtype) for p in params] != [(s.shape, s.dtype) for s in self._best_weights]:
                raise ValueError("EarlyStopping: the network's parameters changed shape during the fit; "
                                 "cannot restore the best weights")
            for p, saved in zip(params, self._best_weights):
                p[...] = saved


def _read_only_copies(weights):
    """The saved best weights as a tuple of read-only views (None when there are none): a caller cannot
    change what on_train_end writes back."""
    if weights is None:
        return None
    views = []
    for w in weights:
        v = w.view()
        v.flags.writeable = False
        views.append(v)
    return tuple(views)


def stop_verdict(value, who, hook="on_epoch_end"):
    """A callback's answer to "stop?": None / False / True (or a NumPy bool) as a bool; TypeError naming the
    callback for anything else ('no', NaN, an array, a number), whose truth would be a guess."""
    if value is None:
        return False
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise TypeError(f"{who}.{hook} returned {value!r:.60} ({type(value).__name__}); it must return True "
                    f"(stop training), False or None (go on)")


class CallbackList:
    """Runs callbacks by the protocol: ``on_train_begin(net)`` / ``on_train_end(net)`` on those that define
    them, ``on_epoch_end(epoch, history)`` on all, returning True when any asked to stop."""

    def __init__(self, callbacks=()):
        self.callbacks = get(callbacks)

    def on_train_begin(self, net):
        for cb in self.callbacks:
            hook = getattr(cb, "on_train_begin", None)
            if hook is not None:
                hook(net)

    def on_epoch_end(self, epoch, history):
        stop = False
        for i, cb in enumerate(self.callbacks):
            if stop_verdict(cb.on_epoch_end(epoch, history), f"callbacks[{i}] ({type(cb).__name__})"):
                stop = True
        return stop

    def on_train_end(self, net):
        for cb in self.callbacks:
            hook = getattr(cb, "on_train_end", None)
            if hook is not None:
                hook(net)


def get(spec):
    """A list of callbacks from ``spec``: None or () gives [], one callback gives [it], an iterable of
    callbacks gives them as a list. TypeError, naming ``callbacks``, for anything without a callable
    ``on_epoch_end`` (or whose ``on_train_begin`` / ``on_train_end`` is present but not callable)."""
    if spec is None:
        return []
    if isinstance(spec, CallbackList):
        return list(spec.callbacks)
    items = [spec] if hasattr(spec, "on_epoch_end") else spec
    if isinstance(items, (str, bytes)) or not hasattr(items, "__iter__"):
        raise TypeError(f"callbacks must be a list of objects with on_epoch_end(epoch, history), "
                        f"got {type(spec).__name__}")
    items = list(items)
    for i, cb in enumerate(items):
        if isinstance(cb, type):
            raise TypeError(f"callbacks[{i}] is the class {cb.__name__}, not an instance: write {cb.__name__}(...)")
        if not callable(getattr(cb, "on_epoch_end", None)):
            raise TypeError(f"callbacks[{i}] must have a method on_epoch_end(epoch, history) -> bool, "
                            f"got {type(cb).__name__}")
        for hook in ("on_train_begin", "on_train_end"):
            if hasattr(cb, hook) and not callable(getattr(cb, hook)):
                raise TypeError(f"callbacks[{i}].{hook} must be a method, got {type(getattr(cb, hook)).__name__}")
    return items
