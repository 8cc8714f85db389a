"""fastnn compile: compile the kernels of the common first fits ahead, into Numba's on-disk cache"""
import argparse
import time

from ._common import EXIT_FAILURE, EXIT_OK, CLIError, _Formatter, _positive_int, _text

HELP_COMPILE = """\
Compile fastnn's kernels for the fits people run first and keep them in Numba's on-disk cache, so that a
first fit loads them (a fraction of a second) instead of compiling them (a few seconds each). Run it once
after installing or upgrading fastnn, e.g. `pip install -e . && fastnn compile`; fits compile whatever is
missing themselves, so this is never required.

Each configuration is a tiny fit, then predict, of one network kind (--kinds) in one dtype (--dtypes) with a
number of hidden layers (--hidden-layers); the kernels depend on those, not on the layer widths or the
data, so a configuration covers every network of its shape: its serial kernel and (on a machine with more
than one core) its batch-parallel one. Configurations are compiled by --jobs processes at once. The cache
is the one fits use (the package's __pycache__ directories, or NUMBA_CACHE_DIR), valid for this CPU and
this version of fastnn's kernels. A cached kernel gives the same numbers as a freshly compiled one.
"""


def _listed(allowed, what):
    def parse(text):
        values = tuple(v.strip() for v in text.split(",") if v.strip())
        unknown = [v for v in values if v not in allowed]
        if not values or unknown:
            raise argparse.ArgumentTypeError(f"unknown {what} {unknown[0] if unknown else text!r} "
                                             f"(choose from {', '.join(allowed)})")
        return values
    return parse


def _depths(text):
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        values = ()
    if not values or any(not 1 <= v <= 8 for v in values):
        raise argparse.ArgumentTypeError(f"must be comma-separated counts from 1 to 8, got {text!r}")
    return values


def cmd_compile(args):
    from .. import precompile
    from ..kernels._jit import cache_directory
    from ..threads import default_threads
    import numba
    if numba.config.DISABLE_JIT:
        raise CLIError("NUMBA_DISABLE_JIT is set: kernels run as Python and nothing can be compiled ahead",
                       EXIT_FAILURE)
    where = cache_directory()
    if where is None:
        raise CLIError("no writable directory for Numba's kernel cache (the package's, NUMBA_CACHE_DIR, the "
                       "user's cache directory): nothing compiled ahead can be kept; set NUMBA_CACHE_DIR to a "
                       "writable directory", EXIT_FAILURE)
    todo = precompile.units(args.kinds, args.dtypes, args.hidden_layers)
    shares = precompile.worker_shares(todo, args.jobs or default_threads())
    print(f"fastnn compile: {len(todo)} configuration{'s' if len(todo) > 1 else ''} in {len(shares)} "
          f"process{'es' if len(shares) > 1 else ''}, "
          f"kept in {where}", flush=True)
    start = time.perf_counter()

    def report(unit, seconds):
        print(f"  {precompile.describe(unit):<34} {seconds:6.1f} s", flush=True)
    failures = precompile.compile_units(todo, len(shares), report)
    if failures:
        for share, code, line in failures:
            names = ", ".join(precompile.describe(u) for u in share)
            print(f"fastnn: error: compiling {names} failed (exit {code}): {line}", flush=True)
        return EXIT_FAILURE
    print(f"done in {time.perf_counter() - start:.1f} s: a first fit of these configurations loads its kernels "
          f"instead of compiling them", flush=True)
    return EXIT_OK


def add_parser(sub):
    from .. import precompile
    p = sub.add_parser(
        "compile", formatter_class=_Formatter, help="compile the kernels of the common first fits ahead",
        description=_text(HELP_COMPILE),
        epilog="kinds:\n" + "\n".join(f"  {k:<11} {text}" for k, text in precompile.KINDS.items()))
    p.add_argument("--kinds", type=_listed(tuple(precompile.KINDS), "kind"), default=tuple(precompile.KINDS),
                   help=f"network kinds, comma-separated (default: all: {','.join(precompile.KINDS)})")
    p.add_argument("--dtypes", type=_listed(precompile.DTYPES, "dtype"), default=precompile.DTYPES,
                   help="float32, float64 or both (default: both)")
    p.add_argument("--hidden-layers", type=_depths, default=(1,), metavar="N[,N...]",
                   help="numbers of hidden layers (default: 1)")
    p.add_argument("--jobs", type=_positive_int, default=None,
                   help="processes compiling at once (default: the cores fastnn may use)")
    p.set_defaults(func=cmd_compile, prog_=p.prog)
