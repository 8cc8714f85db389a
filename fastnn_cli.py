"""The ``fastnn`` console script's entry point (pyproject's [project.scripts]), and ``python -m fastnn``'s.

``import fastnn`` loads Numba, llvmlite and the kernels (~0.5 s). A Ctrl-C or SIGTERM in that time used to
land inside those imports: a KeyboardInterrupt traceback and then a segmentation fault at exit (or, for
SIGTERM, death by the signal, 15 rather than 143). Here the stop signals (SIGINT, SIGTERM, SIGHUP) are held
— the first one noted — while fastnn.cli is imported, before any of fastnn is, and then handed to
``fastnn.cli.main``, which ends with its one "interrupted" line and exit 130 (143, 129); under
``train --distributed`` every rank agrees on it.

Both entries are one path: ``python -m fastnn`` imports the package
``fastnn`` before its ``__main__`` runs, so ``fastnn/__init__.py`` calls ``hold()`` first thing when
``entered_as_module()`` says the interpreter was started that way, and ``fastnn/__main__.py`` calls
``main()``, which takes over the signals held since. This module is outside the fastnn package so that
importing it imports nothing else, and only the command line changes signal handling: ``import fastnn`` as a
library leaves a program's handlers alone.
"""
import signal
import sys

MODULES = ("fastnn",)                  # ``python -m NAME`` for these is the command line
_held = []                              # [(caught, handler)] once hold() ran, until main() takes it


def _defaults():
    defaults = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}
    if hasattr(signal, "SIGHUP"):      # (a closed terminal: as SIGTERM, exit 129)
        defaults[signal.SIGHUP] = signal.SIG_DFL
    return defaults


def entered_as_module():
    """True while the interpreter, started as ``python -m fastnn``, imports the
    package to run it: ``sys.argv[0]`` is "-m" until the module is found, and the command line named it."""
    if sys.argv[:1] != ["-m"]:
        return False
    orig = list(getattr(sys, "orig_argv", ()))[1:]
    i = 0
    while i < len(orig):           # the interpreter's options up to -m (-I, -X opt, -mfastnn, -Im fastnn, ...)
        arg = orig[i]
        if not arg.startswith("-") or arg.startswith("--") or arg == "-":
            return False
        for k, c in enumerate(arg[1:], start=2):
            if c == "m":
                module = arg[k:] or (orig[i + 1] if i + 1 < len(orig) else "")
                return module in MODULES
            if c == "c":
                return False
            if c in "XW":          # (their argument: the rest of this word, or the next one)
                if k == len(arg):
                    i += 1
                break
        i += 1
    return False


def hold():
    """Hold the stop signals that still have Python's default handlers (main thread only; once)."""
    if _held:
        return
    import threading
    if threading.current_thread() is not threading.main_thread():
        return
    caught = []

    def hold_signal(signum, frame):
        if not caught:
            caught.append(signum)

    held = [sig for sig, default in _defaults().items() if signal.getsignal(sig) is default]
    for sig in held:
        signal.signal(sig, hold_signal)
    _held.append((caught, hold_signal) if held else None)


def main():
    hold()
    held = _held.pop() if _held else None
    from fastnn.cli import main as cli_main
    return cli_main(held=held)


if __name__ == "__main__":
    sys.exit(main())
