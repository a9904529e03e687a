"""One run on one CUDA GPU that checks what a CPU cannot: no host synchronisation per training
step, and the losses' and metrics' time and memory against their references on the device.

Five parts, each printed as markdown tables for docs/benchmarks.md:

(a) training: the ready ``SimCLR`` and ``MoCo`` modules (ResNet-18 with the 32x32 stem,
    ``HardContrastiveLoss`` over the top K) train a few hundred steps in ``bf16-mixed`` on
    synthetic 32x32 images with ``HardnessMonitor`` and ``TemperatureAnalysis``. The loss's
    forward (with the monitor's observation, which runs in the loss's forward pre-hook) and
    the step's backward run under ``torch.cuda.set_sync_debug_mode("error")``: any operation
    there that waits for the device raises. Before training, the guard is shown to raise on a
    deliberate ``.item()``, so that a clean run means something. Outside the guard, by design:
    the monitor's one read-back per logging step and Lightning's own logging. A synchronisation
    in a guarded region ends that module's training: its row says FAILED with the error, the
    other parts still run, and the exit status is 1.
(b) losses: forward+backward time (paired ratios, interleaved) and peak memory
    (``torch.cuda.max_memory_allocated``) against Lightly's ``NTXentLoss`` at SimCLR batch 1024,
    4096, 8192 and MoCo with a 65,536-entry bank and K = 4095.
(c) metrics: uniformity, tolerance and the top-10 negatives on 50,000 and 200,000 x 128
    embeddings against one N x N x d product plus exp.
(d) exactness: every loss (SimCLR and MoCo) and the three metrics on the device in float32
    against the same code on the CPU and against float64 formulas (values and gradients),
    and each loss's value with bf16 inputs under autocast. A row beyond a relative error of
    1e-4 says FAILED and the exit status is 1.
(e) pieces: the pieces of a loss step (products, passes, three forms of the backward, the
    selection of K) and of the top-10 negatives, each timed alone (``step_pieces.py``): where
    the time of (b) and (c) goes.

``--dry-run`` runs the same code paths on the CPU at toy sizes (the sync-debug mode, which
needs CUDA, is the one thing skipped; the guarded regions are entered as on the GPU): that is
how the test suite checks the script.

Usage:
    python benchmarks/gpu_check.py                    # on a CUDA machine, at most ~8 minutes
    python benchmarks/gpu_check.py --output gpu.md    # also write the tables to a file
    python benchmarks/gpu_check.py --parts bd         # only parts (b) and (d)
    python benchmarks/gpu_check.py --dry-run          # CPU, toy sizes (the smoke test)
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytorch_lightning as pl
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    gpu_script_device,
    machine_description,
    markdown_table,
    median,
    paired_ratio,
    peak_memory,
    time_interleaved,
)
from bench_losses import (  # noqa: E402
    FLOOR,
    HARD,
    INFONCE_FLOOR,
    PLAIN,
    REFERENCE,
    floor_step,
    infonce_floor_step,
    loss_factories,
    loss_step,
)
from bench_metrics import EXACT_METRICS, float64_references, make_data, metric_values  # noqa: E402
from bench_metrics import FLOOR as METRICS_FLOOR  # noqa: E402
from bench_metrics import floor_step as metrics_floor_step  # noqa: E402
from lightly.loss import NTXentLoss  # noqa: E402
from step_pieces import DRY as DRY_PIECES  # noqa: E402
from step_pieces import REAL as REAL_PIECES  # noqa: E402
from step_pieces import report as pieces_report  # noqa: E402

from lightly_temperature import (  # noqa: E402
    DebiasedContrastiveLoss,
    DecoupledContrastiveLoss,
    HardContrastiveLoss,
    HardnessMonitor,
    HardSimpleLoss,
    HCLLoss,
    MoCo,
    SimCLR,
    SimpleLoss,
    TemperatureAnalysis,
    metrics,
)
from lightly_temperature.models.backbones import resnet18_backbone  # noqa: E402

TIME_LIMIT_S = 8 * 60


class Sizes(NamedTuple):
    """What each part runs: the real run's sizes or the dry run's toy ones."""

    steps: int  # training steps per module
    batch: int  # training batch
    images: int  # synthetic training images
    probe: int  # TemperatureAnalysis's probe images
    bank: int  # MoCo training bank
    train_k: int  # hard negatives while training
    loss_batches: tuple[int, ...]  # SimCLR batches of part (b)
    moco: tuple[int, int, int]  # (batch, bank, K) of part (b)
    metric_sizes: tuple[int, ...]  # N of part (c)
    repeats: int
    log_every: int  # HardnessMonitor's logging steps
    analysis_every: int  # TemperatureAnalysis's epochs
    exact: tuple[int, int, int]  # (batch, bank, metrics N) of part (d)


REAL = Sizes(
    steps=300,
    batch=256,
    images=4096,
    probe=1024,
    bank=4096,
    train_k=409,
    loss_batches=(1024, 4096, 8192),
    moco=(256, 65536, 4095),
    metric_sizes=(50_000, 200_000),
    repeats=7,
    log_every=10,
    analysis_every=4,
    exact=(512, 4096, 8192),
)
DRY = Sizes(
    steps=4,
    batch=8,
    images=16,
    probe=16,
    bank=32,
    train_k=4,
    loss_batches=(16, 32),
    moco=(8, 256, 15),
    metric_sizes=(300, 600),
    repeats=2,
    log_every=2,
    analysis_every=1,
    exact=(12, 64, 80),
)


# --- (a) training under the sync guard ---------------------------------------------------------


class SyncGuard(pl.Callback):
    """Runs the loss's forward (its pre-hooks, the monitor's included) and the step's backward
    under ``torch.cuda.set_sync_debug_mode("error")``, and counts the guarded regions entered.

    On a device that is not CUDA the regions are entered and counted the same way; only the
    mode switch, which needs CUDA, is skipped.
    """

    def __init__(self) -> None:
        self.forwards = 0
        self.backwards = 0
        self._region: contextlib.ExitStack | None = None
        self._handles: list[Any] = []

    def _enter(self, device: torch.device) -> None:
        self._region = contextlib.ExitStack()
        self._region.enter_context(sync_errors(device))

    def _exit(self) -> None:
        if self._region is not None:
            self._region.close()
            self._region = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        loss = pl_module.criterion

        def before(module: nn.Module, args: tuple) -> None:
            self.forwards += 1
            self._enter(pl_module.device)

        def after(module: nn.Module, args: tuple, output: Tensor) -> None:
            self._exit()

        # prepend: before any other pre-hook, HardnessMonitor's (registered per step) included.
        self._handles = [
            loss.register_forward_pre_hook(before, prepend=True),
            loss.register_forward_hook(after),
        ]

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._exit()
        for handle in self._handles:
            handle.remove()

    def on_before_backward(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: Tensor
    ) -> None:
        self.backwards += 1
        self._enter(pl_module.device)

    def on_after_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._exit()

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        self._exit()  # before Lightning's teardown, which copies to the host


@contextlib.contextmanager
def sync_errors(device: torch.device) -> Iterator[None]:
    """A region where an operation that synchronises the host with a CUDA device raises."""
    if device.type != "cuda":
        yield  # the mode exists only with CUDA: same region, no switch
        return
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode(previous)


def guard_is_effective(device: torch.device) -> bool:
    """Whether :func:`sync_errors` makes a deliberate synchronisation raise on ``device``."""
    if device.type != "cuda":
        return False
    try:
        with sync_errors(device):
            torch.ones(1, device=device).item()
    except RuntimeError:
        return True
    return False


class SyntheticViews(Dataset):
    """Random 32x32 images of ``classes`` prototypes, served as Lightly's ``([v0, v1], label)``;
    each view is the image plus fresh noise."""

    def __init__(self, n: int, classes: int = 10, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        prototypes = torch.randn(classes, 3, 32, 32, generator=g)
        self.labels = torch.randint(0, classes, (n,), generator=g)
        self.images = prototypes[self.labels] + 0.5 * torch.randn(n, 3, 32, 32, generator=g)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> tuple[list[Tensor], Tensor]:
        image = self.images[i]
        views = [image + 0.3 * torch.randn_like(image) for _ in range(2)]
        return views, self.labels[i]


def build_module(method: str, sizes: Sizes) -> pl.LightningModule:
    backbone = resnet18_backbone(cifar_stem=True)
    common: dict[str, Any] = {
        "loss": "hard_contrastive",
        "temperature": 0.2,
        "hard_negatives": sizes.train_k,
        "optimizer": "adamw",
        "lr": 1e-3,
    }
    if method == "SimCLR":
        return SimCLR(backbone=backbone, hidden_dim=512, output_dim=128, **common)
    return MoCo(backbone=backbone, memory_bank_size=sizes.bank, **common)


def train_part(device: torch.device, sizes: Sizes, root: Path) -> list[list[str]]:
    data = SyntheticViews(sizes.images)
    probe = DataLoader(SyntheticViews(sizes.probe, seed=1), batch_size=sizes.batch)
    rows = []
    for method in ("SimCLR", "MoCo"):
        torch.manual_seed(0)
        module = build_module(method, sizes)
        guard = SyncGuard()
        monitor = HardnessMonitor(log_every_n_steps=sizes.log_every)
        analysis = TemperatureAnalysis(probe, every_n_epochs=sizes.analysis_every)
        trainer = pl.Trainer(
            accelerator=device.type if device.type == "cuda" else "cpu",
            devices=1,
            precision="bf16-mixed",
            max_steps=sizes.steps,
            callbacks=[guard, monitor, analysis],
            default_root_dir=str(root / method),
            logger=pl.loggers.CSVLogger(str(root / method)),
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            log_every_n_steps=sizes.log_every,
        )
        loader = DataLoader(data, batch_size=sizes.batch, shuffle=True, drop_last=True)
        start = time.perf_counter()
        try:
            trainer.fit(module, loader)
        except RuntimeError as error:  # a synchronisation in a guarded region, among others
            guard.teardown(trainer, module, "fit")
            traceback.print_exc()  # where: the error itself does not say
            message = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
            rows.append([method, f"FAILED at step {trainer.global_step}: {message}"] + [""] * 5)
            print(" | ".join(rows[-1]), flush=True)
            continue
        seconds = time.perf_counter() - start
        if trainer.global_step != sizes.steps:
            raise RuntimeError(f"{method} stopped at step {trainer.global_step} of {sizes.steps}")
        if guard.forwards < sizes.steps or guard.backwards != sizes.steps:
            raise RuntimeError(
                f"{method}: the guard saw {guard.forwards} loss calls and {guard.backwards} "
                f"backwards in {sizes.steps} steps"
            )
        spread = analysis.history[-1]["embedding_spread"] if analysis.history else float("nan")
        rows.append(
            [
                method,
                str(trainer.global_step),
                f"{guard.forwards} / {guard.backwards}",
                str(len(monitor.history)),
                str(len(analysis.history)),
                f"{spread:.3f}",
                f"{seconds:.1f}",
            ]
        )
        print(" | ".join(rows[-1]), flush=True)
    return rows


# --- (b) losses against NTXentLoss -------------------------------------------------------------


def compared_losses(bank: int, dim: int, k: int) -> dict[str, nn.Module]:
    """Lightly's NTXentLoss, the loss over all negatives and over the top K, built as
    ``bench_losses.py`` builds them."""
    factories = loss_factories(bank, dim, k)
    return {name: factories[name]() for name in (REFERENCE, PLAIN, HARD)}


def loss_part(device: torch.device, sizes: Sizes) -> list[list[str]]:
    rows = []
    dim = 128
    configs = [("SimCLR", b, 0, max(1, round(0.08 * (2 * b - 2)))) for b in sizes.loss_batches]
    configs.append(("MoCo", *sizes.moco))
    for mode, batch, bank, k in configs:
        torch.manual_seed(0)
        x = torch.randn(batch, dim, device=device, requires_grad=True)
        y = torch.randn(batch, dim, device=device, requires_grad=True)
        losses = compared_losses(bank, dim, k)
        steps = {name: loss_step(loss.to(device), x, y) for name, loss in losses.items()}
        steps[FLOOR] = floor_step(x, y, torch.randn(dim, bank, device=device) if bank else None)
        if not bank:
            steps[INFONCE_FLOOR] = infonce_floor_step(x, y)
        floor = FLOOR if bank else INFONCE_FLOOR  # what the loss is compared with
        for step in steps.values():  # fills the banks, warms the kernels
            step()
        memory = {name: peak_memory(step, device) for name, step in steps.items()}
        before = allocator_calls(device)
        times = time_interleaved(steps, repeats=sizes.repeats, warmup=1, device=device)
        after = allocator_calls(device)
        # Each step alone, repeated back to back: what one training run sees. The interleaved
        # ratios pair the losses under the same conditions; the two can differ when one
        # loss's allocations leave the caching allocator's blocks unfit for the next.
        alone = {
            name: time_interleaved({name: step}, repeats=sizes.repeats, warmup=2, device=device)[
                name
            ]
            for name, step in steps.items()
        }
        print(
            f"{mode} N={batch}: device allocations and frees while interleaved: "
            f"{after[0] - before[0]} / {after[1] - before[1]}",
            flush=True,
        )
        setting = f"{mode} N={batch}" + (f" bank={bank}" if bank else "")
        for name in steps:
            label = name.replace("(K)", f"(K={k})")
            rows.append(
                [
                    setting,
                    label,
                    f"{median(times[name]) * 1e3:.2f}",
                    f"{median(alone[name]) * 1e3:.2f}",
                    f"{paired_ratio(times, name, REFERENCE):.2f}",
                    f"{paired_ratio(times, name, floor):.2f}",
                    f"{memory[name] / 2**20:.1f}",
                    f"{memory[name] / memory[REFERENCE]:.2f}" if memory[REFERENCE] else "nan",
                ]
            )
            print(" | ".join(rows[-1]), flush=True)
        del steps, losses, x, y
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def allocator_calls(device: torch.device) -> tuple[int, int]:
    """How many device allocations and frees (``cudaMalloc``, ``cudaFree``) the caching
    allocator has made so far; ``(0, 0)`` elsewhere."""
    if device.type != "cuda":
        return 0, 0
    stats = torch.cuda.memory_stats(device)
    return stats.get("num_device_alloc", 0), stats.get("num_device_free", 0)


# --- (c) metrics against the floor -------------------------------------------------------------


def metrics_part(device: torch.device, sizes: Sizes) -> list[list[str]]:
    rows = []
    for n in sizes.metric_sizes:
        z0, z1, labels = make_data(n, device)
        steps = {
            METRICS_FLOOR: metrics_floor_step(torch.nn.functional.normalize(z0, dim=1)),
            "uniformity_loss": lambda z0=z0: metrics.uniformity_loss(z0),
            "tolerance": lambda z0=z0, labels=labels: metrics.tolerance(z0, labels),
            "top-10 negatives": lambda z0=z0, z1=z1: metrics.positive_and_top_negative_similarities(
                z0, z1, k=10
            ),
        }
        repeats = max(1, sizes.repeats // 2)
        times = time_interleaved(steps, repeats=repeats, warmup=1, device=device)
        memory = {name: peak_memory(step, device) for name, step in steps.items()}
        for name in steps:
            rows.append(
                [
                    f"N={n:,}",
                    name,
                    f"{median(times[name]) * 1e3:.1f}",
                    f"{paired_ratio(times, name, METRICS_FLOOR):.2f}",
                    f"{memory[name] / 2**20:.1f}",
                ]
            )
            print(" | ".join(rows[-1]), flush=True)
        del z0, z1, labels, steps
    return rows


# --- (d) values and gradients on the device against float64 and the CPU ---------------------

#: Largest relative error accepted for a float32 loss or metric on the device. A wrong
#: selection, a missed mask or a product in bf16 is orders of magnitude above it.
EXACT_TOLERANCE = 1e-4
EXACT_TEMPERATURE = 0.2
NO_REFERENCE = -1  # a case without a float64 formula here (its CPU path is tested against one)


class ExactCase(NamedTuple):
    name: str
    build: Any  # memory_bank_size -> loss module
    reference_k: int | None  # K of the float64 hard contrastive loss, None: all negatives
    memory_bank: bool = True


def exact_cases(negatives: int) -> list[ExactCase]:
    """The losses checked in part (d); ``negatives``: how many each anchor has."""
    t = EXACT_TEMPERATURE
    k8 = max(1, round(0.08 * negatives))
    k_most = 3 * negatives // 4  # a top-K sum with K > C/2 drops the smallest instead
    return [
        ExactCase("NTXentLoss", lambda b: NTXentLoss(t, memory_bank_size=b), None),
        ExactCase(
            "HardContrastive(None)",
            lambda b: HardContrastiveLoss(t, b, hard_negatives=None),
            None,
        ),
        ExactCase(f"HardContrastive(K={k8})", lambda b: HardContrastiveLoss(t, b, False, k8), k8),
        ExactCase(
            f"HardContrastive(K={negatives - 1})",
            lambda b: HardContrastiveLoss(t, b, False, negatives - 1),
            negatives - 1,
        ),
        ExactCase("Simple", lambda b: SimpleLoss(t, b), NO_REFERENCE),
        ExactCase(f"HardSimple(K={k8})", lambda b: HardSimpleLoss(t, b, False, k8), NO_REFERENCE),
        ExactCase(
            f"HardSimple(K={k_most})", lambda b: HardSimpleLoss(t, b, False, k_most), NO_REFERENCE
        ),
        ExactCase("HCL", lambda b: HCLLoss(0.5, 1.0, 0.1, b), NO_REFERENCE),
        ExactCase(f"HCL(K={k8})", lambda b: HCLLoss(0.5, 1.0, 0.1, b, False, k8), NO_REFERENCE),
        ExactCase("Debiased", lambda b: DebiasedContrastiveLoss(0.5, 0.1, b), NO_REFERENCE),
        ExactCase("Decoupled", lambda b: DecoupledContrastiveLoss(t), NO_REFERENCE, False),
        ExactCase("DecoupledW", lambda b: DecoupledContrastiveLoss(t, 0.5), NO_REFERENCE, False),
    ]


def float64_hard_contrastive(
    x: Tensor, y: Tensor, bank: Tensor | None, temperature: float, k: int | None
) -> Tensor:
    """Wang & Liu's hard contrastive loss in float64 in Lightly's layout (SimCLR when ``bank``
    is None, else MoCo over the bank's rows); ``k`` most similar negatives, or all of them."""
    z0 = torch.nn.functional.normalize(x.double(), dim=1)
    z1 = torch.nn.functional.normalize(y.double(), dim=1)
    if bank is None:
        n = z0.shape[0]
        z = torch.cat([z0, z1])
        similarities = z @ z.T
        rows = torch.arange(2 * n)
        partners = (rows + n) % (2 * n)
        positive = similarities[rows, partners]
        excluded = torch.zeros_like(similarities, dtype=torch.bool)
        excluded[rows, rows] = excluded[rows, partners] = True
        negatives = similarities.masked_fill(excluded, float("-inf"))
    else:
        positive = (z0 * z1).sum(dim=1)
        negatives = z0 @ torch.nn.functional.normalize(bank.double(), dim=1).T
    if k is not None:
        negatives = negatives.topk(k, dim=1).values
    logits = torch.cat([positive[:, None], negatives], dim=1) / temperature
    return (torch.logsumexp(logits, dim=1) - positive / temperature).mean()


def value_and_gradients(
    loss: Callable[[Tensor, Tensor], Tensor], x: Tensor, y: Tensor, autocast: bool = False
) -> tuple[Tensor, Tensor]:
    """The loss of ``(x, y)`` and its gradients with respect to both, as float64 on the CPU."""
    x = x.detach().clone().requires_grad_(True)
    y = y.detach().clone().requires_grad_(True)
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=autocast):
        value = loss(x, y)
    value.backward()
    grads = torch.cat([x.grad.flatten(), y.grad.flatten()])
    return value.detach().double().cpu(), grads.double().cpu()


