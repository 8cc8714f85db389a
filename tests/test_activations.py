"""The activations LeakyReLU, ELU, SiLU, GELU (exact and tanh), Softplus and Identity (issue 12): each as
torch.nn defines it (float64, 1e-10), against a float64 NumPy reference in float32, by central finite
differences in a network, finite at ±1e4, savable, and run by both engines (tests/test_fused.py)."""
import numpy as np
import pytest
from scipy.special import erf

import fastnn as fnn
from fastnn import layers
from fastnn.engines import fused
from fastnn.kernels import activations as act

# -- float64 NumPy references, f(z) and f'(z), written from the definitions -----------------------------------
SQRT_2_PI = np.sqrt(2 / np.pi)


def _gelu_tanh_parts(z):
    t = np.tanh(SQRT_2_PI * (z + 0.044715 * z ** 3))
    return t, SQRT_2_PI * (1 + 3 * 0.044715 * z ** 2)


def _sigmoid(z):
    return np.exp(-np.logaddexp(0.0, -z))


REFERENCE = {
    "leaky_relu": (lambda z, p: np.where(z > 0, z, p * z), lambda z, p: np.where(z > 0, 1.0, p)),
    "elu": (lambda z, p: np.where(z > 0, z, p * np.expm1(np.minimum(z, 0))),
            lambda z, p: np.where(z > 0, 1.0, p * np.exp(np.minimum(z, 0)))),
    "silu": (lambda z, p: z * _sigmoid(z), lambda z, p: _sigmoid(z) * (1 + z * (1 - _sigmoid(z)))),
    "gelu": (lambda z, p: 0.5 * z * (1 + erf(z / np.sqrt(2))),
             lambda z, p: 0.5 * (1 + erf(z / np.sqrt(2))) + z * np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi)),
    "gelu_tanh": (lambda z, p: 0.5 * z * (1 + _gelu_tanh_parts(z)[0]),
                  lambda z, p: 0.5 * (1 + _gelu_tanh_parts(z)[0])
                  + 0.5 * z * (1 - _gelu_tanh_parts(z)[0] ** 2) * _gelu_tanh_parts(z)[1]),
    "softplus": (lambda z, p: np.where(z > 20, z, np.log1p(np.exp(np.minimum(z, 20)))),
                 lambda z, p: np.where(z > 20, 1.0, _sigmoid(z))),
    "identity": (lambda z, p: z, lambda z, p: np.ones_like(z)),
    "mish": (lambda z, p: z * np.tanh(np.logaddexp(0.0, z)),
             lambda z, p: np.tanh(np.logaddexp(0.0, z)) + z * _sigmoid(z) * (1 - np.tanh(np.logaddexp(0.0, z)) ** 2)),
}

#: name -> (fastnn layer factory, torch module factory, the activation's parameter)
CASES = {
    "leaky_relu": (lambda: fnn.LeakyReLU(0.2), lambda nn: nn.LeakyReLU(0.2), 0.2),
    "leaky_relu_negative": (lambda: fnn.LeakyReLU(-0.3), lambda nn: nn.LeakyReLU(-0.3), -0.3),
    "elu": (lambda: fnn.ELU(0.7), lambda nn: nn.ELU(0.7), 0.7),
    "silu": (lambda: fnn.SiLU(), lambda nn: nn.SiLU(), 0.0),
    "gelu": (lambda: fnn.GELU(), lambda nn: nn.GELU(), 0.0),
    "gelu_tanh": (lambda: fnn.GELU(approximate="tanh"), lambda nn: nn.GELU(approximate="tanh"), 0.0),
    "softplus": (lambda: fnn.Softplus(), lambda nn: nn.Softplus(), 0.0),
    "identity": (lambda: fnn.Identity(), lambda nn: nn.Identity(), 0.0),
    "mish": (lambda: fnn.Mish(), lambda nn: nn.Mish(), 0.0),
}


def reference(name):
    return REFERENCE[name.replace("_negative", "")]


#: large ± values, zero (both signs), tiny and subnormal values, the softplus threshold, and ordinary values
EDGES = np.array([-1e4, -710.0, -100.0, -30.0, -20.5, -5.0, -1.0, -1e-8, -1e-300, -0.0, 0.0, 1e-300, 1e-8, 0.5,
                  1.0, 5.0, 19.99, 20.0, 20.01, 30.0, 100.0, 710.0, 1e4])


