"""Runs a temperature study: trains each run of the grid, evaluates it and appends it to
``results.csv`` as it finishes; writes ``report.md`` and the plots once, after the last run
(an interrupted study keeps its finished runs in the CSV: rerun it to resume and get the
report). Rerunning skips the runs already in the CSV; ``study.json``, written once a run has
finished, keeps the settings they were trained with, and a rerun with other settings is
refused. The report covers every finished run of the folder that is comparable with this
command's (same method, epochs and K) and names the others.

Example:
    >>> from lightly_temperature.study import StudyConfig, run_study
    >>> run_study(StudyConfig(output="study_output"))  # the embedded digits default
"""

from __future__ import annotations

import logging
import signal
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import pytorch_lightning as pl
import torch
from lightning_fabric.utilities.exceptions import MisconfigurationException
from pytorch_lightning.trainer.states import TrainerStatus
from pytorch_lightning.utilities import rank_zero_only

from lightly_temperature.callbacks import HardnessMonitor
from lightly_temperature.callbacks._outputs import log_image, log_to_loggers
from lightly_temperature.figures import SimilarityFigure, write_png
from lightly_temperature.models import NPID, MoCo, SimCLR
from lightly_temperature.probe import few_shot_names
from lightly_temperature.registry import available_losses, loss_capabilities
from lightly_temperature.study.config import (
    RunSpec,
    StudyConfig,
    bank_entries,
    display_name,
    format_hard_negatives,
    parse_hard_negatives,
    study_policy,
    takes_hard_negatives,
    temperature_is_scale,
)
from lightly_temperature.study.data import StudyData, check_few_shot_data, load_study_data
from lightly_temperature.study.evaluate import TOP_K, evaluate_run
from lightly_temperature.study.files import write_atomically
from lightly_temperature.study.models import build_backbone
from lightly_temperature.study.report import SIMILARITY_DIR, TEMPERATURE_DIR, write_report
from lightly_temperature.study.results import ResultsFile, row_key
from lightly_temperature.study.settings import check_output_settings, study_settings
from lightly_temperature.temperature import temperature_in_force

Printer = Callable[[str], None]


class StudyInterrupted(KeyboardInterrupt):
    """Ctrl-C during a study; the message says how many runs finished (they are kept)."""


def check_losses(losses, method: str = "simclr") -> None:
    """Every name must be in the loss registry (built-in, registered or a plugin's), and take
    a memory bank when ``method`` is MoCo, a memory bank indexed by sample when it is NPID
    (read from the loss's capabilities)."""
    known = available_losses()
    for loss in losses:
        if loss not in known:
            raise ValueError(f"unknown loss {loss!r}, known: {', '.join(known)}")
        if method == "moco" and not loss_capabilities(loss).memory_bank:
            raise ValueError(
                f"loss {loss!r} takes no memory bank, so it cannot train the MoCo method; "
                "use --method simclr for it"
            )
        if method == "npid" and not loss_capabilities(loss).sample_memory_bank:
            hint = " (use 'contrastive', the same loss)" if loss == "ntxent" else ""
            raise ValueError(
                f"loss {loss!r} takes no memory bank indexed by sample, so it cannot train "
                f"the NPID method{hint}"
            )


