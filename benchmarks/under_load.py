"""fastnn with one core kept busy by another process (issue 11, item 4).

    python -m benchmarks.under_load [--quick] [--cells tiny,small] [--epochs 5] [--json out.json]

The target: with one core busy, fastnn at its default thread count keeps >= 0.8x of its own single-thread
throughput on every cell. Per cell of benchmarks/matrix.py, fastnn's default path (the ``fastnn`` peer of
compare.py: ``net.fit`` on the fused whole-epoch kernel) is measured in four conditions, each in its own
process (``python -m benchmarks.peers.run PEER CELL``, compare.child_env(): OPENBLAS_CORETYPE and
OPENBLAS_L2_SIZE removed):

    idle, 1 thread         peer fastnn@1t (fastnn.set_num_threads(1))
    idle, default          peer fastnn (the thread count a user gets: all cores)
    loaded, 1 thread       the same two, while a busy loop (a separate Python process running
    loaded, default        ``while True: pass``) is pinned to one core (--busy-core, default the last usable one)

The busy process is started (and has pinned itself) before the measured process starts and is killed after
it ends, in a ``finally`` (also on Ctrl-C and SIGTERM; it also dies with this process: PR_SET_PDEATHSIG, and
it checks its parent). The measured process is NOT pinned (a user's process is not). Per condition: the
median samples/s of ``--epochs`` timed epochs after ``--warmup`` untimed ones. Per cell: the ratios
loaded-default ÷ loaded-1-thread (the target, >= 0.8), loaded-default ÷ idle-default, idle-default ÷
idle-1-thread.

Extra rows (``--no-example`` leaves them out): the README's scikit-learn drop-in example (digits_split,
make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(128,), random_state=0)).fit), with
scikit-learn's MLPClassifier and with fastnn's, 1 thread (threadpoolctl / fastnn.set_num_threads) or the
default, idle or loaded: the median seconds of a whole fit. scikit-learn's BLAS threads spin for a busy core
too (the issue: 14.4 s loaded against 0.37 s idle).

--quick: the cells' --quick data, 3 timed epochs, one fit per example condition: a check that it runs.
"""
import argparse
import json
import os
import shlex
import signal
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from . import compare, matrix, peers

ROOT = compare.ROOT
TARGET = 0.8
#: (key, loaded, fastnn peer, thread count for the example: 0 = the library's default)
CONDITIONS = [("idle-1t", False, "fastnn@1t", 1), ("idle-default", False, "fastnn", 0),
              ("loaded-1t", True, "fastnn@1t", 1), ("loaded-default", True, "fastnn", 0)]
LABELS = {"idle-1t": "idle, 1 thread", "idle-default": "idle, default threads",
          "loaded-1t": "loaded, 1 thread", "loaded-default": "loaded, default threads"}
EXAMPLES = {"sklearn": "scikit-learn MLPClassifier", "fastnn": "fastnn MLPClassifier (drop-in)"}

#: the busy loop: pins itself to argv[1]'s core, dies with its parent (argv[2]), says "ready" once pinned
BUSY_CODE = """
import os, sys
core, parent = int(sys.argv[1]), int(sys.argv[2])
os.sched_setaffinity(0, {core})
try:
    import ctypes
    ctypes.CDLL(None).prctl(1, 9)        # PR_SET_PDEATHSIG = SIGKILL: gone when the parent dies
except Exception:
    pass
print("ready", ",".join(str(c) for c in sorted(os.sched_getaffinity(0))), flush=True)
while os.getppid() == parent:
    for _ in range(2000000):
        pass
"""


def log(*msg):
    print(*msg, file=sys.stderr, flush=True)


