"""A model of the batch-parallel training step on 8, 16 and 64 cores, from per-phase timings measured here
(issue 11, item 5).

    python -m benchmarks.manycore_model [--quick] [--cells small,wide] [--measured compare.json] [--json out.json]

The step it models (the batch-parallel rewrite of the fused epoch kernel): T threads; a mini-batch of nb rows
is split into T row blocks of r = ceil(nb / T) rows.
  1. row phase, per thread on its r rows: gather of the input rows; per layer a single-threaded GEMM
     A[k+1] = A[k]·W[k] (r x in_k x out_k) and the bias + activation pass; softmax cross-entropy on the
     logits (labels gathered, correct predictions counted); backward, per layer k >= 1 from the top, the
     GEMM dX = D[k+1]·W[k]ᵀ (r x out_k x in_k) and the ReLU-derivative pass; for plain SGD, the finiteness
     bounds (max |x| passes over the deltas and activations, as the fused kernel's bound check does);
  2. parameter phase, split by parameter range: thread t owns the rows i0:i1 of every W[k] (ceil(in_k / T)
     rows) and the columns j0:j1 of every bias (ceil(out_k / T)); it runs dW[k][i0:i1] = A[k][:, i0:i1]ᵀ·D[k+1]
     over the whole batch (one single-threaded GEMM per layer, ceil(in_k / T) x nb x out_k, no reduction
     buffer; for plain SGD the update is inside the GEMM, W += -lr·AᵀD, BLAS beta = 1, as today), the column
     sums of D[k+1] for its bias columns, then its share of the optimizer update (SGD: the biases; Adam: the
     gradient norm and the checked Adam update of its weights and biases);
  3. about 4 barriers per step (--barriers); one parallel region per epoch (its launch spread over the
     epoch's steps of the full-size cell), or --launches-per-step launches per step.

  step_time(T) = Σ over the items of thread 0 (it has the largest, ceil-rounded share of every item) of
                 max(its single-thread time at exactly that share, its DRAM floor)
               + barriers · barrier(T) + launches per step · launch(T) + residual(T)
  samples/s(T) = nb / step_time(T);  speedup(T) = samples/s(T) / samples/s(1)

Measured here, single-threaded (in a child process with compare.child_env(): OPENBLAS_CORETYPE and
OPENBLAS_L2_SIZE removed), every item at the exact shape one thread gets at each T: GEMMs through fastnn's
own BLAS call (kernels/_blas.py gemm, 1 BLAS thread) from a Numba loop (no Python call per GEMM), so the
loss of GEMM efficiency on thin row blocks is in the figures; the other passes through fastnn's kernels
(batch.gather_rows, activations.bias_activate / scale_by_derivative, softmax_ce.softmax_ce_labels,
dense.column_sums, optim.sgd / squared_norm / adam_checked, epoch._absmax_bound) from Numba loops. Each item
is timed alone, repeatedly, on warm data: passes that share the cache in a real step may be slower (compare
the T = 1 prediction with fastnn@1t of compare.py: --measured). Also measured: the stream (triad) bandwidth on
1 and 2 threads, the launch of a Numba parallel region on 2 threads, and fastnn's real fused step today on
1 thread (the ``fastnn@1t`` peer, the cell's --quick data): what the items do not account for of it is the
residual — per-call and per-step costs that each thread of a batch-parallel step would still pay —, kept
constant per thread by default (--residual constant: the conservative reading; ``split``: it divides by T;
``none``: left out), so that the T = 1 prediction is today's measured single-thread rate.

Assumptions (printed with the results; all options):
* every thread has a core of this machine's single-core speed (no turbo loss, no SMT sharing, no NUMA);
* GEMMs are compute-bound (their arithmetic intensity is high); the elementwise, reduction and update
  passes are bandwidth-bound when their data (all threads together) exceed --cache-mib (default 32 MiB, a
  server socket's last-level cache): then each takes at least bytes / BW(T), with BW(1), BW(2) measured here
  and BW(T > 2) = min(T · BW(1), --socket-bw-gbs) (default 100 GB/s: a DDR4 server socket's stream rate);
* barrier(T) = --barrier-base-us + --barrier-log-us · log2(T) (default 0.2 + 0.3·log2 T µs, a spinning tree
  barrier), or --barrier-us B (a measured 2-thread barrier) scaling that curve to B at T = 2;
  launch(T) = the 2-thread launch measured here · log2(T) (a tree wake-up), 0 at T = 1;
* T = 1 has no barrier and no launch; T > nb leaves threads without rows (and T > in_k without weight rows).
"Stops paying": the smallest T of 1, 2, 4, ..., 64 beyond which every doubling of T gains < 10 % (--min-gain).
"""
import argparse
import json
import math
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from . import matrix

