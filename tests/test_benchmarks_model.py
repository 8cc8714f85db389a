"""benchmarks/manycore_model.py's arithmetic on a fake timing table (no measuring, no timing assertions)."""
import math

import pytest

from benchmarks import manycore_model as mm
from benchmarks import matrix

GEMM_S_PER_MAC = 1e-10        # a fake 20 GFLOP/s BLAS
PASS_S = 1e-7                 # every non-GEMM item: 0.1 µs


def fake_table(cells=tuple(matrix.CELLS), ladder=mm.LADDER, **extra):
    items = {}
    for name in cells:
        for T in ladder:
            for it in mm.plan(matrix.get(name), T):
                items[it.key] = math.prod(it.dims) * GEMM_S_PER_MAC if it.kind.startswith("gemm") else PASS_S
    return {"items": items, "bandwidth_gbs": {"1": 10.0, "2": 20.0}, "launch_us": 10.0, **extra}


@pytest.mark.parametrize("name", list(matrix.CELLS))
def test_plan_covers_the_cells_gemm_work(name):
    """At T = 1 the GEMMs of a step are the cell's 6W - 2W_first FLOPs per sample; at T threads each thread
    gets a ceil-rounded 1/T of every GEMM (at most one row more than its share per GEMM)."""
    cell = matrix.get(name)
    macs = sum(math.prod(it.dims) for it in mm.plan(cell, 1) if it.kind.startswith("gemm"))
    assert 2 * macs == cell.flops_per_sample * cell.batch
    for T in (2, 4, 64):
        share = sum(math.prod(it.dims) for it in mm.plan(cell, T) if it.kind.startswith("gemm"))
        assert macs / T <= share
        slack = sum(math.prod(it.dims) // it.dims[0] for it in mm.plan(cell, T) if it.kind.startswith("gemm"))
        assert share <= macs / T + slack
    assert {it.phase for it in mm.plan(cell, 2)} <= set(mm.PHASES)


def test_plan_follows_the_optimizer():
    sgd, adam = mm.plan(matrix.get("small"), 2), mm.plan(matrix.get("tabular"), 2)
    assert {it.kind for it in sgd if it.phase == "update"} == {"sgd"}
    assert any(it.kind == "gemm_tn_acc" for it in sgd)          # SGD inside the weight-gradient GEMM
    assert {it.kind for it in adam if it.phase == "update"} == {"adam"} and not any(
        it.kind == "gemm_tn_acc" for it in adam)
    tiny64 = mm.plan(matrix.get("tiny"), 64)                    # batch 32: 32 threads with a row, r = 1
    assert all(it.dims[0] == 1 and it.active == 32 for it in tiny64 if it.phase == "gemm_fwd")


def test_step_time_is_the_sum_of_its_terms():
    cell, table = matrix.get("small"), fake_table(("small",))
    cfg = mm.Config(residual="none")
    p1 = mm.predict(cell, 1, table, cfg)
    items = mm.plan(cell, 1)
    expect = sum(math.prod(it.dims) * GEMM_S_PER_MAC if it.kind.startswith("gemm") else PASS_S for it in items)
    assert p1["step_s"] == pytest.approx(expect)
    assert p1["terms"]["barriers"] == 0 and p1["terms"]["launch"] == 0
    p8 = mm.predict(cell, 8, table, cfg)
    assert p8["terms"]["barriers"] == pytest.approx(4 * (0.2 + 0.3 * 3) * 1e-6)
    assert p8["terms"]["launch"] == pytest.approx(10e-6 * 3 * cell.batch / cell.n_full)   # one per epoch
    assert p8["step_s"] == pytest.approx(sum(p8["terms"].values()))
    assert p8["samples_per_s"] == pytest.approx(cell.batch / p8["step_s"])
    per_step = mm.predict(cell, 8, table, mm.Config(residual="none", launches_per_step=1))
    assert per_step["terms"]["launch"] == pytest.approx(30e-6)
    measured = mm.predict(cell, 2, table, mm.Config(residual="none", barrier_us=1.0))
    assert measured["terms"]["barriers"] == pytest.approx(4e-6)          # --barrier-us: 1 µs at T = 2


def test_residual_makes_t1_the_measured_step():
    cell = matrix.get("small")
    items_1 = mm.predict(cell, 1, fake_table(("small",)), mm.Config(residual="none"))["step_s"]
    table = fake_table(("small",), fastnn_step_s={"small": items_1 + 50e-6})
    const = mm.predict(cell, 1, table, mm.Config())
    assert const["step_s"] == pytest.approx(items_1 + 50e-6) and const["terms"]["residual"] == pytest.approx(50e-6)
    assert mm.predict(cell, 4, table, mm.Config())["terms"]["residual"] == pytest.approx(50e-6)
    assert mm.predict(cell, 4, table, mm.Config(residual="split"))["terms"]["residual"] == pytest.approx(12.5e-6)
    fast = fake_table(("small",), fastnn_step_s={"small": items_1 / 2})     # items above the real step: no residual
    assert mm.predict(cell, 1, fast, mm.Config())["terms"]["residual"] == 0


def test_dram_floor_only_beyond_the_cache():
    cell = matrix.get("wide")
    table = fake_table(("wide",))
    roomy = mm.predict(cell, 64, table, mm.Config(residual="none", cache_mib=1e6))
    assert all(v == 0 for v in roomy["floors"].values())
    tight = mm.predict(cell, 64, table, mm.Config(residual="none", cache_mib=0.001, socket_bw_gbs=50))
    assert tight["floors"]["elementwise"] > 0 and tight["step_s"] > roomy["step_s"]
    gather = next(it for it in mm.plan(cell, 64) if it.kind == "gather")       # 1 GB/s-bounded floor check
    assert mm.bandwidth(64, table, mm.Config(socket_bw_gbs=50)) == 50e9
    assert mm.bandwidth(4, table, mm.Config(socket_bw_gbs=50)) == 40e9           # 4 × BW(1) below the socket
    assert mm.bandwidth(2, table, mm.Config()) == 20e9                           # measured
    assert gather.bytes * gather.active / 50e9 > PASS_S


def test_stops_paying():
    assert mm.stops_paying({1: 1.0, 2: 1.9, 4: 3.5, 8: 3.7, 16: 3.8}) == 4
    assert mm.stops_paying({1: 1.0, 2: 0.9}) == 1
    assert mm.stops_paying({1: 1.0, 2: 1.9, 4: 3.6}) is None
    assert mm.stops_paying({1: 1.0, 2: 1.9, 4: 2.05}, min_gain=0.05) is None
    assert mm.stops_paying({1: 1.0, 2: 1.9, 4: 1.95}, min_gain=0.05) == 2
    assert mm.stops_paying({1: 1.0, 2: 1.9, 4: 2.0, 8: 3.0}) is None        # 4 -> 8 pays again
    assert mm.stops_paying({1: 1.0, 2: 1.05, 4: 2.0, 8: 2.1, 16: 2.15}) == 4


def test_model_cell_and_report():
    cfg = mm.Config()
    table = fake_table(("tiny", "small"), fastnn_step_s={"tiny": 20e-6, "small": 60e-6}, quick=True)
    cells = [mm.model_cell(matrix.get(n), table, cfg) for n in ("tiny", "small")]
    for m in cells:
        assert m["predictions"]["1"]["speedup"] == 1.0
        assert set(m["predictions"]) == {str(T) for T in mm.LADDER}
        if m["stops_paying_beyond"] is not None:
            assert m["dominant_term"] in mm.PHASES and 0 < m["dominant_share"] <= 1
    report = {"command": "c", "ladder": list(mm.LADDER), "show": list(mm.SHOW), "table": table, "cells": cells,
              "measured": {"tiny": {"1": 1e6, "2": 1.5e6}}}
    text = mm.markdown(report, cfg)
    assert "| tiny (2-16-16-2, batch 32, sgd) |" in text and "T = 64" in text
    assert "| tiny | 20 |" in text                      # the calibration row: the measured step in µs
    assert "1.50× |" in text                            # measured 2 ÷ 1


def test_every_item_kind_measures():
    """The measuring loops compile against fastnn's kernels and time every kind of item (tiny shapes)."""
    import numpy as np
    K, numba = mm._kernels()
    rng = np.random.default_rng(0)
    kinds = {it.kind: it.dims for name in ("tiny", "tabular") for it in mm.plan(matrix.get(name), 2)}
    assert {"gemm_nn", "gemm_nt", "gemm_tn", "gemm_tn_acc", "gather", "bias_relu", "bias", "softmax_ce",
            "relu_grad", "absmax", "colsum", "sgd", "sqnorm", "adam"} <= set(kinds)
    for kind, dims in kinds.items():
        t = mm.measure_item(kind, dims, K, rng, min_time=0.0, repeats=1)
        assert 0 < t < 1, kind
    assert set(mm.measure_bandwidth(K, numba, 1 << 12, 1)) <= {"1", "2"}
