"""Layers and losses: analytic gradients against central finite differences (float64, relative error
< 1e-6) through fastnn.numerical_gradient and fastnn.gradcheck, outputs against the NumPy reference on
random shapes (batch 1 included), buffers and smaller batches, parameter assignment."""
import os

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import fastnn as fnn
from tests import reference as ref

TOL = 1e-6
#: FASTNN_HYPOTHESIS_EXAMPLES=500 for a thorough run; 25 keeps the default suite fast
HYP = settings(max_examples=int(os.environ.get("FASTNN_HYPOTHESIS_EXAMPLES", 25)), deadline=None)
sizes = st.one_of(st.sampled_from([1, 2, 3, 7, 13, 31, 67]), st.integers(1, 70))
seeds = st.integers(0, 2**32 - 1)
RTOL = {np.float32: 1e-5, np.float64: 1e-12}

ACTIVATION_LAYERS = {"relu": fnn.ReLU, "sigmoid": fnn.Sigmoid, "tanh": fnn.TanH}


def rel_error(a, n):
    """max |a - n| / max(|a|, |n|) — the same measure as gradcheck, computed here independently."""
    a, n = np.asarray(a, np.float64), np.asarray(n, np.float64)
    scale = max(np.abs(a).max(), np.abs(n).max(), 1e-300)
    return float(np.abs(a - n).max() / scale)


def away_from_kink(x, margin=0.01):
    """Shift entries with |x| < margin away from 0 (the ReLU kink)."""
    x = x.copy()
    small = np.abs(x) < margin
    x[small] = np.where(x[small] >= 0, margin, -margin) + x[small]
    return x


def fc64(n_in, n_out, seed=0):
    fc = fnn.FullyConnected(n_in, n_out, dtype=np.float64, seed=seed)
    fc.bias = np.random.default_rng(seed + 1).standard_normal(n_out)    # a non-zero bias
    return fc


# ----------------------------------------------------------------------------- finite differences: layers
@pytest.mark.parametrize("shape", [(1, 1, 1), (1, 4, 3), (5, 7, 6), (3, 13, 2)])
def test_fully_connected_gradcheck(shape):
    n, k, m = shape
    fc = fc64(k, m)
    x = np.random.default_rng(2).standard_normal((n, k))
    report = fnn.gradcheck(fc, x)
    assert set(report) == {"params[0]", "params[1]", "x"}
    assert report.max_error < TOL, str(report)
    assert report.passed(TOL)


