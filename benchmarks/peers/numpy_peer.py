"""The hand-written NumPy network: a clean, textbook MLP with softmax cross-entropy and plain SGD or Adam.

Written from the formulas, the way a course would, with no buffers and no fusing (every step allocates its
temporaries). Convention as in fastnn: a batch is (batch, features), a layer is z = a @ W + b with W of
shape (in, out); ReLU after every hidden layer; the loss is the batch mean, so dL/dlogits =
(softmax - onehot) / batch. Works in the dtype of the parameters (float32 in the benchmark; the smoke test
also checks its gradients against fastnn's in float64). Adam (cells with ``optimizer="adam"``) is
``adam_step``: torch.optim.Adam's update, written out (and tested equal to fastnn's Adam step).
"""
import time

import numpy as np

from .. import matrix
from .base import PeerBase, blas_info, softmax_ce


def init_params(sizes, rng, dtype=np.float32):
    """He-normal weights (in, out) and zero biases, one (W, b) pair per layer."""
    params = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        w = (rng.standard_normal((n_in, n_out)) * np.sqrt(2.0 / n_in)).astype(dtype)
        params.append((w, np.zeros(n_out, dtype)))
    return params


def forward(params, x):
    """The activations [x, a_1, ..., a_{L-1}] (inputs of every layer) and the logits."""
    acts = [x]
    for w, b in params[:-1]:
        acts.append(np.maximum(acts[-1] @ w + b, 0))
    w, b = params[-1]
    return acts, acts[-1] @ w + b


def loss_and_grads(params, x, labels):
    """(mean softmax cross-entropy, [(dW, db)] per layer) for the batch x (n, d), labels (n,) int."""
    n = x.shape[0]
    acts, logits = forward(params, x)
    z = logits - logits.max(axis=1, keepdims=True)          # log-sum-exp: stable for any logits
    e = np.exp(z)
    s = e.sum(axis=1, keepdims=True)
    rows = np.arange(n)
    loss = float(np.mean(np.log(s[:, 0]) - z[rows, labels]))
    d = e / s                                               # softmax
    d[rows, labels] -= 1
    d /= n                                                  # dL/dlogits = (softmax - onehot) / n
    grads = [None] * len(params)
    for k in range(len(params) - 1, -1, -1):
        w, _ = params[k]
        grads[k] = (acts[k].T @ d, d.sum(axis=0))
        if k > 0:
            d = (d @ w.T) * (acts[k] > 0)                   # through the ReLU: its output > 0
    return loss, grads


def sgd_step(params, grads, lr):
    """p -= lr * g for every weight and bias, in place."""
    for (w, b), (dw, db) in zip(params, grads):
        w -= lr * dw
        b -= lr * db


def adam_init(params):
    """Adam's state: zero first and second moments shaped like every weight and bias, and the step count 0."""
    return {"m": [(np.zeros_like(w), np.zeros_like(b)) for w, b in params],
            "v": [(np.zeros_like(w), np.zeros_like(b)) for w, b in params], "t": 0}


def adam_step(params, grads, state, lr, beta1, beta2, eps):
    """One Adam step in place (Kingma & Ba, bias-corrected as torch.optim.Adam):
    m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g²;  p -= lr / (1 - b1^t) · m / (sqrt(v) / sqrt(1 - b2^t) + eps)."""
    state["t"] += 1
    t = state["t"]
    dtype = params[0][0].dtype.type
    step_size = dtype(lr / (1.0 - beta1 ** t))
    sqrt_bc2 = dtype(np.sqrt(1.0 - beta2 ** t))
    b1, b2, eps = dtype(beta1), dtype(beta2), dtype(eps)
    for layer, grad, m, v in zip(params, grads, state["m"], state["v"]):
        for p, g, m_, v_ in zip(layer, grad, m, v):
            m_ *= b1
            m_ += (1 - b1) * g
            v_ *= b2
            v_ += (1 - b2) * g * g
            p -= step_size * m_ / (np.sqrt(v_) / sqrt_bc2 + eps)


class Peer(PeerBase):
    name = "numpy"
    label = "NumPy (textbook)"

    def __init__(self, cell, X, y, seed=0):
        super().__init__(cell, X, y, seed=seed)
        self.rng = np.random.default_rng(seed)
        self.params = init_params(cell.sizes, self.rng, matrix.DTYPE)
        self.hyper = cell.hyper
        self.lr = matrix.DTYPE(self.hyper["lr"])
        self.adam = adam_init(self.params) if cell.optimizer == "adam" else None

    def epoch(self):
        X, y, b, params, lr, adam, h = self.X, self.y, self.batch, self.params, self.lr, self.adam, self.hyper
        start = time.perf_counter()
        perm = self.rng.permutation(self.n)
        for i in range(0, self.n, b):
            idx = perm[i:i + b]
            _, grads = loss_and_grads(params, X[idx], y[idx])
            if adam is None:
                sgd_step(params, grads, lr)
            else:
                adam_step(params, grads, adam, h["lr"], h["beta1"], h["beta2"], h["eps"])
        return time.perf_counter() - start

    def loss(self):
        rows = self.eval_rows
        _, logits = forward(self.params, self.X[:rows])
        return softmax_ce(logits, self.y[:rows])

    def info(self):
        return {"numpy": np.__version__, "optimizer": self.cell.optimizer, "blas": blas_info()}
