"""The bridge to the fused whole-epoch kernel (kernels/epoch.py): which networks it covers."""


def supports(net):
    """(True, "") when the fused epoch kernel can train ``net``, else (False, the reason)."""
    return False, "the fused path is not built yet"
