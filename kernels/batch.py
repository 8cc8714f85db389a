"""Mini-batch assembly: gather the rows of a shuffled epoch into a contiguous batch buffer."""
from ._jit import kernel


@kernel
def gather_rows(src, order, start, out):
    """out[i] = src[order[start + i]] for i < len(out); src and out 2-D (rows, columns)."""
    for i in range(out.shape[0]):
        row = order[start + i]
        for j in range(src.shape[1]):
            out[i, j] = src[row, j]


@kernel
def gather(src, order, start, out):
    """out[i] = src[order[start + i]] for 1-D src and out (class ids)."""
    for i in range(out.shape[0]):
        out[i] = src[order[start + i]]
