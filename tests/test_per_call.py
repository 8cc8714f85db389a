"""A call costs nothing beyond the passes its kernel makes (DESIGN §4, issue 17 item 4): the estimators' predict
checks X in ONE pass (fastnn._checks.scan, kernels/scan.py); the network's predict, predict_proba, evaluate and
forward(x) make none (the first layer's GEMM tells, tests/test_predict_checks.py), nor do fit on the fused engine
and the estimators' fit / partial_fit (the fused kernel checks the rows it gathers); the checks still
refuse NaN/Inf with the same message, naming where, and nothing the user owns changes when they do. Passes
are counted, not timed."""
import warnings

import numpy as np
import pytest

import fastnn as fnn
from fastnn import _checks
from fastnn.engines import fused
from fastnn.kernels import scan as scan_kernels

from .helpers import make_data, make_net, same_history, same_state

DTYPES = (np.float32, np.float64)


# -- the one pass -----------------------------------------------------------------------------------------
@pytest.fixture(params=["kernel", "numpy"])
def kernel_for_all_sizes(request, monkeypatch):
    """Both scans: the kernel (made to take every size) and NumPy's (small arrays)."""
    monkeypatch.setattr(_checks, "SCAN_KERNEL_ELEMENTS", 0 if request.param == "kernel" else 1 << 62)


@pytest.mark.parametrize("dtype", DTYPES)
def test_scan_is_the_exact_largest_magnitude(dtype, kernel_for_all_sizes):
    x = np.random.default_rng(0).standard_normal((37, 5)).astype(dtype)
    x[11, 3] = -7.25
    assert _checks.scan(x) == 7.25 == _checks.absmax(x)
    assert _checks.scan(x[:0]) == 0.0
    assert _checks.scan(-np.full((2, 2), np.finfo(dtype).tiny, dtype)) == np.finfo(dtype).tiny
    assert _checks.scan(np.array([[-0.0]], dtype)) == 0.0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_scan_is_the_finiteness_verdict(dtype, bad, kernel_for_all_sizes):
    x = np.ones((9, 4), dtype)
    x[5, 1] = bad
    x[6, 2] = np.finfo(dtype).max
    top = _checks.scan(x)
    assert np.isnan(top) if np.isnan(bad) else top == np.inf
    assert _checks.absmax(x) == np.inf        # absmax's contract: inf for anything not finite


@pytest.mark.parametrize("dtype", DTYPES)
def test_scan_split_over_threads_gives_the_same_answer(dtype, monkeypatch, kernel_for_all_sizes):
    monkeypatch.setattr(_checks, "SCAN_SPLIT_ELEMENTS", 64)
    x = np.random.default_rng(1).standard_normal((101, 7)).astype(dtype)
    x[100, 6] = 9.5                 # in the last part
    assert _checks.scan(x, threads=3) == 9.5 == _checks.scan(x, threads=1)
    x[0, 0] = np.nan                # in the first part
    assert np.isnan(_checks.scan(x, threads=3))


def test_scan_of_arrays_the_kernel_does_not_take():
    """Read-only, strided and other float widths go through NumPy (no second compiled signature)."""
    x = np.arange(24, dtype=np.float64).reshape(4, 6) - 30
    ro = x.copy()
    ro.flags.writeable = False
    assert _checks.scan(ro) == 30.0 == _checks.scan(x[:, ::2]) == _checks.scan(x.astype(np.float16))
    x[1, 1] = np.nan
    assert np.isnan(_checks.scan(x[:, 1::2])) and np.isnan(_checks.scan(x.astype(np.float16)))


