"""fastnn side by side with its peers on the benchmark matrix of issue 3.

    python -m benchmarks.compare [--quick] [--cells tiny,small] [--peers fastnn,torch-1t,...] [--threads 1,2]
                                 [--json out.json]

How it measures (and prints with the table):
* every peer runs in its own process (``python -m benchmarks.peers.run PEER CELL --serve``), started with
  OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE removed from its environment (this workplace sets them, and they
  halve OpenBLAS's speed on this CPU; a user's machine has neither);
* per cell, all peer processes are started and warmed up (``--warmup`` epochs, compilation included, not
  timed), then the timed epochs run in interleaved rounds: each round gives every peer one epoch in turn,
  the order rotating from round to round, so that a change in machine load hits every peer alike;
* per peer and cell: the median samples/s over the timed epochs (>= 5 in a full run), with min and max; the
  peak RSS of its process; its loss after warm-up and at the end (a trainer that does not train is flagged);
* per cell, fastnn's default (fused) path ÷ its per-layer path (``fastnn`` ÷ ``fastnn-layer``; issue 10's
  target: >= 1 on every cell), marked where the default path did not run fused;
* the FLOP limit is the sgemm rate (2048^2 float32, through the kernels' own BLAS call: benchmarks/sgemm.py)
  at fastnn's BLAS thread count, measured in the same run, before and after the cells (best of both);
  fastnn's % of it uses the exact work per sample of matrix.py (6W - 2 W_first);
* ``--threads 1,2`` adds, for each listed count N, the peers fastnn@Nt (and fastnn-layer@Nt when fastnn-layer
  is in --peers): the same path with fastnn.set_num_threads(N) in the peer process, timed in the same
  interleaved rounds as every other peer; a scaling table follows the main one: per cell, samples/s at each
  thread count and N threads ÷ 1 thread (issue 11's target: 2 threads ÷ 1 thread >= 1.8 on every cell but
  tiny). fastnn ÷ best peer is issue 11's other target (>= 1.25 on every cell).
``--quick`` uses the smaller data sizes of matrix.py and 3 timed epochs: a check that everything runs,
in under 3 minutes, not a measurement to quote.
"""
import argparse
import json
import os
import platform
import select
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

from . import matrix, peers

ROOT = Path(__file__).resolve().parent.parent
UNSET = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
#: issue 11's targets: fastnn (default path) ÷ the best other peer on every cell; 2 threads ÷ 1 thread on
#: these cells
BEST_PEER_TARGET = 1.25
SCALING_TARGET, SCALING_CELLS = 1.8, ("small", "mnist128", "mnist1024", "wide", "tabular")
PACKAGES = ["numpy", "numba", "scipy", "torch", "jax", "jaxlib", "scikit-learn", "threadpoolctl", "fastnn"]


def log(*msg):
    print(*msg, file=sys.stderr, flush=True)


# -- the environment of the measuring processes ----------------------------------------------------------
def child_env(numba_cache_dir=None):
    """os.environ without OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE, with the repo on PYTHONPATH; and what was removed."""
    env = dict(os.environ)
    removed = {k: env.pop(k) for k in UNSET if k in env}
    if numba_cache_dir:
        env["NUMBA_CACHE_DIR"] = str(numba_cache_dir)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env, removed


class Child:
    """One peer process speaking the line protocol of benchmarks.peers.run."""

    def __init__(self, peer, cell, argv, env, logdir):
        self.peer, self.cell = peer, cell
        self.log_path = Path(logdir) / f"{cell}-{peer}.stderr"
        self._err = open(self.log_path, "w+b")
        self.proc = subprocess.Popen([sys.executable, "-m", "benchmarks.peers.run", peer, cell, "--serve", *argv],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._err, cwd=ROOT,
                                     env=env, bufsize=0)
        self._buf = b""

    def send(self, line):
        self.proc.stdin.write((line + "\n").encode())
        self.proc.stdin.flush()

    def recv(self, timeout):
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{self.peer} on {self.cell}: no answer within {timeout:.0f} s")
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                raise EOFError(f"{self.peer} on {self.cell} exited (code {self.proc.wait()}): {self.stderr_tail()}")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)

    def stderr_tail(self, n=600):
        try:
            self._err.flush()
            return self.log_path.read_bytes()[-n:].decode(errors="replace").strip()
        except OSError:
            return ""

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self._err.close()