LADDER = (1, 2, 4, 8, 16, 32, 64)
SHOW = (1, 2, 4, 8, 16, 64)
PHASES = ("gemm_fwd", "gemm_dx", "gemm_dw", "elementwise", "reduction", "update", "barriers", "launch",
          "residual")
PHASE_LABELS = {"gemm_fwd": "GEMM forward (r rows)", "gemm_dx": "GEMM input grads (r rows)",
                "gemm_dw": "GEMM weight grads (in/T rows, whole batch)", "elementwise": "elementwise (r rows)",
                "reduction": "reductions (bias sums, bounds, norms)", "update": "optimizer update (params/T)",
                "barriers": "barriers", "launch": "region launch",
                "residual": "residual of today's 1-thread step"}
RESIDUAL_MODES = ("constant", "split", "none")
BW_PHASES = ("elementwise", "reduction", "update")
F32 = 4


@dataclass(frozen=True)
class Item:
    """One piece of one thread's step: ``kind`` at ``dims``; ``active``: how many threads have one like it;
    ``bytes``: the bytes it moves (one thread's)."""
    phase: str
    kind: str
    dims: tuple
    active: int
    bytes: int = 0

    @property
    def key(self):
        return f"{self.kind} {'x'.join(str(d) for d in self.dims)}"


