"""Loss registry: build any of the package's losses (or Lightly's NTXentLoss) by name.

Built-in names: ``"ntxent"`` (Lightly's own :class:`lightly.loss.NTXentLoss`, reused as is),
``"contrastive"`` (:class:`ContrastiveLoss`: the same loss, also over a memory bank indexed by
sample), ``"hard_contrastive"``, ``"simple"``, ``"hard_simple"``, ``"hcl"`` (:class:`HCLLoss`),
``"debiased"`` (:class:`DebiasedContrastiveLoss`), and Lightly's own ``"dcl"``, ``"dclw"`` and
``"macl"`` (:class:`lightly.loss.DCLLoss`, ``DCLWLoss``, ``MACLLoss``: in-batch negatives only,
no memory bank; MACL does not gather across processes; with a temperature policy ``"dcl"``
and ``"dclw"`` build :class:`DecoupledContrastiveLoss`). Names are matched case-insensitively
and ``-`` counts as ``_`` (``"hard-contrastive"`` works on a command line).

Other packages add losses in two ways:

- at run time, with :func:`register_loss` (also usable as a class decorator);
- without any import, through the Python entry-point group ``lightly_temperature.losses``
  declared in their ``pyproject.toml``::

      [project.entry-points."lightly_temperature.losses"]
      my_loss = "my_package.losses:MyLoss"

  An entry point is loaded only when its name is first asked for, so a broken plugin never
  breaks the built-in losses.

Example:
    >>> from lightly_temperature import build_loss
    >>> criterion = build_loss("hard_contrastive", temperature=0.3, hard_negatives=0.0819)
    >>> criterion = build_loss("ntxent", memory_bank_size=(4096, 128))  # Lightly's class

Every name takes ``temperature=`` as a number; the package's losses also take a policy of
:mod:`lightly_temperature.temperature`, and so do ``"ntxent"`` (then built as the equal
``HardContrastiveLoss(hard_negatives=None)``), ``"dcl"`` and ``"dclw"`` (then built as the
equal :class:`DecoupledContrastiveLoss`, ``"dclw"`` with ``weight_sigma=sigma``). With a
number these names build Lightly's own classes. ``"macl"`` takes a number only: MACL's τ is
already adaptive, and ``AdaptiveTemperature`` with ``"ntxent"`` or ``"hard_contrastive"`` is
its rule as a policy.
"""

from __future__ import annotations

import inspect
import sys
from importlib import metadata
from typing import Any, Callable, TypeVar

from lightly.loss import DCLLoss, DCLWLoss, MACLLoss, NTXentLoss
from torch import nn

from lightly_temperature.losses import (
    ContrastiveLoss,
    DebiasedContrastiveLoss,
    DecoupledContrastiveLoss,
    HardContrastiveLoss,
    HardSimpleLoss,
    HCLLoss,
    LossCapabilities,
    PairwiseLoss,
    SimpleLoss,
)
from lightly_temperature.temperature import TemperaturePolicy

#: Entry-point group through which other packages register losses.
ENTRY_POINT_GROUP = "lightly_temperature.losses"

LossFactory = Callable[..., nn.Module]
F = TypeVar("F", bound=LossFactory)

_BUILTIN: dict[str, LossFactory] = {
    "ntxent": NTXentLoss,
    "contrastive": ContrastiveLoss,
    "hard_contrastive": HardContrastiveLoss,
    "simple": SimpleLoss,
    "hard_simple": HardSimpleLoss,
    "hcl": HCLLoss,
    "debiased": DebiasedContrastiveLoss,
    "dcl": DCLLoss,
    "dclw": DCLWLoss,
    "macl": MACLLoss,
}
#: What Lightly's loss classes take, declared here since they declare nothing themselves.
_LIGHTLY_CAPABILITIES: dict[type, LossCapabilities] = {
    NTXentLoss: LossCapabilities(softmax_temperature=True, hard_negatives=False),
    # Decoupled contrastive losses: in-batch negatives, gathered with gather_distributed.
    DCLLoss: LossCapabilities(hard_negatives=False, memory_bank=False),
    DCLWLoss: LossCapabilities(hard_negatives=False, memory_bank=False),
    # Model-aware contrastive loss: its temperature is the base of an adaptive one.
    MACLLoss: LossCapabilities(hard_negatives=False, memory_bank=False, gather_distributed=False),
}
_registered: dict[str, LossFactory] = {}


def _ntxent_with_policy(
    temperature: TemperaturePolicy,
    memory_bank_size: int | tuple[int, int] = 0,
    gather_distributed: bool = False,
) -> nn.Module:
    """``"ntxent"`` with a temperature policy: the same loss as Lightly's ``NTXentLoss``
    (tested equal), computed by this package, which takes the policy."""
    return HardContrastiveLoss(temperature, memory_bank_size, gather_distributed, None)


def _dcl_with_policy(temperature: TemperaturePolicy, gather_distributed: bool = False) -> nn.Module:
    """``"dcl"`` with a temperature policy: the same loss as Lightly's ``DCLLoss`` (tested
    equal), computed by this package, which takes the policy."""
    return DecoupledContrastiveLoss(temperature, None, gather_distributed)


