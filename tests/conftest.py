"""Fixtures shared by the test files (helpers in tests/helpers.py)."""
import signal


import pytest




@pytest.fixture
def default_sigint():
    """Python's default SIGINT handler for the test (whatever the runner installed is restored after)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.fixture
def classification_data():
    """(X (150, 6) float32, y (150,) class ids in [0, 4))."""
    from tests.helpers import make_data
    return make_data()
