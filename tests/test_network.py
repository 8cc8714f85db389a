"""NeuralNetwork and Trainer: forward/backward/step, predict/evaluate, seeds, XOR, history, batches,
shuffling and threads."""
import re

import numba
import numpy as np
import pytest

import fastnn as fnn
from tests import reference as ref

XOR_X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
XOR_Y = np.array([0, 1, 1, 0])


def small_net(dtype=np.float64, optimizer=None, seed=0, loss=None):
    return fnn.NeuralNetwork([fnn.FullyConnected(3, 5, dtype=dtype), fnn.TanH(),
                              fnn.FullyConnected(5, 4, dtype=dtype)],
                             loss=loss, optimizer=optimizer or fnn.SGD(lr=0.1), seed=seed)


def data(n=20, seed=0, dtype=np.float64, classes=4):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 3)).astype(dtype), rng.integers(0, classes, n)


def weights_of(net):
    return [p.copy() for p in net.params]


# ------------------------------------------------------------------------------------ forward / backward
def test_forward_returns_a_copy_not_a_buffer():
    net = small_net()
    x1, _ = data(6, 1)
    x2, _ = data(6, 2)
    out1 = net.forward(x1)
    kept = out1.copy()
    out2 = net.forward(x2)
    np.testing.assert_array_equal(out1, kept)          # not overwritten by the next forward
    assert not np.shares_memory(out1, out2)
    for layer in net.layers:
        for buf in getattr(layer, "_buffers", {}).values():
            assert not np.shares_memory(out2, buf)
    out2[...] = 1e9                                      # writing into the result changes nothing inside
    np.testing.assert_array_equal(net.forward(x1), kept)
    assert out1.shape == (6, 4) and out1.dtype == np.float64


def test_forward_with_targets_returns_mean_loss():
    net = small_net()
    x, y = data(7)
    loss = net.forward(x, y)
    assert isinstance(loss, float)
    out = net.forward(x)
    expected, _ = ref.softmax_ce_labels(out, y)
    assert loss == pytest.approx(expected, rel=1e-12)
    # mean, not sum: the loss of the batch stacked twice is the same
    assert net.forward(np.vstack([x, x]), np.concatenate([y, y])) == pytest.approx(loss, rel=1e-12)
    # one-hot targets give the same loss
    assert net.forward(x, ref.one_hot(y, 4)) == pytest.approx(loss, rel=1e-12)


def test_backward_before_forward_raises():
    net = small_net()
    with pytest.raises(RuntimeError):
        net.backward()
    net.forward(data(3)[0])                 # a forward without targets does not prepare backward
    with pytest.raises(RuntimeError):
        net.backward()


@pytest.mark.parametrize("intervening", ["forward(x)", "predict", "evaluate"])
def test_backward_uses_the_last_forward_with_targets(intervening):
    """Contract: backward() backpropagates from the last forward(x, y). A forward(x) / predict / evaluate
    on other data in between must not silently change the gradients: either the gradients are those of
    forward(x, y), or backward raises RuntimeError."""
    net = small_net()
    x, y = data(5, 3)
    net.forward(x, y)
    net.backward()
    expected = [g.copy() for g in net.grads]
    net.forward(x, y)
    x_other, y_other = data(5, 4)
    if intervening == "forward(x)":
        net.forward(x_other)
    elif intervening == "predict":
        net.predict(x_other)
    else:
        net.evaluate(x_other, y_other)
    try:
        net.backward()
    except RuntimeError:
        return
    for got, want in zip(net.grads, expected):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


def test_backward_after_predict_on_a_different_batch_size_is_clear():
    """Same contract with a different batch size in between: no low-level shape error from a kernel."""
    net = small_net()
    x, y = data(5, 3)
    net.forward(x, y)
    net.predict(data(7, 4)[0])
    try:
        net.backward()
    except RuntimeError:
        return
    net2 = small_net()
    net2.forward(x, y)
    net2.backward()
    for got, want in zip(net.grads, net2.grads):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


