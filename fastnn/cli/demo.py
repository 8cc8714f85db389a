"""fastnn demo: the classroom demonstrations"""
from ._common import (EXIT_FAILURE, EXIT_OK, _check_plot, _Formatter, _missing_subcommand, _Parser,
                      _positive_int, _seed, _text)

HELP_DEMO = """\
Classroom demonstrations: 'fastnn demo xor' and 'fastnn demo approx'.
"""


HELP_DEMO_XOR = """\
Train Rosenblatt's perceptron and a network with one hidden layer on the 4 XOR points and print both
predictions and accuracies: no line separates XOR, so the perceptron gets at most 3 of 4; the network gets
all 4.

A PNG is written only when --plot is given.
"""


HELP_DEMO_APPROX = """\
Fit sin(x), |x| and a smooth bump on [-3, 3] with one hidden layer of N = 1, 2, 4, 8, 16, 32 sigmoid units
and print the max absolute error per N and function: it shrinks as N grows.

A PNG is written only when --plot is given.
"""


def cmd_demo_xor(args):
    from ..demos import xor_demo
    if args.plot:
        _check_plot(args.plot)
    r = xor_demo(hidden=args.hidden, seed=args.seed)
    print("XOR: 4 points, no straight line separates the two classes")
    print("   x1   x2   XOR   perceptron   network")
    for (a, b), t, p, n in zip(r["X"], r["y"], r["perceptron_pred"], r["network_pred"]):
        print(f"  {a:3.0f}  {b:3.0f}  {t:4d}   {p:10d}   {n:7d}")
    state = "did not converge" if not r["perceptron"].converged else "converged"
    print(f"perceptron (Rosenblatt's rule, 100 epochs, {state}): accuracy {r['perceptron_accuracy']:.2f} "
          f"({int(round(4 * r['perceptron_accuracy']))}/4; a line can get at most 3/4)")
    print(f"network 2-{args.hidden}-2 tanh (Adam, 500 epochs): accuracy {r['network_accuracy']:.2f} "
          f"({int(round(4 * r['network_accuracy']))}/4)")
    if args.plot:
        from ..plotting import plot_decision_boundaries
        plot_decision_boundaries(
            [(f"Perceptron: accuracy {r['perceptron_accuracy']:.0%}", r["perceptron"]),
             (f"Network 2-{args.hidden}-2 (tanh): accuracy {r['network_accuracy']:.0%}", r["network"])],
            r["X"], r["y"], args.plot, title="XOR: a linear unit vs one hidden layer")
        print(f"wrote the decision boundaries to {args.plot}")
    return EXIT_OK if r["network_accuracy"] == 1.0 else EXIT_FAILURE


def cmd_demo_approx(args):
    from ..demos import APPROX_UNITS, approx_demo
    if args.plot:
        _check_plot(args.plot)
    r = approx_demo(units=APPROX_UNITS, seed=args.seed)
    names = list(r["errors"])
    print("universal approximation on [-3, 3]: one hidden layer of N sigmoid units, max |f(x) - net(x)|")
    print(f"  {'N':>3}  " + "  ".join(f"{n:>9}" for n in names))
    for n in r["units"]:
        print(f"  {n:>3}  " + "  ".join(f"{r['errors'][name][n]:9.4f}" for name in names))
    print("(hidden units start as evenly spaced soft steps, are trained with Adam on the L2 loss, and the "
          "output layer is solved by least squares; the error is measured on 1201 points)")
    if args.plot:
        from ..plotting import plot_function_fits
        plot_function_fits(r["x"], r["targets"], r["fits"], args.plot,
                           title="One hidden layer of N sigmoid units")
        print(f"wrote the fits to {args.plot}")
    return EXIT_OK



def add_parser(sub):
    import fastnn
    p = sub.add_parser("demo", formatter_class=_Formatter, help="classroom demos: xor, approx",
                       description=_text(HELP_DEMO))
    demos = p.add_subparsers(dest="demo", metavar="DEMO", parser_class=_Parser)
    p.set_defaults(func=lambda args, p=p: _missing_subcommand(p, "a demo: xor or approx"), prog_=p.prog)
    d = demos.add_parser(
        "xor", formatter_class=_Formatter, help="the perceptron fails on XOR, one hidden layer succeeds",
        description=_text(HELP_DEMO_XOR))
    d.add_argument("--plot", metavar="PNG", help="write both decision boundaries, side by side, to this PNG")
    d.add_argument("--hidden", type=_positive_int, default=4,
                   help="hidden units of the network (default: %(default)s)")
    d.add_argument("--seed", type=_seed, default=0, help="seed of both models")
    d.set_defaults(func=cmd_demo_xor, prog_=d.prog)
    d = demos.add_parser(
        "approx", formatter_class=_Formatter, help="universal approximation with N sigmoid units",
        description=_text(HELP_DEMO_APPROX))
    d.add_argument("--plot", metavar="PNG", help="write the fitted curves to this PNG")
    d.add_argument("--seed", type=_seed, default=0, help="seed of the networks and the shuffling")
    d.set_defaults(func=cmd_demo_approx, prog_=d.prog)

