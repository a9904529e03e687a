"""`lightly-temperature ssl-train`: Lightly's own training command with a loss of the package."""

import importlib
import inspect
import math

import pytest
import torch
from lightly.embedding import _base as lightly_embedding
from lightly.loss import DCLLoss, NTXentLoss
from PIL import Image

from lightly_temperature import cli
from lightly_temperature.data import load_digits_tensors
from lightly_temperature.losses import HardContrastiveLoss
from lightly_temperature.probe import split_batch
from lightly_temperature.ssl_train import (
    build_criterion,
    patched_lightly,
    prepare,
    probe_loader,
)
from tests.conftest import read_csv, run_python

# The module (lightly.cli exports a function of the same name).
train_cli = importlib.import_module("lightly.cli.train_cli")

# Small enough to train in seconds on a CPU: Lightly's ResNet-18 at 1/8 width, 16x16 inputs.
SMALL = [
    "pre_trained=False",
    "trainer.gpus=0",
    "trainer.max_epochs=1",
    "loader.batch_size=8",
    "loader.num_workers=0",
    "collate.input_size=16",
    "model.width=0.125",
    "model.num_ftrs=16",
    "model.out_dim=16",
]


def write_digits(folder, count, classes=False):
    """``count`` real digits as 16x16 RGB PNGs; in one subfolder per label with ``classes``."""
    images, labels = load_digits_tensors()
    for i in range(count):
        target = folder / f"class_{int(labels[i])}" if classes else folder
        target.mkdir(parents=True, exist_ok=True)
        pixels = (images[i, 0] * 255).to(torch.uint8).numpy()
        Image.fromarray(pixels).resize((16, 16)).convert("RGB").save(target / f"d{i:02d}.png")
    return folder


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    return write_digits(tmp_path_factory.mktemp("images"), 24)


def test_lightly_builds_its_loss_and_trainer_through_the_names_ssl_train_replaces():
    """The patch points, read from the installed Lightly: if a release renames them, this
    fails (and ssl-train refuses to run, see _check_patch_points)."""
    assert 'NTXentLoss(**cfg["criterion"])' in inspect.getsource(train_cli._train_cli)
    assert "Trainer(**trainer_config" in inspect.getsource(
        lightly_embedding.BaseEmbedding.train_embedding
    )


def test_patched_lightly_replaces_and_restores_the_two_names():
    marker = object()
    with patched_lightly({"loss", "hard_negatives"}, callbacks=[marker]):
        loss = train_cli.NTXentLoss(loss="hard_contrastive", temperature=0.5, hard_negatives=3)
        assert type(loss) is HardContrastiveLoss and loss.hard_negatives == 3
        trainer = lightly_embedding.Trainer(logger=False, enable_checkpointing=False)
        assert marker in trainer.callbacks
    assert train_cli.NTXentLoss is NTXentLoss
    assert lightly_embedding.Trainer.__name__ == "Trainer"


