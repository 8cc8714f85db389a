"""Ctrl-C (SIGINT), SIGTERM and SIGHUP during training: stop at a boundary, never half-way through a step.

SIGHUP (the terminal closed, an ssh connection dropped without nohup) is handled exactly as SIGTERM: the fit
stops at a batch boundary, the checkpoint keeps the last consistent state, and an uncaught interruption
ends the process by the signal (129). ``STOP_SIGNALS`` is every signal handled so; ``exit_code`` and
``describe`` give a signal's exit status and words, for the command line.

``deferred(flag)``: while a fit runs (main thread only, over the default handlers only), the first signal
sets ``flag.requested`` (the loop stops at the next batch or epoch boundary and raises
TrainingInterrupted); a second signal acts at once (SIGINT: KeyboardInterrupt; SIGTERM: the previous
handler, or the default exit) — except inside ``critical()``, where it is held until the section ends.
The loop makes critical every stretch that changes state in several places that must stay consistent:
an optimizer step (weights, moments and ``optimizer.steps`` change together), the end-of-epoch bookkeeping
(history row, checkpoint write). The handlers in force before the fit are restored when it ends.

The exit status of a script the interruption ends: CPython exits by the signal (status 130 for Ctrl-C) only
when the uncaught exception's type is exactly KeyboardInterrupt, and with status 1 for a subclass such as
TrainingInterrupted. The first fit that installs the handlers also wraps ``sys.excepthook``: when a
TrainingInterrupted ends a (non-interactive) script, the hook prints the traceback as before, then lets the
interpreter run every atexit handler and flush the open files, and ends the process by the signal that
stopped training, restored to its default action (130 / 143 in a shell), as CPython does for Ctrl-C.
"""
import atexit
import contextlib
import gc
import io
import os
import signal
import sys
import threading

__all__ = ["StopFlag", "deferred", "critical", "held", "raising", "STOP_SIGNALS", "DEFAULTS", "exit_code", "describe"]

# every signal that stops a fit (SIGHUP where the platform has it), and Python's default handler of each
STOP_SIGNALS = tuple(s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None)
DEFAULTS = {sig: signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL for sig in STOP_SIGNALS}
_DEFAULTS = DEFAULTS
# when ranks (or signals) disagree, the one that names the outcome: an outside stop over a keyboard's
_PRIORITY = {"SIGTERM": 3, "SIGHUP": 2, "SIGINT": 1}


def exit_code(signal_name):
    """The exit status of a command a stop signal ended (a shell's 128 + the number): SIGINT 130, SIGHUP 129,
    SIGTERM 143; an unknown name counts as SIGINT."""
    sig = getattr(signal, str(signal_name), None)
    return 128 + int(sig if sig in STOP_SIGNALS else signal.SIGINT)


def describe(signal_name):
    """The words for a command a stop signal ended before training: "interrupted", "terminated (SIGTERM)",
    "hung up (SIGHUP)"."""
    return {"SIGTERM": "terminated (SIGTERM)", "SIGHUP": "hung up (SIGHUP)"}.get(str(signal_name), "interrupted")


def priority(signal_name):
    """The order in which an agreed outcome prefers signals: SIGTERM, then SIGHUP, then SIGINT."""
    return _PRIORITY.get(str(signal_name), 0)


class StopFlag:
    """``requested``: a signal asked training to stop; ``signal_name``: the first one's name ("SIGINT")."""

    def __init__(self):
        self.requested = False
        self.signal_name = None


class _State(threading.local):
    depth = 0           # nesting of critical() in this thread
    pending = None      # (signum, act) of a second signal held by a critical section


_state = _State()


class critical:
    """``with critical():`` a stretch a second signal must not cut: its action is held until the outermost
    section ends. (A class, not a generator context manager: the distributed and per-layer engines enter
    one per step, and a generator's set-up cost ~2 µs of it.)"""

    __slots__ = ()

    def __enter__(self):
        _state.depth += 1
        return self

    def __exit__(self, *exc):
        _state.depth -= 1
        if _state.depth == 0 and _state.pending is not None:
            act, _state.pending = _state.pending, None
            act()
        return False


