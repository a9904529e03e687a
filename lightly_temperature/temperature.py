"""Temperature policies: what τ a loss uses at each step, as one small module per policy.

Every loss of the package takes ``temperature=`` as a number (a constant τ) or as one of
these policies. A policy is an ``nn.Module`` held by the loss, so that its parameters are in
the loss's ``parameters()`` (a learnable τ is trained by the user's optimizer) and its state
in the ``state_dict`` (a checkpoint resumes it exactly). ``policy.value`` is the τ in force:
a float, a 0-d tensor, or one τ per training sample.

- :class:`ConstantTemperature`: a fixed τ (what a number means).
- :class:`CosineTemperature`: τ oscillating between τ_min and τ_max (Kukleva et al., 2023).
- :class:`LearnableTemperature`: a log-parameterised τ trained with the model (CLIP).
- :class:`AdaptiveTemperature`: τ following the batch's alignment (MACL, Huang et al., 2023).
- :class:`IndividualTemperature`: one τ per training sample, updated as in iSogCLR (Qiu et al.,
  2023); ``forward`` then takes the batch's sample indices.

A schedule advances with :meth:`TemperaturePolicy.step` (one call per epoch or optimizer
step, its ``unit``). Under Lightning the ready ``SimCLR`` and ``MoCo`` modules do it by
themselves; any other module gets it from the
:class:`~lightly_temperature.callbacks.TemperatureSchedule` callback. No policy reads a value
back to the host during training.

Example:
    >>> from lightly_temperature import HardContrastiveLoss
    >>> from lightly_temperature.temperature import CosineTemperature
    >>> loss_fn = HardContrastiveLoss(temperature=CosineTemperature(0.1, 1.0, period=400))
    >>> loss = loss_fn(out0, out1)
    >>> loss_fn.temperature.step()  # in a plain loop: once per epoch (the unit)
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch import distributed as torch_dist

from lightly_temperature._validation import (
    check_choice,
    check_indices,
    check_int,
    check_non_negative,
    check_positive,
    check_unit_interval,
)

#: What a schedule counts: epochs or optimizer steps.
UNITS = ("epoch", "step")


def check_bounds(tau_min: float, tau_max: float) -> tuple[float, float]:
    """``0 < tau_min < tau_max``, both finite; ValueError naming the argument otherwise."""
    tau_min = check_positive(tau_min, "tau_min")
    tau_max = check_positive(tau_max, "tau_max")
    if tau_min >= tau_max:
        raise ValueError(f"tau_min must be < tau_max, got tau_min={tau_min!r} >= {tau_max!r}")
    return tau_min, tau_max


def _check_within(value: float, name: str, tau_min: float, tau_max: float) -> float:
    value = check_positive(value, name)
    if not tau_min <= value <= tau_max:
        raise ValueError(
            f"{name} must be in [tau_min, tau_max] = [{tau_min}, {tau_max}], got {value!r}"
        )
    return value


class TemperaturePolicy(nn.Module):
    """Base class of the policies: the τ of each loss call.

    A loss calls ``policy(positive, anchor_indices, num_negatives, gather_distributed)``
    before its reduction and :meth:`observe_losses` with the per-anchor losses after it.

    Attributes:
        per_sample: the policy keeps one τ per training sample (``forward`` needs indices).
        unit: what :meth:`step` counts (``"epoch"`` or ``"step"``); ``None`` when nothing
            advances.
    """

    per_sample: ClassVar[bool] = False
    unit: str | None = None

    @property
    def value(self) -> float | Tensor:
        """The τ in force: a float, a 0-d tensor, or ``(num_samples,)`` for a per-sample τ."""
        raise NotImplementedError

    def anchor_temperature(
        self,
        positive: Tensor,
        anchor_indices: Tensor | None = None,
        gather_distributed: bool = False,
    ) -> float | Tensor:
        """The τ of a call's anchors, without changing the policy (what a monitor reads).

        Args:
            positive: ``(A,)`` cosine similarity of each anchor to its positive.
            anchor_indices: ``(A,)`` training-sample index of each anchor, or ``None``.
            gather_distributed: the loss gathers across processes.

        Returns:
            A number, a 0-d tensor, or an ``(A,)`` tensor (one τ per anchor).
        """
        return self.value

    def forward(
        self,
        positive: Tensor,
        anchor_indices: Tensor | None = None,
        num_negatives: int = 1,
        gather_distributed: bool = False,
    ) -> float | Tensor:
        """The τ the loss uses for this call (see :meth:`anchor_temperature`)."""
        return self.anchor_temperature(positive, anchor_indices, gather_distributed)

    def observe_losses(self, per_anchor: Tensor) -> None:
        """Receives the call's ``(A,)`` per-anchor losses (a per-sample τ updates from them)."""

    def step(self) -> None:
        """Advances a schedule by one ``unit``; nothing for a policy without one."""

    def set_position(self, position: int) -> None:
        """Sets a schedule's position (epochs or optimizer steps done); nothing otherwise."""