# -- the FLOP limit ----------------------------------------------------------------------------------------
def run_sgemm(env, threads, size, repeats):
    cmd = [sys.executable, "-m", "benchmarks.sgemm", "--size", str(size), "--threads",
           ",".join(str(t) for t in threads), "--repeats", str(repeats)]
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    if res.returncode:
        return {"error": res.stderr.strip()[-600:]}
    return json.loads(res.stdout.strip().splitlines()[-1])


def merge_sgemm(runs):
    out = {"runs": runs, "best_gflops": {}, "blas": None, "size": None}
    for r in runs:
        if "threads" not in r:
            continue
        out["size"] = r.get("size")
        out["blas"] = out["blas"] or r.get("blas")
        for t, v in r["threads"].items():
            out["best_gflops"][t] = max(out["best_gflops"].get(t, 0.0), v["best_gflops"])
    return out


# -- one cell -----------------------------------------------------------------------------------------------
def run_cell(cell, names, args, env, logdir, deadline=None):
    """Start, warm up and time every peer on ``cell``; stop after a round once ``deadline`` (monotonic) passed."""
    n = args.n if args.n else cell.n_samples(args.quick)
    argv = ["--warmup", str(args.warmup), "--n", str(n), "--seed", str(args.seed)]
    children, result = {}, {"cell": cell.describe(), "n": n, "peers": {}, "rounds": 0, "cut_by_budget": False}
    log(f"[{cell.name}] {cell.layers_str}, batch {cell.batch}, n = {n}: starting {', '.join(names)}")
    try:
        for name in names:
            children[name] = Child(name, cell.name, argv, env, logdir)
        active = []
        for name in names:
            child = children[name]
            try:
                msg = child.recv(args.timeout)
            except (EOFError, TimeoutError, ValueError) as exc:
                msg = {"event": "error", "error": str(exc)}
            entry = result["peers"][name] = {"label": peers.label(name), "status": msg["event"]}
            if msg["event"] == "ready":
                entry.update(status="ok", times=[], rss_mib=[], warmup_times=msg["warmup_times"],
                             warmup_wall_s=msg["warmup_wall_s"], loss_after_warmup=msg["loss_after_warmup"],
                             info=msg["info"], rss_mib_after_warmup=msg["rss_mib"])
                active.append(name)
            elif msg["event"] == "unavailable":
                entry["reason"] = msg["reason"]
                log(f"[{cell.name}] {name}: unavailable ({msg['reason']})")
            else:
                entry.update(status="error", reason=msg.get("error", "?"))
                log(f"[{cell.name}] {name}: FAILED: {entry['reason']}\n{msg.get('traceback', '')}")
        for r in range(args.rounds):
            order = active[r % len(active):] + active[:r % len(active)] if active else []
            for name in order:
                child, entry = children[name], result["peers"][name]
                try:
                    child.send(f"run {args.epochs_per_turn}")
                    msg = child.recv(args.timeout)
                except (EOFError, TimeoutError, ValueError, OSError) as exc:
                    msg = {"event": "error", "error": str(exc)}
                if msg["event"] != "epochs":
                    entry.update(status="error", reason=msg.get("error", "?"))
                    log(f"[{cell.name}] {name}: FAILED in round {r + 1}: {entry['reason']}")
                    active.remove(name)
                    continue
                entry["times"].extend(msg["times"])
                entry["rss_mib"].append(msg["rss_mib"])
                if args.settle:
                    time.sleep(args.settle)       # let a peer's spinning threads go idle before the next one
            result["rounds"] = r + 1
            log(f"[{cell.name}] round {r + 1}/{args.rounds}: " + ", ".join(
                f"{name} {fmt_rate(n / result['peers'][name]['times'][-1])}" for name in order if name in active))
            if deadline is not None and r + 1 < args.rounds and time.monotonic() > deadline:
                result["cut_by_budget"] = True
                log(f"[{cell.name}] time budget used up: stopping after {r + 1} of {args.rounds} rounds")
                break
        for name in active:
            child, entry = children[name], result["peers"][name]
            try:
                child.send("quit")
                msg = child.recv(args.timeout)
                entry.update(loss_end=msg["loss"], peak_rss_mib=msg["peak_rss_mib"], info=msg.get("info", entry["info"]))
            except (EOFError, TimeoutError, ValueError, OSError, KeyError) as exc:
                entry["quit_error"] = str(exc)
    finally:
        for child in children.values():
            child.close()
    for entry in result["peers"].values():
        if entry["status"] == "ok" and entry["times"]:
            rates = [n / t for t in entry["times"]]
            entry["samples_per_s"] = {"median": statistics.median(rates), "min": min(rates), "max": max(rates),
                                      "all": rates}
            rss = [v for v in entry["rss_mib"] if v is not None]
            entry["rss_growth_mib"] = (rss[-1] - rss[0]) if len(rss) > 1 else 0.0
            l0, l1 = entry.get("loss_after_warmup"), entry.get("loss_end")
            entry["trains"] = bool(l0 is not None and l1 is not None and (l0 != l0 or l1 < l0))   # NaN l0: sklearn
    return result


