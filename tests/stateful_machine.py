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


def optimizers():
    return st.one_of(
        st.builds(lambda lr: fnn.SGD(lr=lr), st.floats(1e-4, 0.5)),
        st.builds(lambda lr, mu: fnn.SGD(lr=lr, momentum=mu), st.floats(1e-4, 0.5), st.floats(0, 0.99)),
        st.builds(lambda lr: fnn.Adam(lr=lr), st.floats(1e-4, 0.1)))


class NetworkMachine(RuleBasedStateMachine):
    @initialize(dtype=DTYPES, hidden=st.integers(1, 9), n_in=st.integers(1, 5), n_out=st.integers(2, 4),
                opt=optimizers(), act=st.sampled_from([fnn.ReLU, fnn.Sigmoid, fnn.TanH, fnn.GELU, fnn.LeakyReLU]),
                dropout=st.sampled_from([None, 0.0, 0.3]))
    def build(self, dtype, hidden, n_in, n_out, opt, act, dropout):
        self.dtype, self.n_in, self.n_out = dtype, n_in, n_out
        # self.layers: the three layers the rules poke at (dense, activation, dense); a Dropout may sit
        # between the activation and the last dense layer
        self.layers = [fnn.FullyConnected(n_in, hidden, dtype=dtype), act(), fnn.FullyConnected(hidden, n_out,
                                                                                               dtype=dtype)]
        stack = self.layers[:2] + ([] if dropout is None else [fnn.Dropout(dropout)]) + self.layers[2:]
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
        if self.attempt(self.net.save, path) is None and self.attempt(fnn.load, path) is not None:
            pass

    @invariant()
    def predicts(self):
        if not hasattr(self, "net"):
            return
        X, _ = self.data(7, 9)
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
