"""fastnn bench: the quick benchmark of a source checkout"""
import argparse
import os
import sys

from ._common import (CLIError, _Formatter, _text)

HELP_BENCH = """\
Run 'python -m benchmarks.compare --quick' from a source checkout of fastnn (the current directory or the
checkout fastnn is installed from in editable mode). Further arguments are passed on to benchmarks.compare.
"""


def find_benchmarks():
    """The directory holding benchmarks/compare.py: the current directory or the fastnn source checkout."""
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for root in (os.getcwd(), here):
        script = os.path.join(root, "benchmarks", "compare.py")
        try:
            with open(script, encoding="utf-8", errors="replace") as fh:
                if "fastnn" in fh.read(100_000):  # fastnn's compare.py, not another project's
                    return root
        except OSError:
            continue
    return None


def cmd_bench(args):
    import subprocess
    root = find_benchmarks()
    if root is None:
        raise CLIError("fastnn bench needs a source checkout of fastnn (benchmarks/compare.py was not found "
                       "in the current directory or next to the installed package); run it from the checkout")
    extra = [a for a in args.args if a != "--"]
    cmd = [sys.executable, "-m", "benchmarks.compare", "--quick", *extra]
    print(f"running python {' '.join(cmd[1:])} in {root}", flush=True)
    return subprocess.call(cmd, cwd=root)



def add_parser(sub):
    import fastnn
    p = sub.add_parser(
        "bench", formatter_class=_Formatter, help="quick benchmark against peers (needs a source checkout)",
        description=_text(HELP_BENCH))
    p.add_argument("args", nargs=argparse.REMAINDER, help="arguments for benchmarks.compare")
