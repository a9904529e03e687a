"""The benchmark scripts run end to end in their --quick mode (no timing is asserted).

The scripts are run in this process (their ``main(argv)``): a subprocess would spend most of
the test importing torch and Lightly again.
"""

from __future__ import annotations

import contextlib

import pytest
import torch

from tests.conftest import ROOT, load_script

BENCHMARKS = ROOT / "benchmarks"


@pytest.fixture
def run_quick(capsys):
    docs = ROOT / "docs" / "benchmarks.md"
    before = docs.read_text() if docs.exists() else None
    threads = torch.get_num_threads()

    def run(name: str, *args: str) -> str:
        try:
            argv = ["--quick", "--threads", "1", *args]
            assert load_script(BENCHMARKS / f"{name}.py").main(argv) == 0
        finally:
            torch.set_num_threads(threads)
        return capsys.readouterr().out

    yield run
    after = docs.read_text() if docs.exists() else None
    assert after == before, "a benchmark wrote into docs/benchmarks.md without --output"


def test_bench_losses_quick_prints_table_and_verdicts(run_quick):
    out = run_quick("bench_losses")
    assert "| setting | loss |" in out
    for name in ("NTXentLoss", "HardContrastive(None)", "HardSimple", "Simple", "floor", "HCL("):
        assert name in out
    # SimCLR: 2 + HCL + debiased times, memory; MoCo: 1 + HCL + debiased times, memory;
    # each: a constant and a per-sample temperature policy against the same loss with a number
    assert out.count("(target <=") == 13
    assert out.count("the same loss with a number") == 4


def test_bench_losses_runs_the_simclr_batches_asked_for(run_quick):
    out = run_quick("bench_losses", "--only", "simclr", "--batches", "24", "40")
    rows = [line for line in out.splitlines() if line.startswith("| SimCLR N=")]
    settings = {row.split(" | ")[0].lstrip("| ") for row in rows}
    assert settings == {"SimCLR N=24", "SimCLR N=40"}


def test_bench_losses_rejects_a_batch_below_two(capsys):
    with pytest.raises(SystemExit) as exit_info:
        load_script(BENCHMARKS / "bench_losses.py").main(["--batches", "64", "1"])
    assert exit_info.value.code == 2
    assert "--batches must be >= 2, got 1" in capsys.readouterr().err


def test_bench_memory_quick_measures_each_loss_in_a_fresh_process(run_quick):
    out = run_quick("bench_memory")
    assert "| setting | loss | peak RSS MiB (median) |" in out
    rows = [line for line in out.splitlines() if line.startswith("| ") and "N=" in line]
    assert len(rows) == 2 * 3  # SimCLR and MoCo; NTXent, all negatives, top K
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert float(cells[2]) >= 0 and float(cells[4]) > 0
        if cells[1] == "NTXentLoss":
            assert cells[5] == "1.00"
    # the MoCo step's bank-sized logits are resident: the RSS sees them
    moco_reference = next(r for r in rows if r.startswith("| MoCo") and "NTXentLoss" in r)
    assert float(moco_reference.split("|")[3]) > 0
    assert out.count("(target <= 0.70x by both)") == 4
    assert "lower bounds" not in out  # the peak RSS was reset before each step


def test_bench_metrics_quick_checks_exactness(run_quick):
    out = run_quick("bench_metrics")
    for name in ("floor", "uniformity_loss", "tolerance", "top-10 negatives"):
        assert name in out
    diffs = [float(line.rsplit(" ", 1)[1]) for line in out.splitlines() if "|diff|" in line]
    assert len(diffs) == 3 and max(diffs) < 1e-4  # the metrics equal the naive references


def test_bench_callbacks_quick_trains_with_each_configuration(run_quick):
    out = run_quick("bench_callbacks")
    for config in ("no callback", "TemperatureAnalysis", "HardnessMonitor", "both"):
        assert f"| {config} |" in out
    assert out.count("(target <= +3 %)") == 3


def test_results_go_to_the_output_file_only(run_quick, tmp_path):
    output = tmp_path / "results" / "bench.md"
    out = run_quick("bench_metrics", "--output", str(output))
    text = output.read_text()
    assert text.startswith("# Benchmarks\n")
    assert text.count("\n## Metrics: time and memory against the floor (") == 1
    assert "- Machine: CPU " in text and "- Command: `python " in text
    # the printed table is the one written
    table = [line for line in out.splitlines() if line.startswith("| N=500 |")]
    assert len(table) == 4 and all(line in text for line in table)
    run_quick("bench_metrics", "--output", str(output))
    assert output.read_text().count("\n## Metrics: time and memory against the floor (") == 2


