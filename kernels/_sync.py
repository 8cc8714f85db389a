"""Threads that share the blocks of a kernel: atomics, and waiting that gives the core away.

The batch-parallel epoch kernel (epoch_parallel.py) is a sequence of phases, each cut into T blocks;
the threads running it (fastnn's own: Python threads calling one ``nogil`` kernel, fastnn/engines/fused.py)
*claim* blocks one at a time from a shared counter, so block ``id`` is phase id // T, block id % T.
Before it runs a block of phase g, a thread waits until every block of phase g - 1 is done. What is
computed depends only on T, never on which thread runs which block, so results are bit-identical for a
given T; and when the machine's other cores are busy and one thread is not scheduled, the others run its
blocks instead of waiting for it (issue 11: a busy core must not be a cliff). A thread can only ever
wait for a block that another thread has claimed and is running.

The wait spins briefly (``pause``) and then yields the core (``sched_yield``): on an idle machine the
other thread finishes within the spin, on a busy one the waiting thread gives its core away.

The one case where a thread still waits long: another thread was descheduled while it held a block
(its core is shared with other work). Thread 0 measures its time waiting against its time working
(``cycles``); when it has waited longer than it worked, it sets ``retire``, the other threads claim no
more blocks, and thread 0 runs the rest of the epoch's blocks alone — still the same T blocks per
phase, so the same numbers (issue 11's "detect and adapt").

``sync`` is an int64 array of SYNC_SIZE slots shared by the threads: [claimed, done, stop, abort,
retire]. The kernel sets ``stop`` when training must end early (a non-finite loss, gradient or update);
a thread that raised sets ``abort`` (fastnn/engines/fused.py), and every wait then returns at once.
"""
import ctypes
import platform

import llvmlite.binding
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from ._jit import inline_kernel

CLAIMED, DONE, STOP, ABORT, RETIRE = 0, 1, 2, 3, 4
SYNC_SIZE = 5
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
def cycles(typingctx):
    """The CPU's cycle counter (x86 ``rdtsc``): for comparing two durations of one thread, not a clock."""
    def codegen(context, builder, sig, args):
        counter = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(64), []),
                                                 "llvm.readcyclecounter")
        return builder.call(counter, [])
    return types.int64(), codegen


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
def wait_until_done(sync, blocks):
    """Wait until ``blocks`` blocks are done in all; False (at once) once the kernel stopped or a thread
    aborted: a block claimed after that is never run, so nobody may wait for it."""
    spins = 0
    while atomic_load(sync, DONE) < blocks:
        if atomic_load(sync, ABORT) != 0 or atomic_load(sync, STOP) != 0:
            return False
        if spins < SPINS:
            spins += 1
            cpu_relax()
        else:
            _sched_yield()
    return atomic_load(sync, ABORT) == 0 and atomic_load(sync, STOP) == 0
