"""The two classroom demonstrations behind ``fastnn demo``.

* ``xor_demo``: Rosenblatt's perceptron cannot represent XOR (no line separates the two classes), while a
  network with one small hidden layer learns it exactly.
* ``approx_demo``: universal approximation — one hidden layer of N sigmoid units fits sin(x), |x| and a
  smooth bump on [-3, 3], and the error shrinks as N grows.

Both are deterministic (seeded) and return plain results; printing and plotting are the caller's job.
"""
import numpy as np

from .data import make_xor
from .layers import FullyConnected, Sigmoid, TanH
from .losses import L2Loss, SoftmaxCrossEntropy
from .network import NeuralNetwork
from .optimizers import Adam
from .perceptron import Perceptron

__all__ = ["xor_demo", "approx_demo", "APPROX_FUNCTIONS", "APPROX_UNITS", "bump"]


# ------------------------------------------------------------------------------------------------ XOR

def xor_demo(hidden=4, epochs=500, seed=0):
    """Train a Perceptron and a 2-``hidden``-2 tanh network on the 4 XOR points.

    Returns a dict: ``X`` (4, 2), ``y`` (4,), ``perceptron`` and ``network`` (the fitted models),
    ``perceptron_pred`` / ``network_pred`` (4,) and ``perceptron_accuracy`` / ``network_accuracy``.
    """
    X, y = make_xor()
    perceptron = Perceptron(2, lr=1.0, seed=seed).fit(X, y, epochs=100)
    net = NeuralNetwork([FullyConnected(2, hidden, init="xavier"), TanH(),
                         FullyConnected(hidden, 2, init="xavier")],
                        loss=SoftmaxCrossEntropy(), optimizer=Adam(lr=0.05), seed=seed)
    net.fit(X, y, epochs=epochs, batch_size=4, verbose=0)
    p_pred, n_pred = perceptron.predict(X), net.predict(X)
    return {"X": X, "y": y, "perceptron": perceptron, "network": net,
            "perceptron_pred": p_pred, "network_pred": n_pred,
            "perceptron_accuracy": float(np.mean(p_pred == y)), "network_accuracy": float(np.mean(n_pred == y)),
            "hidden": hidden}


# -------------------------------------------------------------------------------- approximation

def bump(x):
    """The smooth (C-infinity) bump exp(1 - 1 / (1 - x²)) for |x| < 1, 0 elsewhere; peak 1 at x = 0."""
    x = np.asarray(x, dtype=np.float64)
    out = np.zeros_like(x)
    inside = np.abs(x) < 1
    out[inside] = np.exp(1.0 - 1.0 / (1.0 - x[inside] ** 2))
    return out


APPROX_FUNCTIONS = {"sin(x)": np.sin, "|x|": np.abs, "bump(x)": bump}
APPROX_UNITS = (1, 2, 4, 8, 16, 32)


def _solve_output_layer(net, x, y):
    """Least-squares optimum of the (linear) output layer for the current hidden layer."""
    hidden = net.layers[1].forward(net.layers[0].forward(x)).copy()
    design = np.hstack([hidden, np.ones((len(x), 1))])
    sol = np.linalg.lstsq(design, y, rcond=None)[0]
    net.layers[2].weights = sol[:-1]
    net.layers[2].bias = sol[-1]


def fit_sigmoid_net(x, y, n_units, epochs=(1000, 1000), seed=0, low=-3.0, high=3.0):
    """A 1-``n_units``-1 sigmoid network fitted to y = f(x) (both (n, 1) float64).

    The hidden units start as the constructive proof's evenly spaced soft steps over [low, high]; the
    network is then trained with Adam on the L2 loss (lr 0.01, then 0.001, ``epochs`` each), and the
    linear output layer is finally solved exactly by least squares.
    """
    net = NeuralNetwork([FullyConnected(1, n_units, dtype=np.float64), Sigmoid(),
                         FullyConnected(n_units, 1, dtype=np.float64)],
                        loss=L2Loss(), optimizer=Adam(lr=0.01), seed=seed)
    spacing = (high - low) / n_units
    centres = low + spacing * (np.arange(n_units) + 0.5)
    slope = 2.0 / spacing
    net.layers[0].weights = np.full((1, n_units), slope)
    net.layers[0].bias = -slope * centres
    _solve_output_layer(net, x, y)
    for lr, n_epochs in zip((0.01, 0.001), epochs):
        net.optimizer.lr = lr
        net.fit(x, y, epochs=n_epochs, batch_size=16, verbose=0, seed=seed)
    _solve_output_layer(net, x, y)
    return net


def approx_demo(units=APPROX_UNITS, functions=None, n_train=201, n_eval=1201, epochs=(1000, 1000), seed=0):
    """Fit every function with every hidden size; the max abs error is measured on a finer grid.

    Returns a dict: ``x`` (n_eval,) the evaluation grid on [-3, 3], ``targets`` {name: f(x)},
    ``fits`` {name: {"N=4": network output on x, ...}}, ``errors`` {name: {N: max |f - net|}}.
    """
    functions = APPROX_FUNCTIONS if functions is None else functions
    x_train = np.linspace(-3.0, 3.0, n_train).reshape(-1, 1)
    x_eval = np.linspace(-3.0, 3.0, n_eval).reshape(-1, 1)
    targets, fits, errors = {}, {}, {}
    for name, f in functions.items():
        targets[name] = f(x_eval).reshape(-1)
        fits[name], errors[name] = {}, {}
        for n in units:
            net = fit_sigmoid_net(x_train, f(x_train), n, epochs=epochs, seed=seed)
            out = net.predict(x_eval).reshape(-1)
            fits[name][f"N={n}"] = out
            errors[name][n] = float(np.abs(out - targets[name]).max())
    return {"x": x_eval.reshape(-1), "targets": targets, "fits": fits, "errors": errors, "units": tuple(units)}
