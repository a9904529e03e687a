"""`lightly-temperature study`: a tiny real study on digits, resume, and every bad input."""

from __future__ import annotations

import json
import math
import re

import pytest
import torch

from lightly_temperature.cli import main
from tests.conftest import read_csv, run_python

EXPECTED_COLUMNS = [
    "method",
    "loss",
    "temperature",
    "hard_negatives",
    "seed",
    "epochs",
    "temperature_policy",
    "knn_accuracy",
    "linear_accuracy",
    "uniformity",
    "alignment",
    "tolerance",
    "positive_similarity",
    "top10_negative_similarity",
    "false_negative_rate",
    "effective_negatives",
    "embedding_spread",
    "fewshot_accuracy_1",
    "fewshot_accuracy_1_draw_std",
    "fewshot_accuracy_10",
    "fewshot_accuracy_10_draw_std",
    "train_seconds",
]
TINY = ["--epochs", "2", "--batch-size", "128", "--seeds", "0", "--no-progress-bar"]


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    """Two temperatures x (contrastive, hard contrastive) on digits, 2 epochs each."""
    output = tmp_path_factory.mktemp("study")
    args = ["study", "--output", str(output), "--temperatures", "0.1", "1.0"]
    args += ["--losses", "ntxent", "hard_contrastive", "--hard-negatives", "16"] + TINY
    torch.manual_seed(0)
    status = main(args)
    return output, status


def test_tiny_study_writes_results_report_and_plots(tiny_study, capsys):
    output, status = tiny_study
    assert status == 0
    rows = read_csv(output / "results.csv")
    assert list(rows[0]) == EXPECTED_COLUMNS
    assert [(r["loss"], float(r["temperature"]), r["hard_negatives"]) for r in rows] == [
        ("ntxent", 0.1, ""),
        ("ntxent", 1.0, ""),
        ("hard_contrastive", 0.1, "16"),
        ("hard_contrastive", 1.0, "16"),
    ]
    for row in rows:
        assert row["method"] == "simclr" and row["seed"] == "0" and row["epochs"] == "2"
        values = {c: float(row[c]) for c in EXPECTED_COLUMNS[7:]}
        assert all(math.isfinite(v) for v in values.values()), row
        # Features without class information give about 0.1 (chance); the small CNN gets
        # 0.96-0.98 here, trained or not (measured), so this shows a sound evaluation.
        assert values["knn_accuracy"] > 0.9 and values["linear_accuracy"] > 0.9
        assert 0.0 < values["uniformity"] <= 4.1
        assert 0.0 <= values["alignment"] <= 4.0
        assert -1.0 <= values["tolerance"] <= 1.0
        assert -1.0 <= values["positive_similarity"] <= 1.0
        assert values["train_seconds"] > 0

    # The training shows in the paper's pattern, already after 2 epochs: the smaller tau, the
    # more uniform and the less tolerant (measured: uniformity 2.87 at tau = 0.1 vs 2.24 at
    # 1.0, tolerance 0.59 vs 0.72). Untrained weights, or a temperature that does not reach the
    # loss, give equal rows.
    contrastive = {float(r["temperature"]): r for r in rows if r["loss"] == "ntxent"}
    assert float(contrastive[0.1]["uniformity"]) > float(contrastive[1.0]["uniformity"]) + 0.3
    assert float(contrastive[0.1]["tolerance"]) < float(contrastive[1.0]["tolerance"]) - 0.05

    report = (output / "report.md").read_text()
    assert "| loss | metric | τ = 0.1 | τ = 1 |" in report
    assert "| **Contrastive** | kNN acc. (%) |" in report
    assert "| **HardContrastive** | kNN acc. (%) |" in report
    for metric in ("uniformity", "tolerance", "alignment", "linear acc. (%)"):
        assert f"| {metric} |" in report
    links = re.findall(r"\]\(([^)]+\.png)\)", report)
    assert {
        "accuracy_vs_temperature.png",
        "uniformity_vs_temperature.png",
        "tolerance_vs_temperature.png",
        "summary.png",
        "similarity_distributions.png",
    } <= set(links)
    per_run = [link for link in links if link.startswith("similarities/")]
    assert len(per_run) == 4
    for link in links:
        assert (output / link).read_bytes()[:4] == b"\x89PNG", link


