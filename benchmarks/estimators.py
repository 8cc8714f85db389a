"""fastnn's scikit-learn drop-ins against scikit-learn's, with scikit-learn's defaults, on three tasks.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m benchmarks.estimators [--repeats 3] [--json out.json]

(The workplace sets OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE, which halve OpenBLAS's speed on these CPUs: unset
them for a measurement, as above; ``compare.cpu_busy_fraction`` is printed so a busy machine shows.)

Tasks (standardised inputs, a 75/25 split, ``random_state=0`` everywhere):
* classification: ``make_classification(n_samples=50000, n_features=100, n_informative=40, n_classes=5)``
  — network 100-100-5, batch 200, Adam: the issue's task, and the ``tabular`` cell of the matrix;
* digits: ``load_digits`` (1,797 x 64, 10 classes);
* regression: ``make_regression(n_samples=20000, n_features=50, noise=10)``, target standardised.

Per task and estimator: seconds per iteration (fit time / n_iter_, median over ``--repeats`` fits), the test
score (accuracy or R²) and n_iter_; fastnn in float32 (its default) and float64. Ratios: scikit-learn's time
per iteration / fastnn's; fastnn's estimator / ``NeuralNetwork.fit`` of the same network, the same epochs
(the estimator's own overhead); the fused path / the per-layer path on the same network (``fused=False``).

``--score-seeds 0,1,2`` adds, per task, the test score of a fit per ``random_state`` for scikit-learn (float64,
and float32: X given as float32, which scikit-learn's MLP keeps) and fastnn (float32, float64), with the
mean per estimator: how far one seed's score moves is the scale against which "the same test score
(±0.005)" is read.
"""
import argparse
import json
import statistics
import sys
import time
import warnings

import numpy as np


def tasks():
    from sklearn.datasets import load_digits, make_classification, make_regression
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler
    out = {}
    X, y = make_classification(n_samples=50000, n_features=100, n_informative=40, n_classes=5, random_state=0)
    out["classification"] = ("classifier", X, y)
    X, y = load_digits(return_X_y=True)
    out["digits"] = ("classifier", X, y)
    X, y = make_regression(n_samples=20000, n_features=50, noise=10.0, random_state=0)
    out["regression"] = ("regressor", X, (y - y.mean()) / y.std())
    split = {}
    for name, (kind, X, y) in out.items():
        Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, random_state=0)
        scaler = StandardScaler().fit(Xtr)
        split[name] = (kind, scaler.transform(Xtr), scaler.transform(Xte), ytr, yte)
    return split


def timed_fit(make, Xtr, ytr, Xte, yte, repeats):
    """(median seconds per iteration, test score, n_iter_) over ``repeats`` fresh fits."""
    per_iter, score, n_iter = [], None, None
    for _ in range(repeats):
        est = make()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            start = time.perf_counter()
            est.fit(Xtr, ytr)
            elapsed = time.perf_counter() - start
        per_iter.append(elapsed / est.n_iter_)
        score, n_iter = est.score(Xte, yte), est.n_iter_
    return statistics.median(per_iter), score, n_iter


def network_epoch_time(kind, Xtr, ytr, dtype, n_outputs, epochs, repeats, fused):
    """Median seconds per epoch of NeuralNetwork.fit on the estimator's network (100 ReLU units, Adam,
    batch min(200, n)), ``fused`` as given."""
    import fastnn as fnn
    times = []
    for _ in range(repeats):
        net = fnn.NeuralNetwork([fnn.FullyConnected(Xtr.shape[1], 100, dtype=dtype), fnn.ReLU(),
                                 fnn.FullyConnected(100, n_outputs, dtype=dtype)],
                                loss=fnn.SoftmaxCrossEntropy() if kind == "classifier" else fnn.L2Loss(),
                                optimizer=fnn.Adam(), seed=0)
        y = ytr if kind == "classifier" else ytr.reshape(-1, 1)
        net.fit(Xtr[:400], y[:400], epochs=1, batch_size=200, verbose=0, fused=fused)      # compile
        start = time.perf_counter()
        net.fit(Xtr, y, epochs=epochs, batch_size=min(200, len(Xtr)), verbose=0, fused=fused)
        times.append((time.perf_counter() - start) / epochs)
    return statistics.median(times)


SCORE_LABELS = ("scikit-learn float64", "scikit-learn float32", "fastnn float32", "fastnn float64")


