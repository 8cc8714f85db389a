"""The ``fastnn`` command line: train, predict, evaluate, info, export, gradcheck, demo, bench, compile.

One module per command (``fastnn.cli.train``, ...), each with ``add_parser(subparsers)`` and its ``cmd_*``
function; the commands only parse, call the library (fastnn.data, fastnn.preprocessing, fastnn.io, ...) and
print. Run ``fastnn --help`` or ``fastnn COMMAND --help``. Exit codes: 0 success; 1 a runtime failure
(training diverged, a failed gradient check, an unexpected error); 2 bad input (unknown option, bad value,
missing or malformed file, wrong shapes); 130 interrupted (Ctrl-C), 143 terminated (SIGTERM), 129 hung up
(SIGHUP: the terminal closed). Errors are one line on stderr, ``fastnn: error: ...``, never a traceback (set
FASTNN_DEBUG=1 to get the traceback of an unexpected error).
"""
import argparse
import os
import sys

from ._common import (DATASET_NAMES, DEFAULTS, EXIT_FAILURE, EXIT_HANGUP, EXIT_INTERRUPTED, EXIT_OK,  # noqa: F401
                      EXIT_TERMINATED, EXIT_USAGE, signal_exit, CLIError, _error_text, _Parser, _report, _text,
                      parse_hidden)
from . import bench, compile, demo, evaluate, export, gradcheck, info, predict, train
from .bench import find_benchmarks  # noqa: F401
from .train import build_network  # noqa: F401

HELP_MAIN = """\
fastnn: fast, checked feed-forward neural networks on the CPU.
"""


EPILOG = """\
examples:
  fastnn train                                  64-128-10 on the bundled digits (test accuracy ~0.97)
  fastnn train --data moons --hidden 32,32 --plot curves.png --save moons.safetensors
  fastnn train --data table.csv --target label --val-split 0.1
  fastnn predict moons.safetensors moons --proba --out predictions.csv
  fastnn evaluate moons.safetensors moons
  fastnn info moons.safetensors
  fastnn export moons.safetensors --onnx moons.onnx
  fastnn gradcheck
  fastnn demo xor --plot xor.png
  fastnn compile                                compile the common first fits' kernels ahead (once per install)

exit codes: 0 ok, 1 runtime failure (diverged training, failed check), 2 bad input, 130 interrupted, 143 terminated,
            129 hung up (terminal closed)
"""


COMMANDS = (train, predict, evaluate, info, export, gradcheck, demo, bench, compile)


