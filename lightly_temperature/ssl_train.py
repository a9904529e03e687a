"""``lightly-temperature ssl-train``: Lightly's ``lightly-ssl-train`` with a loss of this package.

Lightly's command (``lightly.cli.train_cli``, a Hydra app) builds its loss with
``NTXentLoss(**cfg.criterion)``. This command runs that same app, with Lightly's configuration,
overrides and outputs, and two patch points held only while it runs:

- ``lightly.cli.train_cli.NTXentLoss`` becomes :func:`build_criterion`, so ``criterion.loss``
  picks a loss of the registry and the other ``criterion.*`` keys are its arguments;
- with ``temperature_analysis=true``, ``lightly.embedding._base.Trainer`` (the Trainer Lightly's
  pipeline builds) gets :class:`~lightly_temperature.TemperatureAnalysis` and
  :class:`~lightly_temperature.HardnessMonitor` as extra callbacks.

Everything the user can get wrong in these keys is checked before Lightly's app starts: the
configuration is composed with Hydra from the same overrides and its loss built (Lightly's app
then builds it again, through :func:`build_criterion`, from the configuration it composes).
Training runs on one device: ``trainer.gpus`` > 1 is refused (see :func:`prepare`).

Example:
    $ lightly-ssl-train input_dir=images/ pre_trained=False trainer.max_epochs=10
    $ lightly-temperature ssl-train input_dir=images/ pre_trained=False trainer.max_epochs=10 \\
        criterion.loss=hard_contrastive criterion.hard_negatives=0.0819 temperature_analysis=true
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple

from torch import Tensor, nn

from lightly_temperature._validation import check_positive
from lightly_temperature.registry import build_loss, get_loss_class, loss_parameters

#: Lightly's module whose ``NTXentLoss`` name builds the criterion, and the module whose
#: ``Trainer`` name builds the trainer: the two patch points.
LIGHTLY_TRAIN_MODULE = "lightly.cli.train_cli"
LIGHTLY_TRAINER_MODULE = "lightly.embedding._base"
#: The key of this command that is not Lightly's; ``criterion.loss`` is the other.
ANALYSIS_KEY = "temperature_analysis"
#: The loss when ``criterion.loss`` is not given: Lightly's own.
DEFAULT_LOSS = "ntxent"


def split_overrides(overrides: Sequence[str]) -> tuple[list[str], bool]:
    """Lightly's Hydra overrides and whether ``temperature_analysis=true`` was among them.

    ``temperature_analysis`` is removed (Lightly's configuration has no such key).
    """
    lightly_overrides, analysis = [], False
    for override in overrides:
        key, _, value = override.partition("=")
        if key.lstrip("+~") != ANALYSIS_KEY:
            lightly_overrides.append(override)
            continue
        if value.strip().lower() not in ("true", "false"):
            raise ValueError(f"{ANALYSIS_KEY} must be true or false, got {value!r}")
        analysis = value.strip().lower() == "true"
    return lightly_overrides, analysis


def criterion_keys_given(overrides: Sequence[str]) -> set[str]:
    """The ``criterion.*`` keys the overrides set (``criterion.loss=x`` gives ``loss``)."""
    keys = set()
    for override in overrides:
        key = override.partition("=")[0].lstrip("+~")
        if key.startswith("criterion."):
            keys.add(key[len("criterion.") :])
    return keys


def hydra_overrides(overrides: Sequence[str], lightly_criterion: Mapping[str, Any]) -> list[str]:
    """The overrides with ``+`` before ``criterion.*`` keys Lightly's configuration lacks
    (``criterion.loss``, ``criterion.hard_negatives``, ...): Hydra appends those."""
    result = []
    for override in overrides:
        key = override.partition("=")[0]
        if key.startswith("criterion.") and key[len("criterion.") :] not in lightly_criterion:
            override = "+" + override
        result.append(override)
    return result


def build_criterion(criterion: Mapping[str, Any], given: set[str] | None = None) -> nn.Module:
    """The loss of Lightly's ``criterion`` namespace: ``loss`` names it (default ``ntxent``),
    the other keys are its arguments.

    Lightly's own keys (``temperature``, ``memory_bank_size``) that the user did not set
    (not in ``given``) are passed only to a loss that takes them: ``criterion.loss=dcl`` works
    without ``memory_bank_size``, while ``criterion.memory_bank_size=4096`` with it is an error.

    Raises:
        ValueError: an unknown loss, an argument it does not take, a bad value (the message
            names it).
    """
    settings = dict(criterion)
    name = settings.pop("loss", DEFAULT_LOSS)
    if "temperature" in settings:  # Lightly's NTXentLoss takes a negative one silently
        check_positive(settings["temperature"], "temperature")
    accepted = loss_parameters(get_loss_class(name))
    if accepted is not None:
        given = set(settings) if given is None else given
        settings = {k: v for k, v in settings.items() if k in given or k in accepted}
    return build_loss(name, **settings)


def _compose(overrides: Sequence[str]) -> Any:
    """Lightly's configuration with ``overrides``, composed by Hydra as ``lightly-ssl-train``
    composes it (no run directory, no output)."""
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="lightly.cli.config", version_base=None):
        return compose(config_name="config", overrides=list(overrides))


class Prepared(NamedTuple):
    """The command's arguments, checked."""

    #: Lightly's Hydra overrides (``+`` added before the criterion keys Lightly lacks).
    overrides: list[str]
    #: Whether to attach the analysis callbacks.
    analysis: bool
    #: Lightly's configuration composed from ``overrides``.
    config: Any
    #: The loss that configuration builds.
    criterion: nn.Module


def prepare(overrides: Sequence[str]) -> Prepared:
    """Checks the command's arguments before anything trains.

    Raises:
        ValueError: with one line naming the bad key or value.
    """
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    lightly_overrides, analysis = split_overrides(overrides)
    try:
        lightly_criterion = OmegaConf.to_container(_compose([]).criterion)
        lightly_overrides = hydra_overrides(lightly_overrides, lightly_criterion)
        config = _compose(lightly_overrides)
    except (HydraException, OmegaConfBaseException) as error:
        message = str(error).strip().splitlines()[0]
        override = getattr(error, "override", None)  # a parse error: name the override
        raise ValueError(f"{override}: {message}" if override else message) from None
    input_dir = config.input_dir
    if not input_dir:
        raise ValueError("input_dir is required: input_dir=path/to/images")
    if not os.path.isdir(input_dir):
        raise ValueError(f"input_dir={input_dir}: not a folder")
    _check_one_device(config)
    given = criterion_keys_given(lightly_overrides)
    try:
        criterion = build_criterion(OmegaConf.to_container(config.criterion), given)
    except ValueError as error:
        raise ValueError(f"criterion: {error}") from None
    _check_patch_points()
    return Prepared(lightly_overrides, analysis, config, criterion)


def _check_one_device(config: Any) -> None:
    """Lightly trains with DDP when ``trainer.gpus > 1`` and CUDA is there; Lightning then
    starts the other processes by running the command line again, under Hydra, which would
    run Lightly's own command without this one's loss."""
    import torch

    gpus = config.trainer.get("gpus", 0) or 0
    if isinstance(gpus, int) and gpus > 1 and torch.cuda.is_available():
        raise ValueError(
            f"trainer.gpus={gpus}: ssl-train trains on one device (Lightly's multi-GPU launch "
            "runs the command line again, without this command's loss); use trainer.gpus=1"
        )


def _check_patch_points() -> None:
    """The installed Lightly has the names this command replaces."""
    import importlib

    import lightly

    for module_name, name in (
        (LIGHTLY_TRAIN_MODULE, "NTXentLoss"),
        (LIGHTLY_TRAINER_MODULE, "Trainer"),
    ):
        module = importlib.import_module(module_name)
        if not hasattr(module, name):
            raise ValueError(
                f"the installed Lightly {lightly.__version__} has no {module_name}.{name}, "
                "which ssl-train replaces: use lightly-ssl-train itself with this version"
            )


def lightly_cli_embed(module: nn.Module, images: Tensor) -> Tensor:
    """Projections of Lightly's command-line SimCLR model (``_SimCLR``: ``model(x0)`` alone
    gives the projection of ``x0``), what its loss compares."""
    return module.model(images)


class _DropLabels:
    """Collates as Lightly's ``MultiViewCollate`` and drops the labels: a folder without
    subfolders has none (Lightly gives every image label 0)."""

    def __init__(self, collate: Any) -> None:
        self.collate = collate

    def __call__(self, items: list[Any]) -> tuple[Any, Any]:
        views, _, filenames = self.collate(items)
        return views, filenames


def probe_loader(config: Any) -> Any:
    """The images of ``input_dir`` with Lightly's training augmentation (two views), labels
    when the folder has class subfolders, for :class:`TemperatureAnalysis`."""
    from lightly.data import LightlyDataset, MultiViewCollate
    from lightly.transforms import SimCLRTransform
    from omegaconf import OmegaConf
    from torch.utils.data import DataLoader
    from torchvision.datasets import ImageFolder

    collate_settings = OmegaConf.to_container(config.collate)
    dataset = LightlyDataset(config.input_dir, transform=SimCLRTransform(**collate_settings))
    collate: Any = MultiViewCollate()
    if not isinstance(dataset.dataset, ImageFolder):
        collate = _DropLabels(collate)
    batch_size = max(1, min(int(config.loader.batch_size), len(dataset)))
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate)