def cpu_seconds(pid):
    """user + system CPU seconds of process ``pid`` so far (/proc), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


@contextmanager
def busy_core(core, env):
    """A busy-loop process pinned to ``core`` for the duration of the block; yields a dict that receives the
    loop's CPU seconds and wall seconds (how busy it actually kept its core) when the block ends."""
    proc = subprocess.Popen([sys.executable, "-c", BUSY_CODE, str(core), str(os.getpid())], env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
    stats = {"pid": proc.pid, "core": core}
    try:
        line = proc.stdout.readline().split()
        if not line or line[0] != "ready":
            raise RuntimeError(f"the busy loop did not start (exit code {proc.poll()})")
        stats["affinity"] = line[1]
        t0, c0 = time.perf_counter(), cpu_seconds(proc.pid)
        yield stats
        c1 = cpu_seconds(proc.pid)
        stats["wall_s"] = time.perf_counter() - t0
        stats["cpu_s"] = (c1 - c0) if c0 is not None and c1 is not None else None
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


def run_peer(peer, cell, args, env):
    """One standalone peer process (benchmarks.peers.run): its JSON result, or {"event": "error", ...}."""
    cmd = [sys.executable, "-m", "benchmarks.peers.run", peer, cell.name, "--warmup", str(args.warmup),
           "--epochs", str(args.epochs), "--seed", str(args.seed)]
    if args.n:
        cmd += ["--n", str(args.n)]
    elif args.quick:
        cmd.append("--quick")
    return _run_json(cmd, env, args.timeout)


def _run_json(cmd, env, timeout):
    try:
        res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"event": "error", "error": f"no result within {timeout:.0f} s"}
    try:
        return json.loads(res.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return {"event": "error", "error": f"exit code {res.returncode}: {res.stderr.strip()[-600:]}"}


def run_example(which, threads, args, env):
    cmd = [sys.executable, "-m", "benchmarks.under_load", "--example-child", which, "--example-threads",
           str(threads), "--example-repeats", str(args.example_repeats)]
    return _run_json(cmd, env, args.timeout)


def example_child(which, threads, repeats):
    """(in the child process) Time the README's drop-in example; print one JSON line."""
    import warnings

    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from fastnn.data import digits_split
    if which == "sklearn":
        from sklearn.neural_network import MLPClassifier
        if threads:
            from threadpoolctl import threadpool_limits
            threadpool_limits(threads)
        warmup = 0                        # nothing to compile: the imports above are the start-up
    else:
        import fastnn
        from fastnn import MLPClassifier
        if threads:
            fastnn.set_num_threads(threads)
        warmup = 1                        # Numba's cache load (or compilation) is start-up, not training
    X_train, X_test, y_train, y_test = digits_split()
    times, score = [], None
    for i in range(warmup + repeats):
        clf = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(128,), random_state=0))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            clf.fit(X_train, y_train)
            elapsed = time.perf_counter() - t0
        if i >= warmup:
            times.append(elapsed)
        score = clf.score(X_test, y_test)
    from .peers.base import blas_info
    print(json.dumps({"event": "result", "times": times, "score": score, "warmup": warmup,
                      "n_iter": int(clf[-1].n_iter_), "blas": blas_info()}))
    return 0


def with_load(loaded, args, env, fn):
    """fn() idle, or with the busy loop running; returns (fn's result, the loop's stats or None)."""
    if not loaded:
        return fn(), None
    with busy_core(args.busy_core, env) as stats:
        out = fn()
    return out, stats


def measure_cell(cell, args, env):
    n = args.n or cell.n_samples(args.quick)
    out = {"cell": cell.describe(), "n": n, "conditions": {}}
    for rep in range(args.repeats):
        order = CONDITIONS if rep % 2 == 0 else CONDITIONS[::-1]      # alternate, so drift hits both ends
        for key, loaded, peer, _ in order:
            res, stats = with_load(loaded, args, env, lambda: run_peer(peer, cell, args, env))
            entry = out["conditions"].setdefault(key, {"peer": peer, "loaded": loaded, "times": [], "busy": []})
            if res.get("event") != "result":
                entry["error"] = res.get("error", "?")
                log(f"[{cell.name}] {key}: FAILED: {entry['error']}")
                continue
            entry["times"] += res["times"]
            entry["threads"] = (res.get("info") or {}).get("numba_threads")
            if stats:
                entry["busy"].append(stats)
            log(f"[{cell.name}] {key} ({entry['threads']} thread(s)): "
                + ", ".join(compare.fmt_rate(n / t) for t in res["times"]) + " samples/s")
    for entry in out["conditions"].values():
        if entry["times"]:
            rates = [n / t for t in entry["times"]]
            entry["samples_per_s"] = {"median": statistics.median(rates), "min": min(rates), "max": max(rates)}
    out["ratios"] = ratios({k: e["samples_per_s"]["median"] for k, e in out["conditions"].items()
                            if "samples_per_s" in e})
    return out


