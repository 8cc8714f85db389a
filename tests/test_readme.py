"""README.md's examples run verbatim after the set-up they state, and print what the README shows.

Each ```python block runs in a fresh process in an empty directory; when an output block (a fence without a
language) follows it, every number printed must agree with the README's to a tolerance that holds on any
CPU: training in float32 rounds differently with another BLAS kernel family (DESIGN §6), which can move a
loss in its 3rd digit after 30 epochs and an accuracy by a few test samples — far less than a broken
example, which crashes or prints other numbers. The command-line session of "Three doors" runs too, line
by line (its `$ ` lines, in one directory).
"""
import os
import re
import shlex
import subprocess
import sys

import pytest

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")
NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e-?\d+)?")
#: a number printed by an example may differ from the README's by this much, relative (losses; see above) ...
RTOL = 0.05
#: ... or absolute, for accuracies (3 % of a 450-sample test set is 13 samples)
ATOL = 0.03


def _blocks():
    """(language, first line number, text) of every fenced block of README.md."""
    blocks, lang, start, lines = [], None, 0, []
    with open(README, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if line.startswith("```"):
                if lang is None:
                    lang, start, lines = line[3:].strip() or "text", number, []
                else:
                    blocks.append((lang, start, "".join(lines)))
                    lang = None
            elif lang is not None:
                lines.append(line)
    return blocks


def _python_examples():
    """(line, code, the output block right after it or None)."""
    blocks = _blocks()
    out = []
    for i, (lang, line, text) in enumerate(blocks):
        if lang == "python":
            nxt = blocks[i + 1] if i + 1 < len(blocks) else None
            expected = nxt[2] if nxt and nxt[0] == "text" and nxt[1] <= line + text.count("\n") + 3 else None
            out.append((line, text, expected))
    return out


def _close(got, want):
    return abs(got - want) <= max(RTOL * abs(want), ATOL)


def _compare_numbers(printed, expected, where):
    got = [float(x) for x in NUMBER.findall(printed)]
    want = [float(x) for x in NUMBER.findall(expected)]
    assert len(got) == len(want), f"{where}: printed {printed!r}, the README shows {expected!r}"
    bad = [(g, w) for g, w in zip(got, want) if not _close(g, w)]
    assert not bad, f"{where}: printed {printed!r}, the README shows {expected!r}"


def _run(args, cwd, **kwargs):
    env = dict(os.environ, MPLBACKEND="Agg")
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900, **kwargs)


EXAMPLES = _python_examples()


def test_the_readme_has_python_examples():
    assert len(EXAMPLES) >= 3


@pytest.mark.parametrize("line, code, expected", EXAMPLES, ids=[f"line{e[0]}" for e in EXAMPLES])
def test_python_example_runs_verbatim(line, code, expected, tmp_path):
    if "export_onnx" in code:       # its stated set-up: pip install -e ".[onnx]"
        pytest.importorskip("onnx", reason="the example's set-up installs the onnx extra")
    if "sklearn" in code:
        pytest.importorskip("sklearn", reason="the example's set-up installs scikit-learn (the test extra)")
    result = _run([sys.executable, "-c", code], tmp_path)
    assert result.returncode == 0, f"README line {line}: {result.stderr[-3000:]}"
    if expected is not None:
        _compare_numbers(result.stdout, expected, f"README line {line}")
    for comment in re.findall(r"#\s*(test accuracy [\d.]+)", code):    # results given as comments
        _compare_numbers(result.stdout, comment, f"README line {line}")


def test_the_command_line_session_runs_verbatim(tmp_path):
    """The `$ ` lines of the first command-line session, in one directory, each printing what is shown
    (the timing parts of a line excepted)."""
    session = next(text for lang, _, text in _blocks() if lang == "text" and text.startswith("$ fastnn train"))
    commands, outputs = [], []
    for row in session.splitlines():
        if row.startswith("$ "):
            commands.append(row[2:])
            outputs.append([])
        else:
            outputs[-1].append(row)
    fastnn = os.path.join(os.path.dirname(sys.executable), "fastnn")
    for command, shown in zip(commands, outputs):
        argv = command.replace("fastnn ", shlex.quote(fastnn) + " ", 1)
        result = _run(argv, tmp_path, shell=True)
        assert result.returncode == 0, f"{command}: {result.stderr[-2000:]}"
        printed = result.stdout.strip().splitlines()
        assert len(printed) == len(shown), f"{command}: printed {printed}, the README shows {shown}"
        for got, want in zip(printed, shown):
            # the score part of each line; speed and times change from run to run
            got, want = (s.split(" | ")[0] if "samples/s" in s else s for s in (got, want))
            _compare_numbers(got, want, command)
