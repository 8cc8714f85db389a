"""Kernel micro-benchmarks (asv ``time_``): every kernel of fastnn.kernels, parameterised by size, dtype and
threads (fastnn.set_num_threads: Numba and BLAS together), and for kernels with a ``parallel=True`` twin by
variant (serial / parallel) — the data from which the serial/parallel size threshold
(kernels/_jit.PARALLEL_MIN_ELEMENTS) is chosen. Kernels that are serial and call no BLAS (the loss head,
column sums, finiteness checks, gather) run at 1 thread only: a thread count cannot change them, and asv
runs every parameter combination in its own process, so each combination costs a start-up.

Every kernel is compiled (called once) in ``setup``, never in the timed call. Sizes come from the
benchmark matrix: tiny (batch 32 x 16), mnist (128 x 256, 128 x 784 -> 256) and wide (512 x 4096,
512 x 1024 -> 4096).

Benchmark names are what asv compares across commits, so they name the *operation*, and each operation
lists the kernel signatures that have implemented it (newest first): the first one that exists in the
installed fastnn is timed. An operation no known signature implements raises NotImplementedError in
setup, which asv reports as skipped (n/a) with the reason — add the new signature here when that happens.
"""
import importlib
import inspect

import numpy as np

from ._common import THREADS, set_threads

DTYPES = ["float32", "float64"]
VARIANTS = ["serial", "parallel"]
SERIAL = [1]        # the threads parameter of kernels that use no threads
#: (batch, n_in, n_out) of dense layers from the matrix
DENSE_SHAPES = ["32x16x16", "128x784x256", "512x1024x4096"]
#: (rows, columns) of elementwise passes: tiny hidden, mnist hidden, wide hidden
ELEMENTWISE_SHAPES = ["32x16", "128x256", "512x4096"]
#: (batch, classes) of the loss head
HEAD_SHAPES = ["32x2", "128x10", "1024x10", "512x1000"]
#: flat parameter-vector lengths: tiny (338), mnist (235k), wide (21M / 5 to keep memory modest)
PARAM_SIZES = [338, 235146, 4_000_000]

RELU = 1


def _no_z(dtype):
    """The empty pre-activation buffer of an activation whose derivative reads its output (ReLU, ...)."""
    return np.empty((0, 0), dtype)

ACTIVATION_CODES = {"relu": 1, "sigmoid": 2, "tanh": 3}


def _signature(fn):
    return list(inspect.signature(getattr(fn, "py_func", fn)).parameters)


def _accepts(fn, params):
    """True when ``fn``'s parameters begin with ``params`` and all the others have defaults (a kernel that
    gained an optional argument still runs the benchmark written before it)."""
    rest = list(inspect.signature(getattr(fn, "py_func", fn)).parameters.values())[len(params):]
    return _signature(fn)[:len(params)] == list(params) and all(p.default is not p.empty for p in rest)


def pick(candidates):
    """(kernel, args) of the first candidate (module, name, parameter names, args) that the installed
    fastnn has with exactly that signature; NotImplementedError naming every candidate otherwise."""
    tried = []
    for module, name, params, args in candidates:
        try:
            mod = importlib.import_module(f"fastnn.kernels.{module}")
        except ImportError:
            tried.append(f"{module} (no module)")
            continue
        fn = getattr(mod, name, None)
        if fn is None:
            tried.append(f"{module}.{name} (absent)")
            continue
        got = _signature(fn)
        if not _accepts(fn, params):
            tried.append(f"{module}.{name}{tuple(got)} != {tuple(params)}")
            continue
        return fn, args
    raise NotImplementedError("no known kernel signature: " + "; ".join(tried))


def _shape(text):
    return tuple(int(v) for v in text.split("x"))


