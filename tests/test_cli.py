"""The `fastnn` command line, run as a user would: `python -m fastnn ...` in a subprocess, in tmp_path.

Usage errors (bad options, missing or malformed files) must exit 2, runtime failures 1, Ctrl-C 130, and
every error must be one line `fastnn: error: ...` on stderr, never a traceback.
"""
import csv
import importlib.util
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fastnn import cli
from fastnn.training import COMPILE_LINE

ROOT = Path(__file__).resolve().parents[1]
HAVE_MPL = importlib.util.find_spec("matplotlib") is not None
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run(*args, cwd, env=None, timeout=300):
    """`python -m fastnn *args` in ``cwd``; the source tree first on the path, as in an editable install."""
    full_env = dict(os.environ if env is None else env)
    full_env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), full_env.get("PYTHONPATH")) if p)
    full_env.pop("FASTNN_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "fastnn", *map(str, args)], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def ok(proc):
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr
    return proc.stdout


def one_line_error(proc, code=2):
    """The process failed with ``code`` and exactly one line `fastnn: error: ...` on stderr — besides the
    notice that kernels are compiling (training.COMPILE_LINE), which a run whose kernels are not in Numba's
    cache prints once compiling has taken a second (which runs of a suite compile depends on the tests
    before them)."""
    assert proc.returncode == code, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if line != COMPILE_LINE]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("fastnn: error: "), lines[0]
    return lines[0]


def score(text, name):
    m = re.search(rf"{name} (\d+\.\d+)", text)
    assert m, f"no '{name}' in:\n{text}"
    return float(m.group(1))


def assert_png(path):
    data = Path(path).read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 10_000


@pytest.fixture(scope="module")
def digits_model(tmp_path_factory):
    """A small digits model saved by `fastnn train --save` (few epochs: quick), and its train output."""
    d = tmp_path_factory.mktemp("digits_model")
    proc = run("train", "--hidden", "32", "--epochs", "5", "--val-split", "0.1", "--save", "m.safetensors",
               cwd=d)
    return d, d / "m.safetensors", ok(proc)


def write_csv(path, header, rows):
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)


# ------------------------------------------------------------------------------------------------ help

@pytest.mark.parametrize("command", [[], ["train"], ["predict"], ["evaluate"], ["info"], ["gradcheck"],
                                     ["demo"], ["demo", "xor"], ["demo", "approx"], ["bench"]])
