"""fastnn's start-up and per-call cost as a user meets them (issue 17, item 7), beside scikit-learn.

    python -m benchmarks.startup                         # everything, 5 interleaved rounds
    python -m benchmarks.startup --quick                 # smoke check: small data, 1 round (not a measurement)
    python -m benchmarks.startup --parts startup --rounds 7 --json startup.json
    python -m benchmarks.startup --parts percall --cells mnist1024,tabular --k 5

**Start-up** (``--parts startup``): every measurement is a whole fresh process (``python -c`` or the
``fastnn`` command), its wall time (parent's clock, from spawn to exit) and CPU time (user + system of the
child and all its threads, from ``wait4``):

* ``fastnn train -q`` (the README's first command);
* a fresh process's first ``MLPClassifier(max_iter=30, random_state=0).fit(X, y)``, otherwise defaults, on
  scikit-learn's digits (1,797 x 64, 10 classes) and on ``make_classification(50_000, 100, n_classes=5,
  n_informative=10, random_state=0)``, in float32 and float64 (fastnn: ``dtype=...``; scikit-learn keeps
  the input's float dtype), the data read from ``.npy`` files this script writes first (generating them is
  not timed; the process still imports scikit-learn, as a user's does);
* fastnn **cold**: ``NUMBA_CACHE_DIR`` = a new empty directory for every run (the first run after
  install); fastnn **warm**: a cache directory filled by one untimed run of the same command (every later
  run); **scikit-learn**: ``sklearn.neural_network.MLPClassifier`` in its own fresh process, same data.

**Per call** (``--parts percall``), in one fresh process per cell (warm cache; the first call, which
compiles, is not timed), per epoch: ``k`` calls of ``net.fit(X, y, epochs=1)`` against one
``net.fit(X, y, epochs=k)`` (same network, same data); the drop-in's ``k`` calls of
``partial_fit(X, y)`` against one ``fit`` of ``max_iter=k`` (``tol=0``: no early stop); ``predict`` and
``evaluate`` on a large X as ``k`` calls on ``k`` slices against one call on all of X. Overhead % =
(k calls ÷ one call − 1) x 100: 0 % means a call costs nothing beyond its epochs' work. Cells:

    mnist1024   784-256-128-10, batch 1024, SGD lr 0.01, 65,536 random rows (benchmarks/matrix.py data)
    mnist128    784-256-128-10, batch 128,  SGD lr 0.01, 65,536 rows
    tabular     100-100-5,      batch 200,  Adam,        40,000 rows
    small       64-128-10,      batch 64,   SGD lr 0.01, 65,536 rows

**How**: fastnn's sources are byte-compiled first (a user's install has its .pyc files; without them each
child would compile ~50 modules, ~0.1 s). ``--rounds`` interleaved rounds (every job once per round, the order rotating each round, so a
change in machine load hits all alike); each figure is the **median** over rounds, ratios are of medians
from the same run. Every child process runs with ``OPENBLAS_CORETYPE`` and ``OPENBLAS_L2_SIZE`` removed
from its environment (the header says which were set); the header gives the CPU model and the BLAS
libraries loaded in a child (threadpoolctl). Run on an otherwise idle machine: a second busy process
halves every figure. ``--quick`` (1 round, digits and train -q only, small per-call data, k = 2) checks
that everything runs; its numbers are not a measurement.
"""
import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UNSET = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
MAX_ITER = 30
#: per-call cells: (matrix cell, rows)
PERCALL_CELLS = {"mnist1024": 65_536, "mnist128": 65_536, "tabular": 40_000, "small": 65_536}
DATASETS = ("digits", "synthetic")
DTYPES = ("float32", "float64")

# -- the fresh processes ------------------------------------------------------------------------------------
FIT_PROBE = r"""
import json, sys, time
t0 = time.perf_counter()
lib, stem, dtype, max_iter = sys.argv[1:5]
import warnings
import numpy as np
if lib == "fastnn":
    from fastnn import MLPClassifier
    kw = {"dtype": dtype}
else:
    from sklearn.neural_network import MLPClassifier
    kw = {}
t1 = time.perf_counter()
X = np.load(f"{stem}.{dtype}.npy")
y = np.load(f"{stem}.y.npy")
t2 = time.perf_counter()
with warnings.catch_warnings():
    warnings.simplefilter("ignore")          # ConvergenceWarning after max_iter iterations: expected
    clf = MLPClassifier(max_iter=int(max_iter), random_state=0, **kw).fit(X, y)
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "fit_s": t3 - t2, "n_iter": int(clf.n_iter_),
                  "loss": float(clf.loss_)}))
"""

