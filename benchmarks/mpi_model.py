"""When does data-parallel training pay? A cost model from allreduce and step times measured here (issue 19,
item 4; item 2's ranks × threads rule).

    python -m benchmarks.mpi_model [--quick] [--cells tabular,mnist1024] [--nodes 2,4,8] [--json out.json]
    python -m benchmarks.mpi_model --save-measured m.json          # measure once ...
    python -m benchmarks.mpi_model --measured m.json --nodes 2,8,64 --average-every 16   # ... re-predict, no measuring
    timeout 180 mpiexec -n 2 python -m benchmarks.mpi_model --step-profile --cells tabular   # the engine's step, by part

Measured here:
1. **Allreduce**, ``mpiexec -n 2`` (mpich, the launcher next to this Python) of a small mpi4py program: an
   in-place ``Allreduce(SUM)`` of float32 and float64 buffers of 4 B to 64 MiB; per size, ``--rounds``
   rounds of enough repetitions to last ``min_time``, each round's time the slower rank's (a MAX reduce),
   the median over rounds. Fit t = α + β·bytes by least squares on the medians, weighted by 1/t (relative
   residuals: an unweighted fit is decided by the 64 MiB point alone and gives a meaningless α); the fit and
   every residual are printed. **This is loopback**: two ranks on one machine, mpich's intranode path (shared
   memory, or TCP, as mpich chooses) — no network is measured. Its α and β are this machine's floor: the
   software cost of one allreduce and the memory-copy-and-add rate.
2. **The step** of each cell on one process: fastnn's public API, ``net.fit(X, y, epochs=1, batch_size=b)``
   (the cell's network, optimizer and data, matrix.py; the default path: the fused whole-epoch kernel),
   ``--warmup`` fits untimed (compilation), then ``--rounds`` rounds, each timing one epoch at every thread
   count in turn (``with fastnn.num_threads(T)``; the order rotates every round); the epoch's time from the
   fit's ``history["time"]`` (the whole call's wall time is kept too), median over rounds, ÷ steps per epoch =
   seconds per step. At the cell's batch b and at b/2, b/4, b/8 (``--fractions``): strong scaling needs the
   step at smaller local batches (between measured batches: linear interpolation; below the smallest: the
   line through the two smallest, never below the smallest step × b / b_min; above the largest — only the
   "local batch that would pay" needs it —: the line through the two largest, never below the largest step).
   The gradient's bytes are the
   network's public ``NeuralNetwork.n_params`` × its dtype's itemsize (fastnn keeps all gradients in one flat
   buffer: one allreduce of that size per step). ``--engine layer`` measures ``fit(..., fused=False)``
   instead: the per-layer path (the distributed engine's for networks the fused step cannot express). The
   distributed fused engine returns to Python once per step (one kernel call on the epoch's held records,
   the signal guard, the mpi4py call) and makes the update as a separate pass: the whole-epoch kernel
   measured here does neither, so the model is optimistic by that much per step for short steps
   (``--step-overhead-us`` adds it).
Both run in child processes with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE removed from their environment
(compare.child_env(): this workplace sets them; users' machines do not); the header says which were set.

Predicted, for K = 2 ... 64 nodes, each node this machine running one rank with all its cores (the default
thread count measured here), on three networks. A ring allreduce of n bytes over P ranks takes
    t_ring(n, P) = 2(P−1)/P · n · max(1/bandwidth, β_host) + 2(P−1) · α_net
(reduce-scatter then allgather, 2(P−1) steps of n/P bytes each; Patarasuk & Yuan 2009, the algorithm of
Horovod and NCCL; mpich's large-message algorithm, reduce-scatter + allgather, has the same bandwidth term).
β_host is the measured loopback β (a node cannot copy and add faster than its memory lets it;
``--no-host-floor`` drops it). α_net is an assumption per network (``--alpha-us``): 50 µs per ring step for
1 Gbit/s Ethernet with TCP, 20 µs for 10 Gbit/s, 5 µs for a 100 Gbit/s InfiniBand-like fabric. What the
literature says: small allreduces are latency-bound — issue 19 cites gloo's allreduce of 1 KB between two
servers at ~0.35 ms over TCP and ~39 µs over InfiniBand (not re-checked here), which is why PyTorch's DDP
(Li et al., "PyTorch Distributed", VLDB 2020) and Horovod fuse gradients into buckets (DDP: 25 MB; Horovod's
tensor fusion: 64 MB) before they allreduce; fastnn's single flat gradient buffer is one such bucket. Two
nodes make a ring of 2 steps, so gloo's figures are ~175 µs and ~20 µs per step: the defaults here are
optimistic beside gloo (whose figures include its own software path); ``--alpha-us 1G=175,100G=20``
takes gloo's. Per step, fastnn's distributed fused engine (fastnn/engines/distributed.py) makes ONE allreduce,
of the gradient (failures and stops travel in it as NaN; loss and correct counts are reduced once per epoch);
the per-layer engine also makes a 24-byte status allreduce, counted with ``--status``.

* weak scaling: every rank keeps the cell's batch b (global batch K·b: the usual data-parallel setting);
  samples/s = K·b / (t_step(b) + t_comm); speedup over one node at batch b.
* strong scaling: the cell's batch b is the global batch, split over K ranks (ceil(b/K) rows each; K > b
  is not possible); samples/s = b / (t_step(b/K) + t_comm); speedup over one node at batch b.
* no overlap: the allreduce starts after the backward pass (fastnn's engine: one allreduce after the step).
  overlap: the allreduce runs during the backward pass (DDP's bucketed overlap, ideal): exposed time =
  max(0, t_comm − f_bw · t_step), f_bw = the backward's share of the step's FLOPs, (4W − 2W₁)/(6W − 2W₁).
* pays: speedup > 1 and efficiency (speedup / K) ≥ 50 % (``--min-efficiency``).
* what would make it pay: (a) a larger per-rank batch — the smallest local batch with ≥ 50 % efficiency
  at the largest K (weak scaling: t_step(b) ≥ t_comm); a larger global batch changes the optimisation (more
  epochs may be needed to the same loss), so it is not free; (b) **periodic model averaging** (local SGD:
  Stich 2019, Lin et al. 2020), a different algorithm — not synchronous SGD, its results differ from one
  process with the global batch —: each rank takes H local steps, then one allreduce averages the parameters
  (same bytes as the gradient; optimizer state stays local): t = t_step(b) + t_ring(params)/H.

Ranks × threads (issue 19, item 2): a node of C cores runs either one rank with C threads or C ranks with one
thread (or between). At the same batch per node b, C ranks × 1 thread take t_1(b/C) + the node-local
allreduce (the loopback fit, ring-extrapolated past 2 ranks), 1 rank × C threads takes t_C(b); across K nodes
both add the network ring, over K ranks or over K·C ranks (the latency term grows C×; with ranks placed node
by node only one ring edge per node crosses the network, so the bandwidth term does not). The tool prints,
per cell, which wins and by how much.

Assumptions (printed): a node = this machine (its cores, its measured step); the network's full rate is
available to the allreduce (no contention, no TCP overhead, ``--link-efficiency`` to lower it); α_net is
per ring step; the data loading is free and every rank's step takes the same time (no stragglers); the
status allreduce is latency-bound like any 24-byte message.
"""
import argparse
import json
import math
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, asdict
from pathlib import Path

