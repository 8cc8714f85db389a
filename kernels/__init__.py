"""Numba kernels of fastnn, installed as ``fastnn.kernels``.

Kernels know nothing of layers: they take C-contiguous float32/float64 arrays, write into the output
arrays they are given and allocate nothing. Callers (the Python API) check every shape and dtype before a
kernel runs. Every kernel is compiled lazily (``cache=True``): importing this package compiles nothing.
"""
