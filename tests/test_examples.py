"""The examples run, in quick mode, on the embedded digits and on an image folder."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from lightly_temperature.data import load_digits_tensors

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run_script(name, *args, cwd):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def load_example(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def final_loss(stdout):
    line = next(line for line in stdout.splitlines() if line.startswith("final train_loss"))
    return float(line.split()[-1])


def test_simclr_example_runs_as_a_script_on_digits(tmp_path):
    stdout = run_script(
        "simclr.py", "--quick", "--accelerator", "cpu", "--devices", "1", cwd=tmp_path
    )
    assert torch.isfinite(torch.tensor(final_loss(stdout)))
    accuracy = float(stdout.splitlines()[-1].split()[-1])
    assert "digits kNN accuracy" in stdout and 0.1 < accuracy <= 1.0


def test_moco_example_runs_on_digits(tmp_path, monkeypatch, capsys):
    # In-process (main(argv)) to save an interpreter start; the SimCLR test covers script mode.
    monkeypatch.chdir(tmp_path)
    load_example("moco").main(["--quick", "--accelerator", "cpu", "--devices", "1"])
    stdout = capsys.readouterr().out
    assert torch.isfinite(torch.tensor(final_loss(stdout)))
    assert "criterion: HardContrastiveLoss(" in stdout and "temperature 0.2" in stdout
    accuracy = float(stdout.splitlines()[-1].split()[-1])
    assert "digits kNN accuracy" in stdout and 0.1 < accuracy <= 1.0


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """24 real digits as 32x32 RGB PNG files, the layout LightlyDataset reads."""
    folder = tmp_path_factory.mktemp("images")
    images, labels = load_digits_tensors()
    for i in range(24):
        pixels = (images[i, 0] * 255).to(torch.uint8).numpy()
        image = Image.fromarray(pixels).resize((32, 32)).convert("RGB")
        image.save(folder / f"digit_{i:02d}_{int(labels[i])}.png")
    return folder


@pytest.mark.parametrize("name", ["simclr", "moco"])
def test_examples_run_on_an_image_folder(name, image_folder, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    example = load_example(name)
    extra = ["--loss", "hard_simple"] if name == "moco" else []
    example.main(
        [
            str(image_folder),
            "--quick",
            "--batch-size",
            "8",
            "--input-size",
            "32",
            "--accelerator",
            "cpu",
            "--devices",
            "1",
            *extra,
        ]
    )
    stdout = capsys.readouterr().out
    assert torch.isfinite(torch.tensor(final_loss(stdout)))
    assert "kNN" not in stdout  # evaluation is for digits only
    if name == "moco":
        assert "criterion: HardSimpleLoss(" in stdout
