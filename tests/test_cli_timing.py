"""`fastnn train`'s summary line says what the time was (issue 17 item 5): the epochs this run trained — also when
it resumed a checkpoint whose history is bounded (fastnn.checkpoint.HISTORY_EPOCHS) — their speed, and a split
of the time whose parts add up to the total."""
import re

import pytest

from fastnn import checkpoint as ckpt
from fastnn import cli

XOR_TRAIN_ROWS = 320        # `--data xor`: 400 samples, 20 % held out


def _summary(capsys, *args):
    code = cli.main(["train", "--quiet", "--data", "xor", *map(str, args)])
    out = capsys.readouterr()
    assert code == 0, out.err
    return out.out.strip().splitlines()[-1]


def _parts(line):
    """(total seconds, {part: seconds}) of the summary's 'time T s: part a s, ...'."""
    m = re.search(r"time (\d+\.\d\d) s(?:: (.*))?$", line)
    assert m, line
    parts = {}
    for part in (m.group(2) or "").split(", "):
        found = re.match(r"(.*?) (\d+\.\d\d) s", part)
        if found:
            parts[found.group(1)] = float(found.group(2))
    return float(m.group(1)), parts


def _rate(line):
    return float(re.search(r"\| ([\d,]+) samples/s \|", line).group(1).replace(",", ""))


@pytest.mark.parametrize("bounded", [2, 1000])
def test_a_resumed_run_reports_the_epochs_it_trained(tmp_path, capsys, monkeypatch, bounded):
    """A checkpoint keeps the last ``bounded`` epochs of history: the resumed run's summary still counts the 3
    epochs it trained (not 'no epoch trained'), and its parts add up to the total."""
    monkeypatch.setattr(ckpt, "HISTORY_EPOCHS", bounded)
    path = tmp_path / "run.ckpt"
    _summary(capsys, "--epochs", 5, "--checkpoint", path)
    line = _summary(capsys, "--epochs", 8, "--checkpoint", path)
    assert "no epoch trained" not in line and "samples/s" in line, line
    total, parts = _parts(line)
    assert "training" in parts, line
    assert abs(sum(parts.values()) - total) <= 0.005 * (len(parts) + 1) + 1e-9, line    # each rounded to 0.01
    line = _summary(capsys, "--epochs", 8, "--checkpoint", path)          # nothing left to train: said so
    assert "no epoch trained (the checkpoint already holds 8)" in line, line


def test_one_resumed_epoch_s_speed_counts_that_epoch_only(tmp_path, capsys):
    """Resumed after 11 of 12 epochs, the run trained one: its samples/s is XOR_TRAIN_ROWS per the time
    it reports, not 12 epochs' rows (the upper bound 3 allows the 0.01 s rounding of the time shown)."""
    path = tmp_path / "run.ckpt"
    _summary(capsys, "--epochs", 11, "--checkpoint", path)
    line = _summary(capsys, "--epochs", 12, "--checkpoint", path)
    total, _ = _parts(line)
    assert _rate(line) * total <= 3 * XOR_TRAIN_ROWS, line
