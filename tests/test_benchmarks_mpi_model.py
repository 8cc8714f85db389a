"""benchmarks/mpi_model.py: the cost model's arithmetic on a fake timing table (ring allreduce, weak and strong
scaling, overlap, where-it-pays verdicts, what would make it pay, ranks × threads) — no timing assertions —
and one tiny end-to-end run under mpiexec (skipped, with the reason, without mpi4py or mpiexec)."""
import json
import subprocess
import sys

import pytest

from benchmarks import matrix
from benchmarks import mpi_model as mm

ALPHA, BETA = 10e-6, 0.2e-9           # a fake loopback fit: 10 µs + 0.2 ns/byte (5 GB/s)
GRAD = 1_000_000                      # fake gradient bytes


def fake(grad=GRAD, steps1=None, steps2=None, cell="tabular"):
    """A measured table: tabular's step linear in the batch, t = 50 µs + 1 µs/row on 2 threads (the node) and
    t = 20 µs + 1.6 µs/row on 1 thread."""
    steps2 = steps2 or {str(b): 50e-6 + 1e-6 * b for b in (25, 50, 100, 200)}
    steps1 = steps1 or {str(b): 20e-6 + 1.6e-6 * b for b in (25, 50, 100, 200)}
    return {"allreduce": {"fit": {"float32": {"alpha_s": ALPHA, "beta_s_per_byte": BETA}}},
            "node_threads": 2, "threads": [1, 2], "quick": False, "steps_env_removed": {},
            "cells": {cell: {"grad_bytes": grad, "steps": {"1": steps1, "2": steps2}}}}


def cfg(**kw):
    kw.setdefault("status", False)
    return mm.Config(**kw)


NET10 = mm.Network("10G", "10 Gbit/s", 10.0, 20.0)     # 1.25 GB/s: 0.8 ns/byte, α 20 µs


def test_fit_recovers_alpha_and_beta_with_zero_residuals():
    pts = [(n, ALPHA + BETA * n) for n in (4, 64, 1024, 1 << 16, 1 << 20, 1 << 26)]
    a, b, res = mm.fit_alpha_beta(pts)
    assert a == pytest.approx(ALPHA, rel=1e-9) and b == pytest.approx(BETA, rel=1e-9)
    assert all(abs(r[3]) < 1e-9 for r in res)


def test_fit_is_relative_so_alpha_is_set_by_the_small_messages():
    # 10 % noise on the largest message moves α by little (an unweighted fit would move it by ~1 ms)
    pts = [(n, ALPHA + BETA * n) for n in (4, 64, 1024, 1 << 16)] + [(1 << 26, 1.1 * (ALPHA + BETA * (1 << 26)))]
    a, b, res = mm.fit_alpha_beta(pts)
    assert a == pytest.approx(ALPHA, rel=0.05)
    assert max(abs(r[3]) for r in res) < 0.1


def test_fit_never_returns_a_negative_latency():
    a, b, _ = mm.fit_alpha_beta([(1, 1e-9), (1000, 2e-6), (10**6, 1e-3)])
    assert a >= 0 and b > 0


def test_ring_allreduce_formula():
    bw = 1.25e9
    # 2(P-1)/P · n / bw + 2(P-1) α
    assert mm.ring_allreduce_s(GRAD, 4, bw, 20e-6) == pytest.approx(1.5 * GRAD / bw + 6 * 20e-6)
    assert mm.ring_allreduce_s(GRAD, 2, bw, 20e-6) == pytest.approx(GRAD / bw + 2 * 20e-6)
    assert mm.ring_allreduce_s(GRAD, 1, bw, 20e-6) == 0.0
    # the bandwidth term tends to 2n/bw, the latency term grows linearly with P
    assert mm.ring_allreduce_s(GRAD, 64, bw, 0.0) == pytest.approx(2 * 63 / 64 * GRAD / bw)
    # the host floor: a byte costs at least β_host
    assert mm.ring_allreduce_s(GRAD, 2, 1e12, 0.0, host_beta=BETA) == pytest.approx(GRAD * BETA)
    assert mm.ring_allreduce_s(GRAD, 2, bw, 0.0, host_beta=BETA) == pytest.approx(GRAD / bw)