BLAS_PROBE = r"""
import json
import fastnn, sklearn.neural_network
from threadpoolctl import threadpool_info
print(json.dumps([{k: d.get(k) for k in ("internal_api", "version", "num_threads", "architecture", "filepath")}
                  for d in threadpool_info()]))
"""


def child_env(numba_cache_dir=None):
    """os.environ without OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE (and what was removed), the repository on
    PYTHONPATH, NUMBA_CACHE_DIR when given."""
    env = dict(os.environ)
    removed = {k: env.pop(k) for k in UNSET if k in env}
    if numba_cache_dir:
        env["NUMBA_CACHE_DIR"] = str(numba_cache_dir)
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env, removed


def fastnn_command():
    """How a user starts the CLI: the ``fastnn`` script next to this Python, else ``python -m fastnn``."""
    script = os.path.join(os.path.dirname(sys.executable), "fastnn")
    return [script] if os.access(script, os.X_OK) else [sys.executable, "-m", "fastnn"]


def run_process(argv, env, timeout=1800):
    """Run one whole process; {"wall_s", "cpu_s", "out"} (cpu: user + system of the child and its threads).
    RuntimeError with its stderr when it fails."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, env=env, cwd=ROOT)
        deadline = t0 + timeout
        while True:
            pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                raise RuntimeError(f"{argv} timed out after {timeout} s")
            time.sleep(0.002)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if proc.returncode:
        raise RuntimeError(f"{' '.join(argv[:4])} ... exited {proc.returncode}:\n{stderr[-3000:]}")
    return {"wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime, "out": stdout}


def byte_compile():
    """Write the .pyc files of fastnn's sources (fastnn/, kernels/), as ``pip install`` does for a user; the
    number of files. Without them every child compiles ~50 modules from source (~0.1 s of CPU each time),
    which happens here when PYTHONDONTWRITEBYTECODE is set (scikit-learn's and Numba's were compiled at
    their install)."""
    import py_compile
    count = 0
    for folder in ("fastnn", "kernels"):
        for dirpath, _, names in os.walk(os.path.join(ROOT, folder)):
            for name in names:
                if name.endswith(".py"):
                    py_compile.compile(os.path.join(dirpath, name), doraise=False, quiet=1)
                    count += 1
    return count


def last_json(text):
    for line in reversed(text.strip().splitlines()):
        if line.startswith(("{", "[")):
            return json.loads(line)
    return None


class StartupJob:
    """One row x column of the start-up table: ``what`` (train, digits/float32, ...) x ``mode`` (cold,
    warm, sklearn). ``run()`` measures one fresh process."""

    def __init__(self, what, mode, data_dir, cache_root):
        self.what, self.mode = what, mode
        self.data_dir, self.cache_root = data_dir, cache_root
        self.warm_dir = os.path.join(cache_root, f"warm-{what.replace('/', '-')}")
        self.runs = 0

    @property
    def key(self):
        return f"{self.what}|{self.mode}"

    def argv(self):
        if self.what == "train":
            return fastnn_command() + ["train", "-q"]
        data, dtype = self.what.split("/")
        lib = "sklearn" if self.mode == "sklearn" else "fastnn"
        return [sys.executable, "-c", FIT_PROBE, lib, os.path.join(self.data_dir, data), dtype, str(MAX_ITER)]

    def cache_dir(self):
        if self.mode == "cold":
            self.runs += 1
            return tempfile.mkdtemp(prefix=f"cold-{self.runs}-", dir=self.cache_root)
        return self.warm_dir

    def prepare(self):
        """Fill the warm cache with one untimed run."""
        if self.mode == "warm" and not os.path.isdir(self.warm_dir):
            os.makedirs(self.warm_dir)
            run_process(self.argv(), child_env(self.warm_dir)[0])

    def run(self):
        cache = self.cache_dir()
        try:
            r = run_process(self.argv(), child_env(cache)[0])
        finally:
            if self.mode == "cold":
                shutil.rmtree(cache, ignore_errors=True)
        inner = last_json(r.pop("out")) if self.what != "train" else None
        if inner:
            r.update(inner)
        return r


def write_data(data_dir, quick):
    """digits and make_classification as .npy (X in both dtypes, y int64); their shapes."""
    import numpy as np
    from sklearn.datasets import load_digits, make_classification
    shapes = {}
    sets = {"digits": load_digits(return_X_y=True)}
    n = 5_000 if quick else 50_000
    sets["synthetic"] = make_classification(n_samples=n, n_features=100, n_classes=5, n_informative=10,
                                            random_state=0)
    for name, (X, y) in sets.items():
        for dtype in DTYPES:
            np.save(os.path.join(data_dir, f"{name}.{dtype}.npy"), np.ascontiguousarray(X, dtype=dtype))
        np.save(os.path.join(data_dir, f"{name}.y.npy"), y.astype(np.int64))
        shapes[name] = [int(X.shape[0]), int(X.shape[1]), int(len(np.unique(y)))]
    return shapes


def interleaved(jobs, rounds, log):
    """Run every job once per round, the order rotating by one each round; {job.key: [result, ...]}."""
    results = {job.key: [] for job in jobs}
    for r in range(rounds):
        order = jobs[r % len(jobs):] + jobs[:r % len(jobs)]
        for job in order:
            res = job.run()
            results[job.key].append(res)
            log(f"  round {r + 1}/{rounds}  {job.key:<28} wall {res['wall_s']:7.2f} s  cpu {res['cpu_s']:7.2f} s")
    return results


# -- the per-call child --------------------------------------------------------------------------------------
def _matrix():
    try:
        from . import matrix
    except ImportError:            # loaded by file path (asv)
        import importlib.util
        spec = importlib.util.spec_from_file_location("_fastnn_bench_matrix", os.path.join(ROOT, "benchmarks", "matrix.py"))
        matrix = importlib.util.module_from_spec(spec)
        sys.modules.setdefault("_fastnn_bench_matrix", matrix)
        spec.loader.exec_module(matrix)
    return matrix


def _clock(fn):
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def percall_child(cell_name, rows, k, rounds):
    """In this process: the per-call comparisons on one cell; raw per-epoch (or per-row-block) times."""
    import warnings
    import fastnn as fnn
    matrix = _matrix()
    cell = matrix.get(cell_name)
    X, y = matrix.make_data(cell, n=rows)
    b = cell.batch

    net = matrix.fastnn_network(cell)

    hidden = tuple(n for _, n in cell.shapes[:-1])
    if cell.optimizer == "adam":
        h = cell.hyper
        solver = dict(solver="adam", learning_rate_init=h["lr"], beta_1=h["beta1"], beta_2=h["beta2"], epsilon=h["eps"])
    else:
        solver = dict(solver="sgd", learning_rate_init=matrix.LR, momentum=0.0, nesterovs_momentum=False)
    est_args = dict(hidden_layer_sizes=hidden, batch_size=b, alpha=0.0, max_iter=k, tol=0.0,
                    n_iter_no_change=k + 1, random_state=0, **solver)
    est = fnn.MLPClassifier(**est_args)
    classes = list(range(cell.sizes[-1]))
    slices = [X[i * len(X) // k:(i + 1) * len(X) // k] for i in range(k)]
    yslices = [y[i * len(y) // k:(i + 1) * len(y) // k] for i in range(k)]

    def fit(epochs):
        net.fit(X, y, epochs=epochs, batch_size=b, verbose=0)

    def partial_fits(new):
        for _ in range(k):
            new.partial_fit(X, y, classes=classes)

    jobs = {
        "fit": (lambda: [fit(1) for _ in range(k)], lambda: fit(k)),
        # a new estimator on both sides: one trained across rounds ran later epochs (slower: subnormal
        # probabilities) than the new one it was compared with, +60 % by the last round
        "partial_fit": (lambda: partial_fits(fnn.MLPClassifier(**est_args)),
                        lambda: fnn.MLPClassifier(**est_args).fit(X, y)),
        "predict": (lambda: [net.predict(s) for s in slices], lambda: net.predict(X)),
        "evaluate": (lambda: [net.evaluate(s, t) for s, t in zip(slices, yslices)], lambda: net.evaluate(X, y)),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit(1)                                  # compiles (or loads the cache): not timed
        est.partial_fit(X, y, classes=classes)
        fnn.MLPClassifier(**est_args).fit(X[:4 * b], y[:4 * b])
        net.predict(slices[0]), net.evaluate(slices[0], yslices[0])
        raw = {name: {"calls": {"wall": [], "cpu": []}, "one": {"wall": [], "cpu": []}} for name in jobs}
        for r in range(rounds):
            for name, (calls, one) in jobs.items():
                pair = [("calls", calls), ("one", one)]
                for side, fn in (pair if r % 2 == 0 else pair[::-1]):       # alternate which goes first
                    w, c = _clock(fn)
                    raw[name][side]["wall"].append(w / k)
                    raw[name][side]["cpu"].append(c / k)
    return {"cell": cell_name, "layers": "-".join(map(str, cell.sizes)), "batch": b, "optimizer": cell.optimizer,
            "rows": rows, "k": k, "raw": raw}


# -- arithmetic and report -----------------------------------------------------------------------------------
def med(values):
    return statistics.median(values) if values else None


def ratio(a, b):
    return a / b if a is not None and b else None


def summarize_startup(results, whats):
    """{what: {mode: {"wall_s", "cpu_s" (medians), "runs"}, "cold_vs_sklearn", "warm_vs_sklearn" (wall
    ratios), ...}} from interleaved()'s raw results."""
    out = {}
    for what in whats:
        row = {}
        for mode in ("cold", "warm", "sklearn"):
            runs = results.get(f"{what}|{mode}")
            if runs:
                row[mode] = {"wall_s": med([r["wall_s"] for r in runs]), "cpu_s": med([r["cpu_s"] for r in runs]),
                             "runs": len(runs)}
                if "fit_s" in runs[0]:
                    row[mode]["import_s"] = med([r["import_s"] for r in runs])
                    row[mode]["fit_s"] = med([r["fit_s"] for r in runs])
                    row[mode]["n_iter"] = runs[0]["n_iter"]
        for mode in ("cold", "warm"):
            if mode in row and "sklearn" in row:
                row[f"{mode}_vs_sklearn"] = ratio(row[mode]["wall_s"], row["sklearn"]["wall_s"])
                row[f"{mode}_vs_sklearn_cpu"] = ratio(row[mode]["cpu_s"], row["sklearn"]["cpu_s"])
        out[what] = row
    return out


