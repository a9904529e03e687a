"""The study's analysis metrics are TemperatureAnalysis's: a real one-run study on digits,
watched by TemperatureAnalysis callbacks given the study's probes."""

from __future__ import annotations

import csv

import pytest
import torch

from lightly_temperature import TemperatureAnalysis, uniformity
from lightly_temperature.figures import save_similarity_figure
from lightly_temperature.study import StudyConfig, run_study, runner
from lightly_temperature.study.data import load_digits_data

PLAIN = ("uniformity", "tolerance")  # measured on the plain test images
VIEWS = ("alignment", "positive_similarity", "top10_negative_similarity")  # on two views
# The observatory: logged name -> results.csv column
OBSERVATORY = {
    "top10_false_negative_rate": "false_negative_rate",  # plain test images
    "effective_negatives": "effective_negatives",  # two views, at the loss's temperature
}
REPORT_LABELS = {
    "uniformity": "uniformity",
    "tolerance": "tolerance",
    "alignment": "alignment",
    "positive_similarity": "positive sim.",
    "top10_negative_similarity": "top-10 neg. sim.",
    "false_negative_rate": "top-10 false-neg. rate",
    "effective_negatives": "effective negatives",
}


def _rows(path):
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


@pytest.fixture(scope="module")
def watched_study(tmp_path_factory):
    """One SimCLR run of 2 epochs, its trainer also holding two TemperatureAnalysis callbacks
    on the study's two probes (plain test images; two augmented views of them)."""
    output = tmp_path_factory.mktemp("study")
    data = load_digits_data()
    config = StudyConfig(
        output=str(output),
        losses=("ntxent",),
        temperatures=(0.3,),
        seeds=(3,),
        epochs=2,
        progress_bar=False,
    )
    modules = []
    build_module, build_trainer = runner.build_module, runner.build_trainer

    def watched_module(config, run, data):
        modules.append(build_module(config, run, data))
        return modules[-1]

    def watched_trainer(config, run, output, callbacks=None):
        common = dict(every_n_epochs=run.epochs, max_samples=None, seed=run.seed)
        common.update(save_figures=False, save_csv=False)
        plain = TemperatureAnalysis(
            data.plain_loader("test", 512),
            metrics=(*PLAIN, "false_negatives"),
            few_shot=config.few_shot,  # labelled train images, the test images as queries
            few_shot_dataloader=data.plain_loader("train", 512),
            **common,
        )
        views = TemperatureAnalysis(
            data.probe_loader(512),
            metrics=("alignment", "similarities", "effective_negatives"),
            **common,
        )
        return build_trainer(config, run, output, [plain, views])

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(runner, "build_module", watched_module)
        patch.setattr(runner, "build_trainer", watched_trainer)
        torch.manual_seed(0)
        run_study(config, data=data, printer=lambda line: None)
    (run,) = config.runs()
    logged = [
        row
        for row in _rows(output / "logs" / run.name / "metrics.csv")
        if row.get("temperature_analysis/uniformity")
    ]
    return output, data, modules[0], logged, run


def test_results_and_report_hold_the_values_temperature_analysis_logs(watched_study):
    output, _, _, logged, _ = watched_study
    (logged_row,) = logged  # one evaluation: at the end of the run's last epoch
    (result,) = _rows(output / "results.csv")
    report = (output / "report.md").read_text()
    columns = {name: name for name in PLAIN + VIEWS} | OBSERVATORY
    for name, column in columns.items():
        value = float(logged_row[f"temperature_analysis/{name}"])
        # results.csv keeps 6 significant digits, report.md 3 decimals: of the same float.
        assert result[column] == f"{value:.6g}", name
        assert f"| {REPORT_LABELS[column]} | {value:.3f} |" in report, name
    for shots in (1, 10):  # the study's default label counts
        for name in (f"fewshot_accuracy_{shots}", f"fewshot_accuracy_{shots}_draw_std"):
            # Logged as float32 by pl_module.log; results.csv keeps 6 significant digits.
            value = float(logged_row[f"temperature_analysis/{name}"])
            assert float(result[name]) == pytest.approx(value, rel=1e-5), name
        accuracy = float(logged_row[f"temperature_analysis/fewshot_accuracy_{shots}"])
        assert f"| {shots}-shot acc. (%) | {100 * accuracy:.1f} |" in report


def test_uniformity_and_tolerance_are_of_the_plain_test_images(watched_study):
    # The study's definition (docs/study.md): uniformity of the embeddings of the plain
    # (un-augmented) test images, not of an augmented view.
    output, data, module, _, _ = watched_study
    images, _ = next(iter(data.plain_loader("test", batch_size=len(data.test_plain))))
    module.eval()
    with torch.no_grad():
        z = module.projection_head(module.backbone(images).flatten(start_dim=1))
    (result,) = _rows(output / "results.csv")
    assert float(result["uniformity"]) == pytest.approx(uniformity(z).item(), rel=1e-5)


def test_per_run_figure_is_the_callbacks_renderer(watched_study, tmp_path):
    # The study's PNG of a run is TemperatureAnalysis' figure of the run's similarities.
    output, _, _, _, run = watched_study
    saved = torch.load(output / "similarities" / f"{run.name}.pt")
    assert saved["positive"].shape == (359,) and saved["negatives"].shape == (359, 10)
    title = "simclr Contrastive, τ = 0.3, seed 3"
    save_similarity_figure(
        tmp_path / "callback.png", saved["positive"], saved["negatives"], title, 10
    )
    study_png = (output / "similarities" / f"{run.name}.png").read_bytes()
    assert study_png == (tmp_path / "callback.png").read_bytes()
