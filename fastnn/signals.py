"""Ctrl-C (SIGINT) and SIGTERM during training: stop at a boundary, never half-way through a step.

``deferred(flag)``: while a fit runs (main thread only, over the default handlers only), the first signal
sets ``flag.requested`` (the loop stops at the next batch or epoch boundary and raises
TrainingInterrupted); a second signal acts at once (SIGINT: KeyboardInterrupt; SIGTERM: the previous
handler, or the default exit) — except inside ``critical()``, where it is held until the section ends.
The loop makes critical every stretch that changes state in several places that must stay consistent:
an optimizer step (weights, moments and ``optimizer.steps`` change together), the end-of-epoch bookkeeping
(history row, checkpoint write). The handlers in force before the fit are restored when it ends.
"""
import contextlib
import signal
import threading

__all__ = ["StopFlag", "deferred", "critical"]

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_DEFAULTS = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}


class StopFlag:
    """``requested``: a signal asked training to stop; ``signal_name``: the first one's name ("SIGINT")."""

    def __init__(self):
        self.requested = False
        self.signal_name = None


class _State(threading.local):
    depth = 0           # nesting of critical() in this thread
    pending = None      # (signum, act) of a second signal held by a critical section


_state = _State()


@contextlib.contextmanager
def critical():
    """A stretch a second signal must not cut: its action is held until the outermost section ends."""
    _state.depth += 1
    try:
        yield
    finally:
        _state.depth -= 1
        if _state.depth == 0 and _state.pending is not None:
            act, _state.pending = _state.pending, None
            act()


@contextlib.contextmanager
def deferred(flag):
    """Install the stop handlers for SIGINT and SIGTERM (see the module docstring) around a fit."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}

    def restore():
        for sig, h in previous.items():
            if signal.getsignal(sig) is handler:
                signal.signal(sig, h)

    def handler(signum, frame):
        if not flag.requested:
            flag.requested = True
            flag.signal_name = signal.Signals(signum).name
            return
        old = previous.get(signum)

        def act():
            restore()
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            if callable(old):
                old(signum, None)
            else:
                signal.raise_signal(signum)
        if _state.depth:
            _state.pending = act
        else:
            act()

    for sig in STOP_SIGNALS:
        if signal.getsignal(sig) is _DEFAULTS[sig]:
            previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        _state.pending = None
        restore()
