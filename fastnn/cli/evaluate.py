"""fastnn evaluate: the loss and accuracy of a saved model on labelled data"""
import math
import warnings

from ._common import (CLIError, EXIT_FAILURE, EXIT_OK, _check_features, _error_text, _fmt, _Formatter, _labels_for,
                      _load_model, _read_inputs, _text, _warn)

HELP_EVALUATE = """\
Print the mean loss and (classifiers) the accuracy of MODEL on DATA.

DATA: a .csv with the feature columns and a label column (--target, else the column the model was trained
with, else the last), an .npz with X, y (or X_test, y_test; see --split), or a dataset name (its test split
when it has one).
"""


def cmd_evaluate(args):
    from .. import signals
    from ..kernels._jit import prepare_numba
    with signals.held():     # (a Ctrl-C inside llvmlite's set-up is held until it is done)
        prepare_numba()      # Numba's one-time set-up, cheaper here than inside the first kernel call
    net, _, extra = _load_model(args.model)
    X, labels, where = _read_inputs(args.data, net, extra, target=args.target, split=args.split,
                                    warn=lambda message: _warn(args, message),
                                    drop_missing=args.missing == "drop", header=not args.no_header)
    if labels is None:
        raise CLIError(f"{where}: no labels to evaluate against (a .csv needs a label column, an .npz "
                       f"the array 'y' or 'y_test')")
    _check_features(X, net, where)
    y = _labels_for(net, extra, labels, where)
    with warnings.catch_warnings(record=True) as said:    # the model's outputs not finite: said once, below
        warnings.simplefilter("always", RuntimeWarning)
        try:
            scores = net.evaluate(X, y)
        except (ValueError, TypeError) as exc:
            raise CLIError(f"{where}: {_error_text(exc)}") from None
        parts = [f"loss {_fmt(scores['loss'])}"]
        if "accuracy" in scores:
            parts.append(f"accuracy {scores['accuracy']:.4f}")
        else:
            from ..data import regression_scores
            r = regression_scores(y, net.predict(X))
            parts.append(f"RMSE {_fmt(r['rmse'])} | R² {r['r2']:.4f} (predicting the mean: RMSE "
                         f"{_fmt(r['baseline_rmse'])}, R² 0)")
    finite = all(math.isfinite(v) for v in scores.values())
    first = next((str(w.message) for w in said if issubclass(w.category, RuntimeWarning)), None)
    shown = set()
    for w in said:           # each once (the regression scores predict again: the same warning twice)
        if (w.category, str(w.message)) in shown or (not finite and str(w.message) == first):
            continue
        shown.add((w.category, str(w.message)))
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    print(f"{' | '.join(parts)} | {len(labels):,} samples from {where}")
    if not finite:          # a NaN score is not a result: exit 1 and say why
        raise CLIError(f"the scores are not numbers: {first or 'the model gives NaN or infinite outputs'}",
                       EXIT_FAILURE)
    return EXIT_OK



def add_parser(sub):
    import fastnn
    p = sub.add_parser(
        "evaluate", formatter_class=_Formatter, help="loss and accuracy of a saved model on labelled data",
        description=_text(HELP_EVALUATE))
    p.add_argument("model", metavar="MODEL", help="model file written by fastnn train --save")
    p.add_argument("data", metavar="DATA", help="a .csv or .npz file, or digits|xor|spirals|moons")
    p.add_argument("--target", metavar="NAME", help="label column of a .csv file")
    p.add_argument("--no-header", action="store_true",
                   help="the .csv file has no header row: every row is data and the columns are named 1, 2, ... "
                        "by position (--target 5)")
    p.add_argument("--split", choices=("train", "test"), default=None,
                   help="which arrays of an .npz or dataset: X/y or X_test/y_test (default: test if present)")
    p.add_argument("--missing", choices=("error", "drop"), default="error",
                   help="rows of a .csv with a missing cell the model has no fill value for (trained with "
                        "--missing error or drop), or a missing label: error (the default), or drop them from "
                        "the score (their count is said)")
    p.set_defaults(func=cmd_evaluate, prog_=p.prog)

