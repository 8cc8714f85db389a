"""JAX on the CPU: a jit-compiled train step with a manual SGD or Adam update (no optax).

The data live on the device once; each epoch puts one permutation on the device, and every step gathers
its mini-batch inside the compiled step (``dynamic_slice`` of the permutation, then ``take``), computes
``value_and_grad`` of the mean softmax cross-entropy and returns the updated state (donated): for SGD the
parameters ``p - lr * g``; for Adam (cells with ``optimizer="adam"``) the parameters, both moments and the
step count, with torch.optim.Adam's update (bias-corrected, eps outside the square root):
    m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g²;  p -= lr / (1 - b1^t) · m / (sqrt(v) / sqrt(1 - b2^t) + eps).
(optax.adam computes the same; writing it out keeps JAX's only dependency jax itself.) Steps are dispatched
asynchronously; the epoch ends with ``block_until_ready``. Compilation happens in the first (warm-up)
epoch; every batch has one shape, so there is no recompilation.
"""
import time

import numpy as np

from .. import matrix
from .base import PeerBase, softmax_ce


class Peer(PeerBase):
    name = "jax"
    label = "JAX"

    @classmethod
    def available(cls):
        try:
            import jax  # noqa: F401
            import jaxlib  # noqa: F401
        except ImportError as exc:
            return False, f"jax not installed ({exc}); pip install jax jaxlib"
        return True, ""

    def __init__(self, cell, X, y, seed=0):
        super().__init__(cell, X, y, seed=seed)
        import warnings

        import jax
        import jax.numpy as jnp
        warnings.filterwarnings("ignore", message=".*donated buffers.*")
        self.jax = jax
        rng = np.random.default_rng(seed)
        params = []
        for n_in, n_out in cell.shapes:       # He-normal weights, zero biases
            w = (rng.standard_normal((n_in, n_out)) * np.sqrt(2.0 / n_in)).astype(matrix.DTYPE)
            params.append((jnp.asarray(w), jnp.zeros(n_out, jnp.float32)))
        self.adam = cell.optimizer == "adam"
        if self.adam:     # the state: (params, first moments, second moments, step count t as float32)
            zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
            self.state = (params, zeros, jax.tree_util.tree_map(jnp.zeros_like, params), jnp.float32(0))
        else:
            self.state = params
        self.Xd = jnp.asarray(X)
        self.yd = jnp.asarray(y.astype(np.int32))
        self.rng = rng
        hyper = cell.hyper
        b, lr = cell.batch, np.float32(hyper["lr"])

        def logits_of(params, x):
            h = x
            for w, bias in params[:-1]:
                h = jax.nn.relu(h @ w + bias)
            w, bias = params[-1]
            return h @ w + bias

        def loss_of(params, x, labels):
            logp = jax.nn.log_softmax(logits_of(params, x))
            return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=1))

        def grads_of(params, X, Y, perm, start):
            idx = jax.lax.dynamic_slice_in_dim(perm, start, b)
            return jax.value_and_grad(loss_of)(params, jnp.take(X, idx, axis=0), jnp.take(Y, idx, axis=0))

        def sgd_step(params, X, Y, perm, start):
            loss, grads = grads_of(params, X, Y, perm, start)
            return jax.tree_util.tree_map(lambda p, g: p - lr * g, params, grads), loss

        def adam_step(state, X, Y, perm, start):
            params, m, v, t = state
            loss, grads = grads_of(params, X, Y, perm, start)
            b1, b2, eps = (np.float32(hyper[k]) for k in ("beta1", "beta2", "eps"))
            tmap = jax.tree_util.tree_map
            t = t + 1
            m = tmap(lambda m_, g: b1 * m_ + (1 - b1) * g, m, grads)
            v = tmap(lambda v_, g: b2 * v_ + (1 - b2) * g * g, v, grads)
            step_size = lr / (1 - b1 ** t)
            sqrt_bc2 = jnp.sqrt(1 - b2 ** t)
            params = tmap(lambda p, m_, v_: p - step_size * m_ / (jnp.sqrt(v_) / sqrt_bc2 + eps), params, m, v)
            return (params, m, v, t), loss

        self._step = jax.jit(adam_step if self.adam else sgd_step, donate_argnums=0)
        self._logits = jax.jit(logits_of)
        self._starts = [np.int32(s) for s in range(0, self.n, b)]

    def epoch(self):
        jnp, step = self.jax.numpy, self._step
        Xd, yd, state = self.Xd, self.yd, self.state
        start = time.perf_counter()
        perm = jnp.asarray(self.rng.permutation(self.n).astype(np.int32))
        loss = None
        for s in self._starts:
            state, loss = step(state, Xd, yd, perm, s)
        self.jax.block_until_ready((state, loss))
        elapsed = time.perf_counter() - start
        self.state = state
        return elapsed

    @property
    def params(self):
        return self.state[0] if self.adam else self.state

    def loss(self):
        logits = np.asarray(self._logits(self.params, self.Xd[:self.eval_rows]))
        return softmax_ce(logits, self.y[:self.eval_rows])

    def info(self):
        import jaxlib
        return {"jax": self.jax.__version__, "jaxlib": jaxlib.__version__,
                "devices": [str(d) for d in self.jax.devices()], "optimizer": self.cell.optimizer}
