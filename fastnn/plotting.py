"""Plots for fastnn: training curves and 2-D decision boundaries (PNG files).

matplotlib is optional (``pip install 'fastnn[plot]'``); without it every function here raises
ImportError("plotting needs matplotlib: pip install 'fastnn[plot]'"). The figures are drawn with the
non-interactive Agg canvas, without pyplot, so nothing here changes matplotlib's global state or needs a
display.
"""
import os

import numpy as np

MISSING_MATPLOTLIB = "plotting needs matplotlib: pip install 'fastnn[plot]'"

__all__ = ["plot_history", "EvaluationCurve", "plot_decision_boundary", "plot_decision_boundaries", "plot_function_fits",
           "require_matplotlib", "check_plot_path", "MISSING_MATPLOTLIB"]


def require_matplotlib():
    """Import matplotlib (Agg canvas) or raise ImportError with the install hint."""
    try:
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: F401
        from matplotlib.figure import Figure  # noqa: F401
    except ImportError:
        raise ImportError(MISSING_MATPLOTLIB) from None
    return matplotlib


def _figure(width, height):
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def check_plot_path(path):
    """``path`` (str) if a PNG may be written there by name: ValueError when it has an extension other
    than .png (any case), such as out.xyz or out.svg, which would hold a PNG under a misleading name.
    A path without an extension is written as PNG."""
    path = os.fspath(path)
    ext = os.path.splitext(path)[1]
    if ext and ext.lower() != ".png":
        raise ValueError(f"cannot write the plot {path}: fastnn writes plots as PNG only, but the name ends in "
                         f"{ext!r}; give a path ending in .png")
    return path


def _save(fig, path):
    """The PNG rendered in memory, then written by fastnn's one checked atomic writer (io.atomic_write): a
    FIFO, a device, a directory or a dangling symlink is refused with a ValueError naming the path."""
    import io as _io

    from . import _paths
    from .io import atomic_write
    path = check_plot_path(path)
    _paths.output_target(path, "plot")             # refused before rendering
    buffer = _io.BytesIO()
    fig.savefig(buffer, format="png")
    atomic_write(path, buffer.getvalue(), "plot")
    return path


# ----------------------------------------------------------------------------------------- history

TRAIN_LABEL = "train (mean over the epoch)"  # fit's history averages the batches, before each update

class EvaluationCurve:
    """A fit callback that records ``net.evaluate(X, y)`` after every epoch (a test curve for
    ``plot_history(..., test=curve.history)``), without adding keys to the fit's own history."""

    def __init__(self, net, X, y):
        self.net, self.X, self.y = net, X, y
        self.history = {"loss": []}

    def on_epoch_end(self, epoch, history):
        scores = self.net.evaluate(self.X, self.y)
        for key, value in scores.items():
            self.history.setdefault(key, []).append(float(value))
        return False


def _curves(history, test, key):
    """[(label, values)] of train / validation / test for one metric key."""
    out = [(TRAIN_LABEL, history.get(key)), ("validation", history.get(f"val_{key}")),
           ("test", (test or {}).get(key))]
    return [(label, np.asarray(v, float)) for label, v in out if v]