def test_local_allreduce_is_the_loopback_fit_at_two_ranks():
    fit = {"alpha_s": ALPHA, "beta_s_per_byte": BETA}
    assert mm.local_allreduce_s(GRAD, 2, fit) == pytest.approx(ALPHA + BETA * GRAD)
    assert mm.local_allreduce_s(GRAD, 4, fit) == pytest.approx(1.5 * BETA * GRAD + 6 * ALPHA / 2)
    assert mm.local_allreduce_s(GRAD, 1, fit) == 0.0


def test_network_comm_counts_the_status_allreduce_and_the_host_floor():
    fit = {"alpha_s": ALPHA, "beta_s_per_byte": BETA}
    grad_only = mm.network_comm_s(GRAD, 8, NET10, fit, cfg())
    assert grad_only == pytest.approx(2 * 7 / 8 * GRAD * 0.8e-9 + 14 * 20e-6)
    with_status = mm.network_comm_s(GRAD, 8, NET10, fit, cfg(status=True))
    assert with_status - grad_only == pytest.approx(2 * 7 / 8 * 24 * 0.8e-9 + 14 * 20e-6)
    slow_host = {"alpha_s": ALPHA, "beta_s_per_byte": 2e-9}    # host slower than the 10 Gbit/s link
    assert mm.network_comm_s(GRAD, 2, NET10, slow_host, cfg()) == pytest.approx(GRAD * 2e-9 + 2 * 20e-6)
    assert mm.network_comm_s(GRAD, 2, NET10, slow_host, cfg(host_floor=False)) == pytest.approx(
        GRAD * 0.8e-9 + 2 * 20e-6)
    half = mm.network_comm_s(GRAD, 2, NET10, fit, cfg(link_efficiency=0.5))
    assert half == pytest.approx(GRAD * 1.6e-9 + 2 * 20e-6)


def test_step_interpolates_extrapolates_and_never_goes_below_proportional():
    steps = {"50": 100e-6, "100": 150e-6, "200": 250e-6}
    assert mm.step_at(steps, 100) == pytest.approx(150e-6)
    assert mm.step_at(steps, 150) == pytest.approx(200e-6)
    assert mm.step_at(steps, 400) == pytest.approx(450e-6)            # the line through the two largest
    assert mm.step_at(steps, 25) == pytest.approx(75e-6)              # the line through the two smallest
    assert mm.step_at(steps, 1) == pytest.approx(51e-6)
    steep = {"50": 10e-6, "100": 200e-6}                              # the line would go negative below 50
    assert mm.step_at(steep, 10) == pytest.approx(10e-6 * 10 / 50)
    assert mm.step_at({"32": 64e-6}, 16) == pytest.approx(32e-6)


def test_backward_share_is_the_cells_flop_ratio():
    cell = matrix.get("mnist128")
    W, W1 = cell.weights, cell.first_weights
    assert mm.backward_share(cell) == pytest.approx((4 * W - 2 * W1) / cell.flops_per_sample)
    assert 0.5 < mm.backward_share(cell) < 2 / 3


def test_weak_scaling_by_hand():
    cell, meas = matrix.get("tabular"), fake()
    t = 50e-6 + 200e-6                                                # 2 threads, batch 200
    comm = mm.network_comm_s(GRAD, 4, NET10, meas["allreduce"]["fit"]["float32"], cfg())
    p = mm.predict(cell, meas, NET10, cfg(), 4, "weak")
    assert p["local_batch"] == 200
    assert p["samples_per_s"] == pytest.approx(4 * 200 / (t + comm))
    assert p["speedup"] == pytest.approx(4 * t / (t + comm))
    assert p["efficiency"] == pytest.approx(t / (t + comm))


def test_strong_scaling_by_hand_and_impossible_splits():
    cell, meas = matrix.get("tabular"), fake()
    t1 = 50e-6 + 200e-6
    tK = 50e-6 + 25e-6                                                # 200 / 8 = 25 rows
    comm = mm.network_comm_s(GRAD, 8, NET10, meas["allreduce"]["fit"]["float32"], cfg())
    p = mm.predict(cell, meas, NET10, cfg(), 8, "strong")
    assert p["local_batch"] == 25
    assert p["samples_per_s"] == pytest.approx(200 / (tK + comm))
    assert p["speedup"] == pytest.approx(t1 / (tK + comm))
    assert mm.predict(cell, meas, NET10, cfg(), 256, "strong") is None    # fewer rows than ranks
    assert mm.predict(cell, meas, NET10, cfg(), 3, "strong")["local_batch"] == 67


