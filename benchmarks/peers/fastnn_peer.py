"""fastnn: NeuralNetwork([FullyConnected, ReLU, ..., FullyConnected], SoftmaxCrossEntropy, the cell's optimizer:
SGD(lr=0.01) or Adam(lr=0.001, beta1=0.9, beta2=0.999, eps=1e-8) — matrix.fastnn_optimizer).

``epochs(k)`` is one ``net.fit(X, y, epochs=k, batch_size=b, verbose=0)`` and returns the Trainer's
history["time"]: the seconds of each epoch (shuffle included; the input checks and buffer set-up that a fit
does once, before its first epoch, are not part of any epoch). ``fused=False`` forces the general
per-layer path; the default ("auto") is what a user gets. ``per_call=True`` (peer ``fastnn-call``) measures
what a Keras-style loop gets instead: ``epochs(k)`` makes k calls of ``net.fit(..., epochs=1)`` and returns
the wall time of each whole call (input checks, buffer set-up, the call's Python and the epoch), the way the
other peers' ``epoch()`` times their own per-epoch Python.
"""
import time


from .. import matrix
from .base import PeerBase, blas_info


class Peer(PeerBase):
    name = "fastnn"
    label = "fastnn"

    @classmethod
    def available(cls):
        try:
            import fastnn  # noqa: F401
        except ImportError as exc:
            return False, f"fastnn not importable ({exc})"
        return True, ""

    def __init__(self, cell, X, y, seed=0, fused="auto", threads=None, per_call=False):
        super().__init__(cell, X, y, seed=seed)
        import fastnn as fnn
        if threads is not None:
            fnn.set_num_threads(threads)
        self.fused = fused
        self.per_call = per_call
        self.net = matrix.fastnn_network(cell, seed=seed)
        self._fits = 0

    def epochs(self, k):
        if self.per_call:
            return [self._timed_call() for _ in range(k)]
        times = list(self._fit(k)["time"])
        if len(times) != k:
            raise RuntimeError(f"fastnn history['time'] has {len(times)} entries for {k} epochs")
        return times

    def _timed_call(self):
        """One whole ``fit(epochs=1)`` call, timed from outside (perf_counter)."""
        start = time.perf_counter()
        self._fit(1)
        return time.perf_counter() - start

    def _fit(self, k):
        # a new shuffle seed for every call, so that successive calls do not repeat one permutation
        history = self.net.fit(self.X, self.y, epochs=k, batch_size=self.batch, shuffle=True, verbose=0,
                               seed=self.seed * 1000003 + self._fits, fused=self.fused)
        self._fits += 1
        return history

    def epoch(self):
        return self.epochs(1)[0]

    def loss(self):
        rows = self.eval_rows
        return float(self.net.evaluate(self.X[:rows], self.y[:rows])["loss"])

    def info(self):
        import numba

        import fastnn
        out = {"fastnn": getattr(fastnn, "__version__", "?"), "numba": numba.__version__,
               "numba_threads": numba.get_num_threads(), "fused_option": repr(self.fused), "per_call": self.per_call,
               "optimizer": repr(self.net.optimizer), "blas": blas_info()}
        try:
            out["threading_layer"] = numba.threading_layer()
        except ValueError:          # no parallel region has run yet
            out["threading_layer"] = None
        try:
            from fastnn.engines import fused
            ok, why = fused.supports(self.net)
            out["fused_path"] = bool(ok) and self.fused is not False
            out["fused_reason"] = why
        except Exception as exc:    # the bridge may be renamed; the benchmark does not depend on it
            out["fused_path"] = f"unknown ({exc})"
        return out
