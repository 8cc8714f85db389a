"""kernels/_jit.py: Numba's BLAS probe answered without importing scipy.linalg (a warm start's largest
avoidable cost), with the value Numba itself would compute and Numba's own check still run wherever its
BLAS is used. Each case runs in a fresh process: the hook acts once, at numba.np.arraymath's import."""
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tests.helpers import tol


def _run(code, tmp_path):
    """Run ``code`` in a fresh interpreter with an empty Numba cache; its stdout's last line."""
    import os
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba-cache"))
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                         timeout=600, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.strip().splitlines()[-1]


def test_loading_numbas_registries_does_not_import_scipy_linalg(tmp_path):
    """The first kernel compiled or loaded loads Numba's registries (numba.np.arraymath among them); after
    ``import fastnn`` that no longer imports scipy.linalg, arraymath's _HAVE_BLAS is what Numba would say,
    and numba's own ensure_blas is back in both modules (the wrapper is gone, the hook inert)."""
    code = """
        import sys
        import fastnn
        from fastnn.kernels import _jit
        assert "numba.np.arraymath" not in sys.modules
        assert any(type(f).__name__ == "_NumbaBlasProbeHook" for f in sys.meta_path)
        from numba import njit

        @njit(cache=False)
        def add_one(x):
            return x + 1

        assert add_one(1) == 2                      # compiling loads every registry
        import numba.np.arraymath as arraymath, numba.np.linalg as linalg
        print(["scipy.linalg" in sys.modules, arraymath._HAVE_BLAS, _jit.scipy_ships_cython_blas(),
               arraymath.ensure_blas is linalg.ensure_blas, getattr(linalg.ensure_blas, "fastnn_probe", False),
               all(f.done for f in sys.meta_path if type(f).__name__ == "_NumbaBlasProbeHook")])
    """
    assert _run(code, tmp_path) == "[False, True, True, True, False, True]"


def test_numbas_blas_still_works_and_runs_its_own_check(tmp_path):
    """np.dot in a user's jitted function (Numba's BLAS) after fastnn's hook: the real ensure_blas runs
    (scipy.linalg is imported then) and the product is right."""
    code = """
        import sys
        import numpy as np
        import fastnn
        from numba import njit
        import numba.np.linalg as linalg
        calls = []
        real = linalg.ensure_blas

        def counted():
            calls.append(1)
            return real()

        linalg.ensure_blas = counted                # what the hook wraps, and puts back after the probe

        @njit(cache=False)
        def dot(a, b):
            return np.dot(a, b)

        rng = np.random.default_rng(0)
        a, b = rng.standard_normal((7, 5)), rng.standard_normal((5, 3))
        c = dot(a, b)
        rel = float(np.max(np.abs(c - a @ b)) / np.max(np.abs(a) @ np.abs(b)))
        print([len(calls) > 0, linalg.ensure_blas is counted, "scipy.linalg.cython_blas" in sys.modules, rel])
    """
    calls, restored, imported, rel = eval(_run(code, tmp_path))
    assert calls and restored and imported
    assert rel <= tol(np.float64, 5)


def test_nothing_changes_when_numba_loaded_its_registries_first(tmp_path):
    """A process that compiled with Numba before importing fastnn: arraymath is imported already, so the
    hook is not installed and Numba's functions are untouched."""
    code = """
        import sys
        from numba import njit

        @njit(cache=False)
        def add_one(x):
            return x + 1

        add_one(1)
        import numba.np.linalg as linalg
        real = linalg.ensure_blas
        import fastnn
        print([linalg.ensure_blas is real,
               any(type(f).__name__ == "_NumbaBlasProbeHook" for f in sys.meta_path)])
    """
    assert _run(code, tmp_path) == "[True, False]"


def test_the_wrapper_answers_only_arraymaths_probe():
    """Called from anywhere but numba.np.arraymath's _check_blas, the wrapper is Numba's own function."""
    from fastnn.kernels import _jit
    calls = []

    class Linalg:
        pass

    linalg = Linalg()
    wrapper = _jit._blas_probe_wrapper(lambda: calls.append("real"), linalg)
    linalg.ensure_blas = wrapper
    assert wrapper() is None and calls == ["real"]
    assert linalg.ensure_blas is wrapper            # not a probe: nothing restored

    probe_globals = {"__name__": _jit._ARRAYMATH, "ensure_blas": wrapper}
    exec("def _check_blas():\n    ensure_blas()\n", probe_globals)
    probe_globals["_check_blas"]()
    assert calls == ["real"]                        # answered without calling Numba's (scipy) probe
    assert probe_globals["ensure_blas"] is not wrapper and linalg.ensure_blas is not wrapper


def test_the_probe_says_no_blas_without_scipys_extension(monkeypatch):
    """Without scipy's cython_blas the probe raises ImportError, as Numba's does (arraymath then falls back
    to its loops)."""
    from fastnn.kernels import _jit
    monkeypatch.setattr(_jit, "scipy_ships_cython_blas", lambda: False)

    class Linalg:
        pass

    linalg = Linalg()
    wrapper = _jit._blas_probe_wrapper(lambda: None, linalg)
    linalg.ensure_blas = wrapper
    probe_globals = {"__name__": _jit._ARRAYMATH, "ensure_blas": wrapper}
    exec("def _check_blas():\n    ensure_blas()\n", probe_globals)
    with pytest.raises(ImportError, match="scipy"):
        probe_globals["_check_blas"]()
    assert linalg.ensure_blas is not wrapper        # Numba's own is back even then


