"""PyTorch (CPU): nn.Sequential(Linear, ReLU, ..., Linear), nn.CrossEntropyLoss, the cell's optimizer:
torch.optim.SGD(lr=0.01) or torch.optim.Adam(lr=0.001, betas=(0.9, 0.999), eps=1e-8) (its defaults, stated
explicitly; foreach/fused left to torch's own default choice, as a user gets it).

The standard training loop over tensors made once from the data (``torch.from_numpy``: no copy), with a
``torch.randperm`` shuffle per epoch and ``X[idx]`` mini-batches; ``zero_grad``/``backward``/``step`` per
batch. No ``.item()`` per step (that would add a sync and a Python float per step), so PyTorch is timed at
its best for this loop. ``threads`` sets ``torch.set_num_threads``.
"""
import time

from .base import PeerBase, softmax_ce


class Peer(PeerBase):
    name = "torch"
    label = "PyTorch"

    @classmethod
    def available(cls):
        try:
            import torch  # noqa: F401
        except ImportError as exc:
            return False, f"torch not installed ({exc}); pip install torch==2.13.0"
        return True, ""

    def __init__(self, cell, X, y, seed=0, threads=None):
        super().__init__(cell, X, y, seed=seed)
        import torch
        from torch import nn
        self.torch = torch
        if threads is not None:
            torch.set_num_threads(int(threads))
        torch.manual_seed(seed)
        mods = []
        for k, (n_in, n_out) in enumerate(cell.shapes):
            mods.append(nn.Linear(n_in, n_out, dtype=torch.float32))
            if k < len(cell.shapes) - 1:
                mods.append(nn.ReLU())
        self.model = nn.Sequential(*mods)
        self.model.train()
        h = cell.hyper
        if cell.optimizer == "adam":
            self.opt = torch.optim.Adam(self.model.parameters(), lr=h["lr"], betas=(h["beta1"], h["beta2"]),
                                        eps=h["eps"])
        else:
            self.opt = torch.optim.SGD(self.model.parameters(), lr=h["lr"])
        self.loss_fn = nn.CrossEntropyLoss()
        self.Xt = torch.from_numpy(X)
        self.yt = torch.from_numpy(y)
        self.gen = torch.Generator().manual_seed(seed)

    def epoch(self):
        torch, model, opt, loss_fn = self.torch, self.model, self.opt, self.loss_fn
        Xt, yt, n, b = self.Xt, self.yt, self.n, self.batch
        start = time.perf_counter()
        perm = torch.randperm(n, generator=self.gen)
        for i in range(0, n, b):
            idx = perm[i:i + b]
            xb, yb = Xt[idx], yt[idx]
            opt.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
        return time.perf_counter() - start

    def loss(self):
        with self.torch.no_grad():
            logits = self.model(self.Xt[:self.eval_rows]).numpy()
        return softmax_ce(logits, self.y[:self.eval_rows])

    def info(self):
        torch = self.torch
        return {"torch": torch.__version__, "threads": torch.get_num_threads(),
                "interop_threads": torch.get_num_interop_threads(), "optimizer": type(self.opt).__name__,
                "parallel_info": torch.__config__.parallel_info().splitlines()[:8]}