#: The CPU share (all cores, /proc/stat) that may be busy just before a run for it to count as idle, and
#: the sample length. (The 1-minute load average is no test: it still counts work that ended a minute
#: ago, and during the run it counts the run's own peer processes.)
BUSY_LIMIT, BUSY_SAMPLE_S = 0.15, 2.0


def cpu_busy_fraction(seconds=BUSY_SAMPLE_S):
    """The fraction of CPU time (all cores) not idle over ``seconds``; None where /proc/stat is missing."""
    def times():
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
        return sum(fields), fields[3] + (fields[4] if len(fields) > 4 else 0)     # total, idle + iowait
    try:
        total0, idle0 = times()
        time.sleep(seconds)
        total1, idle1 = times()
    except (OSError, ValueError, IndexError):
        return None
    return 1.0 - (idle1 - idle0) / max(total1 - total0, 1)


def blas_threads_of(entry):
    """The thread count of the kernels' OpenBLAS in a fastnn peer process (what its GEMMs ran with)."""
    libs = [lib for lib in (entry.get("info") or {}).get("blas") or [] if lib.get("internal_api") == "openblas"]
    for lib in libs:          # the scipy-openblas32 wheel the kernels call, else SciPy's bundled OpenBLAS
        if "scipy_openblas" in os.path.basename(lib.get("filepath") or ""):
            return lib.get("num_threads")
    for lib in libs:
        if "scipy" in os.path.dirname(lib.get("filepath") or ""):
            return lib.get("num_threads")
    return None


def summarise(result, sgemm):
    """Ratios and % of the FLOP limit for one cell (added to result["summary"])."""
    ps = result["peers"]
    rate = {k: v["samples_per_s"]["median"] for k, v in ps.items() if "samples_per_s" in v}
    s = {}
    torch = {k: rate[k] for k in peers.TORCH if k in rate}
    others = {k: v for k, v in rate.items() if not peers.is_fastnn(k)}
    if torch:
        s["torch_best"] = max(torch, key=torch.get)
    if others:
        s["best_peer"] = max(others, key=others.get)
    if rate:
        s["fastest"] = max(rate, key=rate.get)
    for mine in ("fastnn", "fastnn-layer", "fastnn-1t", "fastnn-call"):
        if mine not in rate:
            continue
        if torch:
            s[f"{mine}/torch"] = rate[mine] / torch[s["torch_best"]]
        if others:
            s[f"{mine}/best_peer"] = rate[mine] / others[s["best_peer"]]
    if "fastnn" in rate and "fastnn-layer" in rate:
        s["fused/layer"] = rate["fastnn"] / rate["fastnn-layer"]
    if "fastnn" in ps:
        fused = (ps["fastnn"].get("info") or {}).get("fused_path")
        if fused is not True:          # the default path fell back to the per-layer one: say so beside the ratio
            s["fastnn_not_fused"] = str((ps["fastnn"].get("info") or {}).get("fused_reason") or fused)
    scaling = thread_scaling(result)
    if scaling:
        s["scaling"] = scaling
    if "fastnn" in rate:
        threads = blas_threads_of(ps["fastnn"]) or peers.CORES
        limit = sgemm.get("best_gflops", {}).get(str(threads))
        gflops = rate["fastnn"] * result["cell"]["flops_per_sample"] / 1e9
        s["fastnn_gflops"] = gflops
        s["fastnn_blas_threads"] = threads
        if limit:
            s["limit_gflops"] = limit
            s["fastnn_pct_of_limit"] = 100.0 * gflops / limit
    result["summary"] = s
    return s