def test_prepare_numba_leaves_the_collector_as_it_found_it(tmp_path):
    """prepare_numba runs the set-up cached kernels need (NRT's symbols) with the cyclic GC paused, and leaves
    the collector enabled or disabled as it was; a second call does nothing. It does not load Numba's
    typing and lowering registries (numba.np.arraymath among them): a warm process never needs them."""
    code = """
        import gc, sys
        import fastnn
        from fastnn.kernels import _jit
        from numba.core.registry import cpu_target
        was = []
        for enabled in (False, True):
            (gc.enable if enabled else gc.disable)()
            _jit.prepare_numba()
            was.append(gc.isenabled() == enabled)
        print([all(was), _jit._numba_ready, "numba.np.arraymath" in sys.modules,
               "scipy.linalg" in sys.modules])
    """
    assert _run(code, tmp_path) == "[True, True, False, False]"


# a fit in float32 of a small network (the weights' bytes), then, in float64, a network of another depth
# (compiled in a process that so far only loaded kernels); prints whether Numba's registries were loaded
# after each, the compiles of each (numba:compile events) and the weights
_WARM_THEN_COLD = """
    import sys
    import numpy as np
    import fastnn as fnn
    from numba.core.event import install_recorder
    rng = np.random.default_rng(0)
    rows = []
    for dtype, hidden in ((np.float32, (9,)), (np.float64, (7, 5))):
        X, y = rng.standard_normal((120, 6)).astype(dtype), rng.integers(0, 3, 120)
        sizes = (6,) + hidden + (3,)
        layers = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [fnn.FullyConnected(a, b, dtype=dtype), fnn.TanH()]
        net = fnn.NeuralNetwork(layers[:-1], loss=fnn.SoftmaxCrossEntropy(), optimizer=fnn.Adam(), seed=0)
        with install_recorder("numba:compile") as rec:
            net.fit(X, y, epochs=2, batch_size=32, verbose=0)
            p = net.predict_proba(X)
        compiles = sum(ev.is_start for _, ev in rec.buffer)
        rows.append(["numba.np.arraymath" in sys.modules, compiles > 0,
                     net.plan().params.tobytes().hex() + p.tobytes().hex()])
    print(rows)
"""


def test_a_warm_process_loads_kernels_without_numbas_registries_and_still_compiles_what_is_missing(tmp_path):
    """Kernels loaded from the cache run without Numba's registry refresh (``_KernelCache.load_overload``);
    a kernel that is missing in such a process still compiles (the compile loads the registries itself),
    and every result equals the cold process's bit for bit."""
    import ast
    import os
    cache = tmp_path / "numba-cache"
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache))

    def run(code):
        out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                             timeout=900, env=env)
        assert out.returncode == 0 and out.stderr == "", out.stderr[-3000:]
        return ast.literal_eval(out.stdout.strip().splitlines()[-1])
    only_first = _WARM_THEN_COLD.replace("((np.float32, (9,)), (np.float64, (7, 5)))", "((np.float32, (9,)),)")
    cold = run(only_first)                   # fills the cache with the float32 kernels only
    assert cold[0][:2] == [True, True]
    mixed = run(_WARM_THEN_COLD)            # float32 loaded, float64 compiled, in one process
    assert mixed[0][:2] == [False, False], "the float32 fit loaded its kernels without the registries"
    assert mixed[1][:2] == [True, True], "the float64 fit compiled (and loaded the registries to do so)"
    again = run(_WARM_THEN_COLD)
    assert [row[:2] for row in again] == [[False, False], [False, False]]
    assert mixed[0][2] == cold[0][2] == again[0][2] and mixed[1][2] == again[1][2]


def test_the_collector_is_paused_while_numba_compiles_and_restored_after():
    """kernels/_jit.py pauses the cyclic GC for each outermost compile (a few % of a cold compile) and
    restores it as it was: enabled or disabled by the user, after a compile that succeeds or raises."""
    import gc
    import numba
    from numba.core import event
    import fastnn.kernels._jit  # noqa: F401 -- registers the listener
    seen = []

    class Spy(event.Listener):
        def on_start(self, ev):
            seen.append(gc.isenabled())

        def on_end(self, ev):
            pass

    def fresh():
        @numba.njit
        def inner(x):
            return x + 1

        @numba.njit
        def outer(x):
            return inner(x) * 2
        return outer

    @numba.njit
    def broken(x):
        return x.no_such_attribute

    was = gc.isenabled()
    try:
        with event.install_listener("numba:compile", Spy()):
            gc.enable()
            assert fresh()(1.5) == 5.0
            assert gc.isenabled()
            with pytest.raises(numba.core.errors.TypingError):
                broken(1)
            assert gc.isenabled()
            gc.disable()
            assert fresh()(2.5) == 7.0
            assert not gc.isenabled()
    finally:
        (gc.enable if was else gc.disable)()
    assert seen and not any(seen), seen        # every compile, nested ones too, ran with the GC paused
