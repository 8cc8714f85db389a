"""``python -m fastnn``: the fastnn command line, the same path as the ``fastnn`` console script
(fastnn_cli.main: the stop signals are held from the package's first line, see fastnn/__init__.py)."""
try:
    from fastnn_cli import main
except ImportError:     # (a source tree on sys.path without the top-level module: the command line alone)
    from .cli import main

raise SystemExit(main())
