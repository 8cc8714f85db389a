"""Checkpoints resume everything the training loop owns, bit for bit (issue 12, item 2): a run stopped after
3 epochs and resumed to 6 equals an uninterrupted 6-epoch run — with AdamW, a cosine schedule, class
weights, sample weights, dropout, validation and early-stopping bookkeeping, on both engines."""
import numpy as np
import pytest

import fastnn as fnn
from fastnn import schedules


def make():
    return fnn.NeuralNetwork([fnn.FullyConnected(6, 16), fnn.GELU(), fnn.Dropout(0.25), fnn.FullyConnected(16, 3)],
                             optimizer=fnn.AdamW(lr=0.01, weight_decay=0.05), seed=4)


def data():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((120, 6)).astype(np.float32)
    return X, rng.integers(0, 3, 120), rng.uniform(0.5, 2.0, 120)


@pytest.mark.parametrize("fused", [True, False])
def test_resume_is_bit_identical_with_every_feature(tmp_path, fused):
    X, y, w = data()
    kwargs = dict(batch_size=16, verbose=0, fused=fused, validation_split=0.2, class_weight="balanced",
                  sample_weight=w, lr_schedule=schedules.CosineAnnealingLR(T_max=6, eta_min=1e-4))
    whole = make()
    h_whole = whole.fit(X, y, epochs=6, **kwargs)
    path = tmp_path / "run.ckpt"
    first = make()
    first.fit(X, y, epochs=3, checkpoint=path, **kwargs)
    resumed = make()
    h = resumed.fit(X, y, epochs=6, checkpoint=path, **kwargs)
    assert all(np.array_equal(a, b) for a, b in zip(whole.params, resumed.params))
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "lr"):
        assert h[key] == h_whole[key], key
    assert resumed.optimizer.steps == whole.optimizer.steps