def summarize_percall(child):
    """Per comparison: median per-epoch (per-block) wall/CPU of k calls and of one call, overhead %."""
    out = {}
    for name, sides in child["raw"].items():
        s = {}
        for clock in ("wall", "cpu"):
            calls, one = med(sides["calls"][clock]), med(sides["one"][clock])
            s[f"calls_{clock}_s"], s[f"one_{clock}_s"] = calls, one
            r = ratio(calls, one)
            s[f"overhead_{clock}_pct"] = None if r is None else (r - 1.0) * 100.0
        out[name] = s
    return out


def fmt_s(x):
    return "–" if x is None else (f"{x:.2f} s" if x >= 0.1 else f"{x * 1e3:.1f} ms")


def fmt_x(x):
    return "–" if x is None else f"{x:.2f}×"


def fmt_pct(x):
    return "–" if x is None else f"{x:+.1f} %"


LABELS = {"train": "`fastnn train -q`", "digits": "first `MLPClassifier().fit`, digits",
          "synthetic": "first `MLPClassifier().fit`, make_classification"}
CALL_LABELS = {"fit": "`fit(epochs=1)` ×k vs `fit(epochs=k)`", "partial_fit": "`partial_fit` ×k vs `fit(max_iter=k)`",
               "predict": "`predict` on k slices vs all of X", "evaluate": "`evaluate` on k slices vs all of X"}


