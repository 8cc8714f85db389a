"""Checkpoints resume everything the training loop owns, bit for bit (issue 12, item 2): a run stopped after
3 epochs and resumed to 6 equals an uninterrupted 6-epoch run — with AdamW, a cosine schedule, class
weights, sample weights, dropout, validation, EarlyStopping restoring its best weights and a callback's own history key, on both
engines."""
import numpy as np
import pytest

import fastnn as fnn
from fastnn import schedules
from tests import helpers


class AddsKey:
    def on_epoch_end(self, epoch, history):
        history.setdefault("val_loss_x2", []).append(2 * history["val_loss"][-1])


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

    def kwargs():
        early = fnn.callbacks.EarlyStopping(monitor="val_accuracy", patience=10, restore_best_weights=True)
        return dict(batch_size=16, verbose=0, fused=fused, validation_split=0.2, class_weight="balanced",
                    sample_weight=w, lr_schedule=schedules.CosineAnnealingLR(T_max=6, eta_min=1e-4),
                    callbacks=[early, AddsKey()])
    whole = make()
    h_whole = whole.fit(X, y, epochs=6, **kwargs())
    path = tmp_path / "run.ckpt"
    first = make()
    first.fit(X, y, epochs=3, checkpoint=path, **kwargs())
    resumed = make()
    h = resumed.fit(X, y, epochs=6, checkpoint=path, **kwargs())
    helpers.same_state(whole, resumed)           # the best weights EarlyStopping restored, too
    helpers.same_history(h, h_whole)
    assert "val_loss_x2" in h
