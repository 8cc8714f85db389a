"""The benchmark matrix of issues 3 and 10: six networks, their data, optimizer and exact work per sample.

Every cell: float32, ReLU after every hidden layer, softmax cross-entropy on the logits, shuffled
mini-batches, data in memory. The optimizer is the cell's ``optimizer`` (``OPTIMIZERS`` has the
hyperparameters): plain SGD with lr = 0.01 (no momentum, no weight decay) for the five cells of issue 3;
Adam with torch.optim.Adam's defaults (lr = 0.001, betas 0.9 / 0.999, eps = 1e-8, no weight decay,
bias-corrected) for ``tabular``, the issue-10 task (scikit-learn's MLPClassifier default solver on a
tabular problem). Every peer builds the cell's optimizer in its own library.

Data: synthetic and reproducible. X ~ N(0, 1) float32 (n, features); the labels are the argmax of a fixed
random linear "teacher" (X @ T), so the problem is learnable and a working trainer's loss goes down. The
generator is seeded from the layer sizes, so cells with the same layers (mnist128 and mnist1024) train on
the very same data.

Sizes (n, the samples per epoch): an epoch must be long enough to time well for the fastest trainer,
so n is about 0.2 s of the whole-epoch prototype's rate in the issue (tiny 5.7 M/s, small 3.5 M/s,
mnist 0.3 M/s, wide 3.4 k/s), rounded to a power of two, at least 8 batches, and always a whole number
of batches (no partial last batch: every peer then runs one batch shape, and JAX compiles once):

    cell       layers            batch   n (full)            n (--quick)
    tiny       2-16-16-2            32   1,048,576 (32768 b)    65,536
    small      64-128-10            64     524,288  (8192 b)    32,768
    mnist128   784-256-128-10      128      65,536   (512 b)     8,192
    mnist1024  784-256-128-10     1024      65,536    (64 b)     8,192 (8 batches)
    wide       1024-4096-4096-10   512       4,096     (8 b)     1,024 (2 batches)
    tabular    100-100-5 (Adam)    200     409,600  (2048 b)    51,200 (256 batches)

tabular's batch of 200 (scikit-learn's default batch_size) admits no power-of-two n: its n is a power of
two of batches instead, 0.16-0.2 s at the 2-2.5 M samples/s expected of the fastest trainer on a network
of small's size.

--quick sizes its epochs for the slowest peers (PyTorch's ~130 us per step: ~0.25 s on tiny), since there
every peer's warm-up and epochs must fit in a few minutes together.

Work per sample (FLOPs, multiply-add = 2), counting the weights only (biases, activations and the loss are
O(widths), not O(weights), and are left out, consistently for every cell):
    W = sum of in_k * out_k over the layers, W_first = the first layer's weights;
    forward 2W, weight gradients 2W, input gradients 2(W - W_first) (the first layer needs none):
    flops_per_sample = 6W - 2 W_first.
The optimizer does not change it: an SGD or Adam update is O(weights) per step, once per batch, not per
sample (Adam's ~10 flops per parameter per step are ~10 W / batch per sample: 0.05 W for tabular's batch of
200, about 1 % of its 6W - 2 W_first = 4.1 W; left out, like the biases, consistently for every cell).
"""
from dataclasses import dataclass

import numpy as np

DTYPE = np.float32
LR = 0.01                 # plain SGD's learning rate (the cells of issue 3)
#: optimizer name -> its hyperparameters, the same in every peer (Adam: torch.optim.Adam's defaults)
OPTIMIZERS = {
    "sgd": {"lr": LR},
    "adam": {"lr": 0.001, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8},
}
SEED = 20240601
#: rows used by each peer's ``loss()`` (a sanity check outside the timed epochs)
EVAL_ROWS = 1024


