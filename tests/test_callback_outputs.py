"""Where TemperatureAnalysis's files and figures go: each run's own folder, every logger with
an image API."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from pytorch_lightning.loggers import CSVLogger, Logger, TensorBoardLogger

from lightly_temperature import TemperatureAnalysis
from lightly_temperature.callbacks._outputs import logger_run_folder
from tests._simclr_digits import TinySimCLR, probe_loader, train_loader
from tests.conftest import make_trainer, read_csv


class ImageLogger(Logger):
    """What a WandbLogger offers: a ``save_dir`` shared by runs, a project ``name``, a run id
    as ``version`` (a string), no ``log_dir``, and Lightning's ``log_image(key, images, step)``.
    Records what it receives."""

    def __init__(self, save_dir: str, run_id: str) -> None:
        super().__init__()
        self._save_dir, self._run_id = save_dir, run_id
        self.images: list[tuple[str, list, int]] = []
        self.metrics: list[dict] = []

    @property
    def name(self) -> str:
        return "project"

    @property
    def version(self) -> str:
        return self._run_id

    @property
    def save_dir(self) -> str:
        return self._save_dir

    @property
    def experiment(self) -> None:
        return None

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass

    def log_metrics(self, metrics, step=None) -> None:
        self.metrics.append(dict(metrics))

    def log_image(self, key, images, step=None, **kwargs) -> None:
        self.images.append((key, images, step))


def fit(root, loggers, epochs=2):
    analysis = TemperatureAnalysis(probe_loader(60), max_samples=60)
    trainer = make_trainer(root, epochs, [analysis], loggers, limit_train_batches=2)
    trainer.fit(TinySimCLR(), train_loader(128, 64))
    return trainer


def test_two_runs_sharing_a_save_dir_keep_their_files_apart(tmp_path):
    first, second = ImageLogger(str(tmp_path), "run-a"), ImageLogger(str(tmp_path), "run-b")
    fit(tmp_path / "root", [first])
    fit(tmp_path / "root", [second], epochs=1)
    # Each run's files in its own folder, save_dir/name/version (where Lightning's
    # ModelCheckpoint puts that run's checkpoints), not in the shared save_dir.
    for run_id, evaluations in (("run-a", 2), ("run-b", 1)):
        folder = tmp_path / "project" / run_id / "temperature_analysis"
        assert len(read_csv(folder / "history.csv")) == evaluations
        assert len(list(folder.glob("similarities_*.png"))) == evaluations
    assert not (tmp_path / "temperature_analysis").exists()
    # The figure reaches the logger's image API once per evaluation, at its step.
    assert [(key, step) for key, _, step in first.images] == [
        ("temperature_analysis/similarities", 2),
        ("temperature_analysis/similarities", 4),
    ]
    (pixels,) = first.images[0][1]
    assert pixels.dtype == np.uint8 and pixels.ndim == 3 and pixels.shape[2] == 3
    assert pixels.shape[:2] == (350, 500)  # the 5 x 3.5 inch figure at 100 dpi
    assert pixels.std() > 0  # a drawn figure, not a blank canvas


def test_tensorboard_and_csv_with_one_version_keep_one_run_in_one_folder(tmp_path):
    # The CSV logger first: it clears a run folder that is not empty when it starts.
    csv = CSVLogger(str(tmp_path), name="run")
    tensorboard = TensorBoardLogger(str(tmp_path), name="run", version=csv.version)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="TemperatureAnalysis: the loggers write")
        warnings.filterwarnings("error", message="Experiment logs directory")
        fit(tmp_path / "root", [csv, tensorboard], epochs=1)
    (folder,) = (tmp_path / "run").iterdir()
    names = {path.name for path in folder.iterdir()}
    assert "metrics.csv" in names and "temperature_analysis" in names
    assert any(name.startswith("events.out.tfevents") for name in names)
    assert len(read_csv(folder / "temperature_analysis" / "history.csv")) == 1


def test_loggers_that_split_a_run_are_named_in_a_warning(tmp_path):
    loggers = [TensorBoardLogger(str(tmp_path)), CSVLogger(str(tmp_path))]
    with pytest.warns(UserWarning, match="the loggers write this run to 2 folders") as record:
        fit(tmp_path / "root", loggers, epochs=2)
    messages = [str(w.message) for w in record if "the loggers write" in str(w.message)]
    assert len(messages) == 1  # once per run
    assert "version_0" in messages[0] and "version_1" in messages[0]


def test_loggers_without_lightnings_image_api_are_skipped(tmp_path):
    class OtherImageLogger(ImageLogger):
        def log_image(self, image, name) -> None:  # another signature: not Lightning's
            raise AssertionError("called")

    other = OtherImageLogger(str(tmp_path), "run-c")
    fit(tmp_path / "root", [other], epochs=1)
    assert (
        len(read_csv(tmp_path / "project" / "run-c" / "temperature_analysis" / "history.csv")) == 1
    )


def test_the_run_folder_of_a_logger(tmp_path):
    assert logger_run_folder(TensorBoardLogger(str(tmp_path), name="a", version=3), "x") == str(
        tmp_path / "a" / "version_3"
    )
    assert logger_run_folder(ImageLogger(str(tmp_path), "r1"), "x") == str(
        tmp_path / "project" / "r1"
    )
