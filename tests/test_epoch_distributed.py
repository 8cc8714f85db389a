"""kernels/epoch_distributed.py without MPI: the distributed step kernel on the records that ``hold`` keeps in
one ``Held`` (what FusedDistributedEpoch passes per step, so that a call unboxes one object instead of ~40
arrays). The ranks' pieces of a global batch add up to the whole batch's gradient; the update of the summed
gradient is the one process's; a ``Held`` keeps its records' arrays alive. The engine itself under `mpiexec`:
tests/test_distributed_fused.py."""
import gc

import numpy as np
import pytest

import fastnn as fnn
from fastnn.engines.fused import EpochRunner
from fastnn.kernels import epoch_distributed
from tests.helpers import tol

N, GB = 64, 32


def setup(dtype=np.float64, order=None):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((N, 5)).astype(dtype)
    y = rng.integers(0, 3, N)
    net = fnn.NeuralNetwork([fnn.FullyConnected(5, 12, dtype=dtype), fnn.TanH(), fnn.FullyConnected(12, 3, dtype=dtype)],
                            optimizer=fnn.Adam(lr=0.01), seed=0)
    runner = EpochRunner(net, X, y, GB)
    plan = net.plan()
    order = np.arange(N) if order is None else order
    kind, records = runner.records(order, plan, np.uint64(0))
    kernel = epoch_distributed.step_kernel(runner.loss_kind, kind, runner.chain)
    return net, plan, kernel, records


def gradient(kernel, held, grads, r0, r1, start=0):
    """The kernel's gradient of rows r0:r1 of the global batch at ``start`` (a copy), and its loss."""
    layer, what, _, loss, _ = kernel(held, 0, 0.0, 1, start, r0, r1, start // GB, float(GB), 1)
    assert (layer, what) == (-1, -1)
    return grads.copy(), loss


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_ranks_pieces_of_a_global_batch_add_up_to_its_gradient(dtype):
    net, plan, kernel, records = setup(dtype)
    held = epoch_distributed.hold(*records)
    whole, loss = gradient(kernel, held, plan.grads, 0, GB)
    first, loss0 = gradient(kernel, held, plan.grads, 0, GB // 2 + 3)
    second, loss1 = gradient(kernel, held, plan.grads, GB // 2 + 3, GB)
    empty, _ = gradient(kernel, held, plan.grads, 5, 5)          # a rank with no rows: zeros
    assert not empty.any()
    scale = np.abs(whole).max()
    np.testing.assert_allclose(first + second, whole, rtol=0, atol=tol(dtype, GB) * scale)
    assert loss0 + loss1 == pytest.approx(loss, rel=tol(dtype, GB))


def test_the_update_of_a_summed_gradient_is_taken_once_and_counted_by_the_caller():
    net, plan, kernel, records = setup()
    held = epoch_distributed.hold(*records)
    before = plan.params.copy()
    kernel(held, 0, 0.0, 1, 0, 0, GB, 0, float(GB), 1)
    layer, what, _, _, _ = kernel(held, GB, float(GB), 1, -1, 0, 0, 0, 0.0, 1)   # the update only
    assert (layer, what) == (-1, -1)
    assert not np.array_equal(plan.params, before)
    assert net.optimizer.steps == 0          # the engine counts the steps it took (opt.steps, once an epoch)


def test_a_held_keeps_its_records_arrays_alive():
    net, plan, kernel, records = setup(order=np.arange(N)[::-1].copy())
    want, _ = gradient(kernel, epoch_distributed.hold(*records), plan.grads, 0, GB)
    held = epoch_distributed.hold(*records)
    del records          # the order (and the rest) now live only through `held`
    gc.collect()
    junk = [np.full(N, N - 1) for _ in range(64)]       # reuse freed memory, if any was freed
    got, _ = gradient(kernel, held, plan.grads, 0, GB)
    del junk
    np.testing.assert_array_equal(got, want)