@contextlib.contextmanager
def deferred(flag):
    """Install the stop handlers for SIGINT, SIGTERM and SIGHUP (see the module docstring) around a fit."""
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
        if signal.getsignal(sig) is DEFAULTS[sig]:
            previous[sig] = signal.signal(sig, handler)
    if previous:
        _wrap_excepthook()
    try:
        yield
    finally:
        _state.pending = None
        restore()


@contextlib.contextmanager
def raising():
    """In the block, SIGTERM and SIGHUP raise KeyboardInterrupt as SIGINT does (its ``signal_name`` says
    which: the command line's exit status, ``exit_code``), so that ``finally`` clauses run — for work that
    can stop anywhere but must clean up, such as ``fastnn compile`` ending its worker processes. Main thread
    only, over the default handlers only (a user's own handler is left alone); restored after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}

    def handler(signum, frame):
        name = signal.Signals(signum).name
        exc = KeyboardInterrupt(describe(name))
        exc.signal_name = name
        raise exc
    for sig in STOP_SIGNALS:
        if sig != signal.SIGINT and signal.getsignal(sig) is DEFAULTS[sig]:
            previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            if signal.getsignal(sig) is handler:
                signal.signal(sig, old)


# -- the exit status of a script that a TrainingInterrupted ends ------------------------------------------
def _wrap_excepthook():
    """Wrap ``sys.excepthook`` (once; whatever hook is in force is still called) so that an uncaught
    TrainingInterrupted ends the process as CPython ends it for an uncaught KeyboardInterrupt."""
    hook = sys.excepthook
    if getattr(hook, "fastnn_wrapped", None) is not None:
        return

    def excepthook(exc_type, exc, tb):
        hook(exc_type, exc, tb)
        from .errors import TrainingInterrupted
        if isinstance(exc, TrainingInterrupted) and exc_type is not KeyboardInterrupt and not _interactive():
            sig = getattr(signal, str(exc.signal_name), signal.SIGINT)
            if sig in STOP_SIGNALS:
                atexit.register(_exit_by_signal, sig)

    excepthook.fastnn_wrapped = hook
    sys.excepthook = excepthook


def _interactive():
    """The interpreter goes on after an uncaught exception (``python -i``, the REPL): no exit to make."""
    return bool(sys.flags.interactive) or hasattr(sys, "ps1")


_exiting = []


def _exit_by_signal(sig):
    """Registered by the hook after every other atexit handler, so it runs first: it runs the others
    (atexit's own runner, re-entered; this one returns at once there), flushes the standard streams and every
    open file (what finalisation would do), then kills the process with ``sig`` at its default action."""
    if _exiting:
        return
    _exiting.append(sig)
    atexit.unregister(_exit_by_signal)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:       # (a closed or broken stream: nothing to flush)
            pass
    for obj in gc.get_objects():
        if isinstance(obj, (io.BufferedWriter, io.BufferedRandom, io.TextIOWrapper)):
            try:
                if not obj.closed:
                    obj.flush()
            except Exception:   # (a broken pipe, a full disk: finalisation would ignore it too)
                pass
    signal.signal(sig, signal.SIG_DFL)
    os.kill(os.getpid(), sig)


HELD_SIGNALS = tuple(sig for sig in STOP_SIGNALS if sig != signal.SIGINT) + (signal.SIGINT,)  # SIGINT restored
# last: until then a Ctrl-C is held


@contextlib.contextmanager
def held():
    """SIGINT, SIGTERM and SIGHUP that arrive in the block are held, and delivered to the handlers installed before
    (training.py's: the first stops at the epoch's end, the second raises; Python's default: a
    KeyboardInterrupt), in order, once the block is done — so that a burst of Ctrl-C lands after a kernel's
    threads have returned and the steps they applied are counted, never between, and never inside Numba's
    or llvmlite's set-up (a KeyboardInterrupt there left half-built llvmlite objects whose finalisers print
    "Exception ignored" tracebacks). Main thread only (Python delivers signals there alone); a handler
    not installed from Python (getsignal() is None) is left in place."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held, previous = [], {}

    def hold(signum, frame):
        held.append(signum)
    try:
        for sig in HELD_SIGNALS:
            if signal.getsignal(sig) is not None:
                previous[sig] = signal.signal(sig, hold)
        yield
    finally:
        for sig in HELD_SIGNALS:
            if sig in previous:
                signal.signal(sig, previous[sig])
        for signum in held:
            handler = previous[signum]
            if callable(handler):
                handler(signum, None)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(signum)
