"""Time per training step: DistributedTrainer on K ranks (global batch = the cell's batch) and Allreduce alone.
mpiexec -n K python -m benchmarks.scaling_bench CELL THREADS   (PYTHONPATH=repo root: imports benchmarks.matrix)"""
import json, sys, time
import numpy as np
import fastnn as fnn
from benchmarks import matrix
from mpi4py import MPI
from fastnn.distributed import DistributedTrainer

cell, threads = matrix.get(sys.argv[1]), int(sys.argv[2])
comm = MPI.COMM_WORLD
rank, K = comm.Get_rank(), comm.Get_size()
fnn.set_num_threads(threads)
steps = {"mnist1024": 16, "wide": 4}[cell.name]
X, y = matrix.make_data(cell, n=steps * cell.batch)

def build():
    layers = []
    for i, (a, b) in enumerate(zip(cell.sizes, cell.sizes[1:])):
        layers.append(fnn.FullyConnected(a, b, dtype=np.float32))
        if i < len(cell.sizes) - 2:
            layers.append(fnn.ReLU())
    return fnn.NeuralNetwork(layers, optimizer=fnn.SGD(lr=matrix.LR), seed=0)

out = {"cell": cell.name, "ranks": K, "threads": threads, "steps_per_epoch": steps}
net = build()
h = DistributedTrainer(net, batch_size=cell.batch // K, epochs=3, verbose=0).fit(X, y)
out["dist_step_ms"] = 1e3 * min(h["time"][1:]) / steps
buf = net.plan().grads
ts = []
for _ in range(20):
    comm.Barrier(); t = time.perf_counter()
    comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
    ts.append(time.perf_counter() - t)
out["allreduce_ms"] = 1e3 * float(np.median(ts)); out["grad_MB"] = buf.nbytes / 1e6
if K == 1:   # the ordinary single-process trainer (fused whole-epoch path where it applies)
    net = build()
    h = net.fit(X, y, epochs=3, batch_size=cell.batch, verbose=0, seed=0)
    out["trainer_step_ms"] = 1e3 * min(h["time"][1:]) / steps
if rank == 0:
    print(json.dumps(out), flush=True)