def test_step_changes_weights_by_minus_lr_grad():
    net = small_net(optimizer=fnn.SGD(lr=0.5))
    x, y = data(8)
    before = weights_of(net)
    net.forward(x, y)
    net.backward()
    grads = [g.copy() for g in net.grads]
    assert all(np.abs(g).max() > 0 for g in grads)
    net.step()
    for w0, g, w1 in zip(before, grads, net.params):
        assert not np.array_equal(w0, w1)
        np.testing.assert_allclose(w1, w0 - 0.5 * g, rtol=1e-12, atol=1e-15)
    # a step lowers the loss on this batch for a small enough lr
    net2 = small_net(optimizer=fnn.SGD(lr=0.01))
    l0 = net2.forward(x, y)
    net2.backward()
    net2.step()
    assert net2.forward(x, y) < l0


# -------------------------------------------------------------------------------- predict / evaluate
@pytest.mark.parametrize("n", [1, 9, 8200])     # 8200 > the predict chunk of 8192 rows
def test_predict_predict_proba_evaluate_consistent(n):
    net = small_net(dtype=np.float32)
    X, y = data(n, 5, np.float32)
    proba = net.predict_proba(X)
    labels = net.predict(X)
    assert proba.shape == (n, 4) and labels.shape == (n,)
    assert np.issubdtype(labels.dtype, np.integer)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    assert (proba >= 0).all()
    np.testing.assert_array_equal(labels, np.argmax(proba, axis=1))
    np.testing.assert_array_equal(labels, np.argmax(net.forward(X), axis=1))
    np.testing.assert_allclose(proba, ref.softmax(net.forward(X)), rtol=1e-5, atol=1e-6)
    scores = net.evaluate(X, y)
    assert set(scores) == {"loss", "accuracy"}
    assert scores["accuracy"] == pytest.approx(np.mean(labels == y), abs=1e-12)
    loss_ref, _ = ref.softmax_ce_labels(net.forward(X), y)
    assert scores["loss"] == pytest.approx(loss_ref, rel=1e-5)


def test_evaluate_accuracy_is_not_trivially_constant():
    net = small_net()
    X, y = data(30, 6)
    labels = net.predict(X)
    assert net.evaluate(X, labels)["accuracy"] == 1.0
    assert net.evaluate(X, (labels + 1) % 4)["accuracy"] == 0.0
    # one-hot targets score the same as int labels
    a, b = net.evaluate(X, y), net.evaluate(X, ref.one_hot(y, 4))
    assert a["accuracy"] == b["accuracy"] and a["loss"] == pytest.approx(b["loss"], rel=1e-12)


def test_regression_network_predict_and_evaluate():
    net = fnn.NeuralNetwork([fnn.FullyConnected(3, 2, dtype=np.float64)], loss=fnn.L2Loss(), seed=0)
    X = np.random.default_rng(7).standard_normal((5, 3))
    t = np.random.default_rng(8).standard_normal((5, 2))
    out = net.predict(X)
    assert out.shape == (5, 2) and out.dtype == np.float64
    np.testing.assert_allclose(out, ref.dense_forward(X, net.layers[0].weights, net.layers[0].bias))
    scores = net.evaluate(X, t)
    assert set(scores) == {"loss"}
    assert scores["loss"] == pytest.approx(ref.l2(out, t)[0], rel=1e-12)
    with pytest.raises(TypeError):
        net.predict_proba(X)


# ----------------------------------------------------------------------------------------- seeds
def test_seed_gives_bit_identical_weights():
    X, y = data(50, 9, np.float32)

    def run(seed):
        net = fnn.NeuralNetwork([fnn.FullyConnected(3, 8), fnn.ReLU(), fnn.FullyConnected(8, 4)],
                                optimizer=fnn.Adam(lr=0.01), seed=seed)
        init = weights_of(net)
        net.fit(X, y, epochs=3, batch_size=8, verbose=0)
        return init, weights_of(net)

    init_a, final_a = run(0)
    init_b, final_b = run(0)
    for a, b in zip(init_a + final_a, init_b + final_b):
        assert np.array_equal(a, b)
    init_c, final_c = run(1)
    assert not np.array_equal(init_a[0], init_c[0])
    assert not np.array_equal(final_a[0], final_c[0])
    assert not np.array_equal(init_a[0], final_a[0])        # fit did train