def inputs(rows=5, seed=0):
    """(rows, len(EDGES)) float64: EDGES in the first row, N(0, 3²) below."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, EDGES.size)) * 3
    x[0] = EDGES
    return x


def assert_within(got, expected, bound):
    """|got - expected| <= bound elementwise (bound an array or a scalar)."""
    err = np.abs(np.asarray(got, np.float64) - expected)
    bad = ~(err <= bound)
    assert not bad.any(), (f"{bad.sum()} of {bad.size} off; worst at {np.argmax(np.where(bad, err, 0))}: "
                           f"got {np.asarray(got).ravel()[np.argmax(np.where(bad, err, 0))]!r}, expected "
                           f"{np.asarray(expected).ravel()[np.argmax(np.where(bad, err, 0))]!r}")


def torch_or_skip():
    return pytest.importorskip("torch", reason="PyTorch is not installed: the torch comparisons are skipped")


# -- against torch.nn ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(CASES))
def test_layer_equals_torch_float64(name):
    torch = torch_or_skip()
    make, make_torch, _ = CASES[name]
    x = inputs()
    dy = np.random.default_rng(1).standard_normal(x.shape)
    layer = make()
    y = layer.forward(x).copy()
    dx = layer.backward(dy).copy()
    t = torch.tensor(x, requires_grad=True)
    ty = make_torch(torch.nn)(t)
    ty.backward(torch.tensor(dy))
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-10, atol=1e-300)
    # a derivative is a sum of terms of order 1 (GELU: Φ(z) + z φ(z)) that cancel in the tails: 1e-10 of
    # the gradient's own scale |dy|, beside 1e-10 of the value
    assert_within(dx, t.grad.numpy(), 1e-10 * (np.abs(t.grad.numpy()) + np.abs(dy)))
    assert np.isfinite(y).all() and np.isfinite(dx).all()


@pytest.mark.parametrize("name", sorted(CASES))
def test_network_equals_torch_float64(name):
    """Dense + activation fused in one pass (the saved pre-activation feeds the derivative), forward,
    backward and predict, against torch.nn.Sequential."""
    torch = torch_or_skip()
    make, make_torch, _ = CASES[name]
    rng = np.random.default_rng(2)
    net = fnn.NeuralNetwork([fnn.FullyConnected(4, 6, dtype=np.float64), make(),
                             fnn.FullyConnected(6, 3, dtype=np.float64)], loss=fnn.L2Loss(), seed=0)
    fc0 = net.layers[0]
    fc0.weights = fc0.weights * 30          # pre-activations of many scales, signs and the softplus switch
    x, target = rng.standard_normal((9, 4)), rng.standard_normal((9, 3))
    loss = net.forward(x, target)
    net.backward()
    seq = torch.nn.Sequential(torch.nn.Linear(4, 6), make_torch(torch.nn), torch.nn.Linear(6, 3)).double()
    with torch.no_grad():
        for lin, fc in zip((seq[0], seq[2]), (net.layers[0], net.layers[2])):
            lin.weight.copy_(torch.tensor(fc.weights.T))
            lin.bias.copy_(torch.tensor(fc.bias))
    out = seq(torch.tensor(x))
    tloss = 0.5 * ((out - torch.tensor(target)) ** 2).sum() / len(x)
    tloss.backward()
    assert loss == pytest.approx(tloss.item(), rel=1e-10)
    np.testing.assert_allclose(net.predict(x), out.detach().numpy(), rtol=1e-10, atol=1e-12)
    for lin, fc in zip((seq[0], seq[2]), (net.layers[0], net.layers[2])):
        np.testing.assert_allclose(fc.grad_weights, lin.weight.grad.numpy().T, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(fc.grad_bias, lin.bias.grad.numpy(), rtol=1e-10, atol=1e-12)


# -- float32 and float64 against the NumPy reference (no torch needed) -----------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("parallel", [False, True], ids=["serial", "parallel"])
def test_kernels_against_reference(dtype, name, parallel):
    """bias_activate and multiply_derivative for every code, at the edge values and random ones: the
    reference is evaluated in float64 at the input as stored in ``dtype``; elementwise, so the tolerance is
    a few eps of the dtype times the size of the terms (a derivative sums terms up to 1 + |z| that cancel),
    plus the smallest normal number (times |z|) for results that underflow."""
    make, _, param = CASES[name]
    f, fprime = reference(name)
    layer = make()
    with np.errstate(over="ignore"):
        z = inputs(seed=3).astype(dtype)
    z = z[:, np.isfinite(z).all(axis=0)]
    zero_bias = np.zeros(z.shape[1], dtype)
    dy = np.random.default_rng(4).standard_normal(z.shape).astype(dtype)
    y = np.full_like(z, np.nan)
    (act.bias_activate_parallel if parallel else act.bias_activate)(z, zero_bias, layer.code, layer.param, y)
    dx = np.full_like(z, np.nan)
    run = act.multiply_derivative_parallel if parallel else act.multiply_derivative
    run(layer.code, layer.param, y, z, dy, dx)
    z64 = z.astype(np.float64)
    eps, tiny = np.finfo(dtype).eps, np.finfo(dtype).tiny
    with np.errstate(over="ignore", invalid="ignore"):
        expected, slope = f(z64, param), fprime(z64, param)
    assert np.isfinite(y).all() and np.isfinite(dx).all()
    floor = 8 * tiny * (1 + np.abs(z64))
    # GELU as torch writes it, z/2 (1 + erf(z/√2)), cancels for negative z: its error is eps of |z|
    y_scale = np.abs(z64) if name.startswith("gelu") else np.abs(expected)
    assert_within(y, expected, 8 * eps * y_scale + floor)
    dy64 = dy.astype(np.float64)
    assert_within(dx, dy64 * slope, 16 * eps * np.abs(dy64) * (np.abs(slope) + 1 + np.abs(z64)) + floor)
    # in place: out aliasing dy
    d = dy.copy()
    run(layer.code, layer.param, y, z, d, d)
    np.testing.assert_array_equal(d, dx)


def test_stable_forms_are_finite_at_large_inputs():
    """softplus(1e4) = 1e4, ELU(-1e4) = -alpha, GELU's tails 0 and z, with finite unit / zero gradients."""
    z = np.array([[-1e4, 1e4]])
    expected = {"softplus": ([0.0, 1e4], [0.0, 1.0]), "elu": ([-0.7, 1e4], [0.0, 1.0]),
                "gelu": ([0.0, 1e4], [0.0, 1.0]), "gelu_tanh": ([0.0, 1e4], [0.0, 1.0]),
                "silu": ([0.0, 1e4], [0.0, 1.0]), "mish": ([0.0, 1e4], [0.0, 1.0])}
    for name, (y_ok, dx_ok) in expected.items():
        layer = CASES[name][0]()
        y = layer.forward(z).copy()
        dx = layer.backward(np.ones_like(z))
        np.testing.assert_array_equal(y[0], y_ok)
        np.testing.assert_array_equal(dx[0], dx_ok)