def measure_example(which, args, env):
    out = {"name": which, "label": EXAMPLES[which], "conditions": {}}
    for rep in range(args.repeats):
        order = CONDITIONS if rep % 2 == 0 else CONDITIONS[::-1]
        for key, loaded, _, threads in order:
            res, stats = with_load(loaded, args, env, lambda: run_example(which, threads, args, env))
            entry = out["conditions"].setdefault(key, {"threads": threads or "default", "loaded": loaded,
                                                       "fit_s": [], "busy": []})
            if res.get("event") != "result":
                entry["error"] = res.get("error", "?")
                log(f"[example {which}] {key}: FAILED: {entry['error']}")
                continue
            entry["fit_s"] += res["times"]
            entry.update(score=res["score"], n_iter=res["n_iter"])
            if stats:
                entry["busy"].append(stats)
            log(f"[example {which}] {key}: fit " + ", ".join(f"{t:.3g} s" for t in res["times"]))
    for entry in out["conditions"].values():
        if entry["fit_s"]:
            entry["median_fit_s"] = statistics.median(entry["fit_s"])
    # speeds are 1 / fit time: the same ratios as for the cells' samples/s
    out["ratios"] = ratios({k: 1.0 / e["median_fit_s"] for k, e in out["conditions"].items() if "median_fit_s" in e})
    return out


def ratios(speed):
    """The three ratios of the report from speeds (higher = faster) by condition key."""
    out = {}
    for key, a, b in (("loaded_default/loaded_1t", "loaded-default", "loaded-1t"),
                      ("loaded_default/idle_default", "loaded-default", "idle-default"),
                      ("idle_default/idle_1t", "idle-default", "idle-1t")):
        if a in speed and b in speed:
            out[key] = speed[a] / speed[b]
    return out


def _ratio_cells(r):
    v = r.get("loaded_default/loaded_1t")
    target = "–" if v is None else f"**{v:.3g}×**" + (f" ⚠ < {TARGET:g}" if v < TARGET else "")
    rest = [r.get("loaded_default/idle_default"), r.get("idle_default/idle_1t")]
    return [target] + ["–" if x is None else f"{x:.3g}×" for x in rest]