def relative_error(value: Tensor, reference: Tensor) -> float:
    """Largest absolute difference over the reference's largest magnitude."""
    scale = reference.abs().max().clamp_min(torch.finfo(torch.float64).tiny)
    return float((value - reference).abs().max() / scale)


def exact_part(device: torch.device, sizes: Sizes) -> list[list[str]]:
    batch, bank_entries, _ = sizes.exact
    rows = []
    for mode, bank_size in (("SimCLR", 0), ("MoCo", bank_entries)):
        torch.manual_seed(0)
        x, y = torch.randn(batch, 128), torch.randn(batch, 128)
        negatives = bank_size or 2 * batch - 2
        size = (bank_size, 128) if bank_size else 0
        for case in exact_cases(negatives):
            if bank_size and not case.memory_bank:
                continue
            cpu_loss = case.build(size)
            # The same memory bank on both sides (updated by the first call of each).
            rounded_loss = copy.deepcopy(cpu_loss)
            device_loss = copy.deepcopy(cpu_loss).to(device)
            autocast_loss = copy.deepcopy(cpu_loss).to(device)
            bank = cpu_loss.memory_bank.bank.clone() if bank_size else None
            cpu_value, cpu_grads = value_and_gradients(cpu_loss, x, y)
            value, grads = value_and_gradients(device_loss, x.to(device), y.to(device))
            errors = [relative_error(value, cpu_value), relative_error(grads, cpu_grads)]
            if case.reference_k == NO_REFERENCE:
                errors += [None, None]
            else:
                reference = functools.partial(
                    float64_hard_contrastive,
                    bank=bank,
                    temperature=EXACT_TEMPERATURE,
                    k=case.reference_k,
                )
                ref_value, ref_grads = value_and_gradients(reference, x.double(), y.double())
                errors += [relative_error(value, ref_value), relative_error(grads, ref_grads)]
            # bf16 inputs under autocast, as a model's outputs arrive: float32 logits expected.
            xb, yb = x.bfloat16(), y.bfloat16()
            cpu_rounded, _ = value_and_gradients(rounded_loss, xb.float(), yb.float())
            autocast_value, _ = value_and_gradients(
                autocast_loss, xb.to(device), yb.to(device), autocast=True
            )
            errors.append(relative_error(autocast_value, cpu_rounded))
            cells = ["" if e is None else f"{e:.1e}" for e in errors]
            if isinstance(cpu_loss, NTXentLoss):
                status = "Lightly's, for comparison"  # its logits follow autocast (bf16)
            else:
                worst = max(e for e in errors if e is not None)
                status = "ok" if worst <= EXACT_TOLERANCE else "FAILED"
            rows.append([mode, case.name, *cells, status])
            print(" | ".join(rows[-1]), flush=True)
    rows += exact_metric_rows(device, sizes.exact[2])
    return rows


