"""fastnn.schedules: the rates of StepLR, ExponentialLR, CosineAnnealingLR and ReduceLROnPlateau against
torch.optim.lr_scheduler's (when torch is installed), InverseScaling against scikit-learn's invscaling,
argument checks, get(), configs, and the purity that makes a resumed fit bit-exact."""
import importlib.util
import json
import math
import warnings

import numpy as np
import pytest

import fastnn as fnn
from fastnn import schedules as S

EPOCHS = 30
BASE = 0.1
HAVE_TORCH = importlib.util.find_spec("torch") is not None
needs_torch = pytest.mark.skipif(not HAVE_TORCH, reason="torch is not installed: comparison with "
                                                        "torch.optim.lr_scheduler skipped")


def ours(schedule, base=BASE, epochs=EPOCHS, losses=None, key="val_loss"):
    """The rate of every epoch 1..epochs, epoch e seeing the first e - 1 losses."""
    rates = []
    for e in range(1, epochs + 1):
        history = {"loss": [], key: list(losses[:e - 1])} if losses is not None else {}
        rates.append(schedule.lr(e, base, history, 0))
    return rates


def torch_rates(make, base=BASE, epochs=EPOCHS, losses=None):
    """The lr torch's optimizer holds during each epoch, stepping the scheduler after each."""
    import torch
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base)
    sched = make(torch.optim.lr_scheduler, opt)
    rates = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for e in range(epochs):
            rates.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step(losses[e]) if losses is not None else sched.step()
    return rates


def assert_rates(got, expected):
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12 * BASE)


# -- against torch -----------------------------------------------------------------------------------------
@needs_torch
@pytest.mark.parametrize("step_size,gamma", [(1, 0.9), (3, 0.5), (7, 0.1), (4, 1.5)])
def test_step_lr_matches_torch(step_size, gamma):
    expected = torch_rates(lambda m, o: m.StepLR(o, step_size=step_size, gamma=gamma))
    assert_rates(ours(S.StepLR(step_size, gamma=gamma)), expected)


@needs_torch
@pytest.mark.parametrize("gamma", [0.95, 0.5, 1.02])
def test_exponential_lr_matches_torch(gamma):
    assert_rates(ours(S.ExponentialLR(gamma)), torch_rates(lambda m, o: m.ExponentialLR(o, gamma=gamma)))


@needs_torch
@pytest.mark.parametrize("T_max,eta_min", [(30, 0.0), (10, 1e-3), (7, 0.05), (1, 1e-4)])
def test_cosine_annealing_lr_matches_torch(T_max, eta_min):
    # past T_max (T_max < 30) the rate climbs back up the cosine, in torch and here
    expected = torch_rates(lambda m, o: m.CosineAnnealingLR(o, T_max=T_max, eta_min=eta_min))
    assert_rates(ours(S.CosineAnnealingLR(T_max, eta_min=eta_min)), expected)


def made_up_losses(kind, n=EPOCHS):
    rng = np.random.default_rng(3)
    if kind == "plateaus":      # improves, stalls, improves a little, stalls, NaN once
        v = [1.0, 0.8, 0.7, 0.7, 0.71, 0.69999, 0.7, 0.72, 0.6, 0.6, 0.65, 0.61, 0.6, 0.59995, 0.7]
        v += [0.5, 0.55, float("nan"), 0.56, 0.5, 0.5, 0.5, 0.499, 0.52, 0.53, 0.54, 0.55, 0.4, 0.41, 0.42]
        return v[:n]
    if kind == "stall":         # improves for 5 epochs, then flat: default patience 10 reduces twice
        return [1.0 - 0.1 * min(i, 4) for i in range(n)]
    if kind == "noisy":
        return list(1.0 / np.arange(1, n + 1) ** 0.3 + 0.05 * rng.standard_normal(n))
    if kind == "accuracy":      # rises with stalls, for mode="max"
        return list(np.minimum(1.0, np.cumsum(np.where(rng.random(n) < 0.4, 0.05, 0.0)) + 0.3))
    raise AssertionError(kind)