def seed_scores(kind, Xtr, Xte, ytr, yte, seeds):
    """{estimator label: [test score per seed]} for scikit-learn float64 / float32 and fastnn float32 /
    float64, scikit-learn's defaults, one fit per ``random_state`` in ``seeds``."""
    from sklearn import neural_network as sk
    import fastnn as fnn
    Sk = sk.MLPClassifier if kind == "classifier" else sk.MLPRegressor
    Fn = fnn.MLPClassifier if kind == "classifier" else fnn.MLPRegressor
    X32tr, X32te = Xtr.astype(np.float32), Xte.astype(np.float32)
    makers = {"scikit-learn float64": (lambda rs: Sk(random_state=rs), Xtr, Xte),
              "scikit-learn float32": (lambda rs: Sk(random_state=rs), X32tr, X32te),
              "fastnn float32": (lambda rs: Fn(random_state=rs), Xtr, Xte),
              "fastnn float64": (lambda rs: Fn(random_state=rs, dtype=np.float64), Xtr, Xte)}
    out = {label: [] for label in makers}
    for rs in seeds:
        for label, (make, X, Xt) in makers.items():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out[label].append(make(rs).fit(X, ytr).score(Xt, yte))
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tasks", default="classification,digits,regression")
    parser.add_argument("--json")
    parser.add_argument("--score-seeds", default="", help="comma-separated random_states: test scores per seed")
    args = parser.parse_args(argv)
    from sklearn import neural_network as sk
    import fastnn as fnn
    from benchmarks.compare import cpu_busy_fraction
    busy = cpu_busy_fraction()
    data = tasks()
    rows = []
    for name in args.tasks.split(","):
        kind, Xtr, Xte, ytr, yte = data[name]
        Sk = sk.MLPClassifier if kind == "classifier" else sk.MLPRegressor
        Fn = fnn.MLPClassifier if kind == "classifier" else fnn.MLPRegressor
        n_outputs = len(np.unique(ytr)) if kind == "classifier" else 1
        fnn_types = {"float32": np.float32, "float64": np.float64}
        Fn(random_state=0, max_iter=2).fit(Xtr[:400], ytr[:400])                       # compile both dtypes
        Fn(random_state=0, max_iter=2, dtype=np.float64).fit(Xtr[:400], ytr[:400])
        sk_t, sk_score, sk_iter = timed_fit(lambda: Sk(random_state=0), Xtr, ytr, Xte, yte, args.repeats)
        row = {"task": name, "n_train": len(Xtr), "sklearn": {"s_per_iter": sk_t, "score": sk_score,
                                                               "n_iter": sk_iter}}
        for label, dtype in fnn_types.items():
            t, score, n_iter = timed_fit(lambda: Fn(random_state=0, dtype=dtype), Xtr, ytr, Xte, yte, args.repeats)
            epochs = min(n_iter, 20)
            fused_t = network_epoch_time(kind, Xtr, ytr, dtype, n_outputs, epochs, args.repeats, True)
            layer_t = network_epoch_time(kind, Xtr, ytr, dtype, n_outputs, epochs, args.repeats, False)
            row[f"fastnn {label}"] = {"s_per_iter": t, "score": score, "n_iter": n_iter,
                                      "speedup_vs_sklearn": sk_t / t, "vs_network_fit": t / fused_t,
                                      "network_fit_fused_s": fused_t, "network_fit_per_layer_s": layer_t,
                                      "fused_over_per_layer_speed": layer_t / fused_t}
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    lines = [f"CPU busy before the run: {busy:.0%}" if busy is not None else "CPU busy: unknown", "",
             "| task | scikit-learn ms/iter (score) | fastnn f32 ms/iter (score) | × | fastnn f64 ms/iter (score) "
             "| × | estimator / NeuralNetwork.fit (f32, f64) | fused ÷ per-layer speed (f32, f64) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        s, a, b = r["sklearn"], r["fastnn float32"], r["fastnn float64"]
        lines.append(f"| {r['task']} | {1e3 * s['s_per_iter']:.2f} ({s['score']:.4f}) | "
                     f"{1e3 * a['s_per_iter']:.2f} ({a['score']:.4f}) | {a['speedup_vs_sklearn']:.1f}× | "
                     f"{1e3 * b['s_per_iter']:.2f} ({b['score']:.4f}) | {b['speedup_vs_sklearn']:.1f}× | "
                     f"{a['vs_network_fit']:.2f}, {b['vs_network_fit']:.2f} | "
                     f"{a['fused_over_per_layer_speed']:.2f}, {b['fused_over_per_layer_speed']:.2f} |")
    if args.score_seeds:
        seeds = [int(v) for v in args.score_seeds.split(",")]
        lines += ["", f"Test score per random_state ({', '.join(map(str, seeds))}) and their mean:", "",
                  "| task | " + " | ".join(SCORE_LABELS) + " |", "|---|" + "---|" * len(SCORE_LABELS)]
        for r in rows:
            kind, Xtr, Xte, ytr, yte = data[r["task"]]
            r["seed_scores"] = scores = seed_scores(kind, Xtr, Xte, ytr, yte, seeds)
            lines.append(f"| {r['task']} | " + " | ".join(
                ", ".join(f"{v:.4f}" for v in scores[k]) + f" (mean {statistics.mean(scores[k]):.4f})"
                for k in SCORE_LABELS) + " |")
    print("\n".join(lines))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cpu_busy_before": busy, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