def _dclw_with_policy(
    temperature: TemperaturePolicy, sigma: float = 0.5, gather_distributed: bool = False
) -> nn.Module:
    """``"dclw"`` with a temperature policy: the same loss as Lightly's ``DCLWLoss`` (tested
    equal, ``sigma`` its weights' σ), computed by this package, which takes the policy."""
    return DecoupledContrastiveLoss(temperature, sigma, gather_distributed)


#: Lightly's classes that a loss of this package equals: that class, and its builder with
#: Lightly's arguments, used instead when ``temperature=`` is a policy.
_WITH_POLICY: dict[type, tuple[type[PairwiseLoss], LossFactory]] = {
    NTXentLoss: (HardContrastiveLoss, _ntxent_with_policy),
    DCLLoss: (DecoupledContrastiveLoss, _dcl_with_policy),
    DCLWLoss: (DecoupledContrastiveLoss, _dclw_with_policy),
}


def _normalize(name: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"loss name must be a non-empty string, got {name!r}")
    return name.strip().lower().replace("-", "_")


def _entry_points() -> list[metadata.EntryPoint]:
    """The entry points of the ``lightly_temperature.losses`` group (Python 3.9 compatible)."""
    if sys.version_info >= (3, 10):
        return list(metadata.entry_points(group=ENTRY_POINT_GROUP))
    return list(metadata.entry_points().get(ENTRY_POINT_GROUP, []))  # pragma: no cover


def _plugin_entry_points() -> dict[str, metadata.EntryPoint]:
    # Built-in and run-time registered names take precedence over plugins.
    found: dict[str, metadata.EntryPoint] = {}
    for entry_point in _entry_points():
        name = _normalize(entry_point.name)
        if name not in _BUILTIN and name not in _registered:
            found.setdefault(name, entry_point)
    return found


def available_losses() -> list[str]:
    """Sorted names of all losses: built-in, registered and declared by plugins."""
    return sorted({*_BUILTIN, *_registered, *_plugin_entry_points()})


def register_loss(name: str, loss: F | None = None, *, overwrite: bool = False) -> Any:
    """Registers a loss class (or any callable returning an ``nn.Module``) under ``name``.

    Usable as a function or as a decorator. The loss should take NTXentLoss's arguments
    (``temperature``, ``memory_bank_size``, ``gather_distributed``) so that :func:`use_loss`
    can carry them over, and compute ``forward(out0, out1)``.

    Args:
        name: the registry name; case-insensitive, ``-`` equals ``_``.
        loss: the class or factory. Omit it to use ``register_loss`` as a decorator.
        overwrite: allow replacing a name registered before (never a built-in name).

    Example:
        >>> @register_loss("my_loss")
        ... class MyLoss(HardContrastiveLoss):
        ...     pass
        >>> build_loss("my_loss", temperature=0.2)
    """
    key = _normalize(name)

    def _register(factory: F) -> F:
        if not callable(factory):
            raise ValueError(
                f"register_loss({name!r}, ...) needs a loss class or callable, got {factory!r}"
            )
        if key in _BUILTIN:
            raise ValueError(
                f"loss name {name!r} is built in and cannot be replaced; choose another name"
            )
        if key in _registered and not overwrite and _registered[key] is not factory:
            raise ValueError(
                f"loss name {name!r} is already registered to {_registered[key]!r}; "
                "pass overwrite=True to replace it"
            )
        _registered[key] = factory
        return factory

    if loss is None:
        return _register
    return _register(loss)


def unregister_loss(name: str) -> None:
    """Removes a loss registered with :func:`register_loss` (built-ins cannot be removed)."""
    key = _normalize(name)
    if key not in _registered:
        raise ValueError(
            f"loss name {name!r} was not registered with register_loss; "
            f"registered: {sorted(_registered) or 'none'}"
        )
    del _registered[key]


def get_loss_class(name: str) -> LossFactory:
    """The class (or factory) registered under ``name``; loads a plugin's entry point if needed."""
    key = _normalize(name)
    if key in _BUILTIN:
        return _BUILTIN[key]
    if key in _registered:
        return _registered[key]
    plugins = _plugin_entry_points()
    if key not in plugins:
        known = sorted({*_BUILTIN, *_registered, *plugins})
        raise ValueError(f"unknown loss {name!r}; known losses: {', '.join(known)}")
    entry_point = plugins[key]
    try:
        factory = entry_point.load()
    except Exception as error:  # a plugin's import error, shown with its origin
        raise ValueError(
            f"loss {name!r} comes from the entry point '{entry_point.name} = "
            f"{entry_point.value}' (group {ENTRY_POINT_GROUP!r}), which failed to load: "
            f"{type(error).__name__}: {error}"
        ) from error
    if not callable(factory):
        raise ValueError(
            f"entry point '{entry_point.name} = {entry_point.value}' (group "
            f"{ENTRY_POINT_GROUP!r}) must point to a loss class or callable, got {factory!r}"
        )
    _registered[key] = factory  # cache: later look-ups skip the entry-point scan
    return factory