def _rand(rng, shape, dtype, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(dtype)


class _Calls:
    """Holds several (kernel, args) by operation name; an absent one raises NotImplementedError when timed."""

    def _add(self, op, candidates):
        if not hasattr(self, "calls"):
            self.calls, self.missing = {}, {}
        try:
            fn, args = pick(candidates)
        except NotImplementedError as exc:
            self.missing[op] = str(exc)
            return
        fn(*args)                      # compile (or load from the cache) here, not in the timed call
        self.calls[op] = (fn, args)

    def _run(self, op):
        call = self.calls.get(op)
        if call is None:
            raise NotImplementedError(self.missing.get(op, op))
        call[0](*call[1])


class DenseForward:
    """dense.forward: out = relu(x @ w + b) — the GEMM and the fused bias/activation pass."""
    params = (DENSE_SHAPES, DTYPES, THREADS, VARIANTS)
    param_names = ["batch x in x out", "dtype", "threads", "variant"]

    def setup(self, shape, dtype, threads, variant):
        set_threads(threads)
        n, i, o = _shape(shape)
        rng = np.random.default_rng(0)
        x, w, b, out = (_rand(rng, (n, i), dtype), _rand(rng, (i, o), dtype, 0.05), _rand(rng, (o,), dtype),
                        np.empty((n, o), dtype))
        name = "forward" if variant == "serial" else "forward_parallel"
        self.fn, self.args = pick([
            ("dense", name, ["a", "w", "b", "code", "param", "z", "out", "blas_threads"],
             (x, w, b, RELU, 0.0, _no_z(dtype), out, threads)),
            ("dense", name, ["x", "w", "b", "code", "param", "z", "out"], (x, w, b, RELU, 0.0, _no_z(dtype), out)),
            ("dense", name, ["x", "w", "b", "code", "out"], (x, w, b, RELU, out))])
        self.fn(*self.args)

    def time_forward(self, *params):
        self.fn(*self.args)


class DenseBackward:
    """dense.backward through relu(x @ w + b): delta = dy * relu'(y), dw = xᵀ delta, db = Σ delta,
    dx = delta wᵀ (``first_layer``: no dx, as for a network's first layer)."""
    params = (DENSE_SHAPES, DTYPES, THREADS, [False, True])
    param_names = ["batch x in x out", "dtype", "threads", "first_layer"]

    def setup(self, shape, dtype, threads, first_layer):
        set_threads(threads)
        n, i, o = _shape(shape)
        rng = np.random.default_rng(0)
        x, y, dy, w = (_rand(rng, (n, i), dtype), np.maximum(_rand(rng, (n, o), dtype), 0),
                       _rand(rng, (n, o), dtype), _rand(rng, (i, o), dtype, 0.05))
        dw, db, delta = np.empty((i, o), dtype), np.empty(o, dtype), np.empty((n, o), dtype)
        dx = np.empty((0 if first_layer else n, i), dtype)
        self.fn, self.args = pick([
            ("dense", "backward", ["x", "y", "z", "dy", "code", "param", "w", "dw", "db", "dx", "delta", "blas_threads"],
             (x, y, _no_z(dtype), dy, RELU, 0.0, w, dw, db, dx, delta, threads)),
            ("dense", "backward", ["x", "y", "z", "dy", "code", "param", "w", "dw", "db", "dx", "delta"],
             (x, y, _no_z(dtype), dy, RELU, 0.0, w, dw, db, dx, delta)),
            ("dense", "backward", ["x", "y", "dy", "code", "w", "dw", "db", "dx", "delta"],
             (x, y, dy, RELU, w, dw, db, dx, delta)),
        ])
        self.fn(*self.args)

    def time_backward(self, *params):
        self.fn(*self.args)


class DenseColumnSums:
    """dense.column_sums: the bias gradient db = Σ_batch dy."""
    params = (ELEMENTWISE_SHAPES, DTYPES, SERIAL)
    param_names = ["rows x columns", "dtype", "threads"]

    def setup(self, shape, dtype, threads):
        set_threads(threads)
        n, m = _shape(shape)
        rng = np.random.default_rng(0)
        self.fn, self.args = pick([("dense", "column_sums", ["dy", "db"], (_rand(rng, (n, m), dtype),
                                                                          np.empty(m, dtype)))])
        self.fn(*self.args)

    def time_column_sums(self, *params):
        self.fn(*self.args)


class Activations(_Calls):
    """Activation passes for relu, sigmoid, tanh: forward = f(z + b) (bias fused), backward = dy * f'(y)
    from the saved output y."""
    params = (ELEMENTWISE_SHAPES, DTYPES, THREADS, VARIANTS, list(ACTIVATION_CODES))
    param_names = ["rows x columns", "dtype", "threads", "variant", "activation"]

    def setup(self, shape, dtype, threads, variant, activation):
        set_threads(threads)
        n, m = _shape(shape)
        sfx = "" if variant == "serial" else "_parallel"
        rng = np.random.default_rng(0)
        code = ACTIVATION_CODES[activation]
        z, y, dy, out = (_rand(rng, (n, m), dtype) for _ in range(4))
        b = _rand(rng, (m,), dtype)
        self._add("forward", [
            ("activations", "bias_activate" + sfx, ["z", "b", "code", "param", "out"], (z, b, code, 0.0, out)),
            ("activations", "bias_activate" + sfx, ["z", "b", "code", "out"], (z, b, code, out)),
            ("dense", "bias_activate" + sfx, ["out", "b", "code"], (out, b, code)),
        ])
        self._add("backward", [
            ("activations", "multiply_derivative" + sfx, ["code", "param", "y", "z", "dy", "out"],
             (code, 0.0, y, _no_z(dtype), dy, out)),
            ("activations", "multiply_derivative" + sfx, ["code", "y", "dy", "out"], (code, y, dy, out)),
            ("activations", "backward" + sfx, ["code", "y", "dy", "out"], (code, y, dy, out)),
        ])

    def time_forward(self, *params):
        self._run("forward")

    def time_backward(self, *params):
        self._run("backward")


class ActivationBackwardInPlace(_Calls):
    """ReLU backward in place (dy overwritten by dy * f'(y)), as the training step does it."""
    params = (ELEMENTWISE_SHAPES, DTYPES, THREADS, VARIANTS)
    param_names = ["rows x columns", "dtype", "threads", "variant"]

    def setup(self, shape, dtype, threads, variant):
        set_threads(threads)
        n, m = _shape(shape)
        sfx = "" if variant == "serial" else "_parallel"
        rng = np.random.default_rng(0)
        y, d = np.maximum(_rand(rng, (n, m), dtype), 0), _rand(rng, (n, m), dtype)
        self._add("backward_in_place", [
            ("activations", "multiply_derivative" + sfx, ["code", "param", "y", "z", "dy", "out"],
             (RELU, 0.0, y, _no_z(dtype), d, d)),
            ("activations", "multiply_derivative" + sfx, ["code", "y", "dy", "out"], (RELU, y, d, d)),
            ("activations", "backward" + sfx, ["code", "y", "dy", "out"], (RELU, y, d, d)),
        ])

    def time_relu_backward_in_place(self, *params):
        self._run("backward_in_place")


class SoftmaxCrossEntropy(_Calls):
    """softmax_ce: the loss head — fused softmax cross-entropy (labels and dense targets), softmax and its
    backward, cross-entropy on probabilities, L2, argmax counting."""
    params = (HEAD_SHAPES, DTYPES, SERIAL)
    param_names = ["batch x classes", "dtype", "threads"]

    def setup(self, shape, dtype, threads):
        set_threads(threads)
        n, m = _shape(shape)
        rng = np.random.default_rng(0)
        z = _rand(rng, (n, m), dtype, 3.0)
        labels = rng.integers(0, m, n).astype(np.int64)
        t = np.zeros((n, m), dtype)
        t[np.arange(n), labels] = 1
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p = (p / p.sum(axis=1, keepdims=True)).astype(dtype)
        grad, out = np.empty((n, m), dtype), np.empty((n, m), dtype)
        self._add("softmax_ce_labels", [("softmax_ce", "softmax_ce_labels", ["z", "labels", "grad"], (z, labels, grad))])
        self._add("softmax_ce_dense", [("softmax_ce", "softmax_ce_dense", ["z", "t", "grad"], (z, t, grad))])
        self._add("softmax", [("softmax_ce", "softmax", ["z", "out"], (z, out))])
        self._add("softmax_backward", [("softmax_ce", "softmax_backward", ["y", "dy", "dx"], (p, z, out))])
        self._add("cross_entropy_labels",
                  [("softmax_ce", "cross_entropy_labels", ["p", "labels", "grad"], (p, labels, grad))])
        self._add("l2", [("softmax_ce", "l2", ["pred", "target", "grad"], (z, t, grad))])
        self._add("count_correct", [("softmax_ce", "count_correct_labels", ["out", "labels"], (z, labels))])

    def time_softmax_ce_labels(self, *params):
        self._run("softmax_ce_labels")

    def time_softmax_ce_dense(self, *params):
        self._run("softmax_ce_dense")

    def time_softmax(self, *params):
        self._run("softmax")

    def time_softmax_backward(self, *params):
        self._run("softmax_backward")

    def time_cross_entropy_labels(self, *params):
        self._run("cross_entropy_labels")

    def time_l2(self, *params):
        self._run("l2")

    def time_count_correct(self, *params):
        self._run("count_correct")


class Optimizers(_Calls):
    """optim: in-place SGD, SGD with momentum and Adam over one flat parameter vector (tiny learning rates
    keep the parameters bounded over millions of timed calls)."""
    params = (PARAM_SIZES, DTYPES, THREADS, VARIANTS)
    param_names = ["parameters", "dtype", "threads", "variant"]

    def setup(self, size, dtype, threads, variant):
        set_threads(threads)
        sfx = "" if variant == "serial" else "_parallel"
        rng = np.random.default_rng(0)
        p, g, m = (_rand(rng, size, dtype, 0.1) for _ in range(3))
        v = np.abs(_rand(rng, size, dtype, 0.1))
        self._add("sgd", [("optim", "sgd" + sfx, ["p", "g", "lr"], (p, g, 1e-12))])
        self._add("momentum", [("optim", "sgd_momentum" + sfx, ["p", "g", "v", "lr", "momentum"],
                                (p, g, m, 1e-12, 0.9))])
        self._add("adam", [("optim", "adam" + sfx, ["p", "g", "m", "v", "lr", "beta1", "beta2", "eps", "step"],
                            (p, g, m, v, 1e-12, 0.9, 0.999, 1e-8, 10))])

    def time_sgd(self, *params):
        self._run("sgd")

    def time_sgd_momentum(self, *params):
        self._run("momentum")

    def time_adam(self, *params):
        self._run("adam")


class OptimizerChecks(_Calls):
    """optim: the finiteness guards of a step (read-only checks and checked updates) and the per-layer
    gradient norms²."""
    params = (PARAM_SIZES, DTYPES, SERIAL)
    param_names = ["parameters", "dtype", "threads"]

    def setup(self, size, dtype, threads):
        set_threads(threads)
        rng = np.random.default_rng(0)
        p, g, m, v = (np.abs(_rand(rng, size, dtype, 0.1)) for _ in range(4))
        offsets = np.linspace(0, size, 4).astype(np.int64)
        norms = np.zeros(3, np.float64)
        adam_args = (p, g, m, v, 1e-12, 0.9, 0.999, 1e-8, 10)
        adam_params = ["p", "g", "m", "v", "lr", "beta1", "beta2", "eps", "step"]
        self._add("squared_norms", [("optim", "squared_norms", ["g", "offsets", "out"], (g, offsets, norms))])
        self._add("sgd_is_finite", [("optim", "sgd_is_finite", ["p", "g", "lr"], (p, g, 1e-12))])
        self._add("adam_is_finite", [("optim", "adam_is_finite", adam_params, adam_args)])
        self._add("sgd_checked", [("optim", "sgd_checked", ["p", "g", "lr"], (p, g, 1e-12))])
        self._add("adam_checked", [("optim", "adam_checked", adam_params, adam_args)])

    def time_squared_norms(self, *params):
        self._run("squared_norms")

    def time_sgd_is_finite(self, *params):
        self._run("sgd_is_finite")

    def time_adam_is_finite(self, *params):
        self._run("adam_is_finite")

    def time_sgd_checked(self, *params):
        self._run("sgd_checked")

    def time_adam_checked(self, *params):
        self._run("adam_checked")


class BatchGather:
    """Assembling a shuffled mini-batch: rows of X in the epoch's order into a contiguous buffer."""
    params = (["32x2", "128x784", "512x1024"], DTYPES, SERIAL)
    param_names = ["batch x features", "dtype", "threads"]

    def setup(self, shape, dtype, threads):
        set_threads(threads)
        b, d = _shape(shape)
        rng = np.random.default_rng(0)
        n = max(64 * b, 4096)
        args = (_rand(rng, (n, d), dtype), rng.permutation(n).astype(np.int64), 0, np.empty((b, d), dtype))
        self.fn, self.args = pick([("batch", "gather_rows", ["src", "order", "start", "out"], args)])
        self.fn(*self.args)

    def time_gather_rows(self, *params):
        self.fn(*self.args)
