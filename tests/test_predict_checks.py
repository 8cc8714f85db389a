"""predict, predict_proba, evaluate and forward(x) learn whether X is finite from the first layer's GEMM
(kernels/dense.py ``infer``; issue 17 item 4): the same refusals as the scan they made before, with the same
text, the same outputs bit for bit as the kernel they ran before (dense.forward), and X is never modified.

The first group pins what the design rests on, for the BLAS the kernels call: a NaN or Inf anywhere in a row
of x makes column 0 of that row of x @ W non-finite, also against zero weights (inf * 0), on one BLAS thread
and on several."""
import numpy as np
import pytest

import fastnn as fnn
from fastnn import network
from fastnn.kernels import activations as act_kernels
from fastnn.kernels import dense
from fastnn.kernels._blas import MIN_THREADED_MACS

from .helpers import make_data

DTYPES = (np.float32, np.float64)
BAD = (np.nan, np.inf, -np.inf)


# -- the BLAS propagates a non-finite entry of x to every column of its row -------------------------------------
def _weights(kind, d, m, dtype, rng, c):
    w = rng.standard_normal((d, m)).astype(dtype)
    if kind == "zero matrix":
        w[:] = 0
    elif kind == "zero column 0":
        w[:, 0] = 0
    elif kind == "zero row of the bad feature":      # inf * 0 in every term of the bad entry
        w[c, :] = 0
    return w


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1, 1), (1, 7, 1), (5, 1, 3), (9, 13, 1), (64, 64, 128), (3, 784, 256),
                                   (1, 3000, 1400), (512, 128, 64)])
