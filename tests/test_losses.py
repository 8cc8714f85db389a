"""The losses as objects: SigmoidCrossEntropy (against NumPy, PyTorch and finite differences), the targets
each loss accepts (``check_target``), what it predicts and counts as correct, and per-sample weights
(scikit-learn's MLP weighting) in every loss."""
import numpy as np
import pytest

import fastnn as fnn
from fastnn.gradcheck import numerical_gradient
from tests import reference as ref

DTYPES = [np.float32, np.float64]
LOSSES = [fnn.SoftmaxCrossEntropy, fnn.CrossEntropyLoss, fnn.SigmoidCrossEntropy, fnn.L2Loss]


def eps(dtype):
    return float(np.finfo(dtype).eps)


sigmoid_ce_ref = ref.sigmoid_ce


def per_row_ref(loss_cls, z, t):
    """Each row's unweighted loss l_i and gradient ∇l_i (n × the batch mean's), from tests/reference.py."""
    n = len(z)
    funcs = {fnn.SoftmaxCrossEntropy: (ref.softmax_ce_labels, ref.softmax_ce_dense),
             fnn.CrossEntropyLoss: (ref.cross_entropy_labels, ref.cross_entropy_dense),
             fnn.L2Loss: (None, ref.l2)}
    if loss_cls is fnn.SigmoidCrossEntropy:
        pairs = [sigmoid_ce_ref(z[i:i + 1], t[i:i + 1]) for i in range(n)]
    else:
        f = funcs[loss_cls][0 if t.ndim == 1 else 1]
        pairs = [f(z[i:i + 1], t[i:i + 1]) for i in range(n)]
    return np.array([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs])


def batch(loss_cls, n, m, dtype, rng, labels=False):
    """(pred, target) valid for the loss: logits / probabilities / regression outputs."""
    z = rng.standard_normal((n, m)) * 2
    if loss_cls is fnn.CrossEntropyLoss:
        z = ref.softmax(z / 2)              # no tiny probabilities (finite differences of -log p)
    if loss_cls is fnn.SigmoidCrossEntropy:
        t = (rng.uniform(size=(n, m)) < 0.4).astype(float)
        t[0] = rng.uniform(size=m)                       # a soft row
    elif loss_cls is fnn.L2Loss:
        t = rng.standard_normal((n, m))
    elif labels:
        t = rng.integers(0, m, n)
    else:
        t = ref.softmax(rng.standard_normal((n, m)) * 3)
    return np.ascontiguousarray(z, dtype), (t if labels else np.ascontiguousarray(t, dtype))


# ---------------------------------------------------------------------------- SigmoidCrossEntropy
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", [1, 3, 17])
def test_sigmoid_ce_matches_reference(dtype, m):
    rng = np.random.default_rng(m)
    z, t = batch(fnn.SigmoidCrossEntropy, 29, m, dtype, rng)
    loss = fnn.SigmoidCrossEntropy()
    value = loss.forward(z, t)
    grad = loss.backward()
    expected, grad_ref = sigmoid_ce_ref(z, t)
    # computed in float64 from the dtype's inputs; only the stored gradient is rounded to the dtype
    assert value == pytest.approx(expected, rel=64 * m * 1e-16)
    assert grad.dtype == dtype and grad.shape == z.shape
    np.testing.assert_allclose(grad, grad_ref, rtol=4 * eps(dtype), atol=4 * eps(dtype) / len(z))


