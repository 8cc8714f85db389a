"""A hypothesis state machine that interleaves every public call a user can make on small networks.

Run as a script (by tests/test_stateful.py, in a subprocess, so that a crash fails that test instead of
killing the suite): ``python tests/stateful_machine.py N_EXAMPLES``. The invariant: every call either
succeeds or raises a clean ValueError / TypeError / RuntimeError / AttributeError (fastnn's
TrainingDivergedError is a RuntimeError, NonFiniteUpdateError an ArithmeticError); after any sequence the
network still predicts finite outputs of the right shape.
"""
import sys
import tempfile

import numpy as np
from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import fastnn as fnn

CLEAN = (ValueError, TypeError, RuntimeError, AttributeError, ArithmeticError)
CALLS = {"calls": 0, "refused": 0}
DTYPES = st.sampled_from([np.float32, np.float64])
ODD = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-3, 3), st.just("0.1"),
                st.just(None), st.booleans(), st.just([1.0]))
HOSTILE = st.one_of(ODD, st.sampled_from([2 ** 64, 10 ** 30, 2 ** 63 - 1, -1, np.int64(3), "float16", np.float64,
                                          np.zeros((3, 3)), np.ones((2, 2), order="F"), np.zeros(4, np.int8), {}]))
#: what the custom layer of the stack returns: right ("ok"), or wrong in one of these ways
KINDS = ["ok", "ok", "fortran", "wider", "narrower", "row dropped", "float64", "float32", "int", "3-D", "list",
         "None", "NaN"]


def public_names(obj):
    return sorted(name for name in dir(obj) if not name.startswith("_"))


@fnn.register_layer
class Tweak(fnn.Layer):
    """A custom layer whose output (forward and backward) is right or wrong as ``kind`` says."""

    def __init__(self, kind="ok"):
        super().__init__()
        self.kind = kind

    def _make(self, x):
        kind, n, m = self.kind, x.shape[0], x.shape[1]
        return {"ok": lambda: x * 1, "fortran": lambda: np.asfortranarray(x * 1),
                "wider": lambda: np.zeros((n, m + 2), x.dtype), "narrower": lambda: np.zeros((n, m - 1), x.dtype),
                "row dropped": lambda: x[1:] * 1, "float64": lambda: x.astype(np.float64),
                "float32": lambda: x.astype(np.float32), "int": lambda: x.astype(np.int64),
                "3-D": lambda: x[:, :, None] * 1, "list": lambda: x.tolist(), "None": lambda: None,
                "NaN": lambda: np.full_like(x, np.nan)}[kind]()

    def _forward(self, x):
        return self._make(x)

    def _backward(self, dy, need_input_grad=True):
        return self._make(dy)


def optimizers():
    return st.one_of(
        st.builds(lambda lr: fnn.SGD(lr=lr), st.floats(1e-4, 0.5)),
        st.builds(lambda lr, mu: fnn.SGD(lr=lr, momentum=mu), st.floats(1e-4, 0.5), st.floats(0, 0.99)),
        st.builds(lambda lr: fnn.Adam(lr=lr), st.floats(1e-4, 0.1)))


