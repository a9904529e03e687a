"""What the ready SimCLR and MoCo modules share: backbone, loss, batch unpacking, optimizer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, Union

import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from lightly_temperature._validation import (
    check_choice,
    check_int,
    check_ints,
    check_non_negative,
    check_positive,
)
from lightly_temperature.models.backbones import resnet18_backbone
from lightly_temperature.registry import (
    build_loss,
    get_loss_class,
    loss_capabilities,
    loss_parameters,
)

#: Optimizers of the ready modules (and of the study), built in ``configure_optimizers``.
OPTIMIZERS = ("sgd", "adamw")

#: ``hard_negatives`` of the ready modules when not given: the loss's own default.
LOSS_DEFAULT = "default"
#: Type of the modules' ``hard_negatives``: K, a fraction alpha, ``None`` (all negatives) or
#: :data:`LOSS_DEFAULT`. Spelled out (not ``X | Y``) so LightningCLI can read it on Python 3.9.
HardNegativesArgument = Union[int, float, None, Literal["default"]]


def resolve_backbone(backbone: nn.Module | None, feature_dim: int | None) -> tuple[nn.Module, int]:
    """The backbone (Lightly's ResNet-18 by default) and its feature dimension."""
    if backbone is None:
        backbone = resnet18_backbone()
    if not isinstance(backbone, nn.Module):
        raise ValueError(f"backbone must be a torch.nn.Module, got {type(backbone).__name__}")
    if feature_dim is None:
        feature_dim = getattr(backbone, "feature_dim", None)
        if feature_dim is None:
            raise ValueError(
                f"feature_dim is needed with a {type(backbone).__name__} backbone: pass the "
                "number of features it outputs per image, e.g. feature_dim=512 for a ResNet-18"
            )
    return backbone, check_int(feature_dim, "feature_dim", minimum=1)


def loss_settings(
    temperature: float | None, hard_negatives: HardNegativesArgument
) -> dict[str, Any]:
    """The modules' explicit loss arguments that were given: ``temperature`` unless ``None``,
    ``hard_negatives`` unless :data:`LOSS_DEFAULT` (``None`` there means all negatives)."""
    settings: dict[str, Any] = {}
    if temperature is not None:
        settings["temperature"] = temperature
    if isinstance(hard_negatives, str):
        if hard_negatives != LOSS_DEFAULT:
            raise ValueError(
                f"hard_negatives must be an int K, a fraction alpha, None (all negatives) or "
                f"{LOSS_DEFAULT!r} (the loss's default), got {hard_negatives!r}"
            )
    else:
        settings["hard_negatives"] = hard_negatives
    return settings


def make_loss(
    loss: str | nn.Module,
    defaults: dict[str, Any],
    loss_kwargs: dict[str, Any],
    settings: dict[str, Any] | None = None,
) -> nn.Module:
    """A registry name built with ``settings`` and ``loss_kwargs``, or a loss module used as
    given.

    ``settings`` (from :func:`loss_settings`) and ``loss_kwargs`` are passed to the loss: one
    it does not take is an error naming it. ``defaults`` fill in arguments not given that the
    loss takes.
    """
    given = {**(settings or {}), **loss_kwargs}
    if isinstance(loss, nn.Module):
        if given:
            raise ValueError(
                f"loss arguments {sorted(given)} apply to a loss name; a loss module "
                f"({type(loss).__name__}) is used as given"
            )
        return loss
    if not isinstance(loss, str):
        raise ValueError(f"loss must be a loss name or a torch.nn.Module, got {loss!r}")
    accepted = loss_parameters(get_loss_class(loss))
    kwargs = {key: value for key, value in defaults.items() if accepted is None or key in accepted}
    kwargs.update(given)
    return build_loss(loss, **kwargs)


def two_views(batch: Any) -> tuple[Tensor, Tensor]:
    """The two views of a Lightly-shaped batch ``(views, labels[, filenames])``."""
    views = batch[0] if isinstance(batch, (list, tuple)) and len(batch) > 0 else None
    if (
        not isinstance(views, (list, tuple))
        or len(views) != 2
        or not all(isinstance(v, Tensor) for v in views)
    ):
        if not isinstance(batch, (list, tuple)):
            got = f"a batch of type {type(batch).__name__}"
        elif not batch:
            got = "an empty batch"
        else:
            got = f"batch[0] = {type(views).__name__}"
            if isinstance(views, (list, tuple)):
                got += f" of {len(views)} items ({', '.join(type(v).__name__ for v in views)})"
        raise ValueError(
            "expected a Lightly-shaped batch (views, labels[, filenames]) whose views are a "
            "list of two image tensors, as from LightlyDataset with SimCLRTransform or "
            f"lightly_temperature.data.digits_dataset; got {got}"
        )
    return views[0], views[1]


def sample_indices(batch: Any) -> Tensor | None:
    """The data set indices of a batch ``(views, labels, indices)`` from
    :class:`~lightly_temperature.data.IndexedDataset`, or ``None`` when the batch has none
    (Lightly's third element is a list of file names, not indices)."""
    if isinstance(batch, (list, tuple)) and len(batch) >= 3:
        indices = batch[2]
        if isinstance(indices, Tensor) and indices.dim() == 1 and not indices.is_floating_point():
            return indices
    return None


def call_loss(criterion: nn.Module, out0: Tensor, out1: Tensor, batch: Any) -> Tensor:
    """``criterion(out0, out1)``, with the batch's sample indices when the loss takes them."""
    indices = sample_indices(batch)
    if indices is not None and loss_capabilities(criterion).sample_indices:
        return criterion(out0, out1, indices=indices)
    return criterion(out0, out1)


class ContrastiveModule(pl.LightningModule):
    """Backbone, hyperparameters, optimizer and argument checks shared by :class:`SimCLR` and
    :class:`MoCo`."""

    def __init__(
        self,
        backbone: nn.Module | None,
        feature_dim: int | None,
        loss: str | nn.Module,
        lr: float,
        momentum: float,
        weight_decay: float,
        max_epochs: int | None,
        optimizer: str = "sgd",
        lr_milestones: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        # Lightning collects the arguments of every __init__ up the call chain, so the
        # subclass's own arguments (hidden_dim, temperature, ...) are saved too.
        self.save_hyperparameters(
            ignore=["backbone", "loss"] if not isinstance(loss, str) else ["backbone"]
        )
        self.optimizer_name = check_choice(optimizer, "optimizer", OPTIMIZERS)
        self.lr_milestones = check_ints(lr_milestones or (), "lr_milestones", minimum=1)
        self.lr = check_positive(lr, "lr")
        self.momentum = check_non_negative(momentum, "momentum")
        self.weight_decay = check_non_negative(weight_decay, "weight_decay")
        self._max_epochs = check_int(max_epochs, "max_epochs", minimum=1, optional=True)
        self.backbone, self.feature_dim = resolve_backbone(backbone, feature_dim)

    @property
    def max_epochs(self) -> int:
        """Epochs of the schedules: the argument, else the trainer's ``max_epochs``, else 10."""
        if self._max_epochs is not None:
            return self._max_epochs
        trainer = self._trainer
        if trainer is not None and trainer.max_epochs is not None and trainer.max_epochs > 0:
            return int(trainer.max_epochs)
        return 10  # Lightly's examples train 10 epochs

    def configure_callbacks(self) -> list[pl.Callback]:
        """The callback that advances the loss's temperature schedule, when it has one."""
        # Imported here: the callbacks package imports the adapters, which import the models.
        from lightly_temperature.callbacks.temperature_schedule import TemperatureSchedule
        from lightly_temperature.temperature import temperature_policies

        if any(policy.unit is not None for policy in temperature_policies(self)):
            return [TemperatureSchedule()]
        return []

    def configure_optimizers(self) -> dict[str, Any]:
        """SGD (Lightly's examples: lr 0.06) or AdamW, with a cosine learning-rate decay over
        the epochs, or the paper's step decay (x0.1 at ``lr_milestones``)."""
        params = [p for p in self.parameters() if p.requires_grad]
        if self.optimizer_name == "adamw":
            optimizer: torch.optim.Optimizer = torch.optim.AdamW(
                params, lr=self.lr, weight_decay=self.weight_decay
            )
        else:
            optimizer = torch.optim.SGD(
                params, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay
            )
        if self.lr_milestones:
            scheduler: Any = torch.optim.lr_scheduler.MultiStepLR(
                optimizer, list(self.lr_milestones), gamma=0.1
            )
        else:
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, self.max_epochs)
        return {"optimizer": optimizer, "lr_scheduler": scheduler}