# -- counting the passes ---------------------------------------------------------------------------------
class _Passes:
    """Counts the elements each one-pass scan and each np.isfinite call reads."""

    def __init__(self, monkeypatch):
        monkeypatch.setattr(_checks, "SCAN_KERNEL_ELEMENTS", 0)     # the kernel for every size, to count it
        self.scans, self.isfinite = [], []
        real_scan, real_isfinite = scan_kernels.max_magnitude, np.isfinite

        def counted_scan(bits, start, stop):
            self.scans.append(stop - start)
            return real_scan(bits, start, stop)

        def counted_isfinite(x, *args, **kwargs):
            self.isfinite.append(np.size(x))
            return real_isfinite(x, *args, **kwargs)
        monkeypatch.setattr(scan_kernels, "max_magnitude", counted_scan)
        monkeypatch.setattr(np, "isfinite", counted_isfinite)

    def of(self, X):
        """(elements of X scanned, np.isfinite calls on arrays as large as X)."""
        return sum(n for n in self.scans if n >= X.size // 8), sum(1 for n in self.isfinite if n >= X.size)


def _big(n=4096, features=16, dtype=np.float32):
    return make_data(n=n, features=features, classes=4, dtype=dtype)


@pytest.mark.parametrize("fused_", [True, False])
def test_fit_reads_X_in_its_kernel_only(monkeypatch, fused_):
    """Both engines check the rows they gather (the fused kernel, the per-layer engine each batch): fit makes
    no pass over X of its own."""
    X, y = _big()
    net = make_net(sizes=(16, 8, 4))
    net.fit(X, y, epochs=1, verbose=0, fused=fused_)          # compile outside the count
    passes = _Passes(monkeypatch)
    net.fit(X, y, epochs=2, verbose=0, fused=fused_)
    assert passes.of(X) == (0, 0)


def test_fit_with_sample_weight_and_float64_data_reads_X_in_its_kernel_only(monkeypatch):
    X, y = _big(dtype=np.float64)          # converted to the network's float32: the converted copy is read
    w = np.linspace(0.5, 2.0, len(X))
    net = make_net(sizes=(16, 8, 4))
    net.fit(X, y, epochs=1, verbose=0, sample_weight=w)
    passes = _Passes(monkeypatch)
    net.fit(X, y, epochs=1, verbose=0, sample_weight=w)
    assert passes.of(X) == (0, 0)


def test_the_drop_ins_predictions_read_X_in_the_networks_kernel_only(monkeypatch):
    """MLPClassifier/MLPRegressor predict, predict_proba and score leave X's finiteness to the network's first
    GEMM too; a NaN still gets scikit-learn's message (the pass is made only on that path)."""
    pytest.importorskip("sklearn")
    from fastnn.estimators import MLPClassifier, MLPRegressor
    X, y = _big()
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=2, random_state=0).fit(X, y)
    reg = MLPRegressor(hidden_layer_sizes=(8,), max_iter=2, random_state=0).fit(X, y.astype(float))
    for call in (lambda: clf.predict(X), lambda: clf.predict_proba(X), lambda: clf.score(X, y),
                 lambda: reg.predict(X), lambda: reg.score(X, y.astype(float))):
        passes = _Passes(monkeypatch)
        call()
        assert passes.of(X) == (0, 0)
        monkeypatch.undo()
    bad = X.copy()
    bad[100, 3] = np.nan
    for est in (clf, reg):
        with pytest.raises(ValueError, match="Input X contains NaN"):
            est.predict(bad)


def test_predict_and_evaluate_read_X_in_their_kernel_only(monkeypatch):
    """The first layer's GEMM tells whether X is finite (kernels/dense.py ``infer``): no pass of their own."""
    X, y = _big()
    net = make_net(sizes=(16, 8, 4))
    net.predict(X), net.evaluate(X, y)
    for call in (lambda: net.predict(X), lambda: net.predict_proba(X), lambda: net.evaluate(X, y),
                 lambda: net.forward(X)):
        passes = _Passes(monkeypatch)
        call()
        assert passes.of(X) == (0, 0)
        monkeypatch.undo()