class NetworkMachine(RuleBasedStateMachine):
    @initialize(dtype=DTYPES, hidden=st.integers(1, 9), n_in=st.integers(1, 5), n_out=st.integers(2, 4),
                opt=optimizers(), act=st.sampled_from([fnn.ReLU, fnn.Sigmoid, fnn.TanH, fnn.GELU, fnn.LeakyReLU]),
                dropout=st.sampled_from([None, 0.0, 0.3]), custom=st.booleans())
    def build(self, dtype, hidden, n_in, n_out, opt, act, dropout, custom):
        self.dtype, self.n_in, self.n_out = dtype, n_in, n_out
        # self.layers: the three layers the rules poke at (dense, activation, dense); a Dropout may sit
        # between the activation and the last dense layer
        self.layers = [fnn.FullyConnected(n_in, hidden, dtype=dtype), act(), fnn.FullyConnected(hidden, n_out,
                                                                                               dtype=dtype)]
        self.custom = Tweak() if custom else None
        stack = self.layers[:2] + ([] if dropout is None else [fnn.Dropout(dropout)]) + \
            ([] if self.custom is None else [self.custom]) + self.layers[2:]
        self.net = fnn.NeuralNetwork(stack, optimizer=opt, seed=0)
        self.tmp = tempfile.mkdtemp()

    def data(self, n, seed):
        rng = np.random.default_rng(seed)
        return rng.standard_normal((n, self.n_in)).astype(self.dtype), rng.integers(0, self.n_out, n)

    def attempt(self, call, *args, **kwargs):
        CALLS["calls"] += 1
        try:
            return call(*args, **kwargs)
        except CLEAN:
            CALLS["refused"] += 1
            return None

    # -- mutations of public state --------------------------------------------------------------
    @rule(name=st.sampled_from(["lr", "momentum", "beta1", "beta2", "eps", "weight_decay", "nesterov"]),
          value=ODD)
    def set_hyperparameter(self, name, value):
        self.attempt(setattr, self.net.optimizer, name, value)

    @rule(name=st.sampled_from(["in_features", "out_features", "dtype"]), value=st.integers(1, 3_000_000),
          k=st.sampled_from([0, 2]))
    def set_layer_shape(self, name, value, k):
        self.attempt(setattr, self.layers[k], name, value)

    @rule(rows=st.integers(0, 12), cols=st.integers(0, 12), k=st.sampled_from([0, 2]),
          which=st.sampled_from(["weights", "bias"]))
    def assign_weights(self, rows, cols, k, which):
        self.attempt(setattr, self.layers[k], which, np.ones((rows, cols)))

    @rule(i=st.integers(0, 3), j=st.integers(0, 2), size=st.integers(0, 50))
    def replace_optimizer_state(self, i, j, size):
        state = self.net.optimizer.state
        if state and i < len(state) and j < len(state[i]):
            state[i][j] = np.zeros(size, self.dtype)

    @rule(data=st.data(), value=HOSTILE)
    def set_any_public_attribute(self, data, value):
        """Any public attribute of the network, a layer, the loss or the optimizer: read-only or validated."""
        obj = data.draw(st.sampled_from([self.net, self.net.loss, self.net.optimizer, *self.net.layers]))
        name = data.draw(st.sampled_from(public_names(obj)))
        if obj is self.custom:
            return                                  # the custom layer's own attributes are the user's
        self.attempt(setattr, obj, name, value)

    @precondition(lambda self: getattr(self, "custom", None) is not None)
    @rule(kind=st.sampled_from(KINDS))
    def custom_layer_misbehaves(self, kind):
        self.custom.kind = kind

    @rule(mode=st.booleans())
    def switch_mode(self, mode):
        self.attempt(self.net.train, mode)

    @rule(opt=optimizers())
    def replace_optimizer(self, opt):
        self.attempt(setattr, self.net, "optimizer", opt)

    @rule()
    def replace_layers(self):
        self.attempt(setattr, self.net, "layers", [fnn.FullyConnected(self.n_in, 50)])

    @rule()
    def second_network(self):
        self.attempt(fnn.NeuralNetwork, self.layers)

    # -- the lecture's calls ----------------------------------------------------------------------
    @rule(n=st.integers(1, 40), seed=st.integers(0, 3))
    def forward_with_targets(self, n, seed):
        self.attempt(self.net.forward, *self.data(n, seed))

    @rule()
    def backward(self):
        self.attempt(self.net.backward)

    @rule()
    def step(self):
        self.attempt(self.net.step)

    @rule(n=st.integers(1, 40), k=st.sampled_from([0, 1, 2]))
    def call_a_layer(self, n, k):
        width = self.layers[k].in_features if k != 1 else self.layers[0].out_features
        self.attempt(self.layers[k].forward, np.ones((n, width), self.dtype))
        self.attempt(self.layers[k].backward, np.ones((n, width if k == 1 else self.layers[k].out_features),
                                                       self.dtype))

    @rule(n=st.integers(1, 40))
    def call_the_loss(self, n):
        self.attempt(self.net.loss.forward, np.ones((n, self.n_out), self.dtype), np.zeros(n, np.int64))

    # -- training, prediction, files ----------------------------------------------------------------
    @rule(n=st.integers(1, 60), epochs=st.integers(1, 3), batch=st.one_of(st.integers(1, 70), st.just(2 ** 63)),
          fused=st.sampled_from(["auto", False]), seed=st.integers(0, 3))
    def fit(self, n, epochs, batch, fused, seed):
        self.attempt(self.net.fit, *self.data(n, seed), epochs=epochs, batch_size=batch, verbose=0, fused=fused)

    @rule()
    def save_and_load(self):
        path = f"{self.tmp}/m.safetensors"
        if self.attempt(lambda: self.net.save(path) or True):      # saved: it loads
            loaded = fnn.load(path)
            assert len(loaded.layers) == len(self.net.layers)

    @invariant()
    def predicts(self):
        if not hasattr(self, "net"):
            return
        X, _ = self.data(7, 9)
        if self.custom is not None and self.custom.kind not in ("ok", "fortran"):
            try:                                # a misbehaving custom layer: refused clearly, naming it
                self.net.forward(X)
            except CLEAN as exc:
                assert "Tweak" in str(exc), exc
                return
            assert self.custom.kind == ("float32" if self.dtype == np.float32 else "float64"), self.custom.kind
        out = self.net.forward(X)
        assert out.shape == (7, self.n_out) and out.dtype == self.dtype


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    NetworkMachine.TestCase.settings = settings(max_examples=n, stateful_step_count=25, deadline=None,
                                                derandomize=True,
                                                suppress_health_check=list(HealthCheck))
    import unittest
    result = unittest.TextTestRunner(verbosity=0).run(
        unittest.defaultTestLoader.loadTestsFromTestCase(NetworkMachine.TestCase))
    print(f"{CALLS['calls']} public calls, {CALLS['refused']} refused with a clean error", flush=True)
    sys.exit(0 if result.wasSuccessful() and CALLS["calls"] > n else 1)