def build_module(config: StudyConfig, run: RunSpec, data: StudyData) -> pl.LightningModule:
    """The package's SimCLR, MoCo or NPID LightningModule of one run."""
    backbone, feature_dim = build_backbone(config.backbone, data.in_channels)
    # The run's τ, or the temperature policy that starts from it.
    temperature = study_policy(config, run, len(data.train_views))  # type: ignore[arg-type]
    loss_kwargs: dict[str, Any] = {"temperature": temperature}
    if takes_hard_negatives(run.loss):  # None there means all negatives, not the default
        loss_kwargs["hard_negatives"] = run.hard_negatives
    kwargs: dict[str, Any] = dict(
        backbone=backbone,
        feature_dim=feature_dim,
        hidden_dim=config.hidden_dim,
        output_dim=config.output_dim,
        loss=run.loss,
        lr=config.lr,
        weight_decay=config.weight_decay,
        max_epochs=run.epochs,
        optimizer=config.optimizer,
        lr_milestones=config.lr_milestones or None,
        **loss_kwargs,
    )
    if config.method == "moco":
        entries = bank_entries(config.memory_bank_size, len(data.train_views))  # type: ignore[arg-type]
        module: pl.LightningModule = MoCo(memory_bank_size=entries, **kwargs)
    elif config.method == "npid":
        # The paper's linear head: with the two-layer head the hard losses over the bank stay
        # collapsed on digits for most of a run (docs/study.md).
        kwargs["hidden_dim"] = None
        module = NPID(len(data.train_views), **kwargs)  # type: ignore[arg-type]
    else:
        module = SimCLR(**kwargs)
    return module


def _trainer_settings(config: StudyConfig) -> dict[str, Any]:
    settings: dict[str, Any] = dict(
        accelerator=config.accelerator,
        devices=config.devices,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=config.progress_bar,
    )
    if config.precision is not None:
        settings["precision"] = config.precision
    return settings


def check_trainer_settings(config: StudyConfig) -> None:
    """ValueError naming ``--accelerator``, ``--devices`` and ``--precision`` if Lightning
    refuses them on this machine (an unknown accelerator, a GPU that is not there, 0
    devices), before any training."""
    _quiet_lightning()
    try:
        pl.Trainer(**_trainer_settings(config), logger=False)
    except (MisconfigurationException, ValueError, TypeError, RuntimeError) as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ValueError(
            f"--accelerator {config.accelerator} --devices {config.devices}"
            + (f" --precision {config.precision}" if config.precision is not None else "")
            + f": {message}"
        ) from None


def build_trainer(
    config: StudyConfig, run: RunSpec, output: Path, callbacks: list[pl.Callback] | None = None
) -> pl.Trainer:
    """The Lightning trainer of one run: a CSV and a TensorBoard log, both in
    ``output/logs/<run>`` (``tensorboard --logdir output/logs`` shows every run)."""
    # CSV first: it clears metrics.csv from a folder that is not empty when it starts.
    loggers = [
        pl.loggers.CSVLogger(str(output / "logs"), name=run.name, version=""),
        pl.loggers.TensorBoardLogger(str(output / "logs"), name=run.name, version=""),
    ]
    return pl.Trainer(
        **_trainer_settings(config),
        callbacks=callbacks,
        max_epochs=run.epochs,
        logger=loggers,
        log_every_n_steps=5,
        deterministic=False,
    )


def study_threads(config: StudyConfig) -> int | None:
    """torch CPU threads of the runs: ``--threads``, else 1 for the small CNN (several threads
    were 2-6x slower on its tiny convolutions on shared 2-core machines), else torch's."""
    return config.threads or (1 if config.backbone == "small_cnn" else None)


