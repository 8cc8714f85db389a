"""Smoke tests of benchmarks/: every peer builds its model and trains, the NumPy baseline is correct
(its gradients equal fastnn's on the same weights), and the comparison harness runs end to end.

No timing assertions: these check that the benchmark code works, not how fast anything is.
"""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks import matrix, peers
from benchmarks.peers import numpy_peer

ROOT = Path(__file__).resolve().parent.parent
TINY = matrix.get("tiny")
N = 2048                      # 64 batches of 32: a tiny epoch
IN_PROCESS = ["fastnn", "fastnn-layer", "fastnn-call", "torch-1t", "torch-all", "jax", "sklearn", "numpy"]


@pytest.fixture(scope="module")
def tiny_data():
    return matrix.make_data(TINY, n=N)


@pytest.fixture
def restore_threads():
    """Peers set thread counts process-wide (torch); put them back for the rest of the suite."""
    saved = None
    if "torch" in sys.modules:
        saved = sys.modules["torch"].get_num_threads()
    yield
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(saved or peers.CORES)


def build_or_skip(name, X, y):
    cls, options, _ = peers.load(name)
    ok, why = cls.available()
    if not ok:
        pytest.skip(f"peer {name} not available: {why}")
    return cls(TINY, X, y, seed=0, **options)


def test_matrix_cells():
    assert list(matrix.CELLS) == ["tiny", "small", "mnist128", "mnist1024", "wide", "tabular"]
    mnist = matrix.get("mnist128")
    W = 784 * 256 + 256 * 128 + 128 * 10
    assert mnist.weights == W
    assert mnist.flops_per_sample == 2 * W + 2 * W + 2 * (W - 784 * 256)
    assert matrix.get("mnist1024").batch == 1024 and matrix.get("wide").sizes == (1024, 4096, 4096, 10)
    tab = matrix.get("tabular")
    assert (tab.sizes, tab.batch, tab.optimizer) == ((100, 100, 5), 200, "adam")
    assert tab.hyper == {"lr": 0.001, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}       # torch.optim.Adam's
    assert tab.flops_per_sample == 6 * (100 * 100 + 100 * 5) - 2 * 100 * 100       # the optimizer adds none
    assert [c.name for c in matrix.CELLS.values() if c.optimizer != "sgd"] == ["tabular"]
    for cell in matrix.CELLS.values():
        assert cell.n_full % cell.batch == 0 and cell.n_quick % cell.batch == 0 and cell.n_full >= 8 * cell.batch
    X1, y1 = matrix.make_data(TINY, n=256)
    X2, y2 = matrix.make_data(TINY, n=256)
    assert X1.dtype == np.float32 and y1.dtype == np.int64 and X1.flags.c_contiguous
    np.testing.assert_array_equal(X1, X2)
    np.testing.assert_array_equal(y1, y2)
    assert 0.2 < np.mean(y1) < 0.8          # both classes present


@pytest.mark.parametrize("name", IN_PROCESS)
def test_peer_trains_one_tiny_epoch(name, tiny_data, restore_threads):
    X, y = tiny_data
    peer = build_or_skip(name, X, y)
    seconds = peer.epoch()
    assert math.isfinite(seconds) and seconds > 0
    times = peer.epochs(2)
    assert len(times) == 2 and all(math.isfinite(t) and t > 0 for t in times)
    assert math.isfinite(peer.loss())
    json.dumps(peer.info())                  # sent over the harness's JSON protocol


@pytest.mark.parametrize("name", [p for p in IN_PROCESS if p != "torch-all"])   # same module as torch-1t
def test_peer_loss_decreases_on_tiny(name, tiny_data, restore_threads):
    X, y = tiny_data
    peer = build_or_skip(name, X, y)
    peer.epoch()                             # scikit-learn has no weights before its first epoch
    before = peer.loss()
    peer.epochs(4)
    after = peer.loss()
    assert after < before, f"{name}: loss {before:.4f} -> {after:.4f} after 4 more epochs"