from . import matrix

NODES = (2, 4, 8, 16, 32, 64)
#: key -> (label, Gbit/s, assumed α per ring step in µs)
NETWORKS = {
    "1G": ("1 Gbit/s Ethernet (TCP)", 1.0, 50.0),
    "10G": ("10 Gbit/s Ethernet (TCP)", 10.0, 20.0),
    "100G": ("100 Gbit/s InfiniBand-like", 100.0, 5.0),
}
#: the distributed fused engine's cost per step beyond the whole-epoch kernel's: fit(distributed=True) under
#: `mpiexec -n 1` against one process, 100-100-5 Adam at batch 200, 1 thread, the minimum of 15 epochs of 256
#: steps (a loaded 2-core machine): 125.5-139.8 µs against 110.9-114.8 µs a step, ~15-25 µs, when a step's
#: kernel call unboxed the records' ~40 arrays (~7 µs). Held records (kernels/epoch_distributed.py) cut the
#: engine's loop from 12.2 to 3.9 µs a step (CPU, the kernel replaced by one that returns at once, same
#: process, alternating epochs): ~20 − 8.3 ≈ 12 µs now (an estimate, not re-measured whole: the rest is the
#: update as its own pass over the parameters). The default stays 20 until benchmarks/README.md's table,
#: computed with it, is re-run
STEP_OVERHEAD_US = 20.0
STATUS_BYTES = 24          # the per-layer distributed engine's status Allreduce of 3 float64 per step
MIN_EFFICIENCY = 0.5
FRACTIONS = (1, 2, 4, 8)
QUICK_FRACTIONS = (1, 4)
SIZES = tuple(1 << k for k in range(2, 27))             # 4 B ... 64 MiB
QUICK_SIZES = tuple(1 << k for k in range(2, 21, 2))    # 4 B ... 1 MiB, every 4×


def log(*msg):
    print(*msg, file=sys.stderr, flush=True)


# -- the arithmetic (pure functions: tests/test_benchmarks_mpi_model.py) ---------------------------------------
@dataclass
class Network:
    key: str
    label: str
    gbits: float
    alpha_us: float

    @property
    def bytes_per_s(self):
        return self.gbits * 1e9 / 8


@dataclass
class Config:
    networks: list = field(default_factory=lambda: [Network(k, *v) for k, v in NETWORKS.items()])
    nodes: tuple = NODES
    min_efficiency: float = MIN_EFFICIENCY
    host_floor: bool = True          # per ring byte, at least the measured loopback β
    status: bool = False             # count a 24-byte status allreduce every step (the per-layer engine's)
    link_efficiency: float = 1.0     # share of the link rate the allreduce gets
    average_every: int = 8           # H of periodic averaging
    dtype: str = "float32"           # which loopback fit the model uses (the cells' dtype)
    step_overhead_s: float = 0.0     # per distributed step: the engine's return to Python (module docstring)


def fit_alpha_beta(points):
    """(α, β, residuals) of t = α + β·bytes by least squares on ``points`` [(bytes, seconds)], weighted by 1/t
    (minimises the relative residuals); α, β >= 0 (a negative one is set to 0 and the other refitted).
    residuals: [(bytes, measured s, fitted s, (fitted − measured) / measured)]."""
    import numpy as np
    x = np.array([p[0] for p in points], float)
    t = np.array([p[1] for p in points], float)
    if len(x) < 2 or (t <= 0).any():
        raise ValueError("need at least two sizes with positive times")
    w = 1.0 / t
    A = np.stack([w, x * w], axis=1)
    (a, b), *_ = np.linalg.lstsq(A, np.ones_like(t), rcond=None)
    if b < 0:
        a, b = float(np.sum(w * w * t) / np.sum(w * w)), 0.0   # t = α: weighted mean
    if a < 0:
        a, b = 0.0, float(np.sum(w * w * x * t) / np.sum(w * w * x * x))
    res = [(int(xi), float(ti), float(a + b * xi), float((a + b * xi - ti) / ti)) for xi, ti in zip(x, t)]
    return float(a), float(b), res


def ring_allreduce_s(nbytes, ranks, bytes_per_s, alpha_s, host_beta=0.0):
    """A ring allreduce of ``nbytes`` over ``ranks``: 2(P−1)/P · n · max(1/bandwidth, β_host) + 2(P−1)·α."""
    if ranks <= 1 or nbytes <= 0:
        return 0.0
    per_byte = max(1.0 / bytes_per_s if bytes_per_s else 0.0, host_beta)
    return 2.0 * (ranks - 1) / ranks * nbytes * per_byte + 2.0 * (ranks - 1) * alpha_s


def local_allreduce_s(nbytes, ranks, fit):
    """An allreduce among ``ranks`` ranks of one node from the loopback fit of 2 ranks (t = α + β·n): a ring
    whose 2 steps at P = 2 cost α/2 each and whose ring bytes (n at P = 2) cost β each."""
    if ranks <= 1 or nbytes <= 0:
        return 0.0
    return ring_allreduce_s(nbytes, ranks, None, fit["alpha_s"] / 2.0, fit["beta_s_per_byte"])


def network_comm_s(grad_bytes, ranks, net, fit, cfg):
    """Seconds of communication per synchronous step over ``ranks`` ranks on network ``net``: the gradient's
    ring allreduce (+ the status allreduce)."""
    host = fit["beta_s_per_byte"] if (cfg.host_floor and fit) else 0.0
    bw = net.bytes_per_s * cfg.link_efficiency
    t = ring_allreduce_s(grad_bytes, ranks, bw, net.alpha_us * 1e-6, host)
    if cfg.status:
        t += ring_allreduce_s(STATUS_BYTES, ranks, bw, net.alpha_us * 1e-6, host)
    return t


def backward_share(cell):
    """The backward pass's share of the step's GEMM FLOPs: (4W − 2W₁) / (6W − 2W₁)."""
    W, W1 = cell.weights, cell.first_weights
    return (4 * W - 2 * W1) / (6 * W - 2 * W1)


def exposed(comm, step, cell, overlap):
    return max(0.0, comm - backward_share(cell) * step) if overlap else comm


def step_at(steps, batch):
    """Seconds per step at ``batch`` rows from measured ``steps`` {batch: seconds} (module docstring)."""
    pts = sorted((int(b), float(s)) for b, s in steps.items())
    if not pts:
        raise ValueError("no measured step")
    if len(pts) == 1:
        b0, s0 = pts[0]
        return s0 * batch / b0
    for (b0, s0), (b1, s1) in zip(pts, pts[1:]):
        if b0 <= batch <= b1:
            return s0 + (s1 - s0) * (batch - b0) / (b1 - b0)
    if batch < pts[0][0]:
        (b0, s0), (b1, s1) = pts[0], pts[1]
        return max(s0 + (s1 - s0) * (batch - b0) / (b1 - b0), s0 * batch / b0)
    (b0, s0), (b1, s1) = pts[-2], pts[-1]
    return max(s0 + (s1 - s0) * (batch - b0) / (b1 - b0), s1)


def pays(speedup, K, min_eff=MIN_EFFICIENCY):
    return speedup > 1.0 and speedup / K >= min_eff


