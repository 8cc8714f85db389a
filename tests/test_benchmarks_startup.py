"""Smoke tests of benchmarks/startup.py: its table arithmetic on fake timings, the child environment, and
one tiny end-to-end run. No timing assertions: these check the tool, not how fast anything is."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import startup

ROOT = Path(__file__).resolve().parent.parent


def _runs(*pairs):
    return [{"wall_s": w, "cpu_s": c} for w, c in pairs]


def test_startup_summary_is_medians_and_ratios_of_medians():
    raw = {
        "train|cold": _runs((3.0, 2.0), (1.0, 1.0), (2.0, 5.0)),
        "train|warm": _runs((0.5, 0.4)),
        "digits/float32|cold": [dict(r, import_s=i, fit_s=1.0, n_iter=30)
                                for r, i in zip(_runs((6.0, 3.0), (4.0, 3.0)), (0.5, 0.7))],
        "digits/float32|warm": _runs((1.0, 1.0), (3.0, 1.0), (2.0, 1.0)),
        "digits/float32|sklearn": _runs((2.0, 4.0), (2.0, 4.0)),
    }
    s = startup.summarize_startup(raw, ["train", "digits/float32"])
    assert s["train"]["cold"] == {"wall_s": 2.0, "cpu_s": 2.0, "runs": 3}
    assert "sklearn" not in s["train"] and "cold_vs_sklearn" not in s["train"]
    d = s["digits/float32"]
    assert d["cold"]["wall_s"] == 5.0 and d["cold"]["fit_s"] == 1.0 and d["cold"]["n_iter"] == 30
    assert d["cold"]["import_s"] == pytest.approx(0.6)
    assert d["cold_vs_sklearn"] == pytest.approx(2.5)            # median 5 / median 2
    assert d["warm_vs_sklearn"] == pytest.approx(1.0)
    assert d["warm_vs_sklearn_cpu"] == pytest.approx(0.25)


def test_percall_summary_overhead_percent():
    child = {"raw": {"fit": {"calls": {"wall": [1.10, 1.30, 1.20], "cpu": [2.0, 2.0, 2.0]},
                             "one": {"wall": [1.0, 1.0, 1.0], "cpu": [2.0, 2.0, 2.0]}},
                     "predict": {"calls": {"wall": [0.9], "cpu": [1.0]}, "one": {"wall": [1.0], "cpu": [0.0]}}}}
    s = startup.summarize_percall(child)
    assert s["fit"]["calls_wall_s"] == pytest.approx(1.2)
    assert s["fit"]["overhead_wall_pct"] == pytest.approx(20.0)
    assert s["fit"]["overhead_cpu_pct"] == pytest.approx(0.0)
    assert s["predict"]["overhead_wall_pct"] == pytest.approx(-10.0)
    assert s["predict"]["overhead_cpu_pct"] is None              # no division by a zero clock


def test_markdown_table():
    report = {"quick": True, "rounds": 1, "date": "d", "command": "c", "versions": {"fastnn": "0"},
              "machine": {"cpu": "Some CPU", "cores": 2, "platform": "p"}, "unset": {"OPENBLAS_CORETYPE": "Haswell"},
              "blas": [{"internal_api": "openblas", "version": "0.3.34", "architecture": "SkylakeX",
                        "num_threads": 2, "filepath": "/x/libscipy_openblas.so"}],
              "data_shapes": {"digits": [1797, 64, 10]},
              "startup": {"digits/float32": {"cold": {"wall_s": 3.0, "cpu_s": 2.5, "import_s": 0.4, "fit_s": 2.0,
                                                      "n_iter": 30},
                                             "warm": {"wall_s": 1.0, "cpu_s": 1.0},
                                             "sklearn": {"wall_s": 2.0, "cpu_s": 2.0},
                                             "cold_vs_sklearn": 1.5, "warm_vs_sklearn": 0.5}},
              "percall": [{"layers": "64-128-10", "batch": 64, "optimizer": "sgd", "rows": 8192, "k": 2,
                           "summary": {"fit": {"calls_wall_s": 0.011, "calls_cpu_s": 0.02, "one_wall_s": 0.01,
                                               "one_cpu_s": 0.02, "overhead_wall_pct": 10.0, "overhead_cpu_pct": 0.0}}}]}
    md = startup.markdown(report)
    assert "QUICK RUN" in md and "Some CPU" in md and "openblas 0.3.34" in md
    assert "OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset (removed here: OPENBLAS_CORETYPE=Haswell)" in md
    assert "| 3.00 (2.50) | 1.00 (1.00) | 2.00 (2.00) | 1.50× | 0.50× |" in md
    assert "1,797×64, 10 classes, float32" in md
    assert "| digits/float32 | 0.40 / 2.00 / 30 | – | – |" in md
    assert "| 11.0 ms (20.0 ms) | 10.0 ms (20.0 ms) | +10.0 % | +0.0 % |" in md


def test_child_env_unsets_openblas_variables(monkeypatch):
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    monkeypatch.setenv("OPENBLAS_L2_SIZE", "1048576")
    env, removed = startup.child_env("/tmp/some-cache")
    assert "OPENBLAS_CORETYPE" not in env and "OPENBLAS_L2_SIZE" not in env
    assert removed == {"OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_L2_SIZE": "1048576"}
    assert env["NUMBA_CACHE_DIR"] == "/tmp/some-cache"
    assert env["PYTHONPATH"].split(os.pathsep)[0] == startup.ROOT


def test_run_process_measures_wall_and_cpu():
    r = startup.run_process([sys.executable, "-c", "print('{\"x\": 1}')"], dict(os.environ))
    assert r["wall_s"] > 0 and r["cpu_s"] >= 0 and startup.last_json(r["out"]) == {"x": 1}
    with pytest.raises(RuntimeError, match="exited 3"):
        startup.run_process([sys.executable, "-c", "raise SystemExit(3)"], dict(os.environ))


def test_startup_runs_end_to_end_tiny(tmp_path):
    """The whole tool on the smallest settings: the digits row (cold and scikit-learn) and one per-call cell."""
    pytest.importorskip("sklearn", reason="startup.py compares with scikit-learn, which is not installed")
    out = tmp_path / "startup.json"
    env = dict(os.environ, OPENBLAS_CORETYPE="Haswell")
    res = subprocess.run([sys.executable, "-m", "benchmarks.startup", "--quick", "--startup", "digits",
                          "--modes", "cold,sklearn", "--cells", "small", "--k", "2", "--rounds", "1",
                          "--json", str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "QUICK RUN" in res.stdout and "removed here: OPENBLAS_CORETYPE=Haswell" in res.stdout
    assert "first `MLPClassifier().fit`, digits" in res.stdout and "`partial_fit` ×k" in res.stdout
    report = json.loads(out.read_text())
    row = report["startup"]["digits/float32"]
    assert set(row) >= {"cold", "sklearn", "cold_vs_sklearn"} and "warm" not in row
    assert 1 <= row["cold"]["n_iter"] <= startup.MAX_ITER and 1 <= row["sklearn"]["n_iter"] <= startup.MAX_ITER
    assert row["cold_vs_sklearn"] == pytest.approx(row["cold"]["wall_s"] / row["sklearn"]["wall_s"])
    (cell,) = report["percall"]
    assert cell["layers"] == "64-128-10" and set(cell["summary"]) == {"fit", "partial_fit", "predict", "evaluate"}
    assert report["blas"], "threadpoolctl found no BLAS in the child"