PLATEAU_CASES = [
    ("stall", dict()),
    ("plateaus", dict(patience=0)),
    ("plateaus", dict(patience=1, factor=0.5)),
    ("plateaus", dict(patience=2, factor=0.5, cooldown=2)),
    ("plateaus", dict(patience=1, factor=0.3, threshold=0.01, threshold_mode="abs")),
    ("plateaus", dict(patience=0, factor=0.1, min_lr=2e-4)),
    ("plateaus", dict(patience=0, factor=0.5, min_lr=0.0999)),      # clipped to min_lr, then no change
    ("noisy", dict(patience=2, factor=0.7, threshold=0.05)),
    ("noisy", dict(patience=1, factor=0.5, cooldown=1, threshold_mode="abs", threshold=0.0)),
    ("accuracy", dict(mode="max", patience=1, factor=0.5)),
    ("accuracy", dict(mode="max", patience=2, factor=0.2, threshold=0.02, threshold_mode="abs", cooldown=1)),
]


@needs_torch
@pytest.mark.parametrize("kind,kwargs", PLATEAU_CASES)
def test_reduce_lr_on_plateau_matches_torch(kind, kwargs):
    losses = made_up_losses(kind)
    expected = torch_rates(lambda m, o: m.ReduceLROnPlateau(o, **kwargs), losses=losses)
    got = ours(S.ReduceLROnPlateau(**kwargs), losses=losses)
    assert_rates(got, expected)
    assert len(set(got)) > 1                                        # the case does reduce the rate


def test_reduce_lr_on_plateau_by_hand():
    """Without torch: patience 1, the rate halves after two epochs without improvement."""
    s = S.ReduceLROnPlateau(patience=1, factor=0.5)
    got = ours(s, base=1.0, epochs=8, losses=[1.0, 0.9, 0.9, 0.9, 0.9, 0.9, 0.8, 0.8])
    assert got == [1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.25, 0.25]


def test_reduce_lr_on_plateau_is_pure_and_cache_free_of_effect():
    """The same arguments give the same rate whatever was asked before (a resumed fit, a different
    history, another base rate), and a fresh object agrees with a used one."""
    losses = made_up_losses("plateaus")
    s = S.ReduceLROnPlateau(patience=1, factor=0.5)
    forward = ours(s, losses=losses)
    backward = [s.lr(e, BASE, {"val_loss": losses[:e - 1]}, 0) for e in range(EPOCHS, 0, -1)][::-1]
    assert forward == backward
    other = [1.0] * EPOCHS                                   # never improves after epoch 1
    assert ours(s, losses=other) == ours(S.ReduceLROnPlateau(patience=1, factor=0.5), losses=other)
    assert ours(s, losses=losses) == forward
    assert ours(s, base=0.3, losses=losses) == ours(S.ReduceLROnPlateau(patience=1, factor=0.5), base=0.3,
                                                    losses=losses)
    # a longer history than epoch - 1 values: only the first epoch - 1 count
    assert s.lr(5, BASE, {"val_loss": losses}, 0) == forward[4]


def test_reduce_lr_on_plateau_missing_key():
    s = S.ReduceLROnPlateau(monitor="val_loss")
    assert s.lr(1, BASE, {}, 0) == BASE                      # nothing to look at yet
    with pytest.raises(ValueError, match=r"'val_loss'.*keys present: \['accuracy', 'loss'\]"):
        s.lr(2, BASE, {"loss": [1.0], "accuracy": [0.5]}, 0)
    with pytest.raises(ValueError, match="need 3 values, the history has 1"):
        s.lr(4, BASE, {"val_loss": [1.0]}, 0)


# -- InverseScaling against scikit-learn -------------------------------------------------------------------
@pytest.mark.parametrize("power_t", [0.5, 0.25, 1.0, 0.0])
def test_inverse_scaling_formula(power_t):
    s = S.InverseScaling(power_t=power_t)
    n = 137
    for e in range(1, 20):
        t = (e - 1) * n
        assert s.lr(e, 0.01, {}, t) == 0.01 / (t + 1) ** power_t
    assert s.lr(1, 0.01, {}, 0) == 0.01


