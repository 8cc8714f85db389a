"""The hand-written NumPy network: a clean, textbook MLP with softmax cross-entropy and plain SGD.

Written from the formulas, the way a course would, with no buffers and no fusing (every step allocates its
temporaries). Convention as in fastnn: a batch is (batch, features), a layer is z = a @ W + b with W of
shape (in, out); ReLU after every hidden layer; the loss is the batch mean, so dL/dlogits =
(softmax - onehot) / batch. Works in the dtype of the parameters (float32 in the benchmark; the smoke test
also checks its gradients against fastnn's in float64).
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


class Peer(PeerBase):
    name = "numpy"
    label = "NumPy (textbook)"

    def __init__(self, cell, X, y, seed=0):
        super().__init__(cell, X, y, seed=seed)
        self.rng = np.random.default_rng(seed)
        self.params = init_params(cell.sizes, self.rng, matrix.DTYPE)
        self.lr = matrix.DTYPE(matrix.LR)

    def epoch(self):
        X, y, b, params, lr = self.X, self.y, self.batch, self.params, self.lr
        start = time.perf_counter()
        perm = self.rng.permutation(self.n)
        for i in range(0, self.n, b):
            idx = perm[i:i + b]
            _, grads = loss_and_grads(params, X[idx], y[idx])
            sgd_step(params, grads, lr)
        return time.perf_counter() - start

    def loss(self):
        rows = self.eval_rows
        _, logits = forward(self.params, self.X[:rows])
        return softmax_ce(logits, self.y[:rows])

    def info(self):
        return {"numpy": np.__version__, "blas": blas_info()}
