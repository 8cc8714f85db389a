"""The interface every peer implements, and helpers they share.

A peer is a class ``Peer(cell, X, y, seed=0, **options)`` that builds its model for a matrix cell (float32,
ReLU hidden layers, softmax cross-entropy, the cell's optimizer: ``cell.optimizer`` with the hyperparameters
``cell.hyper`` — plain SGD lr=0.01, or Adam lr=0.001, betas 0.9/0.999, eps=1e-8) over the data it is given,
and then

* ``epoch()``     trains one epoch (a fresh shuffle, every mini-batch, one optimizer step each) and returns the
                  elapsed seconds of that epoch (``time.perf_counter``), nothing outside it;
* ``epochs(k)``   trains k epochs and returns their k durations (a peer may do this in one call, as fastnn
                  does through its Trainer's history["time"]);
* ``loss()``      the mean loss on the first ``matrix.EVAL_ROWS`` samples with the current weights (a sanity
                  check, never timed);
* ``info()``      a dict of what the peer runs with (versions, threads, BLAS).

``Peer.available()`` is a classmethod returning (True, "") or (False, why) without building anything.
The data are a whole number of batches (matrix.py guarantees it for the benchmark cells).
"""
import time

import numpy as np

from .. import matrix


class PeerBase:
    name = "?"
    label = "?"
    #: the optimizers (matrix.OPTIMIZERS keys) this peer implements
    optimizers = ("sgd", "adam")

    def __init__(self, cell, X, y, seed=0, **options):
        if X.dtype != matrix.DTYPE or y.dtype != np.int64:
            raise TypeError(f"peers take float32 X and int64 y, got {X.dtype} and {y.dtype}")
        if len(X) % cell.batch:
            raise ValueError(f"n = {len(X)} is not a whole number of batches of {cell.batch}")
        if cell.optimizer not in self.optimizers:
            raise ValueError(f"peer {self.name} has no {cell.optimizer!r} optimizer (cell {cell.name})")
        self.cell, self.X, self.y, self.seed = cell, X, y, seed
        self.n, self.batch = len(X), cell.batch
        self.eval_rows = min(len(X), matrix.EVAL_ROWS)

    @classmethod
    def available(cls):
        return True, ""

    def epoch(self):
        raise NotImplementedError

    def epochs(self, k):
        return [self.epoch() for _ in range(k)]

    def loss(self):
        raise NotImplementedError

    def info(self):
        return {}


def softmax_ce(logits, labels):
    """Mean softmax cross-entropy from logits (float64 math), for ``loss()``."""
    z = np.asarray(logits, np.float64)
    z = z - z.max(axis=1, keepdims=True)
    lse = np.log(np.exp(z).sum(axis=1))
    return float(np.mean(lse - z[np.arange(len(z)), labels]))


def blas_info():
    """The BLAS libraries loaded in this process, as threadpoolctl sees them (architecture, threads)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    return [{k: d.get(k) for k in ("internal_api", "prefix", "version", "architecture", "num_threads",
                                    "threading_layer", "filepath")} for d in threadpool_info()]


class Stopwatch:
    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start
