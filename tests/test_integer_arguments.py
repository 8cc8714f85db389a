"""Counts given as something that is no integer: a TypeError (and still the ValueError fastnn raised before,
as scikit-learn's InvalidParameterError is both), naming the argument and the type; a count out of range: a
ValueError that is no TypeError. One rule for every counted argument (fastnn._checks.positive_int and its
kin), not per call site."""
import numpy as np
import pytest

import fastnn as fnn

NOT_INTEGERS = ["3", 2.0, 1.5, np.float64(2.0), True, np.bool_(True), None, [2]]


def _net():
    return fnn.NeuralNetwork([fnn.FullyConnected(2, 2)], fnn.SoftmaxCrossEntropy(), fnn.SGD(0.1), seed=0)


def _data():
    return np.zeros((4, 2), np.float32), np.array([0, 1, 0, 1])


CALLS = {
    "fit epochs": lambda v: _net().fit(*_data(), epochs=v, verbose=0),
    "fit batch_size": lambda v: _net().fit(*_data(), epochs=1, batch_size=v, verbose=0),
    "fit checkpoint_every": lambda v: _net().fit(*_data(), epochs=1, verbose=0, checkpoint="unused.ckpt",
                                                 checkpoint_every=v),
    "FullyConnected in_features": lambda v: fnn.FullyConnected(v, 2),
    "FullyConnected out_features": lambda v: fnn.FullyConnected(2, v),
    "EarlyStopping patience": lambda v: fnn.callbacks.EarlyStopping(patience=v),
    "set_num_threads": lambda v: fnn.set_num_threads(v),
}


@pytest.mark.parametrize("call, bad", [pytest.param(c, b, id=f"{c}-{b!r}") for c in CALLS for b in NOT_INTEGERS
                                       if not (b is None and c == "fit checkpoint_every")])   # (None: the default)
def test_a_count_that_is_no_integer_is_a_type_error_and_a_value_error(call, bad, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TypeError) as info:
        CALLS[call](bad)
    assert isinstance(info.value, ValueError)
    assert "integer" in str(info.value)
    assert not (tmp_path / "unused.ckpt").exists()


@pytest.mark.parametrize("call", ["fit epochs", "fit batch_size", "fit checkpoint_every",
                                  "FullyConnected in_features", "set_num_threads"])
def test_a_count_out_of_range_is_a_value_error_only(call, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError) as info:
        CALLS[call](0)
    assert not isinstance(info.value, TypeError)
