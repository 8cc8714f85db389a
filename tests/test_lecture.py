"""The lecture's own numbers: the softmax example, the finite-difference example, and the closed-form
gradients of a chain of linear layers (the layer abstraction: dL/dW = xᵀ·dL/dy, dL/dx = dL/dy·Wᵀ).
fastnn's convention is y = x @ W + b with W of shape (in, out)."""
import numpy as np
import pytest

import fastnn as fnn

LECTURE_LOGITS = [-3.44, 1.16, -0.81, 3.91]
LECTURE_SOFTMAX = [0.0006, 0.0596, 0.0083, 0.9315]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_of_lecture_logits(dtype):
    p = fnn.SoftMax().forward(np.array([LECTURE_LOGITS], dtype))
    np.testing.assert_array_equal(np.round(p.astype(np.float64), 4), [LECTURE_SOFTMAX])
    assert float(p.sum()) == pytest.approx(1.0, rel=1e-6)


def test_lecture_logits_through_the_classifier_head():
    z = np.array([LECTURE_LOGITS])
    np.testing.assert_array_equal(np.round(fnn.SoftmaxCrossEntropy.output_probabilities(z), 4),
                                  [LECTURE_SOFTMAX])
    # the loss for the true class 3 is -log 0.9315... and its gradient is softmax - onehot
    loss = fnn.SoftmaxCrossEntropy()
    value = loss.forward(z, np.array([3]))
    e = np.exp(np.array(LECTURE_LOGITS))
    assert value == pytest.approx(-np.log(e[3] / e.sum()), rel=1e-12)
    assert round(value, 4) == pytest.approx(-np.log(0.9315), abs=1e-4)
    np.testing.assert_allclose(loss.backward(), [e / e.sum() - [0, 0, 0, 1]], rtol=1e-12, atol=1e-15)


def lecture_f(x):
    return (2 * x[0] + 3 * x[1]) ** 2 + 3


@pytest.mark.parametrize("h", [None, 1e-4, 1e-2])
def test_numerical_gradient_lecture_example(h):
    x = np.array([1.0, 3.0])
    g = fnn.numerical_gradient(lecture_f, x, h=h)
    # d/dx1 = 2 (2 x1 + 3 x2) · 2 = 44 and d/dx2 = 2 (2 x1 + 3 x2) · 3 = 66 at (1, 3)
    np.testing.assert_allclose(g, [44.0, 66.0], rtol=1e-7)
    np.testing.assert_array_equal(x, [1.0, 3.0])           # x is restored exactly
    assert g.shape == x.shape and g.dtype == x.dtype


def test_numerical_gradient_float32_and_2d():
    x = np.array([[1.0, 3.0]], np.float32)
    g = fnn.numerical_gradient(lambda a: lecture_f(a[0].astype(np.float64)), x)
    assert g.dtype == np.float32 and g.shape == (1, 2)
    np.testing.assert_allclose(g, [[44.0, 66.0]], rtol=1e-3)
    np.testing.assert_array_equal(x, [[1.0, 3.0]])


def test_numerical_gradient_is_central_difference():
    """For f = x³ a one-sided difference is off by O(h); the central one only by h² (exactly h² here)."""
    x = np.array([2.0])
    h = 1e-2
    g = fnn.numerical_gradient(lambda a: a[0] ** 3, x, h=h)
    assert g[0] == pytest.approx(3 * 4 + h * h, rel=1e-9)


@pytest.mark.parametrize("batch", [1, 4])
def test_linear_chain_closed_form_gradients(batch):
    """x0 -FC1-> x1 -FC2-> x2 -FC3-> y, L2 loss. By hand: dL/dy = (y - t) / batch, and for each layer
    dL/dW = x_inᵀ·dL/dy_out, dL/db = Σ_batch dL/dy_out, dL/dx_in = dL/dy_out·Wᵀ."""
    rng = np.random.default_rng(0)
    dims = [4, 5, 3, 2]
    layers = [fnn.FullyConnected(a, b, dtype=np.float64) for a, b in zip(dims[:-1], dims[1:])]
    net = fnn.NeuralNetwork(layers, loss=fnn.L2Loss(), optimizer=fnn.SGD(lr=0.1), seed=0)
    for fc in layers:
        fc.bias = rng.standard_normal(fc.out_features)
    W1, W2, W3 = (fc.weights.copy() for fc in layers)
    b1, b2, b3 = (fc.bias.copy() for fc in layers)
    x0 = rng.standard_normal((batch, 4))
    t = rng.standard_normal((batch, 2))

    # forward by hand
    x1 = x0 @ W1 + b1
    x2 = x1 @ W2 + b2
    y = x2 @ W3 + b3
    L = 0.5 * np.sum((y - t) ** 2) / batch
    # backward by hand, the layer abstraction applied three times
    dy = (y - t) / batch
    dW3, db3, dx2 = x2.T @ dy, dy.sum(axis=0), dy @ W3.T
    dW2, db2, dx1 = x1.T @ dx2, dx2.sum(axis=0), dx2 @ W2.T
    dW1, db1, dx0 = x0.T @ dx1, dx1.sum(axis=0), dx1 @ W1.T

    np.testing.assert_allclose(net.forward(x0), y, rtol=1e-12, atol=1e-12)
    assert net.forward(x0, t) == pytest.approx(L, rel=1e-12)
    net.backward()
    expected = [(dW1, db1), (dW2, db2), (dW3, db3)]
    for fc, (dW, db) in zip(layers, expected):
        assert fc.grad_weights.shape == fc.weights.shape == dW.shape
        np.testing.assert_allclose(fc.grad_weights, dW, rtol=1e-11, atol=1e-13)
        np.testing.assert_allclose(fc.grad_bias, db, rtol=1e-11, atol=1e-13)

    # the same chain through the public Layer API gives dL/dx at every stage
    g = net.loss.backward()
    np.testing.assert_allclose(g, dy, rtol=1e-12, atol=1e-14)
    for fc, dx_expected in zip(reversed(layers), [dx2, dx1, dx0]):
        g = fc.backward(g)
        np.testing.assert_allclose(g, dx_expected, rtol=1e-11, atol=1e-13)

    # and one SGD step is W -= lr * dW for every layer
    net.forward(x0, t)
    net.backward()
    net.step()
    for fc, W, (dW, db), b in zip(layers, (W1, W2, W3), expected, (b1, b2, b3)):
        np.testing.assert_allclose(fc.weights, W - 0.1 * dW, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(fc.bias, b - 0.1 * db, rtol=1e-12, atol=1e-14)


def test_linear_chain_collapses_to_one_linear_map():
    """Without activations the chain is one affine map: W = W1 W2 W3, b = (b1 W2 + b2) W3 + b3."""
    rng = np.random.default_rng(1)
    layers = [fnn.FullyConnected(3, 4, dtype=np.float64), fnn.FullyConnected(4, 4, dtype=np.float64),
              fnn.FullyConnected(4, 2, dtype=np.float64)]
    net = fnn.NeuralNetwork(layers, loss=fnn.L2Loss(), seed=3)
    for fc in layers:
        fc.bias = rng.standard_normal(fc.out_features)
    (W1, b1), (W2, b2), (W3, b3) = [(fc.weights, fc.bias) for fc in layers]
    x = rng.standard_normal((6, 3))
    np.testing.assert_allclose(net.forward(x), x @ (W1 @ W2 @ W3) + ((b1 @ W2 + b2) @ W3 + b3),
                               rtol=1e-12, atol=1e-12)