def test_tensorboard_shows_every_run_with_its_evaluation(tiny_study):
    """``tensorboard --logdir <output>/logs``: one folder per run with the CSV log, the
    training scalars, the evaluation's numbers (those of results.csv) and its figure."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from lightly_temperature.study.config import RunSpec
    from lightly_temperature.study.config import parse_hard_negatives as parse_k

    output, _ = tiny_study
    rows = read_csv(output / "results.csv")
    assert len(rows) == 4
    folders = {path.name for path in (output / "logs").iterdir() if path.is_dir()}
    for row in rows:
        run = RunSpec(
            row["method"],
            row["loss"],
            float(row["temperature"]),
            parse_k(row["hard_negatives"]),
            int(row["seed"]),
            int(row["epochs"]),
        )
        assert run.name in folders
        folder = output / "logs" / run.name
        assert (folder / "metrics.csv").exists()
        events = EventAccumulator(str(folder), size_guidance={"images": 0}).Reload()
        tags = events.Tags()
        assert "train_loss" in tags["scalars"]
        assert tags["images"] == ["evaluation/similarities"]
        (knn,) = events.Scalars("evaluation/knn_accuracy")
        assert knn.value == pytest.approx(float(row["knn_accuracy"]), abs=1e-6)
        (uniformity,) = events.Scalars("evaluation/uniformity")
        assert uniformity.value == pytest.approx(float(row["uniformity"]), abs=1e-5)
        assert knn.step == events.Images("evaluation/similarities")[0].step > 0


def test_rerun_skips_finished_runs_and_adds_only_new_ones(tiny_study, capsys):
    output, _ = tiny_study
    before = (output / "results.csv").read_text()
    capsys.readouterr()
    args = ["study", "--output", str(output), "--temperatures", "0.1", "1.0"]
    args += ["--losses", "ntxent", "hard_contrastive", "--hard-negatives", "16"] + TINY
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.count("skipped") == 4
    assert "run 4 of 4" in out and "training" not in out
    assert (output / "results.csv").read_text() == before

    # A larger grid: the finished run is skipped, only the new temperature trains.
    args = ["study", "--output", str(output), "--temperatures", "0.1", "0.5"]
    args += ["--losses", "ntxent"] + TINY
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "run 1 of 2: simclr Contrastive tau=0.1 seed=0 epochs=2: already in" in out
    assert "run 2 of 2: simclr Contrastive tau=0.5 seed=0 epochs=2: training" in out
    rows = read_csv(output / "results.csv")
    assert len(rows) == 5 and before in (output / "results.csv").read_text()
    # The report covers every finished run comparable with the last command (same K) and
    # names the others.
    report = (output / "report.md").read_text()
    assert "| loss | metric | τ = 0.1 | τ = 0.5 | τ = 1 |" in report
    assert "HardContrastive" not in report.split("## Metrics")[0]
    assert "2 more finished run(s) in results.csv used another method" in report


def test_rerun_with_other_settings_is_refused(tiny_study, capsys):
    output, _ = tiny_study
    before = (output / "results.csv").read_text()
    capsys.readouterr()
    args = ["study", "--output", str(output), "--temperatures", "0.1", "1.0"]
    args += ["--losses", "ntxent", "--lr", "0.01", "--weight-decay", "0"] + TINY
    assert main(args) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in captured.err + captured.out
    assert err.startswith(f"lightly-temperature study: error: --output {output} holds runs")
    assert "lr 0.002 there, 0.01 now; weight_decay 1e-05 there, 0.0 now" in err
    assert "batch_size" not in err and "use another --output" in err
    assert "training" not in captured.out and "skipped" not in captured.out
    assert (output / "results.csv").read_text() == before
    settings = json.loads((output / "study.json").read_text())["settings"]
    assert (settings["data"], settings["batch_size"], settings["lr"]) == ("digits", 128, 0.002)
    assert "temperatures" not in settings and "losses" not in settings


def test_image_folder_data(tmp_path, capsys):
    from PIL import Image

    generator = torch.Generator().manual_seed(0)
    for label, color in (("circles", 220), ("dark", 30)):
        folder = tmp_path / "images" / label
        folder.mkdir(parents=True)
        for i in range(10):
            pixels = (torch.rand(12, 12, 3, generator=generator) * 40 + color).clamp(0, 255)
            Image.fromarray(pixels.to(torch.uint8).numpy()).save(folder / f"{i}.png")
    output = tmp_path / "out"
    args = ["study", "--data", str(tmp_path / "images"), "--output", str(output)]
    args += ["--image-size", "8", "--temperatures", "0.5", "--losses", "hard_contrastive"]
    args += ["--epochs", "1", "--batch-size", "4", "--seeds", "0", "--no-progress-bar"]
    args += ["--fewshot", "1", "8"]
    assert main(args) == 0
    rows = read_csv(output / "results.csv")
    assert len(rows) == 1 and rows[0]["loss"] == "hard_contrastive"
    # 8 labels per class: every train image labelled, the same for every draw.
    assert float(rows[0]["fewshot_accuracy_8_draw_std"]) == 0.0
    assert "data: images (" in (output / "report.md").read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["study", "--data", "{tmp}/missing"], "--data {tmp}/missing: no such folder"),
        (["study", "--data", "{tmp}/empty"], "--data {tmp}/empty: empty folder"),
        (["study", "--data", "{tmp}/nosamples"], "--data {tmp}/nosamples: empty folder"),
        (
            ["study", "--losses", "ntxent", "focal"],
            "unknown loss 'focal', known: contrastive, dcl, dclw",
        ),
        (
            ["study", "--method", "moco", "--losses", "hcl", "dcl"],
            "loss 'dcl' takes no memory bank, so it cannot train the MoCo method",
        ),
        (
            ["study", "--method", "npid", "--losses", "hard_contrastive", "ntxent"],
            "loss 'ntxent' takes no memory bank indexed by sample, so it cannot train the NPID "
            "method (use 'contrastive', the same loss)",
        ),
        (["study", "--dataset", "imagenet", "--data-dir", "{tmp}"], "--dataset imagenet: unknown"),
        (["study", "--dataset", "cifar10"], "--dataset cifar10 needs --data-dir PATH"),
        (["study", "--dataset", "cifar10", "--data-dir", "{tmp}/missing"], "no such folder"),
        (["study", "--dataset", "svhn", "--data-dir", "{tmp}/empty"], "no svhn files there"),
        (
            ["study", "--temperatures", "0.5", "0"],
            "temperature must be a finite float > 0, got 0.0",
        ),
        (["study", "--temperatures", "-0.1"], "temperature must be a finite float > 0, got -0.1"),
        (["study", "--temperatures", "nan"], "temperature must be a finite float > 0, got nan"),
        (["study", "--hard-negatives", "0"], "hard_negatives must be an int >= 1"),
        (["study", "--hard-negatives", "many"], "hard_negatives must be an int K >= 1"),
        (["study", "--epochs", "0"], "epochs must be an int >= 1, got 0"),
        (["study", "--epochs", "1.5"], "argument --epochs: invalid int value: '1.5'"),
        (["study", "--image-size", "0"], "image_size must be an int >= 1, got 0"),
        (["study", "--threads", "0"], "threads must be None or an int >= 1, got 0"),
        (["study", "--lr", "0"], "lr must be a finite float > 0, got 0.0"),
        (["study", "--weight-decay", "-1"], "weight_decay must be a finite float >= 0, got -1.0"),
        (["study", "--num-workers", "-1"], "num_workers must be an int >= 0, got -1"),
        (["study", "--batch-size", "1"], "batch_size must be an int >= 2, got 1"),
        (["study", "--optimizer", "adam"], "argument --optimizer: invalid choice: 'adam'"),
        (["study", "--precision", "bogus"], "precision must be one of 32, 32-true, 16-mixed"),
        (["study", "--precision", "64"], "(the study evaluates in float32 or mixed precision)"),
        (["study", "--seeds", "0", "-1"], "seeds must be ints >= 0, got (0, -1)"),
        (["study", "--fewshot", "0"], "fewshot must be ints >= 1, got (0,)"),
        (["study", "--fewshot", "1", "1"], "fewshot must not repeat a label count, got (1, 1)"),
        (["study", "--fewshot", "1", "140"], "--fewshot 1 140: class 8 of the train split has 139"),
        (["study", "--data", "{tmp}/oneclass"], "found 1 class subfolder (a), need at least 2"),
        (
            ["study", "--data", "{tmp}/damaged"],
            "--data {tmp}/damaged: cannot read image {tmp}/damaged/b/cut.png (",
        ),
        (["study", "--output", "{tmp}/file"], "--output {tmp}/file: {tmp}/file is a file"),
        (
            ["study", "--output", "{tmp}/file/below"],
            "--output {tmp}/file/below: cannot write to {tmp}/file/below (Not a directory)",
        ),
        (["study", "--output", "/proc/self/study"], "--output /proc/self/study: cannot write"),
        (
            ["study", "--output", "{tmp}/foreign"],
            "{tmp}/foreign/results.csv is not a study results file of this version: its "
            "columns are a,b, expected method,loss,",
        ),
        (["study", "--accelerator", "bogus"], "--accelerator bogus --devices auto: You selected"),
        pytest.param(
            ["study", "--accelerator", "gpu"],
            "--accelerator gpu --devices auto: No supported gpu backend found!",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is there"),
        ),
        (["study", "--devices", "0"], "--accelerator auto --devices 0: `Trainer(devices=0)`"),
        (["study", "--devices", "abc"], "--accelerator auto --devices abc: `devices` selected"),
        (["explain", "--temperatures", "0"], "temperature must be a finite float > 0, got 0.0"),
        (["explain", "--hard-negatives", "0"], "hard_negatives must be an int >= 1 (K), got 0"),
        (["explain", "--hard-negatives", "1.5"], "a fraction alpha in (0, 1], got 1.5"),
        (["explain", "--plot", "{tmp}/empty"], "--plot {tmp}/empty: a folder; give a file name"),
        (["explain", "--plot", "/proc/self/x.png"], "--plot /proc/self/x.png: cannot write"),
        (["explain", "--plot", "{tmp}/x.v2"], "unknown image format '.v2', use one of "),
        (["explain", "--similarities", "0.5"], "at least one negative"),
        (
            ["study", "--temperature-policy", "cosine", "--temperatures", "0.01"],
            "temperature 0.01 must be in (policy_tau_min, policy_tau_max] = (0.05, 2]",
        ),
        (["study", "--temperature-policy", "warm"], "invalid choice: 'warm'"),
        (
            ["study", "--temperature-policy", "learnable", "--policy-tau-min", "0.5"]
            + ["--policy-tau-max", "0.5"],
            "policy_tau_min must be < policy_tau_max, got 0.5 >= 0.5",
        ),
        (
            ["study", "--temperature-policy", "adaptive", "--losses", "macl"],
            "loss 'macl' takes a number as its temperature, not a policy",
        ),
        (
            ["study", "--temperature-policy", "individual", "--losses", "dcl"],
            "loss 'dcl' takes no per-sample temperature: drop 'individual' from",
        ),
        (["study", "--adaptive-alpha", "1"], "adaptive_alpha must be in [0, 1), got 1.0"),
        (["study", "--cosine-period", "0"], "cosine_period must be None or an int >= 1, got 0"),
        (["study", "--individual-lr", "-1"], "individual_lr must be a finite float >= 0"),
        (["nonsense"], "invalid choice: 'nonsense'"),
    ],
)
def test_bad_input_exits_nonzero_with_one_line(tmp_path, capsys, monkeypatch, args, message):
    from lightly_temperature.study import runner

    def no_training(*args, **kwargs):
        raise AssertionError("bad input reached training")

    monkeypatch.setattr(runner, "run_study", no_training)
    # The default --output is relative: run where nothing is (a study_output/ left in the
    # working folder by the README's main command must not change the outcome).
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "nosamples" / "a").mkdir(parents=True)
    (tmp_path / "file").write_text("")
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "results.csv").write_text("a,b\n1,2\n")
    _image_folder(tmp_path / "oneclass", classes=("a",))
    _image_folder(tmp_path / "damaged", classes=("a", "b"))
    png = (tmp_path / "damaged" / "b" / "0.png").read_bytes()
    (tmp_path / "damaged" / "b" / "cut.png").write_bytes(png[: len(png) // 2])
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    try:
        status = main(args)
    except SystemExit as exit:  # argparse errors
        status = exit.code
    assert status == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1, err
    assert message.replace("{tmp}", str(tmp_path)) in err
    assert err.startswith("lightly-temperature")
    assert "Traceback" not in captured.err + captured.out
    assert not (tmp_path / "study_output").exists()  # nothing written for bad input
    assert not list(tmp_path.glob("*.png"))


def _image_folder(root, classes, images=4) -> None:
    from PIL import Image

    for index, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(images):
            Image.new("RGB", (8, 8), (40 * i, 100 * index, 0)).save(root / name / f"{i}.png")


def test_python_dash_m_reports_bad_input_without_traceback(tmp_path):
    done = run_python(
        "-m", "lightly_temperature", "study", "--data", tmp_path / "nowhere", cwd=tmp_path
    )
    assert done.returncode == 2
    assert (
        done.stderr.strip()
        == f"lightly-temperature study: error: --data {tmp_path}/nowhere: no such folder"
    )


def test_npid_method_trains_over_the_memory_bank_indexed_by_sample(tmp_path):
    output = tmp_path / "npid"
    args = ["study", "--method", "npid", "--output", str(output), "--temperatures", "0.2"]
    args += ["--losses", "contrastive", "hard_simple", "--hard-negatives", "16"] + TINY
    assert main(args) == 0
    rows = read_csv(output / "results.csv")
    assert [(r["method"], r["loss"], r["hard_negatives"]) for r in rows] == [
        ("npid", "contrastive", ""),
        ("npid", "hard_simple", "16"),
    ]
    assert all(math.isfinite(float(r["uniformity"])) for r in rows)


def test_npid_default_grid_uses_the_package_s_contrastive_loss():
    from lightly_temperature.study.config import StudyConfig

    assert StudyConfig(method="npid").losses[0] == "contrastive"
    assert StudyConfig(method="moco").losses[0] == "ntxent"


def test_moco_method_trains_with_a_memory_bank(tmp_path, capsys):
    output = tmp_path / "moco"
    args = ["study", "--method", "moco", "--output", str(output), "--temperatures", "0.2"]
    args += ["--losses", "hard_contrastive", "--hard-negatives", "64"] + TINY
    assert main(args) == 0
    rows = read_csv(output / "results.csv")
    assert [(r["method"], r["loss"], r["hard_negatives"]) for r in rows] == [
        ("moco", "hard_contrastive", "64")
    ]
    assert math.isfinite(float(rows[0]["uniformity"]))


def test_paper_preset_and_overrides():
    from lightly_temperature.cli import _study_config, build_parser

    args = build_parser().parse_args(
        ["study", "--preset", "paper", "--epochs", "3", "--accelerator", "gpu", "--devices", "2"]
    )
    config = _study_config(args)
    # On the embedded digits: the small CNN stays; K = alpha x samples
    assert (config.backbone, config.batch_size, config.lr, config.hard_negatives) == (
        "small_cnn",
        128,
        0.03,
        0.0819,
    )
    assert (config.output_dim, config.method, config.optimizer) == (128, "npid", "sgd")
    on_cifar = _study_config(
        build_parser().parse_args(
            ["study", "--preset", "paper", "--dataset", "cifar10", "--data-dir", "/data"]
        )
    )
    assert (on_cifar.backbone, on_cifar.method) == ("resnet18", "npid")
    assert config.epochs == 3  # an explicit option wins over the preset
    assert (config.accelerator, config.devices, config.precision) == ("gpu", 2, None)
    default = _study_config(build_parser().parse_args(["study"]))
    assert (default.output, default.backbone, default.epochs) == ("study_output", "small_cnn", 50)
    assert default.hard_negatives == 0.0819
    for text, value in (("16", 16), ("0.25", 0.25), ("none", None)):
        args = build_parser().parse_args(["study", "--hard-negatives", text])
        assert _study_config(args).hard_negatives == value, text