def test_overlap_hides_the_allreduce_behind_the_backward_pass():
    cell, meas = matrix.get("tabular"), fake(grad=1000)
    t = 250e-6
    f = mm.backward_share(cell)
    plain = mm.predict(cell, meas, NET10, cfg(), 2, "weak")
    over = mm.predict(cell, meas, NET10, cfg(), 2, "weak", overlap=True)
    assert over["comm_s"] == pytest.approx(max(0.0, plain["comm_s"] - f * t))
    assert over["samples_per_s"] >= plain["samples_per_s"]
    small = fake(grad=8)        # 2 · 20 µs latency < f · 250 µs: fully hidden
    assert mm.predict(cell, small, NET10, cfg(), 2, "weak", overlap=True)["comm_s"] == 0.0


def test_verdicts():
    assert mm.pays(1.5, 2) and not mm.pays(0.9, 2) and not mm.pays(3.0, 8) and mm.pays(4.0, 8)
    v = mm.verdict({2: 1.9, 4: 3.0, 8: 3.5, 16: 4.0})
    assert v == {"pays": [2, 4], "up_to": 4, "stops_at": 8}
    assert mm.verdict({2: 0.8, 4: 3.0})["up_to"] is None               # K = 2 already does not pay
    assert mm.verdict({2: 2.0, 4: 4.0}) == {"pays": [2, 4], "up_to": 4, "stops_at": None}
    assert mm.verdict({2: 2.0, 4: None})["stops_at"] == 4               # impossible counts as not paying


def test_where_it_pays_follows_the_network():
    """A 1 MB gradient and a 250 µs step: on 1 Gbit/s (8 ms per MB) it never pays; on 100 Gbit/s it pays."""
    cell, meas = matrix.get("tabular"), fake()
    c = mm.Config(nodes=(2, 4, 8, 16, 32, 64), status=True)
    out = mm.model_cell(cell, meas, c)
    slow, fast = out["networks"]["1G"], out["networks"]["100G"]
    assert slow["weak"]["verdict"]["up_to"] is None
    assert fast["weak"]["verdict"]["up_to"] is not None
    # overlap never makes it worse; strong scaling never beats weak at the same K here (same comm, less work)
    for net in out["networks"].values():
        for K in ("2", "8", "64"):
            w, wo = net["weak"]["predictions"][K], net["weak_overlap"]["predictions"][K]
            assert wo["samples_per_s"] >= w["samples_per_s"]
            s = net["strong"]["predictions"][K]
            assert s is None or s["speedup"] <= w["speedup"] + 1e-12


