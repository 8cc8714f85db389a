"""X mutated in place between calls is judged as a fresh array would be (issue 17 item 4: what a call learns of X
is learned in its kernel's own pass, never remembered across calls), and NaN/Inf in X is named before any other
problem of the call, whichever engine checks X (the loop's eager scan, or the fused / per-layer kernel as it
gathers the rows), as the estimators do (tests/test_per_call.py)."""
import numpy as np
import pytest

import fastnn as fnn

from .helpers import make_data, make_net, same_history, same_state


def _with(X, value, at=(7, 3)):
    X = X.copy()
    X[at] = value
    return X


def _message(call):
    with pytest.raises(ValueError) as info:
        call()
    return type(info.value), str(info.value)


# -- NaN/Inf in X is named first ---------------------------------------------------------------------------------
_OTHER_PROBLEMS = {
    "class id out of range": dict(y=lambda y: y + 10),
    "y of another length": dict(y=lambda y: y[:-1]),
    "negative sample_weight": dict(sample_weight=-np.ones(150)),
    "all-zero sample_weight": dict(sample_weight=np.zeros(150)),
    "class_weight of no class in y": dict(class_weight={0: 0.0, 1: 0.0, 2: 0.0, 3: 0.0}),
    "validation_data of another width": dict(validation_data=lambda X, y: (X[:, :3], y)),
    "validation_split leaving nothing": dict(validation_split=0.999),
    "a callback's on_train_begin refusing": dict(callbacks=[type("Refuse", (), {
        "on_train_begin": lambda self, net: (_ for _ in ()).throw(ValueError("refused")),
        "on_epoch_end": lambda self, epoch, history: False})()]),
}
# (settings — checkpoint=, class_weight's values, ... — are checked when given, before any data, on every engine)


@pytest.mark.parametrize("fused_", ["auto", False])
@pytest.mark.parametrize("problem", sorted(_OTHER_PROBLEMS))
def test_nonfinite_X_is_named_before_other_problems_of_a_fit(problem, fused_):
    X, y = make_data()
    Xbad = _with(X, np.nan)
    fit = dict(_OTHER_PROBLEMS[problem])
    target = fit.pop("y", lambda y: y)(y)
    if callable(fit.get("validation_data")):
        fit["validation_data"] = fit["validation_data"](X, y)
    net = make_net()
    net.fit(X, y, epochs=1, verbose=0)
    before = [p.copy() for p in net.params]
    with pytest.raises(ValueError, match=r"^X contains 1 NaN or infinite value\(s\), the first at index \(7, 3\)$"):
        net.fit(Xbad, target, epochs=1, verbose=0, fused=fused_, **fit)
    assert all(np.array_equal(p, q) for p, q in zip(net.params, before))
    with pytest.raises(ValueError, match=r"beyond the float32 range"):      # converted to inf: named as such
        net.fit(_with(X.astype(np.float64), 1e39), target, epochs=1, verbose=0, fused=fused_, **fit)


def test_nonfinite_X_is_named_before_a_finished_checkpoint_s_other_data(tmp_path):
    """A fit whose checkpoint holds every epoch asked for runs no epoch: X, changed since to hold NaN, is still
    refused as NaN (not as data other than the checkpoint's)."""
    X, y = make_data()
    path = tmp_path / "c.ckpt"
    make_net().fit(X, y, epochs=2, verbose=0, checkpoint=path)
    with pytest.raises(ValueError, match=r"^X contains 1 NaN"):
        make_net().fit(_with(X, np.inf), y, epochs=2, verbose=0, checkpoint=path)


# -- a mutation between calls is caught as a fresh array would be --------------------------------------------------
_LAYOUTS = {
    "array": lambda base: base,
    "contiguous view": lambda base: base[:150],       # (base: X's rows, each twice)
    "strided view": lambda base: base[::2],
    "Fortran order": np.asfortranarray,
    "read-only": lambda base: _read_only(base),
}


def _read_only(base):
    view = base.view()
    view.flags.writeable = False
    return view


@pytest.mark.parametrize("layout", sorted(_LAYOUTS))
@pytest.mark.parametrize("value", [np.nan, -np.inf, 1e39])
@pytest.mark.parametrize("fused_", ["auto", False])
def test_fit_in_a_loop_sees_a_mutation_of_X(layout, value, fused_):
    """fit(epochs=1) in a loop on one array (float64 data, float32 network), mutated in place between calls:
    refused with the fresh copy's exact message and nothing changed; put back, the loop goes on exactly as on
    fresh copies."""
    X, y = make_data(dtype=np.float64)
    base = np.repeat(X, 2, axis=0) if "view" in layout else X.copy()     # strided: base[::2] is X
    view = _LAYOUTS[layout]
    ref_net, net = make_net(), make_net()
    row = 14 if layout == "strided view" else 7         # row 7 of what fit is given
    for step in range(3):
        given = view(base)
        if step == 1:
            saved = base[row, 3]
            base[row, 3] = value
            given = view(base)
            expected = _message(lambda: ref_net.fit(np.array(given), y, epochs=1, verbose=0, fused=fused_))
            assert _message(lambda: net.fit(given, y, epochs=1, verbose=0, fused=fused_)) == expected
            same_state(net, ref_net)
            base[row, 3] = saved
            given = view(base)
        ref = ref_net.fit(np.array(given), y, epochs=1, verbose=0, fused=fused_)
        got = net.fit(given, y, epochs=1, verbose=0, fused=fused_)
        same_history(got, ref)
        same_state(net, ref_net)


@pytest.mark.parametrize("value", [np.nan, np.inf, 1e39])
def test_predict_evaluate_and_validation_see_a_mutation_of_X(value):
    X, y = make_data(dtype=np.float64)
    net = make_net()
    net.fit(X, y, epochs=1, verbose=0)
    calls = {"predict": net.predict, "predict_proba": net.predict_proba, "forward": net.forward,
             "evaluate": lambda x: net.evaluate(x, y),
             "validation_data": lambda x: net.fit(X, y, epochs=1, verbose=0, validation_data=(x, y))}
    for name, call in calls.items():
        A = X.copy()
        call(A)
        A[7, 3] = value
        expected = _message(lambda: call(A.copy()))
        assert _message(lambda: call(A)) == expected, name
