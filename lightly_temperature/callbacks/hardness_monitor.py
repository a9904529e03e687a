"""HardnessMonitor: per-step hardness statistics of what the training loss compares."""

from __future__ import annotations

import math
from typing import Any

import torch
from pytorch_lightning import Callback, LightningModule, Trainer
from pytorch_lightning.utilities import rank_zero_warn
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from lightly_temperature._validation import check_int
from lightly_temperature.adapters import REPLACEABLE, find_loss
from lightly_temperature.callbacks._outputs import (
    current_log_step,
    log_histograms,
    log_to_loggers,
)
from lightly_temperature.losses import observe_similarities
from lightly_temperature.metrics import COLLAPSE_THRESHOLD, embedding_spread, hardness_statistics
from lightly_temperature.temperature import TemperaturePolicy

PREFIX = "hardness/"


def batch_labels(batch: Any) -> Tensor | None:
    """The class labels of a Lightly-shaped batch ``(views, labels, ...)``, else None."""
    if not isinstance(batch, (list, tuple)) or len(batch) < 2:
        return None
    views, labels = batch[0], batch[1]
    if not isinstance(views, (list, tuple)) or not isinstance(labels, Tensor):
        return None
    if labels.dim() != 1 or labels.is_floating_point() or labels.is_complex():
        return None
    return labels