# -- finite differences ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(CASES))
def test_network_gradcheck(name):
    rng = np.random.default_rng(5)
    net = fnn.NeuralNetwork([fnn.FullyConnected(4, 6, dtype=np.float64), CASES[name][0](),
                             fnn.FullyConnected(6, 3, dtype=np.float64), CASES[name][0](),
                             fnn.FullyConnected(3, 2, dtype=np.float64)], seed=0)
    for fc in net.layers[::2]:
        fc.bias = rng.standard_normal(fc.out_features) * 0.5
    x = rng.standard_normal((7, 4)) * 2
    report = fnn.gradcheck(net, x, rng.integers(0, 2, 7))
    assert report.max_error < 1e-6, str(report)


# -- construction, registry, save and load ---------------------------------------------------------------------
def test_arguments_are_validated_and_fixed():
    with pytest.raises(TypeError, match="negative_slope"):
        fnn.LeakyReLU("0.1")
    with pytest.raises(TypeError, match="negative_slope"):
        fnn.LeakyReLU(True)
    with pytest.raises(ValueError, match="negative_slope"):
        fnn.LeakyReLU(float("nan"))
    with pytest.raises(ValueError, match="alpha"):
        fnn.ELU(float("inf"))
    with pytest.raises(TypeError, match="alpha"):
        fnn.ELU(None)
    with pytest.raises(ValueError, match="approximate"):
        fnn.GELU("exact")
    leaky, elu, gelu = fnn.LeakyReLU(np.float32(0.25)), fnn.ELU(2), fnn.GELU("tanh")
    assert (leaky.negative_slope, elu.alpha, gelu.approximate) == (0.25, 2.0, "tanh")
    assert type(leaky.negative_slope) is float and type(elu.alpha) is float
    for layer, attr, value in ((leaky, "negative_slope", 0.5), (elu, "alpha", 3.0), (gelu, "approximate", "none")):
        with pytest.raises(AttributeError, match=attr):
            setattr(layer, attr, value)
    assert fnn.LeakyReLU().negative_slope == 0.01 and fnn.ELU().alpha == 1.0 and fnn.GELU().approximate == "none"


