"""Numba kernels of fastnn, installed as ``fastnn.kernels``.

Kernels know nothing of layers: they take C-contiguous float32/float64 arrays, write into the output
arrays they are given and allocate nothing. Callers (the Python API) check every shape and dtype before a
kernel runs. Every kernel is compiled lazily (``cache=True``): importing this package compiles nothing.

What lives where: step.py holds the training step's pieces (written once) and the records the drivers
take; epoch.py the serial epoch driver and the two halves of a distributed step; epoch_parallel.py the
batch-parallel epoch driver; activations.py, softmax_ce.py, optim.py, dropout.py, batch.py the leaf math;
dense.py the per-layer path's layer kernels (copies of step.py's row functions); _blas.py, _sync.py, _jit.py
the BLAS call, the workers' atomics and the Numba options.
"""