@pytest.mark.parametrize("weighted", [False, True])
def test_sigmoid_ce_equals_torch_bce_with_logits(weighted):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed: the comparison is skipped")
    rng = np.random.default_rng(5)
    z, t = batch(fnn.SigmoidCrossEntropy, 23, 4, np.float64, rng)
    z[0, :2] = [30.0, -40.0]
    w = rng.uniform(0.1, 3, len(z)) if weighted else None
    loss = fnn.SigmoidCrossEntropy()
    value = loss.forward(z, t, w)
    grad = loss.backward()
    zt = torch.tensor(z, requires_grad=True)
    if weighted:
        bce = torch.nn.BCEWithLogitsLoss(weight=torch.tensor(w)[:, None], reduction="sum")
        expected = bce(zt, torch.tensor(t)) / float(w.sum())
    else:
        expected = torch.nn.BCEWithLogitsLoss(reduction="sum")(zt, torch.tensor(t)) / len(z)
    expected.backward()
    assert value == pytest.approx(expected.item(), rel=1e-10, abs=1e-10)
    np.testing.assert_allclose(grad, zt.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("weighted", [False, True])
def test_sigmoid_ce_gradient_is_central_finite_difference(weighted):
    rng = np.random.default_rng(11)
    z, t = batch(fnn.SigmoidCrossEntropy, 7, 5, np.float64, rng)
    w = rng.uniform(0.2, 2, 7) if weighted else None
    loss = fnn.SigmoidCrossEntropy()
    loss.forward(z, t, w)
    grad = loss.backward().copy()
    numeric = numerical_gradient(lambda x: fnn.SigmoidCrossEntropy().forward(x, t, w), z)
    err = np.abs(grad - numeric).max() / max(np.abs(numeric).max(), 1e-300)
    assert err < 1e-6


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("big", [1e4, -1e4])
def test_sigmoid_ce_extreme_logits_finite(dtype, big):
    z = np.array([[big, -big], [big, big], [-big, 0.0]], dtype)
    t = np.array([[1, 0], [0, 1], [1, 0]], dtype)
    loss = fnn.SigmoidCrossEntropy()
    value = loss.forward(z, t)
    grad = loss.backward()
    assert np.isfinite(value) and np.isfinite(grad).all()
    expected, grad_ref = sigmoid_ce_ref(z, t)
    assert value == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(grad, grad_ref, atol=eps(dtype))
    proba = loss.output_probabilities(z)
    assert proba.dtype == dtype and np.isfinite(proba).all() and ((proba >= 0) & (proba <= 1)).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_probabilities_predictions_and_subset_accuracy(dtype):
    sklearn_metrics = pytest.importorskip("sklearn.metrics", reason="scikit-learn is not installed")
    rng = np.random.default_rng(3)
    z = rng.standard_normal((50, 4)).astype(dtype)
    z[0, 0] = 0.0                     # sigmoid 0.5 is not a positive prediction (as scikit-learn's > 0.5)
    t = (rng.uniform(size=(50, 4)) < 0.5).astype(dtype)
    t[:10] = (z[:10] > 0)             # some rows fully right
    loss = fnn.SigmoidCrossEntropy()
    np.testing.assert_allclose(loss.output_probabilities(z), 1 / (1 + np.exp(-z.astype(np.float64))),
                               rtol=4 * eps(dtype))
    pred = loss.predictions(z)
    assert pred.dtype == np.int64 and pred.shape == (50, 4) and pred[0, 0] == 0
    np.testing.assert_array_equal(pred, (z > 0).astype(np.int64))
    expected = sklearn_metrics.accuracy_score(t.astype(np.int64), pred, normalize=False)
    assert loss.count_correct(z, loss.check_target(t, "y", 50, 4, dtype)) == expected >= 10
    one = loss.predictions(z[:, :1])
    assert one.shape == (50,) and one.dtype == np.int64


def test_network_with_sigmoid_head_binary_and_multilabel(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 4))
    cases = {"binary": (X[:, 0] + X[:, 1] > 0).astype(np.int64),
             "multilabel": np.stack([X[:, 0] > 0, X[:, 1] > 0, X[:, 0] + X[:, 2] > 0], 1).astype(np.int64)}
    for name, y in cases.items():
        k = 1 if y.ndim == 1 else y.shape[1]
        net = fnn.NeuralNetwork([fnn.FullyConnected(4, 16), fnn.ReLU(), fnn.FullyConnected(16, k)],
                                loss=fnn.SigmoidCrossEntropy(), optimizer=fnn.Adam(lr=0.02), seed=1)
        hist = net.fit(X, y, epochs=40, batch_size=32, verbose=0)
        pred = net.predict(X)
        assert pred.shape == y.shape and pred.dtype == np.int64, name
        scores = net.evaluate(X, y)
        assert scores["accuracy"] == pytest.approx(np.mean(np.all(pred.reshape(len(X), -1)
                                                                   == y.reshape(len(X), -1), axis=1)))
        assert scores["accuracy"] > 0.85 and hist["accuracy"][-1] > 0.8, name
        assert net.predict_proba(X[:5]).shape == (5, k)
        path = tmp_path / f"{name}.safetensors"
        net.save(path)
        back = fnn.load(path)
        assert type(back.loss) is fnn.SigmoidCrossEntropy
        np.testing.assert_array_equal(back.predict(X), pred)