def test_what_would_make_it_pay():
    cell, meas = matrix.get("tabular"), fake()
    c = cfg()
    net1 = mm.Network("1G", "1 Gbit/s", 1.0, 50.0)
    comm = mm.network_comm_s(GRAD, 64, net1, meas["allreduce"]["fit"]["float32"], c)
    b = mm.min_local_batch(cell, meas, net1, c, 64)
    assert mm.step_at(meas["cells"]["tabular"]["steps"]["2"], b) >= comm          # 50 %: compute ≥ comm
    assert mm.step_at(meas["cells"]["tabular"]["steps"]["2"], b // 2) < comm
    assert b % cell.batch == 0                                                       # the cell's batch × 2^k
    assert mm.min_local_batch(cell, fake(grad=8), net1, c, 2) == cell.batch          # already pays
    H = mm.min_average_every(cell, meas, net1, c, 64)
    assert 250e-6 >= comm / H and 250e-6 < comm / (H // 2)
    p = mm.predict(cell, meas, net1, c, 64, "weak", average_every=H)
    assert p["efficiency"] >= 0.5 and p["comm_s"] == pytest.approx(comm / H)


def test_ranks_threads_rule_on_one_node_and_across_nodes():
    cell = matrix.get("tabular")
    # threads scale badly (2 threads: 0.9 of 1 thread's step): 2 ranks × 1 thread win on one node
    poor = fake(steps2={str(b): 0.9 * (20e-6 + 1.6e-6 * b) for b in (25, 50, 100, 200)}, grad=40_000)
    r = mm.ranks_threads(cell, poor, cfg(), K_nodes=8)
    fit = poor["allreduce"]["fit"]["float32"]
    t_ranks = 20e-6 + 1.6e-6 * 100 + mm.local_allreduce_s(40_000, 2, fit)
    assert r["one_node"]["ranks_s"] == pytest.approx(t_ranks)
    assert r["one_node"]["winner"] == "ranks"
    # perfect threads: 1 rank × 2 threads
    good = fake(steps2={str(b): 0.5 * (20e-6 + 1.6e-6 * b) for b in (25, 50, 100, 200)})
    assert mm.ranks_threads(cell, good, cfg())["one_node"]["winner"] == "threads"
    # across nodes, the ring over K·C ranks has twice the latency steps: on 1 Gbit/s one rank per node wins
    assert mm.ranks_threads(cell, poor, cfg(), K_nodes=8)["1G"]["ranks_s"] == pytest.approx(
        20e-6 + 1.6e-6 * 100 + mm.network_comm_s(40_000, 16, mm.Network("1G", "", 1.0, 50.0), fit, cfg()))
    one_thread_only = fake()
    del one_thread_only["cells"]["tabular"]["steps"]["2"]
    assert mm.ranks_threads(cell, one_thread_only, cfg()) is None


def test_main_from_a_measured_file_writes_markdown_and_json(tmp_path, capsys):
    meas = fake()
    meas["machine"] = {"cpu": "Fake CPU", "cores": 2, "cores_usable": 2, "load_avg": [0, 0, 0],
                       "cpu_busy_before": 0.01}
    meas["allreduce"].update(transport="loopback: fake", env_removed={"OPENBLAS_CORETYPE": "x"},
                             times={"float32": {}}, library=["MPICH fake"])
    meas["allreduce"]["fit"]["float32"]["residuals"] = [{"bytes": 4, "measured_s": 1e-5, "fitted_s": 1e-5,
                                                          "relative": 0.0}]
    meas["allreduce"]["fit"]["float32"]["bandwidth_gbs"] = 5.0
    path = tmp_path / "m.json"
    path.write_text(json.dumps(meas))
    out = tmp_path / "r.json"
    assert mm.main(["--measured", str(path), "--cells", "tabular", "--nodes", "2,8", "--json", str(out),
                    "--average-every", "4"]) == 0
    text = capsys.readouterr().out
    assert "loopback" in text and "Fake CPU" in text and "OPENBLAS_CORETYPE" in text
    assert "| tabular (b 200) | 1G |" in text and "K = 8" in text and "H = 4" in text and "**Rule**" in text
    report = json.loads(out.read_text())
    assert set(report["cells"][0]["networks"]) == set(mm.NETWORKS)
    assert "averaging_H4" in report["cells"][0]["networks"]["10G"]
    with pytest.raises(SystemExit):
        mm.main(["--measured", str(path), "--cells", "tiny"])          # no step times for tiny


def test_arguments():
    a = mm.parse_args(["--nodes", "8,2", "--alpha-us", "1G=100", "--quick"])
    assert a.node_list == (2, 8) and a.rounds == 3 and a.fraction_list == list(mm.QUICK_FRACTIONS)
    assert {n.key: n.alpha_us for n in a.networks} == {"1G": 100.0, "10G": 20.0, "100G": 5.0}
    for bad in (["--nodes", "1,2"], ["--alpha-us", "5G=1"], ["--threads", "0"], ["--cells", "nope"]):
        with pytest.raises(SystemExit):
            mm.parse_args(bad)


MPIEXEC = mm.find_mpiexec()


@pytest.mark.skipif(not mm.have_mpi4py() or MPIEXEC is None,
                    reason="MPI not installed: the end-to-end run needs mpi4py and mpiexec (pip install -e '.[mpi]')")
def test_tiny_end_to_end_under_mpiexec(tmp_path):
    """Measures for real (tiny settings, under whatever load the machine has): only that it runs and reports."""
    saved, out = tmp_path / "m.json", tmp_path / "r.json"
    res = subprocess.run([sys.executable, "-m", "benchmarks.mpi_model", "--quick", "--cells", "tiny", "--rounds",
                          "1", "--fractions", "1,2", "--threads", "1", "--nodes", "2,4", "--save-measured",
                          str(saved), "--json", str(out)], cwd=mm.Path(mm.__file__).resolve().parent.parent,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "loopback" in res.stdout and "OPENBLAS_CORETYPE" in res.stdout
    meas = json.loads(saved.read_text())
    assert meas["allreduce"]["ranks"] == 2
    assert set(meas["allreduce"]["times"]) == {"float32", "float64"}
    assert meas["cells"]["tiny"]["grad_bytes"] == matrix.get("tiny").n_params * 4
    assert set(meas["cells"]["tiny"]["steps"]["1"]) == {"32", "16"}
    assert json.loads(out.read_text())["cells"][0]["cell"] == "tiny"
