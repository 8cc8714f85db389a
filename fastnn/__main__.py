"""``python -m fastnn``: the fastnn command line (see fastnn.cli)."""
from .cli import main

raise SystemExit(main())
