"""fastnn.callbacks: EarlyStopping with Keras' semantics (patience, min_delta, mode, restoring the best
weights) on fake networks and histories and on a real NeuralNetwork; CallbackList and get()."""
import math

import numpy as np
import pytest

import fastnn as fnn
from fastnn import callbacks as C


class FakeNet:
    def __init__(self):
        self.params = [np.zeros((2, 3)), np.zeros(3)]

    def set_all(self, value):
        for p in self.params:
            p[...] = value


def simulate(cb, values, key="val_loss", net=None, after_last=None):
    """Run cb over an epoch sequence whose params hold the epoch number; returns the epoch it stopped at."""
    net = net if net is not None else FakeNet()
    cb.on_train_begin(net)
    history = {"loss": [], key: []}
    stopped = None
    for epoch, v in enumerate(values, start=1):
        net.set_all(float(epoch))
        history["loss"].append(1.0)
        history[key].append(v)
        if cb.on_epoch_end(epoch, history):
            stopped = epoch
            break
    if after_last is not None:
        net.set_all(after_last)
    cb.on_train_end(net)
    return stopped, net


def test_stops_after_patience_epochs_without_improvement():
    es = C.EarlyStopping(patience=3, restore_best_weights=False)
    stopped, _ = simulate(es, [1.0, 0.9, 0.95, 0.96, 0.97, 0.1, 0.1])
    assert stopped == 5 and es.stopped_epoch == 5 and es.best_epoch == 2 and es.best == 0.9
    es = C.EarlyStopping(patience=3, restore_best_weights=False)
    stopped, _ = simulate(es, [1.0, 0.9, 0.95, 0.8, 0.97, 0.98, 0.99])   # improvement resets the count
    assert stopped == 7 and es.best_epoch == 4


def test_never_stops_while_improving():
    es = C.EarlyStopping(patience=1, restore_best_weights=False)
    stopped, _ = simulate(es, [1.0 / e for e in range(1, 20)])
    assert stopped is None and es.stopped_epoch == 0 and es.best_epoch == 19


def test_patience_zero_stops_at_first_epoch_without_improvement():
    es = C.EarlyStopping(patience=0, restore_best_weights=False)
    assert simulate(es, [1.0, 0.5, 0.5, 0.1])[0] == 3


def test_min_delta():
    es = C.EarlyStopping(patience=2, min_delta=0.1, restore_best_weights=False)
    assert simulate(es, [1.0, 0.95, 0.91, 0.5])[0] == 3 and es.best == 1.0
    es = C.EarlyStopping(patience=2, min_delta=0.04, restore_best_weights=False)
    assert simulate(es, [1.0, 0.95, 0.91, 0.5])[0] is None and es.best == 0.5


@pytest.mark.parametrize("monitor", ["val_accuracy", "accuracy", "val_acc"])
def test_mode_auto_maximises_accuracies(monitor):
    es = C.EarlyStopping(monitor=monitor, patience=2, restore_best_weights=False)
    assert es.direction == "max"
    assert simulate(es, [0.5, 0.6, 0.6, 0.55, 0.9], key=monitor)[0] == 4
    assert es.best == 0.6 and es.best_epoch == 2


def test_mode_explicit():
    es = C.EarlyStopping(monitor="score", patience=1, mode="max", restore_best_weights=False)
    assert simulate(es, [1.0, 2.0, 1.5, 3.0], key="score")[0] == 3
    es = C.EarlyStopping(monitor="val_accuracy", patience=1, mode="min", restore_best_weights=False)
    assert simulate(es, [0.5, 0.4, 0.45], key="val_accuracy")[0] == 3
    assert C.EarlyStopping(monitor="loss").direction == "min"


def test_nan_never_improves():
    es = C.EarlyStopping(patience=2, restore_best_weights=False)
    assert simulate(es, [1.0, float("nan"), float("nan"), 0.5])[0] == 3 and es.best == 1.0


def test_restore_best_weights_when_stopped():
    es = C.EarlyStopping(patience=2)
    stopped, net = simulate(es, [1.0, 0.5, 0.7, 0.8, 0.1])
    assert stopped == 4 and es.best_epoch == 2
    for p in net.params:
        assert (p == 2.0).all()                  # epoch 2's weights, not epoch 4's


def test_restore_best_weights_when_not_stopped_but_best_was_earlier():
    es = C.EarlyStopping(patience=10)
    stopped, net = simulate(es, [1.0, 0.5, 0.3, 0.4, 0.6])
    assert stopped is None and es.best_epoch == 3
    assert all((p == 3.0).all() for p in net.params)


