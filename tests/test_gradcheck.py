"""fastnn gradcheck covers every built-in layer type and every loss, on both engines (issue 21, build 4)."""
import fastnn as fnn
from fastnn.engines import fused
from fastnn.gradcheck import builtin_networks
from fastnn.layers import LAYER_TYPES
from fastnn.losses import LOSS_TYPES


def test_builtin_networks_hold_every_layer_type_and_loss():
    nets = builtin_networks(0)
    layers = {type(layer).__name__ for _, net, _ in nets for layer in net.layers}
    builtin = {name for name, cls in LAYER_TYPES.items() if cls.__module__ == "fastnn.layers"}
    assert builtin <= layers, sorted(builtin - layers)
    assert {type(net.loss).__name__ for _, net, _ in nets} >= set(LOSS_TYPES)
    gelu = {layer.approximate for _, net, _ in nets for layer in net.layers if type(layer).__name__ == "GELU"}
    assert gelu == {"none", "tanh"}


def test_every_layer_the_fused_kernel_runs_is_checked_on_it_too():
    nets = builtin_networks(0)
    fused_layers = set()
    for _, net, x in nets:
        report = fnn.gradcheck(net, x)
        assert all(err < 1e-6 for err in report.values()), report
        if fused.supports(net)[0]:
            assert any(key.startswith("fused ") for key in report)
            fused_layers |= {type(layer).__name__ for layer in net.layers}
    # every activation but SoftMax (a probabilities output, which the fused kernel does not run) on both engines
    assert {"ReLU", "Sigmoid", "TanH", "LeakyReLU", "ELU", "SiLU", "GELU", "Softplus", "Identity",
            "Dropout", "FullyConnected"} <= fused_layers
