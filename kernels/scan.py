"""One pass over an input array at the Python boundary: its largest magnitude, which is also its finiteness
verdict (fastnn._checks reads it).

``max_magnitude(bits)`` reads a float array's bit patterns as integers of the same width (``x.view(int32)``
for float32, ``int64`` for float64, 1-D, C-contiguous): without its sign bit a pattern is ordered like the
magnitude, with Inf above every finite value and NaN above Inf, so the largest masked pattern, read back
as a float, is max |x| exactly — or Inf / NaN when the array holds one. Integer maxima vectorise without
fastmath (DESIGN §3), so this one loop is both checks at memory speed: one signature per float width,
compiled on first use (a fraction of a second), no temporary array.
"""
import numpy as np

from ._jit import kernel


@kernel
def max_magnitude(bits, start, stop):
    """The largest of ``bits[start:stop] & (every bit but the sign)`` (0 for an empty range)."""
    mask = bits.dtype.type(np.iinfo(bits.dtype).max)
    top = bits.dtype.type(0)
    for i in range(start, stop):
        top = max(top, bits.dtype.type(bits[i] & mask))     # the cast keeps int32 lanes (no widening)
    return top