def test_no_restore_when_best_is_last_epoch():
    es = C.EarlyStopping(patience=10)
    _, net = simulate(es, [1.0, 0.5, 0.3], after_last=-7.0)
    assert es.best_epoch == 3
    assert all((p == -7.0).all() for p in net.params)      # left alone


def test_no_restore_when_disabled():
    es = C.EarlyStopping(patience=1, restore_best_weights=False)
    stopped, net = simulate(es, [1.0, 0.5, 0.7, 0.8])
    assert stopped == 3 and es.best_weights is None
    assert all((p == 3.0).all() for p in net.params)


def test_first_epoch_weights_kept_when_nothing_ever_improves():
    es = C.EarlyStopping(patience=2)
    stopped, net = simulate(es, [float("nan")] * 5)
    assert stopped == 2 and es.best_epoch == 1            # Keras: wait counts from the first epoch
    assert all((p == 1.0).all() for p in net.params)


def test_state_resets_on_train_begin():
    es = C.EarlyStopping(patience=1)
    assert simulate(es, [1.0, 0.5, 0.7, 0.8])[0] == 3
    assert es.stopped_epoch == 3 and es.best == 0.5
    stopped, net = simulate(es, [9.0, 8.0, 7.0])            # the second fit starts afresh
    assert stopped is None and es.stopped_epoch == 0 and es.best == 7.0 and es.best_epoch == 3
    es.on_train_begin(FakeNet())
    assert (es.wait, es.stopped_epoch, es.best_epoch, es.best, es.best_weights) == (0, 0, 0, math.inf, None)


def test_real_network_restore():
    np.random.seed(0)
    net = fnn.NeuralNetwork([fnn.FullyConnected(3, 2)])
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    es = C.EarlyStopping(monitor="val_loss", patience=2)
    es.on_train_begin(net)
    history = {"val_loss": []}
    rng = np.random.default_rng(1)
    outputs = {}
    for epoch, loss in enumerate([0.9, 0.4, 0.6, 0.7], start=1):
        for p in net.params:                              # a simulated epoch moves the weights
            p += rng.standard_normal(p.shape).astype(p.dtype)
        outputs[epoch] = (net.forward(x).copy(), [p.copy() for p in net.params])
        history["val_loss"].append(loss)
        if es.on_epoch_end(epoch, history):
            break
    assert epoch == 4 and es.stopped_epoch == 4 and es.best_epoch == 2
    assert not np.array_equal(net.forward(x), outputs[2][0])
    es.on_train_end(net)
    for p, saved in zip(net.params, outputs[2][1]):
        np.testing.assert_array_equal(p, saved)
    np.testing.assert_array_equal(net.forward(x), outputs[2][0])


def test_missing_monitored_key():
    es = C.EarlyStopping(monitor="val_loss", restore_best_weights=False)
    es.on_train_begin(FakeNet())
    with pytest.raises(ValueError, match=r"'val_loss'.*keys present: \['accuracy', 'loss'\]"):
        es.on_epoch_end(1, {"loss": [1.0], "accuracy": [0.3]})
    with pytest.raises(ValueError, match=r"history\['val_loss'\] is empty"):
        es.on_epoch_end(1, {"loss": [1.0], "val_loss": []})


def test_restore_needs_on_train_begin():
    with pytest.raises(ValueError, match="on_train_begin"):
        C.EarlyStopping().on_epoch_end(1, {"val_loss": [1.0]})
    assert C.EarlyStopping(restore_best_weights=False).on_epoch_end(1, {"val_loss": [1.0]}) is False
    with pytest.raises(TypeError, match="net must have a 'params' list"):
        C.EarlyStopping().on_train_begin(object())


@pytest.mark.parametrize("kwargs,name,exc", [
    (dict(monitor=""), "monitor", ValueError), (dict(monitor=None), "monitor", ValueError),
    (dict(patience=-1), "patience", ValueError), (dict(patience=2.5), "patience", ValueError),
    (dict(patience=True), "patience", ValueError),
    (dict(min_delta=-0.1), "min_delta", ValueError), (dict(min_delta=float("nan")), "min_delta", ValueError),
    (dict(restore_best_weights="yes"), "restore_best_weights", TypeError),
    (dict(mode="maximum"), "mode", ValueError),
])
def test_constructor_arguments_are_checked(kwargs, name, exc):
    with pytest.raises(exc, match=rf"\b{name} must be"):
        C.EarlyStopping(**kwargs)


def test_repr_and_config():
    es = C.EarlyStopping(monitor="val_accuracy", patience=3, min_delta=0.01, restore_best_weights=False)
    assert eval(repr(es), vars(C)).config() == es.config()
    assert es.config() == {"monitor": "val_accuracy", "patience": 3, "min_delta": 0.01,
                           "restore_best_weights": False, "mode": "auto"}