# ------------------------------------------------------------------------------- target checks
@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_targets_accepted(dtype):
    loss = fnn.SigmoidCrossEntropy()
    y = np.array([0, 1, 1, 0])
    for given in (y, y[:, None], y.astype(bool), y.astype(np.float32)):
        out = loss.check_target(given, "y", 4, 1, dtype)
        assert out.shape == (4, 1) and out.dtype == dtype and out.flags.c_contiguous
    soft = np.array([[0.2, 1.0], [0.0, 0.7]])
    np.testing.assert_array_equal(loss.check_target(soft, "y", 2, 2, dtype), soft.astype(dtype))


@pytest.mark.parametrize("bad,match", [
    (np.array([0, 1, 2]), r"\[0, 1\]"), (np.array([[0.5, -0.1]] * 3), r"\[0, 1\]"),
    (np.array([[0.0, np.nan]] * 3), "NaN"), (np.array([0, 1, 1]), "indicators"),
    (np.zeros((3, 3)), r"\(batch, 2\)"), (np.zeros((2, 2)), "rows"), (np.array(["a", "b", "c"]), "real")])
def test_sigmoid_targets_refused(bad, match):
    with pytest.raises((ValueError, TypeError), match=match) as info:
        fnn.SigmoidCrossEntropy().check_target(bad, "y_train", 3, 2 if bad.ndim == 2 or match == "indicators"
                                               else 1, np.float64)
    assert "y_train" in str(info.value)


@pytest.mark.parametrize("loss_cls", [fnn.SoftmaxCrossEntropy, fnn.CrossEntropyLoss])
@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_targets_must_be_distributions(loss_cls, dtype):
    loss = loss_cls()
    rng = np.random.default_rng(0)
    ok = ref.softmax(rng.standard_normal((64, 10)) * 4).astype(dtype)       # rounded in the dtype
    assert loss.check_target(ok, "y", 64, 10, dtype).dtype == dtype
    assert loss.check_target(ok.astype(np.float32), "y", 64, 10, np.float64).dtype == np.float64
    multi_hot = np.array([[1, 0, 1], [0, 1, 0]], dtype)
    with pytest.raises(ValueError, match="SigmoidCrossEntropy") as info:
        loss.check_target(multi_hot, "y", 2, 3, dtype)
    assert "y row 0" in str(info.value)
    for bad in ([[0.5, 0.2, 0.2], [0, 1, 0]], [[0, 0, 0], [0, 1, 0]], [[0.6, 0.6, 0.0], [0, 1, 0]]):
        with pytest.raises(ValueError, match="sum"):
            loss.check_target(np.array(bad, dtype), "y", 2, 3, dtype)
    with pytest.raises(ValueError, match="sum"):      # off by far more than rounding
        loss.check_target(ok * (1 + 1000 * 10 * eps(dtype)), "y", 64, 10, dtype)


def test_network_refuses_multi_hot_for_softmax():
    net = fnn.NeuralNetwork([fnn.FullyConnected(3, 4)])
    X = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match="SigmoidCrossEntropy"):
        net.fit(X, np.array([[1, 1, 0, 0], [0, 1, 0, 1]]), epochs=1, verbose=0)


# --------------------------------------------------------------------------------- sample weights
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss_cls,labels", [(fnn.SoftmaxCrossEntropy, True), (fnn.SoftmaxCrossEntropy, False),
                                             (fnn.CrossEntropyLoss, True), (fnn.CrossEntropyLoss, False),
                                             (fnn.SigmoidCrossEntropy, False), (fnn.L2Loss, False)])