def test_estimators_read_X_once(monkeypatch):
    """predict, predict_proba and score read X in the network's first GEMM only; fit and partial_fit not at all
    (the fused kernel checks the rows it gathers), except fit with early stopping (whose validation rows the
    kernel does not read)."""
    pytest.importorskip("sklearn")
    X, y = _big()
    classes = np.arange(4)
    est = fnn.MLPClassifier(hidden_layer_sizes=(8,), max_iter=2, random_state=0)
    est.partial_fit(X, y, classes=classes)
    new = dict(hidden_layer_sizes=(8,), max_iter=2, tol=0.0, random_state=0)
    for call, scanned in ((lambda: est.partial_fit(X, y), 0), (lambda: est.partial_fit(X, y, classes=classes), 0),
                          (lambda: est.predict(X), 0), (lambda: est.predict_proba(X), 0),
                          (lambda: est.score(X, y), 0), (lambda: fnn.MLPClassifier(**new).fit(X, y), 0),
                          (lambda: fnn.MLPClassifier(early_stopping=True, **new).fit(X, y), X.size)):
        passes = _Passes(monkeypatch)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")       # max_iter reached
            call()
        assert passes.of(X) == (scanned, 0)
        monkeypatch.undo()


# -- the same refusals, naming where; nothing changes --------------------------------------------------------
def _bad(X, bad=np.nan, at=(7, 3)):
    X = X.copy()
    X[at] = bad
    return X


def _snapshot(net):
    return ([p.copy() for p in net.params], net.optimizer.steps,
            None if net.optimizer.state is None else [[s.copy() for s in g] for g in net.optimizer.state],
            {k: list(v) for k, v in net.history.items()}, net.shuffle_state)


def _unchanged(net, before):
    params, steps, state, history, shuffle = before
    assert all(np.array_equal(p, q) for p, q in zip(net.params, params))
    assert net.optimizer.steps == steps
    if state is None:
        assert net.optimizer.state is None
    else:
        assert all(np.array_equal(a, b) for g, h in zip(net.optimizer.state, state) for a, b in zip(g, h))
    assert {k: list(v) for k, v in net.history.items()} == history
    assert net.shuffle_state == shuffle


@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("fused_", [True, False])
def test_fit_refuses_nonfinite_X_naming_where_and_changes_nothing(bad, fused_):
    X, y = make_data()
    net = make_net()
    net.fit(X, y, epochs=1, verbose=0, fused=fused_)
    before = _snapshot(net)
    message = r"X contains 1 NaN or infinite value\(s\), the first at index \(7, 3\)"
    with pytest.raises(ValueError, match=message):
        net.fit(_bad(X, bad), y, epochs=2, verbose=0, fused=fused_)
    with pytest.raises(ValueError, match="validation_data X contains 1 NaN or infinite value"):
        net.fit(X, y, epochs=2, verbose=0, fused=fused_, validation_data=(_bad(X, bad), y))
    w = np.ones(len(X))
    w[9] = bad
    with pytest.raises(ValueError, match=r"sample_weight contains 1 NaN or infinite value\(s\), the first at "
                                         r"index \(9,\)"):
        net.fit(X, y, epochs=2, verbose=0, fused=fused_, sample_weight=w)
    _unchanged(net, before)


def test_beyond_the_dtype_range_is_still_named_as_such():
    X, y = make_data(dtype=np.float64)
    net = make_net()              # float32
    with pytest.raises(ValueError, match=r"X has 1 finite value\(s\) beyond the float32 range .* index \(7, 3\)"):
        net.fit(_bad(X, 1e39), y, epochs=1, verbose=0)