# -- the protocol: CallbackList and get --------------------------------------------------------------------
class OnlyEpochEnd:
    def __init__(self, stop_at=None):
        self.seen, self.stop_at = [], stop_at

    def on_epoch_end(self, epoch, history):
        self.seen.append(epoch)
        if epoch == self.stop_at:
            return True
        return None                                    # None counts as "go on"


class AllHooks(C.Callback):
    def __init__(self):
        self.calls = []

    def on_train_begin(self, net):
        self.calls.append(("begin", net))

    def on_epoch_end(self, epoch, history):
        self.calls.append(("epoch", epoch))
        return False

    def on_train_end(self, net):
        self.calls.append(("end", net))


def test_callback_list_runs_the_protocol():
    a, b, c = OnlyEpochEnd(stop_at=2), AllHooks(), OnlyEpochEnd()
    cbs = C.CallbackList([a, b, c])
    net = FakeNet()
    cbs.on_train_begin(net)
    assert cbs.on_epoch_end(1, {}) is False
    assert cbs.on_epoch_end(2, {}) is True               # a asks to stop; the others still ran
    cbs.on_train_end(net)
    assert a.seen == [1, 2] and c.seen == [1, 2]
    assert b.calls == [("begin", net), ("epoch", 1), ("epoch", 2), ("end", net)]
    assert C.Callback().on_epoch_end(1, {}) is False


def test_get():
    es = C.EarlyStopping()
    assert C.get(None) == [] and C.get(()) == []
    assert C.get(es) == [es]
    assert C.get([es, OnlyEpochEnd()])[0] is es
    assert C.get(C.CallbackList([es])) == [es]
    with pytest.raises(TypeError, match=r"callbacks\[1\] must have a method on_epoch_end"):
        C.get([es, object()])
    with pytest.raises(TypeError, match=r"callbacks\[0\] is the class EarlyStopping"):
        C.get([C.EarlyStopping])
    with pytest.raises(TypeError, match="callbacks must be a list"):
        C.get(3)
    with pytest.raises(TypeError, match="callbacks must be a list"):
        C.get("early")

    class BadHook:
        on_train_begin = 3

        def on_epoch_end(self, epoch, history):
            return False
    with pytest.raises(TypeError, match=r"callbacks\[0\].on_train_begin must be a method"):
        C.get([BadHook()])


def test_reachable_from_package():
    assert fnn.callbacks is C and fnn.callbacks.EarlyStopping is C.EarlyStopping


# ------------------------------------------------------------------------- state for checkpoints
def _partway(cb, values, net):
    """cb after on_train_begin and the epochs of ``values`` (params hold the epoch number)."""
    cb.on_train_begin(net)
    history = {"loss": [], "val_loss": []}
    for epoch, v in enumerate(values, start=1):
        net.set_all(float(epoch))
        history["loss"].append(1.0)
        history["val_loss"].append(v)
        cb.on_epoch_end(epoch, history)
    return history


@pytest.mark.parametrize("restore", [True, False])
def test_state_dict_round_trips_through_json_exactly(restore):
    import json
    net = FakeNet()
    a = C.EarlyStopping(patience=3, restore_best_weights=restore)
    _partway(a, [0.5, 1 / 3, 0.9], net)
    state = json.loads(json.dumps(a.state_dict(), allow_nan=False))
    b = C.EarlyStopping(patience=3, restore_best_weights=restore)
    b.on_train_begin(FakeNet())
    b.load_state_dict(state)
    assert (b.best, b.best_epoch, b.wait, b.stopped_epoch) == (1 / 3, 2, 1, 0)
    if restore:
        assert all(np.array_equal(x, y) and x.dtype == y.dtype for x, y in zip(a.best_weights, b.best_weights))
    else:
        assert b.best_weights is None
    # carried on, both stop at the same epoch and restore the same weights
    history = {"loss": [1.0] * 3, "val_loss": [0.5, 1 / 3, 0.9]}
    for cb, n in ((a, net), (b, FakeNet())):
        for epoch in (4, 5):
            n.set_all(float(epoch))
            history_e = {k: v + [1.0] * (epoch - 3) for k, v in history.items()}
            stop = cb.on_epoch_end(epoch, history_e)
        assert stop and cb.stopped_epoch == 5
        cb.on_train_end(n)
        assert n.params[0][0, 0] == (2.0 if restore else 5.0)


def test_a_fresh_state_dict_has_no_weights_and_infinite_best():
    cb = C.EarlyStopping()
    cb.on_train_begin(FakeNet())
    state = cb.state_dict()
    assert state["best_weights"] is None and float.fromhex(state["best"]) == math.inf
    cb.load_state_dict(state)
    assert cb.best == math.inf and cb.best_epoch == 0