def test_inverse_scaling_matches_sklearn_optimizer():
    mod = pytest.importorskip("sklearn.neural_network._stochastic_optimizers",
                              reason="scikit-learn is not installed: comparison with its SGDOptimizer skipped")
    opt = mod.SGDOptimizer([np.zeros(2)], learning_rate_init=0.05, lr_schedule="invscaling", power_t=0.4)
    s = S.InverseScaling(power_t=0.4)
    t = 0
    for e in range(1, 25):
        assert s.lr(e, 0.05, {}, t) == opt.learning_rate
        t += 93                                              # scikit-learn's t_ after the epoch
        opt.iteration_ends(t)


# -- closed forms without torch ----------------------------------------------------------------------------
def test_closed_forms():
    assert ours(S.StepLR(2, gamma=0.5), base=1.0, epochs=6) == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]
    assert ours(S.ExponentialLR(0.5), base=1.0, epochs=4) == [1.0, 0.5, 0.25, 0.125]
    c = ours(S.CosineAnnealingLR(4, eta_min=0.1), base=1.1, epochs=9)
    np.testing.assert_allclose(c, [1.1, 0.1 + 0.5 * (1 + math.cos(math.pi / 4)), 0.6,
                                   0.1 + 0.5 * (1 - math.cos(math.pi / 4)), 0.1,
                                   0.1 + 0.5 * (1 - math.cos(math.pi / 4)), 0.6,
                                   0.1 + 0.5 * (1 + math.cos(math.pi / 4)), 1.1], rtol=1e-14)


# -- bad rates ---------------------------------------------------------------------------------------------
def test_rate_that_is_not_positive_raises_naming_schedule_and_epoch():
    s = S.CosineAnnealingLR(10)                                  # eta_min 0: rate 0 at epoch 11
    assert s.lr(10, BASE, {}, 0) > 0
    with pytest.raises(ValueError, match=r"CosineAnnealingLR\(T_max=10, eta_min=0.0\).*epoch 11.*eta_min > 0"):
        s.lr(11, BASE, {}, 0)
    with pytest.raises(ValueError, match="ExponentialLR.*epoch 2000"):
        S.ExponentialLR(1e-3).lr(2000, BASE, {}, 0)              # underflows to 0
    with pytest.raises(ValueError, match="StepLR.*epoch 500"):
        S.StepLR(1, gamma=10.0).lr(500, BASE, {}, 0)             # overflows to inf


@pytest.mark.parametrize("value", [0.0, -0.1, float("nan"), float("inf"), "0.1", None, True])
def test_function_rate_that_is_bad_raises(value):
    s = S.get(lambda epoch: value)
    with pytest.raises(ValueError, match=r"FunctionSchedule\(.*lambda.*\).*epoch 3"):
        s.lr(3, BASE, {}, 0)


# -- get() -------------------------------------------------------------------------------------------------
def test_get():
    step = S.StepLR(3)
    assert S.get(step) is step
    assert S.get(None) is None
    f = S.get(lambda epoch: 0.1 / epoch)
    assert isinstance(f, S.Schedule)
    assert f.lr(4, 1.0, {}, 0) == 0.025

    class Mine:                                   # a user's own object with the lr protocol
        def lr(self, epoch, base_lr, history, samples_seen):
            return base_lr / epoch + samples_seen * 0.0
    m = S.get(Mine())
    assert m.lr(2, 0.2, {}, 0) == 0.1
    for bad in (0.1, "cosine", [S.StepLR(3)], {"type": "StepLR"}):
        with pytest.raises(TypeError, match="lr_schedule must be"):
            S.get(bad)
    with pytest.raises(TypeError, match=r"not the class StepLR: write StepLR\(...\)"):
        S.get(S.StepLR)
    with pytest.raises(TypeError, match="not the class float$"):
        S.get(float)


