"""TemperatureAnalysis: watch what the temperature does to the embedding while training."""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Sequence
from typing import Any

import torch
from pytorch_lightning import Callback, LightningModule, Trainer
from pytorch_lightning.utilities import rank_zero_warn
from torch import Tensor

from lightly_temperature._validation import HardNegatives, check_int
from lightly_temperature.adapters import find_loss
from lightly_temperature.callbacks._outputs import (
    CSVHistory,
    current_log_step,
    log_histograms,
    log_image,
    log_to_loggers,
    run_folder,
    split_run_folders,
)
from lightly_temperature.figures import SimilarityFigure, write_png
from lightly_temperature.metrics import COLLAPSE_THRESHOLD, DEFAULT_DRAWS
from lightly_temperature.probe import (
    AVAILABLE_METRICS,
    EmbedFn,
    ProbeEmbeddings,
    ProbeMetrics,
    check_few_shot,
    check_metrics,
    check_not_empty,
    check_probe_batches,
    default_embed,
    embed_probe,
    metric_names,
    probe_metrics,
)
from lightly_temperature.registry import loss_capabilities
from lightly_temperature.temperature import temperature_in_force

PREFIX = "temperature_analysis/"
#: The τ in force at each evaluation, in the history and its CSV (mean, min, max over the
#: samples for a per-sample τ).
TEMPERATURE_COLUMNS = ("temperature", "temperature_min", "temperature_max")