@pytest.mark.parametrize("kind", ["random", "zero matrix", "zero column 0", "zero row of the bad feature"])
def test_infer_finds_every_row_that_holds_nan_or_inf(dtype, shape, kind):
    n, d, m = shape
    rng = np.random.default_rng(n * d + m)
    threads = [1, 2] if n * d * m >= MIN_THREADED_MACS else [1]     # the multi-threaded GEMM path too
    for t in threads:
        for bad in BAD:
            for r, c in {(0, 0), (n - 1, d - 1), (n // 2, d // 2), (0, d - 1), (n - 1, 0)}:
                x = rng.standard_normal((n, d)).astype(dtype)
                x[r, c] = bad
                w = _weights(kind, d, m, dtype, rng, c)
                out = np.empty((n, m), dtype)
                assert dense.infer(x, w, np.zeros(m, dtype), act_kernels.RELU, 0.0, out, t, True) == r, \
                    (bad, t, (r, c))
            x = rng.standard_normal((n, d)).astype(dtype)
            out = np.empty((n, m), dtype)
            assert dense.infer(x, w, np.zeros(m, dtype), act_kernels.RELU, 0.0, out, t, True) == -1
            assert dense.infer(x, w, np.zeros(m, dtype), act_kernels.RELU, 0.0, out, t, False) == -1


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("code", sorted(act_kernels.CODES.values()))
def test_infer_computes_forwards_bits(dtype, code):
    """infer's output is dense.forward's (the kernel predict ran before), bit for bit, checked or not."""
    rng = np.random.default_rng(code)
    x, w = rng.standard_normal((37, 19)).astype(dtype), rng.standard_normal((19, 11)).astype(dtype)
    b = rng.standard_normal(11).astype(dtype)
    ref = np.empty((37, 11), dtype)
    dense.forward(x, w, b, code, 0.1, np.empty((0, 0), dtype), ref, 1)
    for check in (True, False):
        out = np.empty((37, 11), dtype)
        assert dense.infer(x, w, b, code, 0.1, out, 1, check) == -1
        assert out.tobytes() == ref.tobytes()


# -- the network: the same refusals, the same outputs -----------------------------------------------------------
def _net(dtype=np.float32, sizes=(6, 12, 4), first_zero_row=None, threads_sized=False, act=fnn.ReLU):
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(fnn.FullyConnected(a, b, dtype=dtype, seed=i))
        if i < len(sizes) - 2:
            layers.append(act())
    net = fnn.NeuralNetwork(layers, seed=0)
    if first_zero_row is not None:
        w = net.layers[0].weights.copy()
        w[first_zero_row, :] = 0
        net.layers[0].weights = w
    return net


def _old_message(net, X, name="X"):
    """The ValueError the up-front scan raised (check_input still makes it)."""
    with pytest.raises(ValueError) as info:
        net.check_input(X, name)
    return str(info.value)


def _calls(net, y):
    return {"predict": net.predict, "predict_proba": net.predict_proba, "evaluate": lambda x: net.evaluate(x, y),
            "forward": net.forward}


@pytest.fixture(params=["one chunk", "chunks"])
def chunk(request, monkeypatch):
    """Both paths of _outputs: X in one chunk, and X split into several (PREDICT_CHUNK made small)."""
    if request.param == "chunks":
        monkeypatch.setattr(network, "PREDICT_CHUNK", 16)
    return network.PREDICT_CHUNK


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bad", BAD)
@pytest.mark.parametrize("where", ["first row", "last row", "second chunk", "first column", "last column",
                                   "inf * 0"])
def test_nonfinite_X_is_refused_with_the_scans_message(dtype, bad, where, chunk):
    X, y = make_data(n=50, dtype=dtype)
    r, c = {"first row": (0, 2), "last row": (49, 3), "second chunk": (20, 1), "first column": (33, 0),
            "last column": (7, 5), "inf * 0": (40, 4)}[where]
    net = _net(dtype, first_zero_row=c if where == "inf * 0" else None)
    Xbad = X.copy()
    Xbad[r, c] = bad
    kept = Xbad.copy()
    for name, call in _calls(net, y).items():
        with pytest.raises(ValueError) as info:
            call(Xbad)
        assert str(info.value) == _old_message(net, Xbad, "x" if name == "forward" else "X"), name
        assert type(info.value) is ValueError
        assert np.array_equal(Xbad, kept, equal_nan=True)       # X is never modified


def test_several_bad_values_are_counted_and_the_first_is_named(chunk):
    X, y = make_data(n=50)
    X[45, 1], X[18, 5], X[30, 0] = np.inf, np.nan, -np.inf
    net = _net()
    for call in _calls(net, y).values():
        with pytest.raises(ValueError, match=r"^X contains 3 NaN or infinite value\(s\), the first at index "
                                             r"\(18, 5\)$|^x contains 3"):
            call(X)


def test_values_beyond_float32_are_named_as_such():
    """float64 data with 1e39 for a float32 network: the converted copy the kernel reads holds inf there, and
    the message says what the user's X held — also for a list."""
    X, y = make_data(n=40, dtype=np.float64)
    X[11, 2] = 1e39
    net = _net()
    for given in (X, X.tolist()):
        for call in _calls(net, y).values():
            with pytest.raises(ValueError, match=r"^[Xx] has 1 finite value\(s\) beyond the float32 range .* "
                                                 r"index \(11, 2\): 1e\+39; "):
                call(given)


def _reference_outputs(net, X, chunk):
    """The outputs as predict computed them before: dense.forward layer by layer, chunk by chunk."""
    parts = []
    for start in range(0, len(X), chunk):
        x = X[start:start + chunk]
        layers, i = net.layers, 0
        while i < len(layers):
            fc = layers[i]
            after = layers[i + 1] if i + 1 < len(layers) else None
            code, param = (after.code, after.param) if isinstance(after, fnn.layers.Activation) else (0, 0.0)
            out = np.empty((len(x), fc.out_features), fc.dtype)
            macs = len(x) * fc.in_features * fc.out_features
            dense.forward(x, fc.weights, fc.bias, code, param, np.empty((0, 0), fc.dtype), out,
                          fnn.get_num_threads() if macs >= MIN_THREADED_MACS else 1)
            x, i = out, i + (2 if after is not None else 1)
        parts.append(x)
    return np.concatenate(parts)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", [fnn.ReLU, fnn.TanH, fnn.GELU, fnn.Identity])
def test_outputs_are_the_old_kernels_bits(dtype, act, chunk):
    X, y = make_data(n=50, dtype=dtype)
    net = _net(dtype, act=act)
    ref = _reference_outputs(net, X, chunk)
    assert net.forward(X).tobytes() == ref.tobytes()
    assert np.array_equal(net.predict(X), np.argmax(ref, axis=1))
    proba = np.empty_like(ref)
    fnn.losses.kernels.softmax(ref, proba)
    assert net.predict_proba(X).tobytes() == proba.tobytes()


def test_the_multithreaded_gemm_path_refuses_and_matches(monkeypatch):
    """A first layer large enough for BLAS threads (fnn.set_num_threads(2)): the same refusal and bits."""
    monkeypatch.setattr(network, "PREDICT_CHUNK", 1024)
    before = fnn.get_num_threads()
    fnn.set_num_threads(2)
    try:
        rng = np.random.default_rng(5)
        X = rng.standard_normal((2500, 128)).astype(np.float32)
        net = _net(sizes=(128, 64, 4))
        assert 1024 * 128 * 64 >= MIN_THREADED_MACS
        assert net.forward(X).tobytes() == _reference_outputs(net, X, 1024).tobytes()
        for r in (0, 1500, 2499):
            Xbad = X.copy()
            Xbad[r, 77] = np.inf
            with pytest.raises(ValueError, match=rf"^X contains 1 NaN or infinite value\(s\), the first at index "
                                                 rf"\({r}, 77\)$"):
                net.predict(Xbad)
    finally:
        fnn.set_num_threads(before)


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_finite_X_that_overflows_gives_what_it_gave_before(dtype, chunk):
    """A non-finite x @ W from a finite X (an overflow; non-finite weights) is not X's fault: X is read once
    to tell, and the outputs are what the kernel gave before (inf / NaN), not an error; ``predict``, which
    would turn such a row into class 0 without a word, adds one RuntimeWarning naming the first such row."""
    X, y = make_data(n=50, dtype=dtype)
    X[25] = np.finfo(dtype).max / 2
    net = _net(dtype)
    w = net.layers[0].weights.copy()
    w[:, 0] = 1                             # column 0 of row 25 of X @ W overflows: the kernel reports it
    net.layers[0].weights = w
    ref = _reference_outputs(net, X, chunk)
    assert not np.isfinite(ref).all()
    assert net.forward(X).tobytes() == ref.tobytes()
    assert np.isnan(net.evaluate(X, y)["loss"])
    with pytest.warns(RuntimeWarning, match=r"output is NaN or infinite for row 25 of X .*overflow"):
        net.predict(X)                      # class 0 for a NaN row: not without a word
    net.params[0][0, 0] = np.nan            # a diverged network (assigning weights refuses NaN: written in place)
    X, _ = make_data(n=50, dtype=dtype)
    assert net.forward(X).tobytes() == _reference_outputs(net, X, chunk).tobytes()


class _Doubler(fnn.Layer):
    def _forward(self, x):
        self._out = 2 * x
        return self._out

    def _backward(self, dy, need_input_grad=True):
        return 2 * dy


@pytest.mark.parametrize("first", ["Dropout", "Activation", "custom"])
def test_a_first_layer_that_is_not_fully_connected_is_scanned_first(first, chunk):
    """Dropout, an activation or a custom layer first: X is scanned before any layer sees it (one pass), with
    the same message."""
    from .test_per_call import _Passes
    lead = {"Dropout": fnn.Dropout(0.5), "Activation": fnn.ReLU(), "custom": _Doubler()}[first]
    net = fnn.NeuralNetwork([lead, fnn.FullyConnected(6, 4, seed=0)], seed=0)
    X, y = make_data(n=50)
    Xbad = X.copy()
    Xbad[30, 2] = -np.inf
    for call in _calls(net, y).values():
        with pytest.raises(ValueError, match=r"^[Xx] contains 1 NaN or infinite value\(s\), the first at index "
                                             r"\(30, 2\)$"):
            call(Xbad)
    net.predict(X)
    with pytest.MonkeyPatch.context() as mp:
        passes = _Passes(mp)
        net.predict(X)
        assert passes.of(X)[0] == X.size     # (a custom layer's output is checked too: np.isfinite, as before)


def test_custom_layers_after_the_first_see_only_finite_input():
    """With a custom layer anywhere, X is scanned first: the custom layer never sees a NaN row of X."""
    seen = []

    class Spy(_Doubler):
        def _forward(self, x):
            seen.append(np.isfinite(x).all())
            return super()._forward(x)
    net = fnn.NeuralNetwork([fnn.FullyConnected(6, 5, seed=0), Spy(), fnn.FullyConnected(5, 4, seed=1)], seed=0)
    X, _ = make_data(n=30)
    X[3, 3] = np.nan
    with pytest.raises(ValueError, match=r"^X contains 1 NaN"):
        net.predict(X)
    assert seen == []


@pytest.mark.filterwarnings("ignore:overflow encountered in cast")     # the transform's own cast warns
def test_preprocessing_whose_output_overflows_is_refused_as_before():
    """A finite raw cell that standardisation takes beyond float32: the transformed X the kernel reads holds
    inf there, and the message is the one the scan of the transformed X gave."""
    from fastnn.preprocessing import Preprocessing
    rng = np.random.default_rng(2)
    X = rng.standard_normal((60, 6)) * 0.1
    net = _net()
    net.preprocessing = Preprocessing.fit(X, columns=[f"c{i}" for i in range(6)], standardize=True)
    net.predict(X)
    Xbad = X.copy()
    Xbad[41, 4] = 3e38
    expected = _old_message(net, net.preprocessing.transform(Xbad, np.float32))
    assert "beyond the float32 range" in expected or "NaN or infinite" in expected
    for call in (net.predict, net.predict_proba):
        with pytest.raises(ValueError) as info:
            call(Xbad)
        assert str(info.value) == expected


def test_the_plan_predict_keeps_is_checked_again_when_it_may_be_stale():
    """predict keeps the checked plan of a network of fastnn's layers between calls (its fixed cost per call);
    a replaced loss, a layer no longer viewing the parameter buffer, a copy: checked or rebuilt again."""
    import copy
    import pickle
    X, y = make_data(n=30)
    net = _net()
    first = net.predict_proba(X)
    for twin in (copy.deepcopy(net), pickle.loads(pickle.dumps(net))):
        assert twin.predict_proba(X).tobytes() == first.tobytes()
        twin.params[0][...] = 0                                     # the copy's own buffer, not the original's
        assert not np.array_equal(twin.predict_proba(X), first)
    assert net.predict_proba(X).tobytes() == first.tobytes()
    net.loss = fnn.CrossEntropyLoss()
    with pytest.raises(ValueError, match="CrossEntropyLoss takes probabilities"):
        net.predict(X)
    net.loss = fnn.SoftmaxCrossEntropy()
    assert net.predict_proba(X).tobytes() == first.tobytes()
    fc = net.layers[0]
    fc.bind(np.zeros(fc.n_params, np.float32), np.zeros(fc.n_params, np.float32))
    with pytest.raises(ValueError, match="no longer views the network's parameter buffer"):
        net.predict(X)


def test_a_nonfinite_X_is_named_before_bad_targets():
    """evaluate named a non-finite X before any problem of y (X was scanned first): still so."""
    X, y = make_data(n=30)
    X[4, 1] = np.nan
    net = _net()
    for bad_y in (y[:-1], y + 10, np.full(len(y), np.nan)):
        with pytest.raises(ValueError, match=r"^X contains 1 NaN or infinite value\(s\), the first at index \(4, 1\)$"):
            net.evaluate(X, bad_y)
    with pytest.raises(ValueError, match="class ids must lie in"):
        net.evaluate(np.nan_to_num(X), y + 10)


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")      # np.matrix
@pytest.mark.parametrize("kind", ["masked", "matrix", "read-only", "fortran", "big-endian", "list"])
def test_arrays_of_other_kinds_are_converted_as_before(kind):
    """X that is an ndarray subclass, read-only, Fortran-ordered, of another byte order or a list: the kernels
    get a plain C-contiguous writable array, and the outputs are those of the plain array."""
    X, _ = make_data(n=20)
    net = _net()
    ref = net.forward(X)
    given = {"masked": lambda: np.ma.masked_array(X, mask=np.zeros_like(X, bool)), "matrix": lambda: np.asmatrix(X),
             "read-only": lambda: np.lib.stride_tricks.as_strided(X, writeable=False),
             "fortran": lambda: np.asfortranarray(X), "big-endian": lambda: X.astype(">f4"),
             "list": lambda: X.tolist()}[kind]()
    assert net.forward(given).tobytes() == ref.tobytes()
    assert np.array_equal(net.predict(given), net.predict(X))