@pytest.mark.parametrize("bad", [np.nan, -np.inf])
def test_predict_and_evaluate_refuse_nonfinite_X(bad):
    X, y = make_data()
    net = make_net()
    message = r"X contains 1 NaN or infinite value\(s\), the first at index \(7, 3\)"
    for call in (net.predict, net.predict_proba, lambda x: net.evaluate(x, y)):
        with pytest.raises(ValueError, match=message):
            call(_bad(X, bad))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_estimators_refuse_nonfinite_X_with_scikit_learns_message(bad):
    pytest.importorskip("sklearn")
    X, y = make_data()
    est = fnn.MLPClassifier(hidden_layer_sizes=(8,), random_state=0)
    est.partial_fit(X, y, classes=np.arange(4))
    coefs = [c.copy() for c in est.coefs_]
    what = "NaN" if np.isnan(bad) else "infinity"
    for call in (lambda x: est.partial_fit(x, y), est.predict, est.predict_proba, lambda x: est.score(x, y),
                 lambda x: fnn.MLPClassifier(hidden_layer_sizes=(8,)).fit(x, y)):
        with pytest.raises(ValueError, match=f"Input X contains {what}"):
            call(_bad(X, bad))
    assert all(np.array_equal(a, b) for a, b in zip(est.coefs_, coefs))


def test_a_bound_is_reused_only_for_the_same_array_in_the_scope():
    x = np.ones((4, 3), np.float32)
    with _checks.bound_scope():
        assert _checks.ensure_finite(x, "x") == 1.0
        x[0, 0] = 5.0                               # the caller promised no change: the memory is reused
        assert _checks.absmax(x) == 1.0
        assert _checks.absmax(x.copy()) == 5.0       # another object is scanned
        _checks.forget_bounds()
        assert _checks.absmax(x) == 5.0
        with _checks.bounds_suspended():
            _checks.ensure_finite(x, "x")
            x[0, 0] = np.inf
            with pytest.raises(ValueError, match="x contains 1 NaN"):
                _checks.ensure_finite(x, "x")
    x[0, 0] = 2.0
    _checks.ensure_finite(x, "x")                  # outside any scope: nothing remembered
    x[0, 0] = np.nan
    assert _checks.absmax(x) == np.inf


def test_a_callback_that_changes_X_between_epochs_is_not_trusted():
    """The epochs reuse nothing: a callback that writes NaN into the caller's X before a rebuild of the
    engine (here: a replaced loss) is caught by the check of the rebuild."""
    X, y = make_data()
    Y = np.eye(4, dtype=np.float32)[y]
    net = make_net(loss=fnn.SoftmaxCrossEntropy())

    class Spoil:
        def on_epoch_end(self, epoch, history):
            X[3, 1] = np.nan
            net.loss = fnn.SigmoidCrossEntropy()
            return False
    with pytest.raises(ValueError, match=r"a callback changed net.loss.*X contains 1 NaN or infinite value\(s\), "
                                         r"the first at index \(3, 1\)"):
        net.fit(X, Y, epochs=2, verbose=0, callbacks=[Spoil()])


# -- k calls of one epoch are one call of k epochs --------------------------------------------------------------
@pytest.mark.parametrize("opt", ["sgd", "adam", "momentum"])
@pytest.mark.parametrize("fused_", [True, False])
def test_k_calls_of_one_epoch_equal_one_call_of_k(opt, fused_):
    X, y = make_data()
    a, b = make_net(opt=opt), make_net(opt=opt)
    losses = [a.fit(X, y, epochs=1, batch_size=32, verbose=0, fused=fused_, seed=5)["loss"][0] for _ in range(3)]
    h = b.fit(X, y, epochs=3, batch_size=32, verbose=0, fused=fused_, seed=5)
    same_state(a, b)
    assert losses == h["loss"]


# -- the kernel checks the rows it gathers: fit makes no pass over X of its own (fused engine) -------------------
def _fit_refused_at(net, X, y, r, bad, **fit):
    """Fit on X with ``bad`` at (r, 3): the boundary's own ValueError naming (r, 3), and nothing changed."""
    before, lr = _snapshot(net), net.optimizer.lr
    message = rf"^X contains 1 NaN or infinite value\(s\), the first at index \({r}, 3\)$"
    with pytest.raises(ValueError, match=message) as info:
        net.fit(_bad(X, bad, at=(r, 3)), y, verbose=0, **fit)
    assert type(info.value) is ValueError          # not the engine's NonFiniteInput, not TrainingDivergedError
    _unchanged(net, before)
    assert net.optimizer.lr == lr