def loss_parameters(factory: LossFactory) -> list[str] | None:
    """Keyword arguments ``factory`` accepts, or ``None`` if it takes ``**kwargs``."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        return None
    names = []
    for parameter in signature.parameters.values():
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            return None
        if parameter.kind in (
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            inspect.Parameter.KEYWORD_ONLY,
        ):
            names.append(parameter.name)
    return names


def loss_capabilities(loss: str | LossFactory | nn.Module) -> LossCapabilities:
    """What the loss named ``loss`` (or this class, factory or instance) takes and what its
    temperature means.

    A class's own ``capabilities`` declaration wins (every loss of this package has one).
    Lightly's ``NTXentLoss`` is a softmax-temperature loss with a memory bank and gathering;
    its ``DCLLoss`` and ``DCLWLoss`` gather but have no memory bank; its ``MACLLoss`` has
    neither.
    Any other factory is read from its signature: a softmax temperature, and the
    ``hard_negatives`` / ``memory_bank_size`` / ``gather_distributed`` arguments it takes.

    Example:
        >>> loss_capabilities("hard_simple")
        LossCapabilities(softmax_temperature=False, hard_negatives=True, memory_bank=True, \
gather_distributed=True, sample_indices=True, sample_memory_bank=True)
    """
    factory = get_loss_class(loss) if isinstance(loss, str) else loss
    declared = getattr(factory, "capabilities", None)
    if isinstance(declared, LossCapabilities):
        return declared
    cls = type(factory) if isinstance(factory, nn.Module) else factory
    if isinstance(cls, type):
        for lightly_class, capabilities in _LIGHTLY_CAPABILITIES.items():
            if issubclass(cls, lightly_class):
                return capabilities
    if isinstance(factory, nn.Module):
        factory = type(factory)
    accepted = loss_parameters(factory)
    if accepted is None:  # **kwargs: it may take anything
        return LossCapabilities(hard_negatives=True)
    return LossCapabilities(
        softmax_temperature=True,
        hard_negatives="hard_negatives" in accepted,
        memory_bank="memory_bank_size" in accepted,
        gather_distributed="gather_distributed" in accepted,
        sample_indices=_forward_takes_indices(factory),
        sample_memory_bank="sample_memory_bank" in accepted,
    )


def takes_temperature_policy(name: str, per_sample: bool = False) -> bool:
    """Whether the loss named ``name`` takes a policy of :mod:`lightly_temperature.temperature`
    as ``temperature=``: the package's losses, ``"ntxent"``, ``"dcl"`` and ``"dclw"`` (built
    as the package's equal losses), not ``"macl"`` (its τ is already adaptive), nor a plugin
    that is not a ``PairwiseLoss``.

    ``per_sample=True``: whether it takes a per-sample policy (``IndividualTemperature``),
    which needs a softmax temperature and the batch's sample indices (not DCL's losses).
    """
    factory = get_loss_class(name)
    if factory in _WITH_POLICY:
        factory = _WITH_POLICY[factory][0]
    if not (isinstance(factory, type) and issubclass(factory, PairwiseLoss)):
        return False
    if per_sample:
        capabilities = factory.capabilities
        return capabilities.softmax_temperature and capabilities.sample_indices
    return True


def _forward_takes_indices(factory: Any) -> bool:
    forward = getattr(factory, "forward", None)
    if forward is None:
        return False
    try:
        return "indices" in inspect.signature(forward).parameters
    except (TypeError, ValueError):
        return False


def build_loss(name: str, **kwargs: Any) -> nn.Module:
    """Builds the loss registered under ``name`` with the given keyword arguments.

    Raises:
        ValueError: for an unknown name (the message lists the known ones), for an argument
            the loss does not take (the message lists those it does), or for a bad value.

    Example:
        >>> criterion = build_loss("hard_simple", memory_bank_size=(4096, 128), hard_negatives=409)
    """
    factory = get_loss_class(name)
    policy = kwargs.get("temperature")
    if isinstance(policy, TemperaturePolicy) and factory in _LIGHTLY_CAPABILITIES:
        if factory is MACLLoss:
            raise ValueError(
                f"temperature={type(policy).__name__}: Lightly's MACLLoss ({name!r}) takes a "
                "number, the base τ0 of its own adaptive temperature; for MACL's rule as a "
                "policy use temperature=AdaptiveTemperature(...) with 'ntxent' or "
                "'hard_contrastive'"
            )
        # Lightly's NTXentLoss, DCLLoss and DCLWLoss are losses of this package, which take
        # a policy.
        factory = _WITH_POLICY[factory][1]
    accepted = loss_parameters(factory)
    if accepted is not None:
        unknown = sorted(set(kwargs) - set(accepted))
        if unknown:
            raise ValueError(
                f"loss {name!r} does not take the argument(s) {', '.join(unknown)}; "
                f"it takes: {', '.join(accepted) or 'no arguments'}"
            )
    loss = factory(**kwargs)
    if not isinstance(loss, nn.Module):
        raise ValueError(
            f"loss {name!r} must build a torch.nn.Module, its factory returned "
            f"{type(loss).__name__}"
        )
    return loss
