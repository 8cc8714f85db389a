"""fastnn.training: the loop re-checks what callbacks change (issue 20 class 5), refuses bad callbacks
before the first epoch, builds the plan once per epoch and keeps its engines behind one protocol."""
import numpy as np
import pytest

import fastnn as fnn
from fastnn import engines, schedules, training
from fastnn.engines.local import LocalRun
from fastnn.engines.per_layer import LayerEpoch
from tests.helpers import make_data, make_net, same_history, same_state

ENGINES = ["auto", False]          # the fused engine (the default) and the per-layer engine


class At:
    """A callback that runs ``action(net, history)`` at the end of epoch ``epoch``."""

    def __init__(self, epoch, action, net=None):
        self.epoch, self.action, self.net = epoch, action, net

    def on_train_begin(self, net):
        self.net = net

    def on_epoch_end(self, epoch, history):
        if epoch == self.epoch:
            self.action(self.net, history)
        return False


@pytest.mark.parametrize("fused", ENGINES)
def test_a_replaced_optimizer_is_the_one_the_schedule_drives(fused):
    net, (X, y) = make_net(opt="adam"), make_data()
    new = fnn.Adam(lr=0.5)
    old = net.optimizer

    def replace(net, history):
        net.optimizer = new
    h = net.fit(X, y, epochs=4, verbose=0, fused=fused, lr_schedule=schedules.StepLR(1, 0.5),
                callbacks=[At(1, replace)])
    # the new optimizer's rate when installed (0.5) is the schedule's base from epoch 2 on
    assert h["lr"] == [0.01, 0.5 * 0.5, 0.5 * 0.25, 0.5 * 0.125]
    assert old.lr == 0.01 and old.steps == 3          # 150 rows / batch 64: 3 steps, then never again
    assert new.steps == 9 and net.optimizer is new and new.lr == 0.5    # the schedule's rate is not left


@pytest.mark.parametrize("fused", ENGINES)
def test_a_rate_a_callback_sets_is_used_and_recorded(fused):
    net, (X, y) = make_net(opt="sgd"), make_data()

    def slow(net, history):
        net.optimizer.lr = 0.001
    h = net.fit(X, y, epochs=3, verbose=0, fused=fused, callbacks=[At(1, slow)])
    assert h["lr"] == [0.05, 0.001, 0.001]


@pytest.mark.parametrize("fused", ENGINES)
def test_a_rate_set_beside_a_schedule_stops_clearly(fused):
    net, (X, y) = make_net(), make_data()

    def fast(net, history):
        net.optimizer.lr = 0.3
    with pytest.raises(ValueError, match="lr_schedule drives it"):
        net.fit(X, y, epochs=3, verbose=0, fused=fused, lr_schedule=schedules.ExponentialLR(0.9),
                callbacks=[At(1, fast)])
    assert len(net.history["loss"]) == 1


@pytest.mark.parametrize("fused", ["auto", False, True])
def test_a_replaced_loss_is_the_one_trained(fused):
    """SoftmaxCrossEntropy -> SigmoidCrossEntropy after epoch 1 (both fused heads, one-hot targets): the
    rest of the fit equals a second fit with the new loss from the same state (the fused engine used to
    keep training the old loss)."""
    X, labels = make_data(features=6, classes=3)
    Y = np.eye(3, dtype=np.float32)[labels]
    a = make_net(sizes=(6, 12, 3), loss=fnn.SoftmaxCrossEntropy())
    h = a.fit(X, Y, epochs=3, verbose=0, fused=fused, seed=4,
              callbacks=[At(1, lambda net, _: setattr(net, "loss", fnn.SigmoidCrossEntropy()))])
    b = make_net(sizes=(6, 12, 3), loss=fnn.SoftmaxCrossEntropy())
    first = b.fit(X, Y, epochs=1, verbose=0, fused=fused, seed=4)
    b.loss = fnn.SigmoidCrossEntropy()
    rest = b.fit(X, Y, epochs=2, verbose=0, fused=fused, seed=4)
    same_state(a, b)
    assert h["loss"] == first["loss"] + rest["loss"]


@pytest.mark.parametrize("fused", ENGINES)
def test_a_loss_that_cannot_train_on_the_targets_stops_clearly(fused):
    net, (X, y) = make_net(), make_data()
    with pytest.raises(ValueError, match="a callback changed net.loss"):
        net.fit(X, y, epochs=3, verbose=0, fused=fused,
                callbacks=[At(1, lambda net, _: setattr(net, "loss", fnn.L2Loss()))])
    assert len(net.history["loss"]) == 1


