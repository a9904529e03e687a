"""``TemperatureSchedule``: advances the temperature schedules of a module under Lightning."""

from __future__ import annotations

from typing import Any

from pytorch_lightning import Callback, LightningModule, Trainer

from lightly_temperature.temperature import temperature_policies


class TemperatureSchedule(Callback):
    """Keeps every temperature policy held by the module at the trainer's position.

    Before each training batch a schedule whose ``unit`` is ``"step"`` is set to the optimizer
    steps done (``trainer.global_step``), one whose unit is ``"epoch"`` to the epochs done
    (``trainer.current_epoch``). The position comes from the trainer, so a run resumed from
    a checkpoint continues the schedule exactly where it stopped. Host integers only: no
    device read. The ready :class:`~lightly_temperature.SimCLR` and
    :class:`~lightly_temperature.MoCo` modules add this callback by themselves; add it to the
    trainer for any other module.

    Example:
        >>> criterion = HardContrastiveLoss(temperature=CosineTemperature(0.1, 1.0, period=400))
        >>> model = MySimCLR(criterion)  # any LightningModule holding the loss
        >>> trainer = pl.Trainer(max_epochs=800, callbacks=[TemperatureSchedule()])
    """

    def _advance(self, trainer: Trainer, pl_module: LightningModule) -> None:
        for policy in temperature_policies(pl_module):
            if policy.unit == "step":
                policy.set_position(int(trainer.global_step))
            elif policy.unit == "epoch":
                policy.set_position(int(trainer.current_epoch))

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._advance(trainer, pl_module)

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._advance(trainer, pl_module)