def verdict(by_k, min_eff=MIN_EFFICIENCY):
    """{"pays": [K that pay], "up_to": the largest K up to which every K pays (None: K = 2 already does
    not), "stops_at": the first K that does not pay (None: all do)} from {K: speedup} (None = not possible)."""
    ks = sorted(by_k)
    ok = [K for K in ks if by_k[K] is not None and pays(by_k[K], K, min_eff)]
    up_to, stops = None, None
    for K in ks:
        if K in ok:
            up_to = K
        else:
            stops = K
            break
    return {"pays": ok, "up_to": up_to, "stops_at": stops}


def predict(cell, meas, net, cfg, K, scaling="weak", overlap=False, average_every=None):
    """One prediction: {"samples_per_s", "speedup", "efficiency", "step_s", "comm_s", "local_batch"} of
    ``cell`` on K nodes of network ``net`` (None if the local batch would be < 1 row)."""
    c = meas["cells"][cell.name]
    T = str(meas["node_threads"])
    steps = c["steps"][T]
    b = cell.batch
    base = step_at(steps, b)
    local = b if scaling == "weak" else math.ceil(b / K)
    if scaling == "strong" and K > b:
        return None
    t = step_at(steps, local) + cfg.step_overhead_s
    comm = network_comm_s(c["grad_bytes"], K, net, meas["allreduce"]["fit"][cfg.dtype], cfg)
    if average_every:
        comm /= average_every
    comm = exposed(comm, t, cell, overlap) if not average_every else comm
    step = t + comm
    global_rows = K * b if scaling == "weak" else b
    rate = global_rows / step
    speedup = rate / (b / base)
    return {"samples_per_s": rate, "speedup": speedup, "efficiency": speedup / K, "step_s": t, "comm_s": comm,
            "local_batch": local}


def min_local_batch(cell, meas, net, cfg, K, overlap=False, limit=1 << 20):
    """The smallest per-rank batch of the cell's batch × 2^k (k >= 0: the cell's own batch if it already pays)
    at which weak scaling on K nodes reaches cfg.min_efficiency; None past ``limit``."""
    c = meas["cells"][cell.name]
    steps = c["steps"][str(meas["node_threads"])]
    comm = network_comm_s(c["grad_bytes"], K, net, meas["allreduce"]["fit"][cfg.dtype], cfg)
    b = cell.batch
    while b <= limit:
        t = step_at(steps, b)
        if t / (t + cfg.step_overhead_s + exposed(comm, t, cell, overlap)) >= cfg.min_efficiency:
            return b
        b *= 2
    return None


def min_average_every(cell, meas, net, cfg, K, limit=1 << 16):
    """The smallest H (power of two) at which periodic averaging on K nodes reaches cfg.min_efficiency."""
    c = meas["cells"][cell.name]
    t = step_at(c["steps"][str(meas["node_threads"])], cell.batch)
    comm = network_comm_s(c["grad_bytes"], K, net, meas["allreduce"]["fit"][cfg.dtype], cfg)
    H = 1
    while H <= limit:
        if t / (t + comm / H) >= cfg.min_efficiency:
            return H
        H *= 2
    return None


def model_cell(cell, meas, cfg):
    """Every prediction and verdict for one cell (the JSON's per-cell entry)."""
    out = {"cell": cell.name, "batch": cell.batch, "grad_bytes": meas["cells"][cell.name]["grad_bytes"],
           "backward_share": backward_share(cell), "networks": {}}
    Kmax = max(cfg.nodes)
    for net in cfg.networks:
        entry = {}
        for scaling in ("weak", "strong"):
            for overlap in (False, True):
                key = f"{scaling}{'_overlap' if overlap else ''}"
                preds = {K: predict(cell, meas, net, cfg, K, scaling, overlap) for K in cfg.nodes}
                entry[key] = {"predictions": {str(K): p for K, p in preds.items()},
                              "verdict": verdict({K: (p["speedup"] if p else None) for K, p in preds.items()},
                                                 cfg.min_efficiency)}
        H = cfg.average_every
        avg = {K: predict(cell, meas, net, cfg, K, "weak", False, average_every=H) for K in cfg.nodes}
        entry[f"averaging_H{H}"] = {"predictions": {str(K): p for K, p in avg.items()},
                                    "verdict": verdict({K: p["speedup"] for K, p in avg.items()},
                                                       cfg.min_efficiency)}
        entry["min_local_batch"] = {str(Kmax): min_local_batch(cell, meas, net, cfg, Kmax)}
        entry["min_average_every"] = {str(Kmax): min_average_every(cell, meas, net, cfg, Kmax)}
        out["networks"][net.key] = entry
    return out


def ranks_threads(cell, meas, cfg, K_nodes=8):
    """The ranks × threads comparison for one cell on a node of C cores (C = the default thread count measured
    here), at the cell's batch per node: {"one_node": {...}, "<network>": {...}} each with the step seconds of
    "1xC" (one rank, C threads) and "Cx1" (C ranks, one thread each) and the winner; None if the 1-thread
    and the C-thread steps were not both measured."""
    c = meas["cells"][cell.name]
    C = int(meas["node_threads"])
    if C < 2 or "1" not in c["steps"] or str(C) not in c["steps"]:
        return None
    fit = meas["allreduce"]["fit"][cfg.dtype]
    b, g = cell.batch, c["grad_bytes"]
    tC, t1 = step_at(c["steps"][str(C)], b), step_at(c["steps"]["1"], math.ceil(b / C))
    local = local_allreduce_s(g, C, fit) + (local_allreduce_s(STATUS_BYTES, C, fit) if cfg.status else 0.0) \
        + cfg.step_overhead_s
    out = {"cores": C, "one_node": _winner(b, tC, t1 + local, {"step_1xC": tC, "step_Cx1": t1, "local_ar": local})}
    for net in cfg.networks:
        a = tC + cfg.step_overhead_s + network_comm_s(g, K_nodes, net, fit, cfg)
        # C ranks per node, placed node by node: a ring over K·C ranks; its network edges carry the same bytes,
        # its latency term has K·C steps; the local edges are no slower than the network's
        r = t1 + cfg.step_overhead_s + network_comm_s(g, K_nodes * C, net, fit, cfg)
        out[net.key] = _winner(K_nodes * b, a, r, {"nodes": K_nodes})
    return out


def _winner(rows, t_threads, t_ranks, extra):
    win = "ranks" if t_ranks < t_threads else "threads"
    return dict(extra, threads_s=t_threads, ranks_s=t_ranks, threads_rate=rows / t_threads,
                ranks_rate=rows / t_ranks, winner=win, ratio=t_threads / t_ranks)


# -- measuring ---------------------------------------------------------------------------------------------------
def find_mpiexec():
    """mpiexec next to this Python (the mpich wheel installs it there; a venv's python is a link, so also next
    to the interpreter it points to), else on PATH."""
    for d in (os.path.dirname(sys.executable), os.path.dirname(os.path.realpath(sys.executable))):
        found = shutil.which("mpiexec", path=d)
        if found:
            return found
    return shutil.which("mpiexec")


def have_mpi4py():
    import importlib.util
    return importlib.util.find_spec("mpi4py") is not None


