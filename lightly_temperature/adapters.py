"""``use_loss``: switch the NTXentLoss of a module the user already wrote to another loss.

A Lightly SimCLR or MoCo module holds its loss as a submodule (``self.criterion =
NTXentLoss(...)`` in Lightly's examples). :func:`use_loss` finds that loss, builds the named
loss from the registry with the same settings and puts it in its place, so that switching
loss is one line after the model is built::

    model = use_loss(MoCo(), "hard_contrastive", hard_negatives=0.0819)

Carried over from the loss found (explicit ``overrides`` always win):

- ``temperature``, when both losses declare a softmax temperature
  (:class:`~lightly_temperature.losses.LossCapabilities`). A Simple loss's temperature only
  rescales the loss (it multiplies the gradient by 1/tau): carrying NTXent's 0.5 over would
  silently double the learning rate, and its 1.0 is no softmax temperature for the loss that
  replaces it. Such a temperature is not carried: the new loss keeps its own default unless
  ``temperature=`` is passed;
- ``memory_bank_size`` as Lightly's ``(entries, dim)`` tuple (``0`` without a bank);
- ``gather_distributed``.

The new loss starts with a fresh memory bank, on the device of the old one: switch before
training.
"""

from __future__ import annotations

from typing import Any

from lightly.loss import NTXentLoss
from torch import nn

from lightly_temperature.losses import PairwiseLoss
from lightly_temperature.registry import (
    build_loss,
    get_loss_class,
    loss_capabilities,
    loss_parameters,
)

#: Loss types ``use_loss`` (and ``HardnessMonitor``) recognise: Lightly's and this package's.
REPLACEABLE = (NTXentLoss, PairwiseLoss)


def _describe(module: nn.Module) -> str:
    children = [name for name, _ in module.named_children()]
    nested = sum(1 for name, _ in module.named_modules() if name) - len(children)
    if not children:
        return "it has no submodule attributes"
    return f"looked at the attributes {', '.join(children)} and their {nested} nested submodules"


def find_loss(module: nn.Module, caller: str = "use_loss") -> tuple[nn.Module, list[str]]:
    """The single NTXentLoss (or package loss) ``module`` holds and the paths that hold it.

    Searches the module's attributes and submodules at any depth (``criterion``,
    ``model.loss_fn``, ...). The same loss object held under several names counts once.
    ``caller`` names who is looking, in the error messages.

    Raises:
        ValueError: when no such loss, or more than one, is found; the message names the
            attributes looked at (or the ones holding a loss).
    """
    if not isinstance(module, nn.Module):
        raise ValueError(
            f"{caller} needs a torch.nn.Module (e.g. a LightningModule), got "
            f"{type(module).__name__}"
        )
    found: dict[int, tuple[nn.Module, list[str]]] = {}
    for path, sub in module.named_modules(remove_duplicate=False):
        if path and isinstance(sub, REPLACEABLE):
            found.setdefault(id(sub), (sub, []))[1].append(path)
    losses = list(found.values())
    if not losses:
        raise ValueError(
            f"{caller} found no NTXentLoss or lightly_temperature loss in "
            f"{type(module).__name__}: {_describe(module)}. "
            "Assign the loss as a submodule, e.g. self.criterion = NTXentLoss()"
        )
    if len(losses) > 1:
        where = "; ".join(f"{', '.join(paths)} ({type(loss).__name__})" for loss, paths in losses)
        raise ValueError(
            f"{caller} found {len(losses)} losses in {type(module).__name__}: {where}. "
            "It needs exactly one: call it on the submodule that holds the loss, or pass the "
            "loss itself"
        )
    return losses[0]


def loss_settings(loss: nn.Module) -> dict[str, Any]:
    """The NTXentLoss-style settings of ``loss``: temperature, memory bank size, gathering."""
    size = tuple(int(s) for s in loss.memory_bank.size)
    settings: dict[str, Any] = {
        "temperature": loss.temperature,
        "memory_bank_size": 0 if size[0] == 0 else size,
        "gather_distributed": bool(loss.gather_distributed),
    }
    return settings


def use_loss(module: nn.Module, name: str, **overrides: Any) -> nn.Module:
    """Replaces the NTXentLoss held by ``module`` by the loss registered as ``name``.

    Args:
        module: a module holding exactly one ``lightly.loss.NTXentLoss`` (or a loss of this
            package, so that one can switch again), at any depth.
        name: a registry name (:func:`lightly_temperature.registry.available_losses`).
        **overrides: arguments of the new loss; they win over the carried-over settings.

    Returns:
        ``module`` itself, modified in place.

    Raises:
        ValueError: no loss or several losses found, unknown ``name``, an override the loss
            does not take, or a memory bank (MoCo's or one indexed by sample) / distributed
            gathering the new loss cannot take. A memory bank indexed by sample is carried
            over as it is (the same ``SampleMemoryBank``, its entries kept).

    Example:
        >>> model = SimCLRModel()  # self.criterion = NTXentLoss(temperature=0.3)
        >>> model = use_loss(model, "hard_contrastive", hard_negatives=0.0819)
        >>> model.criterion
        HardContrastiveLoss()  # temperature 0.3 carried over
    """
    old, paths = find_loss(module)
    factory = get_loss_class(name)
    accepted = loss_parameters(factory)
    capabilities = loss_capabilities(factory)
    # What the new loss's class declares it takes. A temperature that only rescales a loss is
    # no softmax temperature, in either direction (see the module docstring).
    takes = {
        "temperature": capabilities.softmax_temperature
        and loss_capabilities(old).softmax_temperature,
        "memory_bank_size": capabilities.memory_bank,
        "gather_distributed": capabilities.gather_distributed,
    }
    kwargs: dict[str, Any] = {}
    for key, value in loss_settings(old).items():
        if takes[key] and (accepted is None or key in accepted):
            kwargs[key] = value
        elif key == "memory_bank_size" and value != 0:
            raise ValueError(
                f"the loss in {paths[0]} uses a memory bank of size {value} but loss {name!r} "
                "takes no memory_bank_size argument"
            )
        elif key == "gather_distributed" and value:
            raise ValueError(
                f"the loss in {paths[0]} gathers negatives across processes "
                f"(gather_distributed=True) but loss {name!r} takes no gather_distributed argument"
            )
    sample_bank = getattr(old, "sample_memory_bank", None)
    if sample_bank is not None:
        # The same bank (its entries are the training state), or an error: never dropped.
        if not capabilities.sample_memory_bank:
            raise ValueError(
                f"the loss in {paths[0]} draws its negatives from a memory bank indexed by "
                f"sample but loss {name!r} takes no sample_memory_bank argument"
            )
        kwargs["sample_memory_bank"] = sample_bank
    kwargs.update(overrides)
    new = build_loss(name, **kwargs)
    bank = getattr(getattr(old, "memory_bank", None), "bank", None)
    if bank is not None:
        new.to(bank.device)
    for path in paths:
        parent_path, _, attribute = path.rpartition(".")
        parent = module.get_submodule(parent_path) if parent_path else module
        setattr(parent, attribute, new)
    return module