def test_weighted_loss_is_scikit_learns_weighted_average(dtype, loss_cls, labels):
    """loss = Σ w_i l_i / Σ w_i, dL/dpred_i = w_i ∇l_i / Σ w_i (sklearn MLP's _backprop)."""
    rng = np.random.default_rng(7)
    n, m = 13, 6
    z, t = batch(loss_cls, n, m, dtype, rng, labels)
    w = rng.uniform(0, 3, n).astype(dtype)
    w[2] = 0.0
    loss = loss_cls()
    value = loss.forward(z, t, w)
    grad = loss.backward()
    rows, row_grads = per_row_ref(loss_cls, z, t)        # row_grads: ∇l_i of each one-row batch
    expected = float((ref.f64(w) * rows).sum() / ref.f64(w).sum())
    grad_ref = ref.f64(w)[:, None] * row_grads / ref.f64(w).sum()
    tol = 64 * m * eps(dtype)
    assert value == pytest.approx(expected, rel=tol)
    np.testing.assert_allclose(grad, grad_ref, rtol=tol, atol=tol * np.abs(grad_ref).max())
    assert not grad[2].any()


@pytest.mark.parametrize("loss_cls", LOSSES)
def test_unit_weights_equal_unweighted_and_scale_does_not_matter(loss_cls):
    rng = np.random.default_rng(1)
    z, t = batch(loss_cls, 9, 4, np.float64, rng)
    plain = loss_cls()
    value = plain.forward(z, t)
    for w in (np.ones(9), np.full(9, 7.5)):
        weighted = loss_cls()
        assert weighted.forward(z, t, w) == pytest.approx(value, rel=1e-14)
        np.testing.assert_allclose(weighted.backward(), plain.backward(), rtol=1e-14, atol=1e-17)


@pytest.mark.parametrize("loss_cls", LOSSES)
def test_weighted_gradient_is_central_finite_difference(loss_cls):
    rng = np.random.default_rng(4)
    z, t = batch(loss_cls, 6, 3, np.float64, rng)
    w = rng.uniform(0.1, 2, 6)
    loss = loss_cls()
    loss.forward(z, t, w)
    grad = loss.backward().copy()
    numeric = numerical_gradient(lambda x: loss_cls().forward(x, t, w), z)
    assert np.abs(grad - numeric).max() / np.abs(numeric).max() < 1e-6


@pytest.mark.parametrize("loss_cls", LOSSES)
def test_zero_weight_batch_has_no_loss_and_no_gradient(loss_cls):
    z, t = batch(loss_cls, 4, 3, np.float64, np.random.default_rng(2))
    loss = loss_cls()
    assert loss.forward(z, t, np.zeros(4)) == 0.0
    assert not loss.backward().any()


@pytest.mark.parametrize("bad,match", [(np.array([1.0, -1.0, 1.0]), "non-negative"),
                                       (np.array([1.0, np.nan, 1.0]), "NaN"), (np.ones(4), r"\(3,\)"),
                                       (np.ones((3, 1)), r"\(3,\)"), (np.array(["a", "b", "c"]), "real")])
def test_bad_weights_are_refused(bad, match):
    z, t = batch(fnn.L2Loss, 3, 2, np.float64, np.random.default_rng(0))
    with pytest.raises((ValueError, TypeError), match=match) as info:
        fnn.L2Loss().forward(z, t, bad)
    assert "weights" in str(info.value)


def test_fused_kind_only_for_the_builtin_losses():
    class MyLoss(fnn.SoftmaxCrossEntropy):
        pass
    assert fnn.SoftmaxCrossEntropy().fused_kind(1) == "ce_labels"
    assert fnn.SoftmaxCrossEntropy().fused_kind(2) == "ce_dense"
    assert fnn.SigmoidCrossEntropy().fused_kind(2) == "sigmoid"
    assert fnn.L2Loss().fused_kind(2) == "l2"
    assert fnn.CrossEntropyLoss().fused_kind(2) is None and MyLoss().fused_kind(1) is None