def test_registry_is_one_place():
    """Every activation is an fnn.Activation with a kernel code, in LAYER_TYPES and ACTIVATIONS."""
    for name, cls in layers.ACTIVATIONS.items():
        assert issubclass(cls, fnn.Activation) and layers.LAYER_TYPES[cls.__name__] is cls
        assert getattr(fnn, cls.__name__) is cls
        assert cls().code in act.CODES.values()
    codes = {CASES[name][0]().code for name in CASES}
    assert len(codes) == 8        # exact and tanh GELU are two codes; LeakyReLU is one code for any slope


def test_a_subclass_that_overrides_the_computation_is_not_fused():
    class Doubled(fnn.ReLU):
        def _forward(self, x):
            return super()._forward(x) * 2
    assert layers.fused_activation(fnn.ReLU()) and not layers.fused_activation(Doubled())
    net = fnn.NeuralNetwork([fnn.FullyConnected(3, 2), Doubled()])
    ok, reason = fused.supports(net)
    assert not ok and "Doubled" in reason


@pytest.mark.parametrize("name", sorted(CASES))
def test_save_and_load_round_trip(name, tmp_path):
    rng = np.random.default_rng(6)
    net = fnn.NeuralNetwork([fnn.FullyConnected(3, 5), CASES[name][0](), fnn.FullyConnected(5, 2)], seed=0)
    net.layers[0].weights = net.layers[0].weights * 10
    path = tmp_path / "model.safetensors"
    net.save(path)
    loaded = fnn.load(path)
    assert type(loaded.layers[1]) is type(net.layers[1])
    assert loaded.layers[1].config() == net.layers[1].config()
    assert (loaded.layers[1].code, loaded.layers[1].param) == (net.layers[1].code, net.layers[1].param)
    x = rng.standard_normal((6, 3)).astype(np.float32)
    np.testing.assert_array_equal(loaded.forward(x), net.forward(x))


def test_cli_trains_with_a_new_activation(tmp_path):
    from fastnn import cli
    parser = cli.build_parser()
    for name in layers.ACTIVATIONS:
        args = parser.parse_args(["train", "--data", "xor", "--activation", name])
        assert args.activation == name
    net = cli.build_network(2, [4], 2, "gelu", "classification", fnn.Adam(), 0)
    assert isinstance(net.layers[1], fnn.GELU) and fused.supports(net)[0]



@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mish_exports_to_onnx_and_torch(dtype, tmp_path):
    """Mish, the activation added to prove the extension cost (issue 17): the ONNX graph (Softplus' stable
    form, Tanh and Mul: Mish-18 is above fastnn's opset) reproduces the logits to 100 eps, to_torch to 16 eps
    (DESIGN §3), with pre-activations beyond the softplus switch at 20."""
    torch = torch_or_skip()
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed: the ONNX comparison is skipped")
    net = fnn.NeuralNetwork([fnn.FullyConnected(4, 8, dtype=dtype), fnn.Mish(), fnn.FullyConnected(8, 3, dtype=dtype)],
                            seed=0)
    net.layers[0].weights = net.layers[0].weights * 20
    x = (np.random.default_rng(6).standard_normal((16, 4)) * 3).astype(dtype)
    logits = net.forward(x)
    scale, eps = max(1.0, np.abs(logits).max()), np.finfo(dtype).eps
    with torch.no_grad():
        got = fnn.to_torch(net)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, logits, rtol=16 * eps, atol=16 * eps * scale)
    session = ort.InferenceSession(net.export_onnx(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    got = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"input": x})))["logits"]
    np.testing.assert_allclose(got, logits, rtol=100 * eps, atol=100 * eps * scale)


# -- activation groups: a network compiles the smallest group of kernels that runs its codes -----------------
def test_the_piecewise_group_is_picked_for_piecewise_codes_only():
    """Any smooth code among a network's codes needs the "all" kernels: the piecewise ones would take it as
    the identity."""
    for code in act.CODES.values():
        expected = "piecewise" if code in (act.IDENTITY, act.RELU, act.LEAKY_RELU) else "all"
        assert act.group((code,)) == expected
        assert act.group((act.RELU, code, act.IDENTITY)) == expected
        assert act.group(np.array([code, act.LEAKY_RELU], np.int64)) == expected
    assert act.group(()) == "piecewise"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("parallel", [False, True], ids=["serial", "parallel"])
