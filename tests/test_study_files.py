"""The files a study writes and reads back survive damage and crashes: ``results.csv`` rows are
whole or absent and a malformed one is set aside and retrained, ``study.json`` binds a folder
only once a run finished, saved similarities load as tensors only, and the report covers every
comparable finished run of the folder."""

from __future__ import annotations

import pytest
import torch

from lightly_temperature.study.config import StudyConfig
from lightly_temperature.study.data import load_digits_data
from lightly_temperature.study.results import COLUMNS, METRIC_COLUMNS, REJECTED_FILE, ResultsFile
from tests.conftest import read_csv, run_python


def _row(**changes) -> dict[str, object]:
    row: dict[str, object] = {c: 0.5 for c in METRIC_COLUMNS}
    row.update(method="simclr", loss="ntxent", temperature=0.5, hard_negatives="", seed=0)
    row.update(epochs=1, temperature_policy="constant")
    row.update(changes)
    return row


def _lines(path) -> list[str]:
    return path.read_text().splitlines()


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda line: line[:-3], "cut short (no line end)"),  # a value cut: 0.5 → "0."
        (lambda line: line[:12], "cut short (no line end)"),  # inside the run key
        (lambda line: line[:-4] + "\n", f"fields, {len(COLUMNS)} expected"),
        (lambda line: line.replace("0.5", "0.9simclr", 1) + "\n", "could not convert"),
        (lambda line: line.replace("simclr", "byol") + "\n", "method 'byol'"),
        (lambda line: line + ",1\n", f"{len(COLUMNS) + 1} fields"),
    ],
)
def test_malformed_row_is_never_used_but_named_and_set_aside(tmp_path, damage, reason):
    results = ResultsFile(tmp_path / "results.csv")
    results.append(_row(temperature=0.1))
    results.append(_row(temperature=0.2))
    good, last = (tmp_path / "results.csv").read_text().rstrip("\n").rsplit("\n", 1)
    (tmp_path / "results.csv").write_text(good + "\n" + damage(last))
    assert [r["temperature"] for r in results.rows()] == ["0.1"]
    assert len(results.finished_keys()) == 1  # its run is trained again

    messages = results.set_aside_malformed()
    assert len(messages) == 1 and reason in messages[0]
    assert messages[0].startswith(f"{tmp_path / 'results.csv'} line 3 is malformed (")
    assert _lines(tmp_path / REJECTED_FILE) == [",".join(COLUMNS), damage(last).rstrip("\n")]
    assert _lines(tmp_path / "results.csv") == good.splitlines()
    assert results.set_aside_malformed() == []

    # The rerun appends its row to a whole file.
    results.append(_row(temperature=0.2, knn_accuracy=0.75))
    rows = read_csv(tmp_path / "results.csv")
    assert [(r["temperature"], r["knn_accuracy"]) for r in rows] == [
        ("0.1", "0.5"),
        ("0.2", "0.75"),
    ]


def test_append_after_a_cut_line_never_glues_onto_it(tmp_path):
    path = tmp_path / "results.csv"
    ResultsFile(path).append(_row(temperature=0.1))
    path.write_text(path.read_text() + "simclr,ntxent,0.2,,0,1,0.9")  # a writer died here
    ResultsFile(path).append(_row(temperature=0.3))
    assert [r["temperature"] for r in ResultsFile(path).rows()] == ["0.1", "0.3"]
    assert _lines(path)[2] == "simclr,ntxent,0.2,,0,1,0.9"


