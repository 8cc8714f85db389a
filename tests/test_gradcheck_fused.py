"""gradcheck checks the gradients the fused kernel computes (issue: one engine, item 6): for one batch, in
float64, against central differences — every activation, loss and weight-decay setting."""
import sys

import numpy as np
import pytest

import fastnn as fnn
import fastnn.gradcheck  # noqa: F401 - the module (fastnn.gradcheck is also the function)

gc = sys.modules["fastnn.gradcheck"]

TOL = 1e-6
ACTIVATIONS = {"linear": None, "relu": fnn.ReLU, "sigmoid": fnn.Sigmoid, "tanh": fnn.TanH,
               "leaky_relu": lambda: fnn.LeakyReLU(0.2), "elu": lambda: fnn.ELU(0.7), "silu": fnn.SiLU,
               "gelu": fnn.GELU, "gelu_tanh": lambda: fnn.GELU(approximate="tanh"), "softplus": fnn.Softplus,
               "identity": fnn.Identity, "mish": fnn.Mish}
LOSSES = {
    "softmax-labels": (fnn.SoftmaxCrossEntropy, lambda rng: rng.integers(0, 3, 7)),
    "softmax-soft": (fnn.SoftmaxCrossEntropy, lambda rng: rng.dirichlet(np.ones(3), 7)),
    "sigmoid": (fnn.SigmoidCrossEntropy, lambda rng: rng.integers(0, 2, (7, 3))),
    "l2": (fnn.L2Loss, lambda rng: rng.standard_normal((7, 3))),
}
DECAY = {
    "none": lambda: fnn.SGD(lr=0.1),
    "sgd-weight-decay": lambda: fnn.SGD(lr=0.1, momentum=0.9, weight_decay=0.3),
    "adam-weight-decay": lambda: fnn.Adam(weight_decay=0.05),
    "adamw": lambda: fnn.AdamW(weight_decay=0.1),           # decoupled: not a gradient, so not added
    "sklearn-alpha": lambda: _sklearn(fnn.Adam(), 0.5),
}


def _sklearn(opt, alpha):
    opt._sklearn_alpha = alpha
    return opt


def make(act, loss, opt):
    rng = np.random.default_rng(3)
    layers = [fnn.FullyConnected(4, 6, dtype=np.float64)]
    if act is not None:
        layers.append(act())
    layers.append(fnn.FullyConnected(6, 3, dtype=np.float64))
    net = fnn.NeuralNetwork(layers, loss=loss(), optimizer=opt, seed=1)
    return net, rng.standard_normal((7, 4))


@pytest.mark.parametrize("decay", sorted(DECAY))
@pytest.mark.parametrize("loss", sorted(LOSSES))
@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
def test_fused_gradients_match_central_differences(act, loss, decay):
    loss_cls, target = LOSSES[loss]
    net, x = make(ACTIVATIONS[act], loss_cls, DECAY[decay]())
    before = [p.copy() for p in net.params]
    report = fnn.gradcheck(net, x, target(np.random.default_rng(5)))
    fused = {k: v for k, v in report.items() if k.startswith("fused")}
    assert len(fused) == 4, report            # both layers' weights and biases, from the fused kernel
    assert report.passed(TOL), str(report)
    assert all(np.array_equal(a, b) for a, b in zip(before, net.params))   # the network is untouched


def test_a_wrong_fused_gradient_is_caught(monkeypatch):
    """The check is sensitive: a fused step whose gradient carries a decay the objective lacks fails it."""
    net, x = make(fnn.TanH, fnn.L2Loss, fnn.SGD(lr=0.1))
    monkeypatch.setattr(gc, "SGD", lambda lr, weight_decay: fnn.SGD(lr=lr, weight_decay=weight_decay + 0.5))
    report = fnn.gradcheck(net, x, np.zeros((7, 3)))
    assert not report.passed(TOL)
    assert max(v for k, v in report.items() if k.startswith("fused")) > 1e-3


def test_fused_option():
    net, x = make(fnn.ReLU, fnn.SoftmaxCrossEntropy, fnn.SGD(lr=0.1))
    assert not any(k.startswith("fused") for k in fnn.gradcheck(net, x, fused=False))
    custom = fnn.NeuralNetwork([fnn.FullyConnected(4, 3, dtype=np.float64), fnn.SoftMax()],
                               loss=fnn.CrossEntropyLoss())
    assert not any(k.startswith("fused") for k in fnn.gradcheck(custom, x))
    with pytest.raises(ValueError, match="fused=True"):
        fnn.gradcheck(custom, x, fused=True)
