"""Start-up and compile time (asv ``track_``, seconds), each measured in a fresh Python process.

The probe process imports fastnn, builds the default network (the ``small`` cell, 64-128-10: FullyConnected
+ ReLU, SoftmaxCrossEntropy, SGD) and calls ``fit`` twice on the same data (1 epoch of 1024 samples each);
compile time = first fit - second fit (the second fit does the same work with everything compiled).

* ``track_cold_compile_s``: NUMBA_CACHE_DIR is a fresh empty directory: the very first run after install.
* ``track_cached_compile_s``: NUMBA_CACHE_DIR was filled by an earlier probe: every later run.
* ``track_import_s``: ``import fastnn`` alone, with the cache warm (it must compile nothing).

``path``: "fused" is the default (fused whole-epoch kernel), "layer" forces the per-layer path.
Issue 3's targets: import <= 0.5 s, cached <= 0.1 s, cold <= 5 s.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

PROBE = r"""
import json, sys, time
t0 = time.perf_counter()
import fastnn as fnn
t1 = time.perf_counter()
import numpy as np
fused = "auto" if sys.argv[1] == "fused" else False
rng = np.random.default_rng(0)
X = rng.standard_normal((1024, 64), dtype=np.float32)
y = rng.integers(0, 10, 1024)
net = fnn.NeuralNetwork([fnn.FullyConnected(64, 128), fnn.ReLU(), fnn.FullyConnected(128, 10)],
                        loss=fnn.SoftmaxCrossEntropy(), optimizer=fnn.SGD(lr=0.01), seed=0)
t2 = time.perf_counter()
net.fit(X, y, epochs=1, batch_size=64, verbose=0, fused=fused)
t3 = time.perf_counter()
net.fit(X, y, epochs=1, batch_size=64, verbose=0, fused=fused)
t4 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "first_fit_s": t3 - t2, "second_fit_s": t4 - t3}))
"""


def probe(path, cache_dir):
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    res = subprocess.run([sys.executable, "-c", PROBE, path], env=env, capture_output=True, text=True, timeout=850)
    if res.returncode:
        raise RuntimeError(f"compile probe failed:\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


class CompileTime:
    params = (["fused", "layer"],)
    param_names = ["path"]
    timeout = 1800
    number = 1
    repeat = 1
    unit = "seconds"

    def setup(self, path):
        self.tmp = tempfile.mkdtemp(prefix="fastnn-numba-cache-")

    def teardown(self, path):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def track_cold_compile_s(self, path):
        r = probe(path, os.path.join(self.tmp, "cold"))
        return r["first_fit_s"] - r["second_fit_s"]

    def track_cached_compile_s(self, path):
        cache = os.path.join(self.tmp, "warm")
        probe(path, cache)                       # fills the cache
        r = probe(path, cache)
        return r["first_fit_s"] - r["second_fit_s"]

    def track_import_s(self, path):
        cache = os.path.join(self.tmp, "warm-import")
        probe(path, cache)
        return probe(path, cache)["import_s"]

    track_cold_compile_s.unit = "seconds"
    track_cached_compile_s.unit = "seconds"
    track_import_s.unit = "seconds"