def allreduce_child(out_path, sizes, rounds, min_time):
    """(under mpiexec) Time in-place Allreduce(SUM) for every size and dtype; rank 0 writes the JSON."""
    import numpy as np
    from mpi4py import MPI
    comm = MPI.COMM_WORLD
    rank = comm.Get_rank()
    res = {"ranks": comm.Get_size(), "library": MPI.Get_library_version().strip().splitlines()[:3],
           "mpi4py": __import__("mpi4py").__version__, "processor": MPI.Get_processor_name(),
           "hosts": sorted(set(comm.allgather(MPI.Get_processor_name()))), "times": {}}
    # warm-up (not timed): the first allreduces of a job pay mpich's connection and buffer set-up (~1 ms here)
    warm = np.zeros(1 << 14, np.float64)
    t_end = time.perf_counter() + max(0.2, 20 * min_time)
    while comm.allreduce(time.perf_counter() < t_end, op=MPI.LAND):
        for n in (1, 64, 1 << 14):
            comm.Allreduce(MPI.IN_PLACE, warm[:n], op=MPI.SUM)
    for dtype in ("float32", "float64"):
        item = np.dtype(dtype).itemsize
        rows = res["times"][dtype] = {}
        for nbytes in sizes:
            if nbytes % item:
                continue
            buf = np.zeros(nbytes // item, dtype)      # zeros: the sums stay 0, no overflow or denormals
            comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
            reps = 1
            while True:                                # both ranks agree on the repetitions (MAX)
                comm.Barrier()
                t0 = time.perf_counter()
                for _ in range(reps):
                    comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
                dt = comm.allreduce(time.perf_counter() - t0, op=MPI.MAX)
                if dt >= min_time or reps >= 1 << 16:
                    break
                reps = min(1 << 16, max(reps * 2, int(reps * min_time / max(dt, 1e-9) * 1.2)))
            times = []
            for _ in range(rounds):
                comm.Barrier()
                t0 = time.perf_counter()
                for _ in range(reps):
                    comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
                times.append(comm.allreduce(time.perf_counter() - t0, op=MPI.MAX) / reps)
            rows[str(nbytes)] = {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
                                 "reps": reps, "rounds": rounds}
    if rank == 0:
        Path(out_path).write_text(json.dumps(res, indent=1))
    return 0


def measure_allreduce(sizes, rounds, min_time, timeout=1800):
    """Run allreduce_child under ``mpiexec -n 2`` with compare.child_env(); the times and both fits."""
    from . import compare
    mpiexec = find_mpiexec()
    if mpiexec is None or not have_mpi4py():
        raise RuntimeError("allreduce needs mpi4py and mpiexec (pip install -e '.[mpi]')")
    env, removed = compare.child_env()
    with tempfile.TemporaryDirectory(prefix="fastnn-mpimodel-") as tmp:
        out = Path(tmp) / "allreduce.json"
        cmd = [mpiexec, "-n", "2", sys.executable, "-m", "benchmarks.mpi_model", "--allreduce-child", str(out),
               "--sizes", ",".join(str(s) for s in sizes), "--rounds", str(rounds), "--min-time", str(min_time)]
        res = subprocess.run(cmd, cwd=compare.ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        if res.returncode or not out.exists():
            raise RuntimeError(f"allreduce measurement failed (exit code {res.returncode}): "
                               f"{(res.stderr or res.stdout).strip()[-2000:]}")
        data = json.loads(out.read_text())
    data["mpiexec"] = mpiexec
    data["env_removed"] = removed
    data["transport"] = ("loopback: 2 ranks on one machine, mpich's intranode path (shared memory or TCP, as "
                         "mpich chooses); no network measured")
    data["fit"] = {dt: fit_table(rows) for dt, rows in data["times"].items()}
    return data


def fit_table(rows):
    a, b, res = fit_alpha_beta([(int(n), r["median_s"]) for n, r in rows.items()])
    return {"alpha_s": a, "beta_s_per_byte": b, "bandwidth_gbs": (1e-9 / b) if b > 0 else None,
            "residuals": [{"bytes": n, "measured_s": m, "fitted_s": f, "relative": r} for n, m, f, r in res]}


def step_child(out_path, cell_names, thread_spec, fractions, rounds, warmup, quick, engine="fused"):
    """(one process) Median seconds per step of each cell at each batch and thread count; writes the JSON."""
    import numpy as np
    import fastnn as fnn
    max_t = fnn.threads.max_threads()
    default = fnn.get_num_threads()
    threads = sorted({default if t == "default" else int(t) for t in thread_spec} & set(range(1, max_t + 1)))
    fused_opt = "auto" if engine == "fused" else False
    out = {"default_threads": default, "threads": threads, "cells": {}, "quick": quick, "engine": engine,
           "fastnn": getattr(fnn, "__version__", "?")}
    for name in cell_names:
        cell = matrix.get(name)
        X, y = matrix.make_data(cell, quick=quick)
        entry = out["cells"][name] = {"steps": {str(t): {} for t in threads},
                                      "wall_steps": {str(t): {} for t in threads}}
        for f in fractions:
            b = max(1, cell.batch // f)
            n = (len(X) // b) * b
            Xb, yb = X[:n], y[:n]
            net = matrix.fastnn_network(cell)
            entry["grad_bytes"] = int(net.n_params * np.dtype(net.dtype).itemsize)
            try:
                from fastnn.engines import fused
                entry["fused"] = bool(fused.supports(net)[0]) and engine == "fused"
            except Exception as exc:   # noqa: BLE001 - informative only
                entry["fused"] = f"unknown ({exc})"
            seed = [0]

            def fit(T):
                seed[0] += 1
                with fnn.num_threads(T):
                    t0 = time.perf_counter()
                    h = net.fit(Xb, yb, epochs=1, batch_size=b, shuffle=True, verbose=0, seed=seed[0],
                                fused=fused_opt)
                    return h["time"][0], time.perf_counter() - t0
            for _ in range(warmup):
                for T in threads:
                    fit(T)
            got = {T: [] for T in threads}
            for r in range(rounds):
                order = threads[r % len(threads):] + threads[:r % len(threads)]
                for T in order:
                    got[T].append(fit(T))
            for T in threads:
                entry["steps"][str(T)][str(b)] = statistics.median(e for e, _ in got[T]) / (n // b)
                entry["wall_steps"][str(T)][str(b)] = statistics.median(w for _, w in got[T]) / (n // b)
            log(f"[{name}] batch {b}: " + ", ".join(
                f"{T} thread(s) {entry['steps'][str(T)][str(b)] * 1e6:.4g} µs/step" for T in threads))
    Path(out_path).write_text(json.dumps(out, indent=1))
    return 0


def measure_steps(cell_names, thread_spec, fractions, rounds, warmup, quick, engine="fused", timeout=3600):
    from . import compare
    env, removed = compare.child_env()
    with tempfile.TemporaryDirectory(prefix="fastnn-mpimodel-") as tmp:
        out = Path(tmp) / "steps.json"
        cmd = [sys.executable, "-m", "benchmarks.mpi_model", "--step-child", str(out), "--cells",
               ",".join(cell_names), "--threads", ",".join(thread_spec), "--fractions",
               ",".join(str(f) for f in fractions), "--rounds", str(rounds), "--warmup", str(warmup),
               "--engine", engine]
        if quick:
            cmd.append("--quick")
        res = subprocess.run(cmd, cwd=compare.ROOT, env=env, stdout=subprocess.PIPE, stderr=None, text=True,
                             timeout=timeout)
        if res.returncode or not out.exists():
            raise RuntimeError(f"step measurement failed (exit code {res.returncode})")
        data = json.loads(out.read_text())
    data["env_removed"] = removed
    return data


# -- the direct measurement: K ranks × 1 thread against one process (issue 19's targets) -------------------------
def fit_child(out_path, cell_names, threads, rounds, warmup, quick, distributed):
    """(one process, or every rank of an mpiexec job) samples/s of ``net.fit`` on each cell: ``warmup`` untimed
    epochs, then ``rounds`` epochs, each timed by the fit's ``history["time"]``; rank 0 writes the medians.
    Distributed: ``batch_size`` is the cell's batch / K (each rank's share of the same global batch)."""
    import fastnn as fnn
    rank, K = 0, 1
    if distributed:
        from mpi4py import MPI
        rank, K = MPI.COMM_WORLD.Get_rank(), MPI.COMM_WORLD.Get_size()
    fnn.set_num_threads(threads)
    out = {}
    for name in cell_names:
        cell = matrix.get(name)
        X, y = matrix.make_data(cell, quick=quick)
        net = matrix.fastnn_network(cell)
        kw = dict(epochs=1, verbose=0, batch_size=cell.batch // K)
        if distributed:
            kw["distributed"] = True
        for _ in range(warmup):
            net.fit(X, y, **kw)
        times = [net.fit(X, y, seed=r + 1, **kw)["time"][0] for r in range(rounds)]
        out[name] = {"samples_per_s": len(X) / statistics.median(times), "epoch_s": times, "rows": len(X),
                     "global_batch": cell.batch // K * K, "ranks": K, "threads": threads}
    if rank == 0:
        Path(out_path).write_text(json.dumps(out, indent=1))
    return 0


STEP_PARTS = {
    "epoch": "fit(distributed=True): the epoch's time ÷ its global steps (history['time'])",
    "loop": "the engine's loop alone: the same fit with a step kernel that returns at once (CPU time)",
    "call": "one call of the step kernel that does nothing (the unboxing of its arguments)",
    "gradient": "the step kernel: this rank's rows of a global batch (forward, loss, backward)",
    "update": "the step kernel: the update of a summed gradient (every rank makes it)",
    "allreduce": "mpi4py's in-place Allreduce(SUM) of the flat gradient buffer",
}


def step_profile(cell_names, rounds, warmup, quick, reps=300):
    """(under ``mpiexec -n K``, every rank) the distributed fused engine's cost per global step, by part
    (STEP_PARTS), 1 thread per rank: per round, each part once in turn; medians and minima over ``rounds``
    in µs, printed by rank 0. The machine may be shared: parts are interleaved within every round, and the
    loop is CPU time (no waiting in it but the allreduce's)."""
    import numpy as np
    from mpi4py import MPI
    from numba import njit
    import fastnn as fnn
    from fastnn.engines import distributed as engine
    from fastnn.kernels import epoch_distributed
    comm = MPI.COMM_WORLD
    rank, K = comm.Get_rank(), comm.Get_size()
    fnn.set_num_threads(1)

    @njit(nogil=True)
    def nothing(held, done_rows, done_denom, step, start, r0, r1, batch, norm, blas_threads):
        return -1, -1, 0.0, 0.0, 0

    class Looped(engine.FusedDistributedEpoch):      # the engine, its kernel replaced by `nothing`
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.step_kernel = lambda *kinds: nothing

        def __call__(self, order, epoch, progress):
            t = time.process_time()
            try:
                return super().__call__(order, epoch, progress)
            finally:
                Looped.cpu = time.process_time() - t

    fused = engine.FusedDistributedEpoch
    pc = time.perf_counter
    report = {}
    for name in cell_names:
        cell = matrix.get(name)
        X, y = matrix.make_data(cell, quick=quick)
        gb, steps = cell.batch // K * K, -(-len(X) // (cell.batch // K * K))
        kw = dict(epochs=1, verbose=0, batch_size=cell.batch // K, distributed=True)
        net, looped = matrix.fastnn_network(cell), matrix.fastnn_network(cell)
        for _ in range(warmup):
            net.fit(X, y, **kw)
        engine.FusedDistributedEpoch = Looped
        try:
            looped.fit(X, y, **kw)
        finally:
            engine.FusedDistributedEpoch = fused
        # the step kernel on its own, with the records of a network of the cell (a copy: `net` is not touched)
        probe = matrix.fastnn_network(cell)
        eng = fused(engine.MPIRun(comm), probe, X, y, gb, None)
        plan = probe.plan()
        opt_kind, records = eng.runner.records(np.arange(len(X)), plan, np.uint64(0))
        kernel = epoch_distributed.step_kernel(eng.runner.loss_kind, opt_kind, eng.runner.chain)
        held = epoch_distributed.hold(*records)
        base = gb // K
        r0, r1 = rank * base, rank * base + base
        grads = plan.grads
        kernel(held, 0, 0.0, 1, 0, r0, r1, 0, float(gb), 1)
        parts = {k: [] for k in STEP_PARTS}
        for r in range(rounds):
            comm.Barrier()
            parts["epoch"].append(net.fit(X, y, seed=r + 1, **kw)["time"][0] / steps)
            engine.FusedDistributedEpoch = Looped
            try:
                comm.Barrier()
                looped.fit(X, y, seed=r + 1, **kw)
            finally:
                engine.FusedDistributedEpoch = fused
            parts["loop"].append(Looped.cpu / steps)
            comm.Barrier()
            t = pc()
            for _ in range(reps):
                kernel(held, 0, 0.0, 1, -1, 0, 0, 0, 0.0, 1)
            parts["call"].append((pc() - t) / reps)
            comm.Barrier()
            t = pc()
            for i in range(reps):
                b = i % steps
                kernel(held, 0, 0.0, 1, b * gb, r0, min(r1, len(X) - b * gb), b, float(gb), 1)
            parts["gradient"].append((pc() - t) / reps)
            grads[:] = 1e-6
            comm.Barrier()
            t = pc()
            for i in range(reps):
                kernel(held, gb, float(gb), i + 1, -1, 0, 0, 0, 0.0, 1)
            parts["update"].append((pc() - t) / reps)
            comm.Barrier()
            t = pc()
            for _ in range(reps):
                comm.Allreduce(MPI.IN_PLACE, grads, op=MPI.SUM)
            parts["allreduce"].append((pc() - t) / reps)
            grads[:] = 0
        report[name] = {k: {"median_us": statistics.median(v) * 1e6, "min_us": min(v) * 1e6} for k, v in parts.items()}
        report[name].update(ranks=K, global_batch=gb, rows_per_rank=base, steps=steps,
                            gradient_bytes=int(grads.nbytes))
    return report if rank == 0 else None


def step_profile_text(report, command):
    lines = [f"`{command}` — µs per global step, 1 thread per rank; median (min) over rounds", ""]
    for name, row in report.items():
        lines.append(f"{name}: {row['ranks']} ranks, global batch {row['global_batch']} ({row['rows_per_rank']} "
                     f"rows a rank), {row['steps']} steps, gradient {fmt_bytes(row['gradient_bytes'])}")
        for key, what in STEP_PARTS.items():
            lines.append(f"  {key:<10} {row[key]['median_us']:9.1f} ({row[key]['min_us']:7.1f})  {what}")
    return "\n".join(lines)


def ranks_vs_threads(cell_names, rounds, warmup, quick, ranks=2, timeout=3600):
    """samples/s of ``mpiexec -n ranks`` with 1 thread per rank against one process with 1 and with ``ranks``
    threads, each in its own child (compare.child_env()); the load average before and after."""
    from . import compare
    mpiexec = find_mpiexec()
    if mpiexec is None or not have_mpi4py():
        raise RuntimeError("needs mpi4py and mpiexec (pip install -e '.[mpi]')")
    env, _ = compare.child_env()
    results, load = {}, {"before": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="fastnn-mpimodel-") as tmp:
        for label, launch, threads, dist in ((f"{ranks} ranks x 1 thread", [mpiexec, "-n", str(ranks)], 1, True),
                                             ("1 process x 1 thread", [], 1, False),
                                             (f"1 process x {ranks} threads", [], ranks, False)):
            out = Path(tmp) / "fit.json"
            cmd = [*launch, sys.executable, "-m", "benchmarks.mpi_model", "--fit-child", str(out), "--cells",
                   ",".join(cell_names), "--child-threads", str(threads), "--rounds", str(rounds), "--warmup",
                   str(warmup)] + (["--quick"] if quick else []) + (["--child-distributed"] if dist else [])
            log(f"{label}: {' '.join(cmd[:4])} ...")
            res = subprocess.run(cmd, cwd=compare.ROOT, env=env, capture_output=True, text=True, timeout=timeout)
            if res.returncode or not out.exists():
                raise RuntimeError(f"{label} failed (exit code {res.returncode}): {res.stderr.strip()[-2000:]}")
            results[label] = json.loads(out.read_text())
    load["after"] = os.getloadavg()
    return {"results": results, "load_average": load}


def ranks_vs_threads_text(report, command):
    rows = report["results"]
    labels = list(rows)
    cells = list(next(iter(rows.values())))
    load = {k: ", ".join(f"{x:.2f}" for x in v) for k, v in report["load_average"].items()}
    lines = [f"`{command}` — load average (1, 5, 15 min) before {load['before']}, after {load['after']} (on "
             f"{os.cpu_count()} cores); the median epoch of each (history['time']); the same global batch",
             "", "| cell | " + " | ".join(labels) + f" | {labels[0]} ÷ {labels[1]} | {labels[0]} ÷ {labels[2]} |",
             "|---" * (len(labels) + 3) + "|"]
    for cell in cells:
        rate = [rows[lab][cell]["samples_per_s"] for lab in labels]
        lines.append(f"| {cell} | " + " | ".join(fmt_rate(r) for r in rate)
                     + f" | {rate[0] / rate[1]:.2f}× | {rate[0] / rate[2]:.2f}× |")
    return "\n".join(lines)


def machine():
    from . import compare
    info = compare.machine_info()
    info["cpu_busy_before"] = compare.cpu_busy_fraction()
    return info


# -- report ------------------------------------------------------------------------------------------------------
def fmt_rate(x):
    from .compare import fmt_rate as f
    return f(x)


def fmt_s(s):
    if s is None:
        return "–"
    if s >= 1e-3:
        return f"{s * 1e3:.3g} ms"
    return f"{s * 1e6:.3g} µs"


def fmt_bytes(n):
    for div, unit in ((1 << 20, "MiB"), (1 << 10, "KiB")):
        if n >= div:
            return f"{n / div:.3g} {unit}"
    return f"{n} B"


def _verdict_text(v, nodes):
    if v["up_to"] is None:
        return "never"
    if v["stops_at"] is None:
        return f"all K ≤ {max(nodes)}"
    return f"K ≤ {v['up_to']} (stops at {v['stops_at']})"


def _batch_text(mb, b):
    if mb is None:
        return "> 1 M"
    return f"{b} (the cell's: pays)" if mb == b else str(mb)


def markdown(report, cfg):
    meas, cells = report["measured"], report["cells"]
    ar = meas["allreduce"]
    T = meas["node_threads"]
    m = report["machine"]
    lines = ["### Data-parallel cost model (issue 19): when does it pay?", ""]
    if meas.get("quick"):
        lines += ["**QUICK settings: a check that the tool runs, not a measurement.**", ""]
    busy = m.get("cpu_busy_before")
    lines.append(f"- **Machine**: {m.get('cpu')}, {m.get('cores')} cores ({m.get('cores_usable')} usable), "
                 f"load average {m.get('load_avg')}" + (f", CPU busy {busy:.0%} in the 2 s before measuring"
                                                         if busy is not None else "")
                 + (" — ⚠ NOT IDLE: the figures are not reliable" if busy is not None and busy > 0.15 else ""))
    removed = sorted(set(ar.get("env_removed", {})) | set(meas["steps_env_removed"]))
    lines.append("- **Child processes**: OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset ("
                 + (f"were set: {', '.join(removed)}" if removed else "neither was set") + ").")
    lib = " ".join(ar.get("library", [])[:1])
    lines.append(f"- **Allreduce, measured**: `{ar.get('mpiexec')} -n 2`, {lib}, mpi4py {ar.get('mpi4py')}; "
                 f"**{ar.get('transport')}**; hosts {ar.get('hosts')}.")
    eng = meas.get("engine", "fused")
    lines.append(f"- **Step, measured**: fastnn {meas.get('fastnn')}, `net.fit(X, y, epochs=1"
                 + (", fused=False)` (the per-layer path of today's distributed engine)" if eng == "layer" else
                    ")` (the default path: the fused kernel, the step issue 19's engine runs)") + " per round, "
                 f"history['time'] medians ÷ steps; threads {meas.get('threads')} (default {T}); a node below "
                 f"= this machine, one rank with {T} thread(s).")
    lines += ["", "#### Allreduce over loopback (2 ranks, in place, SUM): median per size, fit t = α + β·bytes "
                  "(least squares weighted by 1/t)", ""]
    for dt, fit in ar["fit"].items():
        lines.append(f"- **{dt}**: α = {fmt_s(fit['alpha_s'])}, β = {fit['beta_s_per_byte'] * 1e9:.4g} ns/byte "
                     f"({fit['bandwidth_gbs'] or 0:.3g} GB/s)" + (" — the model uses this fit" if dt == cfg.dtype
                                                                   else ""))
    lines += ["", "| bytes | " + " | ".join(f"{dt} median | fit | residual" for dt in ar["fit"]) + " |",
              "|---" * (1 + 3 * len(ar["fit"])) + "|"]
    sizes = sorted({r["bytes"] for f in ar["fit"].values() for r in f["residuals"]})
    for n in sizes:
        row = [fmt_bytes(n)]
        for dt, fit in ar["fit"].items():
            r = next((r for r in fit["residuals"] if r["bytes"] == n), None)
            row += ([fmt_s(r["measured_s"]), fmt_s(r["fitted_s"]), f"{r['relative']:+.0%}"] if r else ["–"] * 3)
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "#### Step times measured here (µs per step, median) and gradient bytes", "",
              "| cell | gradient | fused | " + " | ".join(f"{t} thread(s): batch → µs" for t in meas["threads"])
              + " |", "|---" * (3 + len(meas["threads"])) + "|"]
    for name, c in meas["cells"].items():
        lines.append(f"| {name} | {fmt_bytes(c['grad_bytes'])} | {c.get('fused')} | " + " | ".join(
            ", ".join(f"{b}: {s * 1e6:.4g}" for b, s in sorted(c["steps"][str(t)].items(), key=lambda kv: int(kv[0])))
            for t in meas["threads"]) + " |")
    Kmax = max(cfg.nodes)
    for scaling, title in (("weak", "weak scaling (every rank keeps the cell's batch; global batch K·b)"),
                           ("strong", "strong scaling (the cell's batch split over K ranks)")):
        lines += ["", f"#### Predicted samples/s (efficiency), {title}, allreduce after the step (no overlap)", "",
                  "| cell | network | 1 node | " + " | ".join(f"K = {K}" for K in cfg.nodes) + " | pays (speedup > 1, "
                  f"efficiency ≥ {cfg.min_efficiency:.0%}) |", "|---" * (4 + len(cfg.nodes)) + "|"]
        for c in cells:
            cell = matrix.get(c["cell"])
            one = cell.batch / step_at(meas["cells"][cell.name]["steps"][str(T)], cell.batch)
            for net in cfg.networks:
                e = c["networks"][net.key][scaling]
                vals = []
                for K in cfg.nodes:
                    p = e["predictions"][str(K)]
                    vals.append("–" if p is None else f"{fmt_rate(p['samples_per_s'])} ({p['efficiency']:.0%})")
                lines.append(f"| {cell.name} (b {cell.batch}) | {net.key} | {fmt_rate(one)} | " + " | ".join(vals)
                             + f" | {_verdict_text(e['verdict'], cfg.nodes)} |")
    H = cfg.average_every
    lines += ["", f"#### Where it pays, and what would make it pay (K ≤ {Kmax})", "",
              "| cell | network | weak | weak, overlapped | strong | strong, overlapped | local batch for "
              f"{cfg.min_efficiency:.0%} at K = {Kmax} (beyond b: extrapolated) | periodic averaging H = {H}: "
              f"pays; samples/s at K = {Kmax} "
              f"| H for {cfg.min_efficiency:.0%} at K = {Kmax} |", "|---" * 9 + "|"]
    for c in cells:
        for net in cfg.networks:
            e = c["networks"][net.key]
            avg = e[f"averaging_H{H}"]
            pk = avg["predictions"][str(Kmax)]
            mb, mh = e["min_local_batch"][str(Kmax)], e["min_average_every"][str(Kmax)]
            lines.append(f"| {c['cell']} | {net.key} | " + " | ".join(
                _verdict_text(e[k]["verdict"], cfg.nodes) for k in ("weak", "weak_overlap", "strong", "strong_overlap"))
                + f" | {_batch_text(mb, c['batch'])} | {_verdict_text(avg['verdict'], cfg.nodes)}; "
                  f"{fmt_rate(pk['samples_per_s'])} ({pk['efficiency']:.0%}) | "
                  + ("> 65536" if mh is None else "1 (synchronous pays)" if mh == 1 else str(mh)) + " |")
    rt = report.get("ranks_threads") or {}
    if rt:
        any_c = next(iter(rt.values()))
        C = any_c["cores"]
        K = any_c[cfg.networks[0].key]["nodes"]
        lines += ["", f"#### Ranks × threads on a node of {C} cores, at the cell's batch per node: 1 rank × {C} "
                      f"threads against {C} ranks × 1 thread (samples/s; ratio = threads' step ÷ ranks' step)", "",
                  f"| cell | one node: 1×{C} | {C}×1 (local allreduce) | winner | " + " | ".join(
                      f"{K} nodes, {n.key}: 1×{C} / {C}×1 → winner" for n in cfg.networks) + " |",
                  "|---" * (4 + len(cfg.networks)) + "|"]
        for name, r in rt.items():
            o = r["one_node"]
            lines.append(f"| {name} | {fmt_rate(o['threads_rate'])} | {fmt_rate(o['ranks_rate'])} "
                         f"({fmt_s(o['local_ar'])}) | **{o['winner']}** ({o['ratio']:.2f}) | " + " | ".join(
                             f"{fmt_rate(r[n.key]['threads_rate'])} / {fmt_rate(r[n.key]['ranks_rate'])} → "
                             f"{r[n.key]['winner']}" for n in cfg.networks) + " |")
        lines += ["", "**Rule** (ranks × threads): " + RULE]
    host_beta = ar["fit"][cfg.dtype]["beta_s_per_byte"] if cfg.host_floor else 0.0

    def bound(n):
        link = 1.0 / (n.bytes_per_s * cfg.link_efficiency)
        return " (**host-bound**: the loopback β exceeds the link's time per byte)" if host_beta > link else ""
    lines += ["", "- **Networks (assumed)**: " + "; ".join(
        f"{n.key} = {n.label}, {n.gbits:g} Gbit/s × {cfg.link_efficiency:g}, α = {n.alpha_us:g} µs per ring step"
        + bound(n) for n in cfg.networks)
        + ". Small allreduces are latency-bound: issue 19 cites gloo's 1 KB allreduce between two servers at "
        "~0.35 ms over TCP and ~39 µs over InfiniBand (why DDP and Horovod fuse gradients into buckets).",
        f"- **Model**: ring allreduce 2(P−1)/P·bytes·max(1/bandwidth, β_host) + 2(P−1)·α"
        + (f", β_host = the loopback β ({ar['fit'][cfg.dtype]['beta_s_per_byte'] * 1e9:.3g} ns/byte)"
           if cfg.host_floor else ", no host floor") + "; per step the gradient allreduce"
        + (f" and the {STATUS_BYTES}-byte status allreduce of the per-layer engine" if cfg.status else "")
        + f", and {cfg.step_overhead_s * 1e6:g} µs per distributed step for the engine's return to Python"
        + "; overlapped: exposed = max(0, comm − f_bw·step), f_bw = backward share of the FLOPs (ideal bucketed "
          "overlap as in DDP; fastnn's engine does not overlap today); strong scaling uses the step at ceil(b/K) "
          "rows (interpolated between measured batches); periodic averaging (local SGD, a different algorithm: "
          f"not equal to one process with the global batch) averages the parameters every H = {H} steps.",
        "- **Assumes**: a node = this machine; no contention, stragglers or data-loading cost; every rank's step "
        "the same; efficiency = speedup ÷ K, over one node at the cell's batch.",
        f"- **Command**: `{report['command']}`"]
    return "\n".join(lines)


RULE = ("on one node, run C ranks × 1 thread when t₁(b/C) + the local allreduce < t_C(b) — threads that scale "
        "poorly on a short step (the batch-parallel kernel's barriers and shared cache lines) lose to ranks, "
        "whose only cost is one allreduce per step (tens of µs on one machine); otherwise 1 rank × C threads. "
        "Across nodes, the same test with the network allreduce: C ranks per node make the ring C× longer "
        "(2(KC−1) latency steps instead of 2(K−1)), so on a latency-bound network (small gradients, TCP) one "
        "rank per node with all its cores as threads wins unless threads gain almost nothing.")


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.mpi_model", description=__doc__.splitlines()[0])
    p.add_argument("--cells", default=None,
                   help="comma-separated cells (default: all; with --measured, those measured)")
    p.add_argument("--quick", action="store_true",
                   help="small data, 1 MiB largest message, fewer rounds and batches: a check, not a measurement")
    p.add_argument("--nodes", default=",".join(str(k) for k in NODES), help="node counts K to predict")
    p.add_argument("--rounds", type=int, default=None, help="timed rounds (default 7; --quick 3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed fits per batch and thread count (default 1)")
    p.add_argument("--threads", default="1,2,default", help="thread counts of the step (default 1,2,default)")
    p.add_argument("--fractions", default=None,
                   help="measure the step at batch b/f for these f (default 1,2,4,8; --quick 1,4)")
    p.add_argument("--engine", choices=("fused", "layer"), default="fused",
                   help="the step to measure: fused (the default path, what issue 19's engine runs) or layer "
                        "(fused=False: the per-layer path today's distributed engine runs)")
    p.add_argument("--measured", default=None, help="a measured JSON (--save-measured): predict without measuring")
    p.add_argument("--save-measured", default=None, help="write the measurements here")
    p.add_argument("--average-every", type=int, default=8, help="H of periodic averaging (default 8)")
    p.add_argument("--min-efficiency", type=float, default=MIN_EFFICIENCY)
    p.add_argument("--alpha-us", default=None,
                   help="α per ring step per network, e.g. 1G=50,10G=20,100G=5 (the defaults)")
    p.add_argument("--link-efficiency", type=float, default=1.0, help="share of the link rate (default 1.0)")
    p.add_argument("--no-host-floor", action="store_true", help="do not bound a ring byte by the loopback β")
    p.add_argument("--step-overhead-us", type=float, default=STEP_OVERHEAD_US,
                   help=f"per distributed step, the engine's return to Python: one kernel call and the mpi4py "
                        f"call (default {STEP_OVERHEAD_US:g}, measured on tabular; 0 for an in-kernel allreduce)")
    p.add_argument("--status", action="store_true",
                   help="count a 24-byte status allreduce per step too (the per-layer distributed engine's)")
    p.add_argument("--rule-nodes", type=int, default=8, help="nodes for the ranks × threads comparison (default 8)")
    p.add_argument("--json", default=None, help="write the full report here")
    p.add_argument("--markdown", default=None, help="also write the Markdown here")
    p.add_argument("--allreduce-child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--step-child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--fit-child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--child-threads", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--child-distributed", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--ranks-vs-threads", action="store_true",
                   help="measure instead: samples/s of mpiexec -n 2 with 1 thread per rank against one process "
                        "with 1 and 2 threads (fit(distributed=True), the same global batch); no model")
    p.add_argument("--step-profile", action="store_true",
                   help="run under `mpiexec -n K` instead: the distributed fused engine's cost per step, by part "
                        "(the epoch, the engine's loop, the kernel call, gradient, update, allreduce); no model")
    p.add_argument("--sizes", default=None, help=argparse.SUPPRESS)
    p.add_argument("--min-time", type=float, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    try:
        if args.cells is None and args.measured:
            args.cells = ",".join(json.loads(Path(args.measured).read_text())["cells"])
        args.cell_list = [matrix.get(c) for c in (args.cells or ",".join(matrix.CELLS)).split(",") if c]
        args.node_list = tuple(sorted({int(k) for k in args.nodes.split(",") if k}))
        if any(k < 2 for k in args.node_list):
            raise ValueError("--nodes: every K must be >= 2")
        args.fraction_list = [int(f) for f in (args.fractions.split(",") if args.fractions else
                                               (QUICK_FRACTIONS if args.quick else FRACTIONS))]
        args.thread_list = [t for t in args.threads.split(",") if t]
        if any(t != "default" and (not t.isdigit() or int(t) < 1) for t in args.thread_list):
            raise ValueError("--threads: positive integers or 'default'")
        alphas = dict(kv.split("=") for kv in args.alpha_us.split(",")) if args.alpha_us else {}
        if set(alphas) - set(NETWORKS):
            raise ValueError(f"--alpha-us: networks are {', '.join(NETWORKS)}")
        args.networks = [Network(k, lab, g, float(alphas.get(k, a))) for k, (lab, g, a) in NETWORKS.items()]
    except ValueError as exc:
        p.error(str(exc))
    if args.rounds is None:
        args.rounds = 3 if args.quick else 7
    if args.rounds < 1 or args.average_every < 1:
        p.error("--rounds and --average-every must be >= 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    names = [c.name for c in args.cell_list]
    if args.allreduce_child:
        sizes = [int(s) for s in args.sizes.split(",")]
        return allreduce_child(args.allreduce_child, sizes, args.rounds, args.min_time)
    if args.fit_child:
        return fit_child(args.fit_child, names, args.child_threads, args.rounds, args.warmup, args.quick,
                         args.child_distributed)
    if args.step_profile:
        command = "python -m benchmarks.mpi_model" + "".join(" " + shlex.quote(a) for a in
                                                             (sys.argv[1:] if argv is None else argv))
        report = step_profile(names, args.rounds, args.warmup, args.quick)
        if report is not None:
            print(step_profile_text(report, command))
            if args.json:
                Path(args.json).write_text(json.dumps(report, indent=1))
        return 0
    if args.ranks_vs_threads:
        command = "python -m benchmarks.mpi_model" + "".join(" " + shlex.quote(a) for a in
                                                             (sys.argv[1:] if argv is None else argv))
        report = ranks_vs_threads(names, args.rounds, args.warmup, args.quick)
        print(ranks_vs_threads_text(report, command))
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=1))
        return 0
    if args.step_child:
        return step_child(args.step_child, names, args.thread_list, args.fraction_list, args.rounds, args.warmup,
                          args.quick, args.engine)
    command = "python -m benchmarks.mpi_model" + "".join(" " + shlex.quote(a) for a in
                                                         (sys.argv[1:] if argv is None else argv))
    cfg = Config(networks=args.networks, nodes=args.node_list, min_efficiency=args.min_efficiency,
                 host_floor=not args.no_host_floor, status=args.status, link_efficiency=args.link_efficiency,
                 average_every=args.average_every, step_overhead_s=args.step_overhead_us * 1e-6)
    if args.measured:
        meas = json.loads(Path(args.measured).read_text())
        missing = [n for n in names if n not in meas["cells"]]
        if missing:
            raise SystemExit(f"--measured {args.measured} has no step times for {', '.join(missing)}")
        mach = meas.get("machine", {})
    else:
        mach = machine()
        log("measuring the allreduce (mpiexec -n 2, loopback) ...")
        ar = measure_allreduce(QUICK_SIZES if args.quick else SIZES, args.rounds, 0.005 if args.quick else 0.05)
        log(f"measuring the step of {', '.join(names)} (one process, threads {args.threads}) ...")
        steps = measure_steps(names, args.thread_list, args.fraction_list, args.rounds, args.warmup, args.quick,
                              args.engine)
        meas = {"allreduce": ar, "cells": steps["cells"], "threads": steps["threads"],
                "node_threads": (steps["default_threads"] if steps["default_threads"] in steps["threads"]
                                 else max(steps["threads"])), "fastnn": steps.get("fastnn"), "quick": args.quick,
                "steps_env_removed": steps["env_removed"], "machine": mach, "engine": args.engine}
        if args.save_measured:
            Path(args.save_measured).write_text(json.dumps(meas, indent=1))
    cells = [model_cell(c, meas, cfg) for c in args.cell_list]
    rt = {c.name: ranks_threads(c, meas, cfg, args.rule_nodes) for c in args.cell_list}
    report = {"command": command, "config": asdict(cfg), "machine": mach, "measured": meas, "cells": cells,
              "ranks_threads": {k: v for k, v in rt.items() if v}, "rule": RULE}
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