def test_help_of_every_command(command, capsys):
    assert cli.main(command + ["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: fastnn")
    assert " ".join(["fastnn"] + command) in out


def test_python_dash_m_without_a_command_prints_help(tmp_path):
    out = ok(run(cwd=tmp_path))
    assert "usage: fastnn" in out
    for command in ("train", "predict", "evaluate", "info", "gradcheck", "demo", "bench"):
        assert command in out


def test_version(capsys):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("fastnn ")


def test_parse_hidden():
    assert cli.parse_hidden("128,64") == (128, 64)
    assert cli.parse_hidden(" 16 , 8 ") == (16, 8)
    assert cli.parse_hidden("") == ()
    assert cli.parse_hidden("0") == ()
    for bad in ("12,x", "-3", "0,4", "12,,4", "1.5"):
        with pytest.raises(Exception):
            cli.parse_hidden(bad)


# ------------------------------------------------------------------------------------------- train

def test_default_train_reaches_the_documented_accuracy(tmp_path):
    """`fastnn train` with no arguments: 64-128-10 on the digits split, test accuracy >= 0.96."""
    out = ok(run("train", cwd=tmp_path))
    assert "64-128-10" in out
    assert score(out, "test accuracy") >= 0.96
    summary = out.strip().splitlines()[-1]
    assert re.search(r"[\d,]+ samples/s", summary) and re.search(r"time \d+\.\d+ s", summary)


def test_the_time_split_adds_up_and_names_numbas_start_up():
    """The summary's parts: Numba's one-time set-up (timed before the fit) is named and counted in the
    total; the first epoch's excess is the kernels' load or compile; the rest is set-up."""
    from fastnn.cli.train import time_split
    text = time_split(1.0, [0.5, 0.2, 0.2], None, numba_startup=0.25)
    assert text == ("time 1.25 s: Numba start-up 0.25 s, training 0.60 s, "
                    "first-epoch extra 0.30 s (compiling or loading the kernels), set-up 0.10 s")
    assert "Numba" not in time_split(1.0, [0.5, 0.2, 0.2], None)
    # checkpointing: the writes the fit timed are named apart from the set-up
    assert time_split(2.0, [0.5, 0.5], 0.75) == "time 2.00 s: training 1.00 s, checkpoints 0.75 s, set-up 0.25 s"


def test_train_with_checkpoints_names_their_time(tmp_path):
    line = ok(run("train", "--data", "spirals", "--epochs", "30", "--checkpoint", "c.safetensors",
                  "--checkpoint-every", "1", "-q", cwd=tmp_path))
    assert re.search(r", checkpoints \d+\.\d\d s", line) and "checkpoints and set-up" not in line


def test_train_quiet_prints_one_line(tmp_path):
    out = ok(run("train", "--epochs", "2", "--hidden", "16", "--quiet", cwd=tmp_path))
    assert len(out.strip().splitlines()) == 1
    assert 0.2 < score(out, "test accuracy") <= 1  # well above chance (0.1) after 2 short epochs


@pytest.mark.parametrize("extra", [["--optimizer", "sgd", "--momentum", "0.5"], ["--activation", "tanh"],
                                   ["--activation", "sigmoid", "--hidden", "16,16"], ["--hidden", ""],
                                   ["--threads", "1", "--batch-size", "7"]])
def test_train_options(tmp_path, extra):
    # two sigmoid hidden layers learn slowly: after 3 epochs the test accuracy is 0.35-0.6 depending on
    # the initial draw (measured over seeds 0-5), after 10 epochs 0.66-0.75 for every seed tried
    epochs = "10" if "sigmoid" in extra else "3"
    out = ok(run("train", "--epochs", epochs, *extra, cwd=tmp_path))
    assert score(out, "test accuracy") > 0.5
    if extra == ["--hidden", ""]:
        assert "64-10" in out and "no hidden layer" in out


def test_train_xor_without_a_test_set_reports_held_out_validation_accuracy(tmp_path):
    out = ok(run("train", "--data", "xor", "--hidden", "8", "--activation", "tanh", cwd=tmp_path))
    assert "320 training, 80 validation, no test set" in out      # 20% held out by default
    assert score(out, "validation accuracy") >= 0.95 and "(held-out 20%, 80 samples)" in out
    assert "train accuracy" not in out


def test_train_moons_with_validation(tmp_path):
    out = ok(run("train", "--data", "moons", "--val-split", "0.2", "--hidden", "32,32", cwd=tmp_path))
    assert "600 training, 150 validation, 250 test samples" in out
    assert "validation accuracy" in out
    assert score(out, "test accuracy") >= 0.95


def test_train_csv_with_named_labels_then_predict_and_evaluate(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(240, 3))
    names = np.where(X[:, 0] + X[:, 1] > 0.3, "setosa", np.where(X[:, 2] > 0, "versicolor", "virginica"))
    write_csv(tmp_path / "flowers.csv", ["a", "b", "species", "c"],
              [[f"{x[0]:.4f}", f"{x[1]:.4f}", s, f"{x[2]:.4f}"] for x, s in zip(X, names)])
    out = ok(run("train", "--data", "flowers.csv", "--target", "species", "--epochs", "60", "--save",
                 "fl.safetensors", cwd=tmp_path))
    assert "3 classes" in out and "no test set" in out
    assert score(out, "validation accuracy") >= 0.9
    # predict by column name: the columns may come in another order, the label column may be absent
    write_csv(tmp_path / "new.csv", ["c", "b", "a"], [[f"{x[2]:.4f}", f"{x[1]:.4f}", f"{x[0]:.4f}"] for x in X])
    rows = list(csv.reader(ok(run("predict", "fl.safetensors", "new.csv", "--proba", cwd=tmp_path))
                           .splitlines()))
    assert rows[0] == ["prediction", "p_setosa", "p_versicolor", "p_virginica"]
    assert len(rows) == 1 + len(X)
    predicted = np.array([r[0] for r in rows[1:]])
    assert np.mean(predicted == names) >= 0.9
    assert np.allclose([sum(map(float, r[1:])) for r in rows[1:]], 1, atol=1e-4)
    out = ok(run("evaluate", "fl.safetensors", "flowers.csv", cwd=tmp_path))
    assert abs(score(out, "accuracy") - np.mean(predicted == names)) < 1e-3
    info = ok(run("info", "fl.safetensors", cwd=tmp_path))
    assert "setosa, versicolor, virginica" in info


def test_train_npz_with_test_arrays_and_regression(tmp_path):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 4)).astype(np.float32)
    X_test = rng.normal(size=(100, 4)).astype(np.float32)
    np.savez(tmp_path / "cls.npz", X=X, y=(X.sum(1) > 0).astype(np.int64), X_test=X_test,
             y_test=(X_test.sum(1) > 0).astype(np.int64))
    out = ok(run("train", "--data", "cls.npz", "--hidden", "16", cwd=tmp_path))
    assert "300 training, 100 test samples; 4 features; 2 classes" in out
    assert score(out, "test accuracy") >= 0.9
    np.savez(tmp_path / "reg.npz", X=X, y=np.sin(X[:, 0]) + 0.5 * X[:, 1])  # float targets: regression
    out = ok(run("train", "--data", "reg.npz", "--hidden", "32", "--epochs", "60", "--save", "reg.safetensors",
                 cwd=tmp_path))
    assert "regression, 1 output" in out
    # held-out 20% (60 samples): 0.099 measured; predicting the mean scores ~0.37 (0.5 x the target variance)
    assert score(out, "validation loss") < 0.2
    pred = ok(run("predict", "reg.safetensors", "reg.npz", cwd=tmp_path)).splitlines()
    assert pred[0] == "prediction" and len(pred) == 301
    assert "L2Loss (regression" in ok(run("info", "reg.safetensors", cwd=tmp_path))


