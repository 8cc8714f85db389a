"""Where a cold start's compile time goes (issue 17): Numba's ``numba:compile`` events, per compiled function,
in CPU seconds excluding the functions it compiled inside itself.

    NUMBA_CACHE_DIR=$(mktemp -d) python -m benchmarks.compile_profile train -q          # the CLI's first command
    NUMBA_CACHE_DIR=$(mktemp -d) python -m benchmarks.compile_profile --script my_fit.py  # any script

Run it with an empty ``NUMBA_CACHE_DIR`` (a cold start; with a warm cache it reports only what was not
cached) on an otherwise idle machine, or compare CPU seconds only: the figures are process CPU time, which
another busy process inflates less than wall time but still moves. Prints the total, the number of
compiles, and the functions by exclusive time (``--top``).
"""
import argparse
import collections
import runpy
import sys
import time


def profile(run):
    """Call ``run()`` and return ({function name: exclusive CPU s}, {name: compiles}, process CPU s)."""
    from numba.core import event

    stack = []
    exclusive = collections.defaultdict(float)
    count = collections.Counter()

    class Listener(event.Listener):
        def on_start(self, ev):
            stack.append([time.process_time(), 0.0])

        def on_end(self, ev):
            started, inner = stack.pop()
            total = time.process_time() - started
            dispatcher = ev.data.get("dispatcher")
            name = dispatcher.py_func.__qualname__ if dispatcher is not None else "?"
            exclusive[name] += total - inner
            count[name] += 1
            if stack:
                stack[-1][1] += total

    listener = Listener()
    event.register("numba:compile", listener)
    started = time.process_time()
    try:
        run()
    except SystemExit:
        pass
    finally:
        event.unregister("numba:compile", listener)
    return dict(exclusive), dict(count), time.process_time() - started


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--script", help="a Python script to run instead of the fastnn command")
    parser.add_argument("--top", type=int, default=25, help="how many functions to list (default 25)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="fastnn's command line (default: train -q)")
    args = parser.parse_args(argv)
    if args.script:
        def run():
            runpy.run_path(args.script, run_name="__main__")
    else:
        from fastnn.cli import main as cli

        def run():
            cli(args.command or ["train", "-q"])
    exclusive, count, cpu = profile(run)
    print(f"compile: {sum(exclusive.values()):.2f} s CPU in {sum(count.values())} compiles; the process: {cpu:.2f} s CPU",
          file=sys.stderr)
    for name, seconds in sorted(exclusive.items(), key=lambda item: -item[1])[:args.top]:
        print(f"{seconds:7.2f} s  x{count[name]}  {name}", file=sys.stderr)


if __name__ == "__main__":
    main()