def test_layer_seed_is_reproducible():
    a = fnn.FullyConnected(4, 3, seed=5)
    b = fnn.FullyConnected(4, 3, seed=5)
    c = fnn.FullyConnected(4, 3, seed=6)
    assert np.array_equal(a.weights, b.weights) and not np.array_equal(a.weights, c.weights)


# ------------------------------------------------------------------------------------------------- XOR
def test_perceptron_cannot_separate_xor():
    p = fnn.Perceptron(2, seed=0).fit(XOR_X, XOR_Y, epochs=100)
    assert p.converged is False
    assert p.score(XOR_X, XOR_Y) <= 0.75
    # sanity: the perceptron does separate AND
    y_and = np.array([0, 0, 0, 1])
    q = fnn.Perceptron(2, seed=0).fit(XOR_X, y_and, epochs=100)
    assert q.converged is True and q.score(XOR_X, y_and) == 1.0
    np.testing.assert_array_equal(q.predict(XOR_X), y_and)


def test_single_linear_layer_cannot_separate_xor():
    net = fnn.NeuralNetwork([fnn.FullyConnected(2, 2)], optimizer=fnn.Adam(lr=0.05), seed=0)
    net.fit(XOR_X, XOR_Y, epochs=300, batch_size=4, verbose=0)
    assert net.evaluate(XOR_X, XOR_Y)["accuracy"] <= 0.75


@pytest.mark.parametrize("activation", [fnn.TanH, fnn.ReLU])
def test_hidden_layer_solves_xor(activation):
    net = fnn.NeuralNetwork([fnn.FullyConnected(2, 8), activation(), fnn.FullyConnected(8, 2)],
                            optimizer=fnn.Adam(lr=0.05), seed=0)
    history = net.fit(XOR_X, XOR_Y, epochs=300, batch_size=4, verbose=0)
    assert net.evaluate(XOR_X, XOR_Y)["accuracy"] == 1.0
    np.testing.assert_array_equal(net.predict(XOR_X), XOR_Y)
    assert history["loss"][-1] < 0.1 < history["loss"][0]


# ------------------------------------------------------------------------------------ trainer & history
@pytest.mark.parametrize("with_validation", [False, True])
def test_history_keys_and_lengths(with_validation):
    X, y = data(30, 10)
    Xv, yv = data(11, 11)
    net = small_net()
    kwargs = {"validation_data": (Xv, yv)} if with_validation else {}
    history = net.fit(X, y, epochs=4, batch_size=8, verbose=0, **kwargs)
    expected = {"loss", "accuracy"} | ({"val_loss", "val_accuracy"} if with_validation else set())
    assert expected <= set(history)
    if not with_validation:
        assert not history.get("val_loss") and not history.get("val_accuracy")
    for key, values in history.items():
        assert len(values) == 4, key
    assert all(np.isfinite(history["loss"])) and all(0 <= a <= 1 for a in history["accuracy"])
    if with_validation:
        final = net.evaluate(Xv, yv)
        assert history["val_loss"][-1] == pytest.approx(final["loss"], rel=1e-12)
        assert history["val_accuracy"][-1] == pytest.approx(final["accuracy"], abs=1e-12)


def test_regression_history_has_no_accuracy():
    rng = np.random.default_rng(12)
    X, t = rng.standard_normal((20, 3)), rng.standard_normal((20, 2))
    net = fnn.NeuralNetwork([fnn.FullyConnected(3, 2, dtype=np.float64)], loss=fnn.L2Loss(), seed=0)
    history = fnn.Trainer(net, batch_size=6, epochs=3, verbose=0, validation_data=(X[:5], t[:5])).fit(X, t)
    assert {"loss", "val_loss"} <= set(history) and "accuracy" not in history
    assert len(history["loss"]) == len(history["val_loss"]) == 3
    assert history["loss"][-1] < history["loss"][0]


OPTIMIZERS = {"sgd": lambda: fnn.SGD(lr=0.3), "momentum": lambda: fnn.SGD(lr=0.1, momentum=0.9),
              "adam": lambda: fnn.Adam(lr=0.02, beta1=0.8, beta2=0.99, eps=1e-7)}


