"""The batch-parallel kernel's gradient split, per layer (issue 18 item 1): the rule against each split forced.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m benchmarks.split_rule [--cells small,tabular] [--rounds 5]

kernels/epoch_parallel.py computes a layer's weight gradient either from each block's own rows (``rows``:
per-block partials summed in block order) or by parameter ranges over the whole batch (``ranges``), chosen per
layer by ``row_split`` (the traffic rule of its docstring), or forced for every layer by its module variable
SPLIT. This tool times the same fit under the three settings — the rule, all ``rows``, all ``ranges`` — on T
threads (default 2), in one process per cell (the kernels compiled once; SPLIT is read per fit, in Python),
in interleaved rounds (the order rotates each round), one ``fit(epochs=1)`` per setting and round; it prints
the median epoch time (the fit's history['time']) per setting and the rule's choice per layer. Run it on an
idle machine: a busy core makes the batch-parallel kernel's thread 0 retire the other (kernels/_sync.py).
"""
import argparse
import os
import statistics
import sys

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import matrix  # noqa: E402

SETTINGS = ("rule", "rows", "ranges")


def measure(cell, threads, rounds, n=None):
    """{setting: [epoch seconds per round]} and the rule's split per layer, for one cell."""
    import fastnn as fnn
    from fastnn.kernels import epoch_parallel

    X, y = matrix.make_data(cell, n=n)
    net = matrix.fastnn_network(cell)
    fnn.set_num_threads(threads)
    times = {s: [] for s in SETTINGS}
    try:
        for r in range(rounds + 1):                    # round 0 compiles and is not timed
            order = SETTINGS[r % 3:] + SETTINGS[:r % 3]
            for setting in order:
                epoch_parallel.SPLIT = None if setting == "rule" else setting
                h = net.fit(X, y, epochs=1, batch_size=cell.batch, verbose=0, seed=r)
                if r:
                    times[setting].append(h["time"][0])
    finally:
        epoch_parallel.SPLIT = None
    rule = epoch_parallel.row_split(list(cell.sizes), cell.batch, threads)
    return times, ["rows" if s else "ranges" for s in rule]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cells", default="small,tabular,mnist128,mnist1024")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--n", type=int, default=None, help="samples per epoch (default: the cell's full size)")
    a = p.parse_args(argv)
    print(f"| cell | rule's split per layer | rule ms | all rows ms | all ranges ms | rows ÷ rule | ranges ÷ rule |")
    print("|---|---|---|---|---|---|---|")
    for name in a.cells.split(","):
        cell = matrix.get(name)
        times, rule = measure(cell, a.threads, a.rounds, a.n)
        med = {s: statistics.median(v) * 1e3 for s, v in times.items()}
        print(f"| {name} | {', '.join(rule)} | {med['rule']:.1f} | {med['rows']:.1f} | {med['ranges']:.1f} | "
              f"{med['rows'] / med['rule']:.2f} | {med['ranges'] / med['rule']:.2f} |", flush=True)
    print(f"\nT = {a.threads}; median epoch of {a.rounds} interleaved rounds; a ratio > 1: that split is slower "
          f"than the rule. Command: python -m benchmarks.split_rule {' '.join(argv or sys.argv[1:])}")


if __name__ == "__main__":
    main()