class HardnessMonitor(Callback):
    """Logs how hard the training batch's negatives are, as the training loss sees them.

    Watches the module's loss: Lightly's ``NTXentLoss`` or a loss of this package (found among
    the module's submodules, or passed as ``loss=``). On logging steps only, a forward
    pre-hook on the loss reads its inputs and computes, from the same layout the loss uses
    (SimCLR in-batch negatives, gathered under DDP, or the MoCo memory bank as it is before
    the loss updates it), under ``hardness/``: ``positive_similarity``,
    ``top10_negative_similarity``, ``positive_probability`` (the softmax probability of the
    positive over the negatives the loss uses, ``exp(-loss)`` per anchor),
    ``penalty_entropy`` (the entropy of the paper's relative penalties r_i: ``log K`` for
    uniform weights, 0 when only the hardest negative counts), ``effective_negatives`` (its
    exponential: how many negatives the loss really listens to), ``top{k}_penalty_share``
    (the share of the penalty on the k hardest negatives) and ``temperature`` (the τ in force
    for the step, whatever the loss's temperature policy; with a per-sample τ, the mean over
    the batch's anchors, ``temperature_min`` and ``temperature_max``, and a histogram of the
    whole per-sample table to loggers that take histograms). When the
    training batch is Lightly-shaped ``(views, labels, ...)`` with class labels and the loss
    compares in-batch negatives of this process only (SimCLR without gathering), also
    ``top{k}_false_negative_rate`` (how many of each anchor's k hardest negatives share its
    label) and ``false_negative_penalty_mass`` (the penalty those same-class "negatives"
    receive). The penalties are the paper's relative penalties r_i of the contrastive loss at
    the loss's temperature, over the negatives the loss uses.

    The monitor never changes what it watches: the loss's computation, its memory bank and
    the random state are untouched, so training losses are bit-identical with and without it.
    The statistics cost one extra similarity product, on logging steps only; on other steps
    nothing is computed and the host is not synchronised. If the loss is called several times
    in one step, the first call is read. Under DDP each rank's loss sees its own anchors;
    rank zero's values are logged.

    With ``accumulate_grad_batches``, a row is logged once per optimizer step, from the
    step's last batch (as Lightning counts steps).

    Args:
        log_every_n_steps: log every N optimizer steps. Default: the trainer's
            ``log_every_n_steps``, on the same steps as Lightning's own step logging.
        top_k: how many hardest negatives the ``top{k}_negative_similarity`` averages.
        loss: the loss to monitor, when the module holds several or keeps it elsewhere.

    Example:
        >>> model = MySimCLR(criterion=NTXentLoss(temperature=0.2))  # or HardContrastiveLoss
        >>> trainer = Trainer(callbacks=[HardnessMonitor(log_every_n_steps=50)])
        >>> trainer.fit(model, loader)
    """

    def __init__(
        self,
        log_every_n_steps: int | None = None,
        top_k: int = 10,
        loss: nn.Module | None = None,
    ) -> None:
        super().__init__()
        check_int(log_every_n_steps, "log_every_n_steps", minimum=1, optional=True)
        check_int(top_k, "top_k", minimum=1)
        if loss is not None and not isinstance(loss, REPLACEABLE):
            raise ValueError(
                "loss must be a lightly.loss.NTXentLoss or a lightly_temperature loss, got "
                f"{type(loss).__name__}"
            )
        self.log_every_n_steps = log_every_n_steps
        self.top_k = top_k
        self.loss = loss
        #: One row per logged step: ``step`` and the statistics (floats).
        self.history: list[dict[str, float]] = []
        self._watched: nn.Module | None = None
        self._hook: RemovableHandle | None = None
        self._statistics: dict[str, Tensor] | None = None
        self._warned_collapse = False
        self._labels: Tensor | None = None

    @property
    def state_key(self) -> str:
        return self._generate_state_key(log_every_n_steps=self.log_every_n_steps)

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage == "fit":
            self._warned_collapse = False
            self._watched = (
                self.loss
                if self.loss is not None
                else find_loss(pl_module, caller="HardnessMonitor")[0]
            )

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage == "fit":
            self._detach()
            self._watched = None

    def should_log(self, trainer: Trainer) -> bool:
        """Whether this training step is a logging step (decided on the host, no sync)."""
        if self.log_every_n_steps is None:
            connector = getattr(trainer, "_logger_connector", None)
            if connector is not None:
                return bool(connector.should_update_logs)
            every = trainer.log_every_n_steps
        else:
            every = self.log_every_n_steps
        return every > 0 and (current_log_step(trainer) + 1) % every == 0

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        # The step counter does not move between batch start and batch end: both hooks agree.
        self._statistics = None
        self._labels = None
        if _accumulates(trainer):  # one row per optimizer step, from its last batch
            return
        if self._watched is not None and self._hook is None and self.should_log(trainer):
            self._labels = batch_labels(batch)
            self._hook = self._watched.register_forward_pre_hook(self._observe, with_kwargs=True)

    def _observe(self, loss: nn.Module, args: tuple, kwargs: dict) -> None:
        inputs = list(args) + [kwargs[name] for name in ("out0", "out1") if name in kwargs]
        self._detach()  # the first call of the step is the one read
        if len(inputs) < 2 or not all(isinstance(x, Tensor) for x in inputs[:2]):
            return  # not a call the loss accepts: the loss itself raises
        indices = kwargs.get("indices", inputs[2] if len(inputs) > 2 else None)
        similarities = observe_similarities(loss, inputs[0], inputs[1], indices)
        labels, self._labels = self._labels, None
        # The labels describe the candidates only when they are this batch's two views.
        n = inputs[0].shape[0]
        in_batch = labels is not None and labels.shape[0] == n
        in_batch = in_batch and tuple(similarities.negatives.shape) == (2 * n, 2 * n)
        paired = labels.repeat(2) if in_batch else None
        with torch.no_grad():
            self._statistics = hardness_statistics(
                similarities,
                getattr(loss, "hard_negatives", None),
                k=self.top_k,
                anchor_labels=paired,
                candidate_labels=paired,
            )
            if self._statistics and n >= 2:  # how far the batch's embeddings spread
                self._statistics["embedding_spread"] = embedding_spread(inputs[0].detach().float())

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._detach()  # a step that never called the loss leaves nothing behind
        statistics, self._statistics = self._statistics, None
        if not statistics:
            return
        names = list(statistics)
        values = torch.stack([statistics[name].float() for name in names]).tolist()  # one sync
        step = current_log_step(trainer)
        row = dict(zip(names, values))
        self.history.append({"step": step, **row})
        log_to_loggers(trainer, {PREFIX + name: v for name, v in row.items()}, step)
        policy = getattr(self._watched, "temperature", None)
        if isinstance(policy, TemperaturePolicy) and policy.per_sample:
            # The whole per-sample table, on logging steps only.
            log_histograms(trainer, {PREFIX + "temperature": policy.value}, step)
        spread = row.get("embedding_spread", math.nan)
        if spread < COLLAPSE_THRESHOLD and not self._warned_collapse:  # once per run
            self._warned_collapse = True
            rank_zero_warn(
                f"HardnessMonitor: the loss's embeddings are collapsed at step {step}: "
                f"embedding_spread {spread:.3f} < {COLLAPSE_THRESHOLD} (std_of_l2_normalized x "
                "sqrt(dim); 1 = spread over the sphere, 0 = one point); hardness/embedding_spread "
                "follows it on every logged step"
            )

    def _detach(self) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    def state_dict(self) -> dict[str, Any]:
        return {"history": [dict(row) for row in self.history]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = [dict(row) for row in state_dict.get("history", [])]


def _accumulates(trainer: Trainer) -> bool:
    """Whether this batch only accumulates gradients (``accumulate_grad_batches``): the
    optimizer does not step after it, and the step counter does not move."""
    if trainer.accumulate_grad_batches == 1:
        return False
    epoch_loop = getattr(getattr(trainer, "fit_loop", None), "epoch_loop", None)
    should_accumulate = getattr(epoch_loop, "_should_accumulate", None)
    return bool(should_accumulate()) if should_accumulate is not None else False
