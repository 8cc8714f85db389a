"""The peers of the comparison, by name. Each lives in its own module with the same interface (base.py);
``load(name)`` imports only that peer's module, so a missing library affects only its own peer.

    fastnn        fastnn's default path: net.fit (the fused whole-epoch kernel where the network allows it)
    fastnn-layer  fastnn forced onto the general per-layer path (fused=False)
    fastnn-1t     fastnn's default path with fastnn.set_num_threads(1) (not in the default set)
    torch-1t      PyTorch, torch.set_num_threads(1)
    torch-all     PyTorch, torch.set_num_threads(all cores)
    jax           JAX, a jit-compiled train step (manual SGD or Adam, no optax)
    sklearn       scikit-learn MLPClassifier(solver="sgd" or "adam"), one partial_fit per epoch
    numpy         a textbook NumPy MLP + SGD or Adam (numpy_peer.py)
Every peer trains with the cell's optimizer (matrix.Cell.optimizer, hyperparameters in matrix.OPTIMIZERS).
"""
import importlib
import os


def _cores():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


CORES = _cores()

#: name -> (module, options, label)
PEERS = {
    "fastnn": ("fastnn_peer", {"fused": "auto"}, "fastnn (default path)"),
    "fastnn-layer": ("fastnn_peer", {"fused": False}, "fastnn per-layer path (fused=False)"),
    "fastnn-1t": ("fastnn_peer", {"fused": "auto", "threads": 1}, "fastnn, 1 thread"),
    "torch-1t": ("torch_peer", {"threads": 1}, "PyTorch, 1 thread"),
    "torch-all": ("torch_peer", {"threads": CORES}, f"PyTorch, {CORES} threads"),
    "jax": ("jax_peer", {}, "JAX, jit step"),
    "sklearn": ("sklearn_peer", {}, "scikit-learn MLPClassifier"),
    "numpy": ("numpy_peer", {}, "NumPy, textbook"),
}
DEFAULT = ["fastnn", "fastnn-layer", "torch-1t", "torch-all", "jax", "sklearn", "numpy"]
FASTNN = {"fastnn", "fastnn-layer", "fastnn-1t"}
TORCH = {"torch-1t", "torch-all"}


def module(name):
    if name not in PEERS:
        raise ValueError(f"unknown peer {name!r}; peers: {', '.join(PEERS)}")
    return importlib.import_module(f"{__name__}.{PEERS[name][0]}")


def load(name):
    """(Peer class, options, label) of the peer ``name``."""
    mod = module(name)
    _, options, label = PEERS[name]
    return mod.Peer, dict(options), label


def build(name, cell, X, y, seed=0):
    """A ready peer instance; raises RuntimeError with the reason when the peer is unavailable."""
    cls, options, _ = load(name)
    ok, why = cls.available()
    if not ok:
        raise RuntimeError(f"peer {name} unavailable: {why}")
    return cls(cell, X, y, seed=seed, **options)