def markdown(report):
    lines = [f"### fastnn with one core busy: samples/s, median of {report['epochs']} timed epochs per condition"
             f"{' — QUICK RUN: a smoke check, not a measurement' if report['quick'] else ''}", ""]
    cols = [LABELS[k] for k, *_ in CONDITIONS]
    lines.append("| cell | " + " | ".join(cols) + f" | **loaded: default ÷ 1 thread** (target ≥ {TARGET:g}) "
                 "| loaded ÷ idle, default threads | idle: default ÷ 1 thread |")
    lines.append("|---" * (len(cols) + 4) + "|")
    for c in report["cells"]:
        row = []
        for key, *_ in CONDITIONS:
            e = c["conditions"].get(key, {})
            if "samples_per_s" in e:
                row.append(compare.fmt_rate(e["samples_per_s"]["median"])
                           + (f" ({e['threads']}t)" if key.endswith("default") and e.get("threads") else ""))
            else:
                row.append("failed" if e.get("error") else "–")
        cell = c["cell"]
        lines.append(f"| {cell['name']} ({cell['layers']}, batch {cell['batch']}, n {c['n']:,}) | "
                     + " | ".join(row + _ratio_cells(c["ratios"])) + " |")
    if report.get("examples"):
        lines += ["", "### The README's drop-in example (digits, StandardScaler + MLPClassifier(hidden_layer_sizes="
                      "(128,), random_state=0)): seconds per fit, median (ratios are speeds: 1 / time)", ""]
        lines.append("| estimator | " + " | ".join(cols) + " | **loaded: default ÷ 1 thread** "
                     f"(target ≥ {TARGET:g}) | loaded ÷ idle, default threads | idle: default ÷ 1 thread |")
        lines.append("|---" * (len(cols) + 4) + "|")
        for ex in report["examples"]:
            row = []
            for key, *_ in CONDITIONS:
                e = ex["conditions"].get(key, {})
                row.append(f"{e['median_fit_s']:.3g} s" if "median_fit_s" in e else
                           ("failed" if e.get("error") else "–"))
            lines.append(f"| {ex['label']} | " + " | ".join(row + _ratio_cells(ex["ratios"])) + " |")
    lines.append("")
    m = report["machine"]
    lines.append(f"- **Machine**: {m['cpu']}, {m['cores']} cores ({m['cores_usable']} usable)")
    busy = report.get("cpu_busy_before")
    if busy is not None:
        lines.append(f"- **Idle check**: {busy:.0%} of the CPU time was busy in the {compare.BUSY_SAMPLE_S:g} s before "
                     "the run" + (" — ⚠ other work was running: 'idle' was not idle" if busy > compare.BUSY_LIMIT
                                  else " (idle)"))
    shares = [b["cpu_s"] / b["wall_s"] for c in report["cells"] + report.get("examples", [])
              for e in c["conditions"].values() for b in e.get("busy", []) if b.get("cpu_s") is not None
              and b.get("wall_s")]
    lines.append(f"- **Load**: a Python busy loop (`while True: pass`) pinned to core {report['busy_core']} "
                 "(os.sched_setaffinity), started before each 'loaded' process and killed after it; the measured "
                 "process is not pinned" + (f"; the loop got {min(shares):.0%}–{max(shares):.0%} of its core"
                                            if shares else "") + ".")
    removed = report["env_removed"]
    lines.append("- **Environment**: every measured process runs with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset"
                 + (f" (removed here: {', '.join(f'{k}={v}' for k, v in removed.items())})" if removed else
                    " (neither was set in this shell)") + f"; fastnn's default thread count here: {peers.CORES}.")
    lines.append(f"- **Protocol**: one process per cell and condition (benchmarks.peers.run, the `fastnn` peer of "
                 f"compare.py: the fused default path), {report['warmup']} untimed warm-up epoch(s), "
                 f"{report['epochs']} timed epoch(s), {report['repeats']} repeat(s) of the four conditions "
                 f"(alternating order); samples/s = samples per epoch ÷ epoch seconds.")
    lines.append(f"- **Command**: `{report['command']}`")
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.under_load", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="the cells' --quick data, 3 timed epochs, 1 fit per example")
    p.add_argument("--cells", default=",".join(matrix.CELLS), help="comma-separated cells")
    p.add_argument("--epochs", type=int, default=None, help="timed epochs per condition (default 5; --quick 3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed warm-up epochs per process")
    p.add_argument("--repeats", type=int, default=1, help="times the four conditions are run (order alternating)")
    p.add_argument("--n", type=int, default=None, help="override samples per epoch (tests)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--busy-core", type=int, default=None, help="the core the busy loop is pinned to (default: the "
                                                               "last core this process may use)")
    p.add_argument("--no-example", action="store_true", help="leave out the README drop-in example rows")
    p.add_argument("--example-repeats", type=int, default=None, help="timed fits per example condition "
                                                                     "(default 3; --quick 1)")
    p.add_argument("--timeout", type=float, default=900, help="seconds one measured process may take")
    p.add_argument("--json", default=None, help="write the full results here")
    p.add_argument("--markdown", default=None, help="also write the Markdown report here")
    p.add_argument("--example-child", choices=sorted(EXAMPLES), help=argparse.SUPPRESS)
    p.add_argument("--example-threads", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.epochs is None:
        args.epochs = 3 if args.quick else 5
    if args.example_repeats is None:
        args.example_repeats = 1 if args.quick else 3
    if args.busy_core is None:
        args.busy_core = max(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0
    try:
        args.cell_list = [matrix.get(c) for c in args.cells.split(",") if c]
    except ValueError as exc:
        p.error(str(exc))
    if args.n is not None:
        bad = [c.name for c in args.cell_list if args.n % c.batch]
        if bad:
            p.error(f"--n {args.n} is not a multiple of the batch of {', '.join(bad)}")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.example_child:
        return example_child(args.example_child, args.example_threads, args.example_repeats)
    # SIGTERM unwinds like Ctrl-C, so that the busy loop's ``finally`` kills it
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    command = "python -m benchmarks.under_load" + "".join(" " + shlex.quote(a) for a in
                                                          (sys.argv[1:] if argv is None else argv))
    env, removed = compare.child_env()
    report = {"command": command, "quick": args.quick, "machine": compare.machine_info(),
              "versions": compare.versions(), "env_removed": removed, "busy_core": args.busy_core,
              "epochs": args.epochs, "warmup": args.warmup, "repeats": args.repeats, "target": TARGET,
              "cpu_busy_before": compare.cpu_busy_fraction()}
    busy = report["cpu_busy_before"]
    if busy is not None and busy > compare.BUSY_LIMIT:
        log(f"WARNING: {busy:.0%} of the CPU time was busy before this run: 'idle' is not idle")
    t0 = time.perf_counter()
    report["cells"] = [measure_cell(cell, args, env) for cell in args.cell_list]
    report["examples"] = [] if args.no_example else [measure_example(w, args, env) for w in EXAMPLES]
    report["wall_s"] = time.perf_counter() - t0
    text = markdown(report)
    report["markdown"] = text
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    if args.markdown:
        Path(args.markdown).write_text(text + "\n")
    log(f"done in {report['wall_s']:.0f} s" + (f"; JSON written to {args.json}" if args.json else ""))
    failed = [k for c in report["cells"] + report["examples"] for k, e in c["conditions"].items() if e.get("error")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