def default_threads_of(entry):
    """The thread count a fastnn peer ran with (Numba's, from its info), or None."""
    return (entry.get("info") or {}).get("numba_threads")


def thread_scaling(result):
    """Per fastnn path present: samples/s by thread count and N threads ÷ 1 thread, for one cell.

    The measurements are the fastnn@Nt / fastnn-layer@Nt peers; a thread count none of them covers is taken
    from fastnn-1t (1 thread, default path) or from the plain peer at the thread count it ran with (its
    default), and ``source`` names the peer of every figure. {} when no path has two thread counts.
    """
    ps = result["peers"]
    rate = {k: v["samples_per_s"]["median"] for k, v in ps.items() if "samples_per_s" in v}
    out = {}
    for base in peers.THREADED:
        src = {}
        for name in rate:
            b, n = peers.parse(name)
            if b == base and n is not None:
                src[n] = name
        implicit = {"fastnn-1t": 1} if base == "fastnn" else {}
        if base in rate and default_threads_of(ps[base]):
            implicit[base] = default_threads_of(ps[base])
        for name, n in implicit.items():
            if name in rate and n not in src:
                src[n] = name
        if len(src) < 2:
            continue
        entry = {"samples_per_s": {str(n): rate[src[n]] for n in sorted(src)},
                 "source": {str(n): src[n] for n in sorted(src)}}
        if 1 in src:
            entry["speedup_over_1t"] = {str(n): rate[src[n]] / rate[src[1]] for n in sorted(src) if n != 1}
        out[base] = entry
    return out


# -- report ---------------------------------------------------------------------------------------------------
def fmt_rate(x):
    if x is None:
        return "–"
    for div, suffix in ((1e6, " M"), (1e3, " k")):
        if x >= div:
            v = x / div
            return f"{v:.3g}{suffix}" if v < 100 else f"{v:.0f}{suffix}"
    return f"{x:.3g}"


def fmt_range(lo, hi):
    a, b = fmt_rate(lo), fmt_rate(hi)
    if a.split()[-1:] == b.split()[-1:] and " " in a:
        a = a.split()[0]
    return f"{a}–{b}"


def fmt_optimizer(cell):
    """'SGD lr 0.01' / 'Adam lr 0.001, β 0.9/0.999, ε 1e-08' from a cell's describe()."""
    h = cell.get("hyper") or {"lr": matrix.LR}
    name = cell.get("optimizer", "sgd")
    if name == "adam":
        return f"Adam lr {h['lr']:g}, β {h['beta1']:g}/{h['beta2']:g}, ε {h['eps']:g}"
    return f"{name.upper()} lr {h['lr']:g}"


def machine_info():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        cpu = platform.processor() or "?"
    mem = None
    try:
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) / 2**20
    except (OSError, ValueError, IndexError):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "cores_usable": peers.CORES, "memory_gib": mem,
            "platform": platform.platform(), "load_avg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}


def versions():
    out = {"python": platform.python_version()}
    for pkg in PACKAGES:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True)
        if head.returncode == 0:
            out["fastnn_git"] = head.stdout.strip() + (" + uncommitted changes" if dirty.stdout.strip() else "")
    except OSError:
        pass
    return out