class ConstantTemperature(TemperaturePolicy):
    """A fixed τ: what ``temperature=value`` means.

    Example:
        >>> loss_fn = HardContrastiveLoss(temperature=ConstantTemperature(0.2))
    """

    def __init__(self, value: float = 0.5) -> None:
        super().__init__()
        self._value = check_positive(value, "value")

    @property
    def value(self) -> float:
        return self._value

    def extra_repr(self) -> str:
        return f"value={self._value!r}"


class CosineTemperature(TemperaturePolicy):
    """τ oscillating between ``tau_min`` and ``tau_max`` with the given period.

    Kukleva et al., "Temperature Schedules for Self-Supervised Contrastive Methods on
    Long-Tail Data", ICLR 2023, https://arxiv.org/abs/2303.13664::

        τ(t) = τ_min + (τ_max - τ_min) (1 + cos(2π t / period)) / 2

    with t the epochs (or optimizer steps) done: τ_max at t = 0, τ_min at half a period. This
    is the form of the authors' code, which writes ``cos(π · epoch / t_max)``: their ``t_max``
    is half of ``period`` here (their default ``t_max=200`` is ``period=400``), and they count
    epochs from 1 where ``t`` here counts from 0.

    Args:
        tau_min: lowest τ, > 0.
        tau_max: highest τ, > ``tau_min``.
        period: length of one oscillation, in ``unit``\\ s.
        unit: ``"epoch"`` or ``"step"`` (optimizer steps).

    Example:
        >>> policy = CosineTemperature(tau_min=0.1, tau_max=1.0, period=400)
        >>> loss_fn = HardContrastiveLoss(temperature=policy)
        >>> for epoch in range(epochs):  # a plain loop; Lightning advances it by itself
        ...     train_one_epoch(loss_fn)
        ...     policy.step()
    """

    def __init__(
        self, tau_min: float = 0.1, tau_max: float = 1.0, period: int = 400, unit: str = "epoch"
    ) -> None:
        super().__init__()
        self.tau_min, self.tau_max = check_bounds(tau_min, tau_max)
        self.period = check_int(period, "period", minimum=1)
        self.unit = check_choice(unit, "unit", UNITS)
        self.position = 0  # a host int: the value costs no device read

    def at(self, position: int) -> float:
        """τ after ``position`` units."""
        phase = 2.0 * math.pi * position / self.period
        return self.tau_min + 0.5 * (self.tau_max - self.tau_min) * (1.0 + math.cos(phase))

    @property
    def value(self) -> float:
        return self.at(self.position)

    def step(self) -> None:
        self.position += 1

    def set_position(self, position: int) -> None:
        self.position = check_int(position, "position", minimum=0)

    def get_extra_state(self) -> dict[str, int]:
        return {"position": self.position}

    def set_extra_state(self, state: dict[str, int]) -> None:
        self.position = int(state["position"])

    def extra_repr(self) -> str:
        return (
            f"tau_min={self.tau_min!r}, tau_max={self.tau_max!r}, period={self.period}, "
            f"unit={self.unit!r}, position={self.position}"
        )