@pytest.mark.parametrize("fused", ENGINES)
@pytest.mark.parametrize("change", [lambda h: h.pop("loss"), lambda h: h["accuracy"].pop(),
                                    lambda h: h.__setitem__("lr", (1,)), lambda h: h["loss"].append(0.5)])
def test_history_lists_of_the_loop_a_callback_breaks_stop_clearly(fused, change):
    net, (X, y) = make_net(), make_data()
    with pytest.raises(ValueError, match=r"a callback changed history\['(loss|accuracy|lr)'\]"):
        net.fit(X, y, epochs=3, verbose=0, fused=fused, callbacks=[At(1, lambda net, h: change(h))])


@pytest.mark.parametrize("fused", ENGINES)
def test_history_keys_a_callback_adds_are_kept(fused):
    net, (X, y) = make_net(), make_data()
    h = net.fit(X, y, epochs=3, verbose=0, fused=fused,
                callbacks=[At(2, lambda net, h: h.setdefault("mine", []).append(2.0))])
    assert h["mine"] == [2.0] and len(h["loss"]) == 3


class Spy:
    def __init__(self):
        self.epochs = []

    def on_epoch_end(self, epoch, history):
        self.epochs.append(epoch)


@pytest.mark.parametrize("fused", ENGINES)
@pytest.mark.parametrize("bad, exc", [(fnn.callbacks.EarlyStopping, "the class EarlyStopping"),
                                      (object(), "on_epoch_end"), ("stop", "callbacks must be"),
                                      (type("NoHook", (), {"on_epoch_end": 3})(), "on_epoch_end")])
def test_bad_callbacks_are_refused_before_the_first_epoch(fused, bad, exc):
    net, (X, y) = make_net(), make_data()
    before = [p.copy() for p in net.params]
    spy = Spy()
    with pytest.raises(TypeError, match=exc):
        net.fit(X, y, epochs=2, verbose=0, fused=fused, callbacks=[spy, bad] if bad != "stop" else bad)
    assert spy.epochs == [] and all(np.array_equal(p, q) for p, q in zip(before, net.params))


def test_the_plan_is_built_once_per_epoch(monkeypatch):
    net, (X, y) = make_net(), make_data()
    calls = []
    real = type(net).plan

    def counting(self, *args, **kwargs):
        calls.append(1)
        return real(self, *args, **kwargs)
    monkeypatch.setattr(type(net), "plan", counting)
    net.fit(X, y, epochs=4, verbose=0, fused=False)
    assert len(calls) == 1 + 4           # once at the start, once per epoch: the engine gets the loop's


def test_engines_share_one_protocol():
    """LayerEpoch and the fused EpochRunner: (order, epoch, Progress) -> (mean loss, correct), equal."""
    from fastnn.engines import fused as fused_engine
    from fastnn.signals import StopFlag
    X, y = make_data()
    results = []
    for make in (lambda n: LayerEpoch(n, X, y, 32, None), lambda n: fused_engine.EpochRunner(n, X, y, 32)):
        net = make_net(dtype=np.float32)
        engine = make(net)
        with net.training_session("test"):
            progress = engines.Progress(StopFlag(), plan=net.plan())
            results.append(engine(np.arange(len(X)), 1, progress))
    loss, correct = results[0]
    assert results[1][1] == correct
    assert abs(results[1][0] - loss) <= 1e-5 * loss


def test_local_run_calls_no_private_trainer_method():
    tr = training.Trainer(make_net(), epochs=1, verbose=0)
    X, y = make_data()
    Xc, yc, w, val = LocalRun().prepare(tr, X, y, None)
    assert Xc.shape == X.shape and w is None and val is None
    assert LocalRun().use_fused(tr) is True


@pytest.mark.parametrize("fused", ENGINES)
@pytest.mark.parametrize("what", ["optimizer", "loss"])
def test_replacing_what_a_checkpoint_rebuilds_is_refused_in_a_checkpointed_fit(tmp_path, fused, what):
    net, (X, y) = make_net(), make_data()
    new = fnn.SGD(lr=0.1) if what == "optimizer" else fnn.SoftmaxCrossEntropy()
    with pytest.raises(ValueError, match=f"a callback replaced net.{what} in a fit with checkpoint="):
        net.fit(X, y, epochs=3, verbose=0, fused=fused, checkpoint=tmp_path / "c.ckpt",
                callbacks=[At(1, lambda net, _: setattr(net, what, new))])
    assert len(net.history["loss"]) == 1


