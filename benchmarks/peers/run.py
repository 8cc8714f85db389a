"""One peer on one cell, in this process: ``python -m benchmarks.peers.run PEER CELL [options]``.

Standalone (the default): build, ``--warmup`` epochs (compilation happens there and is not timed), then
``--epochs`` timed epochs; prints one JSON object.

``--serve`` (what compare.py uses): build and warm up, print a "ready" JSON line, then obey commands read
one per line from stdin, answering each with one JSON line on stdout:
    run K    train K epochs -> {"event": "epochs", "times": [...], "rss_mib": current RSS}
    quit     -> {"event": "done", "loss": ..., "peak_rss_mib": ...} and exit
Anything a library prints to stdout is sent to stderr, so the protocol stays clean. A failure answers
{"event": "error", ...}; a peer whose library is missing answers {"event": "unavailable", "reason": ...}.

Peak RSS is ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` of this process (imports, data, model, warm-up
and the timed epochs), current RSS is read from /proc/self/statm.
"""
import argparse
import json
import os
import resource
import sys
import time
import traceback


def rss_mib():
    """Current resident set size in MiB (Linux /proc; None elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return None


def peak_rss_mib():
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if sys.platform != "darwin" else kb / 2**20


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.peers.run", description=__doc__.splitlines()[0])
    p.add_argument("peer")
    p.add_argument("cell")
    p.add_argument("--quick", action="store_true", help="the cell's --quick data size")
    p.add_argument("--n", type=int, default=None, help="samples per epoch (a multiple of the batch)")
    p.add_argument("--warmup", type=int, default=1, help="untimed epochs first (compilation happens there)")
    p.add_argument("--epochs", type=int, default=5, help="timed epochs (standalone mode)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--serve", action="store_true", help="line protocol on stdin/stdout (compare.py)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    # the protocol owns the real stdout; whatever libraries print goes to stderr
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)

    def send(obj):
        proto.write(json.dumps(obj) + "\n")
        proto.flush()

    t_start = time.perf_counter()
    try:
        from .. import matrix, peers
        cell = matrix.get(args.cell)
        cls, options, label = peers.load(args.peer)
        ok, why = cls.available()
    except Exception as exc:
        send({"event": "error", "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()})
        return 2
    if not ok:
        send({"event": "unavailable", "reason": why})
        return 0
    try:
        X, y = matrix.make_data(cell, n=args.n, quick=args.quick)
        t_data = time.perf_counter()
        peer = cls(cell, X, y, seed=args.seed, **options)
        t_built = time.perf_counter()
        warmup = peer.epochs(args.warmup) if args.warmup > 0 else []
        t_warm = time.perf_counter()
        ready = {"event": "ready", "peer": args.peer, "label": label, "cell": cell.name, "n": len(X),
                 "batch": cell.batch, "options": {k: repr(v) for k, v in options.items()},
                 "startup_s": t_data - t_start, "build_s": t_built - t_data, "warmup_wall_s": t_warm - t_built,
                 "warmup_times": warmup, "loss_after_warmup": peer.loss(), "rss_mib": rss_mib(),
                 "info": peer.info(), "pid": os.getpid()}
    except Exception as exc:
        send({"event": "error", "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()})
        return 1

    if not args.serve:
        try:
            times = peer.epochs(args.epochs) if args.epochs > 0 else []
        except Exception as exc:
            send({"event": "error", "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()})
            return 1
        ready.update(event="result", times=times, loss=peer.loss(), peak_rss_mib=peak_rss_mib(),
                     rss_mib_end=rss_mib())
        send(ready)
        return 0

    send(ready)
    for line in sys.stdin:
        cmd = line.split()
        if not cmd:
            continue
        try:
            if cmd[0] == "run":
                k = int(cmd[1]) if len(cmd) > 1 else 1
                t0 = time.perf_counter()
                times = peer.epochs(k)
                send({"event": "epochs", "times": times, "wall_s": time.perf_counter() - t0, "rss_mib": rss_mib()})
            elif cmd[0] == "quit":
                send({"event": "done", "loss": peer.loss(), "peak_rss_mib": peak_rss_mib(), "rss_mib": rss_mib(),
                      "info": peer.info()})
                return 0
            else:
                send({"event": "error", "error": f"unknown command {line.strip()!r}"})
        except Exception as exc:
            send({"event": "error", "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()})
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