def markdown(report):
    cells = report["cells"]
    names = report["peers"]
    lines = []
    lines.append(f"### Training throughput, samples/s: median of {report['protocol']['timed_epochs']} timed "
                 f"epochs (min–max); the fastest in bold"
                 f"{' — QUICK RUN: a smoke check, not a measurement' if report['quick'] else ''}")
    lines.append("")
    head = "| | " + " | ".join(c["cell"]["name"] for c in cells) + " |"
    lines += [head, "|---" * (len(cells) + 1) + "|"]
    lines.append("| layers / batch / samples per epoch | " + " | ".join(
        f"{c['cell']['layers']} / {c['cell']['batch']} / {c['n']:,}" for c in cells) + " |")
    lines.append("| optimizer | " + " | ".join(fmt_optimizer(c["cell"]) for c in cells) + " |")
    if any(c.get("cut_by_budget") for c in cells):
        lines.append("| timed epochs per peer | " + " | ".join(
            f"{c['rounds'] * report['protocol']['epochs_per_turn']}" + (" (cut by --budget)" if c.get("cut_by_budget")
                                                                        else "") for c in cells) + " |")
    for name in names:
        row = []
        for c in cells:
            e = c["peers"].get(name, {})
            if "samples_per_s" in e:
                r = e["samples_per_s"]
                txt = f"{fmt_rate(r['median'])} ({fmt_range(r['min'], r['max'])})"
                if name == c.get("summary", {}).get("fastest"):
                    txt = f"**{txt}**"
                if not e.get("trains", True):
                    txt += " ⚠ loss did not decrease"
                row.append(txt)
            elif e:
                row.append(e["status"])
            else:
                row.append("–")
        lines.append(f"| {peers.label(name)} | " + " | ".join(row) + " |")

    def ratio_row(title, key, fmt="{:.3g}×"):
        vals = [c["summary"].get(key) for c in cells]
        if any(v is not None for v in vals):
            lines.append(f"| {title} | " + " | ".join("–" if v is None else fmt.format(v) for v in vals) + " |")

    ratio_row("**fastnn ÷ PyTorch (best thread count)**", "fastnn/torch")
    vals = [c["summary"].get("fastnn/best_peer") for c in cells]
    if any(v is not None for v in vals):      # issue 11: >= 1.25 on every cell
        lines.append(f"| **fastnn ÷ best peer** (target ≥ {BEST_PEER_TARGET:g}) | " + " | ".join(
            "–" if v is None else f"{v:.3g}×" + (f" ⚠ < {BEST_PEER_TARGET:g}" if v < BEST_PEER_TARGET else "")
            for v in vals) + " |")
    if any("best_peer" in c["summary"] for c in cells):
        lines.append("| best peer | " + " | ".join(
            peers.label(c["summary"]["best_peer"]) if "best_peer" in c["summary"] else "–" for c in cells) + " |")
    ratio_row("fastnn per-layer path ÷ PyTorch", "fastnn-layer/torch")
    vals = [c["summary"].get("fused/layer") for c in cells]
    if any(v is not None for v in vals):      # issue 10: the fused path >= the per-layer path on every cell
        lines.append("| **fastnn fused ÷ per-layer path** (target ≥ 1) | " + " | ".join(
            "–" if v is None else f"{v:.3g}×" + (" ⚠ < 1" if v < 1 else "")
            + (" (default path not fused)" if "fastnn_not_fused" in c["summary"] else "")
            for v, c in zip(vals, cells)) + " |")
    ratio_row("fastnn 1 thread ÷ PyTorch", "fastnn-1t/torch")
    ratio_row("fastnn, one fit(epochs=1) call per epoch ÷ best peer", "fastnn-call/best_peer")
    vals = [(c["summary"].get("fastnn-call/best_peer"), c["summary"].get("fastnn/best_peer")) for c in cells]
    if any(a is not None and b is not None for a, b in vals):    # what a call costs beside its epoch
        lines.append("| fastnn one call per epoch ÷ one fit, samples/s (1 = nothing lost per call) | " + " | ".join(
            "–" if a is None or b is None else f"{a / b:.3g}×" for a, b in vals) + " |")
    lines.append("| work per sample (6W − 2W₁), MFLOP | " + " | ".join(
        f"{c['cell']['flops_per_sample'] / 1e6:.3g}" for c in cells) + " |")
    ratio_row("fastnn GFLOP/s", "fastnn_gflops", "{:.3g}")
    size = report["sgemm"].get("size", "?")
    ratio_row(f"FLOP limit: sgemm {size}² GFLOP/s (at fastnn's BLAS threads)", "limit_gflops", "{:.3g}")
    ratio_row("**fastnn % of the FLOP limit**", "fastnn_pct_of_limit", "{:.1f} %")
    lines += scaling_markdown(cells, head)
    lines.append("")
    lines.append("### Peak RSS per process, MiB (growth of the RSS over the timed epochs in parentheses)")
    lines.append("")
    lines += [head, "|---" * (len(cells) + 1) + "|"]
    for name in names:
        row = []
        for c in cells:
            e = c["peers"].get(name, {})
            row.append(f"{e['peak_rss_mib']:.0f} ({e.get('rss_growth_mib', 0):+.1f})" if e.get("peak_rss_mib")
                       else "–")
        lines.append(f"| {peers.label(name)} | " + " | ".join(row) + " |")
    lines.append("")
    notes = []
    for c in cells:
        for name, e in c["peers"].items():
            if e["status"] != "ok":
                notes.append(f"- {c['cell']['name']} / {name}: {e['status']}: {e.get('reason', '')}")
    if notes:
        lines += ["Not measured:", *sorted(set(notes)), ""]
    m, v, p = report["machine"], report["versions"], report["protocol"]
    sg = report["sgemm"]
    blas = sg.get("blas") or {}
    lines.append(f"- **Machine**: {m['cpu']}, {m['cores']} cores ({m['cores_usable']} usable), "
                 f"{m['memory_gib']:.1f} GiB, {m['platform']}" if m.get("memory_gib") else f"- **Machine**: {m['cpu']}")
    busy = report.get("cpu_busy_before")
    if busy is not None:
        lines.append(f"- **Idle check**: {busy:.0%} of the CPU time was busy in the {BUSY_SAMPLE_S:g} s before the run"
                     + (" — ⚠ other work was running: the numbers are not reliable" if busy > BUSY_LIMIT else
                        " (idle)"))
    lines.append("- **Versions**: " + ", ".join(f"{k} {val}" for k, val in v.items() if val))
    lines.append(f"- **BLAS** (the one fastnn's kernels call): {blas.get('name', '?')} ({blas.get('source', '?')}); "
                 f"sgemm {sg.get('size', '?')}² best GFLOP/s by threads: "
                 + ", ".join(f"{t}: {g:.1f}" for t, g in sorted(sg.get("best_gflops", {}).items())))
    removed = report["env_removed"]
    lines.append("- **Environment**: every peer process (and the sgemm measurement) runs with OPENBLAS_CORETYPE and "
                 "OPENBLAS_L2_SIZE unset" + (f" (removed here: {', '.join(f'{k}={val}' for k, val in removed.items())})"
                                               if removed else " (neither was set in this shell)") + "."
                 + (f" NUMBA_CACHE_DIR: {report['numba_cache_dir']}." if report.get("numba_cache_dir") else ""))
    lines.append(f"- **Protocol**: one process per peer and cell; {p['warmup']} warm-up epoch(s) excluded (compilation "
                 f"happens there); {p['rounds']} interleaved rounds × {p['epochs_per_turn']} epoch(s) per peer, order "
                 f"rotating each round; fixed-seed synthetic data (benchmarks/matrix.py), float32, ReLU, softmax "
                 f"cross-entropy, each cell's optimizer (row 'optimizer'; torch.optim's defaults for Adam); samples/s = "
                 f"samples per epoch ÷ epoch seconds.")
    lines.append(f"- **Command**: `{report['command']}`")
    return "\n".join(lines)


