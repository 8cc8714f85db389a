"""Gradient health: per-layer gradient norms for the history, and one GradientHealthWarning per kind per fit
(vanishing, exploding), written through the progress bar's writer. See ``GradientHealth``."""
import contextlib
import inspect
import math
import os
import warnings

import numpy as np

from .errors import GradientHealthWarning

__all__ = ["GradientHealth", "bar_write_mode", "VANISHING", "VANISHING_EPOCHS", "EXPLODING"]

VANISHING, VANISHING_EPOCHS, EXPLODING = 1e-6, 5, 1e3



def scaling_advice(net):
    """What to try against exploding gradients, never a step the network's preprocessing already takes."""
    pre = net.preprocessing
    if pre is not None and any(c["kind"] == "numeric" and c["mean"] is not None for c in pre.columns):
        return "its inputs are already standardized by its preprocessing: lower the learning rate"
    return ("unscaled inputs? standardise them, e.g. fastnn train --standardize or fastnn.preprocessing, or lower "
            "the learning rate")

class GradientHealth:
    """Per-layer gradient norms for the history, and one GradientHealthWarning per kind per fit.

    The rules (the gradient is the epoch's last mini-batch's; g, w the L2 norms of a parameterised layer's
    gradient and parameters, L the epoch's mean loss):

    * vanishing: ``g * w < VANISHING * L`` at ``VANISHING_EPOCHS`` consecutive epochs. ``g * w / L`` bounds, to
      first order, the relative change of the loss if every parameter of the layer changed by 100%: below
      1e-6 the layer has stopped learning although the loss has not (saturated or dead units). The measure
      is scale-free (units of the loss, size of the weights, learning rate) and a model that has simply
      converged does not trigger it: its gradients shrink with its loss (L2: g ~ sqrt(L); cross-entropy:
      g ~ L), and mini-batch noise keeps them in proportion to the loss on a non-zero floor. Requiring
      several epochs in a row (several different mini-batches) ignores a batch that happens to miss a
      layer's active region. A loss of 0 (a perfect fit) never warns, nor does the last parameterised layer:
      it receives the loss gradient directly, so a small gradient there means the loss is stationary
      (converged, perhaps at the model's capacity: a linear model on XOR), not that it vanished on its way
      back through the layers.
    * exploding: ``g > EXPLODING * w`` at any epoch (one step of any sane learning rate rewrites the layer);
      usually unscaled inputs, so the message suggests standardising them or a lower learning rate.

    Warnings are one line each and are written through tqdm's writer (``external_write_mode``), so a
    progress bar on the same terminal is cleared and redrawn instead of being broken mid-line.
    """

    def __init__(self, net, plan, warn=True):
        self.net, self.plan, self.warn = net, plan, warn
        self.weight_sq = np.zeros(len(plan.param_layers), np.float64)
        self.low = np.zeros(len(plan.param_layers), np.int64)      # consecutive epochs below VANISHING
        self.warned = set()

    def record(self, epoch, loss=None, plan=None):
        """L2 norm of each parameterised layer's gradient (the last mini-batch's), checked by the rules above.
        ``loss``: the epoch's mean loss (default: the last of ``net.history["loss"]``)."""
        from .network import segment_squared_norms
        net = self.net
        if plan is not None and plan.param_layers != self.plan.param_layers:    # a callback changed the layers
            self.plan = plan
            self.weight_sq = np.zeros(len(plan.param_layers), np.float64)
            self.low = np.zeros(len(plan.param_layers), np.int64)
        if loss is None:
            losses = (net.history or {}).get("loss") or [math.nan]
            loss = losses[-1]
        grads = np.sqrt(net.gradient_norms()).tolist()
        self.weight_sq[:] = segment_squared_norms(self.plan.params, self.plan.offsets)
        weights = np.sqrt(self.weight_sq)
        last = len(grads) - 1
        for k, (g, w) in enumerate(zip(grads, weights)):
            if not (math.isfinite(g) and math.isfinite(loss)) or loss <= 0 or w == 0:
                self.low[k] = 0
                continue
            self.low[k] = self.low[k] + 1 if k < last and g * w < VANISHING * loss else 0
            if "vanishing" not in self.warned and self.low[k] >= VANISHING_EPOCHS:
                self._warn("vanishing", epoch,
                           f"vanishing gradient in layer {self._layer(k)} for {VANISHING_EPOCHS} epochs up to "
                           f"epoch {epoch}: gradient norm {g:.3g} x weights' norm {w:.3g} is below "
                           f"{VANISHING:g} x the loss {loss:.3g}, so the layer has stopped learning (saturated or "
                           f"dead units?); see history['grad_norm']")
            elif "exploding" not in self.warned and g > EXPLODING * w:
                self._warn("exploding", epoch,
                           f"exploding gradient in layer {self._layer(k)} at epoch {epoch}: gradient norm "
                           f"{g:.3g} is above {EXPLODING:g} x its weights' norm {w:.3g} ({scaling_advice(self.net)})")
        return grads

    def _layer(self, k):
        layer = self.plan.param_layers[k]
        return f"{layer} ({type(self.net.layers[layer]).__name__})"

    def _warn(self, kind, epoch, message):
        self.warned.add(kind)
        if not self.warn:           # not the rank that reports (distributed)
            return
        with bar_write_mode():
            warnings.warn(message, GradientHealthWarning, stacklevel=user_stacklevel())


def user_stacklevel():
    """The ``stacklevel`` that makes a warning issued by the caller of this function point at the first
    frame outside the fastnn package (the user's fit call, whichever public entry point it went through)."""
    root = os.path.dirname(os.path.abspath(__file__)) + os.sep
    frame, level = inspect.currentframe().f_back, 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(root):
        frame, level = frame.f_back, level + 1
    return level


@contextlib.contextmanager
def bar_write_mode():
    """While inside, any tqdm progress bar on stdout / stderr is cleared, and redrawn on exit (tqdm.write's
    mechanism), so that text written meanwhile (a warning) gets lines of its own. A no-op without bars."""
    import sys
    tqdm = sys.modules.get("tqdm.auto")
    if tqdm is None:                      # no bar was ever created: nothing to clear
        yield
        return
    with tqdm.tqdm.external_write_mode(file=sys.stderr):
        yield