def ceil_div(a, b):
    return -(-a // b)


def plan(cell, T):
    """The items of thread 0's share of one training step of ``cell`` on T threads (module docstring)."""
    nb, shapes = cell.batch, cell.shapes
    L, C, sgd = len(shapes), cell.n_classes, cell.optimizer == "sgd"
    r = ceil_div(nb, T)
    rows_active = ceil_div(nb, r)
    items = [Item("elementwise", "gather", (r, cell.n_features), rows_active, F32 * 2 * r * cell.n_features + 8 * r)]
    for k, (i, o) in enumerate(shapes):
        items.append(Item("gemm_fwd", "gemm_nn", (r, i, o), rows_active))
        items.append(Item("elementwise", "bias_relu" if k < L - 1 else "bias", (r, o), rows_active, F32 * 2 * r * o))
    items.append(Item("elementwise", "softmax_ce", (r, C), rows_active, F32 * 3 * r * C + 16 * r))
    if sgd:
        items.append(Item("reduction", "absmax", (r, C), rows_active, F32 * r * C))
    for k in range(L - 1, 0, -1):
        i, o = shapes[k]
        items.append(Item("gemm_dx", "gemm_nt", (r, o, i), rows_active))
        items.append(Item("elementwise", "relu_grad", (r, i), rows_active, F32 * 3 * r * i))
        if sgd:        # the bounds: max |dX| and max |A[k]|
            items.append(Item("reduction", "absmax", (r, i), rows_active, F32 * r * i))
            items.append(Item("reduction", "absmax", (r, i), rows_active, F32 * r * i))
    for k, (i, o) in enumerate(shapes):
        ri, co = ceil_div(i, T), ceil_div(o, T)
        w_active, b_active = ceil_div(i, ri), ceil_div(o, co)
        items.append(Item("gemm_dw", "gemm_tn_acc" if sgd else "gemm_tn", (ri, nb, o), w_active))
        items.append(Item("reduction", "colsum", (nb, co), b_active, F32 * (nb * co + co)))
        if sgd:
            items.append(Item("update", "sgd", (co,), b_active, F32 * 3 * co))
        else:
            for n, active in ((ri * o, w_active), (co, b_active)):
                items.append(Item("reduction", "sqnorm", (n,), active, F32 * n))
                items.append(Item("update", "adam", (n,), active, F32 * 11 * n))   # finite check (4) + step (7)
    return items


# -- the model -----------------------------------------------------------------------------------------------
@dataclass
class Config:
    barriers: float = 4.0
    barrier_base_us: float = 0.2
    barrier_log_us: float = 0.3
    barrier_us: float = None          # a measured 2-thread barrier: scales the curve to it at T = 2
    launches_per_step: float = None   # None: one region launch per epoch (of the cell's full size)
    socket_bw_gbs: float = 100.0
    cache_mib: float = 32.0
    min_gain: float = 0.10
    residual: str = "constant"        # RESIDUAL_MODES

    def barrier_s(self, T):
        if T <= 1:
            return 0.0
        curve = self.barrier_base_us + self.barrier_log_us * math.log2(T)
        if self.barrier_us is not None:
            curve *= self.barrier_us / (self.barrier_base_us + self.barrier_log_us)
        return curve * 1e-6


def bandwidth(T, table, cfg):
    """Bytes/s that T threads get from DRAM: measured at T = 1, 2 (this machine), else min(T·BW(1), socket)."""
    bw = {int(k): v * 1e9 for k, v in table.get("bandwidth_gbs", {}).items()}
    if T in bw:
        return bw[T]
    one = bw.get(1, cfg.socket_bw_gbs * 1e9)
    return min(T * one, cfg.socket_bw_gbs * 1e9)


def launch_s(T, table):
    if T <= 1:
        return 0.0
    return table.get("launch_us", 0.0) * 1e-6 * max(1.0, math.log2(T))


def residual_s(cell, table, cfg):
    """Seconds of today's measured 1-thread step (table["fastnn_step_s"][cell]) that the items at T = 1 do not
    account for (>= 0), or 0 without a measurement or with --residual none."""
    measured = (table.get("fastnn_step_s") or {}).get(cell.name)
    if cfg.residual == "none" or not measured:
        return 0.0
    items = sum(predict(cell, 1, table, cfg, residual=False)["terms"].values())
    return max(0.0, measured - items)


def predict(cell, T, table, cfg, residual=True):
    """{"terms": {phase: seconds of thread 0}, "step_s", "samples_per_s", "floors": {phase: seconds added by
    the DRAM floor}} for ``cell`` on T threads from the measured ``table`` (table["items"][key] = seconds)."""
    terms = {p: 0.0 for p in PHASES}
    floors = {p: 0.0 for p in BW_PHASES}
    bw, cache = bandwidth(T, table, cfg), cfg.cache_mib * 2**20
    items = table["items"]
    for it in plan(cell, T):
        if it.key not in items:
            raise KeyError(f"no timing for {it.key!r} (cell {cell.name}, T = {T}): measure with these cells")
        t = items[it.key]
        if it.phase in BW_PHASES and it.bytes * it.active > cache:
            floor = it.bytes * it.active / bw
            if floor > t:
                floors[it.phase] += floor - t
                t = floor
        terms[it.phase] += t
    terms["barriers"] = cfg.barriers * cfg.barrier_s(T)
    launches = cfg.launches_per_step
    if launches is None:
        launches = cell.batch / cell.n_full          # one launch per epoch
    terms["launch"] = launches * launch_s(T, table)
    if residual:
        terms["residual"] = residual_s(cell, table, cfg) / (T if cfg.residual == "split" else 1)
    step = sum(terms.values())
    return {"terms": terms, "step_s": step, "samples_per_s": cell.batch / step, "floors": floors}


def stops_paying(speedups, min_gain=0.10):
    """The smallest T of the doubling ladder in ``speedups`` ({T: speedup}) beyond which every further doubling
    gains less than ``min_gain`` (a doubling that pays again later — noise, or a share that fits a cache —
    moves the point past it); None if the last doubling still pays."""
    ladder = sorted(speedups)
    stop = None
    for a, b in zip(ladder, ladder[1:]):
        if b != 2 * a:
            continue
        if speedups[b] < speedups[a] * (1.0 + min_gain):
            stop = a if stop is None else stop
        else:
            stop = None
    return stop


def model_cell(cell, table, cfg, ladder=LADDER):
    pred = {T: predict(cell, T, table, cfg) for T in ladder}
    base = pred[ladder[0]]["samples_per_s"]
    for p in pred.values():
        p["speedup"] = p["samples_per_s"] / base
    stop = stops_paying({T: p["speedup"] for T, p in pred.items()}, cfg.min_gain)
    out = {"cell": cell.name, "predictions": {str(T): p for T, p in pred.items()}, "stops_paying_beyond": stop}
    if stop is not None:
        terms = pred[stop]["terms"]
        dom = max(terms, key=terms.get)
        out["dominant_term"] = dom
        out["dominant_share"] = terms[dom] / pred[stop]["step_s"]
    return out


# -- measuring (in a child process) ----------------------------------------------------------------------------
def _kernels():
    """Numba loops around fastnn's kernels: each runs its kernel ``reps`` times (compiled on first use)."""
    import numba
    from numba import njit, prange

    from fastnn.kernels import optim
    from fastnn.kernels._blas import gemm
    from fastnn.kernels.activations import bias_activate, scale_by_derivative
    from fastnn.kernels.batch import gather, gather_rows
    from fastnn.kernels.dense import column_sums
    from fastnn.kernels.epoch import _absmax_bound
    from fastnn.kernels.softmax_ce import count_correct_labels, softmax_ce_labels

    @njit
    def loop_gemm(alpha, a, ta, b, tb, beta, c, reps):
        for _ in range(reps):
            gemm(alpha, a, ta, b, tb, beta, c, 1)

    @njit
    def loop_gather(X, order, out, reps):
        span = order.size - out.shape[0] + 1
        for rep in range(reps):
            gather_rows(X, order, (rep * out.shape[0]) % span, out)

    @njit
    def loop_bias(z, b, code, out, reps):
        for _ in range(reps):
            bias_activate(z, b, code, 0.0, out)

    @njit
    def loop_head(z, labels, order, yb, grad, reps):
        s = 0.0
        for _ in range(reps):
            gather(labels, order, 0, yb)
            s += softmax_ce_labels(z, yb, grad)
            s += count_correct_labels(z, yb)
        return s

    @njit
    def loop_relu_grad(code, y, z, d, reps):
        for _ in range(reps):
            scale_by_derivative(code, 0.0, y, z, d)

    @njit
    def loop_absmax(x, reps):
        s = 0.0
        for _ in range(reps):
            s += _absmax_bound(x)
        return s

    @njit
    def loop_colsum(d, db, reps):
        for _ in range(reps):
            column_sums(d, db)

    @njit
    def loop_sgd(p, g, reps):
        for _ in range(reps):
            optim.sgd(p, g, 1e-9)

    @njit
    def loop_sqnorm(g, reps):
        s = 0.0
        for _ in range(reps):
            s += optim.squared_norm(g, 0, g.size)
        return s

    @njit
    def loop_adam(p, g, m, v, reps):
        ok = 0
        for rep in range(reps):
            ok += optim.adam_checked(p, g, m, v, 1e-9, 0.9, 0.999, 1e-8, rep + 1, 0.0, False, False)
        return ok

    @njit
    def triad(a, b, c, s):
        for i in range(a.size):
            a[i] = b[i] + s * c[i]

    @njit(parallel=True)
    def triad_parallel(a, b, c, s):
        for i in prange(a.size):
            a[i] = b[i] + s * c[i]

    @njit(parallel=True)
    def region(x):
        for i in prange(x.size):
            x[i] += 1.0

    @njit
    def loop_region(x, reps):
        for _ in range(reps):
            region(x)

    return {k: v for k, v in locals().items() if callable(v) and k not in ("njit", "prange")}, numba


def _timed(fn, args, min_time, repeats):
    """Median seconds of one ``fn(*args, reps)`` repetition, ``reps`` chosen to make a block >= min_time."""
    fn(*args, 1)                                    # compile, warm caches and pages
    t0 = time.perf_counter()
    fn(*args, 1)
    once = max(time.perf_counter() - t0, 1e-8)
    reps = max(1, int(min_time / once))
    blocks = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(*args, reps)
        blocks.append((time.perf_counter() - t0) / reps)
    return statistics.median(blocks)


def measure_item(kind, dims, K, rng, min_time, repeats):
    import numpy as np
    f32 = np.float32

    def randn(*shape):
        return rng.standard_normal(shape, dtype=f32)
    if kind.startswith("gemm"):
        m, k, n = dims
        if kind == "gemm_nn":        # (m x k)·(k x n)
            args = (1.0, randn(m, k), False, randn(k, n), False, 0.0, np.zeros((m, n), f32))
        elif kind == "gemm_nt":      # (m x k)·(n x k)ᵀ
            args = (1.0, randn(m, k), False, randn(n, k), True, 0.0, np.zeros((m, n), f32))
        else:                        # (k x m)ᵀ·(k x n), beta = 1 (SGD inside the GEMM) or 0
            acc = kind == "gemm_tn_acc"
            args = (-1e-9 if acc else 1.0, randn(k, m), True, randn(k, n), False, 1.0 if acc else 0.0,
                    randn(m, n))
        return _timed(K["loop_gemm"], args, min_time, repeats)
    if kind == "gather":
        r, d = dims
        rows = max(4 * r, min(65536, (1 << 24) // max(d, 1)))
        return _timed(K["loop_gather"], (randn(rows, d), rng.permutation(rows).astype(np.int64),
                                         np.empty((r, d), f32)), min_time, repeats)
    if kind in ("bias_relu", "bias"):
        from fastnn.kernels.activations import IDENTITY, RELU
        r, o = dims
        return _timed(K["loop_bias"], (randn(r, o), randn(o), RELU if kind == "bias_relu" else IDENTITY,
                                       np.empty((r, o), f32)), min_time, repeats)
    if kind == "softmax_ce":
        r, c = dims
        labels = rng.integers(0, c, 4 * r).astype(np.int64)
        return _timed(K["loop_head"], (randn(r, c), labels, rng.permutation(4 * r).astype(np.int64),
                                       np.empty(r, np.int64), np.empty((r, c), f32)), min_time, repeats)
    if kind == "relu_grad":
        from fastnn.kernels.activations import RELU
        r, i = dims
        return _timed(K["loop_relu_grad"], (RELU, np.maximum(randn(r, i), 0), np.empty((0, 0), f32),
                                            randn(r, i)), min_time, repeats)
    if kind == "absmax":
        return _timed(K["loop_absmax"], (randn(*dims),), min_time, repeats)
    if kind == "colsum":
        nb, co = dims
        return _timed(K["loop_colsum"], (randn(nb, co), np.empty(co, f32)), min_time, repeats)
    if kind == "sgd":
        return _timed(K["loop_sgd"], (randn(*dims), randn(*dims)), min_time, repeats)
    if kind == "sqnorm":
        return _timed(K["loop_sqnorm"], (randn(*dims),), min_time, repeats)
    if kind == "adam":
        return _timed(K["loop_adam"], (randn(*dims), randn(*dims), np.zeros(dims, f32), np.zeros(dims, f32)),
                      min_time, repeats)
    raise ValueError(f"unknown item kind {kind!r}")


def measure_bandwidth(K, numba, elements, repeats):
    """Triad a = b + s·c GB/s (12 bytes per element counted, write-allocate not) on 1 and 2 threads."""
    import numpy as np
    a, b, c = (np.full(elements, 1.0, np.float32) for _ in range(3))
    out, saved = {}, numba.get_num_threads()
    for T, fn in ((1, K["triad"]), (2, K["triad_parallel"])):
        if T > numba.config.NUMBA_NUM_THREADS:
            continue
        numba.set_num_threads(T)
        fn(a, b, c, np.float32(0.5))
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn(a, b, c, np.float32(0.5))
            times.append(time.perf_counter() - t0)
        out[str(T)] = 12.0 * elements / min(times) / 1e9
    numba.set_num_threads(saved)
    return out


def measure_launch(K, numba, min_time, repeats):
    """Median µs of launching (and joining) an empty-ish Numba parallel region on 2 threads, back to back."""
    import numpy as np
    if numba.config.NUMBA_NUM_THREADS < 2:
        return None
    saved = numba.get_num_threads()
    numba.set_num_threads(2)
    try:
        t = _timed(K["loop_region"], (np.zeros(2, np.float32),), min_time, repeats)
    finally:
        numba.set_num_threads(saved)
    return t * 1e6


def measure_fastnn_steps(cell_names, quick):
    """Seconds per step of fastnn's fused default path today on 1 thread (the fastnn@1t peer, --quick data,
    median of the timed epochs after one warm-up epoch), by cell."""
    from . import peers
    out = {}
    for name in cell_names:
        cell = matrix.get(name)
        X, y = matrix.make_data(cell, quick=True)
        peer = peers.build("fastnn@1t", cell, X, y)
        peer.epochs(1)
        times = peer.epochs(3 if quick else 5)
        out[name] = statistics.median(times) / (len(X) // cell.batch)
    return out


def measure_child(out_path, cell_names, ladder, quick):
    """(in the child process) Measure every item of ``plan`` for the cells and ladder; write the table."""
    import numpy as np
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(1, user_api="blas")
    except ImportError:
        pass
    K, numba = _kernels()
    min_time, repeats = (0.002, 3) if quick else (0.02, 5)
    rng = np.random.default_rng(0)
    wanted = {}
    for name in cell_names:
        for T in ladder:
            for it in plan(matrix.get(name), T):
                wanted.setdefault(it.key, it)
    t_start = time.perf_counter()
    items = {}
    for key, it in sorted(wanted.items(), key=lambda kv: kv[0]):
        items[key] = measure_item(it.kind, it.dims, K, rng, min_time, repeats)
    table = {"items": items, "measure_s": time.perf_counter() - t_start, "quick": quick,
             "bandwidth_gbs": measure_bandwidth(K, numba, 1 << (22 if quick else 24), 3 if quick else 5),
             "launch_us": measure_launch(K, numba, min_time, repeats), "threading_layer": None}
    try:
        table["threading_layer"] = numba.threading_layer()
    except ValueError:
        pass
    from .peers.base import blas_info
    table["blas"] = [b for b in blas_info() if b.get("internal_api") == "openblas"][:1]
    table["fastnn_step_s"] = measure_fastnn_steps(cell_names, quick)
    Path(out_path).write_text(json.dumps(table, indent=1))
    return 0


def measure(cell_names, ladder, quick, timeout=1800):
    """Run measure_child in a fresh process with compare.child_env(); its table."""
    from . import compare
    env, removed = compare.child_env()
    with tempfile.TemporaryDirectory(prefix="fastnn-manycore-") as tmp:
        out = Path(tmp) / "timings.json"
        cmd = [sys.executable, "-m", "benchmarks.manycore_model", "--measure-child", str(out),
               "--cells", ",".join(cell_names), "--ladder", ",".join(str(t) for t in ladder)]
        if quick:
            cmd.append("--quick")
        res = subprocess.run(cmd, cwd=compare.ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        if res.returncode or not out.exists():
            raise RuntimeError(f"measuring failed (exit code {res.returncode}): {res.stderr.strip()[-2000:]}")
        table = json.loads(out.read_text())
    table["env_removed"] = removed
    return table


# -- report -----------------------------------------------------------------------------------------------------
def fmt_rate(x):
    from .compare import fmt_rate as f
    return f(x)


def measured_scaling(path):
    """{cell: {"1": samples/s, "2": samples/s}} of fastnn's default path from a compare.py JSON (--threads)."""
    report = json.loads(Path(path).read_text())
    out = {}
    for c in report.get("cells", []):
        sc = c.get("summary", {}).get("scaling", {}).get("fastnn")
        if sc:
            out[c["cell"]["name"]] = sc["samples_per_s"]
    return out


def _stop_text(stop, report):
    return f"T = {stop}" if stop is not None else f"> {max(report['ladder'])}"


def _alt_text(m, report):
    a = m.get("alternative")
    if not a:
        return " – |"
    return f" {_stop_text(a['stops_paying_beyond'], report)}, {a['speedup_max']:.2f}× |"


def markdown(report, cfg):
    show = [T for T in report["show"]]
    lines = [f"### Batch-parallel step on T threads, predicted samples/s (speedup over T = 1) from this machine's "
             f"single-thread timings{' — QUICK timings: a smoke check' if report['table'].get('quick') else ''}", ""]
    alt = any("alternative" in m for m in report["cells"])
    lines.append("| cell | " + " | ".join(f"T = {T}" for T in show)
                 + f" | stops paying beyond (< {cfg.min_gain:.0%} per doubling) | dominant term there |"
                 + (" if the residual divided by T: stops beyond, speedup at T = "
                    f"{max(report['ladder'])} |" if alt else ""))
    lines.append("|---" * (len(show) + 3 + alt) + "|")
    for m in report["cells"]:
        cell = matrix.get(m["cell"])
        row = []
        for T in show:
            p = m["predictions"][str(T)]
            row.append(f"{fmt_rate(p['samples_per_s'])} ({p['speedup']:.2f}×)")
        stop = m["stops_paying_beyond"]
        dom = (f"{PHASE_LABELS[m['dominant_term']]} ({m['dominant_share']:.0%})" if stop is not None else "–")
        lines.append(f"| {cell.name} ({cell.layers_str}, batch {cell.batch}, {cell.optimizer}) | " + " | ".join(row)
                     + f" | {_stop_text(stop, report)} | {dom} |" + (_alt_text(m, report) if alt else ""))
    t = report["table"]
    steps = t.get("fastnn_step_s") or {}
    if steps:
        lines += ["", "### Calibration: today's fused step on 1 thread (fastnn@1t, measured here) against the sum of "
                      "the items at T = 1", "", "| cell | measured step µs | items µs | residual µs (" + cfg.residual
                  + ") | items ÷ measured |", "|---|---|---|---|---|"]
        for m in report["cells"]:
            got = steps.get(m["cell"])
            if not got:
                continue
            terms = m["predictions"]["1"]["terms"]
            items = sum(v for k, v in terms.items() if k != "residual")
            lines.append(f"| {m['cell']} | {got * 1e6:.3g} | {items * 1e6:.3g} | {terms['residual'] * 1e6:.3g} | "
                         f"{items / got:.0%} |")
    meas = report.get("measured")
    if meas:
        lines += ["", "### The model against compare.py --threads 1,2 (fastnn's default path, the kernel of that "
                      "run's commit)", "", "| cell | predicted T = 1 | measured 1 thread | predicted T = 2 | "
                      "measured 2 threads | predicted 2 ÷ 1 | measured 2 ÷ 1 |", "|---|---|---|---|---|---|---|"]
        for m in report["cells"]:
            got = meas.get(m["cell"])
            if not got:
                continue
            p1, p2 = m["predictions"]["1"]["samples_per_s"], m["predictions"]["2"]["samples_per_s"]
            g1, g2 = got.get("1"), got.get("2")
            lines.append(f"| {m['cell']} | {fmt_rate(p1)} | {fmt_rate(g1)} | {fmt_rate(p2)} | {fmt_rate(g2)} | "
                         f"{p2 / p1:.2f}× | " + (f"{g2 / g1:.2f}×" if g1 and g2 else "–") + " |")
    lines += ["", "### The per-phase times it used: µs per step for thread 0 (measured single-threaded at each "
                  "T's share; barriers and launch from the parameters below); ⁺ = raised to the DRAM floor", ""]
    lines.append("| cell | term | " + " | ".join(f"T = {T}" for T in show) + " |")
    lines.append("|---" * (len(show) + 2) + "|")
    for m in report["cells"]:
        for ph in PHASES:
            vals = []
            for T in show:
                p = m["predictions"][str(T)]
                v = p["terms"][ph] * 1e6
                vals.append(f"{v:.3g}" + ("⁺" if p["floors"].get(ph, 0) > 0 else ""))
            if all(v in ("0", "0⁺") for v in vals):
                continue
            lines.append(f"| {m['cell']} | {PHASE_LABELS[ph]} | " + " | ".join(vals) + " |")
        lines.append(f"| {m['cell']} | **step** | " + " | ".join(
            f"**{m['predictions'][str(T)]['step_s'] * 1e6:.3g}**" for T in show) + " |")
    bw = t.get("bandwidth_gbs", {})
    lines.append("")
    lines.append("- **Measured here**: stream triad " + ", ".join(f"{k} thread(s) {v:.1f} GB/s" for k, v in bw.items())
                 + (f"; a Numba parallel-region launch on 2 threads {t['launch_us']:.2f} µs (threading layer "
                    f"{t.get('threading_layer')})" if t.get("launch_us") is not None else "; no region launch "
                    "(one core)") + f"; {len(t['items'])} item timings in {t.get('measure_s', 0):.1f} s.")
    lines.append(f"- **Parameters**: {cfg.barriers:g} barriers per step at " + ", ".join(
        f"{cfg.barrier_s(T) * 1e6:.2f} µs (T = {T})" for T in (2, 8, 64))
                 + (f" (scaled to the given --barrier-us {cfg.barrier_us:g} at T = 2)" if cfg.barrier_us is not None
                    else f" ({cfg.barrier_base_us:g} + {cfg.barrier_log_us:g}·log2 T µs)")
                 + ("; one region launch per epoch" if cfg.launches_per_step is None else
                    f"; {cfg.launches_per_step:g} region launch(es) per step")
                 + " at the measured 2-thread cost × log2 T; residual: " + {
                     "constant": "the same on every thread at every T", "split": "divided by T",
                     "none": "left out"}[cfg.residual] + "; "
                   f"DRAM floor for elementwise/reduction/update passes whose data exceed {cfg.cache_mib:g} MiB, "
                   f"bandwidth BW(1), BW(2) measured, BW(T > 2) = min(T·BW(1), {cfg.socket_bw_gbs:g} GB/s).")
    lines.append("- **Assumes**: one core of this machine's speed per thread (no turbo loss, SMT or NUMA); GEMMs "
                 "compute-bound; each item timed alone on warm data (a real step shares the cache between passes: "
                 "check T = 1 against fastnn@1t with --measured); thread 0 has the largest share of every item.")
    lines.append(f"- **Command**: `{report['command']}`")
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.manycore_model", description=__doc__.splitlines()[0])
    p.add_argument("--cells", default=",".join(matrix.CELLS), help="comma-separated cells")
    p.add_argument("--quick", action="store_true", help="short timings (2 ms blocks, 3 repeats): a smoke check")
    p.add_argument("--show", default=",".join(str(t) for t in SHOW), help="thread counts in the tables")
    p.add_argument("--ladder", default=",".join(str(t) for t in LADDER), help=argparse.SUPPRESS)
    p.add_argument("--barriers", type=float, default=4.0, help="barriers per step (default 4)")
    p.add_argument("--barrier-base-us", type=float, default=0.2)
    p.add_argument("--barrier-log-us", type=float, default=0.3, help="barrier(T) = base + log · log2(T) µs")
    p.add_argument("--barrier-us", type=float, default=None,
                   help="a measured 2-thread barrier in µs: scales the barrier curve to it at T = 2")
    p.add_argument("--launches-per-step", type=float, default=None,
                   help="parallel-region launches per step (default: one region per epoch of the cell's full "
                        "size; 1: a region per step)")
    p.add_argument("--socket-bw-gbs", type=float, default=100.0,
                   help="the DRAM bandwidth all cores of the modelled socket share (default 100 GB/s)")
    p.add_argument("--cache-mib", type=float, default=32.0,
                   help="data beyond this per pass come from DRAM (default 32 MiB)")
    p.add_argument("--residual", choices=RESIDUAL_MODES, default="constant",
                   help="today's measured 1-thread step minus the items: kept on every thread (constant, default), "
                        "divided by T (split), or left out (none)")
    p.add_argument("--min-gain", type=float, default=0.10, help="'stops paying': a doubling gains less than this")
    p.add_argument("--timings", default=None, help="use this saved timing table (--save-timings) instead of measuring")
    p.add_argument("--save-timings", default=None, help="write the measured timing table here")
    p.add_argument("--measured", default=None,
                   help="a compare.py JSON run with --threads 1,2: prints the measured 1- and 2-thread rates beside "
                        "the predicted ones")
    p.add_argument("--json", default=None, help="write the full results here")
    p.add_argument("--markdown", default=None, help="also write the Markdown report here")
    p.add_argument("--measure-child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    try:
        args.cell_list = [matrix.get(c) for c in args.cells.split(",") if c]
        args.show_list = [int(t) for t in args.show.split(",") if t]
        args.ladder_list = sorted({int(t) for t in args.ladder.split(",") if t} | {1})
    except ValueError as exc:
        p.error(str(exc))
    if any(T not in args.ladder_list for T in args.show_list):
        p.error(f"--show: thread counts must be among {args.ladder_list}")
    return args


def main(argv=None):
    args = parse_args(argv)
    names = [c.name for c in args.cell_list]
    if args.measure_child:
        return measure_child(args.measure_child, names, args.ladder_list, args.quick)
    command = "python -m benchmarks.manycore_model" + "".join(" " + shlex.quote(a) for a in
                                                              (sys.argv[1:] if argv is None else argv))
    cfg = Config(barriers=args.barriers, barrier_base_us=args.barrier_base_us, barrier_log_us=args.barrier_log_us,
                 barrier_us=args.barrier_us, launches_per_step=args.launches_per_step,
                 socket_bw_gbs=args.socket_bw_gbs, cache_mib=args.cache_mib, min_gain=args.min_gain,
                 residual=args.residual)
    if args.timings:
        table = json.loads(Path(args.timings).read_text())
    else:
        print(f"measuring {', '.join(names)} (single-threaded item timings, child process) ...", file=sys.stderr,
              flush=True)
        table = measure(names, args.ladder_list, args.quick)
        if args.save_timings:
            Path(args.save_timings).write_text(json.dumps(table, indent=1))
    report = {"command": command, "config": vars(cfg), "ladder": args.ladder_list, "show": args.show_list,
              "table": table, "cells": [model_cell(c, table, cfg, args.ladder_list) for c in args.cell_list]}
    if cfg.residual == "constant" and table.get("fastnn_step_s"):
        # the optimistic reading beside the conservative one: the residual shrinks with the row blocks
        alt_cfg = Config(**dict(vars(cfg), residual="split"))
        for m, cell in zip(report["cells"], args.cell_list):
            a = model_cell(cell, table, alt_cfg, args.ladder_list)
            m["alternative"] = {"residual": "split", "stops_paying_beyond": a["stops_paying_beyond"],
                                "dominant_term": a.get("dominant_term"),
                                "speedup_max": a["predictions"][str(max(args.ladder_list))]["speedup"],
                                "predictions": a["predictions"]}
    if args.measured:
        report["measured"] = measured_scaling(args.measured)
    text = markdown(report, cfg)
    report["markdown"] = text
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    if args.markdown:
        Path(args.markdown).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
