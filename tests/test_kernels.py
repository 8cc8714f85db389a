"""Every kernel of kernels/activations.py, dense.py, softmax_ce.py and optim.py (serial and ``_parallel``
twins) against the float64 NumPy reference in tests/reference.py, on hypothesis-generated shapes
(batch 1, odd and prime sizes up to ~70) in float32 and float64."""
import os

import numba
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from fastnn.kernels import _blas, batch
from fastnn.kernels import activations as act
from fastnn.kernels import dense, epoch, optim
from fastnn.kernels import softmax_ce as sce
from tests import reference as ref

DTYPES = [np.float32, np.float64]
#: relative tolerance per dtype (float32 kernels compute in float32; the reference in float64)
RTOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}
#: FASTNN_HYPOTHESIS_EXAMPLES=500 for a thorough run; 25 keeps the default suite fast
HYP = settings(max_examples=int(os.environ.get("FASTNN_HYPOTHESIS_EXAMPLES", 25)), deadline=None)

# batch 1, small odd and prime sizes, and anything up to 70
sizes = st.one_of(st.sampled_from([1, 2, 3, 5, 7, 11, 13, 31, 61, 67]), st.integers(1, 70))
seeds = st.integers(0, 2**32 - 1)
ACT_NAMES = ["identity", "relu", "sigmoid", "tanh"]
ACT_CODES = {name: act.CODES[name] for name in ACT_NAMES}


def rtol(dtype):
    return RTOL[np.dtype(dtype)]


def assert_close(got, expected, dtype, scale=None):
    """|got - expected| <= rtol * (|expected| + scale) elementwise; ``scale`` bounds cancellation error."""
    r = rtol(dtype)
    expected = np.asarray(expected, np.float64)
    atol = r * (np.abs(expected).max(initial=0.0) if scale is None else scale)
    np.testing.assert_allclose(np.asarray(got, np.float64), expected, rtol=r, atol=np.maximum(atol, 0) + 0.0)


def randn(rng, shape, dtype, scale=1.0):
    return np.ascontiguousarray(rng.standard_normal(shape) * scale, dtype=dtype)


def no_rows(dtype):
    """The empty (0, 0) array kernels take for "no pre-activation kept" (codes outside act.NEEDS_Z)."""
    return np.empty((0, 0), dtype)


def forward_kernel(parallel):
    """f(z) through the bias-and-activation kernel with a zero bias (activations without a parameter)."""
    run = act.bias_activate_parallel if parallel else act.bias_activate
    return lambda code, z, out: run(z, np.zeros(z.shape[1], z.dtype), code, 0.0, out)


def backward_kernel(parallel):
    """dy * f' through the output y (activations whose derivative reads y)."""
    run = act.multiply_derivative_parallel if parallel else act.multiply_derivative
    return lambda code, y, dy, out: run(code, 0.0, y, no_rows(y.dtype), dy, out)


def twins(module, name):
    return [getattr(module, name), getattr(module, name + "_parallel")]


# ----------------------------------------------------------------------------------------- activations
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ACT_NAMES)
@pytest.mark.parametrize("parallel", [False, True], ids=["serial", "parallel"])
@HYP
@given(n=sizes, m=sizes, seed=seeds)
@example(n=1, m=1, seed=0)
def test_activation_forward_backward(dtype, name, parallel, n, m, seed):
    rng = np.random.default_rng(seed)
    fwd, bwd = forward_kernel(parallel), backward_kernel(parallel)
    z = randn(rng, (n, m), dtype, 3.0)
    dy = randn(rng, (n, m), dtype)
    y = np.empty_like(z)
    fwd(ACT_CODES[name], z, y)
    f, fback = ref.ACTIVATIONS[name]
    assert y.dtype == dtype
    assert_close(y, f(z), dtype)
    dx = np.full_like(z, np.nan)
    bwd(ACT_CODES[name], y, dy, dx)
    # the derivative is taken at the kernel's own output, as the kernel documents; 1 - y² and y (1 - y)
    # cancel near |y| = 1, so the error is relative to |dy|, not to |dx|
    assert_close(dx, fback(y, dy), dtype, scale=np.abs(dy).max())
    # ... and agrees with the derivative at the true output
    assert_close(dx, fback(f(z), dy), dtype, scale=np.abs(dy).max())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("parallel", [False, True], ids=["serial", "parallel"])
def test_activation_in_place(dtype, name, parallel):
    """``out`` may alias the input, forward and backward."""
    rng = np.random.default_rng(1)
    fwd, bwd = forward_kernel(parallel), backward_kernel(parallel)
    z = randn(rng, (7, 13), dtype, 2.0)
    expected = ref.ACTIVATIONS[name][0](z)
    y = z.copy()
    fwd(ACT_CODES[name], y, y)
    assert_close(y, expected, dtype)
    dy = randn(rng, (7, 13), dtype)
    expected_dx = ref.ACTIVATIONS[name][1](y, dy)
    bwd(ACT_CODES[name], y, dy, dy)
    assert_close(dy, expected_dx, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ACT_NAMES)