def test_fastnn_layer_path_matches_default(tiny_data):
    """The two fastnn peers train the same numbers (DESIGN §4), so they measure the same work."""
    X, y = tiny_data
    a, b = build_or_skip("fastnn", X, y), build_or_skip("fastnn-layer", X, y)
    a.epochs(2)
    b.epochs(2)
    assert a.loss() == pytest.approx(b.loss(), rel=1e-5)


@pytest.mark.parametrize("cell", ["tiny", "small", "mnist128"])
@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-10), (np.float32, 1e-4)])
def test_numpy_baseline_gradients_equal_fastnn(cell, dtype, rtol):
    """The textbook NumPy network computes the same loss and gradients as fastnn on the same weights."""
    import fastnn as fnn
    c = matrix.get(cell)
    layers = []
    for k, (n_in, n_out) in enumerate(c.shapes):
        layers.append(fnn.FullyConnected(n_in, n_out, dtype=dtype))
        if k < len(c.shapes) - 1:
            layers.append(fnn.ReLU())
    net = fnn.NeuralNetwork(layers, loss=fnn.SoftmaxCrossEntropy(), optimizer=fnn.SGD(lr=0.01), seed=3)
    fcs = [layer for layer in net.layers if isinstance(layer, fnn.FullyConnected)]
    rng = np.random.default_rng(7)
    for fc in fcs:                           # non-zero biases, so the bias path is exercised too
        fc.bias = (rng.standard_normal(fc.out_features) * 0.1).astype(dtype)
    x = rng.standard_normal((37, c.n_features)).astype(dtype)      # an odd batch
    labels = rng.integers(0, c.n_classes, 37)
    params = [(fc.weights.copy(), fc.bias.copy()) for fc in fcs]

    loss_np, grads = numpy_peer.loss_and_grads(params, x, labels)
    loss_fnn = net.forward(x, labels)
    net.backward()
    assert loss_np == pytest.approx(loss_fnn, rel=rtol)
    for k, (fc, (dw, db)) in enumerate(zip(fcs, grads)):
        assert dw.dtype == dtype and db.dtype == dtype
        scale = max(float(np.abs(dw).max()), 1e-30)
        np.testing.assert_allclose(fc.grad_weights, dw, rtol=rtol, atol=rtol * scale, err_msg=f"layer {k} dW")
        scale = max(float(np.abs(db).max()), 1e-30)
        np.testing.assert_allclose(fc.grad_bias, db, rtol=rtol, atol=rtol * scale, err_msg=f"layer {k} db")

    # and one SGD step moves the weights the same way
    numpy_peer.sgd_step(params, grads, dtype(0.01))
    net.step()
    for fc, (w, b) in zip(fcs, params):
        np.testing.assert_allclose(fc.weights, w, rtol=rtol, atol=rtol)
        np.testing.assert_allclose(fc.bias, b, rtol=rtol, atol=rtol)