@pytest.mark.parametrize("shape", [(1, 1, 1), (4, 5, 3)])
def test_fully_connected_finite_differences_directly(shape):
    """The same check written out by hand with numerical_gradient: dW, db, dx of sum(fc(x) * g)."""
    n, k, m = shape
    rng = np.random.default_rng(3)
    fc = fc64(k, m)
    x = rng.standard_normal((n, k))
    g = rng.standard_normal((n, m))

    def f(_):
        return float(np.sum(fc.forward(x) * g))

    f(None)
    dx = fc.backward(g).copy()
    dw, db = fc.grad_weights.copy(), fc.grad_bias.copy()
    assert rel_error(dw, fnn.numerical_gradient(f, fc.weights)) < TOL
    assert rel_error(db, fnn.numerical_gradient(f, fc.bias)) < TOL
    assert rel_error(dx, fnn.numerical_gradient(f, x)) < TOL
    # and against the closed form
    dx_ref, dw_ref, db_ref = ref.dense_backward(x, fc.weights, g)
    np.testing.assert_allclose(dw, dw_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(db, db_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("shape", [(1, 1), (1, 5), (4, 7), (13, 3)])
def test_activation_gradcheck(name, shape):
    rng = np.random.default_rng(4)
    x = away_from_kink(rng.standard_normal(shape) * 2)
    report = fnn.gradcheck(ACTIVATION_LAYERS[name](), x)
    assert "x" in report
    assert report.max_error < TOL, str(report)


@pytest.mark.parametrize("shape", [(1, 1), (1, 2), (4, 7), (13, 3)])
def test_softmax_gradcheck(shape):
    x = np.random.default_rng(5).standard_normal(shape) * 2
    report = fnn.gradcheck(fnn.SoftMax(), x)
    assert report.max_error < TOL, str(report)


class _WrongReLU(fnn.ReLU):
    """A sabotaged layer: its backward forgets the mask (identity gradient)."""

    def _backward(self, dy, need_input_grad=True):
        return dy.copy()


class _WrongFC(fnn.FullyConnected):
    """A sabotaged layer: the weight gradient is transposed-wrong (scaled by 2)."""

    def _backward(self, dy, need_input_grad=True):
        dx = super()._backward(dy, need_input_grad)
        self.grad_weights[...] *= 2
        return dx


def test_gradcheck_catches_wrong_gradients():
    x = away_from_kink(np.random.default_rng(6).standard_normal((4, 5)))
    assert fnn.gradcheck(_WrongReLU(), x).max_error > 1e-2
    assert not fnn.gradcheck(_WrongReLU(), x).passed(TOL)
    fc = _WrongFC(5, 3, dtype=np.float64, seed=0)
    report = fnn.gradcheck(fc, x)
    assert report["params[0]"] > 0.1 and report["x"] < TOL


# ---------------------------------------------------------------------------- finite differences: losses
def _loss_fd(loss, pred, target):
    value = loss.forward(pred, target)
    analytic = loss.backward().copy()
    numeric = fnn.numerical_gradient(lambda p: loss.forward(p, target), pred)
    return value, analytic, numeric


@pytest.mark.parametrize("n,m", [(1, 1), (1, 4), (5, 3), (13, 7)])
def test_softmax_cross_entropy_int_labels_fd(n, m):
    rng = np.random.default_rng(7)
    z = rng.standard_normal((n, m)) * 3
    labels = rng.integers(0, m, n)
    value, analytic, numeric = _loss_fd(fnn.SoftmaxCrossEntropy(), z, labels)
    assert rel_error(analytic, numeric) < TOL
    loss_ref, grad_ref = ref.softmax_ce_labels(z, labels)
    assert value == pytest.approx(loss_ref, rel=1e-12, abs=1e-12)
    np.testing.assert_allclose(analytic, grad_ref, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("n,m", [(1, 2), (5, 3), (13, 7)])
@pytest.mark.parametrize("soft", [False, True], ids=["one-hot", "soft"])
def test_softmax_cross_entropy_dense_targets_fd(n, m, soft):
    rng = np.random.default_rng(8)
    z = rng.standard_normal((n, m)) * 3
    t = ref.softmax(rng.standard_normal((n, m))) if soft else ref.one_hot(rng.integers(0, m, n), m)
    value, analytic, numeric = _loss_fd(fnn.SoftmaxCrossEntropy(), z, t)
    assert rel_error(analytic, numeric) < TOL
    loss_ref, grad_ref = ref.softmax_ce_dense(z, t)
    assert value == pytest.approx(loss_ref, rel=1e-12)
    np.testing.assert_allclose(analytic, grad_ref, rtol=1e-12, atol=1e-14)
    if not soft:       # one-hot and int labels agree
        loss2 = fnn.SoftmaxCrossEntropy()
        assert loss2.forward(z, t.argmax(axis=1)) == pytest.approx(value, rel=1e-12)
        np.testing.assert_allclose(loss2.backward(), analytic, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("n,m", [(1, 1), (1, 4), (5, 3), (13, 7)])
@pytest.mark.parametrize("dense", [False, True], ids=["labels", "one-hot"])
def test_cross_entropy_on_probabilities_fd(n, m, dense):
    rng = np.random.default_rng(9)
    p = ref.softmax(rng.standard_normal((n, m)))
    labels = rng.integers(0, m, n)
    target = ref.one_hot(labels, m) if dense else labels
    value, analytic, numeric = _loss_fd(fnn.CrossEntropyLoss(), p, target)
    assert rel_error(analytic, numeric) < TOL
    loss_ref, grad_ref = ref.cross_entropy_labels(p, labels)
    assert value == pytest.approx(loss_ref, rel=1e-12)
    np.testing.assert_allclose(analytic, grad_ref, rtol=1e-12)


@pytest.mark.parametrize("n,m", [(1, 1), (1, 4), (5, 3), (13, 7)])
def test_l2_loss_fd(n, m):
    rng = np.random.default_rng(10)
    pred, target = rng.standard_normal((n, m)), rng.standard_normal((n, m))
    value, analytic, numeric = _loss_fd(fnn.L2Loss(), pred, target)
    assert rel_error(analytic, numeric) < TOL
    loss_ref, grad_ref = ref.l2(pred, target)
    assert value == pytest.approx(loss_ref, rel=1e-12)
    np.testing.assert_allclose(analytic, grad_ref, rtol=1e-12)


def test_l2_loss_value_by_hand():
    # 0.5 * ((1-0)^2 + (2-4)^2) = 2.5 for row 0, 0.5 * (3^2 + 0) = 4.5 for row 1; mean 3.5
    loss = fnn.L2Loss()
    assert loss.forward(np.array([[1.0, 2.0], [3.0, 1.0]]), np.array([[0.0, 4.0], [0.0, 1.0]])) == 3.5
    np.testing.assert_array_equal(loss.backward(), [[0.5, -1.0], [1.5, 0.0]])


# ----------------------------------------------------------------------------- whole network gradcheck
def _net_5763(loss=None, dtype=np.float64):
    return fnn.NeuralNetwork([fnn.FullyConnected(5, 7, dtype=dtype), fnn.TanH(),
                              fnn.FullyConnected(7, 6, dtype=dtype), fnn.ReLU(),
                              fnn.FullyConnected(6, 3, dtype=dtype)], loss=loss, seed=0)


@pytest.mark.parametrize("batch", [1, 4, 9])
def test_network_gradcheck_5_7_6_3(batch):
    net = _net_5763()
    rng = np.random.default_rng(11)
    for fc in net.layers[::2]:
        fc.bias = rng.standard_normal(fc.out_features) * 0.1
    x = rng.standard_normal((batch, 5))
    report = fnn.gradcheck(net, x, rng.integers(0, 3, batch))
    assert {f"layers[{i}].params[{j}]" for i in (0, 2, 4) for j in (0, 1)} | {"x"} <= set(report)
    assert report.max_error < TOL, str(report)


@pytest.mark.parametrize("head", ["l2", "softmax+ce", "one-hot"])
def test_network_gradcheck_other_heads(head):
    rng = np.random.default_rng(12)
    if head == "l2":
        net = _net_5763(fnn.L2Loss())
        target = rng.standard_normal((6, 3))
    elif head == "softmax+ce":
        net = fnn.NeuralNetwork(list(_net_5763().layers) + [fnn.SoftMax()], loss=fnn.CrossEntropyLoss(), seed=0)
        target = rng.integers(0, 3, 6)
    else:
        net = _net_5763()
        target = ref.softmax(rng.standard_normal((6, 3)))
    report = fnn.gradcheck(net, rng.standard_normal((6, 5)), target)
    assert report.max_error < TOL, str(report)


def test_network_gradients_match_reference_backprop():
    """net.backward() against a hand-written NumPy backprop of the same weights (no finite differences)."""
    net = _net_5763()
    rng = np.random.default_rng(13)
    x, y = rng.standard_normal((8, 5)), rng.integers(0, 3, 8)
    loss = net.forward(x, y)
    net.backward()
    ws = [net.layers[i].weights.copy() for i in (0, 2, 4)]
    bs = [net.layers[i].bias.copy() for i in (0, 2, 4)]
    acts = ref.mlp_forward(x, ws, bs, ["tanh", "relu", "identity"])
    loss_ref, dout = ref.softmax_ce_labels(acts[-1], y)
    assert loss == pytest.approx(loss_ref, rel=1e-12)
    dws, dbs, _ = ref.mlp_backward(acts, ws, ["tanh", "relu", "identity"], dout)
    for k, i in enumerate((0, 2, 4)):
        np.testing.assert_allclose(net.layers[i].grad_weights, dws[k], rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(net.layers[i].grad_bias, dbs[k], rtol=1e-10, atol=1e-14)


def test_gradcheck_catches_wrong_network_gradient():
    net = fnn.NeuralNetwork([_WrongFC(5, 4, dtype=np.float64, seed=0), fnn.TanH(),
                             fnn.FullyConnected(4, 3, dtype=np.float64)], seed=1)
    x = np.random.default_rng(14).standard_normal((3, 5))
    report = fnn.gradcheck(net, x)
    assert report["layers[0].params[0]"] > 0.1
    assert not report.passed(TOL)


# ---------------------------------------------------------------------------------- outputs vs reference
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@HYP
@given(n=sizes, k=sizes, m=sizes, seed=seeds)
@example(n=1, k=1, m=1, seed=0)
@example(n=1, k=67, m=2, seed=1)
def test_fully_connected_vs_reference(dtype, n, k, m, seed):
    rng = np.random.default_rng(seed)
    fc = fnn.FullyConnected(k, m, dtype=dtype, seed=seed % 1000)
    fc.bias = rng.standard_normal(m)
    x = rng.standard_normal((n, k)).astype(dtype)
    dy = rng.standard_normal((n, m)).astype(dtype)
    r = RTOL[dtype]
    y = fc.forward(x)
    assert y.shape == (n, m) and y.dtype == dtype
    scale = (np.abs(x) @ np.abs(fc.weights.astype(np.float64)) + np.abs(fc.bias)).max()
    np.testing.assert_allclose(y, ref.dense_forward(x, fc.weights, fc.bias), rtol=r, atol=r * scale)
    dx = fc.backward(dy)
    assert dx.shape == (n, k) and dx.dtype == dtype
    dx_ref, dw_ref, db_ref = ref.dense_backward(x, fc.weights, dy)
    np.testing.assert_allclose(dx, dx_ref, rtol=r, atol=r * (np.abs(dy) @ np.abs(fc.weights.T)).max())
    np.testing.assert_allclose(fc.grad_weights, dw_ref, rtol=r, atol=r * (np.abs(x).T @ np.abs(dy)).max())
    np.testing.assert_allclose(fc.grad_bias, db_ref, rtol=r, atol=r * np.abs(dy).sum(axis=0).max())
    assert [p.shape for p in fc.params] == [g.shape for g in fc.grads] == [(k, m), (m,)]
    assert fc.params[0] is fc.weights or np.shares_memory(fc.params[0], fc.weights)
    assert np.shares_memory(fc.grads[0], fc.grad_weights) and np.shares_memory(fc.grads[1], fc.grad_bias)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["relu", "sigmoid", "tanh", "softmax"])
@HYP
@given(n=sizes, m=sizes, seed=seeds)
@example(n=1, m=1, seed=0)
def test_activation_layers_vs_reference(dtype, name, n, m, seed):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((n, m)) * 3).astype(dtype)
    dy = rng.standard_normal((n, m)).astype(dtype)
    if name == "softmax":
        layer, f, fb = fnn.SoftMax(), ref.softmax, ref.softmax_backward
    else:
        layer, (f, fb) = ACTIVATION_LAYERS[name](), ref.ACTIVATIONS[name]
    r = RTOL[dtype]
    y = layer.forward(x)
    assert y.shape == (n, m) and y.dtype == dtype
    np.testing.assert_allclose(y, f(x), rtol=10 * r, atol=r)
    dx = layer.backward(dy)
    assert dx.shape == (n, m) and dx.dtype == dtype
    np.testing.assert_allclose(dx, fb(y, dy), rtol=10 * r, atol=r * np.abs(dy).max())
    assert layer.params == [] and layer.grads == []


# ------------------------------------------------------------------------------ buffers and small batches
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_smaller_batch_after_larger_uses_correct_rows(dtype):
    rng = np.random.default_rng(15)
    fc = fnn.FullyConnected(6, 4, dtype=dtype, seed=0)
    tanh = fnn.TanH()
    r = 10 * RTOL[dtype]
    for n in (8, 3, 1, 8, 5):
        x = rng.standard_normal((n, 6)).astype(dtype)
        dy = rng.standard_normal((n, 4)).astype(dtype)
        h = tanh.forward(fc.forward(x))
        assert h.shape == (n, 4)
        acts = ref.mlp_forward(x, [fc.weights], [fc.bias], ["tanh"])
        np.testing.assert_allclose(h, acts[-1], rtol=r, atol=r)
        dx = fc.backward(tanh.backward(dy))
        assert dx.shape == (n, 6)
        dws, dbs, dx_ref = ref.mlp_backward(acts, [fc.weights], ["tanh"], dy)
        np.testing.assert_allclose(dx, dx_ref, rtol=r, atol=r)
        np.testing.assert_allclose(fc.grad_weights, dws[0], rtol=r, atol=r)
        np.testing.assert_allclose(fc.grad_bias, dbs[0], rtol=r, atol=r)


def test_network_smaller_batch_forward_and_backward():
    net = _net_5763()
    rng = np.random.default_rng(16)
    ws = lambda: [net.layers[i].weights.copy() for i in (0, 2, 4)]   # noqa: E731
    bs = lambda: [net.layers[i].bias.copy() for i in (0, 2, 4)]      # noqa: E731
    names = ["tanh", "relu", "identity"]
    for n in (10, 3, 10, 1):
        x, y = rng.standard_normal((n, 5)), rng.integers(0, 3, n)
        out = net.forward(x)
        acts = ref.mlp_forward(x, ws(), bs(), names)
        np.testing.assert_allclose(out, acts[-1], rtol=1e-12, atol=1e-12)
        loss = net.forward(x, y)
        loss_ref, dout = ref.softmax_ce_labels(acts[-1], y)
        assert loss == pytest.approx(loss_ref, rel=1e-12)
        net.backward()
        dws, dbs, _ = ref.mlp_backward(acts, ws(), names, dout)
        for k, i in enumerate((0, 2, 4)):
            np.testing.assert_allclose(net.layers[i].grad_weights, dws[k], rtol=1e-10, atol=1e-14)
            np.testing.assert_allclose(net.layers[i].grad_bias, dbs[k], rtol=1e-10, atol=1e-14)


# ------------------------------------------------------------------------------------------ parameters
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_assigning_weights_copies_values_and_checks_shapes(dtype):
    fc = fnn.FullyConnected(3, 2, dtype=dtype, seed=0)
    w_buffer, b_buffer = fc.weights, fc.bias
    new_w = np.arange(6, dtype=np.float64).reshape(3, 2)
    fc.weights = new_w
    fc.bias = [1.0, -1.0]
    new_w[0, 0] = 99.0                            # the layer holds a copy, not the caller's array
    np.testing.assert_array_equal(fc.weights, np.arange(6).reshape(3, 2))
    np.testing.assert_array_equal(fc.bias, [1.0, -1.0])
    assert fc.weights.dtype == dtype and fc.bias.dtype == dtype
    assert np.shares_memory(fc.weights, w_buffer) and np.shares_memory(fc.bias, b_buffer)
    np.testing.assert_array_equal(fc.params[0], np.arange(6).reshape(3, 2))
    np.testing.assert_allclose(fc.forward(np.array([[1.0, 1.0, 1.0]], dtype)), [[0 + 2 + 4 + 1, 1 + 3 + 5 - 1]])
    with pytest.raises(ValueError, match="weights"):
        fc.weights = np.zeros((2, 3))
    with pytest.raises(ValueError, match="weights"):
        fc.weights = np.zeros(6)
    with pytest.raises(ValueError, match="bias"):
        fc.bias = np.zeros(3)
    np.testing.assert_array_equal(fc.weights, np.arange(6).reshape(3, 2))     # unchanged by the failures


def test_assigning_weights_inside_network_updates_the_network():
    net = _net_5763()
    x = np.random.default_rng(17).standard_normal((2, 5))
    before = net.forward(x)
    net.layers[4].weights = np.zeros((6, 3))
    net.layers[4].bias = np.array([1.0, 2.0, 3.0])
    np.testing.assert_array_equal(net.forward(x), [[1.0, 2.0, 3.0]] * 2)
    assert not np.array_equal(before, net.forward(x))


def test_layer_backward_before_forward_raises():
    for layer in (fnn.FullyConnected(2, 2), fnn.ReLU(), fnn.Sigmoid(), fnn.TanH(), fnn.SoftMax()):
        with pytest.raises(RuntimeError):
            layer.backward(np.ones((1, 2), np.float32))
    for loss in (fnn.SoftmaxCrossEntropy(), fnn.CrossEntropyLoss(), fnn.L2Loss()):
        with pytest.raises(RuntimeError):
            loss.backward()


@pytest.mark.parametrize("layout", ["fortran", "strided columns", "strided rows", "int"])
def test_non_contiguous_and_integer_inputs(layout):
    rng = np.random.default_rng(18)
    base = rng.integers(-3, 4, (10, 8)).astype(np.float64)
    x = {"fortran": np.asfortranarray(base[:, :4]), "strided columns": base[:, ::2],
         "strided rows": base[::2, :4], "int": base[:, :4].astype(np.int64)}[layout]
    fc = fc64(4, 3)
    y = fc.forward(x)
    np.testing.assert_allclose(y, ref.dense_forward(np.asarray(x, float), fc.weights, fc.bias), rtol=1e-12,
                               atol=1e-12)
    dy = np.asfortranarray(rng.standard_normal(y.shape))
    dx = fc.backward(dy)
    dx_ref, dw_ref, _ = ref.dense_backward(np.asarray(x, float), fc.weights, dy)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(fc.grad_weights, dw_ref, rtol=1e-12, atol=1e-12)
    net = _net_5763()
    x5 = np.asfortranarray(rng.standard_normal((6, 5)))
    np.testing.assert_array_equal(net.forward(x5), net.forward(np.ascontiguousarray(x5)))
