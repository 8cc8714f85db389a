"""FASTNN_DISTRIBUTED_TIMEOUT, the distributed start-up wait (engines/local.py's start_timeout): every value a
user can set means a bounded wait, "forever" said plainly (0, a negative number, inf), or a warning — never a
wait that silently cannot end (NaN compared false with every elapsed time)."""
import math
import warnings

import pytest

from fastnn.engines import local


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch):
    monkeypatch.setattr(local, "_warned", set(), raising=False)


@pytest.mark.parametrize("text, expected", [("", local.START_TIMEOUT), ("30", 30.0), (" 2.5 ", 2.5),
                                            ("0", 0.0), ("-1", 0.0), ("inf", 0.0), ("-inf", 0.0), ("1e300", 1e300)])
def test_a_number_of_seconds_is_the_wait_and_forever_is_zero(monkeypatch, text, expected):
    monkeypatch.setenv("FASTNN_DISTRIBUTED_TIMEOUT", text)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert local.start_timeout() == expected


@pytest.mark.parametrize("text", ["nan", "NaN", "-nan", "soon", "2 min", "1,5"])
def test_a_value_that_is_no_number_is_ignored_with_one_warning(monkeypatch, text):
    monkeypatch.setenv("FASTNN_DISTRIBUTED_TIMEOUT", text)
    with pytest.warns(RuntimeWarning, match="FASTNN_DISTRIBUTED_TIMEOUT must be a number") as caught:
        value = local.start_timeout()
    assert value == local.START_TIMEOUT and math.isfinite(value) and len(caught) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # said once per value
        assert local.start_timeout() == local.START_TIMEOUT


def test_the_cli_guard_around_mpi_start_up_accepts_a_huge_limit(monkeypatch):
    """faulthandler's timer refuses 1e300 s with an OverflowError: as good as no limit, not a crash."""
    from fastnn.cli import train
    monkeypatch.setenv("FASTNN_DISTRIBUTED_TIMEOUT", "1e300")

    class Held:
        previous, handler = {}, None
    with train._starting_mpi(Held()):
        pass