def _reference_training(net, X, y, epochs, batch_size, head, opt):
    """Plain NumPy mini-batch training over X in order (no shuffling), the last batch smaller."""
    fcs = [layer for layer in net.layers if isinstance(layer, fnn.FullyConnected)]
    params = [fc.weights.astype(np.float64) for fc in fcs] + [fc.bias.astype(np.float64) for fc in fcs]
    slots = [[np.zeros_like(p) for p in params] for _ in range(2)]
    names = ["tanh", "identity"]
    history = {"loss": [], "accuracy": []}
    t = 0
    for _ in range(epochs):
        loss_sum = correct = 0.0
        for start in range(0, len(X), batch_size):
            xb, yb = X[start:start + batch_size], y[start:start + batch_size]
            ws, bs = params[:2], params[2:]
            acts = ref.mlp_forward(xb, ws, bs, names)
            if head == "fused softmax-ce":
                loss, dout = ref.softmax_ce_labels(acts[-1], yb)
            elif head == "l2":
                loss, dout = ref.l2(acts[-1], yb)
            else:              # SoftMax layer + CrossEntropyLoss on probabilities
                p = ref.softmax(acts[-1])
                loss, dp = ref.cross_entropy_labels(p, yb)
                dout = ref.softmax_backward(p, dp)
            if head != "l2":
                correct += np.sum(np.argmax(acts[-1], axis=1) == yb)
            dws, dbs, _ = ref.mlp_backward(acts, ws, names, dout)
            t += 1
            for i, g in enumerate(dws + dbs):
                if opt == "sgd":
                    params[i] = ref.sgd(params[i], g, 0.3)
                elif opt == "momentum":
                    params[i], slots[0][i] = ref.sgd_momentum(params[i], g, slots[0][i], 0.1, 0.9)
                else:
                    params[i], slots[0][i], slots[1][i] = ref.adam(params[i], g, slots[0][i], slots[1][i],
                                                                   0.02, 0.8, 0.99, 1e-7, t)
            loss_sum += loss * len(xb)
        history["loss"].append(loss_sum / len(X))
        history["accuracy"].append(correct / len(X))
    return params[:2], params[2:], history