def test_scalar_activate_and_derivative(dtype, name):
    one = dtype(1)
    code = ACT_CODES[name]
    f, fback = ref.ACTIVATIONS[name]
    for z in [-2.5, -0.3, 0.7, 4.0]:
        y = np.empty((1, 1), dtype)
        forward_kernel(False)(code, np.array([[z]], dtype), y)
        y = y[0, 0]
        assert_close(y, f(np.array([[z]]))[0, 0], dtype)
        d = np.empty((1, 1), dtype)
        backward_kernel(False)(code, np.array([[y]], dtype), np.array([[one]], dtype), d)
        d = d[0, 0]
        # 1 - y² cancels for y near 1: compare on the scale of 1
        assert_close(d, fback(np.array([[y]]), np.ones((1, 1)))[0, 0], dtype, scale=1.0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("parallel", [False, True], ids=["serial", "parallel"])
def test_sigmoid_does_not_overflow(dtype, parallel):
    fwd, bwd = forward_kernel(parallel), backward_kernel(parallel)
    z = np.array([[-1000.0, 1000.0, -88.0, 88.0, -710.0, 710.0, np.inf, -np.inf]], dtype)
    y = np.empty_like(z)
    with np.errstate(all="raise"):
        fwd(act.SIGMOID, z, y)
    assert np.isfinite(y).all()
    np.testing.assert_array_equal(y[0, [0, 7]], 0.0)      # (sigmoid(-710) is subnormal in float64)
    np.testing.assert_array_equal(y[0, [1, 5, 6]], 1.0)
    assert_close(y, ref.sigmoid(z), dtype)
    dx = np.empty_like(z)
    bwd(act.SIGMOID, y, np.ones_like(z), dx)
    assert np.isfinite(dx).all()
    # dense kernel with the sigmoid fused in
    x = np.array([[1.0]], dtype)
    w = np.array([[-1000.0, 1000.0]], dtype)
    out = np.empty((1, 2), dtype)
    dense.forward(x, w, np.zeros(2, dtype), act.SIGMOID, 0.0, no_rows(dtype), out, 1)
    np.testing.assert_array_equal(out, [[0.0, 1.0]])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["identity", "relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("parallel", [False, True], ids=["serial", "parallel"])
def test_nan_propagates_through_activations(dtype, name, parallel):
    fwd, bwd = forward_kernel(parallel), backward_kernel(parallel)
    z = np.array([[np.nan, 1.0, -1.0], [0.5, np.nan, -0.5]], dtype)
    y = np.empty_like(z)
    fwd(ACT_CODES[name], z, y)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(z))
    # a NaN gradient flows back through every activation
    dy = np.array([[1.0, np.nan, 1.0], [np.nan, 1.0, 1.0]], dtype)
    y_finite = np.full_like(z, 0.25)
    dx = np.empty_like(z)
    bwd(ACT_CODES[name], y_finite, dy, dx)
    np.testing.assert_array_equal(np.isnan(dx), np.isnan(dy))
    # and through the dense kernel's fused activation
    out = np.empty((1, 2), dtype)
    dense.forward(np.array([[np.nan]], dtype), np.ones((1, 2), dtype), np.zeros(2, dtype),
                  ACT_CODES[name], 0.0, no_rows(dtype), out, 1)
    assert np.isnan(out).all()


def test_relu_of_nan_is_nan():
    for dtype in DTYPES:
        y = np.empty((1, 1), dtype)
        forward_kernel(False)(act.RELU, np.array([[np.nan]], dtype), y)
        assert np.isnan(y[0, 0])


# -------------------------------------------------------------------------------------------- dense
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("parallel", [False, True], ids=["serial", "parallel"])
@HYP
@given(n=sizes, k=sizes, m=sizes, seed=seeds, name=st.sampled_from(ACT_NAMES))
@example(n=1, k=1, m=1, seed=0, name="identity")
@example(n=1, k=67, m=3, seed=1, name="relu")
def test_dense_forward(dtype, parallel, n, k, m, seed, name):
    rng = np.random.default_rng(seed)
    x, w, b = randn(rng, (n, k), dtype), randn(rng, (k, m), dtype), randn(rng, m, dtype)
    out = np.full((n, m), np.nan, dtype)
    (dense.forward_parallel if parallel else dense.forward)(x, w, b, ACT_CODES[name], 0.0, no_rows(dtype), out, 1)
    z = ref.dense_forward(x, w, b)
    # scale of the rounding error of the dot products: (|x| @ |w| + |b|)
    scale = ref.dense_forward(np.abs(x), np.abs(w), np.abs(b))
    f = ref.ACTIVATIONS[name][0]
    np.testing.assert_allclose(out, f(z), rtol=rtol(dtype), atol=rtol(dtype) * scale.max())
    assert out.dtype == dtype


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("parallel", [False, True], ids=["serial", "parallel"])
@HYP
@given(n=sizes, m=sizes, seed=seeds, name=st.sampled_from(ACT_NAMES))
@example(n=1, m=1, seed=0, name="sigmoid")
def test_bias_activate(dtype, parallel, n, m, seed, name):
    rng = np.random.default_rng(seed)
    out, b = randn(rng, (n, m), dtype, 2.0), randn(rng, m, dtype)
    expected = ref.ACTIVATIONS[name][0](out.astype(np.float64) + b)
    (act.bias_activate_parallel if parallel else act.bias_activate)(out, b, ACT_CODES[name], 0.0, out)
    assert_close(out, expected, dtype, scale=np.abs(out).max() + np.abs(b).max() + 1)


@pytest.mark.parametrize("dtype", DTYPES)
@HYP
@given(n=sizes, k=sizes, m=sizes, seed=seeds, name=st.sampled_from(ACT_NAMES),
       need_dx=st.booleans())
@example(n=1, k=1, m=1, seed=0, name="identity", need_dx=True)
@example(n=1, k=5, m=70, seed=2, name="relu", need_dx=False)
def test_dense_backward(dtype, n, k, m, seed, name, need_dx):
    """One call: delta = dy * f'(y); dw = xᵀ delta; db = Σ delta; dx = delta wᵀ (skipped without rows)."""
    rng = np.random.default_rng(seed)
    x, w, dy = randn(rng, (n, k), dtype), randn(rng, (k, m), dtype), randn(rng, (n, m), dtype)
    y = randn(rng, (n, m), dtype)
    if name == "identity":
        delta_ref, delta = dy.astype(np.float64), np.empty((0, 0), dtype)
    else:
        y = ref.ACTIVATIONS[name][0](y.astype(np.float64)).astype(dtype)
        delta_ref = ref.ACTIVATIONS[name][1](y.astype(np.float64), dy.astype(np.float64))
        delta = np.full((n, m), np.nan, dtype)
    dx_ref, dw_ref, db_ref = ref.dense_backward(x, w, delta_ref)
    dw, db = np.full((k, m), np.nan, dtype), np.full(m, np.nan, dtype)
    dx = np.full((n, k) if need_dx else (0, 0), np.nan, dtype)
    dense.backward(x, y, no_rows(dtype), dy, ACT_CODES[name], 0.0, w, dw, db, dx, delta, 1)
    r = rtol(dtype)
    _, dw_scale, db_scale = ref.dense_backward(np.abs(x), np.abs(w), np.abs(delta_ref))
    np.testing.assert_allclose(dw, dw_ref, rtol=r, atol=r * dw_scale.max())
    np.testing.assert_allclose(db, db_ref, rtol=r, atol=r * db_scale.max())
    if need_dx:
        np.testing.assert_allclose(dx, dx_ref, rtol=r, atol=r * (np.abs(delta_ref) @ np.abs(w).T).max())
    for a in (dw, db, dx):
        assert a.dtype == dtype


@pytest.mark.parametrize("dtype", DTYPES)
@HYP
@given(n=sizes, m=sizes, seed=seeds)
def test_column_sums_overwrites(dtype, n, m, seed):
    rng = np.random.default_rng(seed)
    dy = randn(rng, (n, m), dtype)
    db = np.full(m, 123.0, dtype)        # stale content must be overwritten, not accumulated into
    dense.column_sums(dy, db)
    np.testing.assert_allclose(db, dy.astype(np.float64).sum(axis=0), rtol=rtol(dtype),
                               atol=rtol(dtype) * np.abs(dy).sum(axis=0).max())


# ------------------------------------------------------------------------------------- softmax & losses
@pytest.mark.parametrize("dtype", DTYPES)
@HYP
@given(n=sizes, m=st.integers(1, 70), seed=seeds, scale=st.sampled_from([0.1, 1.0, 10.0, 50.0]))
@example(n=1, m=1, seed=0, scale=1.0)
@example(n=1, m=2, seed=0, scale=50.0)
def test_softmax_and_backward(dtype, n, m, seed, scale):
    rng = np.random.default_rng(seed)
    z = randn(rng, (n, m), dtype, scale)
    y = np.full_like(z, np.nan)
    sce.softmax(z, y)
    expected = ref.softmax(z)
    np.testing.assert_allclose(y, expected, rtol=10 * rtol(dtype), atol=rtol(dtype))
    np.testing.assert_allclose(y.astype(np.float64).sum(axis=1), 1.0, rtol=10 * rtol(dtype))
    dy = randn(rng, (n, m), dtype)
    dx = np.full_like(z, np.nan)
    sce.softmax_backward(y, dy, dx)
    assert_close(dx, ref.softmax_backward(y, dy), dtype, scale=np.abs(dy).max())
    # aliasing: softmax may write over its input
    z2 = z.copy()
    sce.softmax(z2, z2)
    np.testing.assert_array_equal(z2, y)


@pytest.mark.parametrize("dtype", DTYPES)
@HYP
@given(n=sizes, m=st.integers(1, 70), seed=seeds)
@example(n=1, m=1, seed=0)
@example(n=1, m=61, seed=3)
def test_softmax_ce_labels(dtype, n, m, seed):
    rng = np.random.default_rng(seed)
    z = randn(rng, (n, m), dtype, 3.0)
    labels = rng.integers(0, m, n).astype(np.int64)
    grad = np.full_like(z, np.nan)
    loss = sce.softmax_ce_labels(z, labels, grad)
    loss_ref, grad_ref = ref.softmax_ce_labels(z, labels)
    r = rtol(dtype)
    assert loss == pytest.approx(loss_ref, rel=r, abs=r)
    np.testing.assert_allclose(grad, grad_ref, rtol=10 * r, atol=r / n)
    # the fused gradient sums to zero over classes
    np.testing.assert_allclose(grad.astype(np.float64).sum(axis=1), 0.0, atol=10 * r / n * m)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["one-hot", "soft", "unnormalised"])