def test_append_replaces_the_file_whole(tmp_path, monkeypatch):
    """A crash while writing leaves the previous file, not a part of the new row."""
    import lightly_temperature.study.results as results_module

    path = tmp_path / "results.csv"
    ResultsFile(path).append(_row(temperature=0.1))
    before = path.read_text()

    def crash(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(results_module.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        ResultsFile(path).append(_row(temperature=0.2))
    assert path.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv"]  # no temporary left


def test_results_with_other_columns_are_refused_naming_the_file(tmp_path):
    (tmp_path / "results.csv").write_text(",".join(COLUMNS[:-1]) + "\n")
    with pytest.raises(ValueError, match="results.csv is not a study results file"):
        ResultsFile(tmp_path / "results.csv").check_columns()


def test_cli_retrains_the_run_of_a_cut_row_and_reports_its_own_numbers(tmp_path):
    output = tmp_path / "out"
    results = ResultsFile(output / "results.csv")
    results.append(_row(knn_accuracy=0.969359, linear_accuracy=0.987))
    text = (output / "results.csv").read_text()
    (output / "results.csv").write_text(text[: text.index("0.969359") + len("0.969359,0.9")])
    done = run_python(
        "-m", "lightly_temperature", "study", "--output", output, "--losses", "ntxent",
        "--temperatures", "0.5", "--epochs", "1", "--batch-size", "128", "--seeds", "0",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"warning: {output / 'results.csv'} line 2 is malformed (cut short" in done.stdout
    assert "run 1 of 1: simclr Contrastive tau=0.5 seed=0 epochs=1: training" in done.stdout
    # Into a pipe: one line per run, no progress bar (its carriage returns fill files).
    assert "\r" not in done.stdout + done.stderr and len(done.stdout.splitlines()) == 4
    (row,) = read_csv(output / "results.csv")
    assert float(row["linear_accuracy"]) > 0.9 and row["linear_accuracy"] != "0.9"
    report = (output / "report.md").read_text()
    assert f"| linear acc. (%) | {100 * float(row['linear_accuracy']):.1f} |" in report
    assert "nan" not in report
    assert (output / REJECTED_FILE).read_text().splitlines()[1].endswith("0.969359,0.9")


def _finish(output, config: StudyConfig, **changes) -> None:
    """Rows for every run of ``config``, as if trained."""
    results = ResultsFile(output / "results.csv")
    for run in config.runs():
        results.append(
            _row(loss=run.loss, temperature=run.temperature, seed=run.seed, epochs=run.epochs)
            | changes
        )


def test_a_crashed_first_run_does_not_bind_the_folder(tmp_path, monkeypatch):
    from lightly_temperature.study import runner
    from lightly_temperature.study.settings import SETTINGS_FILE, StudySettingsError

    def crash(*args, **kwargs):
        raise RuntimeError("the first run crashed")

    monkeypatch.setattr(runner, "build_module", crash)
    data = load_digits_data()
    config = StudyConfig(output=str(tmp_path), losses=("ntxent",), temperatures=(0.5,))
    with pytest.raises(RuntimeError, match="crashed"):
        runner.run_study(config, data=data, printer=lambda line: None)
    assert not (tmp_path / SETTINGS_FILE).exists()
    # The corrected command (here: another batch size) is accepted.
    corrected = StudyConfig(
        output=str(tmp_path), losses=("ntxent",), temperatures=(0.5,), batch_size=64
    )
    with pytest.raises(RuntimeError, match="crashed"):
        runner.run_study(corrected, data=data, printer=lambda line: None)

    # Once a run has finished, the folder keeps its settings.
    _finish(tmp_path, corrected)
    runner.run_study(corrected, data=data, printer=lambda line: None)
    assert (tmp_path / SETTINGS_FILE).exists()
    with pytest.raises(StudySettingsError, match="batch_size 64 there, 256 now"):
        runner.run_study(config, data=data, printer=lambda line: None)


def test_report_covers_every_comparable_finished_run_and_names_the_others(tmp_path):
    from lightly_temperature.study.runner import run_study

    one = {"losses": ("ntxent",), "seeds": (0,)}
    wide = StudyConfig(output=str(tmp_path), temperatures=(0.1, 0.5, 1.0), **one)
    _finish(tmp_path, wide, knn_accuracy=0.25)
    _finish(tmp_path, StudyConfig(temperatures=(0.5,), epochs=3, **one))
    narrow = StudyConfig(output=str(tmp_path), temperatures=(0.5,), **one)
    lines: list[str] = []
    report = run_study(narrow, data=load_digits_data(), printer=lines.append).read_text()
    assert "| loss | metric | τ = 0.1 | τ = 0.5 | τ = 1 |" in report
    assert "| **Contrastive** | kNN acc. (%) | 25.0 | 25.0 | 25.0 |" in report
    assert "1 more finished run(s) in results.csv used another method, number of epochs" in report


class _Exploit:
    def __reduce__(self):
        return (print, ("code ran while loading",))


def test_saved_similarities_load_as_tensors_only_and_a_damaged_file_is_left_out(tmp_path):
    from lightly_temperature.study.report import plot_similarity_grid

    good = tmp_path / "good.pt"
    torch.save({"positive": torch.rand(20), "negatives": torch.rand(20, 10)}, good)
    exploit, cut = tmp_path / "exploit.pt", tmp_path / "cut.pt"
    torch.save({"positive": _Exploit(), "negatives": torch.rand(2)}, exploit)
    cut.write_bytes(good.read_bytes()[:100])
    warnings: list[str] = []
    runs = [("A", "τ = 0.1", good), ("B", "τ = 0.2", exploit), ("C", "τ = 0.3", cut)]
    figure = plot_similarity_grid(runs, tmp_path / "grid.png", warn=warnings.append)
    assert figure == tmp_path / "grid.png" and figure.read_bytes()[:4] == b"\x89PNG"
    assert len(warnings) == 2
    for file, warning in zip((exploit, cut), warnings):
        assert warning.startswith(f"warning: {file} is not a run's saved similarities")
        assert warning.endswith(f"moved to {file}.rejected, left out of grid.png")
        assert not file.exists() and (tmp_path / f"{file.name}.rejected").exists()
    assert good.exists()


def test_similarity_grid_has_one_panel_per_loss_and_tau_whatever_the_seeds(tmp_path):
    from lightly_temperature.study.report import _one_run_per_setting

    files = {}
    for name in ("c_s0", "c_s1", "h_s0", "h_s1", "c2_s1"):
        files[name] = tmp_path / f"{name}.pt"
        files[name].write_bytes(b"")
    run_files = [
        ("c_s0", "ntxent", "τ = 0.3", files["c_s0"]),
        ("h_s0", "hard_contrastive", "τ = 0.3", files["h_s0"]),
        ("c_s1", "ntxent", "τ = 0.3", files["c_s1"]),
        ("h_s1", "hard_contrastive", "τ = 0.3", files["h_s1"]),
        ("c2_s0", "ntxent", "τ = 1", tmp_path / "missing.pt"),  # not evaluated: no panel
        ("c2_s1", "ntxent", "τ = 1", files["c2_s1"]),
    ]
    assert _one_run_per_setting(run_files) == [
        ("Contrastive", "τ = 0.3", files["c_s0"]),
        ("HardContrastive", "τ = 0.3", files["h_s0"]),
        ("Contrastive", "τ = 1", files["c2_s1"]),
    ]


def test_per_run_links_name_the_seed_when_there_are_several(tmp_path):
    from lightly_temperature.study.report import write_report

    rows, run_files = [], []
    for seed in (0, 1):
        name = f"simclr_ntxent_t0.5_s{seed}_e1"
        (tmp_path / "similarities").mkdir(exist_ok=True)
        (tmp_path / "similarities" / f"{name}.png").write_bytes(b"")
        rows.append({k: str(v) for k, v in _row(seed=seed).items()})
        run_files.append((name, "ntxent", "τ = 0.5", tmp_path / "similarities" / f"{name}.pt"))
    report = write_report(rows, tmp_path, "t", run_files=run_files).read_text()
    assert "- [Contrastive, τ = 0.5, seed 1](similarities/simclr_ntxent_t0.5_s1_e1.png)" in report
    one = write_report(rows[:1], tmp_path, "t", run_files=run_files[:1]).read_text()
    assert "- [Contrastive, τ = 0.5](similarities/simclr_ntxent_t0.5_s0_e1.png)" in one