@pytest.mark.parametrize("threads_", [1, 2])
@pytest.mark.parametrize("opt", ["sgd", "momentum", "adam"])
@pytest.mark.parametrize("where", ["first batch", "middle batch", "last batch", "shuffled"])
@pytest.mark.parametrize("bad", [np.nan, -np.inf])
def test_a_bad_row_found_by_the_kernel_is_refused_and_changes_nothing(monkeypatch, bad, where, opt, threads_):
    """The fused kernels (serial, and batch-parallel on 2 threads) find NaN/Inf in row r as they gather its
    batch — after the steps of the batches before it — and the fit is refused with the boundary's message:
    weights, optimizer state and steps, rate, history and shuffling state as before the call; a clean fit
    after it equals a reference run bit for bit."""
    from fastnn import threads
    monkeypatch.setattr(threads, "batch_parallel_threads", lambda widths, rows, samples: threads_)
    X, y = make_data(n=150)
    r = {"first batch": 5, "middle batch": 75, "last batch": 149, "shuffled": 101}[where]
    fit = dict(batch_size=32, shuffle=where == "shuffled", fused=True, seed=3)
    net, ref = make_net(opt=opt), make_net(opt=opt)
    for n in (net, ref):
        n.fit(X, y, epochs=1, verbose=0, **fit)
    _fit_refused_at(net, X, y, r, bad, epochs=2, **fit)
    for n in (net, ref):
        n.fit(X, y, epochs=2, verbose=0, **fit)
    same_state(net, ref)
    same_history(net.history, ref.history)
    assert net.shuffle_state == ref.shuffle_state


@pytest.mark.parametrize("fused_", [True, False])
def test_a_bad_row_in_a_fresh_fit_and_with_weights_or_a_split(fused_):
    """A first fit (no state yet), a weighted fit and a fit with validation_split (whose validation rows the
    kernel does not read: the set-up checks them) refuse a bad row with the same message on both engines."""
    X, y = make_data()
    net = make_net()
    _fit_refused_at(net, X, y, 60, np.nan, epochs=1, fused=fused_)
    assert net.optimizer.steps == 0 and net.optimizer.state is None
    _fit_refused_at(net, X, y, 90, np.inf, epochs=1, fused=fused_, sample_weight=np.linspace(0.5, 1.5, len(X)))
    _fit_refused_at(net, X, y, 140, np.nan, epochs=1, fused=fused_, validation_split=0.2)     # a validation row
    _fit_refused_at(net, X, y, 20, np.nan, epochs=1, fused=fused_, validation_split=0.2)      # a training row


def test_beyond_the_float32_range_found_by_the_kernel_is_named_as_such():
    """float64 data with a finite value beyond float32's range, for a float32 network: the converted copy the
    kernel reads holds inf there, and the message says what the user's X held (also for a list)."""
    X, y = make_data(dtype=np.float64)
    net = make_net()
    net.fit(X, y, epochs=1, verbose=0)
    before = _snapshot(net)
    message = r"^X has 1 finite value\(s\) beyond the float32 range .* index \(77, 3\): 1e\+39; "
    for given in (_bad(X, 1e39, at=(77, 3)), _bad(X, 1e39, at=(77, 3)).tolist()):
        with pytest.raises(ValueError, match=message):
            net.fit(given, y, epochs=2, batch_size=16, verbose=0)
    _unchanged(net, before)