def test_gpu_check_dry_run_guards_the_loss_and_monitor_paths(tmp_path, monkeypatch, capsys):
    """The GPU check on the CPU at toy sizes: every part runs, the loss's calls and backwards
    enter the guarded region, and the monitor's observation happens inside it."""
    from lightly_temperature.callbacks import hardness_monitor

    docs = ROOT / "docs" / "benchmarks.md"
    before = docs.read_text()
    script = load_script(BENCHMARKS / "gpu_check.py")
    state = {"inside": False, "regions": 0, "observed_inside": 0, "observed_outside": 0}
    real_region = script.sync_errors

    @contextlib.contextmanager
    def recording_region(device):
        with real_region(device):
            state["inside"], state["regions"] = True, state["regions"] + 1
            try:
                yield
            finally:
                state["inside"] = False

    observe = hardness_monitor.observe_similarities

    def recording_observe(*args, **kwargs):
        state["observed_inside" if state["inside"] else "observed_outside"] += 1
        return observe(*args, **kwargs)

    monkeypatch.setattr(script, "sync_errors", recording_region)
    monkeypatch.setattr(hardness_monitor, "observe_similarities", recording_observe)
    output = tmp_path / "gpu.md"
    assert script.main(["--dry-run", "--output", str(output), "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    steps = script.DRY.steps
    assert state["regions"] == 2 * 2 * steps  # two modules, a loss call and a backward per step
    assert state["observed_inside"] == 2 * (steps // script.DRY.log_every)
    assert state["observed_outside"] == 0
    report = output.read_text()
    assert report in out and "Dry run" in report
    for module in ("SimCLR", "MoCo"):
        row = next(line for line in report.splitlines() if line.startswith(f"| {module} |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[1] == str(steps) and cells[2] == f"{steps} / {steps}"
        assert int(cells[3]) == steps // script.DRY.log_every and int(cells[4]) >= 1
    for name in ("NTXentLoss", "HardContrastive(None)", "HardContrastive(K=", "top-10 negatives"):
        assert name in report
    assert docs.read_text() == before


def test_gpu_check_training_takes_no_host_synchronisation_on_the_device_paths(
    tmp_path, monkeypatch
):
    """The GPU check's training, on the package's device paths (for CPU tensors), records no
    operation in its guarded regions that would synchronise with a CUDA device."""
    from tests._host_sync import HostSyncRecorder, run_device_paths_on_cpu

    run_device_paths_on_cpu(monkeypatch)
    script = load_script(BENCHMARKS / "gpu_check.py")
    recorder = HostSyncRecorder()
    regions = []

    @contextlib.contextmanager
    def recording_region(device):
        regions.append(device)
        with recorder:
            yield

    monkeypatch.setattr(script, "sync_errors", recording_region)
    rows = script.train_part(torch.device("cpu"), script.DRY, tmp_path)
    assert [row[0] for row in rows] == ["SimCLR", "MoCo"]
    assert all(not row[1].startswith("FAILED") for row in rows), rows
    assert len(regions) == 2 * 2 * script.DRY.steps and recorder.found == []


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_check_guard_raises_on_a_synchronisation():
    script = load_script(BENCHMARKS / "gpu_check.py")
    assert script.guard_is_effective(torch.device("cuda"))


def test_gpu_check_reports_a_synchronisation_in_a_guarded_region(tmp_path, monkeypatch, capsys):
    """A synchronisation inside the guard (simulated: the CPU has no sync-debug mode) makes the
    check fail with the module named, after the other parts still ran."""
    script = load_script(BENCHMARKS / "gpu_check.py")
    calls = {"n": 0}

    @contextlib.contextmanager
    def failing_region(device):
        calls["n"] += 1
        if calls["n"] == 3:  # the second step's loss call of the first module
            raise RuntimeError("called a synchronizing CUDA operation")
        yield

    monkeypatch.setattr(script, "sync_errors", failing_region)
    assert script.main(["--dry-run", "--root", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "| SimCLR | FAILED at step 1: called a synchronizing CUDA operation |" in out
    assert "FAILED: training of SimCLR" in out
    assert "| MoCo | 4 | 4 / 4 |" in out and "top-10 negatives" in out


def test_gpu_check_compares_the_losses_its_table_names():
    """The rows of part (b) are NTXentLoss, the loss over all negatives and over the top K."""
    from lightly.loss import NTXentLoss

    from lightly_temperature.losses import AllNegatives, TopKNegatives

    script = load_script(BENCHMARKS / "gpu_check.py")
    for bank in (0, 256):
        losses = script.compared_losses(bank, 16, 15)
        assert list(losses) == [script.REFERENCE, script.PLAIN, script.HARD]
        assert isinstance(losses[script.REFERENCE], NTXentLoss)
        assert isinstance(losses[script.PLAIN].selection, AllNegatives)
        hard = losses[script.HARD].selection
        assert isinstance(hard, TopKNegatives) and hard.num_selected(255) == 15
        assert losses[script.PLAIN].uses_memory_bank == bool(bank)


def test_gpu_check_runs_only_the_parts_asked_for(tmp_path, capsys):
    script = load_script(BENCHMARKS / "gpu_check.py")
    assert script.main(["--dry-run", "--parts", "c", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| N=300 | top-10 negatives |" in out and "| SimCLR | 4 |" not in out
    with pytest.raises(SystemExit) as error:
        script.main(["--dry-run", "--parts", "x"])
    assert error.value.code == 2


def test_profile_losses_quick_profiles_each_loss(tmp_path, capsys):
    threads = torch.get_num_threads()
    try:
        script = load_script(BENCHMARKS / "profile_losses.py")
        argv = ["--device", "cpu", "--quick", "--rows", "3", "--only", "MoCo"]
        assert script.main([*argv, "--trace", str(tmp_path)]) == 0
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    headers = [line for line in out.splitlines() if line.startswith("## ")]
    assert headers == [
        "## MoCo N=16 bank=512: NTXentLoss",
        "## MoCo N=16 bank=512: HardContrastive(None)",
        "## MoCo N=16 bank=512: HardContrastive(K=40)",
    ]
    assert out.count("ms/step") == 3 and "aten::mm" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"MoCo_16_{i}.json" for i in range(3)]


def test_gpu_check_exactness_fails_rows_beyond_the_tolerance(monkeypatch, capsys):
    """Part (d) compares with float64 formulas: with a tolerance below float32's rounding, the
    rows that have one fail (the CPU against itself stays exact), and so does the run."""
    script = load_script(BENCHMARKS / "gpu_check.py")
    monkeypatch.setattr(script, "EXACT_TOLERANCE", 1e-12)
    rows = script.exact_part(torch.device("cpu"), script.DRY)
    status = {(row[0], row[1]): row[-1] for row in rows}
    assert status[("SimCLR", "HardContrastive(None)")] == "FAILED"
    assert status[("MoCo", "HardContrastive(K=63)")] == "FAILED"
    assert status[("SimCLR", "HCL")] == "ok"  # no float64 formula here; the CPU path is exact
    assert status[("SimCLR", "NTXentLoss")] == "Lightly's, for comparison"
    assert status[("metrics N=80", "uniformity_loss")] == "FAILED"
    capsys.readouterr()
    assert script.main(["--dry-run", "--parts", "d"]) == 1
    assert "FAILED: values on the device off their references: SimCLR HardContrastive(None)" in (
        capsys.readouterr().out
    )


def test_step_pieces_dry_run_times_every_piece(tmp_path, capsys):
    script = load_script(BENCHMARKS / "step_pieces.py")
    output = tmp_path / "pieces.md"
    assert script.main(["--dry-run", "--output", str(output)]) == 0
    text = output.read_text()
    assert text == capsys.readouterr().out
    assert "| piece | A = 32 | A = 64 |" in text
    for piece in (
        "| backward, two products: `E Z` and `Eᵀ Z` |",
        "| `topk` of K = 15 |",
        "| HardContrastive(K), wall clock per step, back to back |",
        "| 128 | maxima of runs of 32 consecutive entries |",
    ):
        assert piece in text
    timed = [line.split("|")[-2].strip() for line in text.splitlines() if line.startswith("| ")]
    timed = [cell for cell in timed if cell[:1].isdigit()]
    assert len(timed) == 12 + 11 + 12 and all(float(cell) > 0 for cell in timed)