@pytest.mark.parametrize("name", [p for p in IN_PROCESS if p != "torch-all"])
def test_peer_trains_the_adam_cell(name, restore_threads):
    """Every peer honours the cell's optimizer: on tabular (Adam) it builds, trains and the loss goes down."""
    cell = matrix.get("tabular")
    X, y = matrix.make_data(cell, n=20 * cell.batch)
    cls, options, _ = peers.load(name)
    ok, why = cls.available()
    if not ok:
        pytest.skip(f"peer {name} not available: {why}")
    peer = cls(cell, X, y, seed=0, **options)
    peer.epoch()
    before = peer.loss()
    times = peer.epochs(2)
    assert len(times) == 2 and all(math.isfinite(t) and t > 0 for t in times)
    after = peer.loss()
    assert after < before, f"{name}: loss {before:.4f} -> {after:.4f} after 2 more Adam epochs"
    json.dumps(peer.info())


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-10), (np.float32, 1e-4)])
def test_numpy_baseline_adam_equals_fastnn(dtype, rtol):
    """The textbook NumPy Adam step moves the weights as fastnn.Adam does (3 steps: the bias corrections)."""
    import fastnn as fnn
    c = matrix.get("tabular")
    h = c.hyper
    layers = [fnn.FullyConnected(100, 100, dtype=dtype), fnn.ReLU(), fnn.FullyConnected(100, 5, dtype=dtype)]
    net = fnn.NeuralNetwork(layers, loss=fnn.SoftmaxCrossEntropy(), optimizer=matrix.fastnn_optimizer(c), seed=3)
    fcs = [layer for layer in net.layers if isinstance(layer, fnn.FullyConnected)]
    params = [(fc.weights.copy(), fc.bias.copy()) for fc in fcs]
    state = numpy_peer.adam_init(params)
    rng = np.random.default_rng(11)
    for _ in range(3):
        x = rng.standard_normal((40, 100)).astype(dtype)
        labels = rng.integers(0, 5, 40)
        _, grads = numpy_peer.loss_and_grads(params, x, labels)
        numpy_peer.adam_step(params, grads, state, h["lr"], h["beta1"], h["beta2"], h["eps"])
        net.forward(x, labels)
        net.backward()
        net.step()
        for fc, (w, b) in zip(fcs, params):
            np.testing.assert_allclose(fc.weights, w, rtol=rtol, atol=rtol * 1e-2)
            np.testing.assert_allclose(fc.bias, b, rtol=rtol, atol=rtol * 1e-2)
    assert state["t"] == 3


def test_compare_runs_end_to_end(tmp_path):
    """compare.py: child processes, rounds, sgemm, the Markdown table and the JSON, on a tiny run."""
    out = tmp_path / "compare.json"
    env = dict(os.environ, OPENBLAS_CORETYPE=os.environ.get("OPENBLAS_CORETYPE", "Haswell"))
    cmd = [sys.executable, "-m", "benchmarks.compare", "--cells", "tiny", "--peers", "fastnn,fastnn-layer,numpy",
           "--n", "1024", "--rounds", "2", "--settle", "0", "--sgemm-size", "128", "--sgemm-repeats", "2",
           "--json", str(out)]
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads(out.read_text())
    cell = report["cells"][0]
    for name in ("fastnn", "fastnn-layer", "numpy"):
        entry = cell["peers"][name]
        assert entry["status"] == "ok", entry
        assert len(entry["times"]) == 2 and entry["samples_per_s"]["median"] > 0
        assert entry["peak_rss_mib"] > 0
        assert entry["trains"], entry
    assert "fastnn_pct_of_limit" in cell["summary"] and "fastnn/best_peer" in cell["summary"]
    s = cell["summary"]
    assert s["fused/layer"] == pytest.approx(cell["peers"]["fastnn"]["samples_per_s"]["median"]
                                             / cell["peers"]["fastnn-layer"]["samples_per_s"]["median"])
    assert "fastnn_not_fused" not in s            # tiny runs on the fused path
    assert "OPENBLAS_CORETYPE" in report["env_removed"]
    text = res.stdout
    assert "| fastnn (default path) |" in text and "NumPy, textbook" in text
    assert "| **fastnn fused ÷ per-layer path** (target ≥ 1) |" in text and "| optimizer | SGD lr 0.01 |" in text
    assert "OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset" in text
    assert "**Command**: `python -m benchmarks.compare --cells tiny" in text
    assert 0.0 <= report["cpu_busy_before"] <= 1.0 and "**Idle check**:" in text


def test_idle_check_reads_cpu_time(monkeypatch):
    """compare.py's idle check: the busy share of CPU time between two /proc/stat readings."""
    from benchmarks import compare
    readings = iter(["cpu  100 0 100 700 100 0 0 0 0 0\n", "cpu  160 0 140 800 100 0 0 0 0 0\n"])

    def fake_open(path, *args, **kwargs):
        import io
        assert path == "/proc/stat"
        return io.StringIO(next(readings))
    monkeypatch.setattr("builtins.open", fake_open)
    monkeypatch.setattr(compare.time, "sleep", lambda s: None)
    assert compare.cpu_busy_fraction() == pytest.approx(0.5)       # 100 busy of 200 jiffies