@HYP
@given(n=sizes, m=st.integers(1, 70), seed=seeds)
@example(n=1, m=1, seed=0)
def test_softmax_ce_dense(dtype, kind, n, m, seed):
    rng = np.random.default_rng(seed)
    z = randn(rng, (n, m), dtype, 3.0)
    if kind == "one-hot":
        t = ref.one_hot(rng.integers(0, m, n), m)
    else:
        t = rng.uniform(0, 1, (n, m)) * (rng.uniform(size=(n, m)) < 0.7)
        if kind == "soft":
            t[:, 0] += 1e-3
            t /= t.sum(axis=1, keepdims=True)
    t = t.astype(dtype)
    grad = np.full_like(z, np.nan)
    loss = sce.softmax_ce_dense(z, t, grad)
    loss_ref, grad_ref = ref.softmax_ce_dense(z, t)
    r = rtol(dtype)
    assert loss == pytest.approx(loss_ref, rel=r, abs=float(r * (1 + np.abs(z).max()) * m))
    np.testing.assert_allclose(grad, grad_ref, rtol=10 * r, atol=r / n)
    if kind == "one-hot":
        labels = np.argmax(t, axis=1).astype(np.int64)
        g2 = np.empty_like(z)
        loss2 = sce.softmax_ce_labels(z, labels, g2)
        assert loss2 == pytest.approx(loss, rel=r, abs=r)
        np.testing.assert_allclose(g2, grad, rtol=10 * r, atol=r / n)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("big", [1e4, -1e4])