def test_ssl_train_trains_lightlys_pipeline_with_the_chosen_loss(image_folder, tmp_path):
    result = run_python(
        "-m",
        "lightly_temperature",
        "ssl-train",
        f"input_dir={image_folder}",
        *SMALL,
        "criterion.loss=hard_contrastive",
        "criterion.temperature=0.3",
        "criterion.hard_negatives=0.0819",
        "temperature_analysis=true",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # Lightly's model summary (Lightning's log, on stderr) names the loss it trains with.
    assert any(
        line.split("|")[1:3] == [" criterion ", " HardContrastiveLoss "]
        for line in result.stderr.splitlines()
        if line.count("|") >= 3
    ), result.stderr
    assert "temperature=0.3, selection=TopKNegatives(0.0819)" in result.stdout
    # Lightly's outputs where Lightly writes them: checkpoints in the working folder, the
    # Hydra record of the configuration (with the criterion as given) in lightly_outputs/.
    checkpoint = torch.load(tmp_path / "last.ckpt", map_location="cpu", weights_only=False)
    assert any(key.startswith("model.backbone.") for key in checkpoint["state_dict"])
    assert "Best model is stored at" in result.stdout
    (config,) = tmp_path.glob("lightly_outputs/*/*/.hydra/config.yaml")
    assert "loss: hard_contrastive" in config.read_text()
    # The callbacks ran: one evaluation at the end of the epoch, label-free metrics only.
    (history,) = tmp_path.glob("lightning_logs/version_*/temperature_analysis/history.csv")
    (row,) = read_csv(history)
    assert row["num_samples"] == "24" and row["step"] == "3"
    for name in ("uniformity", "alignment", "positive_similarity", "effective_negatives"):
        assert math.isfinite(float(row[name])), name
    assert row["tolerance"] == "nan" and row["top10_false_negative_rate"] == "nan"
    assert list(history.parent.glob("similarities_epoch0000_step0000003.png"))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["criterion.loss=infonce"], "criterion: unknown loss 'infonce'; known losses: "),
        (
            ["criterion.loss=ntxent", "criterion.hard_negatives=3"],
            "criterion: loss 'ntxent' does not take the argument(s) hard_negatives;",
        ),
        (
            ["criterion.loss=hard_contrastive", "criterion.hard_negatives=0"],
            "criterion: hard_negatives must be an int >= 1 (K), got 0",
        ),
        (["criterion.temperature=-1"], "criterion: temperature must be a finite float > 0"),
        (["criterion.temperature=warm"], "criterion: temperature must be a finite float > 0"),
        (["trainer.nonsense=1"], "error: Could not override 'trainer.nonsense'."),
        (["criterion.loss=dcl", "criterion.memory_bank_size=64"], "memory_bank_size"),
        (["temperature_analysis=maybe"], "temperature_analysis must be true or false, got 'maybe'"),
        (["trainer.max_epochs=[1"], "error: trainer.max_epochs=[1: no viable alternative"),
    ],
)
def test_bad_input_is_one_line_and_exit_2_before_training(
    overrides, message, image_folder, monkeypatch, capsys
):
    def train_cli_must_not_run():
        raise AssertionError("Lightly's training command started")

    monkeypatch.setattr(train_cli, "train_cli", train_cli_must_not_run)
    assert cli.main(["ssl-train", f"input_dir={image_folder}", *SMALL, *overrides]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lightly-temperature ssl-train: error: ") and err.count("\n") == 1
    assert message in err


def test_several_gpus_are_refused_before_training(image_folder, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    argv = ["ssl-train", f"input_dir={image_folder}", *SMALL, "trainer.gpus=2"]
    assert cli.main(argv) == 2
    assert "trainer.gpus=2: ssl-train trains on one device" in capsys.readouterr().err


def test_a_missing_input_dir_is_named(tmp_path, capsys):
    assert cli.main(["ssl-train", *SMALL]) == 2
    assert "input_dir is required" in capsys.readouterr().err
    assert cli.main(["ssl-train", f"input_dir={tmp_path / 'nowhere'}", *SMALL]) == 2
    assert "nowhere: not a folder" in capsys.readouterr().err


def test_criterion_keys():
    # Lightly's own defaults go only to a loss that takes them; a key the user gave always does.
    dcl = build_criterion({"loss": "dcl", "temperature": 0.5, "memory_bank_size": 0}, set())
    assert type(dcl) is DCLLoss
    with pytest.raises(ValueError, match="does not take the argument.*memory_bank_size"):
        build_criterion({"loss": "dcl", "memory_bank_size": 0}, {"memory_bank_size"})
    ntxent = build_criterion({"temperature": 0.2, "memory_bank_size": 0}, {"temperature"})
    assert type(ntxent) is NTXentLoss and ntxent.temperature == 0.2  # Lightly's default loss


def test_prepare_reads_the_overrides_as_lightly_does(image_folder):
    overrides = [
        f"input_dir={image_folder}",
        "criterion.loss=hard-contrastive",
        "loader.batch_size=4",
    ]
    lightly_overrides, analysis, config, criterion = prepare(
        [*overrides, "temperature_analysis=false"]
    )
    assert lightly_overrides == [overrides[0], "+criterion.loss=hard-contrastive", overrides[2]]
    assert analysis is False and config.loader.batch_size == 4
    assert type(criterion) is HardContrastiveLoss and criterion.temperature == 0.5  # Lightly's


def test_the_probe_has_labels_only_with_class_subfolders(image_folder, tmp_path):
    config = prepare([f"input_dir={image_folder}", *SMALL]).config
    views, labels = split_batch(next(iter(probe_loader(config))))
    assert len(views) == 2 and views[0].shape == (8, 3, 16, 16) and labels is None
    classes = write_digits(tmp_path / "classes", 20, classes=True)
    config = prepare([f"input_dir={classes}", *SMALL]).config
    loader = probe_loader(config)
    labels = torch.cat([split_batch(batch)[1] for batch in loader])
    expected = load_digits_tensors()[1][:20]
    # ImageFolder numbers the class folders in sorted order: class_0 ... class_9 -> 0 ... 9.
    assert sorted(labels.tolist()) == sorted(expected.tolist())