# -- argument checks ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("make,name", [
    (lambda: S.StepLR(0), "step_size"), (lambda: S.StepLR(2.0), "step_size"), (lambda: S.StepLR(True), "step_size"),
    (lambda: S.StepLR(2, gamma=0), "gamma"), (lambda: S.StepLR(2, gamma=float("nan")), "gamma"),
    (lambda: S.ExponentialLR(-0.5), "gamma"), (lambda: S.ExponentialLR("0.9"), "gamma"),
    (lambda: S.CosineAnnealingLR(0), "T_max"), (lambda: S.CosineAnnealingLR(10, eta_min=-1e-3), "eta_min"),
    (lambda: S.CosineAnnealingLR(10, eta_min=float("inf")), "eta_min"),
    (lambda: S.InverseScaling(-0.5), "power_t"), (lambda: S.InverseScaling(None), "power_t"),
    (lambda: S.ReduceLROnPlateau(monitor=""), "monitor"), (lambda: S.ReduceLROnPlateau(monitor=3), "monitor"),
    (lambda: S.ReduceLROnPlateau(factor=1.0), "factor"), (lambda: S.ReduceLROnPlateau(factor=0), "factor"),
    (lambda: S.ReduceLROnPlateau(patience=-1), "patience"), (lambda: S.ReduceLROnPlateau(patience=1.5), "patience"),
    (lambda: S.ReduceLROnPlateau(mode="auto"), "mode"), (lambda: S.ReduceLROnPlateau(threshold=-1), "threshold"),
    (lambda: S.ReduceLROnPlateau(threshold_mode="relative"), "threshold_mode"),
    (lambda: S.ReduceLROnPlateau(cooldown=-2), "cooldown"), (lambda: S.ReduceLROnPlateau(min_lr=-1), "min_lr"),
    (lambda: S.ReduceLROnPlateau(eps=float("nan")), "eps"),
])
def test_constructor_arguments_are_checked(make, name):
    with pytest.raises(ValueError, match=rf"\b{name} must be"):
        make()


@pytest.mark.parametrize("args,name", [((0, 0.1, {}, 0), "epoch"), ((1.0, 0.1, {}, 0), "epoch"),
                                       ((1, 0.0, {}, 0), "base_lr"), ((1, float("nan"), {}, 0), "base_lr"),
                                       ((1, 0.1, {}, -1), "samples_seen"), ((1, 0.1, {}, 2.5), "samples_seen")])
def test_lr_arguments_are_checked(args, name):
    with pytest.raises(ValueError, match=rf"\b{name} must be"):
        S.StepLR(2).lr(*args)
    with pytest.raises(TypeError, match="history must be a dict"):
        S.StepLR(2).lr(1, 0.1, [1.0], 0)


# -- config, repr, saving ----------------------------------------------------------------------------------
ALL = [S.StepLR(5, gamma=0.5), S.ExponentialLR(0.97), S.CosineAnnealingLR(50, eta_min=1e-5),
       S.InverseScaling(0.25),
       S.ReduceLROnPlateau(monitor="val_accuracy", factor=0.5, patience=3, mode="max", threshold=0.01,
                           threshold_mode="abs", cooldown=2, min_lr=1e-6)]


@pytest.mark.parametrize("schedule", ALL, ids=lambda s: type(s).__name__)
def test_config_round_trip(schedule):
    name = type(schedule).__name__
    assert S.SCHEDULE_TYPES[name] is type(schedule)
    again = S.SCHEDULE_TYPES[name](**json.loads(json.dumps(schedule.config())))
    assert again == schedule and again.config() == schedule.config()
    assert S.from_config(json.loads(json.dumps(S.to_config(schedule)))) == schedule
    assert repr(schedule).startswith(name + "(") and eval(repr(schedule), vars(S)) == schedule
    history = {"val_accuracy": [0.1, 0.2, 0.2, 0.2, 0.2, 0.2, 0.3]}
    assert again.lr(8, 0.1, history, 800) == schedule.lr(8, 0.1, history, 800)