def scaling_markdown(cells, head):
    """The thread-scaling table (empty when no cell has a fastnn path at two thread counts)."""
    if not any(c.get("summary", {}).get("scaling") for c in cells):
        return []
    lines = ["", f"### fastnn thread scaling: samples/s by thread count (median), and N threads ÷ 1 thread "
                 f"(issue 11's target: 2 threads ÷ 1 thread ≥ {SCALING_TARGET:g} on {', '.join(SCALING_CELLS)})",
             "", head, "|---" * (len(cells) + 1) + "|"]
    for base in peers.THREADED:
        per_cell = [c.get("summary", {}).get("scaling", {}).get(base) for c in cells]
        counts = sorted({int(n) for sc in per_cell if sc for n in sc["samples_per_s"]})
        if not counts:
            continue
        title = peers.label(base)
        for n in counts:
            lines.append(f"| {title}, {n} thread{'s' if n > 1 else ''} | " + " | ".join(
                fmt_rate(sc["samples_per_s"][str(n)]) + ("" if sc["source"][str(n)] == peers.threaded(base, n)
                                                         else f" ({sc['source'][str(n)]})")
                if sc and str(n) in sc["samples_per_s"] else "–" for sc in per_cell) + " |")
        for n in counts:
            if n == 1:
                continue
            row = []
            for sc, c in zip(per_cell, cells):
                v = (sc or {}).get("speedup_over_1t", {}).get(str(n))
                if v is None:
                    row.append("–")
                    continue
                mark = (f" ⚠ < {SCALING_TARGET:g}" if n == 2 and c["cell"]["name"] in SCALING_CELLS
                        and v < SCALING_TARGET else "")
                row.append(f"{v:.3g}×{mark}")
            lines.append(f"| **{title}: {n} threads ÷ 1 thread** | " + " | ".join(row) + " |")
    return lines


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.compare", description=__doc__.splitlines()[0],
                                epilog=f"cells: {', '.join(matrix.CELLS)}; peers: {', '.join(peers.PEERS)}, "
                                       f"{', '.join(b + '@Nt' for b in peers.THREADED)}")
    p.add_argument("--quick", action="store_true", help="small data and 3 timed epochs: < 3 minutes")
    p.add_argument("--cells", default=",".join(matrix.CELLS), help="comma-separated cells")
    p.add_argument("--peers", default=",".join(peers.DEFAULT), help="comma-separated peers")
    p.add_argument("--threads", default=None,
                   help="comma-separated thread counts, e.g. 1,2: adds fastnn@Nt (and fastnn-layer@Nt when "
                        "fastnn-layer is among --peers) for each, and the thread-scaling table; default: none "
                        "(fastnn runs at its default thread count only)")
    p.add_argument("--json", default=None, help="write the full results here (default benchmarks/compare-latest.json)")
    p.add_argument("--markdown", default=None, help="also write the Markdown report here")
    p.add_argument("--rounds", type=int, default=None, help="timed epochs per peer (default 7; --quick 3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed warm-up epochs per peer (default 1)")
    p.add_argument("--epochs-per-turn", type=int, default=1, help="epochs a peer runs per turn of a round")
    p.add_argument("--n", type=int, default=None, help="override samples per epoch (tests)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--settle", type=float, default=0.3, help="seconds of pause between turns")
    p.add_argument("--timeout", type=float, default=1200, help="seconds one peer may take to answer")
    p.add_argument("--budget", type=float, default=None,
                   help="seconds for the whole run, after which each cell stops after its current round (at least "
                        "one); default 150 with --quick (so that it ends in < 3 min even on a busy machine), none "
                        "otherwise")
    p.add_argument("--sgemm-size", type=int, default=2048)
    p.add_argument("--sgemm-repeats", type=int, default=10)
    p.add_argument("--no-sgemm", action="store_true", help="skip the FLOP-limit measurement")
    p.add_argument("--numba-cache-dir", default=None,
                   help="NUMBA_CACHE_DIR for the peer processes ('fresh': a new empty one for this run, compiled "
                        "in the first cell's warm-up). Numba invalidates a cached kernel only when its own file "
                        "changes, not when a kernel it calls does: after editing kernels, use 'fresh' or clear "
                        "kernels/__pycache__")
    args = p.parse_args(argv)
    if args.rounds is None:
        args.rounds = 3 if args.quick else 7
    if args.budget is None:
        args.budget = 150.0 if args.quick else 0.0
    args.cell_list = [matrix.get(c) for c in args.cells.split(",") if c]
    args.peer_list = [x for x in args.peers.split(",") if x]
    for x in args.peer_list:
        try:
            peers.parse(x)
        except ValueError as exc:
            p.error(str(exc))
    args.thread_list = []
    if args.threads:
        try:
            args.thread_list = sorted({int(t) for t in args.threads.split(",") if t.strip()})
        except ValueError:
            p.error(f"--threads takes comma-separated integers, got {args.threads!r}")
        if not args.thread_list or args.thread_list[0] < 1:
            p.error(f"--threads: every thread count must be >= 1, got {args.threads!r}")
        bases = [b for b in peers.THREADED if b in args.peer_list]
        if not bases:
            p.error(f"--threads needs {' or '.join(peers.THREADED)} among --peers")
        for n in args.thread_list:
            for b in bases:
                name = peers.threaded(b, n)
                if name not in args.peer_list:
                    args.peer_list.append(name)
    if args.n is not None:
        bad = [c.name for c in args.cell_list if args.n % c.batch]
        if bad:
            p.error(f"--n {args.n} is not a multiple of the batch of {', '.join(bad)}")
    return args


