"""fastnn: fast, checked feed-forward neural networks on the CPU (NumPy + Numba)."""
import sys as _sys
if _sys.argv[:1] == ["-m"]:      # `python -m fastnn`: Ctrl-C / SIGTERM / SIGHUP held from here, as the script does
    try:
        import fastnn_cli as _cli
        if _cli.entered_as_module():
            _cli.hold()
    except ImportError:
        pass
from .errors import TrainingDivergedError
from .gradcheck import gradcheck, numerical_gradient
from .layers import (ELU, GELU, Activation, Dropout, FullyConnected, Identity, Layer, LeakyReLU, Mish, ReLU, SiLU,
                     Sigmoid, SoftMax, Softplus, TanH)
from .losses import CrossEntropyLoss, L2Loss, SigmoidCrossEntropy, SoftmaxCrossEntropy
from .network import NeuralNetwork
from .optimizers import SGD, Adam, AdamW
from .perceptron import Perceptron
from .threads import get_num_threads, num_threads, set_num_threads
from .training import Trainer   # registers what NeuralNetwork.fit runs
from . import io                # registers what NeuralNetwork.save runs
from .layers import register_layer   # custom layers that save and load
from .export import to_torch    # registers what NeuralNetwork.export_onnx runs (onnx, torch: imported on use)

__version__ = "0.1.0"

__all__ = ["Activation", "Adam", "AdamW", "CrossEntropyLoss", "ELU", "FullyConnected", "GELU", "Identity",
           "Dropout", "LeakyReLU", "Mish", "SiLU", "Softplus", "L2Loss", "Layer", "NeuralNetwork", "Perceptron",
           "ReLU", "SGD", "Sigmoid", "SigmoidCrossEntropy", "SoftMax", "SoftmaxCrossEntropy", "TanH", "Trainer",
           "TrainingDivergedError", "gradcheck", "numerical_gradient", "register_layer", "set_num_threads",
           "get_num_threads", "num_threads", "load", "to_torch",
           "MLPClassifier", "MLPRegressor"]


_SUBMODULES = ("callbacks", "checkpoint", "data", "demos", "distributed", "estimators", "io", "plotting", "schedules")


def __getattr__(name):
    """The scikit-learn estimators load on first use (importing scikit-learn costs about a second), and so
    do the submodules (``fastnn.data.load_digits()`` works after a plain ``import fastnn``)."""
    if name in ("MLPClassifier", "MLPRegressor"):
        from . import estimators
        return getattr(estimators, name)
    if name in _SUBMODULES:
        import importlib
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'fastnn' has no attribute {name!r}")


def load(path):
    """Load a model saved with ``NeuralNetwork.save`` (a safetensors file; never unpickles)."""
    from .io import load as _load
    return _load(path)
