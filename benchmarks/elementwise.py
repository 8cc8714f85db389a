"""The activation kernels per element: which loops run vectorised and which do not.

    python -m benchmarks.elementwise [--shape 200x100] [--dtype float32] [--codes relu,leaky_relu]

Per activation code, ns per element of ``bias_activate`` (forward: out = f(z + b)), ``scale_by_derivative``
(backward, in place: d *= f') and ``multiply_derivative`` (backward into another array), each called in a
Numba loop on warm data (half the pre-activations negative, so a branch per element would mispredict), best of
5. The first row, a plain copy loop, is the memory-speed floor: the piecewise codes (identity, ReLU, leaky
ReLU: a comparison and a multiply) should run within a small factor of it; several times slower means the
loop is not vectorised (as ReLU's backward was: ``g = d[i, j]; d[i, j] = g if ... else 0`` compiles to
scalar code, ``d[i, j] = d[i, j] if ... else 0`` to vector code).
"""
import argparse
import sys
import time

import numpy as np


def _timed(fn, args, seconds=0.02, rounds=5):
    """Best seconds per call of ``fn(*args, reps)``, reps chosen for about ``seconds`` a round."""
    fn(*args, 1)
    start = time.perf_counter()
    fn(*args, 1)
    reps = max(1, min(100000, int(seconds / max(time.perf_counter() - start, 1e-9))))
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        fn(*args, reps)
        best = min(best, (time.perf_counter() - start) / reps)
    return best


def measure(shape, dtype, codes):
    """{row label: (forward, in-place backward, backward into out) ns per element}."""
    from numba import njit

    from fastnn.kernels import activations as act

    @njit
    def copy_loop(a, out, reps):
        n, m = a.shape
        for _ in range(reps):
            for i in range(n):
                for j in range(m):
                    out[i, j] = a[i, j]

    @njit
    def forward(code, z, b, out, reps):
        for _ in range(reps):
            act.bias_activate(z, b, code, 0.1, out)

    @njit
    def backward_in_place(code, y, z, d, reps):
        for _ in range(reps):
            act.scale_by_derivative(code, 0.1, y, z, d)

    @njit
    def backward_out(code, y, z, dy, out, reps):
        for _ in range(reps):
            act.multiply_derivative(code, 0.1, y, z, dy, out)

    rng = np.random.default_rng(0)
    r, m = shape
    z = rng.standard_normal((r, m)).astype(dtype)
    b = np.zeros(m, dtype)
    y = np.empty_like(z)
    d = rng.standard_normal((r, m)).astype(dtype)
    out = np.empty_like(z)
    per = 1e9 / (r * m)
    rows = {"copy (floor)": (_timed(copy_loop, (z, out)) * per, None, None)}
    for name in codes:
        code = act.CODES[name]
        act.bias_activate(z, b, code, 0.1, y)
        grad = np.ones_like(d)          # (scale_by_derivative rewrites d: keep it finite and unchanging in size)
        rows[name] = (_timed(forward, (code, z, b, out)) * per,
                      _timed(backward_in_place, (code, y, z, grad)) * per,
                      _timed(backward_out, (code, y, z, d, out)) * per)
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.elementwise", description=__doc__.splitlines()[0])
    p.add_argument("--shape", default="200x100", help="rows x features (tabular's hidden layer: 200x100)")
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    p.add_argument("--codes", default="identity,relu,leaky_relu,sigmoid,tanh,elu,silu,gelu,gelu_tanh,softplus,mish")
    args = p.parse_args(argv)
    shape = tuple(int(v) for v in args.shape.split("x"))
    rows = measure(shape, np.dtype(args.dtype), args.codes.split(","))
    print(f"ns per element, {args.shape} {args.dtype}, best of 5\n")
    print("| activation | forward (bias_activate) | backward in place (scale_by_derivative) | backward into out "
          "(multiply_derivative) |")
    print("|---|---|---|---|")
    for name, values in rows.items():
        print(f"| {name} | " + " | ".join("–" if v is None else f"{v:.3f}" for v in values) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
