"""LightningCLI: the ready modules' loss settings are typed arguments, and the example config
trains on the digits."""

import math

import pytest
import torch
from lightly.loss import NTXentLoss

from lightly_temperature.losses import HardContrastiveLoss, HardSimpleLoss, HCLLoss
from lightly_temperature.models import MoCo, SimCLR, SmallCNN
from tests.conftest import ROOT, load_script, read_csv

CONFIG = str(ROOT / "examples" / "lightning_cli_simclr.yaml")


@pytest.fixture(scope="module")
def example():
    return load_script(ROOT / "examples" / "lightning_cli.py")


def fit(example, tmp_path, *args, model_class=SimCLR):
    argv = ["fit", "--config", CONFIG, "--trainer.fast_dev_run", "2"]
    argv += ["--trainer.default_root_dir", str(tmp_path), *args]
    return example.main(argv, model_class=model_class)


def test_the_example_config_trains_simclr_with_its_loss_settings(example, tmp_path):
    cli = fit(example, tmp_path)
    criterion = cli.model.criterion
    assert type(criterion) is HardContrastiveLoss
    assert criterion.temperature == 0.3 and criterion.hard_negatives == 0.0819
    assert cli.trainer.global_step == 2
    assert torch.isfinite(cli.trainer.callback_metrics["train_loss"])


def test_the_example_config_logs_the_callbacks_to_tensorboard(example, tmp_path, monkeypatch):
    """Without fast_dev_run: the config's logger and callbacks, 5 epochs of two steps, so
    that TemperatureAnalysis (every 5 epochs) evaluates once."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.chdir(tmp_path)  # the config's folders are relative
    argv = [
        "fit",
        "--config",
        CONFIG,
        "--trainer.max_epochs",
        "5",
        "--trainer.log_every_n_steps",
        "5",
    ]
    argv += ["--trainer.limit_train_batches", "2", "--trainer.enable_progress_bar", "false"]
    cli = example.main(argv)
    assert cli.trainer.global_step == 10
    (run,) = (tmp_path / "lightning_cli_output" / "logs").iterdir()
    (row,) = read_csv(run / "temperature_analysis" / "history.csv")
    assert row["epoch"] == "4" and row["num_samples"] == "512"
    assert math.isfinite(float(row["tolerance"]))  # the digits' labels reach the probe
    events = EventAccumulator(str(run), size_guidance={"images": 0}).Reload()
    assert events.Tags()["images"] == ["temperature_analysis/similarities"]
    assert "hardness/temperature" in events.Tags()["scalars"]


def test_loss_arguments_on_the_command_line_for_moco(example, tmp_path):
    cli = fit(
        example,
        tmp_path,
        "--model.temperature",
        "0.2",
        "--model.loss",
        "hard_simple",
        "--model.hard_negatives",
        "409",
        model_class=MoCo,
    )
    criterion = cli.model.criterion
    assert type(criterion) is HardSimpleLoss
    assert criterion.temperature == 0.2
    assert criterion.hard_negatives == 409 and isinstance(criterion.hard_negatives, int)
    assert tuple(criterion.memory_bank.size) == (4096, 128)  # MoCo's bank, output_dim 128
    assert cli.trainer.global_step == 2


def test_null_keeps_all_negatives_and_default_is_the_losses_own(example, tmp_path):
    cli = fit(example, tmp_path, "--model.hard_negatives", "null")
    assert cli.model.criterion.hard_negatives is None
    cli = fit(example, tmp_path, "--model.loss", "ntxent", "--model.hard_negatives", "default")
    assert type(cli.model.criterion) is NTXentLoss and cli.model.criterion.temperature == 0.3


def test_an_argument_the_loss_does_not_take_is_an_error(example, tmp_path):
    with pytest.raises(ValueError, match="loss 'ntxent' does not take the argument.*hard_neg"):
        fit(example, tmp_path, "--model.loss", "ntxent")  # the config's hard_negatives 0.0819
    with pytest.raises(ValueError, match="temperature must be a finite float > 0, got 0.0"):
        fit(example, tmp_path, "--model.temperature", "0")
    with pytest.raises(SystemExit) as exit_info:  # not a float: jsonargparse's usage error
        fit(example, tmp_path, "--model.temperature", "warm")
    assert exit_info.value.code == 2


def test_explicit_settings_and_other_loss_arguments_in_python():
    backbone = SmallCNN(width=4)
    hcl = SimCLR(backbone=backbone, loss="hcl", temperature=0.4, beta=0.5)
    assert type(hcl.criterion) is HCLLoss and hcl.criterion.temperature == 0.4
    assert hcl.criterion.hard_negatives is None  # HCL's own default: all negatives
    assert hcl.hparams.temperature == 0.4 and hcl.hparams.beta == 0.5
    default = SimCLR(backbone=backbone, loss="hard_contrastive")
    assert default.criterion.temperature == 0.5 and default.criterion.hard_negatives == 0.0819
    with pytest.raises(ValueError, match="hard_negatives must be an int K.*got 'all'"):
        SimCLR(backbone=backbone, hard_negatives="all")