def test_a_callback_that_writes_nan_into_X_mid_fit_is_caught_by_the_kernel():
    """X is not scanned again between epochs: the kernel finds the NaN a callback wrote into the caller's
    (unconverted, so shared) X, and the fit is refused as a whole, the network put back as before it."""
    X, y = make_data()
    net = make_net()
    net.fit(X, y, epochs=1, verbose=0)
    before = _snapshot(net)

    class Spoil:
        def on_epoch_end(self, epoch, history):
            X[42, 3] = np.nan
            return False
    with pytest.raises(ValueError, match=r"^X contains 1 NaN or infinite value\(s\), the first at index \(42, 3\)$"):
        net.fit(X, y, epochs=3, verbose=0, callbacks=[Spoil()])
    _unchanged(net, before)


def test_the_engine_says_whether_it_checks_X():
    """The loop asks the engine that runs: the fused one and the per-layer one check the rows they gather (the
    distributed one does not: the loop checks X for it)."""
    from fastnn.engines.local import LocalRun
    from fastnn.engines.per_layer import LayerEpoch
    from fastnn.training import Trainer
    assert fused.EpochRunner.checks_input and LayerEpoch.checks_input
    assert LocalRun.engine_class(True) is fused.EpochRunner and LocalRun.engine_class(False) is LayerEpoch
    net = make_net()
    assert Trainer(net, fused="auto").input_checked_by_engine()
    assert Trainer(net, fused=False).input_checked_by_engine()
    net.optimizer = fnn.RMSprop() if hasattr(fnn, "RMSprop") else net.optimizer
    assert Trainer(net).input_checked_by_engine()


# -- the drop-in's partial_fit / fit leave X to the kernel: the same refusals, nothing changed --------------------
def _est_snapshot(est):
    """Everything the estimator holds (arrays and lists of arrays copied), its network's weights and optimizer."""
    def copied(v):
        if isinstance(v, np.ndarray):
            return v.copy()
        if isinstance(v, list):
            return [copied(x) for x in v]
        return v
    attrs = {k: copied(v) for k, v in vars(est).items() if k not in ("_model", "_random_state", "_handed_copies")}
    model = getattr(est, "_model", None)
    net = None if model is None else (model, model.net.optimizer, _snapshot(model.net))
    return attrs, net


def _est_unchanged(est, before):
    attrs, net = before
    now = {k: v for k, v in vars(est).items() if k not in ("_model", "_random_state", "_handed_copies")}
    assert set(now) == set(attrs)
    for k, v in attrs.items():
        w = now[k]
        if isinstance(v, np.ndarray):
            assert np.array_equal(w, v) and w.dtype == v.dtype, k
        elif isinstance(v, list):
            assert len(w) == len(v) and all(np.array_equal(a, b) for a, b in zip(w, v)), k
        elif isinstance(v, float) and np.isnan(v):
            assert np.isnan(w), k
        else:
            assert w == v or w is v, k
    if net is not None:
        model, opt, snap = net
        assert est._model is model and model.net.optimizer is opt
        _unchanged(model.net, snap)


def _sk_message(est, X):
    """scikit-learn's message for non-finite X (what the estimators' boundary check raised before)."""
    from sklearn.utils import check_array
    with pytest.raises(ValueError) as info, np.errstate(over="ignore"):
        check_array(np.ascontiguousarray(X, dtype=est._dtype()), dtype=None, ensure_2d=False, estimator=est,
                    input_name="X")
    return str(info.value)