def exact_metric_rows(device: torch.device, n: int) -> list[list[str]]:
    """Uniformity, tolerance and the top-10 negatives on the device against float64 formulas
    and against the CPU's float32."""
    z0, z1, labels = make_data(n, torch.device("cpu"))
    references = float64_references(z0, z1, labels)
    on_device = metric_values(metrics, z0.to(device), z1.to(device), labels.to(device))
    on_cpu = metric_values(metrics, z0, z1, labels)
    out = []
    for name in EXACT_METRICS:
        value = on_device[name].double().cpu()
        errors = [
            relative_error(value, on_cpu[name].double()),
            relative_error(value, references[name]),
        ]
        status = "ok" if max(errors) <= EXACT_TOLERANCE else "FAILED"
        out.append(
            [f"metrics N={n:,}", name, f"{errors[0]:.1e}", "", f"{errors[1]:.1e}", "", "", status]
        )
        print(" | ".join(out[-1]), flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="CPU, toy sizes (the smoke test)")
    parser.add_argument("--output", type=Path, default=None, help="also write the tables here")
    parser.add_argument("--root", type=Path, default=None, help="Lightning logs (default: temp)")
    parser.add_argument(
        "--parts",
        default="abcde",
        help="which parts to run, e.g. 'bd' (default: all five; a skipped part's table is empty)",
    )
    args = parser.parse_args(argv)
    unknown = sorted(set(args.parts) - set("abcde"))
    if unknown or not args.parts:
        parser.error(f"--parts {args.parts!r}: letters among a, b, c, d and e")
    device = gpu_script_device(parser, args.dry_run)
    sizes = DRY if args.dry_run else REAL
    started = time.perf_counter()
    print(f"machine: {machine_description(device)}", flush=True)
    effective = guard_is_effective(device)
    if device.type == "cuda" and not effective:
        print("FAILED: set_sync_debug_mode('error') did not raise on a deliberate .item()")
        return 1
    train_rows = loss_rows = metric_rows = exact_rows = []
    if "a" in args.parts:
        with tempfile.TemporaryDirectory() as tmp:
            train_rows = train_part(device, sizes, args.root or Path(tmp))
    if "b" in args.parts:
        loss_rows = loss_part(device, sizes)
    if "c" in args.parts:
        metric_rows = metrics_part(device, sizes)
    if "d" in args.parts:
        exact_rows = exact_part(device, sizes)
    pieces = "(not run)"
    if "e" in args.parts:
        pieces = pieces_report(device, DRY_PIECES if args.dry_run else REAL_PIECES)
    elapsed = time.perf_counter() - started
    guard = (
        "raises on a deliberate `.item()`, checked before training"
        if effective
        else "not switched on (no CUDA: dry run)"
    )
    report = "\n\n".join(
        [
            f"- Machine: {machine_description(device)}"
            + ("\n- Dry run: toy sizes on the CPU, not figures" if args.dry_run else ""),
            f"(a) Training, bf16-mixed, synthetic 32x32 images, batch {sizes.batch}; sync-debug "
            f"mode 'error' around each loss call and backward ({guard}).",
            markdown_table(
                [
                    "module",
                    "steps",
                    "guarded loss calls / backwards",
                    "monitor rows",
                    "analysis rows",
                    "final embedding_spread",
                    "train s",
                ],
                train_rows,
            ),
            "(b) Losses, forward+backward, paired time ratios (interleaved) and peak memory "
            "against NTXentLoss, and each step's time alone (back to back); "
            "the floor is InfoNCE's (Z Z^T, one exp pass, one backward product) in SimCLR and "
            "the similarity product's forward and backward in MoCo.",
            markdown_table(
                [
                    "setting",
                    "loss",
                    "ms (median)",
                    "ms alone",
                    "time / NTXent",
                    "time / floor",
                    "peak MiB",
                    "memory / NTXent",
                ],
                loss_rows,
            ),
            "(c) Metrics against one N x N x d product plus exp.",
            markdown_table(
                ["size", "metric", "ms (median)", "time / floor", "peak extra MiB"], metric_rows
            ),
            f"(d) Values and gradients on the device: relative errors (largest difference over "
            f"the reference's largest magnitude) against the same code on the CPU in float32 "
            f"and against float64 formulas, and of the value with bf16 inputs under autocast "
            f"against the CPU on the same rounded inputs; batch {sizes.exact[0]}, MoCo bank "
            f"{sizes.exact[1]}, tau {EXACT_TEMPERATURE} (0.5 for HCL and Debiased); 'ok' up to "
            f"{EXACT_TOLERANCE:.0e}.",
            markdown_table(
                [
                    "setting",
                    "loss or metric",
                    "value vs CPU",
                    "gradients vs CPU",
                    "value vs float64",
                    "gradients vs float64",
                    "bf16 autocast value vs CPU",
                    "status",
                ],
                exact_rows,
            ),
            "(e) The pieces of a loss step and of the top-10 negatives, each timed alone "
            "(benchmarks/step_pieces.py).",
            pieces,
            f"Total {elapsed:.0f} s (limit {TIME_LIMIT_S} s).",
        ]
    )
    print()
    print(report)
    if args.output is not None:
        args.output.write_text(report + "\n")
    if not args.dry_run and elapsed > TIME_LIMIT_S:
        print(f"NOTE: the run took {elapsed:.0f} s, over its {TIME_LIMIT_S} s budget")
    failed = [row[0] for row in train_rows if row[1].startswith("FAILED")]
    if failed:
        print(f"FAILED: training of {', '.join(failed)} (see table (a))")
    inexact = [f"{row[0]} {row[1]}" for row in exact_rows if row[-1] == "FAILED"]
    if inexact:
        print(f"FAILED: values on the device off their references: {', '.join(inexact)}")
    return 1 if failed or inexact else 0


if __name__ == "__main__":
    raise SystemExit(main())