@pytest.mark.parametrize("verbose", [0, 1])
def test_a_fit_that_must_compile_says_so_first_when_verbose(verbose, monkeypatch, capsys):
    """Seconds of compiling before the first epoch must not look like a hang: a verbose fit says so on
    stderr (the engine's compile_pending), and its progress bar reads "compiling" until the first epoch."""
    from fastnn.engines import fused as fused_engine
    monkeypatch.setattr(fused_engine.EpochRunner, "compile_pending", lambda self: "fastnn: compiling the kernel")
    net, (X, y) = make_net(), make_data()
    net.fit(X, y, epochs=2, verbose=verbose)
    err = capsys.readouterr().err
    assert ("fastnn: compiling the kernel" in err) == bool(verbose)
    if verbose:
        assert "compiling:" in err and "training:" in err
    monkeypatch.setattr(fused_engine.EpochRunner, "compile_pending", lambda self: None)
    net.fit(X, y, epochs=1, verbose=verbose)
    assert "compiling" not in capsys.readouterr().err


@pytest.fixture
def say_at_once(monkeypatch):
    """The compile notice speaks at the first compile (the test compiles for milliseconds, not seconds)."""
    monkeypatch.setattr(training, "COMPILE_NOTICE_AFTER", 0.0)


@pytest.mark.parametrize("verbose", [0, 1])
def test_a_fit_whose_engine_cannot_tell_ahead_says_so_when_compiling_starts(verbose, capsys, say_at_once):
    """The per-layer engine (here: a custom layer) has no compile_pending: the line comes when Numba starts
    compiling in the fit's first epoch (a kernel made fresh here, so it is in no cache), once, and the bar
    reads "compiling" until that epoch ends; a fit that compiles nothing says nothing."""
    from numba import njit

    @njit(cache=False)
    def double(x):
        return 2 * x

    class Doubler(fnn.Layer):
        def _forward(self, x):
            self._out = double(x)
            return self._out

        def _backward(self, dy, need_input_grad=True):
            return double(dy)

    (X, y) = make_data()
    net = fnn.NeuralNetwork([fnn.FullyConnected(X.shape[1], 8, seed=0), Doubler(), fnn.FullyConnected(8, 4, seed=1)],
                            loss=fnn.SoftmaxCrossEntropy(), seed=0)
    net.fit(X, y, epochs=2, verbose=verbose)
    err = capsys.readouterr().err
    assert err.count(training.COMPILE_LINE) == verbose
    if verbose:
        assert "compiling:" in err and "training:" in err
    net.fit(X, y, epochs=2, verbose=verbose)
    assert "compiling" not in capsys.readouterr().err


# -- T1: every Trainer setting is checked when assigned, with the constructor's own check -----------------
BAD_SETTINGS = [
    ("epochs", -1), ("epochs", 0), ("epochs", 1.5), ("epochs", None), ("batch_size", 0), ("batch_size", -3),
    ("batch_size", 2.5), ("batch_size", "x"), ("batch_size", None), ("shuffle", "x"), ("shuffle", None),
    ("fused", "maybe"), ("fused", 1), ("verbose", "x"), ("verbose", 3), ("checkpoint_every", -1),
    ("checkpoint_every", 0), ("checkpoint_every", "x"), ("validation_split", "x"), ("validation_split", -0.5),
    ("validation_split", 1.0), ("validation_data", "x"), ("validation_data", (1, 2, 3)), ("seed", "x"),
    ("seed", -1), ("lr_schedule", "x"), ("lr_schedule", 5), ("net", None), ("net", 3), ("checkpoint", 5),
    ("class_weight", "x"), ("class_weight", {0: -1}), ("sample_order", np.arange(40)),
    ("distributed", "x"), ("callbacks", 3), ("callbacks", [object()]),
]


@pytest.mark.parametrize("name, value", BAD_SETTINGS)
def test_a_bad_setting_assigned_later_is_refused_like_in_the_constructor(name, value):
    net = make_net()
    with pytest.raises((TypeError, ValueError)) as in_init:
        fnn.Trainer(net, **{"verbose": 0, name: value})
    t = fnn.Trainer(net, epochs=2, verbose=0)
    before = getattr(t, name)
    with pytest.raises(type(in_init.value)) as assigned:
        setattr(t, name, value)
    assert name in str(assigned.value) or name in str(in_init.value)
    assert getattr(t, name) is before or getattr(t, name) == before


def test_checkpoint_seconds_is_checked():
    t = fnn.Trainer(make_net(), verbose=0)
    with pytest.raises(ValueError, match="checkpoint_seconds"):
        t.checkpoint_seconds = -1
    assert t.checkpoint_seconds == 0.0


