"""fastnn predict: predictions of a saved model"""
import csv
import sys

from ._common import (CLIError, EXIT_OK, write_output, _check_features, _check_output_path, _class_name,
                      _error_text, _Formatter, _load_model, _read_inputs, _text, _warn)

HELP_PREDICT = """\
Print (or write with --out) a CSV of predictions: the class (or class name) per row, with --proba the class
probabilities too; for regression the outputs.

DATA: a .csv (the model's feature columns, by name when the model was trained on a CSV, else the first
columns; a label column may be present and is ignored), an .npz (X_test if present, else X; see --split), or
a dataset name.
"""


def cmd_predict(args):
    from .. import signals
    from ..kernels._jit import prepare_numba
    with signals.held():     # (a Ctrl-C inside llvmlite's set-up is held until it is done)
        prepare_numba()      # Numba's one-time set-up, cheaper here than inside the first kernel call
    net, _, extra = _load_model(args.model)
    if args.proba and not net.classification:
        raise CLIError("--proba needs a classification model; this model does regression")
    if args.out:
        _check_output_path(args.out, "output file")
    X, _, where = _read_inputs(args.data, net, extra, target=args.target, split=args.split,
                               warn=lambda message: _warn(args, message), header=not args.no_header)
    _check_features(X, net, where)
    try:
        pred = net.predict(X)
        proba = net.predict_proba(X) if args.proba else None
    except (ValueError, TypeError) as exc:
        raise CLIError(f"{where}: {_error_text(exc)}") from None
    pre = net.preprocessing
    names = pre.classes if pre is not None and pre.classes is not None else None

    def name(k):
        return names[k] if names is not None and 0 <= k < len(names) else _class_name(extra, k)

    if net.classification and pred.ndim == 1:
        header = ["prediction"]
        if proba is not None:
            header += [f"p_{name(k)}" for k in range(proba.shape[1])]
        rows = ([str(p) if pred.dtype == object else name(int(p))]
                + ([f"{v:.6g}" for v in proba[i]] if proba is not None else [])
                for i, p in enumerate(pred))
    elif net.classification:         # multilabel indicators
        header = [f"label_{k}" for k in range(pred.shape[1])]
        rows = ([str(int(v)) for v in row] for row in pred)
    else:
        header = ["prediction"] if pred.shape[1] == 1 else [f"output_{k}" for k in range(pred.shape[1])]
        rows = ([f"{v:.6g}" for v in row] for row in pred)
    if args.out:
        import io
        text = io.StringIO(newline="")
        writer = csv.writer(text)
        writer.writerow(header)
        writer.writerows(rows)
        write_output(args.out, text.getvalue().encode("utf-8"), "output file")
        print(f"wrote {len(pred):,} predictions for {where} to {args.out}")
    else:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return EXIT_OK



def add_parser(sub):
    import fastnn
    p = sub.add_parser(
        "predict", formatter_class=_Formatter, help="predict with a saved model",
        description=_text(HELP_PREDICT))
    p.add_argument("model", metavar="MODEL", help="model file written by fastnn train --save")
    p.add_argument("data", metavar="DATA", help="a .csv or .npz file, or digits|xor|spirals|moons")
    p.add_argument("--proba", action="store_true", help="add the class probabilities (classifiers)")
    p.add_argument("--out", metavar="FILE.csv", help="write the CSV here instead of to standard output")
    p.add_argument("--target", metavar="NAME", help="label column of a .csv file to leave out")
    p.add_argument("--no-header", action="store_true",
                   help="the .csv file has no header row: every row is data and the columns are named 1, 2, ... "
                        "by position (--target 5)")
    p.add_argument("--split", choices=("train", "test"), default=None,
                   help="which arrays of an .npz or dataset: X/y or X_test/y_test (default: test if present)")
    p.set_defaults(func=cmd_predict, prog_=p.prog)

