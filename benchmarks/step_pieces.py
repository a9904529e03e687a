"""The pieces of a loss step and of the top-10 negatives, each timed alone on one device.

Where ``gpu_check.py`` (b) and (c) give whole calls, this script says where their time goes,
and what the alternatives would cost: the tables of docs/benchmarks.md's "Pieces of a step".

- SimCLR, A = 2N anchors, d = 128: the (A, A) product, the product with a bias in its
  epilogue, one elementwise pass, a row sum and a row maximum, the softmax written over its
  input; three forms of the backward over all negatives (``(w_i + w_j) ⊙ E`` built, then one
  product; two products ``E Z`` and ``Eᵀ Z``; one product of E with ``[Z, w ⊙ Z]``); the
  InfoNCE floor's step and ``HardContrastiveLoss``'s step over all negatives.
- MoCo, batch x bank, K: the product, ``topk`` of K, ``kthvalue``, a sort, the softmax, and
  the steps of ``NTXentLoss`` and ``HardContrastiveLoss`` (all negatives, top K).
- Top-10 negatives at N: over all blocks of a call, for several block sizes: the products
  alone, the whole metric, ``topk`` on whole blocks, the selection, and the maxima of the
  interleaved groups and of runs of 32 consecutive entries.

Each piece: the median of ``--repeats`` calls after warm-ups, timed with CUDA events on a GPU
(``time.perf_counter`` on the CPU); a step also by wall clock over back-to-back calls, which
is what bounds it when the host cannot issue its operations as fast as the device runs them.

Usage:
    python benchmarks/step_pieces.py                 # on a CUDA machine, about a minute
    python benchmarks/step_pieces.py --output pieces.md
    python benchmarks/step_pieces.py --dry-run       # CPU, toy sizes (the smoke test)
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    gpu_script_device,
    machine_description,
    markdown_table,
    median,
    synchronize,
    time_interleaved,
)
from bench_losses import (  # noqa: E402
    HARD,
    PLAIN,
    REFERENCE,
    infonce_floor_step,
    loss_factories,
    loss_step,
)

from lightly_temperature import metrics  # noqa: E402
from lightly_temperature.metrics import similarities  # noqa: E402

DIM = 128
TEMPERATURE = 0.5


class PieceSizes(NamedTuple):
    anchors: tuple[int, ...]  # A of the SimCLR pieces
    moco: tuple[int, int, int]  # batch, bank, K
    top10_n: int
    top10_blocks: tuple[int, ...]
    repeats: int


REAL = PieceSizes((2048, 8192, 16384), (256, 65536, 4095), 50_000, (1024, 2048, 4096, 8192), 20)
DRY = PieceSizes((32, 64), (8, 256, 15), 300, (64, 128), 2)


def time_ms(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int = 3) -> float:
    """Median milliseconds of one call, each call timed alone: with CUDA events on a GPU, by
    ``_common.time_interleaved`` (one function: each call alone) elsewhere."""
    if device.type != "cuda":
        return median(time_interleaved({"piece": fn}, repeats, warmup, device)["piece"]) * 1e3
    for _ in range(warmup):
        fn()
    synchronize(device)
    samples = []
    for _ in range(repeats):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        stop.record()
        torch.cuda.synchronize(device)
        samples.append(start.elapsed_time(stop))
    return median(samples)


def wall_ms(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int = 3) -> float:
    """Milliseconds per call over ``repeats`` back-to-back calls, by wall clock."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    begin = time.perf_counter()
    for _ in range(repeats):
        fn()
    synchronize(device)
    return (time.perf_counter() - begin) / repeats * 1e3


def simclr_pieces(device: torch.device, sizes: PieceSizes) -> list[list[str]]:
    """One row per piece, one column per A."""
    columns = [_simclr_column(a, device, sizes.repeats) for a in sizes.anchors]
    return [[name] + [f"{column[name]:.3f}" for column in columns] for name in columns[0]]