@pytest.mark.parametrize("code", sorted(act.PIECEWISE))
def test_piecewise_kernels_give_the_bits_of_the_all_kernels(dtype, parallel, code):
    """The same loops in both groups: forward, derivative into a new array and in place (the aliasing path
    runs scale_by_derivative), NaN and signed zeros included."""
    rng = np.random.default_rng(code)
    z = rng.standard_normal((37, 19)).astype(dtype)
    z[0, :4] = [np.nan, 0.0, -0.0, np.inf]
    b = rng.standard_normal(19).astype(dtype)
    dy = rng.standard_normal(z.shape).astype(dtype)
    results = []
    for name in act.GROUPS:
        kernels = act.KERNELS[name]
        y = np.empty_like(z)
        (kernels.bias_activate_parallel if parallel else kernels.bias_activate)(z, b, code, 0.1, y)
        run = kernels.multiply_derivative_parallel if parallel else kernels.multiply_derivative
        dx = np.empty_like(z)
        run(code, 0.1, y, z, dy, dx)
        d = dy.copy()
        run(code, 0.1, y, z, d, d)
        results.append((y, dx, d))
    for got, expected in zip(results[1], results[0]):
        np.testing.assert_array_equal(got.view(np.uint8), expected.view(np.uint8))


@pytest.mark.parametrize("activations, dropout, expected", [
    ((fnn.ReLU,), False, ("piecewise", False)), ((fnn.ReLU, fnn.LeakyReLU), True, ("piecewise", True)),
    ((fnn.Identity,), False, ("piecewise", False)), ((fnn.ReLU, fnn.TanH), False, ("all", False)),
    ((fnn.Sigmoid,), True, ("all", True)), ((fnn.Mish,), False, ("all", False))])
def test_the_engines_pick_the_chain_of_the_networks_layers(activations, dropout, expected):
    """The fused engine (kernels/step.py chain_key) and the per-layer kernels choose by the codes the
    network holds and whether it has Dropout (a Dropout(0) too: it is still a Dropout layer)."""
    from fastnn.kernels import dense
    stack = [fnn.FullyConnected(4, 6, seed=0)]
    for i, make in enumerate(activations):
        stack += [make()] + ([fnn.Dropout(0.0 if i else 0.25)] if dropout else [])
        stack += [fnn.FullyConnected(6, 6 if i + 1 < len(activations) else 3, seed=i + 1)]
    net = fnn.NeuralNetwork(stack, loss=fnn.SoftmaxCrossEntropy())
    runner = fused.EpochRunner(net, np.zeros((8, 4), np.float32), np.zeros(8, np.int64), 4)
    assert runner.chain == expected
    for layer in stack:
        if isinstance(layer, layers.Activation):
            group = act.group((layer.code,))
            assert dense.kernels_for(layer.code) is dense.KERNELS[group]
            assert act.kernels_for((layer.code,)) is act.KERNELS[group]


@pytest.mark.parametrize("activation, dropout, optimizer", [
    (fnn.ReLU, False, "adam"), (fnn.LeakyReLU, True, "sgd"), (fnn.TanH, False, "momentum")])
def test_a_specialised_chain_trains_the_bits_of_the_full_chain(monkeypatch, activation, dropout, optimizer):
    """The kernels compiled for a network's chain (fewer activation branches, no Dropout code) give the
    weights of the kernel that runs every network, bit for bit."""
    from fastnn.kernels import step
    rng = np.random.default_rng(5)
    X = rng.standard_normal((90, 7)).astype(np.float32)
    y = rng.integers(0, 3, 90)
    optimizers = {"adam": lambda: fnn.Adam(1e-2), "sgd": lambda: fnn.SGD(0.05),
                  "momentum": lambda: fnn.SGD(0.05, momentum=0.9)}

    def trained():
        stack = [fnn.FullyConnected(7, 12, seed=1), activation()] + ([fnn.Dropout(0.3)] if dropout else [])
        net = fnn.NeuralNetwork(stack + [fnn.FullyConnected(12, 3, seed=2)], loss=fnn.SoftmaxCrossEntropy(),
                                optimizer=optimizers[optimizer](), seed=3)
        net.fit(X, y, epochs=3, batch_size=16, verbose=0, fused=True)
        return np.concatenate([p.ravel() for p in net.params])

    chosen = trained()
    assert step.chain_key((activation.code,), dropout) != step.FULL_CHAIN
    monkeypatch.setattr(step, "chain_key", lambda codes, has_dropout: step.FULL_CHAIN)
    full = trained()
    np.testing.assert_array_equal(chosen.view(np.uint32), full.view(np.uint32))