def _check_training(head, opt, n, batch_size, epochs=2):
    X, y = data(n, 13, classes=3)
    layers = [fnn.FullyConnected(3, 5, dtype=np.float64), fnn.TanH(), fnn.FullyConnected(5, 3, dtype=np.float64)]
    if head == "fused softmax-ce":
        net = fnn.NeuralNetwork(layers, optimizer=OPTIMIZERS[opt](), seed=0)
    elif head == "l2":
        y = np.random.default_rng(14).standard_normal((n, 3))
        net = fnn.NeuralNetwork(layers, loss=fnn.L2Loss(), optimizer=OPTIMIZERS[opt](), seed=0)
    else:
        net = fnn.NeuralNetwork(layers + [fnn.SoftMax()], loss=fnn.CrossEntropyLoss(),
                                optimizer=OPTIMIZERS[opt](), seed=0)
    ws, bs, ref_history = _reference_training(net, X, y, epochs, batch_size, head, opt)
    history = net.fit(X, y, epochs=epochs, batch_size=batch_size, shuffle=False, verbose=0)
    fcs = [net.layers[0], net.layers[2]]
    for fc, w, b in zip(fcs, ws, bs):
        np.testing.assert_allclose(fc.weights, w, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(fc.bias, b, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(history["loss"], ref_history["loss"], rtol=1e-9)
    if head != "l2":
        np.testing.assert_allclose(history["accuracy"], ref_history["accuracy"], atol=1e-12)


@pytest.mark.parametrize("head", ["fused softmax-ce", "softmax layer + cross-entropy"])
@pytest.mark.parametrize("n,batch_size", [(10, 4), (7, 3), (5, 8), (6, 1)])
def test_training_with_a_smaller_last_batch_matches_reference(head, n, batch_size):
    _check_training(head, "sgd", n, batch_size)


@pytest.mark.parametrize("head", ["fused softmax-ce", "softmax layer + cross-entropy", "l2"])
@pytest.mark.parametrize("opt", ["sgd", "momentum", "adam"])
def test_training_with_each_optimizer_matches_reference(head, opt):
    """Over 3 epochs (optimizer state and Adam's step count carry across epochs), last batch smaller."""
    _check_training(head, opt, 11, 4, epochs=3)


def test_shuffle_false_is_deterministic_and_shuffle_true_uses_the_seed():
    X, y = data(40, 14)

    def run(shuffle, seed):
        net = small_net(optimizer=fnn.SGD(lr=0.2, momentum=0.5))
        fnn.Trainer(net, batch_size=7, epochs=2, shuffle=shuffle, seed=seed, verbose=0).fit(X, y)
        return weights_of(net)

    a, b = run(False, 0), run(False, 123)           # no shuffling: the seed does not matter
    for p, q in zip(a, b):
        assert np.array_equal(p, q)
    c, d, e = run(True, 0), run(True, 0), run(True, 1)
    for p, q in zip(c, d):
        assert np.array_equal(p, q)
    assert not np.array_equal(c[0], e[0])           # another shuffling seed, other weights
    assert not np.array_equal(a[0], c[0])           # shuffling changes the batches


def test_fit_does_not_modify_the_callers_data():
    X, y = data(20, 15, np.float32)
    X0, y0 = X.copy(), y.copy()
    small_net(np.float32).fit(X, y, epochs=2, batch_size=6, verbose=0)
    assert np.array_equal(X, X0) and np.array_equal(y, y0)


# ------------------------------------------------------------------------------------------- threads
def test_set_num_threads():
    original = numba.get_num_threads()
    X, y = data(30, 16, np.float32)
    try:
        fnn.set_num_threads(1)
        assert numba.get_num_threads() == 1
        h1 = small_net(np.float32).fit(X, y, epochs=2, batch_size=8, verbose=0)
        fnn.set_num_threads(2)
        assert numba.get_num_threads() == 2
        h2 = small_net(np.float32).fit(X, y, epochs=2, batch_size=8, verbose=0)
        np.testing.assert_allclose(h1["loss"], h2["loss"], rtol=1e-5)
        with pytest.raises(ValueError, match=r"\bn\b"):
            fnn.set_num_threads(0)
        with pytest.raises(ValueError):
            fnn.set_num_threads(-1)
        with pytest.raises(ValueError):
            fnn.set_num_threads(numba.config.NUMBA_NUM_THREADS + 1)
        assert numba.get_num_threads() == 2          # a rejected call changes nothing
    finally:
        numba.set_num_threads(original)


# -- objects shared between calls and networks (issue 20 item 8) ----------------------------------------
@pytest.mark.parametrize("intervening", ["fit", "step", "fit on a custom layer net", "predict through a custom layer"])
def test_backward_after_a_fit_or_step_is_refused(intervening):
    """forward(x, y), then something that changes the weights or the saved activations, then backward():
    a RuntimeError, never the gradient of other data or other weights."""
    class Double(fnn.Layer):
        def _forward(self, x):
            return x * 2

        def _backward(self, dy, need_input_grad=True):
            return dy * 2

    custom = "custom" in intervening
    net = fnn.NeuralNetwork([fnn.FullyConnected(3, 5), fnn.TanH(), Double(), fnn.FullyConnected(5, 4)]) \
        if custom else small_net()
    x, y = data(5, 3, dtype=net.dtype)
    net.forward(x, y)
    if intervening.startswith("fit"):
        net.fit(*data(9, 4, dtype=net.dtype), epochs=1, batch_size=4, verbose=0)
    elif intervening == "step":
        net.backward()
        net.step()
    else:
        net.predict(data(9, 4, dtype=net.dtype)[0])
    with pytest.raises(RuntimeError, match="forward"):
        net.backward()
    net.forward(x, y)           # a new forward(x, y) prepares backward again; zero_grad keeps it
    net.zero_grad()
    net.backward()


@pytest.mark.parametrize("what", ["optimizer", "loss", "layer"])
def test_an_object_of_one_network_is_refused_by_another_while_the_first_uses_it(what):
    first = small_net(optimizer=fnn.SGD(lr=0.1, momentum=0.9))
    with pytest.raises(ValueError, match="another NeuralNetwork"):
        if what == "optimizer":
            small_net(optimizer=first.optimizer)
        elif what == "loss":
            small_net(loss=first.loss)
        else:
            fnn.NeuralNetwork([first.layers[0]])
    second = small_net()
    if what != "layer":                 # (a network's layers cannot be replaced at all)
        with pytest.raises(ValueError, match="another NeuralNetwork"):
            setattr(second, what, getattr(first, what))
    # replaced, it is free again; a copy of the network gets its own
    if what == "optimizer":
        opt = first.optimizer
        first.optimizer = fnn.SGD(lr=0.1)
        second.optimizer = opt
    elif what == "loss":
        loss = first.loss
        first.loss = fnn.SoftmaxCrossEntropy()
        second.loss = loss
    import copy
    twin = copy.deepcopy(first)
    assert twin.optimizer is not first.optimizer and twin.optimizer.owner is twin and twin.loss.owner is twin
    twin.fit(*data(8), epochs=1, verbose=0)


def test_schedules_are_stateless_and_shareable_between_fits():
    sched = fnn.schedules.ReduceLROnPlateau("loss", patience=0, factor=0.5)
    a, b = small_net(), small_net()
    X, y = data(40)
    ha = a.fit(X, y, epochs=4, batch_size=8, verbose=0, lr_schedule=sched)
    hb = b.fit(X, y, epochs=4, batch_size=8, verbose=0, lr_schedule=sched)
    hc = small_net().fit(X, y, epochs=4, batch_size=8, verbose=0,
                         lr_schedule=fnn.schedules.ReduceLROnPlateau("loss", patience=0, factor=0.5))
    assert ha["lr"] == hb["lr"] == hc["lr"] and ha["loss"] == hb["loss"] == hc["loss"]


def test_an_early_stopping_object_serves_one_running_fit_at_a_time():
    es = fnn.callbacks.EarlyStopping("loss", patience=1)
    X, y = data(40)
    seen = []

    class Nested:
        """During a's fit, another network's fit with the same EarlyStopping object."""
        def on_epoch_end(self, epoch, history):
            if epoch == 1:
                with pytest.raises(RuntimeError, match="EarlyStopping"):
                    small_net().fit(X, y, epochs=1, verbose=0, callbacks=[es])
                seen.append(epoch)
            return False

    small_net().fit(X, y, epochs=2, verbose=0, callbacks=[es, Nested()])
    assert seen == [1]
    small_net().fit(X, y, epochs=2, verbose=0, callbacks=[es])     # sequential reuse is fine


def test_concurrent_predict_proba_during_a_fit_is_valid():
    """predict / predict_proba in other threads during a fit (both engines, float64) compute from a copy of
    the weights taken between two steps: every result is a valid probability table."""
    import threading
    rng = np.random.default_rng(0)
    X = rng.standard_normal((3000, 12))
    y = rng.integers(0, 4, 3000)
    net = fnn.NeuralNetwork([fnn.FullyConnected(12, 64, dtype=np.float64), fnn.TanH(),
                             fnn.FullyConnected(64, 4, dtype=np.float64)], optimizer=fnn.Adam(0.01), seed=0)
    problems, stop, calls = [], threading.Event(), [0]

    def predictor():
        while not stop.is_set():
            p = net.predict_proba(X[:700])
            labels = net.predict(X[:700])
            ok = (p.shape == (700, 4) and p.dtype == np.float64 and np.isfinite(p).all()
                  and np.allclose(p.sum(axis=1), 1, rtol=0, atol=16 * np.finfo(np.float64).eps)
                  and labels.shape == (700,) and labels.min() >= 0 and labels.max() < 4)
            calls[0] += 1
            if not ok:
                problems.append(p)

    threads = [threading.Thread(target=predictor) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for fused in (True, False):
            net.fit(X, y, epochs=3, batch_size=32, verbose=0, fused=fused)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert calls[0] > 0 and not problems


# -- G5: step() applies gradients of a backward(), never the ones a fit left from its last mini-batch ------
def _g5_net(opt):
    optimizer = fnn.SGD(lr=0.1, momentum=0.9) if opt == "sgd" else fnn.Adam(lr=0.01)
    return fnn.NeuralNetwork([fnn.FullyConnected(4, 8), fnn.ReLU(), fnn.FullyConnected(8, 2), fnn.SoftMax()],
                             optimizer=optimizer, seed=0)


def _g5_data():
    X = np.random.default_rng(0).random((40, 4)).astype(np.float32)
    return X, (X[:, 0] > 0.5).astype(int)


@pytest.mark.parametrize("opt", ["sgd", "adam"])
@pytest.mark.parametrize("fused", ["auto", False])
def test_step_after_fit_without_backward_is_refused_and_changes_nothing(opt, fused):
    net, (X, y) = _g5_net(opt), _g5_data()
    net.fit(X, y, epochs=1, verbose=0, batch_size=16, fused=fused)
    w, steps = net.layers[0].weights.copy(), net.optimizer.steps
    with pytest.raises(RuntimeError, match=r"step\(\) needs gradients from backward\(\)"):
        net.step()
    assert np.array_equal(net.layers[0].weights, w) and net.optimizer.steps == steps


def test_step_after_fit_is_allowed_again_after_backward_zero_grad_or_a_direct_layer_backward():
    net, (X, y) = _g5_net("sgd"), _g5_data()
    net.fit(X, y, epochs=1, verbose=0, batch_size=16)
    net.forward(X[:8], y[:8])
    net.backward()
    net.step()
    net.step()          # torch's semantics: stepping twice applies the same gradients twice (not refused)
    net.fit(X, y, epochs=1, verbose=0)
    net.zero_grad()
    net.step()
    net.fit(X, y, epochs=1, verbose=0)
    head = net.layers[2]
    head.forward(net.layers[1].forward(net.layers[0].forward(X[:4])))
    head.backward(np.ones((4, 2), np.float32))     # a hand-written backward pass counts as new gradients
    net.step()


def test_step_after_gradcheck_is_refused():
    net, (X, y) = _g5_net("sgd"), _g5_data()
    fnn.gradcheck(net, X[:3], y[:3])
    with pytest.raises(RuntimeError, match="step"):
        net.step()


# -- L13: a custom layer whose _forward / _backward cannot take fit's arguments is refused when built -------
def _custom(backward=None, forward=None):
    def _forward(self, x):
        self._out = x * 1
        return self._out

    def _backward_ok(self, dy, need_input_grad=True):
        return dy * 1

    ns = {"_forward": forward or _forward, "_backward": backward or _backward_ok, "n_outputs": None}
    return type("Bad", (fnn.Layer,), ns)


@pytest.mark.parametrize("backward, forward", [
    (lambda self, dy: dy * 1, None), (lambda self: None, None), (lambda self, dy, need, extra: dy, None),
    (None, lambda self: None), (None, lambda self, x, y: x),
])
def test_a_custom_layer_with_the_wrong_signature_is_refused_at_construction_and_registration(backward, forward):
    cls = _custom(backward, forward)
    expected = "_backward(self, dy, need_input_grad=True)" if forward is None else "_forward(self, x)"
    with pytest.raises(TypeError, match=re.escape(expected)) as err:
        fnn.NeuralNetwork([fnn.FullyConnected(4, 2), cls()])
    assert "layers[1] (Bad)" in str(err.value)
    with pytest.raises(TypeError, match=re.escape(expected)):
        fnn.register_layer(cls)


@pytest.mark.parametrize("backward", [lambda self, dy, need_input_grad=True: dy * 1,
                                      lambda self, dy, *args, **kw: dy * 1, lambda self, *a: a[0] * 1])
def test_custom_layers_with_the_protocol_signature_train(backward):
    cls = _custom(backward)
    net = fnn.NeuralNetwork([fnn.FullyConnected(4, 2), cls(), fnn.SoftMax()], seed=0)
    X = np.random.default_rng(0).random((20, 4)).astype(np.float32)
    net.fit(X, (X[:, 0] > 0.5).astype(int), epochs=1, verbose=0, fused=False)