def _simclr_column(a: int, device: torch.device, r: int) -> dict[str, float]:
    torch.manual_seed(0)
    z = F.normalize(torch.randn(a, DIM, device=device), dim=1)
    scaled = z / TEMPERATURE
    exps = torch.empty(a, a, device=device)
    scratch = torch.empty(a, a, device=device)
    bias = torch.full((a,), -1 / TEMPERATURE, device=device)
    w = torch.rand(a, device=device)
    torch.mm(scaled, z.T, out=exps)
    exps.sub_(1 / TEMPERATURE).exp_()  # the one-shift exponentials, <= 1

    def one_product() -> Tensor:
        return torch.mm(torch.add(w[:, None], w[None, :], out=scratch).mul_(exps), z)

    def wide_product() -> Tensor:
        both = torch.mm(exps, torch.cat([z, z * w[:, None]], dim=1))
        return both[:, DIM:].addcmul_(both[:, :DIM], w[:, None])

    x = torch.randn(a // 2, DIM, device=device, requires_grad=True)
    y = torch.randn(a // 2, DIM, device=device, requires_grad=True)
    plain = loss_step(loss_factories(0, DIM, None)[PLAIN]().to(device), x, y)
    return {
        "the (A, A) product": time_ms(lambda: torch.mm(scaled, z.T, out=scratch), device, r),
        "the product with a bias in its epilogue (`addmm`)": time_ms(
            lambda: torch.addmm(bias, scaled, z.T, out=scratch), device, r
        ),
        "one elementwise pass in place (`sub_`)": time_ms(lambda: scratch.sub_(0.0), device, r),
        "a row sum": time_ms(lambda: exps.sum(dim=1), device, r),
        "a row maximum": time_ms(lambda: exps.amax(dim=1), device, r),
        "the softmax into a buffer in memory": time_ms(
            lambda: torch.ops.aten._softmax.out(exps, 1, False, out=scratch), device, r
        ),
        "backward, one product: `(w_i + w_j) ⊙ E` built, then `· Z`": time_ms(
            one_product, device, r
        ),
        "backward, two products: `E Z` and `Eᵀ Z`": time_ms(
            lambda: torch.mm(exps, z) + torch.mm(exps.T, z), device, r
        ),
        "backward, one product of E with `[Z, w ⊙ Z]` (A x 2d)": time_ms(wide_product, device, r),
        "the InfoNCE floor's step": time_ms(infonce_floor_step(x, y), device, r),
        "`HardContrastiveLoss`, all negatives, a step": time_ms(plain, device, r),
        "the same, wall clock per step, back to back": wall_ms(plain, device, r),
    }


def moco_pieces(device: torch.device, sizes: PieceSizes) -> list[list[str]]:
    batch, bank, k = sizes.moco
    torch.manual_seed(0)
    query = F.normalize(torch.randn(batch, DIM, device=device), dim=1)
    keys = F.normalize(torch.randn(bank, DIM, device=device), dim=1)
    logits = query @ keys.T / TEMPERATURE
    r = sizes.repeats
    rows = [
        ["the product", time_ms(lambda: query @ keys.T, device, r)],
        [f"`topk` of K = {k:,}", time_ms(lambda: logits.topk(k, dim=1, sorted=False), device, r)],
        ["`kthvalue`", time_ms(lambda: logits.kthvalue(bank - k + 1, dim=1), device, r)],
        ["a sort", time_ms(lambda: logits.sort(dim=1), device, r)],
        ["the softmax", time_ms(lambda: logits.softmax(dim=1), device, r)],
    ]
    x = torch.randn(batch, DIM, device=device, requires_grad=True)
    y = torch.randn(batch, DIM, device=device, requires_grad=True)
    factories = loss_factories(bank, DIM, k)
    for name in (REFERENCE, PLAIN, HARD):
        step = loss_step(factories[name]().to(device), x, y)
        rows.append([f"{name}, a step", time_ms(step, device, r)])
        rows.append([f"{name}, wall clock per step, back to back", wall_ms(step, device, r)])
    return [[name, f"{ms:.3f}"] for name, ms in rows]


def top10_pieces(device: torch.device, sizes: PieceSizes) -> list[list[str]]:
    n = sizes.top10_n
    torch.manual_seed(0)
    z0 = F.normalize(torch.randn(n, DIM, device=device), dim=1)
    z1 = F.normalize(z0 + 0.3 * torch.randn(n, DIM, device=device), dim=1)
    repeats = max(2, sizes.repeats // 4)
    rows = []
    for block in sizes.top10_blocks:
        timed = _top10_block_pieces(z0, z1, block, device, repeats)
        rows += [[f"{block:,}", name, f"{ms:.2f}"] for name, ms in timed.items()]
    return rows


def _top10_block_pieces(
    z0: Tensor, z1: Tensor, block: int, device: torch.device, r: int, k: int = 10
) -> dict[str, float]:
    n = z0.shape[0]
    candidates = torch.cat([z0, z1])
    buffer = torch.empty(block, 2 * n, device=device)
    blocks = math.ceil(n / block)  # a piece timed on one block, scaled to a whole call
    width = 2 * n
    group = max(4, math.isqrt(width // k))

    def products() -> None:
        for start in range(0, n, block):
            torch.mm(z0[start : start + block], candidates.T, out=buffer[: n - start])

    def per_call(fn: Callable[[], object]) -> float:
        return blocks * time_ms(fn, device, r, warmup=1)

    return {
        "the products alone": time_ms(products, device, r, warmup=1),
        "the whole metric": time_ms(
            lambda: metrics.positive_and_top_negative_similarities(z0, z1, k=k, chunk_size=block),
            device,
            r,
            warmup=1,
        ),
        "`topk` on whole blocks": per_call(lambda: buffer.topk(k, dim=1)),
        "the selection (`_top_k_values`)": per_call(
            lambda: similarities._top_k_values(buffer, k, sorted=True)
        ),
        f"maxima of interleaved groups of {group}": per_call(
            lambda: similarities._group_maxima(buffer, group, width // group)
        ),
        "maxima of runs of 32 consecutive entries": per_call(
            lambda: similarities._run_maxima(buffer, 32, width // 32)
        ),
    }


def report(device: torch.device, sizes: PieceSizes) -> str:
    anchors = [f"A = {a:,}" for a in sizes.anchors]
    batch, bank, k = sizes.moco
    return "\n\n".join(
        [
            f"- Machine: {machine_description(device)}",
            f"SimCLR pieces, ms (d = {DIM}, tau = {TEMPERATURE}; A anchors: 2N).",
            markdown_table(["piece", *anchors], simclr_pieces(device, sizes)),
            f"MoCo pieces, ms (batch {batch}, bank {bank:,}, K = {k:,}).",
            markdown_table(["piece", "ms"], moco_pieces(device, sizes)),
            f"Top-10 negatives at N = {sizes.top10_n:,}: ms over all blocks of one call.",
            markdown_table(["block rows", "piece", "ms"], top10_pieces(device, sizes)),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="CPU, toy sizes (the smoke test)")
    parser.add_argument("--output", type=Path, default=None, help="also write the tables here")
    args = parser.parse_args(argv)
    device = gpu_script_device(parser, args.dry_run)
    text = report(device, DRY if args.dry_run else REAL)
    print(text)
    if args.output is not None:
        args.output.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