def test_to_config_of_nothing_and_functions():
    assert S.to_config(None) is None and S.from_config(None) is None
    assert S.to_config(S.get(lambda e: 0.1)) is None
    with pytest.raises(ValueError, match="unknown schedule type 'Warmup'"):
        S.from_config({"type": "Warmup", "config": {}})


def test_reachable_from_package():
    assert fnn.schedules is S and fnn.schedules.StepLR is S.StepLR


# -- L1: any rate a schedule gives is checked, without leaking Python's conversion errors -------------------
def _l1_fit(epochs=2, dtype=np.float32, **kw):
    X = np.random.default_rng(0).random((40, 4)).astype(dtype)
    y = (X[:, 0] > 0.5).astype(int)
    net = fnn.NeuralNetwork([fnn.FullyConnected(4, 2, dtype=dtype), fnn.SoftMax()], seed=0)
    seen = []

    class Count:
        def on_epoch_end(self, epoch, history):
            seen.append(epoch)

    try:
        return net.fit(X, y, epochs=epochs, verbose=0, callbacks=[Count()], **kw)
    finally:
        _l1_fit.epochs_run = list(seen)


@pytest.mark.parametrize("rate, words", [
    (10 ** 400, "an int of 401 digits"), (-(10 ** 400), "int of 401 digits"), (float("nan"), "nan"),
    (float("inf"), "inf"), (0.0, "0.0"), (-0.1, "-0.1"), ("x", "str, not a number"), (None, "NoneType"),
    (np.array([0.1]), "not a number"), (True, "bool"), (1e39, "beyond the float32 range"),
    (1e-46, "below the smallest float32"),
])
def test_a_bad_rate_from_a_function_schedule_is_refused_naming_schedule_and_epoch(rate, words):
    with pytest.raises(ValueError, match=r"schedule FunctionSchedule\('.*'\) gave lr=.*for epoch 1") as err:
        _l1_fit(lr_schedule=lambda e: rate)
    assert words in str(err.value)


def test_float64_networks_take_rates_beyond_float32():
    assert len(_l1_fit(dtype=np.float64, lr_schedule=lambda e: 1e-46)["loss"]) == 2


def test_a_rate_beyond_the_dtype_is_refused_by_the_schedule_lr_method_given_the_dtype():
    with pytest.raises(ValueError, match="epoch 3, beyond the float32 range"):
        S.ExponentialLR(gamma=1e20).lr(3, 1.0, dtype=np.float32)
    assert S.ExponentialLR(gamma=1e20).lr(3, 1.0, dtype=np.float64) == 1e40


# -- U7: a built-in schedule whose rate would be refused at epoch k is refused before the first epoch --------
@pytest.mark.parametrize("schedule, epochs, bad_epoch", [
    (S.CosineAnnealingLR(T_max=5), 8, 6), (S.CosineAnnealingLR(T_max=1), 2, 2),
    (S.CosineAnnealingLR(T_max=3), 30, 4), (S.ExponentialLR(gamma=1e-10), 10, 6),
    (S.ExponentialLR(gamma=1e10), 6, 6), (S.StepLR(step_size=2, gamma=1e-30), 6, 5),
])
def test_a_schedule_that_would_fail_mid_fit_is_refused_before_the_first_epoch(schedule, epochs, bad_epoch):
    with pytest.raises(ValueError, match=f"for epoch {bad_epoch}"):
        _l1_fit(epochs=epochs, lr_schedule=schedule)
    assert _l1_fit.epochs_run == []


@pytest.mark.parametrize("schedule, epochs", [(S.CosineAnnealingLR(T_max=5), 5),
                                              (S.CosineAnnealingLR(T_max=5, eta_min=1e-4), 12),
                                              (S.ExponentialLR(gamma=0.5), 20), (S.InverseScaling(0.5), 5)])
def test_schedules_whose_rates_all_hold_run_every_epoch(schedule, epochs):
    assert len(_l1_fit(epochs=epochs, lr_schedule=schedule)["loss"]) == epochs
