"""Threads that meet: atomics and a barrier for kernels that several threads run at once.

The batch-parallel epoch kernel (epoch_parallel.py) runs on T threads that fastnn starts itself (Python
threads calling one ``nogil`` kernel, fastnn/fused.py); they meet at ``barrier`` a few times per
mini-batch. Every thread is a real OS thread, so a barrier cannot wait on a thread that was never
scheduled (a ``prange`` may run two chunks on one thread, which a barrier would deadlock).

The wait spins briefly (``pause``) and then yields the core (``sched_yield``): on an idle machine the
other thread arrives within the spin, and on a machine whose cores are busy with other work a waiting
thread gives its core away instead of burning it (issue 11: a busy core must not be a cliff).

``sync`` is an int64 array of SYNC_SIZE slots shared by the threads: [arrived, generation, abort].
A thread that fails (an exception in its kernel) sets ``abort``; every barrier then returns False at
once, so that the others leave the kernel instead of waiting for it.
"""
import ctypes
import platform

import llvmlite.binding
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from ._jit import inline_kernel

ARRIVED, GENERATION, ABORT = 0, 1, 2
SYNC_SIZE = 3
#: pauses before a waiting thread starts yielding its core (a pause is ~10-140 cycles by CPU)
SPINS = 2000

llvmlite.binding.add_symbol("fastnn_sched_yield", ctypes.cast(ctypes.CDLL(None).sched_yield, ctypes.c_void_p).value)
_sched_yield = types.ExternalFunction("fastnn_sched_yield", types.int32())
_X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")


def _slot_pointer(context, builder, sig, args):
    array_type, (array, index) = sig.args[0], args[:2]
    ary = context.make_array(array_type)(context, builder, array)
    index = context.cast(builder, index, sig.args[1], types.intp)
    return cgutils.get_item_pointer(context, builder, array_type, ary, [index])


def _int64_array(x):
    return isinstance(x, types.Array) and x.dtype == types.int64 and x.ndim == 1


@intrinsic
def atomic_add(typingctx, array, index, value):
    """array[index] += value atomically (sequentially consistent); returns the old value. int64 arrays."""
    if not (_int64_array(array) and isinstance(index, types.Integer) and isinstance(value, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        value = context.cast(builder, args[2], sig.args[2], types.int64)
        return builder.atomic_rmw("add", _slot_pointer(context, builder, sig, args), value, "seq_cst")
    return types.int64(array, index, value), codegen


@intrinsic
def atomic_load(typingctx, array, index):
    """array[index], read atomically (sequentially consistent). int64 arrays."""
    if not (_int64_array(array) and isinstance(index, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        return builder.load_atomic(_slot_pointer(context, builder, sig, args), "seq_cst", 8)
    return types.int64(array, index), codegen


@intrinsic
def atomic_store(typingctx, array, index, value):
    """array[index] = value, written atomically (sequentially consistent). int64 arrays."""
    if not (_int64_array(array) and isinstance(index, types.Integer) and isinstance(value, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        value = context.cast(builder, args[2], sig.args[2], types.int64)
        builder.store_atomic(value, _slot_pointer(context, builder, sig, args), "seq_cst", 8)
        return context.get_dummy_value()
    return types.void(array, index, value), codegen


@intrinsic
def cpu_relax(typingctx):
    """The CPU's spin-wait hint (x86 ``pause``); nothing elsewhere."""
    def codegen(context, builder, sig, args):
        if _X86:
            pause = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), []),
                                                   "llvm.x86.sse2.pause")
            builder.call(pause, [])
        return context.get_dummy_value()
    return types.void(), codegen


@inline_kernel
def barrier(sync, nthreads):
    """Wait until all ``nthreads`` threads have called it (for this generation). False if a thread
    aborted: the caller then leaves the kernel."""
    if atomic_load(sync, ABORT) != 0:
        return False
    generation = atomic_load(sync, GENERATION)
    if atomic_add(sync, ARRIVED, 1) == nthreads - 1:
        atomic_store(sync, ARRIVED, 0)
        atomic_add(sync, GENERATION, 1)
        return atomic_load(sync, ABORT) == 0
    spins = 0
    while atomic_load(sync, GENERATION) == generation:
        if atomic_load(sync, ABORT) != 0:
            return False
        if spins < SPINS:
            spins += 1
            cpu_relax()
        else:
            _sched_yield()
    return atomic_load(sync, ABORT) == 0


@inline_kernel
def abort(sync):
    """Make every barrier of ``sync`` return False from now on."""
    atomic_store(sync, ABORT, 1)