def test_good_settings_assigned_later_are_used():
    net, (X, y) = make_net(), make_data()
    t = fnn.Trainer(net, epochs=2, verbose=0)
    t.epochs, t.batch_size, t.shuffle, t.verbose = np.int64(3), 8, np.bool_(False), True
    assert (t.epochs, t.shuffle, t.verbose) == (3, False, 1) and type(t.epochs) is int
    assert len(t.fit(X, y)["loss"]) == 3


def test_settings_that_conflict_after_assignment_are_refused_at_fit(tmp_path):
    net, (X, y) = make_net(), make_data()
    t = fnn.Trainer(net, epochs=2, verbose=0, validation_split=0.25)
    t.validation_data = (X, y)
    with pytest.raises(ValueError, match="not both"):
        t.fit(X, y)
    t = fnn.Trainer(net, epochs=2, verbose=0, sample_order=lambda n: np.arange(n))
    t.checkpoint = str(tmp_path / "c.fnn")
    with pytest.raises(ValueError, match="sample_order cannot be combined"):
        t.fit(X, y)


# -- T2: a sample_order must return integer positions ------------------------------------------------------
@pytest.mark.parametrize("order, exc", [
    (lambda n: np.arange(n) + 0.5, TypeError), (lambda n: np.arange(n).astype(float), TypeError),
    (lambda n: None, TypeError), (lambda n: "abc", TypeError), (lambda n: np.ones(n, bool), TypeError),
    (lambda n: [str(i) for i in range(n)], TypeError), (lambda n: np.zeros(n, int), ValueError),
    (lambda n: np.arange(n)[::-1][:-1], ValueError), (lambda n: np.arange(n).reshape(-1, 1), ValueError),
])
def test_a_sample_order_that_is_not_an_integer_permutation_is_refused(order, exc):
    net, (X, y) = make_net(), make_data()
    with pytest.raises(exc, match="sample_order must return a permutation"):
        fnn.Trainer(net, epochs=2, verbose=0, sample_order=order).fit(X, y)


@pytest.mark.parametrize("make", [lambda n: list(range(n))[::-1], lambda n: np.arange(n, dtype=np.uint32),
                                  lambda n: np.arange(n, dtype=np.int32)[::-1]])
def test_integer_sample_orders_of_any_int_type_are_accepted(make):
    net, (X, y) = make_net(), make_data()
    assert len(fnn.Trainer(net, epochs=2, verbose=0, sample_order=make).fit(X, y)["loss"]) == 2


def _compiling_first(monkeypatch, owner, name):
    """Make ``owner.name`` (a fit) compile a fresh Numba function first: a compile that no cache can hold."""
    from numba import njit
    original = getattr(owner, name)

    def fit(*args, **kwargs):
        njit(cache=False)(lambda x: x + 1)(1)
        return original(*args, **kwargs)
    monkeypatch.setattr(owner, name, fit)


@pytest.mark.parametrize("verbose", [False, True])
def test_a_verbose_estimator_says_when_it_compiles(verbose, monkeypatch, capsys, say_at_once):
    from fastnn import estimators
    _compiling_first(monkeypatch, estimators.Trainer, "fit")
    X, y = make_data()
    with pytest.warns(estimators.ConvergenceWarning):
        estimators.MLPClassifier(max_iter=2, verbose=verbose).fit(X, y)
    assert capsys.readouterr().err.count(training.COMPILE_LINE) == int(verbose)


@pytest.mark.parametrize("quiet", [False, True])
def test_the_cli_without_a_terminal_still_says_when_it_compiles(quiet, monkeypatch, capsys, say_at_once):
    """No progress bar when stderr is not a terminal (a pipe, a log, a test's subprocess), but the line that
    says a compile has started still comes; -q asks for the one summary line only."""
    from fastnn import cli
    _compiling_first(monkeypatch, training.Trainer, "fit")
    assert cli.main(["train", "--epochs", "1", "--hidden", "8"] + (["-q"] if quiet else [])) == 0
    err = capsys.readouterr().err
    assert err.count(training.COMPILE_LINE) == (0 if quiet else 1)
    assert "training:" not in err         # (no bar)


def test_a_short_compile_needs_no_word(capsys):
    """The line comes only once compiling has taken COMPILE_NOTICE_AFTER seconds (a compile of milliseconds,
    as most of a warm process's are, says nothing); the bar still reads "compiling" while it runs."""
    from numba import njit
    with training.CompileNotice() as notice:
        njit(cache=False)(lambda x: x * 3)(2)
    assert not notice and training.COMPILE_LINE not in capsys.readouterr().err