@pytest.mark.parametrize("solver", ["sgd", "adam"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, 1e39])
def test_partial_fit_refuses_nonfinite_X_with_scikit_learns_message_and_changes_nothing(solver, bad):
    """The kernel finds the bad row; the estimator says what scikit-learn says, and the estimator, its network,
    optimizer and the random generator it was given are as before the call: a clean call after it gives the
    same bits as a run that never saw the bad one. 1e39 in float64 data: inf in the float32 copy."""
    pytest.importorskip("sklearn")
    X, y = make_data(n=120, dtype=np.float64)
    args = dict(hidden_layer_sizes=(8,), solver=solver, batch_size=32)
    est = fnn.MLPClassifier(random_state=np.random.RandomState(4), **args)
    ref = fnn.MLPClassifier(random_state=np.random.RandomState(4), **args)
    for e in (est, ref):
        e.partial_fit(X, y, classes=np.arange(4))
    before, rs = _est_snapshot(est), est.random_state.get_state()
    Xbad = _bad(X, bad, at=(77, 3))
    with pytest.raises(ValueError) as info, np.errstate(over="ignore"):     # (1e39: scikit-learn's cast warns)
        est.partial_fit(Xbad, y)
    assert type(info.value) is ValueError and str(info.value) == _sk_message(est, Xbad)
    with pytest.raises(ValueError) as again, np.errstate(over="ignore"):
        est.predict(Xbad)                        # the check at predict's boundary: the same message
    assert str(again.value) == str(info.value)
    _est_unchanged(est, before)
    assert all(np.array_equal(a, b) for a, b in zip(est.random_state.get_state(), rs))
    for e in (est, ref):
        e.partial_fit(X, y)
    assert all(np.array_equal(a, b) for a, b in zip(est.coefs_ + est.intercepts_, ref.coefs_ + ref.intercepts_))
    assert est.loss_curve_ == ref.loss_curve_ and est.t_ == ref.t_ and est.n_iter_ == ref.n_iter_


@pytest.mark.parametrize("warm_start", [False, True])
def test_fit_refuses_nonfinite_X_and_changes_nothing(warm_start):
    """A first fit refused leaves the estimator unfitted, with the fitted attributes scikit-learn's
    MLPClassifier has after the same refusal (none: its check of X comes before n_features_in_); a refused
    refit (warm or not) leaves the fitted model, its optimizer object and state as they were."""
    sklearn_mlp = pytest.importorskip("sklearn.neural_network")
    X, y = make_data(n=90)
    reference = sklearn_mlp.MLPClassifier(hidden_layer_sizes=(8,), max_iter=3, random_state=1)
    with pytest.raises(ValueError, match="Input X contains NaN"):
        reference.fit(_bad(X, np.nan, at=(50, 2)), y)
    fitted = sorted(k for k in vars(reference) if k.endswith("_") and not k.startswith("_"))
    est = fnn.MLPClassifier(hidden_layer_sizes=(8,), max_iter=3, random_state=np.random.RandomState(1),
                            warm_start=warm_start)
    rs = est.random_state.get_state()
    Xbad = _bad(X, np.nan, at=(50, 2))
    with pytest.raises(ValueError, match="Input X contains NaN"):
        est.fit(Xbad, y)
    assert sorted(k for k in vars(est) if k.endswith("_") and not k.startswith("_")) == fitted
    assert not hasattr(est, "_model") and not hasattr(est, "classes_")
    assert all(np.array_equal(a, b) for a, b in zip(est.random_state.get_state(), rs))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")       # max_iter reached
        est.fit(X, y)
    before = _est_snapshot(est)
    with pytest.raises(ValueError, match="Input X contains infinity"):
        est.fit(_bad(X, -np.inf, at=(89, 0)), y)
    _est_unchanged(est, before)


def test_nonfinite_X_is_named_before_other_problems():
    """X was checked before y, the sample weights and the targets' classes: with X left to the kernel, a
    failure of those with a non-finite X still names X."""
    pytest.importorskip("sklearn")
    X, y = make_data(n=60)
    Xbad = _bad(X, np.nan, at=(5, 1))
    est = fnn.MLPClassifier(hidden_layer_sizes=(8,), random_state=0)
    est.partial_fit(X, y, classes=np.arange(4))
    before = _est_snapshot(est)
    for call in (lambda: est.partial_fit(Xbad, y + 10),                         # unknown classes
                 lambda: est.partial_fit(Xbad, y, sample_weight=-np.ones(len(y))),
                 lambda: est.partial_fit(Xbad, y.astype(np.float64) + 0.5),     # continuous targets
                 lambda: fnn.MLPClassifier(batch_size=1000).fit(Xbad, y),      # (warns after X's check)
                 lambda: est.partial_fit(Xbad, y[:, None])):                     # (warns after X's check)
        with warnings.catch_warnings():
            warnings.simplefilter("error")      # no warning before the error
            with pytest.raises(ValueError, match="Input X contains NaN"):
                call()
    _est_unchanged(est, before)
    reg = fnn.MLPRegressor(hidden_layer_sizes=(8,), random_state=0)
    with pytest.raises(ValueError, match="Input y contains infinity"):     # scikit-learn checks y, as before
        reg.partial_fit(Xbad, np.full(len(y), np.inf))