def markdown(report):
    lines = []
    quick = " — QUICK RUN: a smoke check, not a measurement" if report["quick"] else ""
    m = report["machine"]
    lines += [f"## fastnn start-up and per-call cost{quick}", "",
              f"- **Machine**: {m['cpu']}, {m['cores']} cores usable; {m['platform']}; {report['date']}",
              f"- **BLAS** (threadpoolctl in a child process): " + ("; ".join(
                  f"{b.get('internal_api')} {b.get('version')} ({b.get('architecture')}, {b.get('num_threads')} threads, "
                  f"{os.path.basename(b.get('filepath') or '')})" for b in report["blas"]) or "none found"),
              "- **Environment**: every child process runs with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset"
              + (f" (removed here: {', '.join(f'{k}={v}' for k, v in report['unset'].items())})" if report["unset"]
                 else " (neither was set)"),
              f"- **Versions**: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items() if v),
              f"- **Protocol**: {report['rounds']} interleaved round(s), medians; command: `{report['command']}`", ""]
    if report.get("startup"):
        lines += [f"### Start-up: whole fresh processes, wall s (CPU s); {MAX_ITER} iterations, defaults", "",
                  "| what | data | fastnn cold | fastnn warm | scikit-learn | cold ÷ sklearn | warm ÷ sklearn |",
                  "|---|---|---|---|---|---|---|"]
        for what, row in report["startup"].items():
            if what == "train":
                label, data = LABELS["train"], "its default data"
            else:
                name, dtype = what.split("/")
                shape = report["data_shapes"].get(name, ["?", "?", "?"])
                label, data = LABELS[name], f"{shape[0]:,}×{shape[1]}, {shape[2]} classes, {dtype}"

            def cell(mode):
                e = row.get(mode)
                return "–" if not e else f"{e['wall_s']:.2f} ({e['cpu_s']:.2f})"
            lines.append(f"| {label} | {data} | {cell('cold')} | {cell('warm')} | {cell('sklearn')} | "
                         f"{fmt_x(row.get('cold_vs_sklearn'))} | {fmt_x(row.get('warm_vs_sklearn'))} |")
        lines += ["", "Ratios: fastnn's median wall time ÷ scikit-learn's (same run). Cold: an empty "
                  "NUMBA_CACHE_DIR for each run; warm: a cache filled by one untimed run.", ""]
        inner = [(w, r) for w, r in report["startup"].items() if any("fit_s" in r.get(m, {}) for m in r)]
        if inner:
            lines += ["Inside those processes (median s): imports (numpy + the estimator's module) / `fit` alone "
                      "/ iterations run", "", "| fit | fastnn cold | fastnn warm | scikit-learn |", "|---|---|---|---|"]
            for what, row in inner:
                def split(mode):
                    e = row.get(mode, {})
                    return "–" if "fit_s" not in e else f"{e['import_s']:.2f} / {e['fit_s']:.2f} / {e['n_iter']}"
                lines.append(f"| {what} | {split('cold')} | {split('warm')} | {split('sklearn')} |")
            lines.append("")
    if report.get("percall"):
        lines += ["### Per-call cost: per epoch (per block of X for predict/evaluate), median wall (CPU)", "",
                  "| cell | comparison | k calls | one call | overhead wall | overhead CPU |", "|---|---|---|---|---|---|"]
        for c in report["percall"]:
            head = f"{c['layers']} b{c['batch']} {c['optimizer']}, {c['rows']:,} rows, k={c['k']}"
            for name, s in c["summary"].items():
                lines.append(f"| {head} | {CALL_LABELS[name]} | {fmt_s(s['calls_wall_s'])} ({fmt_s(s['calls_cpu_s'])}) | "
                             f"{fmt_s(s['one_wall_s'])} ({fmt_s(s['one_cpu_s'])}) | {fmt_pct(s['overhead_wall_pct'])} | "
                             f"{fmt_pct(s['overhead_cpu_pct'])} |")
                head = ""
        lines += ["", "Overhead = (k calls ÷ one call − 1): what a call costs beyond its epochs' work (target ≤ 3 %)."]
    return "\n".join(lines) + "\n"