class TemperatureAnalysis(Callback):
    """Embeds a probe set every N epochs (or steps) and logs the paper's section 4 metrics.

    Logged through ``pl_module.log`` (so every Lightning logger gets them), as
    ``temperature_analysis/<name>``:

    - ``uniformity``: ``-L_uniformity`` (t = 2) of the first views, higher = more uniform.
    - ``alignment``: mean squared distance of the two views' embeddings (needs two views).
    - ``tolerance``: mean cosine similarity of same-label pairs (needs labels).
    - ``positive_similarity`` and ``top10_negative_similarity``: means of the paper's Fig. 8
      distributions (needs two views); their histograms go to TensorBoard / W&B, and their
      figure (the paper's Fig. 8), once per evaluation, to every logger with an image API
      (TensorBoard, W&B: ``temperature_analysis/similarities``) and as a PNG to
      ``<run folder>/temperature_analysis/``.
    - ``effective_rank`` (RankMe) and ``std_of_l2_normalized`` (Lightly's collapse monitor),
      and ``embedding_spread`` (the same times sqrt(dim): 1 spread over the sphere, 0 one
      point); a spread below ``metrics.COLLAPSE_THRESHOLD`` is flagged with a warning.
    - ``top10_false_negative_rate``: mean fraction of each sample's 10 most similar others
      that share its label (needs labels): false negatives among the hardest negatives.
    - ``effective_negatives``: mean effective number of negatives (``exp`` of the entropy of
      the relative penalties) of each anchor among the probe's pairs, at the temperature (and
      K) of the loss the module holds now (found as ``HardnessMonitor`` finds it; NaN when
      there is none, or when its temperature only rescales the loss).
    - ``false_negative_penalty_mass``: mean share of that penalty on the negatives of the
      anchor's label (needs labels and the loss's temperature).
      These three also go to TensorBoard / W&B as histograms of their per-sample values.
    - ``fewshot_accuracy_{k}`` for each k of ``few_shot`` (needs labels): 1-NN accuracy (cosine
      similarity) of the probe's first views with k labelled samples per class, mean over
      ``few_shot_draws`` seeded label draws, and ``fewshot_accuracy_{k}_draw_std``, the
      spread over the draws. The labelled samples come from ``few_shot_dataloader`` (e.g.
      the plain training images) or, without it, from the probe itself (the rest of the
      probe are then the queries). Cheap next to the embedding pass; it shows the accuracy
      differences that full-label kNN accuracy hides on small data sets.

    The history is kept in the callback's state (checkpointed) and mirrored in
    ``<run folder>/temperature_analysis/history.csv``. The run folder is the first logger's:
    its ``log_dir`` (TensorBoard, CSV) or ``save_dir/name/version`` (W&B: one folder per run,
    where Lightning puts that run's checkpoints), else the trainer's ``default_root_dir``.
    Under DDP every rank embeds its share of the probe, the shares are gathered, and files are
    written by rank zero only.

    Args:
        dataloader: the probe. Batches like Lightly's data sets: ``(views, labels)`` or
            ``(views, labels, filenames)``, ``views`` a list of two augmented image tensors or
            one tensor (then alignment and the similarities are skipped). Default: the
            trainer's first validation loader. A bare tensor, or a map-style loader whose
            first sample is in none of these formats, is refused before training.
        every_n_epochs: evaluate at the end of every N-th training epoch (0 or None: never).
        every_n_steps: also evaluate every N optimizer steps (None: never). Step-wise values
            are written directly to the loggers at that step.
        max_samples: probes larger than this are subsampled with ``seed`` (None: no limit).
        metrics: which of ``AVAILABLE_METRICS`` to compute.
        embed: ``embed(pl_module, images) -> embeddings``. Default:
            ``projection_head(backbone(x))`` when the module has both, else ``pl_module(x)``
            (said once in a warning, with the embedding's width).
        top_k: how many hardest negatives per anchor (the paper uses 10).
        seed: seed of the subsampling and of each probe sample's augmentations.
        chunk_size: rows per chunk of the pairwise metrics.
        save_figures: draw the figure per evaluation: a PNG, and an image in the loggers.
        save_csv: write the history CSV.
        few_shot: labelled samples per class of the few-shot accuracies, e.g. ``(1, 10)``
            (default: none). Each k must be at most the size of the smallest class among the
            labelled samples (ValueError at the first evaluation otherwise).
        few_shot_dataloader: a labelled loader the labelled samples are drawn from, embedded
            like the probe (its first view, subsampled to ``max_samples``); default: the probe.
        few_shot_draws: label draws averaged per evaluation (the same draws every time).

    Example:
        >>> from pytorch_lightning import Trainer
        >>> from lightly_temperature import HardnessMonitor, TemperatureAnalysis
        >>> analysis = TemperatureAnalysis(probe_loader, every_n_epochs=5, max_samples=2048)
        >>> trainer = Trainer(max_epochs=100, callbacks=[analysis, HardnessMonitor()])
        >>> trainer.fit(model, train_loader)
        >>> analysis.history[-1]["uniformity"]
    """

    def __init__(
        self,
        dataloader: Any | None = None,
        every_n_epochs: int | None = 1,
        every_n_steps: int | None = None,
        max_samples: int | None = 2048,
        metrics: Sequence[str] = AVAILABLE_METRICS,
        embed: EmbedFn | None = None,
        top_k: int = 10,
        seed: int = 0,
        chunk_size: int = 1024,
        save_figures: bool = True,
        save_csv: bool = True,
        few_shot: Sequence[int] = (),
        few_shot_dataloader: Any | None = None,
        few_shot_draws: int = DEFAULT_DRAWS,
    ) -> None:
        super().__init__()
        self.few_shot = check_few_shot(few_shot)
        self.few_shot_draws: int = check_int(few_shot_draws, "few_shot_draws", minimum=1)
        if few_shot_dataloader is not None:
            if not self.few_shot:
                raise ValueError(
                    "few_shot_dataloader is only used with few_shot label counts, e.g. "
                    "few_shot=(1, 10); got few_shot=()"
                )
            check_not_empty(few_shot_dataloader, "few_shot_dataloader")
        self.few_shot_dataloader = few_shot_dataloader
        self.every_n_epochs = check_int(every_n_epochs, "every_n_epochs", minimum=0, optional=True)
        self.every_n_steps = check_int(every_n_steps, "every_n_steps", minimum=1, optional=True)
        self.max_samples = check_int(max_samples, "max_samples", minimum=2, optional=True)
        self.top_k: int = check_int(top_k, "top_k", minimum=1)
        self.chunk_size: int = check_int(chunk_size, "chunk_size", minimum=1)
        selected = check_metrics(metrics)
        if embed is not None and not callable(embed):
            raise ValueError(f"embed must be callable (pl_module, images) -> tensor, got {embed!r}")
        if dataloader is not None:
            check_not_empty(dataloader, "dataloader")
        self.dataloader = dataloader
        self.metrics = selected
        self.embed = embed if embed is not None else default_embed
        self.seed = int(seed)
        self.save_figures = bool(save_figures)
        self.save_csv = bool(save_csv)
        #: One row per evaluation: epoch, step, num_samples and the metric values (floats).
        self.history: list[dict[str, Any]] = []
        self._csv = CSVHistory(
            ["epoch", "step", "num_samples", *TEMPERATURE_COLUMNS, *self.metric_names]
        )
        self._figure = SimilarityFigure(self.top_k)  # built once, redrawn per evaluation
        self._probe: Any | None = None
        self._warned_no_labels = False
        self._warned_no_few_shot_labels = False
        self._warned_collapse = False
        self._warned_one_view = False
        self._warned_forward = False
        self._warned_split = False
        self._last_step_evaluated: int | None = None

    @property
    def metric_names(self) -> list[str]:
        """Names (without the ``temperature_analysis/`` prefix) of the values logged."""
        return metric_names(self.metrics, self.top_k, self.few_shot)

    @property
    def state_key(self) -> str:
        # few_shot only when set: checkpoints of callbacks without it keep their key.
        extra = {"few_shot": self.few_shot} if self.few_shot else {}
        return self._generate_state_key(
            every_n_epochs=self.every_n_epochs,
            every_n_steps=self.every_n_steps,
            max_samples=self.max_samples,
            metrics=self.metrics,
            seed=self.seed,
            **extra,
        )

    # --- Lightning hooks -----------------------------------------------------------------

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self.dataloader is not None:
            check_not_empty(self.dataloader, "dataloader")

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._probe = self.dataloader if self.dataloader is not None else _val_loader(trainer)
        if self._probe is None:
            raise ValueError(
                "TemperatureAnalysis has no probe: pass dataloader= or give the trainer a "
                "validation dataloader"
            )
        check_not_empty(self._probe, "the probe dataloader")
        check_probe_batches(self._probe, "the probe dataloader", self.seed)
        if self.few_shot_dataloader is not None:
            check_probe_batches(self.few_shot_dataloader, "few_shot_dataloader", self.seed)

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        if (
            self.every_n_steps is None
            or step == 0
            or step % self.every_n_steps != 0
            or step == self._last_step_evaluated
        ):
            return
        self._last_step_evaluated = step
        values = self.evaluate(trainer, pl_module)
        scalars = {PREFIX + name: value for name, value in values.items()}
        log_to_loggers(trainer, scalars, current_log_step(trainer))

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self.every_n_epochs or (trainer.current_epoch + 1) % self.every_n_epochs != 0:
            return
        values = self.evaluate(trainer, pl_module)
        for name, value in values.items():
            pl_module.log(
                PREFIX + name,
                value,
                on_step=False,
                on_epoch=True,
                sync_dist=trainer.world_size > 1,  # identical on every rank: a no-op mean
            )

    def state_dict(self) -> dict[str, Any]:
        return {"history": [dict(row) for row in self.history]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = [dict(row) for row in state_dict.get("history", [])]
        self._csv.invalidate()  # rewrite the CSV from the restored history on the next write

    # --- the metric pass ------------------------------------------------------------------

    def evaluate(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, float]:
        """Embeds the probe, computes the metrics, writes the outputs; returns the values.

        The two steps are :func:`lightly_temperature.probe.embed_probe` and
        :func:`lightly_temperature.probe.probe_metrics`.
        """
        if self._probe is None:
            self.on_train_start(trainer, pl_module)
        probe = self._embed(trainer, pl_module)
        if self.embed is default_embed and not self._warned_forward and not _has_head(pl_module):
            self._warned_forward = True
            rank_zero_warn(
                "TemperatureAnalysis: the module has no backbone and projection_head, so the "
                f"probe is embedded with its forward, which gives {probe.z0.shape[1]}-d "
                "embeddings; the metrics are meant for what the loss compares (the projection): "
                "if forward returns backbone features, pass embed=lambda module, x: ..."
            )
        if probe.num_samples < 2:
            raise ValueError(
                f"the probe dataloader gave {probe.num_samples} sample(s): TemperatureAnalysis "
                "needs at least 2"
            )
        pool = None
        if self.few_shot_dataloader is not None:
            pool = self._embed(trainer, pl_module, self.few_shot_dataloader)
        result = self._compute(probe, *_loss_temperature(pl_module), few_shot_pool=pool)
        row = {
            "epoch": trainer.current_epoch,
            "step": trainer.global_step,
            "num_samples": probe.num_samples,
            **_temperature_record(pl_module),
            **result.values,
        }
        self.history.append(row)
        spread = result.values.get("embedding_spread", math.nan)
        # NaN compares False: no flag without a value. Once per run: the value is logged at
        # every evaluation (a freshly initialised head is often collapsed too).
        if spread < COLLAPSE_THRESHOLD and not self._warned_collapse:
            self._warned_collapse = True
            rank_zero_warn(
                f"TemperatureAnalysis: the embeddings are collapsed at epoch {row['epoch']}, "
                f"step {row['step']}: embedding_spread {spread:.3f} < {COLLAPSE_THRESHOLD} "
                "(std_of_l2_normalized x sqrt(dim); 1 = spread over the sphere, 0 = one point); "
                "temperature_analysis/embedding_spread follows it at every evaluation"
            )
        log_dir = run_folder(trainer)  # a collective: every rank calls it
        if trainer.is_global_zero:
            self._warn_split_folders(trainer, log_dir)
            self._write(trainer, log_dir, result)
        return result.values

    def _embed(
        self, trainer: Trainer, pl_module: LightningModule, loader: Any | None = None
    ) -> ProbeEmbeddings:
        forward_context = getattr(trainer.precision_plugin, "forward_context", None)
        return embed_probe(
            pl_module,
            self._probe if loader is None else loader,
            self.embed,
            max_samples=self.max_samples,
            seed=self.seed,
            device=pl_module.device,
            forward_context=forward_context or contextlib.nullcontext,
            rank=trainer.global_rank,
            world_size=trainer.world_size,
            all_gather=pl_module.all_gather,
        )

    def _compute(
        self,
        probe: ProbeEmbeddings,
        temperature: float | None = None,
        hard_negatives: HardNegatives = None,
        few_shot_pool: ProbeEmbeddings | None = None,
    ) -> ProbeMetrics:
        if (
            probe.z1 is None
            and not self._warned_one_view
            and ("alignment" in self.metrics or "similarities" in self.metrics)
        ):
            self._warned_one_view = True
            rank_zero_warn(
                "TemperatureAnalysis: the probe gives one view per sample: alignment and the "
                "positive/negative similarities are skipped (logged as NaN)"
            )
        unlabelled = probe.labels is None or (
            few_shot_pool is not None and few_shot_pool.labels is None
        )
        if unlabelled and self.few_shot and not self._warned_no_few_shot_labels:
            self._warned_no_few_shot_labels = True
            rank_zero_warn(
                "TemperatureAnalysis: the probe or few_shot_dataloader has no labels: the "
                "few-shot accuracies are skipped (logged as NaN)"
            )
        if probe.labels is None and "tolerance" in self.metrics and not self._warned_no_labels:
            self._warned_no_labels = True
            rank_zero_warn(
                "TemperatureAnalysis: the probe has no labels: tolerance is skipped (logged as NaN)"
            )
        return probe_metrics(
            probe,
            self.metrics,
            self.top_k,
            self.chunk_size,
            temperature,
            hard_negatives,
            few_shot=self.few_shot,
            few_shot_pool=few_shot_pool,
            few_shot_draws=self.few_shot_draws,
        )

    def _warn_split_folders(self, trainer: Trainer, log_dir: str) -> None:
        folders = split_run_folders(trainer)
        if not folders or self._warned_split:
            return
        self._warned_split = True
        rank_zero_warn(
            f"TemperatureAnalysis: the loggers write this run to {len(folders)} folders "
            f"({', '.join(folders)}); its files go to {log_dir}. To keep a run in one folder, "
            "give the loggers one name and version, e.g. csv = CSVLogger(save_dir, name='run') "
            "and TensorBoardLogger(save_dir, name='run', version=csv.version)"
        )

    def _write(self, trainer: Trainer, log_dir: str, result: ProbeMetrics) -> None:
        out_dir = os.path.join(log_dir, "temperature_analysis")
        row = self.history[-1]
        positive, negatives = result.positive, result.negatives
        if result.per_sample:
            histograms = {PREFIX + f"{name}_hist": v for name, v in result.per_sample.items()}
            log_histograms(trainer, histograms, current_log_step(trainer))
        if positive is not None and negatives is not None:
            k = self.top_k
            histograms = {
                PREFIX + "positive_similarity_hist": positive,
                PREFIX + f"top{k}_negative_similarity_hist": negatives.reshape(-1),
            }
            log_histograms(trainer, histograms, current_log_step(trainer))
            if self.save_figures:
                title = f"epoch {row['epoch']}, step {row['step']}: " + ", ".join(
                    f"{name} {row[name]:.3f}"
                    for name in ("uniformity", "tolerance")
                    if name in row and not math.isnan(row[name])
                )
                path = os.path.join(
                    out_dir, f"similarities_epoch{row['epoch']:04d}_step{row['step']:07d}.png"
                )
                pixels = self._figure.render(positive, negatives, title)
                write_png(path, pixels)
                log_image(trainer, PREFIX + "similarities", pixels, current_log_step(trainer))
        if self.save_csv:
            self._csv.write(os.path.join(out_dir, "history.csv"), self.history)


def _has_head(module: LightningModule) -> bool:
    """Whether :func:`default_embed` embeds with ``projection_head(backbone(x))``."""
    return callable(getattr(module, "backbone", None)) and callable(
        getattr(module, "projection_head", None)
    )


def _loss_temperature(pl_module: LightningModule) -> tuple[float | None, HardNegatives]:
    """The softmax temperature and the K of the loss ``pl_module`` holds now, or ``None``
    (no single loss found, or a temperature that only rescales the loss)."""
    try:
        loss, _ = find_loss(pl_module, caller="TemperatureAnalysis")
    except ValueError:
        return None, None
    if not loss_capabilities(loss).softmax_temperature:
        return None, None
    temperature = temperature_in_force(loss.temperature)
    if isinstance(temperature, Tensor):
        # One read per evaluation, not per step; a per-sample τ (the probe's samples are not
        # the training samples) is summarised by its mean.
        temperature = float(temperature.detach().float().mean())
    return float(temperature), getattr(loss, "hard_negatives", None)


def _temperature_record(pl_module: LightningModule) -> dict[str, float]:
    """The τ in force when evaluating: its mean, min and max (equal for one τ), NaN when the
    module holds no single loss with a softmax temperature."""
    try:
        loss, _ = find_loss(pl_module, caller="TemperatureAnalysis")
    except ValueError:
        loss = None
    if loss is None or not loss_capabilities(loss).softmax_temperature:
        return dict.fromkeys(TEMPERATURE_COLUMNS, math.nan)
    value = torch.as_tensor(temperature_in_force(loss.temperature)).detach().float()
    mean, low, high = torch.stack([value.mean(), value.min(), value.max()]).tolist()  # one read
    return dict(zip(TEMPERATURE_COLUMNS, (mean, low, high)))


def _val_loader(trainer: Trainer) -> Any | None:
    """The trainer's first validation loader, also when Lightning has not loaded it.

    Lightning loads validation loaders only for modules with a ``validation_step`` (Lightly's
    SimCLR examples have none): then the loader is requested from its source directly.
    """
    loaders = trainer.val_dataloaders
    if loaders is None:
        val_loop = getattr(trainer.fit_loop.epoch_loop, "val_loop", None)
        source = getattr(val_loop, "_data_source", None)
        if source is not None and source.is_defined():
            loaders = source.dataloader()
    if isinstance(loaders, (list, tuple)):
        return loaders[0] if loaders else None
    if isinstance(loaders, dict):
        return next(iter(loaders.values()), None)
    return loaders