def _labelled(y, labels):
    return np.asarray(labels)[y]


@pytest.mark.parametrize("labels", [np.arange(4), np.array([3, 7, 9, 12], np.int32), np.arange(4, dtype=np.uint8),
                                    np.array([0, 1]), np.array([-1, 1]), np.array([2, 5], np.int16)])
def test_known_integer_labels_are_encoded_as_before(monkeypatch, labels):
    """partial_fit with integer labels and classes_ known encodes y without np.unique (no type_of_target, no
    unique_labels): the same bits as the general path, the same errors for a label outside classes_ and
    for another ``classes``."""
    pytest.importorskip("sklearn")
    from fastnn import estimators
    X, y = make_data(n=100)
    y = _labelled(y % len(labels), labels)
    fits = []
    for general in (False, True):
        if general:
            monkeypatch.setattr(estimators.MLPClassifier, "_encode_known_int_labels", lambda self, y, dtype: None)
        est = fnn.MLPClassifier(hidden_layer_sizes=(8,), random_state=0, batch_size=16)
        est.partial_fit(X, y, classes=labels)
        calls = []
        for name in ("type_of_target", "unique_labels"):
            real = getattr(estimators, name)
            monkeypatch.setattr(estimators, name, lambda *a, _real=real, **k: calls.append(1) or _real(*a, **k))
        est.partial_fit(X, y)
        est.partial_fit(X, y, classes=list(labels))
        assert (len(calls) > 0) == general
        fits.append(est)
        other = y.copy()
        other[17] = labels.max() + 1
        with pytest.raises(ValueError, match=r"`y` has classes not in `self.classes_`"):
            est.partial_fit(X, other)
        with pytest.raises(ValueError, match="is not the same as on last call to partial_fit"):
            est.partial_fit(X, y, classes=list(labels[:-1]) + [labels.max() + 1])
        est.partial_fit(X, y, classes=list(labels[::-1]))       # the same set in another order: accepted
        monkeypatch.undo()
    a, b = fits
    assert all(np.array_equal(p, q) for p, q in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_))
    assert a.loss_curve_ == b.loss_curve_
    assert np.array_equal(a.predict(X), b.predict(X))


def test_known_label_shortcuts_leave_odd_inputs_to_the_general_path():
    """A 0-d, ragged, float or mixed-sign ``classes`` and uint64 labels beside int64 classes_ are not taken by
    the shortcuts: the general path answers (accepts or refuses) as before."""
    pytest.importorskip("sklearn")
    from fastnn.estimators import _same_int_labels
    classes = np.arange(3)
    assert _same_int_labels([0, 1, 2], classes) and _same_int_labels(np.arange(3, dtype=np.uint8), classes)
    for given in (np.array(1), [[0, 1], [2]], [0.0, 1.0, 2.0], np.arange(3, dtype=np.uint64), [0, 1], "abc",
                  [2, 1, 0]):
        assert not _same_int_labels(given, classes)
    X, y = make_data(n=60)
    y = y % 3
    est = fnn.MLPClassifier(hidden_layer_sizes=(4,), random_state=0).partial_fit(X, y, classes=classes)
    est.partial_fit(X, y.astype(np.uint64))
    est.partial_fit(X, y.astype(np.float64), classes=[0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="is not the same as on last call to partial_fit"):
        est.partial_fit(X, y, classes=np.array([0, 1]))
