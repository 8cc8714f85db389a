"""fastnn gradcheck: backpropagation against finite differences"""
from ._common import (EXIT_FAILURE, EXIT_OK, _Formatter, _positive_float, _seed, _text)

HELP_GRADCHECK = """\
Compare the analytic gradients of six small float64 networks - together every built-in layer type
(FullyConnected, ReLU, Sigmoid, TanH, SoftMax, LeakyReLU, ELU, SiLU, GELU exact and tanh, Softplus, Identity,
Dropout) and every loss (CrossEntropyLoss, SoftmaxCrossEntropy, SigmoidCrossEntropy, L2Loss) - with central
finite differences, on the per-layer path and the fused kernel (marked "fused kernel:"), and print the
relative error of every parameter and of the input. Exit code 0 when all are
below --tol, else 1.
"""


def gradcheck_networks(seed=0):
    """The networks ``fastnn gradcheck`` checks (fastnn.gradcheck.builtin_networks)."""
    from ..gradcheck import builtin_networks
    return builtin_networks(seed)


def _gradient_label(net, key):
    """'layers[0].params[1]' -> 'layers[0] FullyConnected bias'; 'x' -> 'input x'."""
    if key == "x":
        return "input x"
    prefix = ""
    if key.startswith("fused "):          # the fused kernel's gradient of the same parameter
        prefix, key = "fused kernel: ", key[len("fused "):]
    try:
        i = int(key.split("]")[0].split("[")[1])
        j = int(key.split("params[")[1].rstrip("]"))
        layer = net.layers[i]
        name = ("weights", "bias")[j] if len(layer.params) == 2 else f"params[{j}]"
        return f"{prefix}layers[{i}] {type(layer).__name__}.{name} {tuple(layer.params[j].shape)}"
    except (IndexError, ValueError, AttributeError):
        return key


def cmd_gradcheck(args):
    import fastnn as fnn
    worst, failed, rows = 0.0, 0, []
    for k, (title, net, x) in enumerate(gradcheck_networks(args.seed)):
        report = fnn.gradcheck(net, x, seed=args.seed)
        rows.append((f"network {k + 1}: {title}", None))
        for key, err in report.items():
            rows.append((_gradient_label(net, key), err))
            worst = max(worst, err)
            failed += not err < args.tol
    width = max(len(label) for label, err in rows if err is not None) + 2
    print(f"gradcheck: analytic gradients vs central differences, float64, tolerance {args.tol:g}")
    print(f"  {'gradient':<{width}} relative error")
    for label, err in rows:
        if err is None:
            print(label)
        else:
            print(f"  {label:<{width}} {err:.2e}  {'ok' if err < args.tol else 'FAIL'}")
    checked = sum(err is not None for _, err in rows)
    if failed:
        print(f"FAILED: {failed} of {checked} gradients have a relative error >= {args.tol:g} (worst {worst:.2e})")
        return EXIT_FAILURE
    print(f"passed: all {checked} gradients agree (worst relative error {worst:.2e} < {args.tol:g})")
    return EXIT_OK



def add_parser(sub):
    import fastnn
    p = sub.add_parser(
        "gradcheck", formatter_class=_Formatter, help="check backpropagation against finite differences",
        description=_text(HELP_GRADCHECK))
    p.add_argument("--tol", type=_positive_float, default=1e-6,
                   help="largest relative error that passes (default: %(default)g)")
    p.add_argument("--seed", type=_seed, default=0, help="seed of the weights, inputs and targets")
    p.set_defaults(func=cmd_gradcheck, prog_=p.prog)

