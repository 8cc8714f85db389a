"""The peers of the comparison, by name. Each lives in its own module with the same interface (base.py);
``load(name)`` imports only that peer's module, so a missing library affects only its own peer.

    fastnn        fastnn's default path: net.fit (the fused whole-epoch kernel where the network allows it)
    fastnn-layer  fastnn forced onto the general per-layer path (fused=False)
    fastnn-1t     fastnn's default path with fastnn.set_num_threads(1) (not in the default set)
    fastnn-call   fastnn's default path as a Keras-style loop uses it: one ``net.fit(X, y, epochs=1)`` call per
                  epoch, each timed whole (input checks, set-up, the call's Python) — issue 18's "a run that
                  calls fit once per epoch" (not in the default set)
    torch-1t      PyTorch, torch.set_num_threads(1)
    torch-all     PyTorch, torch.set_num_threads(all cores)
    jax           JAX, a jit-compiled train step (manual SGD or Adam, no optax)
    sklearn       scikit-learn MLPClassifier(solver="sgd" or "adam"), one partial_fit per epoch
    numpy         a textbook NumPy MLP + SGD or Adam (numpy_peer.py)
    fastnn@Nt, fastnn-layer@Nt, fastnn-call@Nt
                  fastnn (either path, or called per epoch) with fastnn.set_num_threads(N) in the peer process, for any N >= 1
                  (compare.py --threads adds them; ``spec`` builds them from the name)
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
    "fastnn-call": ("fastnn_peer", {"fused": "auto", "per_call": True}, "fastnn, one fit(epochs=1) call per epoch"),
    "torch-1t": ("torch_peer", {"threads": 1}, "PyTorch, 1 thread"),
    "torch-all": ("torch_peer", {"threads": CORES}, f"PyTorch, {CORES} threads"),
    "jax": ("jax_peer", {}, "JAX, jit step"),
    "sklearn": ("sklearn_peer", {}, "scikit-learn MLPClassifier"),
    "numpy": ("numpy_peer", {}, "NumPy, textbook"),
}
DEFAULT = ["fastnn", "fastnn-layer", "torch-1t", "torch-all", "jax", "sklearn", "numpy"]
FASTNN = {"fastnn", "fastnn-layer", "fastnn-1t", "fastnn-call"}
TORCH = {"torch-1t", "torch-all"}
#: the peers that take a thread-count suffix "@Nt" (fastnn.set_num_threads(N) in the peer process)
THREADED = ("fastnn", "fastnn-layer", "fastnn-call")


def parse(name):
    """(base peer, thread count or None): "fastnn@2t" -> ("fastnn", 2), "torch-1t" -> ("torch-1t", None).
    Raises ValueError for an unknown peer or a malformed suffix."""
    base, sep, suffix = name.partition("@")
    if not sep:
        if name not in PEERS:
            raise ValueError(f"unknown peer {name!r}; peers: {', '.join(PEERS)}, and {'@Nt, '.join(THREADED)}@Nt")
        return name, None
    if base not in THREADED:
        raise ValueError(f"peer {name!r}: only {', '.join(THREADED)} take a thread count (@Nt)")
    digits = suffix[:-1] if suffix.endswith("t") else ""
    if not digits.isdigit() or int(digits) < 1:
        raise ValueError(f"peer {name!r}: the suffix must be @Nt with N >= 1 threads, e.g. {base}@2t")
    return base, int(digits)


def threaded(base, n):
    """The name of peer ``base`` (one of THREADED) at ``n`` threads: threaded("fastnn", 2) == "fastnn@2t"."""
    name = f"{base}@{int(n)}t"
    parse(name)
    return name


def is_fastnn(name):
    """True for every fastnn peer, thread-count variants included (they are not 'peers' of fastnn)."""
    return parse(name)[0] in FASTNN


def spec(name):
    """(module, options, label) of the peer ``name``, "@Nt" variants included."""
    base, n = parse(name)
    mod, options, label = PEERS[base]
    options = dict(options)
    if n is not None:
        options["threads"] = n
        label = f"{label}, {n} thread{'s' if n > 1 else ''}"
    return mod, options, label


def label(name):
    return spec(name)[2]


def module(name):
    return importlib.import_module(f"{__name__}.{spec(name)[0]}")


def load(name):
    """(Peer class, options, label) of the peer ``name``."""
    mod_name, options, label_ = spec(name)
    return importlib.import_module(f"{__name__}.{mod_name}").Peer, options, label_


def build(name, cell, X, y, seed=0):
    """A ready peer instance; raises RuntimeError with the reason when the peer is unavailable."""
    cls, options, _ = load(name)
    ok, why = cls.available()
    if not ok:
        raise RuntimeError(f"peer {name} unavailable: {why}")
    return cls(cell, X, y, seed=seed, **options)
