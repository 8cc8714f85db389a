"""fastnn.training's compile notice and progress bar across a fit's first epoch (issue 17 item 5): the bar
reads "compiling" only while something compiles; after the first epoch it reads "training" again, whether
or not the notice had to speak (a compile shorter than COMPILE_NOTICE_AFTER says nothing)."""
import numba
import numpy as np
import pytest

import fastnn as fnn
from fastnn import training
from tests.helpers import make_data, make_net


class CompilesOnce:
    """A callback whose first on_epoch_end compiles a function nobody compiled before (a short compile
    inside the first epoch, like a validation pass's kernel)."""

    def __init__(self):
        @numba.njit(cache=False)
        def fresh(x):
            return x + 1
        self.fresh, self.calls = fresh, 0

    def on_epoch_end(self, epoch, history):
        self.calls += self.fresh(1)
        return False


@pytest.mark.parametrize("fused_", ["auto", False])
def test_the_bar_says_training_after_a_short_compile_in_the_first_epoch(monkeypatch, capsys, fused_):
    bars = []
    real = training._progress

    def progress(*args, **kwargs):
        bar = real(*args, **kwargs)
        if bar is not None:
            bars.append(bar)
        return bar
    monkeypatch.setattr(training, "_progress", progress)
    monkeypatch.setattr(training, "COMPILE_NOTICE_AFTER", 1e9)      # a compile never "long": the notice is silent
    X, y = make_data(64)
    net = make_net(opt="sgd")
    net.fit(X, y, epochs=1, batch_size=16, verbose=0, fused=fused_)       # the engine's kernels compiled
    callback = CompilesOnce()
    net.fit(X, y, epochs=3, batch_size=16, verbose=1, fused=fused_, callbacks=[callback])
    assert callback.calls == 6 and len(bars) == 1
    assert bars[0].desc.rstrip(": ") == "training", bars[0].desc
    assert training.COMPILE_LINE not in capsys.readouterr().err
