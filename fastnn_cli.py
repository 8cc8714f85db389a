"""The ``fastnn`` console script's entry point (pyproject's [project.scripts]).

``import fastnn`` loads Numba, llvmlite and the kernels (~0.5 s). A Ctrl-C or SIGTERM in that time used to
land inside those imports: a KeyboardInterrupt traceback and then a segmentation fault at exit (or, for
SIGTERM, death by the signal, 15 rather than 143). Here the two signals are held — the first one noted —
while fastnn.cli is imported, before any of fastnn is, and then handed to ``fastnn.cli.main``, which ends
with its one "interrupted" line and exit 130 (143); under ``train --distributed`` every rank agrees on it.
This module is outside the fastnn package so that importing it imports nothing else, and only the console
script changes signal handling: ``import fastnn`` as a library leaves a program's handlers alone.
"""
import signal
import sys


def main():
    caught = []

    def hold(signum, frame):
        if not caught:
            caught.append(signum)

    defaults = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}
    held = [sig for sig, default in defaults.items() if signal.getsignal(sig) is default]
    for sig in held:
        signal.signal(sig, hold)
    from fastnn.cli import main as cli_main
    return cli_main(held=(caught, hold) if held else None)


if __name__ == "__main__":
    sys.exit(main())