def machine():
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu, "cores": cores, "platform": platform.platform()}


def versions():
    from importlib import metadata
    out = {"python": platform.python_version()}
    for pkg in ("fastnn", "numpy", "numba", "scikit-learn", "threadpoolctl"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    if head.returncode == 0:
        out["git"] = head.stdout.strip()
    return out


def log(*msg):
    print(*msg, file=sys.stderr, flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 5; --quick: 1)")
    ap.add_argument("--cells", default=None, help=f"per-call cells, comma-separated (default: {','.join(PERCALL_CELLS)})")
    ap.add_argument("--parts", default="startup,percall", help="startup, percall or both (default)")
    ap.add_argument("--startup", default=None,
                    help="start-up rows: train, digits, synthetic (default all; --quick: train,digits)")
    ap.add_argument("--modes", default="cold,warm,sklearn", help="start-up columns (default: %(default)s)")
    ap.add_argument("--dtypes", default=None, help="float32,float64 (default both; --quick: float32)")
    ap.add_argument("--k", type=int, default=None, help="calls per comparison (default 5; --quick: 2)")
    ap.add_argument("--quick", action="store_true", help="1 round, small data: checks that it runs")
    ap.add_argument("--json", help="write the report (raw runs included) here")
    ap.add_argument("--percall-child", nargs=4, metavar=("CELL", "ROWS", "K", "ROUNDS"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.percall_child:
        cell, rows, k, rounds = args.percall_child
        print(json.dumps(percall_child(cell, int(rows), int(k), int(rounds))))
        return 0

    quick = args.quick
    rounds = args.rounds or (1 if quick else 5)
    k = args.k or (2 if quick else 5)
    parts = set(args.parts.split(","))
    cells = (args.cells or ("small" if quick else ",".join(PERCALL_CELLS))).split(",")
    whats = (args.startup or ("train,digits" if quick else "train," + ",".join(DATASETS))).split(",")
    dtypes = (args.dtypes or ("float32" if quick else ",".join(DTYPES))).split(",")
    bad = [c for c in cells if c not in PERCALL_CELLS] + [w for w in whats if w not in ("train",) + DATASETS]
    bad += [m for m in args.modes.split(",") if m not in ("cold", "warm", "sklearn")]
    if bad:
        ap.error(f"unknown cell or start-up row: {bad}")

    compiled = byte_compile()
    env, removed = child_env()
    blas = last_json(run_process([sys.executable, "-c", BLAS_PROBE], env)["out"]) or []
    report = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "quick": quick, "rounds": rounds,
              "machine": machine(), "blas": blas, "unset": removed, "versions": versions(),
              "command": "python -m benchmarks.startup " + " ".join(argv if argv is not None else sys.argv[1:])}
    log(f"fastnn's sources byte-compiled first ({compiled} files), as pip install does")
    log(f"unset in every child: {', '.join(UNSET)} (were set here: {', '.join(removed) or 'neither'}); "
        f"CPU {report['machine']['cpu']}")

    tmp = tempfile.mkdtemp(prefix="fastnn-startup-")
    try:
        if "startup" in parts:
            report["data_shapes"] = write_data(tmp, quick)
            rows = [w if w == "train" else f"{w}/{d}" for w in whats for d in ([None] if w == "train" else dtypes)]
            modes = args.modes.split(",")
            jobs = [StartupJob(row, mode, tmp, tmp) for row in rows for mode in modes
                    if not (row == "train" and mode == "sklearn")]
            log(f"start-up: {len(jobs)} jobs x {rounds} round(s); filling the warm caches ...")
            for job in jobs:
                job.prepare()
            raw = interleaved(jobs, rounds, log)
            report["startup"] = summarize_startup(raw, rows)
            report["startup_raw"] = raw
        if "percall" in parts:
            report["percall"] = []
            warm = os.path.join(tmp, "percall-cache")
            for cell in cells:
                n = max(PERCALL_CELLS[cell] // (16 if quick else 1), 8 * 1024)
                log(f"per call: {cell}, {n} rows, k={k}, {rounds} round(s)")
                r = run_process([sys.executable, "-m", "benchmarks.startup", "--percall-child", cell, str(n), str(k),
                                 str(rounds)], child_env(warm)[0])
                child = last_json(r["out"])
                child["summary"] = summarize_percall(child)
                report["percall"].append(child)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(markdown(report))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