def test_softmax_ce_extreme_logits_finite(dtype, big):
    z = np.array([[big, -big, 0.0], [-big, -big, big], [big, big, big], [0.0, big, -big]], dtype)
    labels = np.array([1, 2, 0, 2], np.int64)
    grad = np.empty_like(z)
    loss = sce.softmax_ce_labels(z, labels, grad)
    loss_ref, grad_ref = ref.softmax_ce_labels(z, labels)
    assert np.isfinite(loss) and np.isfinite(grad).all()
    assert loss == pytest.approx(loss_ref, rel=1e-6)
    np.testing.assert_allclose(grad, grad_ref, atol=1e-6)
    t = ref.one_hot(labels, 3).astype(dtype)
    grad_d = np.empty_like(z)
    loss_d = sce.softmax_ce_dense(z, t, grad_d)
    assert np.isfinite(loss_d) and np.isfinite(grad_d).all()
    assert loss_d == pytest.approx(loss_ref, rel=1e-6)
    np.testing.assert_allclose(grad_d, grad_ref, atol=1e-6)
    y = np.empty_like(z)
    sce.softmax(z, y)
    assert np.isfinite(y).all()
    np.testing.assert_allclose(y, ref.softmax(z), atol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
@HYP
@given(n=sizes, m=st.integers(1, 70), seed=seeds)
@example(n=1, m=1, seed=0)
def test_cross_entropy_on_probabilities(dtype, n, m, seed):
    rng = np.random.default_rng(seed)
    p = np.ascontiguousarray(ref.softmax(rng.standard_normal((n, m))), dtype)
    labels = rng.integers(0, m, n).astype(np.int64)
    r = rtol(dtype)
    grad = np.full_like(p, np.nan)
    loss = sce.cross_entropy_labels(p, labels, grad)
    loss_ref, grad_ref = ref.cross_entropy_labels(p, labels)
    assert loss == pytest.approx(loss_ref, rel=r, abs=r)
    np.testing.assert_allclose(grad, grad_ref, rtol=r)
    t = np.ascontiguousarray(ref.softmax(rng.standard_normal((n, m)) * 2), dtype)
    grad = np.full_like(p, np.nan)
    loss = sce.cross_entropy_dense(p, t, grad)
    loss_ref, grad_ref = ref.cross_entropy_dense(p, t)
    assert loss == pytest.approx(loss_ref, rel=r, abs=r)
    np.testing.assert_allclose(grad, grad_ref, rtol=r)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_zero_probability_is_finite(dtype):
    p = np.array([[0.0, 1.0], [0.5, 0.5]], dtype)
    grad = np.empty_like(p)
    loss = sce.cross_entropy_labels(p, np.array([0, 1], np.int64), grad)
    assert np.isfinite(loss) and loss > 10 and np.isfinite(grad).all()


@pytest.mark.parametrize("dtype", DTYPES)
@HYP
@given(n=sizes, m=sizes, seed=seeds)
@example(n=1, m=1, seed=0)
def test_l2_kernel(dtype, n, m, seed):
    rng = np.random.default_rng(seed)
    pred, target = randn(rng, (n, m), dtype), randn(rng, (n, m), dtype)
    grad = np.full_like(pred, np.nan)
    loss = sce.l2(pred, target, grad)
    loss_ref, grad_ref = ref.l2(pred, target)
    r = rtol(dtype)
    assert loss == pytest.approx(loss_ref, rel=r)
    np.testing.assert_allclose(grad, grad_ref, rtol=r, atol=r * np.abs(grad_ref).max())


@pytest.mark.parametrize("dtype", DTYPES)
@HYP
@given(n=sizes, m=st.integers(1, 12), seed=seeds)
@example(n=1, m=1, seed=0)
def test_count_correct(dtype, n, m, seed):
    rng = np.random.default_rng(seed)
    out = rng.integers(-2, 3, (n, m)).astype(dtype)     # small ints: many ties, first maximum wins
    labels = rng.integers(0, m, n).astype(np.int64)
    assert sce.count_correct_labels(out, labels) == int((np.argmax(out, axis=1) == labels).sum())
    t = rng.integers(0, 3, (n, m)).astype(dtype)
    expected = int((np.argmax(out, axis=1) == np.argmax(t, axis=1)).sum())
    assert sce.count_correct_dense(out, t) == expected


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weighted", [False, True])
@HYP
@given(n=sizes, m=st.integers(1, 70), seed=seeds)
@example(n=1, m=1, seed=0)
def test_sigmoid_ce_kernel(dtype, weighted, n, m, seed):
    rng = np.random.default_rng(seed)
    z = randn(rng, (n, m), dtype, 4.0)
    t = (rng.uniform(size=(n, m)) < 0.5).astype(dtype)
    t[0] = rng.uniform(size=m)                                   # soft targets too
    w = rng.uniform(0.1, 2, n).astype(dtype) if weighted else None
    grad = np.full_like(z, np.nan)
    loss = sce.sigmoid_ce(z, t, grad) if w is None else sce.sigmoid_ce(z, t, grad, w)
    loss_ref, grad_ref = ref.sigmoid_ce(z, t, w)
    # float64 arithmetic on the dtype's inputs: the loss to float64 rounding of n·m terms; the gradient
    # σ(z) - t cancels (absolute error a few eps64 times its scale w_i / Σw), then is rounded to the dtype
    assert loss == pytest.approx(loss_ref, rel=16 * n * m * np.finfo(np.float64).eps, abs=1e-300)
    scale = 1 / n if w is None else float(w.max() / w.astype(np.float64).sum())
    np.testing.assert_allclose(grad, grad_ref, rtol=4 * np.finfo(dtype).eps,
                               atol=8 * np.finfo(np.float64).eps * scale)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_kernel_and_extremes(dtype):
    z = np.array([[-1e4, -30.0, -1.0, 0.0, 1.0, 30.0, 1e4]], dtype)
    out = np.empty_like(z)
    sce.sigmoid(z, out)
    np.testing.assert_allclose(out, 1 / (1 + np.exp(-z.astype(np.float64))), rtol=np.finfo(dtype).eps)
    grad = np.empty_like(z)
    t = np.array([[1, 0, 1, 0, 1, 0, 1]], dtype)
    assert np.isfinite(sce.sigmoid_ce(z, t, grad)) and np.isfinite(grad).all()


@pytest.mark.parametrize("dtype", DTYPES)
@HYP
@given(n=sizes, m=st.integers(1, 6), seed=seeds)
def test_count_correct_indicators(dtype, n, m, seed):
    rng = np.random.default_rng(seed)
    out = rng.integers(-2, 3, (n, m)).astype(dtype)     # zeros: a logit of 0 predicts 0
    t = rng.integers(0, 2, (n, m)).astype(dtype)
    right = rng.uniform(size=n) < 0.5                   # some rows predicted fully right
    t[right] = out[right] > 0
    expected = int(np.all((out > 0) == (t > 0.5), axis=1).sum())
    assert sce.count_correct_indicators(out, t) == expected


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["softmax_ce_labels", "softmax_ce_dense", "cross_entropy_labels",
                                  "cross_entropy_dense", "l2", "sigmoid_ce"])
