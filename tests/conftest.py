"""Fixtures shared by the test files (data and networks: tests/helpers.py)."""
import signal

import pytest


@pytest.fixture
def default_sigint():
    """Python's default SIGINT handler for the test (whatever the runner installed is restored after)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)
