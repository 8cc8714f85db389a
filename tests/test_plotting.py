"""fastnn.plotting: the PNGs are written, have the expected size and real content; without matplotlib a
clear ImportError. (matplotlib comes with the `plot` extra, which CI installs.)"""
import builtins
import importlib.util
import struct
import sys

import numpy as np
import pytest

import fastnn as fnn
from fastnn import plotting
from fastnn.data import make_moons, make_xor

HAVE_MPL = importlib.util.find_spec("matplotlib") is not None
needs_mpl = pytest.mark.skipif(not HAVE_MPL, reason="matplotlib is not installed: pip install 'fastnn[plot]'")


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    return struct.unpack(">II", data[16:24])  # width, height from the IHDR chunk


def assert_rich_png(path, min_width, min_height):
    """A PNG of at least the given size that is not blank: many distinct colours, ink on every side."""
    width, height = png_size(path)
    assert width >= min_width and height >= min_height, (width, height)
    import matplotlib.image
    img = matplotlib.image.imread(str(path))[..., :3]
    assert len(np.unique((img * 255).astype(np.uint8).reshape(-1, 3), axis=0)) > 50
    ink = (img < 0.9).any(axis=2)  # non-white pixels
    assert ink.mean() > 0.02
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    # content reaches close to all four borders (titles, axis labels) but nothing is cut: margins exist
    assert rows[0] < 0.1 * height and rows[-1] > 0.9 * height
    assert cols[0] < 0.1 * width and cols[-1] > 0.9 * width


def history(epochs=12, validation=True, classification=True):
    t = np.arange(1, epochs + 1)
    h = {"loss": list(1.0 / t)}
    if classification:
        h["accuracy"] = list(1 - 0.5 / t)
    if validation:
        h["val_loss"] = list(1.2 / t)
        if classification:
            h["val_accuracy"] = list(1 - 0.6 / t)
    h["time"] = [0.01] * epochs
    h["grad_norm"] = [[0.1, 0.2]] * epochs  # per-layer entries are ignored
    return h


@needs_mpl
def test_plot_history_with_validation(tmp_path):
    out = plotting.plot_history(history(), tmp_path / "h.png", title="digits")
    assert out == str(tmp_path / "h.png")
    assert_rich_png(tmp_path / "h.png", 900, 350)


@needs_mpl
def test_plot_history_regression_without_validation_and_one_epoch(tmp_path):
    plotting.plot_history(history(validation=False, classification=False), tmp_path / "r.png")
    assert_rich_png(tmp_path / "r.png", 450, 350)
    assert png_size(tmp_path / "r.png")[0] < 600          # the loss alone: no empty accuracy panel
    plotting.plot_history({"loss": [0.5]}, tmp_path / "one.png")
    png_size(tmp_path / "one.png")


