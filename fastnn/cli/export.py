"""fastnn export: a saved model as ONNX"""
from ._common import (CLIError, EXIT_FAILURE, EXIT_OK, _check_output_path, _error_text, _Formatter,
                      _load_model, _text)

HELP_EXPORT = """\
Write a saved model as an ONNX file (opset 13) for onnxruntime and other ONNX runtimes: input 'input' (batch,
features) in the model's dtype; outputs 'logits' (or 'output'), and for classifiers 'probabilities' and
'label' (the class name when the model file stores class names). Needs pip install 'fastnn[onnx]'.
"""


def cmd_export(args):
    from .. import export
    net, _, extra = _load_model(args.model)
    _check_output_path(args.onnx, "ONNX file")
    head = export.head_of(net)
    pre = net.preprocessing       # scaling, categories, fills, class names, target scaling: in the graph
    classes = None
    if pre is None or pre.classes is None:
        classes = extra.get("classes")
        if not (isinstance(classes, list) and head in ("softmax", "probabilities")
                and len(classes) == net.n_outputs):
            classes = None
    try:
        export.export_onnx(net, args.onnx, classes=classes)
    except ImportError as exc:
        raise CLIError(str(exc), code=EXIT_FAILURE) from None
    except (ValueError, TypeError) as exc:
        raise CLIError(f"cannot export {args.model}: {_error_text(exc)}") from None
    except OSError as exc:
        raise CLIError(f"cannot write {args.onnx}: {_error_text(exc)}", code=EXIT_FAILURE) from None
    outputs = export.output_names(head)
    named = classes is not None or (pre is not None and pre.classes is not None)
    if pre is None:
        inputs = f"input 'input' (batch, {net.n_features}) {net.dtype.name}"
    elif all(c["kind"] == "numeric" for c in pre.columns):
        inputs = (f"input 'input' (batch, {len(pre.names)}: {', '.join(pre.names)}) {net.dtype.name}, NaN for "
                  f"a missing cell")
    else:
        inputs = (f"one input per column ({', '.join(pre.names)}), each (batch, 1): numbers {net.dtype.name} "
                  f"or strings (categorical)")
    print(f"wrote {args.onnx}: ONNX opset {export.OPSET}, {inputs}, outputs {', '.join(repr(o) for o in outputs)}"
          f"{' (label: class names)' if named else ''}"
          f"{'; the preprocessing runs inside the graph' if pre is not None else ''}")
    return EXIT_OK


def add_parser(sub):
    import fastnn
    p = sub.add_parser("export", formatter_class=_Formatter, help="write a saved model as ONNX",
                       description=_text(HELP_EXPORT))
    p.add_argument("model", metavar="MODEL", help="model file written by fastnn train --save")
    p.add_argument("--onnx", metavar="OUT.onnx", required=True, help="the ONNX file to write")
    p.set_defaults(func=cmd_export, prog_=p.prog)