class LearnableTemperature(TemperaturePolicy):
    """A τ trained with the model, as CLIP's ``logit_scale``: ``τ = exp(log_temperature)``.

    ``log_temperature`` is an ``nn.Parameter`` of the loss (in its ``parameters()`` and
    ``state_dict``); the user's optimizer trains it with the model. It is projected onto
    ``[log tau_min, log tau_max]`` before every use, so the τ in force never leaves the bounds
    and a parameter pushed past a bound comes back as soon as its gradient turns (a clamp in
    the forward pass alone would leave it stuck outside with a zero gradient).

    Radford et al., "Learning Transferable Visual Models From Natural Language Supervision",
    ICML 2021 (the learned, clamped temperature).

    Args:
        init: τ at the start, in ``[tau_min, tau_max]``.
        tau_min, tau_max: the bounds, ``0 < tau_min < tau_max``.

    Example:
        >>> loss_fn = HardContrastiveLoss(temperature=LearnableTemperature(init=0.07))
        >>> optimizer = torch.optim.SGD([*model.parameters(), *loss_fn.parameters()], lr=0.06)
    """

    def __init__(self, init: float = 0.07, tau_min: float = 0.01, tau_max: float = 1.0) -> None:
        super().__init__()
        self.tau_min, self.tau_max = check_bounds(tau_min, tau_max)
        init = _check_within(init, "init", self.tau_min, self.tau_max)
        self.log_temperature = nn.Parameter(torch.tensor(math.log(init)))

    @property
    def value(self) -> Tensor:
        return (
            self.log_temperature.detach()
            .clamp(math.log(self.tau_min), math.log(self.tau_max))
            .exp()
        )

    def forward(
        self,
        positive: Tensor,
        anchor_indices: Tensor | None = None,
        num_negatives: int = 1,
        gather_distributed: bool = False,
    ) -> Tensor:
        with torch.no_grad():  # the projection onto the bounds: no gradient, no host read
            self.log_temperature.clamp_(math.log(self.tau_min), math.log(self.tau_max))
        return self.log_temperature.exp()

    def extra_repr(self) -> str:
        return f"tau_min={self.tau_min!r}, tau_max={self.tau_max!r}"


class AdaptiveTemperature(TemperaturePolicy):
    """The model-aware temperature of MACL: ``τ = base (1 + alpha (A - a0))``.

    ``A`` is the batch's mean cosine similarity of the anchors to their positives (over every
    process when the loss gathers), taken without gradient: an aligned model gets a higher τ,
    which relaxes the uniformity pressure. This is the temperature of Lightly's ``MACLLoss``
    (whose loss also reweights each anchor by ``1 / (1 - P)``; a loss of this package with
    this policy keeps its own reduction).

    Huang et al., "Model-Aware Contrastive Learning: Towards Escaping the Dilemmas",
    ICML 2023, https://arxiv.org/abs/2207.07874

    Args:
        base: τ0 > 0.
        alpha: α in [0, 1], how much τ follows the alignment.
        a0: A0 in [0, 1], the alignment at which τ = τ0. ``alpha (1 + a0) < 1`` keeps τ > 0
            for any alignment in [-1, 1].

    Example:
        >>> loss_fn = HardContrastiveLoss(temperature=AdaptiveTemperature(base=0.1, alpha=0.5))
    """

    def __init__(self, base: float = 0.1, alpha: float = 0.5, a0: float = 0.0) -> None:
        super().__init__()
        self.base = check_positive(base, "base")
        self.alpha = check_unit_interval(alpha, "alpha")
        self.a0 = check_unit_interval(a0, "a0")
        if self.alpha * (1.0 + self.a0) >= 1.0:
            raise ValueError(
                f"alpha * (1 + a0) must be < 1 so that tau stays > 0, got alpha={alpha!r}, "
                f"a0={a0!r}"
            )
        # The τ of the last call (0-d, on the loss's device): the value in force.
        self.register_buffer("last_temperature", torch.tensor(self.base))

    @property
    def value(self) -> Tensor:
        return self.last_temperature

    def anchor_temperature(
        self,
        positive: Tensor,
        anchor_indices: Tensor | None = None,
        gather_distributed: bool = False,
    ) -> Tensor:
        alignment = positive.detach().mean()
        if gather_distributed and torch_dist.is_available() and torch_dist.is_initialized():
            alignment = alignment.clone()
            torch_dist.all_reduce(alignment)  # no host read: a device collective
            alignment = alignment / torch_dist.get_world_size()
        return self.base * (1.0 + self.alpha * (alignment - self.a0))

    def forward(
        self,
        positive: Tensor,
        anchor_indices: Tensor | None = None,
        num_negatives: int = 1,
        gather_distributed: bool = False,
    ) -> Tensor:
        temperature = self.anchor_temperature(positive, anchor_indices, gather_distributed)
        self.last_temperature = temperature.detach().to(self.last_temperature.dtype)
        return temperature

    def extra_repr(self) -> str:
        return f"base={self.base!r}, alpha={self.alpha!r}, a0={self.a0!r}"


