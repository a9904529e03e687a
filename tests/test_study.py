"""Study building blocks: the grid, resume keys, results file, augmentations, evaluation."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from lightly_temperature.data import DigitsAugment, DigitsViews
from lightly_temperature.functional import resolve_hard_negatives
from lightly_temperature.study.config import StudyConfig, paper_preset, parse_hard_negatives
from lightly_temperature.study.data import load_digits_data
from lightly_temperature.study.evaluate import knn_accuracy, linear_accuracy
from lightly_temperature.study.models import build_backbone
from lightly_temperature.study.results import COLUMNS, METRIC_COLUMNS, ResultsFile


def test_default_grid_is_contrastive_and_hard_at_the_papers_taus_plus_simple_losses():
    runs = StudyConfig().runs()
    taus = (0.07, 0.2, 0.3, 0.7, 1.0)  # the paper's Table 1
    per_seed = [
        *(("ntxent", tau, None) for tau in taus),
        ("simple", 1.0, None),
        *(("hard_contrastive", tau, 0.0819) for tau in taus),
        ("hard_simple", 1.0, 0.0819),
    ]
    # Three training seeds: the report's spread over them tells effects from noise.
    assert [(r.seed, r.loss, r.temperature, r.hard_negatives) for r in runs] == [
        (seed, *run) for seed in (0, 1, 2) for run in per_seed
    ]
    assert len({r.name for r in runs}) == len(runs)


def test_grid_and_modules_follow_the_losses_declared_capabilities():
    """A plugin declares its temperature a scale: the grid runs it once; K goes only where
    the loss takes it, and "none" reaches the loss as all negatives."""
    from lightly_temperature.losses import LossCapabilities, PairwiseLoss
    from lightly_temperature.registry import register_loss, unregister_loss
    from lightly_temperature.study.runner import build_module

    @register_loss("scaled_plugin")
    class ScaledPlugin(PairwiseLoss):
        capabilities = LossCapabilities(softmax_temperature=False, hard_negatives=False)

        def __init__(self, temperature=1.0, memory_bank_size=0, gather_distributed=False):
            from lightly_temperature.losses import LinearReduction

            super().__init__(LinearReduction(), None, temperature, memory_bank_size)

    try:
        config = StudyConfig(
            losses=("scaled_plugin", "hard_contrastive"), temperatures=(0.1, 1), seeds=(0,)
        )
        grid = [(r.loss, r.temperature, r.hard_negatives) for r in config.runs()]
        assert grid == [
            ("scaled_plugin", 1.0, None),
            ("hard_contrastive", 0.1, 0.0819),
            ("hard_contrastive", 1.0, 0.0819),
        ]
        assert config.runs()[0].temperature_label == "no τ"
        assert config.runs()[1].temperature_label == "τ = 0.1"
        data = load_digits_data()
        module = build_module(config, config.runs()[0], data)
        assert type(module.criterion) is ScaledPlugin
        all_negatives = StudyConfig(losses=("hard_contrastive",), hard_negatives=None)
        module = build_module(all_negatives, all_negatives.runs()[0], data)
        assert module.criterion.hard_negatives is None
    finally:
        unregister_loss("scaled_plugin")


def test_paper_preset():
    config = paper_preset(StudyConfig())
    assert (config.method, config.backbone, config.output_dim, config.batch_size) == (
        "npid",
        "resnet18",
        128,
        128,
    )
    assert (config.optimizer, config.lr, config.weight_decay, config.epochs) == (
        "sgd",
        0.03,
        5e-4,
        200,
    )
    assert config.lr_milestones == (160, 190)
    assert config.temperatures == (0.07, 0.3, 0.7, 1.0)
    assert config.losses == ("contrastive", "simple", "hard_contrastive", "hard_simple")
    # alpha = 0.0819: K = 4095 of CIFAR's 50,000 training images, as in the paper
    assert resolve_hard_negatives(config.hard_negatives, 50_000 - 1) == 4095
    digits = paper_preset(StudyConfig(), digits=True)
    assert (digits.method, digits.backbone) == ("npid", "small_cnn")
    backbone, dim = build_backbone("resnet18", 3)
    conv1 = backbone[0]
    assert dim == 512 and conv1.kernel_size == (3, 3) and conv1.stride == (1, 1)
    assert backbone(torch.zeros(2, 3, 32, 32)).flatten(start_dim=1).shape == (2, 512)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"temperatures": (0.5, 0.0)}, "temperature must be a finite float > 0, got 0.0"),
        ({"temperatures": (-1.0,)}, "temperature must be a finite float > 0, got -1.0"),
        ({"simple_temperature": 0}, "temperature must be a finite float > 0, got 0"),
        ({"method": "byol"}, "method must be one of simclr, moco, npid, got 'byol'"),
        ({"epochs": 0}, "epochs must be an int >= 1, got 0"),
        ({"epochs": 2.0}, "epochs must be an int >= 1, got 2.0"),
        ({"hard_negatives": 0}, "hard_negatives must be an int >= 1 .*, got 0"),
        ({"lr": 0.0}, "lr must be a finite float > 0, got 0.0"),
        ({"lr": float("nan")}, "lr must be a finite float > 0, got nan"),
        ({"lr": True}, "lr must be a finite float > 0, got True"),
        ({"knn_t": -0.1}, "knn_t must be a finite float > 0, got -0.1"),
        ({"weight_decay": -1.0}, "weight_decay must be a finite float >= 0, got -1.0"),
        ({"num_workers": -1}, "num_workers must be an int >= 0, got -1"),
        ({"batch_size": 1}, "batch_size must be an int >= 2, got 1"),
        ({"threads": 0}, "threads must be None or an int >= 1, got 0"),
        ({"max_eval_samples": 0}, "max_eval_samples must be None or an int >= 1, got 0"),
        ({"optimizer": "adam"}, "optimizer must be one of sgd, adamw, got 'adam'"),
        ({"backbone": "vit"}, "backbone must be one of small_cnn, resnet18, got 'vit'"),
        ({"memory_bank_size": -1}, "memory_bank_size must be an int >= 0, got -1"),
        ({"lr_milestones": (0,)}, r"lr_milestones must be ints >= 1, got \(0,\)"),
        ({"precision": "bogus"}, "precision must be one of .*bf16-mixed.*, got 'bogus'"),
        ({"precision": 8}, "precision must be one of"),
    ],
)
def test_config_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        StudyConfig(**kwargs)


@pytest.mark.parametrize(
    ("optimizer", "expected"), [("sgd", torch.optim.SGD), ("adamw", torch.optim.AdamW)]
)
def test_every_optimizer_the_study_accepts_is_built_by_its_module(optimizer, expected):
    from lightly_temperature.study.runner import build_module

    config = StudyConfig(optimizer=optimizer, lr=0.01, weight_decay=0.5)
    module = build_module(config, config.runs()[0], load_digits_data())
    built = module.configure_optimizers()["optimizer"]
    assert type(built) is expected
    assert (built.defaults["lr"], built.defaults["weight_decay"]) == (0.01, 0.5)


@pytest.mark.parametrize("precision", [None, 32, "32", "32-true", "16-mixed", "bf16-mixed"])
def test_config_accepts_the_precisions_the_study_evaluates_in(precision):
    assert StudyConfig(precision=precision).precision == precision


@pytest.mark.parametrize("precision", [64, "64", "64-true", "16-true", "bf16-true", True])
def test_config_refuses_precisions_its_evaluation_cannot_run(precision):
    with pytest.raises(ValueError, match=f"precision must be one of 32, .*, got {precision!r}"):
        StudyConfig(precision=precision)


def _settings(**changes):
    from lightly_temperature.study.settings import study_settings

    return study_settings(StudyConfig(**changes), load_digits_data())


def test_output_settings_written_once_atomically_and_checked(tmp_path):
    from lightly_temperature.study.settings import StudySettingsError, check_output_settings

    output = tmp_path / "out"
    settings = _settings()
    check_output_settings(output, settings, write=False)
    assert not output.exists()
    check_output_settings(output, settings)
    assert [p.name for p in output.iterdir()] == ["study.json"]  # no temporary left
    assert json.loads((output / "study.json").read_text()) == {"format": 1, "settings": settings}
    # The grid is not part of the settings: another grid resumes in the same folder.
    check_output_settings(
        output, _settings(temperatures=(0.5,), losses=("simple",), seeds=(3,), epochs=9)
    )
    with pytest.raises(StudySettingsError) as error:
        check_output_settings(output, _settings(batch_size=64, optimizer="sgd"))
    assert str(error.value) == (
        f"--output {output} holds runs trained with other settings (batch_size 256 there, "
        "64 now; optimizer adamw there, sgd now): use another --output, or the same settings "
        "to resume"
    )
    (output / "study.json").write_text("{")
    with pytest.raises(StudySettingsError, match="not a study settings file"):
        check_output_settings(output, settings)


def _finished_results(output, config):
    results = ResultsFile(output / "results.csv")
    for run in config.runs():
        row = {c: 0.5 for c in METRIC_COLUMNS}
        row.update(method=run.method, loss=run.loss, temperature=run.temperature)
        row.update(hard_negatives="", seed=run.seed, epochs=run.epochs)
        row.update(temperature_policy=run.temperature_policy)
        results.append(row)


def test_only_global_rank_zero_writes_the_report(tmp_path, monkeypatch):
    from pytorch_lightning.utilities import rank_zero_only

    from lightly_temperature.study.runner import run_study

    config = StudyConfig(output=str(tmp_path), losses=("ntxent",), temperatures=(0.5,), seeds=(0,))
    _finished_results(tmp_path, config)  # every run done: run_study trains nothing
    data = load_digits_data()
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    lines: list[str] = []
    assert run_study(config, data=data, printer=lines.append) == tmp_path / "report.md"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv"]
    assert lines == [
        "run 1 of 1: simclr Contrastive tau=0.5 seed=0 epochs=50: already in "
        f"{tmp_path / 'results.csv'}, skipped"
    ]
    monkeypatch.setattr(rank_zero_only, "rank", 0)
    assert run_study(config, data=data, printer=lines.append) == tmp_path / "report.md"
    assert "| **Contrastive** | kNN acc. (%) | 50.0 |" in (tmp_path / "report.md").read_text()
    assert (tmp_path / "study.json").exists()


def test_hard_negatives_text_round_trip():
    assert parse_hard_negatives("42") == 42
    assert parse_hard_negatives("0.0819") == 0.0819
    assert parse_hard_negatives("") is None and parse_hard_negatives("none") is None
    with pytest.raises(ValueError, match="hard_negatives"):
        parse_hard_negatives("many")


def test_results_file_appends_and_knows_finished_runs(tmp_path):
    from lightly_temperature.study.results import row_key

    results = ResultsFile(tmp_path / "results.csv")
    run = StudyConfig(temperatures=(0.3,), losses=("hard_contrastive",), epochs=7).runs()[0]
    assert results.finished_keys() == set()
    row = {c: 0.5 for c in METRIC_COLUMNS}
    row.update(method="simclr", loss="hard_contrastive", temperature=0.3, seed=0, epochs=7)
    row.update(hard_negatives="0.0819", temperature_policy="constant")
    results.append(row)
    results.append({**row, "temperature": 1.0})
    with (tmp_path / "results.csv").open() as file:
        assert next(csv.reader(file)) == list(COLUMNS)
    assert run.key in results.finished_keys()
    # One key function serves resuming and the report's row selection.
    assert [row_key(r) for r in results.rows()][0] == run.key
    assert results.finished_keys() == {row_key(r) for r in results.rows()}
    # Another epoch count or K is another run.
    other = StudyConfig(temperatures=(0.3,), losses=("hard_contrastive",), epochs=8).runs()[0]
    assert other.key not in results.finished_keys()
    other_k = StudyConfig(
        temperatures=(0.3,), losses=("hard_contrastive",), epochs=7, hard_negatives=16
    ).runs()[0]
    assert other_k.key not in results.finished_keys()
    with pytest.raises(ValueError, match="unknown results columns"):
        results.append({"accuracy": 1.0})


def test_results_file_rejects_a_foreign_csv(tmp_path):
    (tmp_path / "results.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not a study results file"):
        ResultsFile(tmp_path / "results.csv").rows()


def test_digits_data_is_the_package_pipeline_split_per_class():
    data = load_digits_data()
    assert len(data.train_plain) + len(data.test_plain) == 1797
    train_labels = torch.stack([y for _, y in data.train_plain])
    test_labels = torch.stack([y for _, y in data.test_plain])
    assert set(train_labels.tolist()) == set(test_labels.tolist()) == set(range(10))
    assert isinstance(data.train_views, DigitsViews) and data.train_views.views == 2
    assert isinstance(data.train_views.augments[0], DigitsAugment)
    (x0, x1), labels = next(iter(data.train_loader(batch_size=64, seed=0)))
    assert x0.shape == x1.shape == (64, 1, 8, 8) and labels.shape == (64,)
    assert not torch.equal(x0, x1)  # two different views
    (v0, v1), probe_labels = next(iter(data.probe_loader(batch_size=32)))
    assert v0.shape == (32, 1, 8, 8) and torch.equal(probe_labels, test_labels[:32])
    images, plain_labels = next(iter(data.plain_loader("test", batch_size=32)))
    assert torch.equal(images, data.test_views.images[:32]) and torch.equal(
        plain_labels, probe_labels
    )
    with pytest.raises(ValueError, match="split must be 'train' or 'test', got 'val'"):
        data.plain_loader("val", batch_size=32)


def test_knn_and_linear_accuracy_on_separable_features():
    generator = torch.Generator().manual_seed(0)
    centers = torch.randn(4, 16, generator=generator) * 5
    labels = torch.arange(4).repeat(50)
    features = centers[labels] + torch.randn(200, 16, generator=generator)
    assert knn_accuracy(features[:160], labels[:160], features[160:], labels[160:], 4) == 1.0
    assert linear_accuracy(features[:160], labels[:160], features[160:], labels[160:]) == 1.0
    # Labels carrying no information give about chance accuracy.
    shuffled = labels[torch.randperm(200, generator=generator)]
    assert knn_accuracy(features[:160], shuffled[:160], features[160:], shuffled[160:], 4) < 0.6


def test_report_flags_collapsed_runs(tmp_path):
    from lightly_temperature.study.report import write_report
    from lightly_temperature.study.results import COLUMNS

    def row(loss, tau, spread):
        values = {c: "0.5" for c in COLUMNS}
        values.update(method="simclr", loss=loss, temperature=str(tau), hard_negatives="")
        values.update(seed="0", epochs="2", embedding_spread=str(spread))
        return values

    rows = [row("ntxent", 0.1, 0.8), row("ntxent", 1.0, 0.05), row("simple", 1.0, 0.7)]
    text = write_report(rows, tmp_path, "digits, simclr").read_text()
    assert "## Collapse" in text
    collapse = text.split("## Collapse", 1)[1].split("##", 1)[0]
    assert "Contrastive at τ = 1 (0.050)" in collapse
    assert "τ = 0.1" not in collapse and "Simple" not in collapse
    healthy = write_report(rows[:1] + rows[2:], tmp_path / "healthy", "digits, simclr")
    assert "## Collapse" not in healthy.read_text()


def test_direction_summary_reads_the_package_s_contrastive_loss_too():
    from lightly_temperature.study.report import direction_summary

    agg = {
        ("contrastive", 0.07): {"uniformity": (2.85, 0.0), "tolerance": (0.56, 0.0)},
        ("contrastive", 1.0): {"uniformity": (2.38, 0.0), "tolerance": (0.78, 0.0)},
    }
    assert direction_summary(agg) == [
        "- Contrastive: from τ = 0.07 to τ = 1, uniformity 2.850 → 2.380 (falls; range "
        "2.380–2.850), tolerance 0.560 → 0.780 (rises)."
    ]