def test_weighted_kernels_zero_total_weight(dtype, name):
    """A batch whose weights sum to 0: loss 0 and a cleared gradient (no division by zero)."""
    rng = np.random.default_rng(0)
    z = np.ascontiguousarray(ref.softmax(rng.standard_normal((3, 4))), dtype)
    t = np.ascontiguousarray(ref.one_hot([0, 2, 1], 4), dtype)
    target = np.array([0, 2, 1], np.int64) if name.endswith("labels") else t
    grad = np.full_like(z, np.nan)
    assert getattr(sce, name)(z, target, grad, np.zeros(3, dtype)) == 0.0
    assert not grad.any()


# -------------------------------------------------------------------------------------------- optim
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("parallel", [False, True], ids=["serial", "parallel"])
@HYP
@given(size=st.integers(1, 70 * 70), seed=seeds, lr=st.sampled_from([1e-3, 0.1, 0.5]))
@example(size=1, seed=0, lr=0.1)
def test_sgd_kernel(dtype, parallel, size, seed, lr):
    rng = np.random.default_rng(seed)
    p, g = randn(rng, size, dtype), randn(rng, size, dtype)
    expected = ref.sgd(p, g, lr)
    (optim.sgd_parallel if parallel else optim.sgd)(p, g, lr)
    assert p.dtype == dtype
    assert_close(p, expected, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("parallel", [False, True], ids=["serial", "parallel"])
@HYP
@given(size=st.integers(1, 70 * 70), seed=seeds, mu=st.sampled_from([0.0, 0.5, 0.9, 0.99]))
@example(size=1, seed=0, mu=0.9)
@example(size=1, seed=1_231_897_047, mu=0.99)      # v's three terms cancel: the error scales with their sizes
def test_sgd_momentum_kernel(dtype, parallel, size, seed, mu):
    rng = np.random.default_rng(seed)
    run = optim.sgd_momentum_parallel if parallel else optim.sgd_momentum
    p, v = randn(rng, size, dtype), np.zeros(size, dtype)
    p_ref, v_ref = p.astype(np.float64), v.astype(np.float64)
    p_abs, v_abs = np.abs(p_ref), np.abs(v_ref)       # the terms' magnitudes: v = mu v + g can cancel
    for _ in range(3):
        g = randn(rng, size, dtype)
        p_ref, v_ref = ref.sgd_momentum(p_ref, g, v_ref, 0.05, mu)
        v_abs = mu * v_abs + np.abs(g)
        p_abs = p_abs + 0.05 * v_abs
        run(p, g, v, 0.05, mu)
        assert_close(v, v_ref, dtype, scale=v_abs.max())
        assert_close(p, p_ref, dtype, scale=p_abs.max())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("parallel", [False, True], ids=["serial", "parallel"])
@HYP
@given(size=st.integers(1, 70 * 70), seed=seeds,
       hyper=st.sampled_from([(1e-3, 0.9, 0.999, 1e-8), (0.1, 0.5, 0.9, 1e-3), (0.01, 0.0, 0.99, 1e-6)]))
@example(size=1, seed=0, hyper=(1e-3, 0.9, 0.999, 1e-8))
def test_adam_kernel(dtype, parallel, size, seed, hyper):
    lr, b1, b2, eps = hyper
    rng = np.random.default_rng(seed)
    run = optim.adam_parallel if parallel else optim.adam
    p = randn(rng, size, dtype)
    m, v = np.zeros(size, dtype), np.zeros(size, dtype)
    p_ref, m_ref, v_ref = p.astype(np.float64), m.astype(np.float64), v.astype(np.float64)
    g_max = 0.0
    for step in range(1, 5):
        g = randn(rng, size, dtype)
        g_max = max(g_max, float(np.abs(g).max()))
        p_ref, m_ref, v_ref = ref.adam(p_ref, g, m_ref, v_ref, lr, b1, b2, eps, step)
        run(p, g, m, v, lr, b1, b2, eps, step)
        r = rtol(dtype)
        # m is a weighted sum of the gradients (weights summing to < 1) whose terms can cancel: its rounding
        # error is bounded relative to the largest gradient, not to m itself (seen: m ~ 3e-4, error 1e-8)
        np.testing.assert_allclose(m, m_ref, rtol=r, atol=r * g_max)
        np.testing.assert_allclose(v, v_ref, rtol=r, atol=r * np.abs(v_ref).max())
        # the update is at most ~lr per step; compare the parameters on that scale
        np.testing.assert_allclose(p, p_ref, rtol=r, atol=r * (np.abs(p_ref).max() + lr))


@pytest.mark.parametrize("parallel", [False, True], ids=["serial", "parallel"])
def test_adam_float32_second_moment_elementwise(parallel):
    """v = β2 v + (1 - β2) g², elementwise to float32 accuracy (~1e-5 relative), as torch computes it
    (torch forms 1 - β2 in double and rounds once). Rounding β2 = 0.999 to float32 *before* subtracting
    gives 1 - β2 = 0.00099998713, a 1.3e-5 relative error in every v."""
    run = optim.adam_parallel if parallel else optim.adam
    g = np.array([1.0, -2.0, 0.5, 3.0], np.float32)
    p, m, v = np.zeros(4, np.float32), np.zeros(4, np.float32), np.zeros(4, np.float32)
    run(p, g, m, v, 1e-3, 0.9, 0.999, 1e-8, 1)
    _, m_ref, v_ref = ref.adam(np.zeros(4), g, np.zeros(4), np.zeros(4), 1e-3, 0.9, 0.999, 1e-8, 1)
    np.testing.assert_allclose(m, m_ref, rtol=1e-5)
    np.testing.assert_allclose(v, v_ref, rtol=1e-5)


@pytest.mark.parametrize("dtype", DTYPES)
@HYP
@given(sizes_=st.lists(st.integers(0, 300), min_size=1, max_size=5), seed=seeds)
def test_squared_norms(dtype, sizes_, seed):
    rng = np.random.default_rng(seed)
    offsets = np.concatenate([[0], np.cumsum(sizes_)]).astype(np.int64)
    g = randn(rng, int(offsets[-1]), dtype, 3.0)
    out = np.full(len(sizes_), np.nan)
    optim.squared_norms(g, offsets, out)
    g64 = g.astype(np.float64)
    expected = [np.sum(g64[a:b] ** 2) for a, b in zip(offsets[:-1], offsets[1:])]
    np.testing.assert_allclose(out, expected, rtol=10 * rtol(dtype))


def test_squared_norms_detects_non_finite():
    for dtype in DTYPES:
        g = np.array([1.0, np.nan, 2.0, 3.0, np.inf, 1.0], dtype)
        out = np.zeros(3)
        optim.squared_norms(g, np.array([0, 2, 4, 6], np.int64), out)
        assert np.isnan(out[0]) and out[1] == 13.0 and not np.isfinite(out[2])


def test_squared_norms_of_large_finite_float32_gradient_is_finite():
    """The kernel documents float64 accumulation: a finite float32 gradient of 1e20 (whose square, 1e40,
    overflows float32 but not float64) must give a finite norm — otherwise training reports a finite
    gradient as "NaN or infinite" (a spurious TrainingDivergedError)."""
    g = np.array([1e20, -1e20, 3.0], np.float32)
    out = np.zeros(1)
    optim.squared_norms(g, np.array([0, 3], np.int64), out)
    assert np.isfinite(out[0])
    assert out[0] == pytest.approx(2 * float(np.float32(1e20)) ** 2 + 9, rel=1e-6)


# ------------------------------------------------------------------------ batches, BLAS, checked updates


@pytest.mark.parametrize("dtype", DTYPES)
@HYP
@given(n=sizes, k=sizes, seed=seeds)
def test_gather_rows_and_labels(dtype, n, k, seed):
    rng = np.random.default_rng(seed)
    X, y = randn(rng, (n, k), dtype), rng.integers(0, 5, n)
    order = rng.permutation(n)
    start = int(rng.integers(0, n))
    xb, yb = np.empty((n - start, k), dtype), np.empty(n - start, np.int64)
    batch.gather_rows(X, order, start, xb)
    batch.gather(y, order, start, yb)
    np.testing.assert_array_equal(xb, X[order[start:]])
    np.testing.assert_array_equal(yb, y[order[start:]])


@numba.njit
def _call_gemm_rows(alpha, a, ra, trans_a, b, rb, trans_b, beta, c, rc):
    """gemm on the first rows of a, b and c (an intrinsic: callable from kernels only)."""
    _blas.gemm(alpha, a[:ra], trans_a, b[:rb], trans_b, beta, c[:rc], 0)


def test_gemm_takes_column_slices_and_refuses_other_views():
    """Column slices (rows strided, elements adjacent: the batch-parallel kernel's weight-gradient blocks)
    multiply right; a transposed view does not compile and a view whose elements are not adjacent raises,
    rather than being read with wrong strides."""
    @numba.njit
    def call(a, b, c):
        _blas.gemm(1.0, a, False, b, False, 0.0, c, 0)

    @numba.njit
    def call_t(a, b, c):
        _blas.gemm(1.0, a, True, b, False, 0.0, c, 0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 8))
    out = np.zeros((8, 8))[:4, 2:6]
    call(x[:4, 1:5].copy(), x[2:6, 2:6], out)
    np.testing.assert_allclose(out, x[:4, 1:5] @ x[2:6, 2:6], rtol=1e-13, atol=1e-13)
    grad = np.zeros((3, 8))
    call_t(x[:, 2:5], x, grad)                   # A[:, i0:i1]ᵀ · D, as the kernel's gradient phase
    np.testing.assert_allclose(grad, x[:, 2:5].T @ x, rtol=1e-13, atol=1e-13)
    y = np.ones((4, 4), np.float32)
    with pytest.raises(numba.core.errors.TypingError):
        call(y.T, y, y.copy())
    with pytest.raises(ValueError, match="not adjacent"):
        call(y, y, np.ones((4, 8), np.float32)[:, ::2])


