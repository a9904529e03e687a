"""HardnessMonitor: per-step hardness statistics from the loss's own similarities."""

from __future__ import annotations

from typing import Any

import torch
from pytorch_lightning import Callback, LightningModule, Trainer

from lightly_temperature._validation import check_int
from lightly_temperature.callbacks._outputs import current_log_step, log_to_loggers
from lightly_temperature.losses import PairwiseLoss
from lightly_temperature.metrics import hardness_statistics

PREFIX = "hardness/"


class HardnessMonitor(Callback):
    """Logs how hard the training batch's negatives are, from the loss's own similarities.

    At setup it turns on ``store_similarities`` of the module's loss (a
    :class:`~lightly_temperature.losses.PairwiseLoss`, found among the module's submodules),
    so no extra forward pass is needed. On logging steps it logs, under ``hardness/``:
    ``positive_similarity``, ``top10_negative_similarity``, ``positive_probability`` (the
    softmax probability of the positive, ``exp(-loss)`` per anchor), ``penalty_entropy`` (the
    entropy of the paper's relative penalties r_i: ``log K`` for uniform weights, 0 when only
    the hardest negative counts) and ``temperature``. Nothing is computed, and the host is not
    synchronised, on the other steps. Under DDP each rank's loss sees its own anchors; rank
    zero's values are logged.

    Args:
        log_every_n_steps: log every N optimizer steps. Default: the trainer's
            ``log_every_n_steps``, on the same steps as Lightning's own step logging.
        top_k: how many hardest negatives the ``top{k}_negative_similarity`` averages.
        loss: the loss to monitor, when the module holds several or keeps it elsewhere.

    Example:
        >>> model = MySimCLR(criterion=HardContrastiveLoss(temperature=0.2))
        >>> trainer = Trainer(callbacks=[HardnessMonitor(log_every_n_steps=50)])
        >>> trainer.fit(model, loader)
    """

    def __init__(
        self,
        log_every_n_steps: int | None = None,
        top_k: int = 10,
        loss: PairwiseLoss | None = None,
    ) -> None:
        super().__init__()
        check_int(log_every_n_steps, "log_every_n_steps", minimum=1, optional=True)
        check_int(top_k, "top_k", minimum=1)
        if loss is not None and not isinstance(loss, PairwiseLoss):
            raise ValueError(
                f"loss must be a lightly_temperature PairwiseLoss, got {type(loss).__name__}"
            )
        self.log_every_n_steps = log_every_n_steps
        self.top_k = top_k
        self.loss = loss
        #: One row per logged step: ``step`` and the statistics (floats).
        self.history: list[dict[str, float]] = []
        self._previous_store: bool | None = None

    @property
    def state_key(self) -> str:
        return self._generate_state_key(log_every_n_steps=self.log_every_n_steps)

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        if self.loss is None:
            self.loss = find_pairwise_loss(pl_module)
        self._previous_store = self.loss.store_similarities

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage == "fit" and self.loss is not None and self._previous_store is not None:
            self.loss.store_similarities = self._previous_store
            self.loss.last_similarities = None
            self._previous_store = None

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
        # Keep the loss's similarities only for the steps that are logged: storing costs a pass
        # over the (A, C) block (and, for SimpleLoss, its slower general path). The step
        # counter does not move between batch start and batch end, so both hooks agree.
        if self.loss is not None:
            self.loss.store_similarities = bool(self._previous_store) or self.should_log(trainer)
            if not self.loss.store_similarities:
                self.loss.last_similarities = None  # nothing stale is read, nothing kept alive

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.loss is None or not self.should_log(trainer):
            return
        similarities = self.loss.last_similarities
        if similarities is None:
            return
        stats = hardness_statistics(
            similarities, getattr(self.loss, "hard_negatives", None), k=self.top_k
        )
        if not stats:
            return
        names = list(stats)
        values = torch.stack([stats[name].float() for name in names]).tolist()  # one sync
        step = current_log_step(trainer)
        row = dict(zip(names, values))
        self.history.append({"step": step, **row})
        log_to_loggers(trainer, {PREFIX + name: v for name, v in row.items()}, step)

    def state_dict(self) -> dict[str, Any]:
        return {"history": [dict(row) for row in self.history]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = [dict(row) for row in state_dict.get("history", [])]


def find_pairwise_loss(module: torch.nn.Module) -> PairwiseLoss:
    """The one :class:`PairwiseLoss` among ``module``'s submodules; ``ValueError`` otherwise."""
    losses = [m for m in module.modules() if isinstance(m, PairwiseLoss)]
    if not losses:
        raise ValueError(
            f"HardnessMonitor found no lightly_temperature loss (HardContrastiveLoss, "
            f"SimpleLoss, HardSimpleLoss or another PairwiseLoss) among the submodules of "
            f"{type(module).__name__}: assign the loss as a module attribute "
            f"(self.criterion = HardContrastiveLoss()) or pass HardnessMonitor(loss=...)"
        )
    if len(losses) > 1:
        raise ValueError(
            f"HardnessMonitor found {len(losses)} PairwiseLoss submodules in "
            f"{type(module).__name__}: pass the one to monitor as HardnessMonitor(loss=...)"
        )
    return losses[0]