def _quiet_lightning() -> None:
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*number of training batches.*")
    warnings.filterwarnings("ignore", message=".*GPU available but not used.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    # A temperature policy is a module of the loss: saved with it, not as a hyperparameter.
    warnings.filterwarnings("ignore", message=".*'temperature' is an instance of `nn.Module`.*")
    # A run trained again (its row was set aside) replaces its own old log.
    warnings.filterwarnings("ignore", message=".*exists and is not empty.*")


def _settings(config: StudyConfig, data: StudyData) -> list[str]:
    k = format_hard_negatives(config.hard_negatives) or "all"
    lines = [
        f"data: {data.name} ({len(data.train_plain)} train / {len(data.test_plain)} test images "
        f"used for evaluation, {data.num_classes} classes)",
        f"method: {config.method}, backbone: {config.backbone}, head: {config.hidden_dim} → "
        f"{config.output_dim}",
        f"training: {config.epochs} epochs, batch {config.batch_size}, {config.optimizer} lr "
        f"{config.lr:g}, weight decay {config.weight_decay:g}",
        f"hard losses: hard_negatives = {k} (K, or the fraction α of the negatives)",
        f"few-shot accuracy: {', '.join(str(k) for k in config.few_shot) or 'none'} labelled "
        f"train images per class, {config.few_shot_draws} label draws",
        f"temperature policies: {', '.join(config.temperature_policies)}"
        + _policy_parameters(config),
    ]
    if config.method == "moco":
        entries = bank_entries(config.memory_bank_size, len(data.train_views))  # type: ignore[arg-type]
        lines.append(f"memory bank: {entries} keys (at most one per training image)")
    return lines + [f"seeds: {', '.join(str(s) for s in config.seeds)}"]


def _policy_parameters(config: StudyConfig) -> str:
    used = set(config.temperature_policies)
    parts = []
    if "cosine" in used:
        period = config.cosine_period or config.epochs
        parts.append(f"cosine τ_min {config.policy_tau_min:g} → τ_max = τ, period {period} epochs")
    if used & {"learnable", "individual"}:
        parts.append(
            f"learnable / individual τ in [{config.policy_tau_min:g}, {config.policy_tau_max:g}]"
        )
    if "adaptive" in used:
        parts.append(f"adaptive α {config.adaptive_alpha:g}, A0 0")
    if "individual" in used:
        parts.append(f"individual lr {config.individual_lr:g}, ρ {config.individual_rho:g}")
    return f" ({'; '.join(parts)})" if parts else ""


def run_study(config: StudyConfig, data: StudyData | None = None, printer: Printer = print) -> Path:
    """Runs (or resumes) the study described by ``config``; returns the path of ``report.md``.

    Only global rank zero writes ``report.md`` and the plots (under DDP every rank calls
    this); the other ranks return the path it writes.

    Raises:
        ValueError: an unknown loss, a data source that cannot be used, a few-shot label count
            above the size of a class of the train split, or an output folder
            whose ``study.json`` holds other settings (all before any training).
        StudyInterrupted: Ctrl-C; the runs finished until then are kept in ``results.csv``.
    """
    check_losses(config.losses, config.method)
    if data is None:
        data = load_study_data(
            config.data, config.dataset, config.data_dir, config.image_size, config.max_eval_samples
        )
    check_few_shot_data(data, config.few_shot)
    output = Path(config.output)
    is_rank_zero = rank_zero_only.rank == 0
    settings = study_settings(config, data)
    # Before any training: refuse an output folder whose runs used other settings. The folder
    # is bound to these settings only once a run has finished (a crashed first run binds
    # nothing).
    check_output_settings(output, settings, write=False)
    results = ResultsFile(output / "results.csv", config.few_shot)
    if is_rank_zero:
        for warning in results.set_aside_malformed():
            printer(f"warning: {warning}")
    finished = results.finished_keys()
    runs = config.runs()
    title = f"{data.name}, {config.method}"
    start = time.perf_counter()
    _quiet_lightning()

    def bind_settings() -> None:
        if results.rows():
            check_output_settings(output, settings, write=is_rank_zero)

    threads = study_threads(config)
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        _run_grid(config, data, runs, finished, results, output, printer, bind_settings)
    except KeyboardInterrupt:
        done = len({run.key for run in runs} & results.finished_keys())
        raise StudyInterrupted(
            f"interrupted; {done} of {len(runs)} runs finished and are kept in {results.path}: "
            "rerun the same command to resume"
        ) from None
    finally:
        torch.set_num_threads(previous_threads)
    # Under DDP every rank gets here; only global rank zero trained the evaluation and
    # wrote results.csv, and only it writes the report (the other ranks would race on it).
    if rank_zero_only.rank != 0:
        return output / "report.md"
    bind_settings()
    path = _report(config, data, runs, results, output, title, printer)
    printer(f"{len(runs)} runs in {time.perf_counter() - start:.0f}s; report: {path}")
    return path


def _run_grid(
    config: StudyConfig,
    data: StudyData,
    runs: list[RunSpec],
    finished: set,
    results: ResultsFile,
    output: Path,
    printer: Printer,
    on_row_written: Callable[[], None],
) -> None:
    for i, run in enumerate(runs, 1):
        prefix = f"run {i} of {len(runs)}: {run.describe()}"
        if run.key in finished:
            printer(f"{prefix}: already in {results.path}, skipped")
            continue
        printer(f"{prefix}: training")
        pl.seed_everything(run.seed, workers=True, verbose=False)
        module = build_module(config, run, data)
        loader = data.train_loader(
            config.batch_size,
            seed=run.seed,
            num_workers=config.num_workers,
            indexed=config.method == "npid" or run.temperature_policy == "individual",
        )
        # A policy's τ over training, read by the library's monitor once per epoch.
        monitor = (
            HardnessMonitor(log_every_n_steps=len(loader))
            if run.temperature_policy != "constant"
            else None
        )
        trainer = build_trainer(config, run, output, [monitor] if monitor else None)
        began = time.perf_counter()
        _fit(trainer, module, loader)
        train_seconds = time.perf_counter() - began
        if not trainer.is_global_zero:
            continue
        if monitor is not None:
            _save_temperatures(output, run, monitor.history)
        evaluation = evaluate_run(
            module,
            data,
            device=trainer.strategy.root_device,
            knn_k=config.knn_k,
            knn_t=config.knn_t,
            seed=run.seed,
            forward_context=trainer.precision_plugin.forward_context,
            temperature=None if temperature_is_scale(run.loss) else _final_temperature(module),
            hard_negatives=run.hard_negatives,
            few_shot=config.few_shot,
            few_shot_draws=config.few_shot_draws,
        )
        _save_similarities(
            output,
            run,
            evaluation.positive_similarities,
            evaluation.top_negative_similarities,
            trainer,
        )
        row: dict[str, object] = {
            "method": run.method,
            "loss": run.loss,
            "temperature": run.temperature,
            "hard_negatives": format_hard_negatives(run.hard_negatives),
            "seed": run.seed,
            "epochs": run.epochs,
            "temperature_policy": run.temperature_policy,
            **evaluation.metrics,
            "train_seconds": round(train_seconds, 2),
        }
        results.append(row)
        _log_evaluation(trainer, evaluation.metrics)
        on_row_written()
        metrics = evaluation.metrics
        printer(
            f"{prefix}: done in {train_seconds:.0f}s, kNN {metrics['knn_accuracy']:.3f}, "
            f"linear {metrics['linear_accuracy']:.3f}, uniformity {metrics['uniformity']:.3f}, "
            f"tolerance {metrics['tolerance']:.3f}"
            + "".join(f", {k}-shot {metrics[few_shot_names(k)[0]]:.3f}" for k in config.few_shot)
        )


def _fit(trainer: pl.Trainer, module: pl.LightningModule, loader) -> None:
    """``trainer.fit``, except that Ctrl-C stays a KeyboardInterrupt (Lightning turns it into
    ``sys.exit(1)`` and ignores further Ctrl-C)."""
    handler = signal.getsignal(signal.SIGINT)
    try:
        trainer.fit(module, train_dataloaders=loader)
    except SystemExit:
        if trainer.state.status != TrainerStatus.INTERRUPTED:
            raise
        if handler is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, handler)
        raise KeyboardInterrupt from None


