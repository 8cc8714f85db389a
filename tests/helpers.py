"""Shared test scaffolding: networks, data, the optimizer table, tolerances and state comparisons.

``make_net(sizes, opt, ...)``: a FullyConnected stack with an activation between layers;
``make_data(n, features, classes, ...)``: seeded standard-normal X and class ids (or regression targets);
``OPTIMIZERS``: name -> (lr -> optimizer), every built-in optimizer in its common configurations;
``tol(dtype, n)``: a tolerance from the dtype's machine epsilon for a result accumulated over n terms;
``same_state(a, b)`` / ``same_history(h1, h2)``: bit-for-bit equality of two networks / histories.
"""
import json

import numpy as np

import fastnn as fnn

OPTIMIZERS = {
    "sgd": lambda lr=0.05: fnn.SGD(lr=lr),
    "momentum": lambda lr=0.05: fnn.SGD(lr=lr, momentum=0.9),
    "nesterov": lambda lr=0.05: fnn.SGD(lr=lr, momentum=0.9, nesterov=True),
    "adam": lambda lr=0.01: fnn.Adam(lr=lr),
    "adamw": lambda lr=0.01: fnn.AdamW(lr=lr),
}


def make_net(sizes=(6, 12, 4), opt="adam", lr=None, act=fnn.TanH, dtype=np.float32, loss=None, seed=0):
    """A network of FullyConnected layers of ``sizes`` with ``act()`` between them; ``opt`` a name of
    OPTIMIZERS (with ``lr``, or its default rate) or an optimizer object; ``loss`` a loss object or None."""
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(fnn.FullyConnected(a, b, dtype=dtype))
        if i < len(sizes) - 2:
            layers.append(act())
    if isinstance(opt, str):
        opt = OPTIMIZERS[opt]() if lr is None else OPTIMIZERS[opt](lr)
    return fnn.NeuralNetwork(layers, loss=loss, optimizer=opt, seed=seed)


def make_data(n=150, features=6, classes=4, seed=1, dtype=np.float32, regression=False):
    """(X (n, features) standard normal in ``dtype``, y): class ids in [0, classes), or (n, classes)
    standard-normal targets with ``regression``."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, features)).astype(dtype)
    if regression:
        return X, rng.standard_normal((n, classes)).astype(dtype)
    return X, rng.integers(0, classes, n)


def tol(dtype, n=1):
    """A relative tolerance for a value computed with ~n rounding errors in ``dtype``: 4 n eps."""
    return 4 * max(1, n) * float(np.finfo(dtype).eps)


def params_of(net):
    """Every parameter of ``net``, flattened into one float64 copy."""
    return np.concatenate([np.asarray(p, np.float64).ravel() for p in net.params])


def same_state(a, b):
    """Assert two networks have bit-identical parameters, optimizer steps and optimizer state."""
    assert all(np.array_equal(p, q) for p, q in zip(a.params, b.params)) and len(a.params) == len(b.params)
    assert a.optimizer.steps == b.optimizer.steps
    sa, sb = a.optimizer.state or [], b.optimizer.state or []
    assert len(sa) == len(sb)
    for x, y in zip(sa, sb):
        assert all(np.array_equal(u, v) for u, v in zip(x, y))


def same_history(h1, h2):
    """Assert two histories have the same keys and values (all but the wall-clock "time")."""
    assert set(h1) == set(h2)
    for key in h1:
        if key != "time":
            assert h1[key] == h2[key], key


# -- model files' safetensors header, edited as a hostile writer would (fastnn's own writer refuses) ---------
def read_parts(path):
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def write_parts(path, header, body):
    hb = json.dumps(header).encode()
    hb += b" " * (-len(hb) % 8)
    path.write_bytes(len(hb).to_bytes(8, "little") + hb + body)


def edit_header(path, fn):
    header, body = read_parts(path)
    fn(header)
    write_parts(path, header, body)


def edit_meta(path, fn):
    def change(header):
        meta = json.loads(header["__metadata__"]["fastnn"])
        fn(meta)
        header["__metadata__"]["fastnn"] = json.dumps(meta)
    edit_header(path, change)
