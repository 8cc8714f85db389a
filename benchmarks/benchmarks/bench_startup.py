"""Start-up as a user meets it (asv ``track_``, seconds of wall time of a whole fresh process; issue 17).

The same processes as ``python -m benchmarks.startup`` (benchmarks/startup.py, loaded here by file path),
each the median of ``ROUNDS`` runs, with OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE removed from the child's
environment:

* ``CliStartup.track_wall_s``: ``fastnn train -q``, cold (``NUMBA_CACHE_DIR`` = a new empty directory
  each run) and warm (a cache filled by one untimed run in ``setup``). Issue 17's targets: cold <= 2 s,
  warm <= 0.6 s.
* ``FirstFit.track_wall_s``: a fresh process's first ``MLPClassifier(max_iter=30).fit`` on digits
  (float32), fastnn cold and warm, and scikit-learn's MLPClassifier in its own process on the same data
  (the reference line: its trend is the machine's, not fastnn's). Targets: cold <= 1.5x, warm <= 1.0x of
  scikit-learn.

A benchmark whose prerequisite is missing (scikit-learn for the data and the reference) raises
NotImplementedError in ``setup``: asv reports it skipped (n/a) with the reason, not failed.
"""
import importlib.util
import os
import shutil
import statistics
import sys
import tempfile

ROUNDS = 3
_HERE = os.path.dirname(os.path.abspath(__file__))


def _startup():
    name = "_fastnn_bench_startup"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, os.path.join(os.path.dirname(_HERE), "startup.py"))
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return sys.modules[name]


class _Base:
    timeout = 1800
    number = 1
    repeat = 1
    unit = "seconds"
    what = None

    def setup(self, mode):
        self.tmp = tempfile.mkdtemp(prefix="fastnn-asv-startup-")
        startup = _startup()
        if self.what != "train":
            try:
                import sklearn  # noqa: F401
            except ImportError:
                raise NotImplementedError("scikit-learn is not installed (pip install scikit-learn)") from None
            startup.write_data(self.tmp, quick=True)       # digits is the same in both sizes
        self.job = startup.StartupJob(self.what, mode, self.tmp, self.tmp)
        self.job.prepare()

    def teardown(self, mode):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def track_wall_s(self, mode):
        return statistics.median(self.job.run()["wall_s"] for _ in range(ROUNDS))

    track_wall_s.unit = "seconds"


class CliStartup(_Base):
    params = (["cold", "warm"],)
    param_names = ["cache"]
    what = "train"


class FirstFit(_Base):
    params = (["cold", "warm", "sklearn"],)
    param_names = ["cache"]
    what = "digits/float32"
