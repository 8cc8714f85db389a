"""Every public call interleaved, by a hypothesis state machine (tests/stateful_machine.py), in a subprocess:
a crash (segfault, heap corruption, abort) fails this test instead of killing the suite."""
import os
import subprocess
import sys

import pytest

pytest.importorskip("hypothesis")

MACHINE = os.path.join(os.path.dirname(__file__), "stateful_machine.py")


def test_no_sequence_of_public_calls_crashes_or_leaks_an_internal_error():
    env = dict(os.environ, PYTHONFAULTHANDLER="1")
    proc = subprocess.run([sys.executable, MACHINE, "100"], capture_output=True, text=True, timeout=1500, env=env)
    assert proc.returncode == 0, (f"state machine failed (exit {proc.returncode}):\n"
                                  f"{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}")