def main(argv=None):
    args = parse_args(argv)
    command = "python -m benchmarks.compare" + "".join(" " + shlex.quote(a) for a in
                                                       (sys.argv[1:] if argv is None else argv))
    fresh = tempfile.TemporaryDirectory(prefix="fastnn-numba-cache-") if args.numba_cache_dir == "fresh" else None
    env, removed = child_env(fresh.name if fresh else args.numba_cache_dir)
    log(f"peer processes run with {' and '.join(UNSET)} unset"
        + (f" (removed: {', '.join(f'{k}={v}' for k, v in removed.items())})" if removed else " (neither was set)"))
    threads = sorted({1, peers.CORES})
    report = {"command": command, "quick": args.quick, "machine": machine_info(), "versions": versions(),
              "env_removed": removed, "peers": args.peer_list, "threads": args.thread_list,
              "numba_cache_dir": args.numba_cache_dir,
              "protocol": {"warmup": args.warmup, "rounds": args.rounds, "epochs_per_turn": args.epochs_per_turn,
                           "timed_epochs": args.rounds * args.epochs_per_turn, "settle_s": args.settle,
                           "budget_s": args.budget or None},
              "load_avg_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
              "cpu_busy_before": cpu_busy_fraction()}
    t0 = time.perf_counter()
    busy = report["cpu_busy_before"]
    if busy is not None and busy > BUSY_LIMIT:
        log(f"WARNING: {busy:.0%} of the CPU time was busy in the {BUSY_SAMPLE_S:g} s before this run: other work "
            "is running on this machine, the numbers will not be reliable")
    end = time.monotonic() + args.budget if args.budget else None
    sgemm_runs = []
    if not args.no_sgemm:
        log(f"sgemm {args.sgemm_size}² on {threads} thread(s) ...")
        sgemm_runs.append(run_sgemm(env, threads, args.sgemm_size, args.sgemm_repeats))
    cells = []
    with tempfile.TemporaryDirectory(prefix="fastnn-compare-") as logdir:
        for i, cell in enumerate(args.cell_list):
            deadline = None
            if end is not None:      # an equal share of what is left of the budget for each remaining cell
                deadline = time.monotonic() + max(0.0, end - time.monotonic()) / (len(args.cell_list) - i)
            cells.append(run_cell(cell, args.peer_list, args, env, logdir, deadline))
    if not args.no_sgemm:
        log("sgemm again ...")
        sgemm_runs.append(run_sgemm(env, threads, args.sgemm_size, args.sgemm_repeats))
    if fresh is not None:
        fresh.cleanup()
    report["sgemm"] = merge_sgemm(sgemm_runs)
    for c in cells:
        summarise(c, report["sgemm"])
    report["cells"] = cells
    report["load_avg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    report["wall_s"] = time.perf_counter() - t0
    text = markdown(report)
    report["markdown"] = text
    print(text)
    out = Path(args.json) if args.json else ROOT / "benchmarks" / "compare-latest.json"
    out.write_text(json.dumps(report, indent=1))
    if args.markdown:
        Path(args.markdown).write_text(text + "\n")
    log(f"done in {report['wall_s']:.0f} s; JSON written to {out}")
    return 0 if all(e["status"] in ("ok", "unavailable") for c in cells for e in c["peers"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