def build_parser():
    import fastnn
    parser = _Parser(prog="fastnn", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
                     description=_text(HELP_MAIN))
    parser.add_argument("--version", action="version", version=f"fastnn {fastnn.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv=None, *, held=None):
    """Run the command line with ``argv`` (default: sys.argv[1:]); returns the exit code. Run as the
    program (no ``argv``: the ``fastnn`` script, ``python -m fastnn``), it ends with ``_program_ends``.
    ``held``: (signals caught, the handler) of the console script (fastnn_cli), which holds Ctrl-C and
    SIGTERM while fastnn is imported; the command takes them over (see ``_take_held``)."""
    import warnings
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning  # one line per warning, e.g. a GradientHealthWarning
            return _main(argv, held)
    finally:
        if argv is None:
            _program_ends()


def _program_ends():
    """The process exits next: freeze the garbage collector's view of every live object (gc.freeze), so that
    the interpreter's shutdown does not run full collections over them. With Numba loaded those are
    ~300,000 objects, and the collections were ~0.13 s of CPU in a ~0.8 s warm ``fastnn train -q``. Objects
    are still freed by reference counting; only cycles still alive at exit are left to the OS (CPython does
    not promise to finalise objects alive at exit anyway), and the commands close every file they write
    before they return. Not done when ``main`` is called with arguments, from another program or a test:
    that process goes on. A Ctrl-C from here on is ignored: the exit code is decided, and a second Ctrl-C
    (a double press, after the first stopped training) would otherwise end the process by SIGINT while the
    interpreter and MPI shut down (MPI_Finalize waits for the other ranks), instead of the one line and
    exit 130 already given. SIGTERM keeps its effect (a shutdown that hangs can still be ended)."""
    import gc
    import signal
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except (ValueError, OSError):      # (not the main thread)
        pass
    gc.freeze()


def _show_warning(message, category, filename, lineno, file=None, line=None):
    _report(f"{category.__name__}: {message}", prefix="fastnn: warning: ")


def _main(argv, held=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"] and not {"-h", "--help"} & set(argv[1:2]):
        return _command(argv, held)
    if train.is_distributed(argv):    # every rank's errors agreed on, printed once (fastnn.cli.train)
        return _command(argv, held)
    rank, size, _ = train.launcher_world()
    if size is not None and size > 1:  # one of K processes of a launch: it joins the ranks before it exits
        return train.one_of_many(lambda: _command(argv, held))
    return _command(argv, held)


def _take_held(held):
    """The console script's held signals (``held``: (caught, handler) or None): its handler replaced by the
    default ones; a signal it caught while fastnn was imported raised as KeyboardInterrupt (with its
    ``signal_name``: exit 130, 143 for SIGTERM, 129 for SIGHUP)."""
    if held is None:
        return
    import signal
    from .. import signals
    caught, hold = held
    for sig, default in signals.DEFAULTS.items():
        if signal.getsignal(sig) is hold:
            signal.signal(sig, default)
    if caught:
        name = signal.Signals(caught[0]).name
        exc = KeyboardInterrupt(signals.describe(name))
        exc.signal_name = name
        raise exc


def _command(argv, held=None):
    try:
        if train.is_distributed(argv):    # every rank's errors agreed on, printed once (fastnn.cli.train)
            return train.main_distributed(argv, build_parser, held)     # (it takes the held signals over)
        _take_held(held)
        if argv[:1] == ["bench"] and not {"-h", "--help"} & set(argv[1:2]):
            return bench.cmd_bench(argparse.Namespace(args=argv[1:]))  # everything else goes to benchmarks.compare
        parser = build_parser()
        try:
            args, unknown = parser.parse_known_args(argv)
        except SystemExit as exc:  # --help / --version
            return exc.code if isinstance(exc.code, int) else EXIT_OK
        if unknown:
            raise CLIError(f"unrecognized arguments: {' '.join(unknown)} "
                           f"(see '{getattr(args, 'prog_', 'fastnn')} --help')")
        if getattr(args, "func", None) is None:
            parser.print_help()
            return EXIT_OK
        return args.func(args)
    except CLIError as exc:
        _report(str(exc))
        return exc.code
    except KeyboardInterrupt as exc:  # fit's TrainingInterrupted says where training stopped
        _report(str(exc) or "interrupted", prefix="fastnn: ")
        return signal_exit(exc)
    except BrokenPipeError:  # e.g. `fastnn predict ... | head`
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return EXIT_FAILURE
    except ImportError as exc:
        _report(_error_text(exc))
        return EXIT_FAILURE
    except MemoryError:
        _report("out of memory (try a smaller --batch-size or fewer/narrower --hidden layers)")
        return EXIT_FAILURE
    except Exception as exc:  # noqa: BLE001 - the last resort: one line, not a traceback
        from .._memory import TooLargeError
        if isinstance(exc, TooLargeError):     # the input asks for more memory than there is: bad input
            _report(f"{_error_text(exc)} (use fewer or narrower --hidden layers, or less data)")
            return EXIT_USAGE
        if os.environ.get("FASTNN_DEBUG"):
            raise
        _report(f"unexpected {type(exc).__name__}: {_error_text(exc)} (set FASTNN_DEBUG=1 for the traceback)")
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