def _comparable(config: StudyConfig, row: dict[str, str]) -> bool:
    """Whether a finished run belongs in this command's report: same method and epochs, and
    the K this command gives its loss (its table aggregates over seeds only)."""
    k = format_hard_negatives(config.hard_negatives) if takes_hard_negatives(row["loss"]) else ""
    return (
        row["method"] == config.method
        and int(row["epochs"]) == config.epochs
        and format_hard_negatives(parse_hard_negatives(row["hard_negatives"])) == k
    )


def _report(
    config: StudyConfig,
    data: StudyData,
    runs: list[RunSpec],
    results: ResultsFile,
    output: Path,
    title: str,
    printer: Printer,
) -> Path:
    """``report.md`` of every finished run comparable with this command's grid (the grid's,
    then the folder's others); a line names the finished runs left out."""
    rows = results.rows()
    shown = [row for row in rows if _comparable(config, row)]
    grid_keys = {run.key for run in runs}
    extra = {row_key(row): row for row in shown if row_key(row) not in grid_keys}
    extra_runs = [RunSpec.from_row(row) for row in extra.values()]
    extra_runs.sort(key=lambda r: (r.loss, r.temperature, r.seed))
    lines = _settings(config, data)
    left_out = len({row_key(row) for row in rows}) - len({row_key(row) for row in shown})
    if left_out:
        lines.append(
            f"{left_out} more finished run(s) in results.csv used another method, number of "
            "epochs or K and are not in this report: rerun with their settings and this "
            "--output to report them"
        )
    run_files = [
        (run.name, run.loss, run.temperature_label, output / SIMILARITY_DIR / f"{run.name}.pt")
        for run in runs + extra_runs
    ]
    return write_report(shown, output, title, lines, list(config.losses), run_files, warn=printer)