def test_run_reports_errors_as_json():
    res = subprocess.run([sys.executable, "-m", "benchmarks.peers.run", "numpy", "no-such-cell"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    msg = json.loads(res.stdout.strip().splitlines()[-1])
    assert msg["event"] == "error" and "no-such-cell" in msg["error"]


def test_gemm_bound_runs_the_cells_gemms(capsys):
    """benchmarks/gemm_bound.py: the GEMM-only step of a cell runs and reports its rate."""
    from benchmarks import gemm_bound, matrix
    assert gemm_bound.measure(matrix.get("small"), 1, seconds=0.0) > 0
    gemm_bound.main(["tiny"])
    out = capsys.readouterr().out
    assert out.count("tiny: GEMMs only") == 2 and "samples/s" in out


def test_fastnn_call_peer_times_whole_fit_calls(tiny_data, monkeypatch):
    """fastnn-call (issue 18's "a run that calls fit once per epoch"): epochs(k) is k fit(epochs=1) calls, each
    timed whole, and trains what the one-fit peer trains with the same per-call seeds."""
    X, y = tiny_data
    peer = build_or_skip("fastnn-call", X, y)
    calls = []
    fit = type(peer.net).fit

    def counting_fit(net, *args, **kwargs):
        calls.append(kwargs["epochs"])
        return fit(net, *args, **kwargs)

    monkeypatch.setattr(type(peer.net), "fit", counting_fit)
    times = peer.epochs(3)
    assert calls == [1, 1, 1] and len(times) == 3 and all(math.isfinite(t) and t > 0 for t in times)
    assert peer.info()["per_call"] is True and peers.is_fastnn("fastnn-call@2t")
    single = build_or_skip("fastnn", X, y)
    for _ in range(3):
        single.epochs(1)                    # one epoch per call, the same seeds: the same weights
    assert peer.loss() == single.loss()


def test_thread_variant_peer_names():
    """fastnn@Nt / fastnn-layer@Nt: the base peer with threads=N; other peers take no suffix."""
    assert peers.parse("fastnn@2t") == ("fastnn", 2) and peers.parse("torch-1t") == ("torch-1t", None)
    _, options, label = peers.spec("fastnn-layer@1t")
    assert options == {"fused": False, "threads": 1} and label.endswith(", 1 thread")
    assert peers.threaded("fastnn", 4) == "fastnn@4t" and peers.is_fastnn("fastnn@4t")
    assert not peers.is_fastnn("numpy")
    for bad in ("numpy@2t", "fastnn@0t", "fastnn@2", "fastnn@xt", "nope"):
        with pytest.raises(ValueError):
            peers.parse(bad)


def test_compare_scaling_and_targets_on_fake_rates():
    """compare.summarise: thread variants are no 'best peer'; the scaling table's ratios and its ⚠ marks."""
    from benchmarks import compare

    def entry(rate, threads=None):
        return {"status": "ok", "samples_per_s": {"median": rate, "min": rate, "max": rate},
                "info": {"numba_threads": threads or 2}}
    result = {"cell": matrix.get("small").describe(), "n": 64, "rounds": 1, "peers": {
        "fastnn": entry(300.0), "fastnn@1t": entry(200.0, 1), "fastnn@2t": entry(300.0),
        "fastnn-layer": entry(150.0), "fastnn-1t": entry(190.0, 1), "numpy": entry(250.0)}}
    s = compare.summarise(result, {})
    assert s["best_peer"] == "numpy" and s["fastnn/best_peer"] == pytest.approx(1.2)
    sc = s["scaling"]["fastnn"]
    assert sc["samples_per_s"] == {"1": 200.0, "2": 300.0}                # the @Nt peers win over fastnn-1t
    assert sc["source"] == {"1": "fastnn@1t", "2": "fastnn@2t"} and sc["speedup_over_1t"] == {"2": 1.5}
    assert "fastnn-layer" not in s["scaling"]                             # one thread count only
    report = {"cells": [result], "peers": list(result["peers"]), "quick": True, "sgemm": {}, "env_removed": {},
              "protocol": {"timed_epochs": 1, "epochs_per_turn": 1, "warmup": 1, "rounds": 1},
              "machine": {"cpu": "x"}, "versions": {}, "command": "c"}
    text = compare.markdown(report)
    assert "| **fastnn ÷ best peer** (target ≥ 1.25) | 1.2× ⚠ < 1.25 |" in text
    assert "| **fastnn (default path): 2 threads ÷ 1 thread** | 1.5× ⚠ < 1.8 |" in text
    assert "| fastnn (default path), 1 thread | 200 |" in text


def test_compare_threads_option_adds_the_variant_peers():
    from benchmarks import compare
    args = compare.parse_args(["--peers", "fastnn,fastnn-layer,numpy", "--threads", "2,1"])
    assert args.thread_list == [1, 2]
    assert args.peer_list == ["fastnn", "fastnn-layer", "numpy", "fastnn@1t", "fastnn-layer@1t", "fastnn@2t",
                              "fastnn-layer@2t"]
    assert compare.parse_args(["--peers", "fastnn,numpy"]).thread_list == []
    for bad in (["--peers", "numpy", "--threads", "1,2"], ["--threads", "0,2"], ["--threads", "a"],
                ["--peers", "numpy@2t"]):
        with pytest.raises(SystemExit):
            compare.parse_args(bad)


def test_under_load_busy_loop_is_pinned_and_killed():
    """under_load.busy_core: the loop pins itself to the core, burns CPU, and is gone after the block (also
    when the block raises)."""
    from benchmarks import compare, under_load
    env, _ = compare.child_env()
    core = max(os.sched_getaffinity(0))
    with under_load.busy_core(core, env) as stats:
        pid = stats["pid"]
        assert stats["affinity"] == str(core) and os.path.exists(f"/proc/{pid}")
    assert stats["wall_s"] >= 0 and not os.path.exists(f"/proc/{pid}")
    with pytest.raises(KeyboardInterrupt):
        with under_load.busy_core(core, env) as stats:
            pid = stats["pid"]
            raise KeyboardInterrupt
    assert not os.path.exists(f"/proc/{pid}")


def test_under_load_ratios_and_table():
    from benchmarks import under_load
    r = under_load.ratios({"idle-1t": 100.0, "idle-default": 180.0, "loaded-1t": 90.0, "loaded-default": 45.0})
    assert r == {"loaded_default/loaded_1t": 0.5, "loaded_default/idle_default": 0.25, "idle_default/idle_1t": 1.8}
    cell = {"cell": matrix.get("tiny").describe(), "n": 1024, "ratios": r, "conditions": {
        k: {"samples_per_s": {"median": v}, "threads": 2} for k, v in
        (("idle-1t", 100.0), ("idle-default", 180.0), ("loaded-1t", 90.0), ("loaded-default", 45.0))}}
    report = {"cells": [cell], "examples": [], "quick": True, "epochs": 3, "warmup": 1, "repeats": 1,
              "busy_core": 1, "machine": {"cpu": "x", "cores": 2, "cores_usable": 2}, "env_removed": {},
              "command": "c"}
    text = under_load.markdown(report)
    row = "| tiny (2-16-16-2, batch 32, n 1,024) | 100 | 180 (2t) | 90 | 45 (2t) | **0.5×** ⚠ < 0.8 | 0.25× | 1.8× |"
    assert row in text


def test_compile_profile_counts_a_compile_and_excludes_its_callees():
    """benchmarks/compile_profile.py: one fresh function compiled with a fresh callee is two compiles, each
    timed without the other."""
    import numba

    from benchmarks import compile_profile

    @numba.njit(cache=False)
    def callee(x):
        return x + 1

    @numba.njit(cache=False)
    def caller(x):
        return callee(x) * 2

    exclusive, count, cpu = compile_profile.profile(lambda: caller(1))
    assert count == {"test_compile_profile_counts_a_compile_and_excludes_its_callees.<locals>.callee": 1,
                     "test_compile_profile_counts_a_compile_and_excludes_its_callees.<locals>.caller": 1}
    assert all(seconds >= 0 for seconds in exclusive.values())
    assert sum(exclusive.values()) <= cpu


def test_phases_runs_every_way(capsys):
    """benchmarks/phases.py: each way of running the batch-parallel step, including "2 blocks, 1 thread"
    (its stand-in thread must look like a never-started threading.Thread to the engine's join)."""
    from benchmarks import phases
    phases.main(["--cells", "tiny", "--epochs", "1"])
    out = capsys.readouterr().out
    for way in ("| serial |", "2 threads", "2 blocks, 1 thread"):
        assert way in out, out


def test_split_rule_times_every_setting_and_puts_the_split_back(capsys):
    from benchmarks import split_rule
    from fastnn.kernels import epoch_parallel
    times, rule = split_rule.measure(matrix.get("small"), threads=2, rounds=1, n=640)
    assert set(times) == set(split_rule.SETTINGS) and all(len(v) == 1 and v[0] > 0 for v in times.values())
    assert rule == ["rows" if s else "ranges" for s in epoch_parallel.row_split([64, 128, 10], 64, 2)]
    assert epoch_parallel.SPLIT is None
    split_rule.main(["--cells", "small", "--rounds", "1", "--n", "640"])
    assert "| small | rows, rows |" in capsys.readouterr().out


def test_phases_refuses_to_time_blocks_that_would_take_turns(monkeypatch):
    """phases forces the block count past threads.batch_parallel_threads, which is what loads the serial
    copy of the BLAS; without that copy the "2 threads" way timed two threads taking turns (found on an
    AMD EPYC: "2 threads" slower than one on every cell). It must ask for the copy itself, and stop when
    there is none."""
    from benchmarks import phases
    from fastnn.kernels import _blas
    asked = []
    monkeypatch.setattr(_blas, "concurrent_one_thread_gemms", lambda: asked.append(1) or False)
    with pytest.raises(SystemExit, match="cannot run concurrently"):
        phases.measure(matrix.get("tiny"), epochs=1, hz=1e9)
    assert asked


def test_pair_bound_times_alone_and_pair(capsys):
    """benchmarks/pair_bound.py: two child processes, each warm before the clock, one round alone and one
    at once, for a cell and for the sgemm loop."""
    from benchmarks import pair_bound
    assert pair_bound.main(["--cells", "tiny,sgemm", "--rounds", "1", "--seconds", "0.01"]) == 0
    out = capsys.readouterr().out
    for what in ("| tiny |", "| sgemm |"):
        row = next(line for line in out.splitlines() if line.startswith(what))
        alone, pair = (float(v) for v in row.split("|")[2:4])
        assert alone > 0 and pair > 0, row


def test_estimators_seed_scores_fits_every_estimator_per_seed():
    """benchmarks/estimators.py --score-seeds: one test score per estimator and seed, scikit-learn's float32
    fit really in float32 (the scale of "the same score ±0.005" is read from these)."""
    import warnings

    from sklearn.datasets import load_digits

    from benchmarks import estimators
    X, y = load_digits(return_X_y=True)
    X, y = X[:300] / 16.0, y[:300]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores = estimators.seed_scores("classifier", X[:200], X[200:], y[:200], y[200:], seeds=[0, 1])
    assert set(scores) == set(estimators.SCORE_LABELS)
    assert all(len(v) == 2 and all(0.0 <= s <= 1.0 for s in v) for v in scores.values()), scores


def test_elementwise_times_every_activation_way(capsys):
    """benchmarks/elementwise.py: the copy floor and, per code, forward and both backward kernels."""
    from benchmarks import elementwise
    assert elementwise.main(["--shape", "8x8", "--codes", "relu,tanh"]) == 0
    out = capsys.readouterr().out
    for row in ("| copy (floor) |", "| relu |", "| tanh |"):
        assert row in out, out
