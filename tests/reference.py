"""Plain NumPy reference implementations (float64 math) that the fastnn kernels and layers are checked against.

Everything here is written from the textbook formulas, independently of fastnn: no Numba, no buffers,
no fusing. Inputs of any float dtype are promoted to float64; results are float64 (or Python floats).
Convention as in fastnn: a batch is (batch, features) and a dense layer is y = x @ W + b with W (in, out).
"""
import numpy as np


def f64(a):
    return np.asarray(a, dtype=np.float64)


# -- dense --------------------------------------------------------------------------------------------
def dense_forward(x, w, b):
    """y = x @ w + b."""
    return f64(x) @ f64(w) + f64(b)


def dense_backward(x, w, dy):
    """(dx, dw, db) for y = x @ w + b: dx = dy wᵀ, dw = xᵀ dy, db = Σ_batch dy."""
    x, w, dy = f64(x), f64(w), f64(dy)
    return dy @ w.T, x.T @ dy, dy.sum(axis=0)


# -- activations ----------------------------------------------------------------------------------------
def relu(z):
    """max(z, 0); NaN stays NaN."""
    return np.maximum(f64(z), 0.0)


def relu_backward(y, dy):
    """From the output y = relu(z): dz = dy · [y > 0]."""
    return f64(dy) * (f64(y) > 0)


def sigmoid(z):
    """1 / (1 + e^{-z}) without overflow for either sign."""
    z = f64(z)
    out = np.empty_like(z)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    e = np.exp(z[~pos])
    out[~pos] = e / (1.0 + e)
    return out


def sigmoid_backward(y, dy):
    y = f64(y)
    return f64(dy) * y * (1.0 - y)


def tanh(z):
    return np.tanh(f64(z))


def tanh_backward(y, dy):
    y = f64(y)
    return f64(dy) * (1.0 - y * y)


def identity(z):
    return f64(z)


def identity_backward(y, dy):
    return f64(dy)


ACTIVATIONS = {"identity": (identity, identity_backward), "relu": (relu, relu_backward),
               "sigmoid": (sigmoid, sigmoid_backward), "tanh": (tanh, tanh_backward)}


# -- softmax and losses ------------------------------------------------------------------------------------
def logsumexp(z):
    z = f64(z)
    zmax = z.max(axis=1, keepdims=True)
    return (zmax + np.log(np.exp(z - zmax).sum(axis=1, keepdims=True)))[:, 0]


def softmax(z):
    z = f64(z)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def softmax_backward(y, dy):
    """dx = J_softmaxᵀ dy row by row, from the output y: dx = y (dy - Σ dy·y)."""
    y, dy = f64(y), f64(dy)
    return y * (dy - (dy * y).sum(axis=1, keepdims=True))


def one_hot(labels, classes):
    out = np.zeros((len(labels), classes))
    out[np.arange(len(labels)), np.asarray(labels)] = 1.0
    return out


def softmax_ce_labels(z, labels):
    """(mean loss, dL/dz) for logits z and int labels: loss_i = lse(z_i) - z_i,label."""
    z = f64(z)
    n = z.shape[0]
    labels = np.asarray(labels)
    loss = float(np.mean(logsumexp(z) - z[np.arange(n), labels]))
    grad = (softmax(z) - one_hot(labels, z.shape[1])) / n
    return loss, grad


def softmax_ce_dense(z, t):
    """(mean loss, dL/dz) against a target distribution t (one-hot or soft, rows need not sum to 1).

    loss_i = Σ_j t_ij (lse(z_i) - z_ij); dL/dz_ij = (Σ_k t_ik · softmax_ij - t_ij) / batch.
    """
    z, t = f64(z), f64(t)
    n = z.shape[0]
    loss = float(np.mean((t * (logsumexp(z)[:, None] - z)).sum(axis=1)))
    grad = (t.sum(axis=1, keepdims=True) * softmax(z) - t) / n
    return loss, grad


def cross_entropy_labels(p, labels):
    """(mean loss, dL/dp) for probabilities p and int labels: mean -log p_label."""
    p = f64(p)
    n = p.shape[0]
    labels = np.asarray(labels)
    rows = np.arange(n)
    loss = float(np.mean(-np.log(p[rows, labels])))
    grad = np.zeros_like(p)
    grad[rows, labels] = -1.0 / (n * p[rows, labels])
    return loss, grad


def cross_entropy_dense(p, t):
    """(mean loss, dL/dp) for probabilities p and targets t: mean -Σ t log p."""
    p, t = f64(p), f64(t)
    n = p.shape[0]
    loss = float(np.mean(-(t * np.log(p)).sum(axis=1)))
    return loss, -t / (n * p)


def sigmoid_ce(z, t, w=None):
    """(loss, dL/dz) of the sigmoid cross-entropy from logits: per row Σ_j [max(z,0) - z t + log1p(exp(-|z|))],
    the mean over rows, or with sample weights w: Σ w_i l_i / Σ w_i and dL/dz_i = w_i (σ(z_i) - t_i) / Σ w."""
    z, t = f64(z), f64(t)
    rows = (np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))).sum(axis=1)
    p = np.exp(-np.logaddexp(0, -z))
    w = np.ones(len(z)) if w is None else f64(w)
    return float((w * rows).sum() / w.sum()), w[:, None] * (p - t) / w.sum()


def l2(pred, target):
    """(0.5 ||pred - target||² summed over outputs and averaged over the batch, its gradient)."""
    d = f64(pred) - f64(target)
    n = d.shape[0]
    return float(0.5 * (d * d).sum() / n), d / n