@pytest.mark.parametrize("change, words", [
    (lambda s: s.update(wait=-1), "wait"),
    (lambda s: s.update(wait=True), "wait"),
    (lambda s: s.update(best_epoch=9), "cannot exceed"),
    (lambda s: s.update(best="nan"), "impossible"),
    (lambda s: s.update(best=float("-inf").hex()), "impossible"),
    (lambda s: s.update(best=3), "hex"),
    (lambda s: s.update(best_weights=None), "lacks the best weights"),
    (lambda s: s["best_weights"][0].update(data="!!"), "malformed"),
    (lambda s: s["best_weights"][0].update(shape=[3, 2]), "do not match"),
    (lambda s: s["best_weights"][0].update(dtype="<f4"), "malformed|do not match"),
    (lambda s: s["best_weights"].pop(), "do not match"),
])
def test_load_state_dict_refuses_a_malformed_state_and_changes_nothing(change, words):
    net = FakeNet()
    a = C.EarlyStopping(patience=3)
    _partway(a, [0.5, 0.4, 0.9], net)
    state = a.state_dict()
    change(state)
    b = C.EarlyStopping(patience=3)
    b.on_train_begin(FakeNet())
    before = (b.best, b.best_epoch, b.wait, b.best_weights)
    with pytest.raises(ValueError, match=words):
        b.load_state_dict(state)
    assert (b.best, b.best_epoch, b.wait, b.best_weights) == before


# -- G4 / L2: a callback's on_epoch_end must return None, False or True ------------------------------------
class Returns:
    def __init__(self, value):
        self.value = value

    def on_epoch_end(self, epoch, history):
        return self.value


@pytest.mark.parametrize("value", ["no", "", float("nan"), 0.0, 1, 0, np.array([True, False]), np.array(True),
                                   [], [False], {"stop": False}, np.float64(1.0)])
def test_an_on_epoch_end_answer_that_is_not_a_bool_is_refused_naming_the_callback(value):
    with pytest.raises(TypeError, match=r"callbacks\[1\] \(Returns\)\.on_epoch_end returned .*True"):
        C.CallbackList([C.Callback(), Returns(value)]).on_epoch_end(1, {"loss": [1.0]})


@pytest.mark.parametrize("value, stop", [(None, False), (False, False), (True, True), (np.bool_(True), True),
                                         (np.bool_(False), False)])
def test_on_epoch_end_answers_none_false_true_and_numpy_bools(value, stop):
    assert C.CallbackList([Returns(value)]).on_epoch_end(1, {"loss": [1.0]}) is stop


@pytest.mark.parametrize("fused", ["auto", False])
def test_a_fit_whose_callback_answers_a_string_stops_with_a_clear_error(fused):
    X = np.random.default_rng(0).random((40, 4)).astype(np.float32)
    y = (X[:, 0] > 0.5).astype(int)
    net = fnn.NeuralNetwork([fnn.FullyConnected(4, 2), fnn.SoftMax()], seed=0)
    with pytest.raises(TypeError, match="on_epoch_end returned 'no'"):
        net.fit(X, y, epochs=5, verbose=0, fused=fused, callbacks=[Returns("no")])


# -- U2: EarlyStopping's state is read-only (the callback sets it; on_train_begin and checkpoints restore it) --
@pytest.mark.parametrize("name, value", [("best_weights", "garbage"), ("wait", -5), ("best", float("nan")),
                                         ("stopped_epoch", "x"), ("best_epoch", 3), ("wait", 0)])
def test_early_stopping_state_cannot_be_assigned(name, value):
    es = C.EarlyStopping(monitor="val_loss", patience=2)
    before = getattr(es, name)
    with pytest.raises(AttributeError, match=f"EarlyStopping.{name} is read-only"):
        setattr(es, name, value)
    assert getattr(es, name) is before or getattr(es, name) == before


def test_early_stopping_best_weights_cannot_be_changed_through_what_it_returns():
    es = C.EarlyStopping(monitor="val_loss", patience=5)
    net = FakeNet()
    simulate(es, [1.0, 0.5, 0.9], net=net)
    saved = es.best_weights
    assert isinstance(saved, tuple) and not saved[0].flags.writeable
    with pytest.raises(ValueError):
        saved[0][...] = 99.0
    state = es.state_dict()
    es2 = C.EarlyStopping(monitor="val_loss", patience=5)
    es2.on_train_begin(net)
    es2.load_state_dict(state)
    assert es2.best == es.best and es2.wait == es.wait and np.array_equal(es2.best_weights[0], saved[0])