@needs_mpl
def test_regression_gets_rmse_and_r2_panels_and_a_test_curve(tmp_path):
    import matplotlib.image
    h = history(classification=False)
    test = {"loss": list(1.1 / np.arange(1, 13))}
    plotting.plot_history(h, tmp_path / "r.png", test=test,
                          regression={"outputs": 1, "scale": 800.0, "variance": {"train": 2.0, "validation": 2.0,
                                                                                 "test": 2.0}})
    assert_rich_png(tmp_path / "r.png", 1400, 350)           # three panels: loss, RMSE, R²
    img = matplotlib.image.imread(str(tmp_path / "r.png"))[..., :3]
    third = img[:, 2 * img.shape[1] // 3:]
    assert (third < 0.9).any(axis=2).mean() > 0.02           # the R² panel is drawn, not empty


@needs_mpl
def test_the_cli_plots_the_test_curve_of_digits(tmp_path, monkeypatch):
    from fastnn import cli
    seen = {}
    real = plotting.plot_history

    def spy(history, path, title="", **kwargs):
        seen.update(kwargs, history=history)
        return real(history, path, title, **kwargs)

    monkeypatch.setattr(plotting, "plot_history", spy)
    assert cli.main(["train", "--epochs", "3", "-q", "--plot", str(tmp_path / "d.png")]) == 0
    assert len(seen["test"]["loss"]) == 3 and len(seen["test"]["accuracy"]) == 3
    assert "val_loss" not in seen["history"] or not seen["history"]["val_loss"]


@needs_mpl
def test_plot_history_of_a_real_fit(tmp_path):
    X, y = make_moons(n=200, seed=1)
    net = fnn.NeuralNetwork([fnn.FullyConnected(2, 16), fnn.ReLU(), fnn.FullyConnected(16, 2)],
                            optimizer=fnn.Adam(lr=0.01), seed=0)
    h = net.fit(X[:150], y[:150], epochs=8, batch_size=16, validation_data=(X[150:], y[150:]), verbose=0)
    plotting.plot_history(h, tmp_path / "fit.png")
    assert_rich_png(tmp_path / "fit.png", 900, 350)


@needs_mpl
def test_plot_decision_boundary_of_a_network_and_a_perceptron(tmp_path):
    X, y = make_moons(n=300, noise=0.15, seed=0)
    net = fnn.NeuralNetwork([fnn.FullyConnected(2, 32), fnn.ReLU(), fnn.FullyConnected(32, 2)],
                            optimizer=fnn.Adam(lr=0.01), seed=0)
    net.fit(X, y, epochs=30, batch_size=32, verbose=0)
    plotting.plot_decision_boundary(net, X, y, tmp_path / "net.png", title="network", resolution=120)
    assert_rich_png(tmp_path / "net.png", 400, 250)
    Xx, yx = make_xor()
    perceptron = fnn.Perceptron(2, seed=0).fit(Xx, yx, epochs=10)
    def xor_rule(Z):
        return (Z[:, 0] > 0.5) ^ (Z[:, 1] > 0.5)

    plotting.plot_decision_boundaries([("perceptron", perceptron), ("callable", xor_rule)],
                                      Xx, yx, tmp_path / "two.png", title="XOR", class_names=["even", "odd"])
    width, height = png_size(tmp_path / "two.png")
    assert width > 1.5 * height  # side by side
    assert_rich_png(tmp_path / "two.png", 800, 400)


@needs_mpl
def test_plot_function_fits(tmp_path):
    x = np.linspace(-3, 3, 200)
    plotting.plot_function_fits(x, {"sin": np.sin(x), "abs": np.abs(x)},
                                {"sin": {"N=1": 0 * x, "N=2": np.tanh(x)}, "abs": {"N=1": x ** 2 / 3}},
                                tmp_path / "fits.png", title="fits")
    assert_rich_png(tmp_path / "fits.png", 800, 350)


@needs_mpl
def test_cli_train_plot(tmp_path):
    from tests.test_cli import ok, run
    out = ok(run("train", "--data", "moons", "--epochs", "10", "--val-split", "0.2", "--plot", "curves.png",
                 cwd=tmp_path))
    assert "curves.png" in out
    assert_rich_png(tmp_path / "curves.png", 900, 350)


@needs_mpl
def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="history"):
        plotting.plot_history({}, tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"\(n, 2\)"):
        plotting.plot_decision_boundary(lambda Z: Z[:, 0] > 0, np.zeros((4, 3)), np.zeros(4), tmp_path / "x.png")
    with pytest.raises(TypeError, match="predict"):
        plotting.plot_decision_boundary(object(), np.zeros((4, 2)), np.zeros(4), tmp_path / "x.png")
    with pytest.raises(ValueError, match="does not exist"):
        plotting.plot_history(history(), tmp_path / "no" / "such" / "dir.png")
    assert not list(tmp_path.iterdir())


def test_without_matplotlib_a_clear_import_error(monkeypatch, tmp_path):
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    for mod in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, mod)
    message = "plotting needs matplotlib: pip install 'fastnn[plot]'"
    for call in (lambda: plotting.plot_history(history(), tmp_path / "h.png"),
                 lambda: plotting.plot_decision_boundary(lambda Z: Z[:, 0] > 0, np.zeros((4, 2)), np.zeros(4),
                                                         tmp_path / "b.png"),
                 plotting.require_matplotlib):
        with pytest.raises(ImportError) as info:
            call()
        assert str(info.value) == message
    assert not list(tmp_path.iterdir())


@needs_mpl
@pytest.mark.parametrize("name", ["out.xyz", "out.svg", "out.PDF", "out.png.txt"])
def test_a_plot_name_with_another_extension_is_refused(tmp_path, name):
    """U5: a PNG is never written under a name that says another format."""
    with pytest.raises(ValueError, match=r"PNG only.*ending in \.png"):
        plotting.plot_history(history(), tmp_path / name)
    assert not list(tmp_path.iterdir())


@needs_mpl
@pytest.mark.parametrize("name", ["out.png", "OUT.PNG", "curves"])
def test_png_names_and_names_without_extension_are_written(tmp_path, name):
    plotting.plot_history(history(), tmp_path / name)
    assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@needs_mpl
def test_cli_refuses_a_plot_name_with_another_extension_before_training(tmp_path):
    from tests.test_cli import one_line_error, run
    msg = one_line_error(run("train", "--data", "moons", "--epochs", "1", "--plot", "out.xyz", cwd=tmp_path))
    assert "out.xyz" in msg and ".png" in msg
    assert not list(tmp_path.iterdir())