@pytest.mark.parametrize("dtype", DTYPES)
@HYP
@given(m=sizes, n=sizes, k=sizes, trans_a=st.booleans(), trans_b=st.booleans(), seed=seeds,
       alpha=st.sampled_from([1.0, -0.01, 2.5]), beta=st.sampled_from([0.0, 1.0, 0.5]),
       rows=st.sampled_from([0, 2]))
def test_gemm_alpha_beta(dtype, m, n, k, trans_a, trans_b, seed, alpha, beta, rows):
    """The BLAS call matches float64 NumPy for every transpose, alpha and beta, also on row slices of
    larger arrays (as the epoch kernel passes its batch buffers; the rows past the slice hold NaN, which
    must not leak in)."""
    rng = np.random.default_rng(seed)
    A, B, C = randn(rng, (m, k), dtype), randn(rng, (k, n), dtype), randn(rng, (m, n), dtype)

    def rows_of_larger(x):
        larger = np.full((x.shape[0] + rows, x.shape[1]), np.nan, x.dtype)
        larger[:x.shape[0]] = x
        return larger
    a = rows_of_larger(np.ascontiguousarray(A.T) if trans_a else A)
    b = rows_of_larger(np.ascontiguousarray(B.T) if trans_b else B)
    c = rows_of_larger(C)
    _call_gemm_rows(alpha, a, a.shape[0] - rows, trans_a, b, b.shape[0] - rows, trans_b, beta, c,
                    c.shape[0] - rows)
    assert np.isnan(c[c.shape[0] - rows:]).all()          # nothing written past the slice
    c = c[:c.shape[0] - rows]
    expected = alpha * (A.astype(np.float64) @ B) + beta * C
    scale = abs(alpha) * (np.abs(A) @ np.abs(B)).max() + abs(beta) * np.abs(C).max() + 1
    np.testing.assert_allclose(c, expected, rtol=rtol(dtype), atol=rtol(dtype) * scale)