def test_train_refuses_multilabel_npz_targets(tmp_path):
    """0/1 multi-hot rows (several labels per sample) once trained as '4 classes' of a softmax model."""
    rng = np.random.default_rng(2)
    X = rng.normal(size=(40, 3)).astype(np.float32)
    y = (rng.uniform(size=(40, 4)) < 0.5).astype(np.int64)
    y[0] = [1, 1, 0, 1]
    np.savez(tmp_path / "multilabel.npz", X=X, y=y)
    proc = run("train", "--data", "multilabel.npz", "--epochs", "1", cwd=tmp_path)
    line = one_line_error(proc)
    assert "multilabel" in line and "SigmoidCrossEntropy" in line
    assert "classes" not in proc.stdout       # refused before it is described as a k-class problem


# ----------------------------------------------------------------------- save / predict / evaluate / info

def test_save_predict_evaluate_info_round_trip(digits_model):
    d, model, train_out = digits_model
    from fastnn.data import digits_split
    y_test = digits_split()[3]
    test_accuracy = score(train_out, "test accuracy")
    out = ok(run("evaluate", model, "digits", cwd=d))
    assert "450 samples from digits (test split)" in out
    assert abs(score(out, "accuracy") - test_accuracy) < 1e-4
    assert score(out, "loss") > 0
    out = ok(run("predict", model, "digits", "--out", "pred.csv", cwd=d))
    assert "pred.csv" in out
    with open(d / "pred.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["prediction"] and len(rows) == 451
    assert abs(np.mean(np.array([int(r[0]) for r in rows[1:]]) == y_test) - test_accuracy) < 1e-4
    proba = ok(run("predict", model, "digits", "--proba", cwd=d)).splitlines()
    assert proba[0] == "prediction," + ",".join(f"p_{k}" for k in range(10))
    assert len(proba) == 451
    info = ok(run("info", model, cwd=d))
    for text in ("format version 1", "64 -> FullyConnected(32", "ReLU", "FullyConnected(10", "2,410",
                 "Adam(lr=0.002", "5 epochs", "batch 32", "validation split 0.1", "test accuracy"):
        assert text in info, text


def test_predict_and_evaluate_files(digits_model, tmp_path):
    _, model, _ = digits_model
    from fastnn.data import digits_split
    X_train, X_test, y_train, y_test = digits_split()
    np.savez(tmp_path / "d.npz", X=X_test[:50], y=y_test[:50])
    write_csv(tmp_path / "d.csv", [f"px{i}" for i in range(64)] + ["digit"],
              [[f"{v:g}" for v in x] + [int(t)] for x, t in zip(X_test[:50], y_test[:50])])
    out_npz = ok(run("evaluate", model, "d.npz", cwd=tmp_path))
    out_csv = ok(run("evaluate", model, "d.csv", cwd=tmp_path))
    assert "50 samples" in out_npz and "50 samples" in out_csv
    assert score(out_npz, "accuracy") == score(out_csv, "accuracy")
    np.savez(tmp_path / "unlabelled.npz", X=X_test[:7])
    assert len(ok(run("predict", model, "unlabelled.npz", cwd=tmp_path)).splitlines()) == 8
    one_line_error(run("evaluate", model, "unlabelled.npz", cwd=tmp_path))


@pytest.mark.parametrize("written", ["{:.1f}", "{:.18e}", " {:d} "])
def test_evaluate_takes_whole_number_labels_however_written(digits_model, tmp_path, written):
    """Class ids written as floats ("3.0", "3.000e+00": np.savetxt, a DataFrame's float column) are the
    same ids; a label that is not a whole number is refused by value."""
    _, model, _ = digits_model
    from fastnn.data import digits_split
    X_test, y_test = digits_split()[1][:40], digits_split()[3][:40]
    header = [f"px{i}" for i in range(64)] + ["digit"]
    cells = [[f"{v:g}" for v in x] for x in X_test]
    write_csv(tmp_path / "ints.csv", header, [c + [int(t)] for c, t in zip(cells, y_test)])
    write_csv(tmp_path / "floats.csv", header, [c + [written.format(float(t)) if "e" in written or ".1f" in written
                                                     else written.format(int(t))] for c, t in zip(cells, y_test)])
    assert ok(run("evaluate", model, "floats.csv", cwd=tmp_path)).replace("floats", "ints") == \
        ok(run("evaluate", model, "ints.csv", cwd=tmp_path))
    write_csv(tmp_path / "half.csv", header, [c + [t + 0.5] for c, t in zip(cells, y_test)])
    assert "must be integer class ids for this model, got '" in one_line_error(run("evaluate", model, "half.csv",
                                                                                   cwd=tmp_path))


def test_train_on_whole_float_labels_notes_how_to_get_classes(tmp_path):
    """--task auto reads float labels as a regression target, as documented; when they look like class ids
    written as floats, one stderr line says how to train classes instead (not with -q, nor when --task is
    given, nor for a real quantity)."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((120, 3))
    header = ["a", "b", "c", "label"]
    write_csv(tmp_path / "ids.csv", header, [[*x, f"{float(k):.1f}"] for x, k in zip(X, rng.integers(0, 3, 120))])
    write_csv(tmp_path / "amount.csv", header, [[*x, f"{v:.3f}"] for x, v in zip(X, rng.standard_normal(120))])
    note = "fastnn: note: the labels are whole numbers written as floats (3 distinct values)"
    proc = run("train", "--data", "ids.csv", "--epochs", "2", cwd=tmp_path)
    ok(proc)
    assert note in proc.stderr and "regression" in proc.stdout
    for extra in (["-q"], ["--task", "regression"]):
        proc = run("train", "--data", "ids.csv", "--epochs", "2", *extra, cwd=tmp_path)
        ok(proc)
        assert "note:" not in proc.stderr
    proc = run("train", "--data", "amount.csv", "--epochs", "2", cwd=tmp_path)
    ok(proc)
    assert "note:" not in proc.stderr


# ------------------------------------------------------------------------------------ gradcheck / demos

def test_gradcheck_passes(tmp_path):
    out = ok(run("gradcheck", cwd=tmp_path))
    for name in ("FullyConnected", "ReLU", "Sigmoid", "TanH", "SoftMax", "LeakyReLU", "ELU", "SiLU", "GELU",
                 "GELU(tanh)", "Softplus", "Mish", "Identity", "Dropout", "CrossEntropyLoss", "SoftmaxCrossEntropy",
                 "SigmoidCrossEntropy", "L2Loss", "input x"):
        assert name in out, name
    errors = [float(e) for e in re.findall(r"(\d\.\d+e[-+]\d+)  ok", out)]
    # 48 per-layer gradients (6 networks) and the fused kernel's 34 of the five networks it can train
    assert len(errors) == 82 and max(errors) < 1e-6
    assert out.count("fused kernel: ") == 34
    assert "FAIL" not in out and "passed" in out


def test_gradcheck_fails_with_exit_1_when_the_tolerance_is_impossible(tmp_path):
    proc = run("gradcheck", "--tol", "1e-300", cwd=tmp_path)
    assert proc.returncode == 1 and "FAIL" in proc.stdout and "Traceback" not in proc.stderr


def test_demo_xor(tmp_path):
    args = ["demo", "xor"] + (["--plot", "xor.png"] if HAVE_MPL else [])
    out = ok(run(*args, cwd=tmp_path))
    assert score(out, r"perceptron \(.*\): accuracy") < 1
    assert score(out, r"network 2-4-2 tanh \(.*\): accuracy") == 1.0
    if HAVE_MPL:
        assert_png(tmp_path / "xor.png")
    else:
        assert not list(tmp_path.iterdir())  # no PNG unless asked for


def test_demo_approx_error_shrinks_with_width(tmp_path):
    args = ["demo", "approx"] + (["--plot", "approx.png"] if HAVE_MPL else [])
    proc = run(*args, cwd=tmp_path)
    out = ok(proc)
    assert "GradientHealthWarning" not in proc.stderr      # its fits converge; that is not 'vanishing'
    table = {int(m.group(1)): [float(v) for v in m.group(2).split()]
             for m in re.finditer(r"^[ \t]+(\d+)[ \t]+([\d. \t]+?)[ \t]*$", out, re.M)}
    assert sorted(table) == [1, 2, 4, 8, 16, 32]
    errors = np.array([table[n] for n in sorted(table)])  # rows N, columns sin, |x|, bump
    assert errors.shape == (6, 3)
    assert np.all(errors[-1] < errors[0] / 10)
    assert np.all(errors[1:] <= errors[:-1] * 1.05), errors  # (essentially) monotone in N
    if HAVE_MPL:
        assert_png(tmp_path / "approx.png")


# ------------------------------------------------------------------------------------------- bench

def test_bench_without_a_checkout(monkeypatch, capsys):
    monkeypatch.setattr(cli.bench, "find_benchmarks", lambda: None)
    assert cli.main(["bench"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs a source checkout" in err[0]


def test_bench_runs_compare_quick_from_the_current_directory(tmp_path):
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "__init__.py").write_text("")
    (tmp_path / "benchmarks" / "compare.py").write_text(
        "import sys\nprint('fastnn compare', sys.argv[1:])\n")
    out = ok(run("bench", "--peers", "none", cwd=tmp_path, timeout=120))  # the fake, never the real one
    assert "fastnn compare ['--quick', '--peers', 'none']" in out


# ------------------------------------------------------------------------------------------- errors

def test_error_missing_data_file(tmp_path):
    for data in ("missing.csv", "missing.npz"):
        assert "missing" in one_line_error(run("train", "--data", data, cwd=tmp_path))
    assert "unknown dataset" in one_line_error(run("train", "--data", "digitz", cwd=tmp_path))


def test_error_bad_csv_cell(tmp_path):
    (tmp_path / "bad.csv").write_text("a,b,y\n1,2,0\n3,oops,1\n")
    line = one_line_error(run("train", "--data", "bad.csv", cwd=tmp_path))
    assert "line 3" in line and "'b'" in line and "oops" in line
    (tmp_path / "short.csv").write_text("a,b,y\n1,2,0\n3,4\n")
    assert "line 3" in one_line_error(run("train", "--data", "short.csv", cwd=tmp_path))


@pytest.mark.parametrize("args, expected", [
    (["train", "--bogus"], "unrecognized arguments: --bogus"),
    (["trian"], "invalid choice"),
    (["train", "--activation", "swish"], "invalid choice"),
    (["train", "--hidden", "12,x"], "--hidden"),
    (["train", "--hidden", "-3"], "--hidden"),
    (["train", "--lr", "0"], "--lr"),
    (["train", "--lr", "nan"], "--lr"),
    (["train", "--epochs", "0"], "--epochs"),
    (["train", "--val-split", "1.5"], "--val-split"),
    (["train", "--momentum", "0.5"], "--optimizer sgd"),
    (["train", "--data", "digits", "--target", "label"], "only to .csv"),
    (["train", "--save", "no/such/dir/m.safetensors"], "does not exist"),
    (["demo"], "choose a demo"),
    (["predict", "missing.safetensors", "digits"], "no such model file"),
])
def test_usage_errors_are_one_line_with_exit_2(args, expected, capsys):
    assert cli.main(args) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastnn: error: ") and expected in lines[0], captured.err


def test_errors_in_a_subprocess_unknown_option_and_bad_hidden(tmp_path):
    assert "--bogus" in one_line_error(run("train", "--bogus", cwd=tmp_path))
    assert "--hidden" in one_line_error(run("train", "--hidden", "12,x", cwd=tmp_path))


def test_error_corrupt_model_and_wrong_shapes(digits_model, tmp_path):
    _, model, _ = digits_model
    (tmp_path / "corrupt.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    assert "corrupt.safetensors" in one_line_error(run("info", "corrupt.safetensors", cwd=tmp_path))
    assert "64 features" in one_line_error(run("evaluate", model, "moons", cwd=tmp_path))
    (tmp_path / "narrow.csv").write_text("a,b,c\n1,2,3\n")
    assert "64 features" in one_line_error(run("predict", model, "narrow.csv", cwd=tmp_path))


def test_diverged_training_exits_1(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 3)).astype(np.float32) * 100
    np.savez(tmp_path / "big.npz", X=X, y=X.sum(1).astype(np.float64) * 1e3)
    line = one_line_error(run("train", "--data", "big.npz", "--optimizer", "sgd", "--lr", "10", "--epochs", "5",
                              cwd=tmp_path), code=1)
    assert "diverged" in line


def test_missing_matplotlib_is_one_error_line(tmp_path):
    fake = tmp_path / "fake" / "matplotlib"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('No module named matplotlib (simulated)')\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "fake"))
    line = one_line_error(run("demo", "xor", "--plot", "x.png", cwd=tmp_path, env=env))
    assert line == "fastnn: error: plotting needs matplotlib: pip install 'fastnn[plot]'"
    assert not (tmp_path / "x.png").exists()


@pytest.mark.skipif(not hasattr(signal, "SIGINT") or os.name != "posix", reason="needs POSIX signals")
def test_ctrl_c_exits_130_with_one_line(tmp_path):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    proc = subprocess.Popen([sys.executable, "-m", "fastnn", "train", "--epochs", "1000000"], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert proc.stdout.readline().startswith("data ")  # inside main(): the header is printed
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130
    lines = [line for line in err.strip().splitlines() if line != COMPILE_LINE]
    assert len(lines) == 1 and lines[0].startswith("fastnn: ") and "interrupted" in lines[0], err


def test_hidden_layer_too_large_for_memory_is_bad_input(tmp_path):
    """L14: a width that cannot fit in memory is the user's input: exit 2, no 'unexpected' prefix."""
    rng = np.random.default_rng(0)
    X = rng.random((40, 2))
    (tmp_path / "t.csv").write_text("a,b,label\n" + "".join(f"{a},{b},{int(a > .5)}\n" for a, b in X))
    proc = run("train", "--data", "t.csv", "--target", "label", "--hidden", "10000000000", cwd=tmp_path)
    msg = one_line_error(proc)
    assert "bytes" in msg and "unexpected" not in msg and "--hidden" in msg


def test_only_the_program_freezes_the_collector_at_its_end(tmp_path):
    """Run as the program (no argv), main ends by freezing the GC (the interpreter's shutdown then skips
    full collections over Numba's objects); called with arguments (from a program or a test) it does not."""
    code = ("import gc, sys\n"
            "from fastnn import cli\n"
            "before = gc.get_freeze_count()\n"
            "cli.main(['--version'])\n"
            "called = gc.get_freeze_count()\n"
            "sys.argv = ['fastnn', '--version']\n"
            "cli.main()\n"
            "print([before, called, gc.get_freeze_count() > 0, gc.isenabled()])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[0, 0, True, True]"


@pytest.mark.skipif(not HAVE_MPL, reason="needs matplotlib (pip install 'fastnn[plot]')")
@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), ValueError("the directory vanished")])
def test_a_plot_that_cannot_be_written_is_one_line_and_the_model_is_kept(tmp_path, monkeypatch, capsys, error):
    """rt8: --plot's write failing at the end (a full disk, its directory removed) was the last-resort
    'unexpected OSError' line; it is named as the plot's, exit 1, and the model saved before it stays."""
    import fastnn.io
    real = fastnn.io.atomic_write

    def failing(path, data, what="file"):
        if what == "plot":
            raise error
        return real(path, data, what)
    monkeypatch.setattr(fastnn.io, "atomic_write", failing)
    monkeypatch.delenv("FASTNN_DEBUG", raising=False)
    model = tmp_path / "m.safetensors"
    code = cli.main(["train", "--data", "xor", "--epochs", "2", "-q", "--save", str(model),
                     "--plot", str(tmp_path / "curves.png")])
    err = capsys.readouterr().err
    assert code == 1 and "cannot write the plot" in err and "unexpected" not in err, err
    assert len(err.strip().splitlines()) == 1 and model.exists()