@contextlib.contextmanager
def patched_lightly(given: set[str], callbacks: Sequence[Any] = ()) -> Iterator[None]:
    """While inside, Lightly's training command builds its loss with :func:`build_criterion`
    (``given``: the ``criterion.*`` keys the user set) and its trainer gets ``callbacks``
    besides its own."""
    import importlib
    from unittest import mock

    train_module = importlib.import_module(LIGHTLY_TRAIN_MODULE)
    trainer_module = importlib.import_module(LIGHTLY_TRAINER_MODULE)
    lightly_trainer = trainer_module.Trainer

    def loss_of_the_config(**settings: Any) -> nn.Module:
        return build_criterion(settings, given)

    def trainer_with_callbacks(*args: Any, **kwargs: Any) -> Any:
        kwargs["callbacks"] = [*(kwargs.get("callbacks") or []), *callbacks]
        return lightly_trainer(*args, **kwargs)

    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch.object(train_module, "NTXentLoss", loss_of_the_config))
        if callbacks:
            stack.enter_context(
                mock.patch.object(trainer_module, "Trainer", trainer_with_callbacks)
            )
        yield


def run(prepared: Prepared, prog: str = "lightly-temperature ssl-train") -> None:
    """Runs Lightly's training command on the arguments :func:`prepare` checked."""
    import importlib

    lightly_overrides, analysis, config, criterion = prepared
    callbacks: list[Any] = []
    if analysis:
        from lightly_temperature.callbacks import HardnessMonitor, TemperatureAnalysis

        callbacks = [
            TemperatureAnalysis(probe_loader(config), embed=lightly_cli_embed),
            HardnessMonitor(),
        ]
    print(f"criterion: {criterion}", flush=True)
    train_module = importlib.import_module(LIGHTLY_TRAIN_MODULE)
    argv = sys.argv
    sys.argv = [prog, *lightly_overrides]  # Hydra reads the command line
    try:
        with patched_lightly(criterion_keys_given(lightly_overrides), callbacks):
            train_module.train_cli()
    finally:
        sys.argv = argv