@pytest.mark.parametrize("dtype", DTYPES)
def test_checked_updates_refuse_an_overflowing_step_and_write_nothing(dtype):
    big = np.finfo(dtype).max / 2
    p = np.array([1.0, big, -3.0], dtype)
    g = np.array([0.5, -big, 1.0], dtype)
    v, m = np.zeros(3, dtype), np.zeros(3, dtype)
    before = [a.copy() for a in (p, v, m)]
    assert not optim.sgd_is_finite(p, g, 10.0)
    assert not optim.sgd_checked(p, g, 10.0)
    assert not optim.sgd_momentum_checked(p, g, v, 10.0, 0.9)
    g_nan = np.array([0.5, np.nan, 1.0], dtype)
    assert not optim.adam_checked(p, g_nan, m, v, 1e-3, 0.9, 0.999, 1e-8, 1)
    for a, b in zip((p, v, m), before):
        np.testing.assert_array_equal(a, b)
    assert optim.sgd_checked(p, g * 0, 10.0)         # a finite step goes through
    np.testing.assert_array_equal(p, before[0])
    g_small = np.array([1.0, 0.0, 1.0], dtype)
    assert optim.adam_checked(p, g_small, m, v, 1e-3, 0.9, 0.999, 1e-8, 1)
    assert p[0] != before[0][0]


