"""The ``lightly-temperature`` command as a process: Ctrl-C and kill keep finished runs, a
closed pipe ends quietly, ``--version`` and ``--help`` say what users look for."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import pytest

import lightly_temperature
from lightly_temperature.cli import build_parser
from lightly_temperature.study.config import StudyConfig
from lightly_temperature.study.results import METRIC_COLUMNS, ResultsFile
from tests.conftest import ROOT, run_python


def _start(*args: str) -> subprocess.Popen:
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "lightly_temperature", *args],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_line(process: subprocess.Popen, text: str) -> list[str]:
    lines = []
    for line in process.stdout:
        lines.append(line)
        if text in line:
            return lines
    raise AssertionError(
        f"{text!r} never printed; stdout: {lines}, stderr: {process.stderr.read()}"
    )


@pytest.mark.parametrize("sent", [signal.SIGINT, signal.SIGKILL])
def test_interrupted_study_keeps_finished_runs_and_says_so(tmp_path, sent):
    output = tmp_path / "out"
    config = StudyConfig(losses=("ntxent",), temperatures=(0.1, 0.5), epochs=50, seeds=(0,))
    first = config.runs()[0]
    row = {c: 0.5 for c in METRIC_COLUMNS}
    row.update(method="simclr", loss="ntxent", temperature=first.temperature)
    row.update(hard_negatives="", seed=0, epochs=first.epochs, temperature_policy="constant")
    ResultsFile(output / "results.csv").append(row)  # run 1 finished before
    before = (output / "results.csv").read_bytes()

    process = _start(
        "study", "--output", str(output), "--losses", "ntxent", "--temperatures", "0.1", "0.5",
        "--epochs", "50", "--batch-size", "64", "--seeds", "0",
    )  # fmt: skip
    try:
        lines = _wait_for_line(process, "run 2 of 2")
        assert "training" in lines[-1] and "skipped" in lines[-2], lines
        process.send_signal(sent)
        out, err = process.communicate(timeout=120)
    finally:
        process.kill()
    # Everything the process said, for any assertion below that fails.
    said = f"return code {process.returncode}; stdout: {lines} {out!r}; stderr: {err!r}"
    assert (output / "results.csv").read_bytes() == before, said
    assert ResultsFile(output / "results.csv").finished_keys() == {first.key}, said
    if sent == signal.SIGKILL:
        assert process.returncode == -signal.SIGKILL, said
        return
    assert process.returncode == 130, said
    assert err.strip() == (
        f"lightly-temperature study: interrupted; 1 of 2 runs finished and are kept in "
        f"{output / 'results.csv'}: rerun the same command to resume"
    ), said
    assert "Traceback" not in err + out, said


def test_output_closed_by_the_reader_ends_quietly():
    process = _start("explain")
    process.stdout.close()  # as `| head` does once it has read enough
    err = process.stderr.read()
    assert process.wait(timeout=120) == 128 + signal.SIGPIPE
    assert err == ""


def test_version():
    pyproject = (ROOT / "pyproject.toml").read_text()
    version = re.search(r'^version = "([^"]+)"', pyproject, re.MULTILINE)[1]
    assert lightly_temperature.__version__ == version
    done = run_python("-m", "lightly_temperature", "--version")
    assert (done.returncode, done.stdout, done.stderr) == (
        0,
        f"lightly-temperature {version}\n",
        "",
    )


def _options(parser):
    subparsers = next(a for a in parser._actions if a.dest == "command")
    return {
        (name, option.option_strings[-1]): option.help or ""
        for name, command in subparsers.choices.items()
        for option in command._actions
        if option.option_strings and option.dest != "help"
    }


def test_help_gives_the_default_of_every_option():
    options = _options(build_parser())
    assert ("study", "--no-progress-bar") in options and ("explain", "--plot") in options
    without = [name for name, text in options.items() if "default" not in text]
    assert without == []
    shown = {name: re.search(r"default: ([^)]*)\)", text) for name, text in options.items()}
    defaults = StudyConfig()
    assert shown[("study", "--epochs")][1] == str(defaults.epochs)
    assert shown[("study", "--batch-size")][1] == str(defaults.batch_size)
    assert shown[("study", "--lr")][1] == f"{defaults.lr:g}"
    assert shown[("study", "--seeds")][1] == "0 1 2"
    assert shown[("study", "--fewshot")][1] == "1 10"
