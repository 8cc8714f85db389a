"""fastnn's benchmarks: the matrix of issue 3 (matrix.py), one module per peer (peers/), the side-by-side
comparison (``python -m benchmarks.compare``) and the asv suite (asv.conf.json, benchmarks/). See README.md.

Nothing here is imported by fastnn itself, and importing this package imports no peer library.
"""