# -- optimizers (torch.optim formulas) --------------------------------------------------------------------
def sgd(p, g, lr):
    return f64(p) - lr * f64(g)


def sgd_momentum(p, g, v, lr, momentum):
    """(p, v) after v = μ v + g; p -= lr v (torch.optim.SGD, dampening 0, no Nesterov)."""
    v = momentum * f64(v) + f64(g)
    return f64(p) - lr * v, v


def adam(p, g, m, v, lr, beta1, beta2, eps, step):
    """(p, m, v) after one Adam step (``step`` counts from 1), bias-corrected as torch.optim.Adam:
    p -= lr / (1 - β1^t) · m / (sqrt(v) / sqrt(1 - β2^t) + eps)."""
    g = f64(g)
    m = beta1 * f64(m) + (1 - beta1) * g
    v = beta2 * f64(v) + (1 - beta2) * g * g
    step_size = lr / (1 - beta1 ** step)
    denom = np.sqrt(v) / np.sqrt(1 - beta2 ** step) + eps
    return f64(p) - step_size * m / denom, m, v


# -- whole networks --------------------------------------------------------------------------------------
def mlp_forward(x, weights, biases, activations):
    """Forward through dense layers each followed by activations[k] (a name in ACTIVATIONS).

    Returns the list of layer inputs/outputs [a0 = x, a1, ..., aL]."""
    acts = [f64(x)]
    for w, b, name in zip(weights, biases, activations):
        acts.append(ACTIVATIONS[name][0](dense_forward(acts[-1], w, b)))
    return acts


def mlp_backward(acts, weights, activations, dout):
    """Gradients (dW list, db list, dx) of an MLP from dL/d(output)."""
    dws, dbs = [None] * len(weights), [None] * len(weights)
    d = f64(dout)
    for k in range(len(weights) - 1, -1, -1):
        d = ACTIVATIONS[activations[k]][1](acts[k + 1], d)
        d, dws[k], dbs[k] = dense_backward(acts[k], weights[k], d)
    return dws, dbs, d


# -- optimizers with weight decay, Nesterov, AdamW (torch.optim formulas) ----------------------------------
def sgd_torch(p, g, v, lr, momentum=0.0, weight_decay=0.0, nesterov=False):
    """(p, v) after one torch.optim.SGD step (dampening 0): g += wd p; v = μ v + g;
    g = g + μ v (Nesterov) or v; p -= lr g. v is returned unchanged when momentum is 0."""
    p, g = f64(p), f64(g)
    if weight_decay:
        g = g + weight_decay * p
    if momentum:
        v = momentum * f64(v) + g
        g = g + momentum * v if nesterov else v
    return p - lr * g, v


def adam_torch(p, g, m, v, lr, beta1, beta2, eps, step, weight_decay=0.0, decoupled=False):
    """(p, m, v) after one torch.optim.Adam step (coupled L2: g += wd p) or, with ``decoupled``, one
    torch.optim.AdamW step (p *= 1 - lr wd first)."""
    p, g = f64(p), f64(g)
    if weight_decay and decoupled:
        p = p * (1 - lr * weight_decay)
    elif weight_decay:
        g = g + weight_decay * p
    return adam(p, g, m, v, lr, beta1, beta2, eps, step)


# -- scikit-learn's MLP formulas (sklearn/neural_network/_multilayer_perceptron.py, _stochastic_optimizers.py)
def sklearn_adam(p, g, m, v, lr, beta1, beta2, eps, step):
    """(p, m, v) after scikit-learn's AdamOptimizer step t: epsilon added to sqrt(v), outside the bias
    correction, which goes into the rate: p += -lr·sqrt(1 - β2^t)/(1 - β1^t) · m / (sqrt(v) + eps)."""
    g = f64(g)
    m = beta1 * f64(m) + (1 - beta1) * g
    v = beta2 * f64(v) + (1 - beta2) * (g ** 2)
    rate = lr * np.sqrt(1 - beta2 ** step) / (1 - beta1 ** step)
    return f64(p) + (-rate * m / (np.sqrt(v) + eps)), m, v


def sklearn_backprop(x, labels, weights, biases, hidden, alpha):
    """(loss, weight gradients, bias gradients) of scikit-learn's MLPClassifier._backprop for a softmax
    output and class ids: loss = mean cross-entropy + 0.5·alpha·Σ||W||² / n; dW = (Aᵀδ + alpha W) / n,
    db = mean δ, with δ = probabilities - one-hot at the output. ``hidden``: the hidden layers'
    activation name (the output layer has none)."""
    names = [hidden] * (len(weights) - 1) + ["identity"]
    acts = mlp_forward(x, weights, biases, names)
    n = acts[0].shape[0]
    loss = softmax_ce_labels(acts[-1], labels)[0]
    loss += 0.5 * alpha * sum(float(np.dot(f64(w).ravel(), f64(w).ravel())) for w in weights) / n
    delta = softmax(acts[-1]) - one_hot(labels, acts[-1].shape[1])
    dws, dbs = [None] * len(weights), [None] * len(weights)
    for k in range(len(weights) - 1, -1, -1):
        dws[k] = (acts[k].T @ delta + alpha * f64(weights[k])) / n
        dbs[k] = delta.mean(axis=0)
        if k > 0:
            delta = ACTIVATIONS[names[k - 1]][1](acts[k], delta @ f64(weights[k]).T)
    return loss, dws, dbs
