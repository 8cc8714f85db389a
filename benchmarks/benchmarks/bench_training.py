"""Training throughput and memory on the benchmark matrix (asv ``track_`` / ``peakmem_``).

* ``TrainingThroughput.track_samples_per_s``: fastnn's default path (``net.fit``) on every cell of
  benchmarks/matrix.py (each with its own optimizer: Adam on ``tabular``), for 1 thread and all cores (fastnn.set_num_threads), in samples/s: the median of
  3 epochs from the Trainer's history["time"], after one warm-up epoch in ``setup`` (compilation is not
  counted). The cells' full data sizes (matrix.py), so the numbers line up with compare.py.
* ``PerLayerThroughput.track_samples_per_s``: the same, forced onto the general per-layer path
  (fused=False), for the cells where that path has its own target (tiny, small) and for tabular (issue 10:
  the fused path >= the per-layer path, Adam included); ``asv compare`` of the two classes' tabular rows
  shows the ratio over time.
* ``TrainingMemory.peakmem_train``: peak RSS of a process that builds the cell's data and network and
  trains 2 epochs. ``track_rss_growth_mib``: RSS after epoch 5 minus RSS after epoch 2 (should be ~0:
  no allocation per step in the steady state).

Run asv from a shell with OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE unset (README.md): they change the BLAS
kernel.
"""
import statistics

from ._common import THREADS, build_net, matrix, rss_mib, set_threads

CELLS = list(matrix.CELLS)
EPOCHS = 3


class TrainingThroughput:
    params = (CELLS, THREADS)
    param_names = ["cell", "threads"]
    unit = "samples/s"
    timeout = 900
    number = 1
    repeat = 1

    def setup(self, cell, threads):
        set_threads(threads)
        self.cell = matrix.get(cell)
        self.X, self.y = matrix.make_data(self.cell)
        self.net = build_net(self.cell)
        self.fit(1)                     # warm-up: compiles (or loads from the cache) outside the measurement

    def fit(self, epochs, fused="auto"):
        return self.net.fit(self.X, self.y, epochs=epochs, batch_size=self.cell.batch, verbose=0, fused=fused)

    def track_samples_per_s(self, cell, threads):
        history = self.fit(EPOCHS)
        return len(self.X) / statistics.median(history["time"])

    track_samples_per_s.unit = "samples/s"


class PerLayerThroughput(TrainingThroughput):
    params = (["tiny", "small", "tabular"], THREADS)

    def setup(self, cell, threads):
        set_threads(threads)
        self.cell = matrix.get(cell)
        self.X, self.y = matrix.make_data(self.cell)
        self.net = build_net(self.cell)
        self.fit(1, fused=False)

    def track_samples_per_s(self, cell, threads):
        history = self.fit(EPOCHS, fused=False)
        return len(self.X) / statistics.median(history["time"])

    track_samples_per_s.unit = "samples/s"


class TrainingMemory:
    params = (CELLS,)
    param_names = ["cell"]
    timeout = 900

    def setup(self, cell):
        self.cell = matrix.get(cell)
        self.X, self.y = matrix.make_data(self.cell)
        self.net = build_net(self.cell)

    def fit(self, epochs):
        return self.net.fit(self.X, self.y, epochs=epochs, batch_size=self.cell.batch, verbose=0)

    def peakmem_train(self, cell):
        self.fit(2)

    def track_rss_growth_mib(self, cell):
        self.fit(2)
        before = rss_mib()
        self.fit(3)
        return rss_mib() - before

    track_rss_growth_mib.unit = "MiB"