# ------------------------------------------------------------ CrossEntropyLoss takes probabilities (G1, G2)
@pytest.mark.parametrize("pred,match", [
    ([[np.nan, 1.0]], "NaN or infinite"), ([[np.inf, 0.0]], "NaN or infinite"),
    ([[2.0, 0.5]], r"in \[0, 1\].*pred\[0, 0\] is 2.0"), ([[-0.5, 1.5]], r"in \[0, 1\]"),
    ([[1e30, 1e30]], r"in \[0, 1\]"), ([[0.2, 0.3]], "row 0 of pred sums to 0.5"),
    ([[0.5, 0.5], [0.6, 0.6]], "row 1 of pred sums to 1.2")])
@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_refuses_non_probabilities(pred, match, dtype):
    pred = np.array(pred, dtype=dtype)
    with pytest.raises(ValueError, match=match):
        fnn.CrossEntropyLoss().forward(pred, np.zeros(len(pred), np.int64))


@pytest.mark.parametrize("m", [1, 2, 10, 1000])
@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_accepts_softmax_rows(m, dtype):
    """Any SoftMax layer output passes the row-sum check, at every width and dtype."""
    z = np.random.default_rng(m).standard_normal((7, m)).astype(dtype) * 5
    p = fnn.SoftMax().forward(z)
    assert p.dtype == dtype
    assert np.isfinite(fnn.CrossEntropyLoss().forward(p, np.zeros(7, np.int64)))


@pytest.mark.parametrize("loss_cls", [fnn.SoftmaxCrossEntropy, fnn.SigmoidCrossEntropy, fnn.L2Loss])
def test_losses_refuse_nan_predictions(loss_cls):
    target = np.zeros((3, 2)) if loss_cls is not fnn.SoftmaxCrossEntropy else np.array([0, 1, 1])
    with pytest.raises(ValueError, match="NaN or infinite"):
        loss_cls().forward(np.full((3, 2), np.nan), target)


@pytest.mark.parametrize("head", [[], [fnn.ReLU()], [fnn.Identity()], [fnn.Sigmoid()], [fnn.SoftMax(), fnn.ReLU()]],
                         ids=["none", "relu", "identity", "sigmoid", "softmax-then-relu"])
@pytest.mark.parametrize("fused", [False, "auto"])
def test_cross_entropy_needs_a_softmax_head(head, fused):
    X = np.random.default_rng(0).random((40, 4)).astype(np.float32)
    y = (X[:, 0] > .5).astype(int)
    net = fnn.NeuralNetwork([fnn.FullyConnected(4, 2)] + head, loss=fnn.CrossEntropyLoss(), seed=0)
    with pytest.raises(ValueError, match="not SoftMax.*SoftmaxCrossEntropy"):
        net.fit(X, y, epochs=1, verbose=0, fused=fused)
    with pytest.raises(ValueError, match="not SoftMax"):
        net.predict_proba(X[:2])
    ok = fnn.NeuralNetwork([fnn.FullyConnected(4, 2), fnn.SoftMax()], loss=fnn.CrossEntropyLoss(), seed=0)
    assert ok.fit(X, y, epochs=1, verbose=0, fused=fused)["loss"][0] > 0
    np.testing.assert_allclose(ok.predict_proba(X[:2]).sum(1), 1, rtol=1e-6)


# ------------------------------------------------------------ SoftmaxCrossEntropy beyond ±1e4 (G3)
@pytest.mark.parametrize("scale", [1e5, 1e30, 1e300])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("form", ["labels", "dense", "weighted"])
def test_softmax_ce_keeps_log_terms_next_to_huge_logits(scale, dtype, form):
    """log Σ exp(z - max) - (z_t - max): a tie at a huge logit costs log 2, a clear win costs 0."""
    if scale > np.finfo(dtype).max:
        pytest.skip("not representable")
    z = np.array([[scale, scale], [scale, 0.0]], dtype)
    target = np.array([0, 0]) if form != "dense" else np.array([[1.0, 0.0], [1.0, 0.0]], dtype)
    weights = np.array([1.0, 1.0], dtype) if form == "weighted" else None
    loss = fnn.SoftmaxCrossEntropy()
    assert loss.forward(z, target, weights) == pytest.approx(np.log(2) / 2, rel=1e-6)
    np.testing.assert_allclose(loss.backward(), [[-0.25, 0.25], [0.0, 0.0]], atol=1e-7)
