"""MoCo with the hard contrastive loss on the embedded digits: the study's defaults train
(real end-to-end runs of the study, short)."""

from __future__ import annotations

from lightly_temperature.metrics import COLLAPSE_THRESHOLD
from lightly_temperature.study.config import MOCO_HARD_NEGATIVES, StudyConfig
from lightly_temperature.study.data import load_digits_data
from lightly_temperature.study.runner import run_study
from tests.conftest import read_csv


def test_moco_default_k_is_a_quarter_of_the_bank_and_simclr_keeps_the_papers():
    assert StudyConfig(method="moco").hard_negatives == MOCO_HARD_NEGATIVES == 0.25
    assert StudyConfig(method="simclr").hard_negatives == 0.0819
    assert StudyConfig(method="moco", hard_negatives=64).hard_negatives == 64


def test_moco_hard_contrastive_with_the_study_defaults_does_not_collapse_on_digits(tmp_path):
    # With the paper's alpha = 0.0819 of the 1,024-key bank (K = 84) the queries collapse:
    # uniformity 0.07 and embedding spread 0.13 after 30 epochs at tau = 1.
    config = StudyConfig(
        output=str(tmp_path),
        method="moco",
        losses=("hard_contrastive",),
        temperatures=(1.0,),
        seeds=(0,),
        epochs=30,
        progress_bar=False,
    )
    run_study(config, data=load_digits_data(), printer=lambda line: None)
    (row,) = read_csv(tmp_path / "results.csv")
    assert row["hard_negatives"] == "0.25"
    assert float(row["embedding_spread"]) > 3 * COLLAPSE_THRESHOLD
    assert float(row["uniformity"]) > 1.5


def test_command_line_gives_moco_its_default_k_unless_told_otherwise():
    from lightly_temperature.cli import _study_config, build_parser

    def k(*args: str):
        return _study_config(build_parser().parse_args(["study", *args])).hard_negatives

    assert k("--method", "moco") == 0.25
    assert k() == k("--method", "simclr") == 0.0819
    assert k("--method", "moco", "--hard-negatives", "64") == 64
    # The paper's preset trains over NPID's bank with its alpha (K = 4095 of CIFAR's 50,000).
    assert k("--preset", "paper") == 0.0819


def test_study_bank_holds_at_most_one_key_per_training_image():
    from lightly_temperature.study.runner import build_module

    data = load_digits_data()
    images = len(data.train_views)
    assert images == 1438
    for asked, entries in ((5000, images), (1024, 1024)):
        config = StudyConfig(method="moco", losses=("hard_contrastive",), memory_bank_size=asked)
        module = build_module(config, config.runs()[0], data)
        assert tuple(module.criterion.memory_bank.size) == (entries, config.output_dim)


def test_moco_warns_when_its_bank_holds_more_keys_than_the_training_set(recwarn):
    import pytorch_lightning as pl
    from torch.utils.data import DataLoader, Subset

    from lightly_temperature import MoCo
    from lightly_temperature.data import digits_dataset
    from lightly_temperature.models.backbones import SmallCNN

    loader = DataLoader(Subset(digits_dataset(), range(64)), batch_size=16)

    def fit(entries: int) -> list[str]:
        model = MoCo(backbone=SmallCNN(), hidden_dim=32, output_dim=16, memory_bank_size=entries)
        trainer = pl.Trainer(
            max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False
        )
        recwarn.clear()
        trainer.fit(model, loader)
        return [str(w.message) for w in recwarn if "memory bank holds" in str(w.message)]

    (message,) = fit(256)
    assert "holds 256 keys but the training set has 64 samples" in message
    assert "memory_bank_size <= 64" in message
    assert fit(64) == []