def plot_history(history, path, title="Training history", *, test=None, regression=None):
    """Write a PNG of the per-epoch curves, train, validation and (``test``) test.

    ``history`` is the dict ``NeuralNetwork.fit`` returns ("loss", optionally "accuracy", "val_loss",
    "val_accuracy"; other keys such as "time" are ignored); ``test`` a dict of per-epoch "loss" (and
    "accuracy") on a test set, such as ``EvaluationCurve(net, X_test, y_test).history``. Classifiers get a
    Loss and an Accuracy panel. Regression (an L2Loss history, no accuracy) gets Loss, RMSE and R² panels
    when ``regression`` = {"outputs": n, "scale": the target's std when the network learned a scaled target
    (else 1), "variance": {"train"/"validation"/"test": the variance of that set's targets, in the units
    the network learned}} is given, else the Loss panel alone (never an empty Accuracy panel). Returns ``path``.
    """
    if not isinstance(history, dict) or not history.get("loss"):
        raise ValueError("history must be a dict with a non-empty 'loss' list (what fit returns)")
    loss = np.asarray(history["loss"], dtype=float)
    epochs = np.arange(1, len(loss) + 1)
    marker = "o" if len(epochs) <= 30 else None
    classifier = bool(history.get("accuracy"))
    panels = 2 if classifier else (3 if regression else 1)
    fig = _figure(5 * panels, 4)
    axes = np.atleast_1d(fig.subplots(1, panels))
    ax_loss = axes[0]
    for label, values in _curves(history, test, "loss"):
        ax_loss.plot(epochs[:len(values)], values, marker=marker, markersize=3, label=label)
    if np.all(loss > 0) and loss.max() / max(loss.min(), 1e-300) > 30:
        ax_loss.set_yscale("log")
    ax_loss.set_ylabel("loss (log scale)" if ax_loss.get_yscale() == "log" else "loss")
    ax_loss.set_title("Loss")
    if classifier:
        ax_acc = axes[1]
        curves = _curves(history, test, "accuracy")
        for label, values in curves:
            ax_acc.plot(epochs[:len(values)], values, marker=marker, markersize=3, label=label)
        low = min(float(v.min()) for _, v in curves)
        ax_acc.set_ylim(max(0.0, low - 0.1 * (1.0 - low) - 0.02), 1.02)
        ax_acc.set_ylabel("accuracy")
        ax_acc.set_title("Accuracy")
    elif regression:
        outputs = int(regression.get("outputs", 1))
        scale = float(regression.get("scale", 1.0))
        variance = regression.get("variance") or {}
        names = {TRAIN_LABEL: "train", "validation": "validation", "test": "test"}
        for label, values in _curves(history, test, "loss"):
            mse = 2.0 * values / outputs                          # L2Loss = 0.5 * squared error summed over outputs
            axes[1].plot(epochs[:len(values)], np.sqrt(mse) * scale, marker=marker, markersize=3, label=label)
            var = variance.get(names[label])
            if var:
                axes[2].plot(epochs[:len(values)], 1.0 - mse / var, marker=marker, markersize=3, label=label)
        axes[1].set_ylabel("RMSE (the target's units)")
        axes[1].set_title("RMSE")
        axes[2].axhline(0.0, color="gray", linewidth=0.8, linestyle="--", label="predicting the mean")
        axes[2].set_ylabel("R²")
        axes[2].set_title("R²")
        lows = [float(np.min(line.get_ydata())) for line in axes[2].get_lines() if len(line.get_ydata()) > 1]
        axes[2].set_ylim(max(-1.0, min(lows + [0.0]) - 0.05), 1.02)
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(True, alpha=0.3)
        if ax.get_lines():
            ax.legend(loc="best")
        ax.set_xlim(0.5, len(epochs) + 0.5)
        if len(epochs) <= 12:
            ax.set_xticks(epochs)
        else:
            ax.xaxis.get_major_locator().set_params(integer=True)
    fig.suptitle(title)
    return _save(fig, path)


# --------------------------------------------------------------------------------- decision boundary

def _predictor(model):
    if callable(getattr(model, "predict", None)):
        return model.predict
    if callable(model):
        return model
    raise TypeError(f"model must have a predict method or be callable, got {type(model).__name__}")


def _check_2d(X, y):
    X, y = np.asarray(X, dtype=float), np.asarray(y)
    if X.ndim != 2 or X.shape[1] != 2:
        raise ValueError(f"decision boundaries are drawn for 2-D data: X must have shape (n, 2), got {X.shape}")
    if y.shape != (len(X),):
        raise ValueError(f"y must have shape ({len(X)},), got {y.shape}")
    return X, y


def _bounds(X):
    """(x_min, x_max, y_min, y_max) of the plotted region: the data with a margin."""
    lo, hi = X.min(axis=0), X.max(axis=0)
    pad = np.maximum(0.15 * (hi - lo), 0.25)
    return lo[0] - pad[0], hi[0] + pad[0], lo[1] - pad[1], hi[1] + pad[1]