def _final_temperature(module: pl.LightningModule) -> float:
    """The τ in force at the end of training (the mean of a per-sample τ): the τ at which the
    evaluation computes the loss's penalties."""
    value = torch.as_tensor(temperature_in_force(module.criterion.temperature))
    return float(value.detach().float().mean())


def _save_temperatures(output: Path, run: RunSpec, history: list[dict[str, Any]]) -> None:
    """``temperatures/<run>.csv``: the τ in force at the end of each epoch (mean, min, max)."""
    folder = output / TEMPERATURE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["step,temperature,temperature_min,temperature_max"]
    for row in history:
        tau = row["temperature"]
        low, high = row.get("temperature_min", tau), row.get("temperature_max", tau)
        lines.append(f"{row['step']},{tau:.6g},{low:.6g},{high:.6g}")
    write_atomically(folder / f"{run.name}.csv", "\n".join(lines) + "\n")


def _save_similarities(
    output: Path,
    run: RunSpec,
    positive: torch.Tensor | None,
    negatives: torch.Tensor | None,
    trainer: pl.Trainer,
) -> None:
    """The run's similarities (``.pt``) and their figure: a PNG, and an image in the run's
    loggers with an image API (TensorBoard)."""
    if positive is None or negatives is None:  # embeddings not finite: nothing to draw
        return
    folder = output / SIMILARITY_DIR
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"positive": positive, "negatives": negatives}, folder / f"{run.name}.pt")
    pixels = SimilarityFigure(TOP_K).render(positive, negatives, _title(run))
    write_png(folder / f"{run.name}.png", pixels)
    log_image(trainer, "evaluation/similarities", pixels, trainer.global_step)


def _log_evaluation(trainer: pl.Trainer, metrics: dict[str, Any]) -> None:
    """The run's evaluation (accuracies and analysis metrics) to its loggers at its last step,
    as ``evaluation/<metric>``; written out at once (the loggers were finalised by fit)."""
    numbers = {
        f"evaluation/{name}": float(value)
        for name, value in metrics.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    }
    log_to_loggers(trainer, numbers, trainer.global_step)
    for logger in trainer.loggers:
        logger.finalize("success")


def _title(run: RunSpec) -> str:
    """``simclr HardContrastive, τ = 0.3, K = 0.0819, seed 0``: fits the figure's width."""
    k = format_hard_negatives(run.hard_negatives)
    return (
        f"{run.method} {display_name(run.loss)}, {run.temperature_label}"
        + (f", K = {k}" if k else "")
        + (f", seed {run.seed}")
    )
