"""Settings of a temperature study and the grid of runs they expand to.

Example:
    >>> from lightly_temperature.study.config import StudyConfig
    >>> config = StudyConfig(temperatures=(0.07, 1.0), epochs=2)
    >>> [(run.loss, run.temperature) for run in config.runs()][:2]
    [('ntxent', 0.07), ('ntxent', 1.0)]
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from lightly_temperature._validation import (
    HardNegatives,
    check_choice,
    check_hard_negatives,
    check_int,
    check_ints,
    check_non_negative,
    check_positive,
)
from lightly_temperature.functional import PAPER_ALPHA
from lightly_temperature.metrics import DEFAULT_DRAWS
from lightly_temperature.models._base import OPTIMIZERS
from lightly_temperature.probe import check_few_shot
from lightly_temperature.registry import loss_capabilities, takes_temperature_policy
from lightly_temperature.study.models import BACKBONES
from lightly_temperature.temperature import (
    AdaptiveTemperature,
    CosineTemperature,
    IndividualTemperature,
    LearnableTemperature,
)

METHODS = ("simclr", "moco", "npid")
#: Losses in the default grid, in the order of the paper's Table 1.
DEFAULT_LOSSES = ("ntxent", "simple", "hard_contrastive", "hard_simple")
#: The default grid of NPID: the package's contrastive loss in place of Lightly's NTXentLoss,
#: which has no memory bank indexed by sample.
NPID_DEFAULT_LOSSES = ("contrastive", "simple", "hard_contrastive", "hard_simple")
#: The temperatures of the paper's Table 1.
PAPER_TEMPERATURES = (0.07, 0.3, 0.7, 1.0)
#: The paper's Table 1 temperatures and τ = 0.2 (near the plain loss's best few-shot accuracy),
#: each trained with three seeds: 36 runs, about 10 minutes on 2 CPU cores (a 10-minute budget:
#: a sixth τ does not fit), and the seed spread tells the effects from the noise.
DEFAULT_TEMPERATURES = (0.07, 0.2, 0.3, 0.7, 1.0)
DEFAULT_SEEDS = (0, 1, 2)
#: Labelled train images per class of the few-shot accuracies (results.csv's
#: ``fewshot_accuracy_{k}``).
DEFAULT_FEW_SHOT = (1, 10)
#: Names used in reports.
DISPLAY_NAMES = {
    "ntxent": "Contrastive",
    "contrastive": "Contrastive",
    "hard_contrastive": "HardContrastive",
    "simple": "Simple",
    "hard_simple": "HardSimple",
    "hcl": "HCL",
    "debiased": "Debiased",
    "dcl": "DCL",
    "dclw": "DCLW",
    "macl": "MACL",
}
PRESETS = ("digits", "paper")
#: The hard losses' K in MoCo runs of the study, as the fraction α of the memory bank. MoCo's
#: negatives are keys of the momentum encoder, which get no gradient: the only force that
#: spreads the queries is their repulsion from the negatives the loss selects, and the paper's
#: α = 0.0819 (84 of the 1,024 keys on digits) is too few; the queries collapse (uniformity
#: 0.05-0.15). A quarter of the bank trains (measured, see docs/study.md).
MOCO_HARD_NEGATIVES = 0.25
#: ``StudyConfig(hard_negatives=METHOD_DEFAULT)``: the method's default K
#: (:func:`default_hard_negatives`).
METHOD_DEFAULT = "method default"
#: The temperature policies the study compares (``--temperature-policy``): the grid's τ is
#: the constant τ, the cosine schedule's τ_max, the learnable and per-sample τ's start and the
#: adaptive τ's base τ0 (see :func:`study_policy`).
TEMPERATURE_POLICIES = ("constant", "cosine", "learnable", "adaptive", "individual")


def bank_entries(memory_bank_size: int, num_train_images: int) -> int:
    """The MoCo memory bank of a study: ``memory_bank_size`` keys, at most one per training
    image. A larger bank holds several keys of the same image, and those of the anchor's own
    image are then among its negatives."""
    return max(1, min(memory_bank_size, num_train_images))


def default_hard_negatives(method: str) -> float:
    """The study's K for ``method`` when none is given: the paper's α = 0.0819 of the in-batch
    negatives for SimCLR, :data:`MOCO_HARD_NEGATIVES` of the memory bank for MoCo."""
    return MOCO_HARD_NEGATIVES if check_choice(method, "method", METHODS) == "moco" else PAPER_ALPHA


#: The ``precision`` values of Lightning's ``Trainer`` the study runs: its evaluation embeds in
#: float32, under mixed precision at most (``64``, ``16-true`` and the like are refused before
#: training rather than failing at the first evaluation).
STUDY_PRECISIONS = (32, "32", "32-true", "16-mixed", "bf16-mixed")


def check_precision(precision: Any) -> None:
    """``precision`` must be None or one of :data:`STUDY_PRECISIONS`."""
    if precision is None or (not isinstance(precision, bool) and precision in STUDY_PRECISIONS):
        return
    shown = ", ".join(str(v) for v in STUDY_PRECISIONS[1:])
    raise ValueError(
        f"precision must be one of {shown} (the study evaluates in float32 or mixed "
        f"precision), got {precision!r}"
    )


def display_name(loss: str) -> str:
    return DISPLAY_NAMES.get(loss, loss)


def temperature_is_scale(loss: str) -> bool:
    """Whether the loss's temperature only rescales it (the Simple family, read from the loss
    class's capabilities): such a loss runs once, at ``simple_temperature``, as in the paper's
    Table 1, and its plots show it without a τ axis."""
    return not loss_capabilities(loss).softmax_temperature


def takes_hard_negatives(loss: str) -> bool:
    """Whether the loss takes ``hard_negatives`` (from its class's capabilities)."""
    return loss_capabilities(loss).hard_negatives


def format_hard_negatives(hard_negatives: HardNegatives) -> str:
    """How ``hard_negatives`` is written in ``results.csv``: ``""`` for None, else the number."""
    if hard_negatives is None:
        return ""
    if isinstance(hard_negatives, float):
        return repr(hard_negatives)
    return str(int(hard_negatives))


def parse_hard_negatives(text: str | int | float | None) -> HardNegatives:
    """Inverse of :func:`format_hard_negatives`; ``"none"`` also means None.

    An integer (``"42"``) is K, a decimal (``"0.0819"``) is the fraction alpha.
    """
    if text is None or isinstance(text, (int, float)):
        return check_hard_negatives(text)
    text = text.strip()
    if text == "" or text.lower() == "none":
        return None
    try:
        value: HardNegatives = int(text)
    except ValueError:
        try:
            value = float(text)
        except ValueError:
            raise ValueError(
                f"hard_negatives must be an int K >= 1, a fraction in (0, 1] or none, got {text!r}"
            ) from None
    return check_hard_negatives(value)


@dataclass(frozen=True)
class RunSpec:
    """One training run of the grid; ``key`` identifies it in ``results.csv``."""

    method: str
    loss: str
    temperature: float
    hard_negatives: HardNegatives
    seed: int
    epochs: int
    temperature_policy: str = "constant"

    @classmethod
    def from_row(cls, row: dict[str, str]) -> RunSpec:
        """The run a row of ``results.csv`` records (its key columns, already checked)."""
        return cls(
            row["method"],
            row["loss"],
            float(row["temperature"]),
            parse_hard_negatives(row["hard_negatives"]),
            int(row["seed"]),
            int(row["epochs"]),
            row["temperature_policy"],
        )

    @property
    def key(self) -> tuple[str, ...]:
        return run_key(
            self.method,
            self.loss,
            self.temperature,
            self.hard_negatives,
            self.seed,
            self.epochs,
            self.temperature_policy,
        )

    @property
    def name(self) -> str:
        """A file-name-safe identifier, e.g. ``simclr_hard_contrastive_t0.3_k42_s0_e30``."""
        k = format_hard_negatives(self.hard_negatives)
        parts = [self.method, self.loss, f"t{self.temperature:g}"]
        if self.temperature_policy != "constant":
            parts.append(self.temperature_policy)
        if k:
            parts.append(f"k{k}")
        parts += [f"s{self.seed}", f"e{self.epochs}"]
        return "_".join(parts)

    @property
    def temperature_label(self) -> str:
        """``"τ = 0.3"`` (``"cosine τ = 0.3"`` for a policy), or ``"no τ"`` for a loss whose
        temperature only rescales it."""
        if temperature_is_scale(self.loss):
            return "no τ"
        policy = "" if self.temperature_policy == "constant" else f"{self.temperature_policy} "
        return f"{policy}τ = {self.temperature:g}"

    def describe(self) -> str:
        k = format_hard_negatives(self.hard_negatives)
        text = f"{self.method} {display_name(self.loss)} tau={self.temperature:g}"
        if self.temperature_policy != "constant":
            text += f" policy={self.temperature_policy}"
        if k:
            text += f" hard_negatives={k}"
        return text + f" seed={self.seed} epochs={self.epochs}"


def run_key(
    method: Any,
    loss: Any,
    temperature: Any,
    hard_negatives: Any,
    seed: Any,
    epochs: Any,
    temperature_policy: Any = "constant",
):
    """The resume key of a run, from typed values or from the strings of a CSV row."""
    return (
        str(method),
        str(loss),
        f"{float(temperature):.6g}",
        format_hard_negatives(parse_hard_negatives(hard_negatives)),
        str(int(seed)),
        str(int(epochs)),
        str(temperature_policy),
    )


@dataclass
class StudyConfig:
    """Everything a study needs; the CLI builds one from its arguments.

    ``optimizer``: ``"sgd"`` uses the SimCLR/MoCo modules' own SGD (momentum 0.9, cosine decay)
    with ``lr`` and ``weight_decay``; ``"adamw"`` replaces it by AdamW (cosine decay).

    The defaults are the embedded digits study (about 10 minutes on 2 CPU cores); see
    :func:`paper_preset` for the paper's settings.
    """

    output: str = "study_output"
    method: str = "simclr"
    losses: tuple[str, ...] = DEFAULT_LOSSES
    temperatures: tuple[float, ...] = DEFAULT_TEMPERATURES
    simple_temperature: float = 1.0
    #: K of the hard losses; :data:`METHOD_DEFAULT` gives :func:`default_hard_negatives`.
    hard_negatives: HardNegatives | str = METHOD_DEFAULT
    seeds: tuple[int, ...] = DEFAULT_SEEDS
    epochs: int = 50
    batch_size: int = 256
    #: AdamW (lr 2e-3) reaches the paper's pattern on digits in 50 epochs more reliably than
    #: the modules' own SGD (lr 0.06): measured, see docs/study.md. "sgd" keeps their optimizer.
    optimizer: str = "adamw"
    lr: float = 2e-3
    weight_decay: float = 1e-5
    lr_milestones: tuple[int, ...] = ()
    backbone: str = "small_cnn"
    hidden_dim: int = 128
    output_dim: int = 128
    memory_bank_size: int = 1024  # MoCo bank entries (digits: 1,437 train images)
    # data
    data: str | None = None
    dataset: str | None = None
    data_dir: str | None = None
    image_size: int = 32
    max_eval_samples: int | None = 10000
    num_workers: int = 0
    # evaluation
    knn_k: int = 20
    knn_t: float = 0.1
    #: Labels per class of the few-shot accuracies, and the label draws each averages.
    few_shot: tuple[int, ...] = DEFAULT_FEW_SHOT
    few_shot_draws: int = DEFAULT_DRAWS
    # Lightning
    accelerator: str = "auto"
    devices: int | str = "auto"
    precision: str | None = None
    progress_bar: bool = True
    #: CPU threads for torch; None: 1 for the small CNN (tiny convolutions run fastest on one
    #: thread, and far faster than on two contended ones), torch's default otherwise.
    threads: int | None = None
    # temperature policies (a grid axis) and their parameters
    temperature_policies: tuple[str, ...] = ("constant",)
    #: Lower bound of the cosine schedule (its τ_min), of the learnable and per-sample τ.
    policy_tau_min: float = 0.05
    #: Upper bound of the learnable and per-sample τ.
    policy_tau_max: float = 2.0
    #: Period of the cosine schedule in epochs; None: the run's epochs (one oscillation).
    cosine_period: int | None = None
    adaptive_alpha: float = 0.5
    #: Larger than the policy's default: on digits each sample's τ is updated once an epoch.
    individual_lr: float = 0.1
    individual_rho: float = 0.1
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_choice(self.method, "method", METHODS)
        if isinstance(self.hard_negatives, str) and self.hard_negatives == METHOD_DEFAULT:
            self.hard_negatives = default_hard_negatives(self.method)
        if self.method == "npid" and tuple(self.losses) == DEFAULT_LOSSES:
            self.losses = NPID_DEFAULT_LOSSES
        if not self.losses:
            raise ValueError("losses must name at least one loss, got none")
        if not self.temperatures:
            raise ValueError("temperatures must hold at least one temperature, got none")
        for tau in (*self.temperatures, self.simple_temperature):
            check_positive(tau, "temperature")
        self.hard_negatives = check_hard_negatives(self.hard_negatives)
        check_choice(self.optimizer, "optimizer", OPTIMIZERS)
        check_choice(self.backbone, "backbone", BACKBONES)
        check_positive(self.lr, "lr")
        check_positive(self.knn_t, "knn_t")
        check_non_negative(self.weight_decay, "weight_decay")
        # BatchNorm cannot train on a batch of one sample.
        minimum = {"epochs": 1, "batch_size": 2, "hidden_dim": 1, "output_dim": 1}
        minimum.update(image_size=1, knn_k=1, num_workers=0, memory_bank_size=0)
        for name, low in minimum.items():
            check_int(getattr(self, name), name, low)
        self.few_shot = check_few_shot(self.few_shot, "fewshot")
        check_int(self.few_shot_draws, "few_shot_draws", 1)
        check_int(self.max_eval_samples, "max_eval_samples", 1, optional=True)
        check_int(self.threads, "threads", 1, optional=True)
        check_ints(self.seeds, "seeds", 0)
        check_ints(self.lr_milestones, "lr_milestones", 1)
        check_precision(self.precision)
        self._check_policies()

    def _check_policies(self) -> None:
        if not self.temperature_policies:
            raise ValueError("temperature_policies must name at least one policy, got none")
        for policy in self.temperature_policies:
            check_choice(policy, "temperature_policy", TEMPERATURE_POLICIES)
        if len(set(self.temperature_policies)) != len(self.temperature_policies):
            raise ValueError(
                f"temperature_policies must not repeat a policy, got {self.temperature_policies}"
            )
        tau_min = check_positive(self.policy_tau_min, "policy_tau_min")
        tau_max = check_positive(self.policy_tau_max, "policy_tau_max")
        if tau_min >= tau_max:
            raise ValueError(
                f"policy_tau_min must be < policy_tau_max, got {tau_min!r} >= {tau_max!r}"
            )
        check_int(self.cosine_period, "cosine_period", 1, optional=True)
        check_non_negative(self.individual_lr, "individual_lr")
        check_non_negative(self.individual_rho, "individual_rho")
        if not 0 <= self.adaptive_alpha < 1:
            raise ValueError(f"adaptive_alpha must be in [0, 1), got {self.adaptive_alpha!r}")
        bounded = set(self.temperature_policies) & {"cosine", "learnable", "individual"}
        if bounded:
            for tau in self.temperatures:
                if not tau_min < tau <= tau_max:
                    raise ValueError(
                        f"temperature {tau:g} must be in (policy_tau_min, policy_tau_max] = "
                        f"({tau_min:g}, {tau_max:g}] for the {', '.join(sorted(bounded))} "
                        "policy: it is their start (cosine: τ_max)"
                    )
        if set(self.temperature_policies) != {"constant"}:
            for loss in self.losses:
                if not temperature_is_scale(loss) and not takes_temperature_policy(loss):
                    raise ValueError(
                        f"loss {loss!r} takes a number as its temperature, not a policy: "
                        "use --temperature-policy constant for it"
                    )
        if "individual" in self.temperature_policies:
            for loss in self.losses:
                if not temperature_is_scale(loss) and not takes_temperature_policy(loss, True):
                    raise ValueError(
                        f"loss {loss!r} takes no per-sample temperature: drop 'individual' "
                        "from --temperature-policy for it"
                    )

    def runs(self) -> list[RunSpec]:
        """The grid: for each seed, each loss (at each temperature unless temperature-free)."""
        runs = []
        for seed in self.seeds:
            for loss in self.losses:
                temperatures = (
                    (self.simple_temperature,)
                    if temperature_is_scale(loss)
                    else tuple(self.temperatures)
                )
                hard = self.hard_negatives if takes_hard_negatives(loss) else None
                # A τ that only rescales the loss has nothing for a policy to control.
                policies = (
                    ("constant",) if temperature_is_scale(loss) else self.temperature_policies
                )
                for tau in temperatures:
                    for policy in policies:
                        runs.append(
                            RunSpec(
                                self.method, loss, float(tau), hard, int(seed), self.epochs, policy
                            )
                        )
        return runs

    def policy_settings(self) -> dict[str, Any]:
        """The policies' parameters, for ``study.json`` (empty when every run is constant)."""
        if set(self.temperature_policies) == {"constant"}:
            return {}
        return {
            "policy_tau_min": self.policy_tau_min,
            "policy_tau_max": self.policy_tau_max,
            "cosine_period": self.cosine_period,
            "adaptive_alpha": self.adaptive_alpha,
            "individual_lr": self.individual_lr,
            "individual_rho": self.individual_rho,
        }


def study_policy(config: StudyConfig, run: RunSpec, num_samples: int) -> Any:
    """The ``temperature`` of a run's loss: its τ, or the policy that starts from it."""
    tau = run.temperature
    name = run.temperature_policy
    if name == "constant" or temperature_is_scale(run.loss):
        return tau
    if name == "cosine":
        return CosineTemperature(config.policy_tau_min, tau, config.cosine_period or run.epochs)
    if name == "learnable":
        return LearnableTemperature(tau, config.policy_tau_min, config.policy_tau_max)
    if name == "adaptive":
        return AdaptiveTemperature(base=tau, alpha=config.adaptive_alpha)
    return IndividualTemperature(
        num_samples,
        init=tau,
        tau_min=config.policy_tau_min,
        tau_max=config.policy_tau_max,
        lr=config.individual_lr,
        rho=config.individual_rho,
    )


def paper_preset(config: StudyConfig, digits: bool = False) -> StudyConfig:
    """The paper's protocol (section 5.1): NPID, a memory bank with one entry per training
    sample (momentum 0.5), the hard losses over the K = alpha * N most similar entries with
    the paper's alpha = 0.0819 (K = 4095 of CIFAR's 50,000 training images; 118 of the 1,437
    training digits), τ = 0.07 / 0.3 / 0.7 / 1, SGD lr 0.03 (momentum 0.9, weight decay 5e-4,
    batch 128), 200 epochs with the learning rate x0.1 at epochs 160 and 190, 128-d outputs.

    With an image data set: ResNet-18 with a 3x3 first convolution (for a GPU). On the
    embedded ``digits`` the study's small CNN stays (a ResNet-18 has nothing to learn from
    8x8 images). NPID's head is the paper's linear layer to ``output_dim``.
    """
    settings: dict[str, Any] = dict(
        method="npid",
        losses=NPID_DEFAULT_LOSSES,
        temperatures=PAPER_TEMPERATURES,
        output_dim=128,
        batch_size=128,
        optimizer="sgd",
        lr=0.03,
        weight_decay=5e-4,
        lr_milestones=(160, 190),
        epochs=200,
        hard_negatives=PAPER_ALPHA,
    )
    if not digits:
        settings.update(backbone="resnet18")
    return replace(config, **settings)