def _draw_boundary(ax, model, X, y, title, resolution, class_names):
    from matplotlib.colors import ListedColormap
    predict = _predictor(model)
    x0, x1, y0, y1 = _bounds(X)
    gx = np.linspace(x0, x1, resolution)
    gy = np.linspace(y0, y1, resolution)
    xx, yy = np.meshgrid(gx, gy)
    grid = np.column_stack([xx.ravel(), yy.ravel()]).astype(np.float32)
    zz = np.asarray(predict(grid)).reshape(xx.shape)
    classes = np.unique(np.concatenate([np.unique(y), np.unique(zz)]))
    index = {c: i for i, c in enumerate(classes.tolist())}
    palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
               "#bcbd22", "#17becf"]
    colors = [palette[i % len(palette)] for i in range(len(classes))]
    zi = np.vectorize(index.get)(zz)
    ax.contourf(xx, yy, zi, levels=np.arange(len(classes) + 1) - 0.5, cmap=ListedColormap(colors), alpha=0.25)
    if len(classes) > 1:
        ax.contour(xx, yy, zi, levels=np.arange(len(classes) - 1) + 0.5, colors="k", linewidths=1.0)
    markers = "osD^v<>ph*"
    for c in np.unique(y).tolist():
        i = index[c]
        pts = X[y == c]
        name = class_names[c] if class_names is not None and 0 <= int(c) < len(class_names) else f"class {c}"
        ax.scatter(pts[:, 0], pts[:, 1], s=60 if len(X) <= 20 else 12, c=colors[i], marker=markers[i % 10],
                   edgecolors="k", linewidths=0.6, label=name, zorder=3)
    ax.set_xlim(gx[0], gx[-1])
    ax.set_ylim(gy[0], gy[-1])
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    if title:
        ax.set_title(title)
    ax.legend(loc="best", framealpha=0.9, fontsize="small")


def plot_decision_boundary(model, X, y, path, title=None, resolution=300, class_names=None):
    """Write a PNG of the regions ``model`` assigns to each class over 2-D inputs, with the data on top.

    ``model`` has a ``predict(X) -> labels`` method (a NeuralNetwork, a Perceptron, ...) or is such a
    callable; ``X`` (n, 2), ``y`` (n,) the points to show. Returns ``path``.
    """
    return plot_decision_boundaries([(title, model)], X, y, path, resolution=resolution,
                                    class_names=class_names)


def plot_decision_boundaries(panels, X, y, path, title=None, resolution=300, class_names=None):
    """Side-by-side decision boundaries: ``panels`` is a list of (title, model); see plot_decision_boundary."""
    X, y = _check_2d(X, y)
    panels = list(panels)
    if not panels:
        raise ValueError("panels must hold at least one (title, model) pair")
    x0, x1, y0, y1 = _bounds(X)
    panel_width = 4.6  # inches; the height follows the data's aspect ratio (equal axis scales)
    plot_height = min(max(panel_width * 0.85 * (y1 - y0) / (x1 - x0), 2.0), 7.0)
    fig = _figure(panel_width * len(panels), plot_height + 1.0 + (0.3 if title else 0.0))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (panel_title, model) in zip(axes, panels):
        _draw_boundary(ax, model, X, y, panel_title, resolution, class_names)
        ax.set_aspect("equal", adjustable="box")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


# ------------------------------------------------------------------------------------ function fits

def plot_function_fits(x, targets, fits, path, title=None):
    """Curves of 1-D function approximations: one panel per target function.

    ``x`` (n,); ``targets`` {name: f(x) (n,)}; ``fits`` {name: {label: approximation (n,)}}, e.g. the label
    "N=4" for a network of 4 hidden units. Returns ``path``.
    """
    x = np.asarray(x, float).reshape(-1)
    fig = _figure(4.4 * len(targets), 4.0)
    axes = fig.subplots(1, len(targets), squeeze=False)[0]
    from matplotlib import colormaps
    cmap = colormaps["viridis"]
    for ax, (name, target) in zip(axes, targets.items()):
        curves = fits.get(name, {})
        for k, (label, values) in enumerate(curves.items()):
            color = cmap(0.9 * k / max(len(curves) - 1, 1))
            ax.plot(x, np.asarray(values, float).reshape(-1), color=color, linewidth=1.3, label=label)
        ax.plot(x, np.asarray(target, float).reshape(-1), color="k", linestyle="--", linewidth=1.8,
                label="target")
        ax.set_xlabel("x")
        ax.set_ylabel("f(x)")
        ax.set_title(name)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small", loc="best")
    if title:
        fig.suptitle(title)
    return _save(fig, path)