class IndividualTemperature(TemperaturePolicy):
    """One τ per training sample, each updated after every step as in iSogCLR.

    Qiu et al., "Not All Semantics are Created Equal: Contrastive Self-supervised Learning
    with Automatic Temperature Individualization", ICML 2023, https://arxiv.org/abs/2305.11965

    iSogCLR gives sample i the objective ``τ_i (log g_i + ρ)`` with ``g_i`` the mean of
    ``exp((s_ij - s_ii) / τ_i)`` over its negatives, and descends it in τ_i with a moving
    average of the gradient::

        grad_i = log g_i + ρ + τ_i ∂(log g_i)/∂τ_i
        u_i   <- (1 - β) u_i + β grad_i
        τ_i   <- clamp(τ_i - η u_i, tau_min, tau_max)

    iSogCLR tracks ``g_i`` by a moving average ``s_i`` across the epochs (its β0) and scales
    the step by 1/n; here ``g_i`` is the current batch's (β0 = 1: every negative of the batch
    is in it) and the 1/n is part of ``lr``. ``log g_i`` is read off the anchor's loss
    (``ℓ = softplus(log N + log g)`` for InfoNCE and the HCL family) and ``∂ℓ/∂τ_i`` is taken
    from the loss's own backward pass, so the update costs no extra pass; a sample seen as two
    anchors (SimCLR's two views) averages their gradients. The model's loss is the package's
    loss at each anchor's τ_i (iSogCLR weights each sample's gradient by ``τ_i / s_i``; this
    policy does not, so that a constant table gives exactly the constant-τ loss). The update
    runs during ``backward()``, on the device, with no host read; under DDP the updated
    entries are gathered so every process holds the same table.

    ``forward`` needs the batch's sample indices: ``loss(out0, out1, indices=idx)``, from
    :class:`~lightly_temperature.data.IndexedDataset` (the ready modules pass them).

    Args:
        num_samples: size of the training set (indices in ``[0, num_samples)``), >= 1.
        init: τ of every sample at the start, in ``[tau_min, tau_max]``.
        tau_min, tau_max: bounds, ``0 < tau_min < tau_max``.
        lr: η >= 0, the step of the τ update (0 freezes the table).
        rho: ρ >= 0, iSogCLR's robustness radius (larger: larger τ).
        momentum: β in (0, 1], the weight of the new gradient in the moving average.

    Example:
        >>> dataset = IndexedDataset(digits_dataset())
        >>> policy = IndividualTemperature(num_samples=len(dataset), init=0.2)
        >>> loss_fn = HardContrastiveLoss(temperature=policy, hard_negatives=None)
        >>> (x0, x1), _, idx = next(iter(loader))
        >>> loss = loss_fn(model(x0), model(x1), indices=idx)
        >>> loss.backward()  # updates the τ of the batch's samples
    """

    per_sample = True

    def __init__(
        self,
        num_samples: int,
        init: float = 0.2,
        tau_min: float = 0.05,
        tau_max: float = 1.0,
        lr: float = 0.01,
        rho: float = 0.1,
        momentum: float = 0.9,
    ) -> None:
        super().__init__()
        self.num_samples = check_int(num_samples, "num_samples", minimum=1)
        self.tau_min, self.tau_max = check_bounds(tau_min, tau_max)
        init = _check_within(init, "init", self.tau_min, self.tau_max)
        self.lr = check_non_negative(lr, "lr")
        self.rho = check_non_negative(rho, "rho")
        self.momentum = check_unit_interval(momentum, "momentum")
        if self.momentum == 0:
            raise ValueError(f"momentum must be in (0, 1], got {momentum!r}")
        self.register_buffer("temperatures", torch.full((self.num_samples,), init))
        self.register_buffer("gradient_average", torch.zeros(self.num_samples))
        self._pending: dict[str, Any] | None = None

    @property
    def value(self) -> Tensor:
        return self.temperatures

    def _check_anchor_indices(self, anchor_indices: Tensor | None) -> Tensor:
        if anchor_indices is None:
            raise ValueError(
                "indices must be given with an IndividualTemperature: call "
                "loss(out0, out1, indices=idx) with the batch's sample indices "
                "(lightly_temperature.data.IndexedDataset)"
            )
        return check_indices(anchor_indices, anchor_indices.shape[0], self.num_samples).to(
            self.temperatures.device
        )

    def anchor_temperature(
        self,
        positive: Tensor,
        anchor_indices: Tensor | None = None,
        gather_distributed: bool = False,
    ) -> Tensor:
        return self.temperatures[self._check_anchor_indices(anchor_indices)]

    def forward(
        self,
        positive: Tensor,
        anchor_indices: Tensor | None = None,
        num_negatives: int = 1,
        gather_distributed: bool = False,
    ) -> Tensor:
        anchor_indices = self._check_anchor_indices(anchor_indices)
        temperature = self.temperatures[anchor_indices]
        self._pending = None
        if self.training and torch.is_grad_enabled() and self.lr > 0:
            # A leaf of its own: its gradient is the loss's ∂L/∂τ_a, read by the update hook.
            temperature = temperature.detach().requires_grad_(True)
            self._pending = {
                "indices": anchor_indices,
                "temperature": temperature,
                "num_negatives": num_negatives,
            }
        return temperature

    def observe_losses(self, per_anchor: Tensor) -> None:
        pending, self._pending = self._pending, None
        if pending is None or not per_anchor.requires_grad:
            return
        loss_gradient: dict[str, Tensor] = {}

        def keep_loss_gradient(grad: Tensor) -> None:
            loss_gradient["grad"] = grad

        def update(grad: Tensor) -> None:
            # ∂ℓ_a/∂τ_a = (∂L/∂τ_a) / (∂L/∂ℓ_a): whatever scales L (the mean over anchors,
            # gradient accumulation, a loss scaler) cancels.
            if "grad" in loss_gradient:
                self._update(pending, per_anchor.detach(), grad / loss_gradient["grad"])

        per_anchor.register_hook(keep_loss_gradient)
        pending["temperature"].register_hook(update)

    @torch.no_grad()
    def _update(self, pending: dict[str, Any], losses: Tensor, loss_slope: Tensor) -> None:
        indices, tau = pending["indices"], pending["temperature"].detach()
        losses, loss_slope = losses.to(tau.dtype), loss_slope.to(tau.dtype)
        # ℓ = softplus(x), x = log N + log g: x = log(expm1(ℓ)), ∂x/∂τ = (∂ℓ/∂τ) / (1 - e^-ℓ).
        tiny = torch.finfo(tau.dtype).tiny
        log_g = torch.log(torch.expm1(losses).clamp_min(tiny)) - math.log(
            max(pending["num_negatives"], 1)
        )
        slope = loss_slope / (-torch.expm1(-losses)).clamp_min(tiny)
        gradient = log_g + self.rho + tau * slope
        # The mean over a sample's anchors (its two views in SimCLR mode).
        sums = torch.zeros_like(self.temperatures).index_add_(0, indices, gradient)
        counts = torch.zeros_like(self.temperatures).index_add_(0, indices, torch.ones_like(tau))
        gradient = sums[indices] / counts[indices]
        average = (1 - self.momentum) * self.gradient_average[indices] + self.momentum * gradient
        new_tau = (tau - self.lr * average).clamp(self.tau_min, self.tau_max)
        # A non-finite gradient (a skipped mixed-precision step) leaves the sample as it was.
        finite = torch.isfinite(average)
        average = torch.where(finite, average, self.gradient_average[indices])
        new_tau = torch.where(finite, new_tau, tau)
        if torch_dist.is_available() and torch_dist.is_initialized():
            indices, average, new_tau = _all_gather_cat(indices, average, new_tau)
        self.gradient_average[indices] = average
        self.temperatures[indices] = new_tau

    def extra_repr(self) -> str:
        return (
            f"num_samples={self.num_samples}, tau_min={self.tau_min!r}, "
            f"tau_max={self.tau_max!r}, lr={self.lr!r}, rho={self.rho!r}, "
            f"momentum={self.momentum!r}"
        )


def _all_gather_cat(*tensors: Tensor) -> list[Tensor]:
    """Each tensor concatenated over the processes (every process passes the same shapes)."""
    world_size = torch_dist.get_world_size()
    if world_size == 1:
        return list(tensors)
    gathered = []
    for tensor in tensors:
        parts = [torch.empty_like(tensor) for _ in range(world_size)]
        torch_dist.all_gather(parts, tensor.contiguous())
        gathered.append(torch.cat(parts))
    return gathered


def temperature_in_force(temperature: float | Tensor | TemperaturePolicy) -> float | Tensor:
    """The τ a loss's ``temperature`` stands for now: a policy's ``value``, else itself."""
    if isinstance(temperature, TemperaturePolicy):
        return temperature.value
    return temperature


def temperature_policies(module: nn.Module) -> list[TemperaturePolicy]:
    """Every policy held by ``module`` at any depth (what a schedule callback advances)."""
    return [m for m in module.modules() if isinstance(m, TemperaturePolicy)]


__all__ = [
    "UNITS",
    "AdaptiveTemperature",
    "ConstantTemperature",
    "CosineTemperature",
    "IndividualTemperature",
    "LearnableTemperature",
    "TemperaturePolicy",
    "temperature_in_force",
    "temperature_policies",
]