@numba.njit
def _absmax_bound(x):
    return epoch._absmax_bound(x)       # callable from kernels only


@pytest.mark.parametrize("dtype", DTYPES)
@HYP
@given(n=sizes, m=sizes, seed=seeds, scale=st.sampled_from([1e-30, 1e-3, 1.0, 1e20]))
def test_absmax_bound_is_a_tight_upper_bound(dtype, n, m, seed, scale):
    x = randn(np.random.default_rng(seed), (n, m), dtype, scale)
    top = float(np.abs(x).max())
    bound = _absmax_bound(x)
    assert top <= bound <= 2 * top or (top == 0 and bound <= np.finfo(dtype).tiny)
    for bad in (np.nan, np.inf, -np.inf):
        y = x.copy()
        y[n // 2, m // 2] = bad
        assert _absmax_bound(y) == np.inf


def test_kernel_caches_are_stamped_with_every_kernel_source(tmp_path, monkeypatch):
    """A cached kernel links in kernels from other files, so its cache must go stale when any kernel file
    changes (Numba alone re-checks only the function's own file; a stale cache once crashed a kernel)."""
    from fastnn.kernels import _jit
    locator = dense.forward._cache._impl._locator
    assert type(locator).__name__.startswith("Kernels")
    assert locator.get_source_stamp() == _jit._kernels_stamp()
    for name in ("a.py", "b.py"):
        (tmp_path / name).write_text("x = 1\n")
    monkeypatch.setattr(_jit, "_KERNELS_DIR", str(tmp_path))
    before = _jit._kernels_stamp()
    (tmp_path / "b.py").write_text("x = 2\n")
    assert _jit._kernels_stamp() != before
