"""The examples run, in quick mode, on the embedded digits and on an image folder."""

import pytest
import torch
from PIL import Image

from lightly_temperature.data import load_digits_tensors
from tests.conftest import ROOT, load_script, run_python

EXAMPLES = ROOT / "examples"


def run_script(name, *args, cwd):
    result = run_python(EXAMPLES / name, *args, cwd=cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def load_example(name):
    return load_script(EXAMPLES / f"{name}.py")


def final_loss(stdout):
    line = next(line for line in stdout.splitlines() if line.startswith("final train_loss"))
    return float(line.split()[-1])


def knn_accuracy(stdout):
    """The digits kNN accuracy the example prints last.

    Features without class information give about 0.1 (chance; measured 0.08 for random and
    0.10 for constant features); the small CNN's backbone features give 0.91-0.94, untrained
    or after the 3 quick steps (measured), so 0.8 separates a sound evaluation from a broken one.
    """
    assert "digits kNN accuracy" in stdout.splitlines()[-1]
    return float(stdout.splitlines()[-1].split()[-1])


def test_simclr_example_runs_as_a_script_on_digits(tmp_path):
    stdout = run_script(
        "simclr.py", "--quick", "--accelerator", "cpu", "--devices", "1", cwd=tmp_path
    )
    assert torch.isfinite(torch.tensor(final_loss(stdout)))
    assert 0.8 < knn_accuracy(stdout) <= 1.0


def test_moco_example_runs_on_digits(tmp_path, monkeypatch, capsys):
    # In-process (main(argv)) to save an interpreter start; the SimCLR test covers script mode.
    monkeypatch.chdir(tmp_path)
    load_example("moco").main(["--quick", "--accelerator", "cpu", "--devices", "1"])
    stdout = capsys.readouterr().out
    assert torch.isfinite(torch.tensor(final_loss(stdout)))
    assert "criterion: HardContrastiveLoss(" in stdout and "temperature 0.2" in stdout
    assert 0.8 < knn_accuracy(stdout) <= 1.0


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


class _FitCalled(Exception):
    pass


@pytest.mark.parametrize(
    ("name", "argv", "threads"),
    [
        ("simclr", ["--quick"], 1),
        ("moco", ["--quick"], 1),
        ("simclr", ["--quick", "--threads", "3"], 3),
        ("callbacks_in_existing_project", ["--quick"], 1),
    ],
)
def test_examples_train_the_small_cnn_on_one_torch_thread(name, argv, threads, monkeypatch):
    """As the study does: the small CNN's tiny convolutions run about twice as fast on one
    thread as on torch's default (measured on 2 cores)."""
    import pytorch_lightning as pl

    seen = []

    def fit(*args, **kwargs):
        seen.append(torch.get_num_threads())
        raise _FitCalled

    example = load_example(name)
    monkeypatch.setattr(pl.Trainer, "fit", fit)
    monkeypatch.setattr("sys.argv", [name, *argv])
    previous = torch.get_num_threads()
    torch.set_num_threads(2)  # torch's default on a 2-core machine
    try:
        with pytest.raises(_FitCalled):
            example.main(*([argv] if name != "callbacks_in_existing_project" else []))
    finally:
        torch.set_num_threads(previous)
    assert seen == [threads]