@dataclass(frozen=True)
class Cell:
    name: str
    sizes: tuple          # (n_features, hidden..., n_classes)
    batch: int
    n_full: int
    n_quick: int
    optimizer: str = "sgd"   # a key of OPTIMIZERS

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"cell {self.name}: unknown optimizer {self.optimizer!r}; known: {', '.join(OPTIMIZERS)}")

    @property
    def hyper(self):
        """The optimizer's hyperparameters (a fresh dict: lr, and beta1, beta2, eps for Adam)."""
        return dict(OPTIMIZERS[self.optimizer])

    @property
    def lr(self):
        return OPTIMIZERS[self.optimizer]["lr"]

    @property
    def shapes(self):
        """[(in, out)] of every FullyConnected layer, first to last."""
        return list(zip(self.sizes[:-1], self.sizes[1:]))

    @property
    def n_features(self):
        return self.sizes[0]

    @property
    def n_classes(self):
        return self.sizes[-1]

    @property
    def weights(self):
        """W: the number of weights (biases excluded)."""
        return sum(a * b for a, b in self.shapes)

    @property
    def first_weights(self):
        a, b = self.shapes[0]
        return a * b

    @property
    def n_params(self):
        return self.weights + sum(b for _, b in self.shapes)

    @property
    def flops_per_sample(self):
        """Exact GEMM work per training sample: forward 2W + weight grads 2W + input grads 2(W - W_first)."""
        return 2 * self.weights + 2 * self.weights + 2 * (self.weights - self.first_weights)

    def n_samples(self, quick=False):
        return self.n_quick if quick else self.n_full

    @property
    def layers_str(self):
        return "-".join(str(s) for s in self.sizes)

    def describe(self):
        return {"name": self.name, "layers": self.layers_str, "batch": self.batch, "n_full": self.n_full,
                "n_quick": self.n_quick, "weights": self.weights, "params": self.n_params,
                "flops_per_sample": self.flops_per_sample, "optimizer": self.optimizer, "hyper": self.hyper}


CELLS = {
    c.name: c for c in (
        Cell("tiny", (2, 16, 16, 2), 32, 1 << 20, 1 << 16),
        Cell("small", (64, 128, 10), 64, 1 << 19, 1 << 15),
        Cell("mnist128", (784, 256, 128, 10), 128, 1 << 16, 1 << 13),
        Cell("mnist1024", (784, 256, 128, 10), 1024, 1 << 16, 1 << 13),
        Cell("wide", (1024, 4096, 4096, 10), 512, 1 << 12, 1 << 10),
        Cell("tabular", (100, 100, 5), 200, 200 << 11, 200 << 8, optimizer="adam"),
    )
}
for _c in CELLS.values():
    assert _c.n_full % _c.batch == 0 and _c.n_quick % _c.batch == 0 and _c.n_full >= 8 * _c.batch


def get(name):
    try:
        return CELLS[name]
    except KeyError:
        raise ValueError(f"unknown cell {name!r}; cells: {', '.join(CELLS)}") from None


def fastnn_optimizer(cell):
    """The cell's optimizer as a fastnn object (fastnn imported here, not at this module's import)."""
    import fastnn as fnn
    h = cell.hyper
    if cell.optimizer == "adam":
        return fnn.Adam(lr=h["lr"], beta1=h["beta1"], beta2=h["beta2"], eps=h["eps"])
    return fnn.SGD(lr=h["lr"])


def fastnn_network(cell, seed=0):
    """The cell's network as fastnn builds it: FullyConnected layers of ``cell.shapes`` (float32) with ReLU
    between them, softmax cross-entropy, the cell's optimizer (fastnn imported here)."""
    import fastnn as fnn
    layers = []
    for k, (n_in, n_out) in enumerate(cell.shapes):
        layers.append(fnn.FullyConnected(n_in, n_out, dtype=DTYPE))
        if k < len(cell.shapes) - 1:
            layers.append(fnn.ReLU())
    return fnn.NeuralNetwork(layers, loss=fnn.SoftmaxCrossEntropy(), optimizer=fastnn_optimizer(cell), seed=seed)


def make_data(cell, n=None, quick=False, seed=SEED):
    """(X float32 (n, features) C-contiguous, y int64 (n,) class ids), the same for a given cell and n."""
    n = cell.n_samples(quick) if n is None else int(n)
    if n < 1:
        raise ValueError(f"n must be positive, got {n}")
    rng = np.random.default_rng([seed, *cell.sizes])
    teacher = rng.standard_normal((cell.n_features, cell.n_classes)).astype(DTYPE)
    X = rng.standard_normal((n, cell.n_features), dtype=DTYPE)
    y = np.empty(n, np.int64)
    chunk = 1 << 16
    for start in range(0, n, chunk):       # chunked: no (n, classes) temporary for the big cells
        y[start:start + chunk] = np.argmax(X[start:start + chunk] @ teacher, axis=1)
    return X, y
