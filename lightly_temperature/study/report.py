"""``report.md`` and the PNG plots of a study, made from the rows of ``results.csv``.

Example:
    >>> from lightly_temperature.study.report import write_report
    >>> write_report(rows, output_dir="study_output", title="digits, SimCLR")
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import torch

from lightly_temperature.figures import save_similarity_grid
from lightly_temperature.metrics import COLLAPSE_THRESHOLD
from lightly_temperature.probe import few_shot_names
from lightly_temperature.study.config import (
    TEMPERATURE_POLICIES,
    RunSpec,
    display_name,
    temperature_is_scale,
)
from lightly_temperature.study.evaluate import TOP_K
from lightly_temperature.study.results import KEY_COLUMNS

#: Metric rows of the Table-1-shaped table: (column, label, scale).
TABLE_METRICS = (
    ("knn_accuracy", "kNN acc. (%)", 100.0),
    ("linear_accuracy", "linear acc. (%)", 100.0),
    ("uniformity", "uniformity", 1.0),
    ("tolerance", "tolerance", 1.0),
    ("alignment", "alignment", 1.0),
    ("positive_similarity", "positive sim.", 1.0),
    ("top10_negative_similarity", "top-10 neg. sim.", 1.0),
    ("false_negative_rate", "top-10 false-neg. rate", 1.0),
    ("effective_negatives", "effective negatives", 1.0),
    ("embedding_spread", "embedding spread", 1.0),
)
PLOTS = {
    "accuracy": "accuracy_vs_temperature.png",
    "uniformity": "uniformity_vs_temperature.png",
    "tolerance": "tolerance_vs_temperature.png",
    "summary": "summary.png",
    "similarities": "similarity_distributions.png",
    "policies": "temperature_policies.png",
}
SIMILARITY_DIR = "similarities"
#: Per run with a temperature policy: the τ in force at the end of each epoch.
TEMPERATURE_DIR = "temperatures"
#: The metrics on which the policies are compared: (column, label, scale).
POLICY_METRICS = (
    ("knn_accuracy", "kNN acc. (%)", 100.0),
    ("linear_accuracy", "linear acc. (%)", 100.0),
    ("uniformity", "uniformity", 1.0),
    ("tolerance", "tolerance", 1.0),
    ("embedding_spread", "embedding spread", 1.0),
)

Row = dict[str, str]
Aggregate = dict[tuple[str, float], dict[str, tuple[float, float, int]]]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


#: Suffix of the aggregate entry holding a few-shot accuracy's spread over training seeds
#: and label draws together.
TOTAL_SPREAD = "_total_std"


def aggregate(rows: Iterable[Row]) -> Aggregate:
    """Mean, standard deviation and count of each metric per (loss, temperature), over seeds.

    For each few-shot accuracy ``fewshot_accuracy_{k}`` it also holds
    ``fewshot_accuracy_{k}_total_std``: the spread over training seeds and label draws
    together, ``sqrt(variance of the runs' means + mean of the runs' draw variances)`` (the
    law of total variance), the error bars of the plots.
    """
    values: dict[tuple[str, float], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        key = (row["loss"], float(row["temperature"]))
        for column in row:
            if column in KEY_COLUMNS:
                continue
            text = row.get(column, "")
            values[key][column].append(float(text) if text not in ("", None) else math.nan)
    result: Aggregate = {}
    for key, metrics in values.items():
        result[key] = {}
        for column, vs in metrics.items():
            t = torch.tensor(vs, dtype=torch.float64)
            std = t.std().item() if len(vs) > 1 else 0.0
            result[key][column] = (t.mean().item(), std, len(vs))
        for shots in few_shot_counts(result[key]):
            mean_name, draw_name = few_shot_names(shots)
            draw_std = torch.tensor(metrics[draw_name], dtype=torch.float64)
            seed_std, n = result[key][mean_name][1], result[key][mean_name][2]
            total = math.sqrt(seed_std**2 + (draw_std**2).mean().item())
            result[key][mean_name + TOTAL_SPREAD] = (total, 0.0, n)
    return result


def few_shot_counts(metrics: Iterable[str]) -> list[int]:
    """The label counts k of the ``fewshot_accuracy_{k}`` columns among ``metrics``, sorted."""
    prefix = "fewshot_accuracy_"
    counts = []
    for name in metrics:
        k = name[len(prefix) :] if name.startswith(prefix) else ""
        if k.isdigit() and few_shot_names(int(k))[1] in metrics:
            counts.append(int(k))
    return sorted(counts)


def _few_shot_counts_of(agg: Aggregate) -> list[int]:
    return few_shot_counts(next(iter(agg.values()), {}))


def table_metrics(agg: Aggregate) -> list[tuple[str, str, float]]:
    """The table's rows: the accuracies (kNN, linear, then few-shot), then the analysis."""
    few_shot = [
        (few_shot_names(k)[0], f"{k}-shot acc. (%)", 100.0) for k in _few_shot_counts_of(agg)
    ]
    return [*TABLE_METRICS[:2], *few_shot, *TABLE_METRICS[2:]]


def seeds_label(agg: Aggregate) -> str:
    """``"mean ± std over 3 seeds"``, or ``"one seed"``: said on every plot."""
    n = max((m["knn_accuracy"][2] for m in agg.values()), default=1)
    return f"mean ± std over {n} seeds" if n > 1 else "one seed"


def _ordered_losses(keys: Iterable[tuple[str, float]], order: Sequence[str]) -> list[str]:
    present = {loss for loss, _ in keys}
    return [loss for loss in order if loss in present] + sorted(present - set(order))


def format_table(agg: Aggregate, losses: Sequence[str]) -> str:
    """The Table-1-shaped Markdown table: rows loss x metric, columns tau (mean over seeds,
    ``± std`` when there are several)."""
    temperatures = sorted({tau for _, tau in agg})
    header = "| loss | metric | " + " | ".join(f"τ = {t:g}" for t in temperatures) + " |"
    lines = [header, "|---|---|" + "---|" * len(temperatures)]
    for loss in losses:
        first = True
        for column, label, scale in table_metrics(agg):
            cells = []
            for tau in temperatures:
                if (loss, tau) not in agg:
                    cells.append("—")
                    continue
                mean, std, n = agg[(loss, tau)][column]
                if math.isnan(mean):  # not defined for this run (e.g. τ only a scale)
                    cells.append("n/a")
                    continue
                digits = 1 if scale == 100.0 else 3
                cell = f"{mean * scale:.{digits}f}"
                if n > 1:
                    cell += f" ± {std * scale:.{digits}f}"
                cells.append(cell)
            name = f"**{display_name(loss)}**" if first else ""
            first = False
            lines.append(f"| {name} | {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _plot_metric(
    ax,
    agg: Aggregate,
    losses: Sequence[str],
    column: str,
    label: str,
    scale: float,
    spread: str | None = None,
):
    """One line per loss of ``column`` against τ; error bars: the std over seeds, or the
    aggregate entry ``spread`` when given (a few-shot accuracy's seeds-and-draws spread)."""
    taus = sorted({tau for _, tau in agg})
    for index, loss in enumerate(losses):
        color = f"C{index % 10}"
        points = sorted((tau, agg[(name, tau)][column]) for name, tau in agg if name == loss)
        if not points:
            continue
        if temperature_is_scale(loss) and len(points) == 1:
            (mean, _, _) = points[0][1]
            ax.axhline(
                mean * scale, linestyle="--", color=color, label=f"{display_name(loss)} (no τ)"
            )
            continue
        xs = [p[0] for p in points]
        # Lines side by side (a few % of a log decade) so that error bars do not hide each other.
        dodge = 1.0 + 0.025 * (index - (len(losses) - 1) / 2)
        means = [p[1][0] * scale for p in points]
        if spread is None:
            stds = [p[1][1] * scale for p in points]
        else:
            stds = [agg[(loss, tau)][spread][0] * scale for tau in xs]
        ax.errorbar(
            [x * dodge for x in xs],
            means,
            color=color,
            yerr=stds if any(stds) else None,
            marker="o",
            capsize=3,
            label=display_name(loss),
        )
    ax.set_xscale("log")
    ax.set_xticks(taus, [f"{t:g}" for t in taus])
    ax.minorticks_off()
    ax.set_xlabel("temperature τ")
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def plot_metrics(
    agg: Aggregate, losses: Sequence[str], output_dir: Path, title: str
) -> dict[str, Path]:
    """accuracy / uniformity / tolerance against tau (one line per loss), and a 2x2 summary.

    Every title says the number of seeds (error bars: std over seeds) or "one seed"; the
    few-shot panels' error bars span training seeds and label draws."""
    plt = _pyplot()
    paths = {}
    seeds = seeds_label(agg)
    few_shot = _few_shot_counts_of(agg)
    several = max((m["knn_accuracy"][2] for m in agg.values()), default=1) > 1
    bars = "bars: seeds and label draws" if several else "bars: label draws"
    panels = 2 + len(few_shot)
    rows = (panels + 1) // 2  # two panels a row: fits a slide
    fig, grid = plt.subplots(rows, 2, figsize=(11, 4 * rows), squeeze=False)
    axes = grid.reshape(-1)
    for ax in axes[panels:]:
        ax.set_visible(False)
    _plot_metric(axes[0], agg, losses, "knn_accuracy", "kNN accuracy (%)", 100.0)
    _plot_metric(axes[1], agg, losses, "linear_accuracy", "linear-probe accuracy (%)", 100.0)
    for ax, k in zip(axes[2:], few_shot):
        column = few_shot_names(k)[0]
        label = f"{k}-shot accuracy (%)"
        _plot_metric(ax, agg, losses, column, label, 100.0, column + TOTAL_SPREAD)
        ax.set_title(
            f"{k} label{'s' if k > 1 else ''} per class, 1-NN ({bars})",
            fontsize=10,
        )
    fig.suptitle(f"Accuracy against τ — {title} ({seeds})")
    fig.tight_layout()
    paths["accuracy"] = output_dir / PLOTS["accuracy"]
    fig.savefig(paths["accuracy"], dpi=100)
    plt.close(fig)
    for column, label in (
        ("uniformity", "uniformity (−L_uniformity, higher = more uniform)"),
        ("tolerance", "tolerance (mean same-class cosine similarity)"),
    ):
        fig, ax = plt.subplots(figsize=(6, 4))
        _plot_metric(ax, agg, losses, column, label, 1.0)
        ax.set_title(f"{column.capitalize()} against τ — {title}\n({seeds})", fontsize=10)
        fig.tight_layout()
        paths[column] = output_dir / PLOTS[column]
        fig.savefig(paths[column], dpi=100)
        plt.close(fig)
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    _plot_metric(axes[0, 0], agg, losses, "linear_accuracy", "linear-probe accuracy (%)", 100.0)
    if few_shot:  # full-label kNN saturates on small data; the fewest labels show τ's effect
        column = few_shot_names(few_shot[0])[0]
        label = f"{few_shot[0]}-shot accuracy (%)"
        _plot_metric(axes[0, 1], agg, losses, column, label, 100.0, column + TOTAL_SPREAD)
        axes[0, 1].set_title(bars, fontsize=9)
    else:
        _plot_metric(axes[0, 1], agg, losses, "knn_accuracy", "kNN accuracy (%)", 100.0)
    _plot_metric(axes[1, 0], agg, losses, "uniformity", "uniformity (−L_uniformity)", 1.0)
    _plot_metric(axes[1, 1], agg, losses, "tolerance", "tolerance", 1.0)
    fig.suptitle(f"{title} ({seeds})")
    fig.tight_layout()
    paths["summary"] = output_dir / PLOTS["summary"]
    fig.savefig(paths["summary"], dpi=100)
    plt.close(fig)
    return paths


def load_similarities(file: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The positive and top-k negative similarities saved for one run. Loaded as tensors
    only (``weights_only``: a file in a shared folder cannot run code); ValueError naming the
    file if it is damaged or holds something else."""
    try:
        saved = torch.load(file, map_location="cpu", weights_only=True)
        positive, negatives = saved["positive"], saved["negatives"]
        if not (isinstance(positive, torch.Tensor) and isinstance(negatives, torch.Tensor)):
            raise TypeError("not tensors")
    except Exception as error:  # unpickling raises many kinds; all mean "not usable"
        raise ValueError(
            f"{file} is not a run's saved similarities ({type(error).__name__})"
        ) from None
    return positive, negatives


def plot_similarity_grid(
    runs: Sequence[tuple[str, str, Path]], path: Path, warn: Callable[[str], None] = print
) -> Path | None:
    """All runs' similarity distributions in one figure (the renderer of
    :mod:`lightly_temperature.figures`), from the ``.pt`` files saved per run.
    ``runs``: (loss label, tau label, file) in display order. A damaged file is renamed to
    ``*.pt.rejected`` and left out of the figure, with a warning."""
    panels = []
    for loss, tau, file in runs:
        if not file.exists():
            continue
        try:
            positive, negatives = load_similarities(file)
        except ValueError as error:
            rejected = file.with_name(file.name + ".rejected")
            file.replace(rejected)
            warn(f"warning: {error}: moved to {rejected}, left out of {path.name}")
            continue
        panels.append((f"{loss}, {tau}", positive, negatives))
    if not panels:
        return None
    title = (
        f"Cosine similarity of each test image's view to its other view (positive) and to its "
        f"{TOP_K} most similar other images (negatives)"
    )
    save_similarity_grid(path, panels, k=TOP_K, title=title)
    return path


def collapse_summary(agg: Aggregate) -> list[str]:
    """The runs whose embeddings collapsed (spread below ``COLLAPSE_THRESHOLD``), named."""
    collapsed = [
        (loss, tau, metrics["embedding_spread"][0])
        for (loss, tau), metrics in sorted(agg.items())
        if metrics["embedding_spread"][0] < COLLAPSE_THRESHOLD  # NaN: not measured, no flag
    ]
    if not collapsed:
        return []
    runs = "; ".join(
        f"{display_name(loss)} at τ = {tau:g} ({spread:.3f})" for loss, tau, spread in collapsed
    )
    return [
        f"**Collapsed:** {runs}. Their embeddings of the test images point nearly the same way "
        f"(embedding spread below {COLLAPSE_THRESHOLD}; 1 = spread over the sphere, 0 = one "
        "point): read their other numbers as those of a collapsed model, not as effects of τ."
    ]


def direction_summary(agg: Aggregate) -> list[str]:
    """Plain-language check of the paper's direction of effects on this study's numbers."""
    lines = []
    for loss in ("ntxent", "contrastive", "hard_contrastive"):
        points = sorted((tau, m) for (name, tau), m in agg.items() if name == loss)
        if len(points) < 2:
            continue
        (t0, first), (t1, last) = points[0], points[-1]
        u0, u1 = first["uniformity"][0], last["uniformity"][0]
        tol0, tol1 = first["tolerance"][0], last["tolerance"][0]
        us = [m["uniformity"][0] for _, m in points]
        lines.append(
            f"- {display_name(loss)}: from τ = {t0:g} to τ = {t1:g}, uniformity {u0:.3f} → "
            f"{u1:.3f} ({'falls' if u1 < u0 else 'rises'}; range {min(us):.3f}–{max(us):.3f}), "
            f"tolerance {tol0:.3f} → {tol1:.3f} ({'rises' if tol1 > tol0 else 'falls'})."
        )
    return lines


#: The seed in a run's name (:attr:`RunSpec.name`: ``..._s{seed}_e{epochs}``).
_RUN_SEED = re.compile(r"_s(\d+)_e\d+$")


def _one_run_per_setting(
    run_files: Sequence[tuple[str, str, str, Path]],
) -> list[tuple[str, str, Path]]:
    """The similarity grid's panels: the first run (in grid order: the first seed) of each
    loss and τ, so that the figure stays one panel per setting whatever the seeds."""
    panels: dict[tuple[str, str], tuple[str, str, Path]] = {}
    for _, loss, tau, file in run_files:
        if file.exists():
            panels.setdefault((loss, tau), (display_name(loss), tau, file))
    return list(panels.values())


PLAIN, HARD = "ntxent", "hard_contrastive"


def _mean_std(agg: Aggregate, loss: str, tau: float, column: str) -> tuple[float, float, int]:
    return agg[(loss, tau)][column]


def _beyond(a: tuple[float, float, int], b: tuple[float, float, int]) -> str:
    """Whether ``a`` exceeds ``b`` beyond the seed spread: their mean ± std intervals apart."""
    (ma, sa, na), (mb, sb, nb) = a, b
    if min(na, nb) < 2:
        return "one seed: no spread to judge against"
    if ma - sa > mb + sb:
        return "beyond the seed spread"
    return "within the seed spread"


def _pct(value: tuple[float, float, int]) -> str:
    mean, std, n = value
    return f"{100 * mean:.1f} %" + (f" ± {100 * std:.1f}" if n > 1 else "")


def few_shot_findings(agg: Aggregate) -> list[str]:
    """The paper's accuracy findings checked on the few-shot accuracies, each with its numbers
    and whether it holds beyond the seed spread (means ± std over seeds whose intervals do
    not overlap): the plain loss's inverted U in τ, the hard loss holding the many-label
    accuracy at the largest τ, and the hard loss losing one-label accuracy there."""
    counts = _few_shot_counts_of(agg)
    if not counts:
        return []
    few, many = few_shot_names(counts[0])[0], few_shot_names(counts[-1])[0]
    plain = sorted(tau for loss, tau in agg if loss == PLAIN)
    hard = sorted(tau for loss, tau in agg if loss == HARD)
    lines = []
    if len(plain) >= 3:
        for column, k in ((few, counts[0]), (many, counts[-1])):
            values = {tau: _mean_std(agg, PLAIN, tau, column) for tau in plain}
            peak = max(plain, key=lambda tau: values[tau][0])
            ends = (plain[0], plain[-1])
            shape = " → ".join(f"{100 * values[tau][0]:.1f}" for tau in plain)
            if peak in ends:
                verdict = f"does not hold: the highest accuracy is at the edge, τ = {peak:g}"
            else:
                sides = {end: _beyond(values[peak], values[end]) for end in ends}
                holds = all(side == "beyond the seed spread" for side in sides.values())
                verdict = (
                    ("holds beyond the seed spread" if holds else "peak inside the grid")
                    + f": τ = {peak:g} ({_pct(values[peak])}) above "
                    + " and ".join(
                        f"τ = {end:g} ({_pct(values[end])}, {sides[end]})" for end in ends
                    )
                )
            lines.append(
                f"- **Contrastive, inverted U in τ ({k} label{'s' if k > 1 else ''} per "
                f"class):** {shape} % over τ = {', '.join(f'{t:g}' for t in plain)}; {verdict}."
            )
    common = sorted(set(plain) & set(hard))
    if common:
        tau = common[-1]
        p_many, h_many = (_mean_std(agg, loss, tau, many) for loss in (PLAIN, HARD))
        verdict = _beyond(h_many, p_many) if h_many[0] > p_many[0] else "no, not above"
        lines.append(
            f"- **HardContrastive holds the accuracy at large τ ({counts[-1]} labels per "
            f"class, τ = {tau:g}):** HardContrastive {_pct(h_many)}, Contrastive "
            f"{_pct(p_many)}; hard above plain: {verdict}."
        )
        p_few, h_few = (_mean_std(agg, loss, tau, few) for loss in (PLAIN, HARD))
        verdict = _beyond(p_few, h_few) if h_few[0] < p_few[0] else "no, not below"
        lines.append(
            f"- **HardContrastive loses one-label accuracy ({counts[0]} label"
            f"{'s' if counts[0] > 1 else ''} per class, τ = {tau:g}):** HardContrastive "
            f"{_pct(h_few)}, Contrastive {_pct(p_few)}; hard below plain: {verdict}."
        )
    return lines


def _table_rows(rows: Sequence[Row]) -> tuple[list[Row], str]:
    """The rows of Table 1 and its plots: one temperature policy (constant when there is one),
    so that a (loss, τ) cell never mixes policies."""
    policies = [row.get("temperature_policy", "constant") for row in rows]
    if not policies:
        return [], "constant"
    chosen = "constant" if "constant" in policies else policies[0]
    return [row for row, p in zip(rows, policies) if p == chosen], chosen


def _policy_order(policies: Iterable[str]) -> list[str]:
    present = set(policies)
    return [p for p in TEMPERATURE_POLICIES if p in present] + sorted(
        present - set(TEMPERATURE_POLICIES)
    )


def format_policy_table(rows: Sequence[Row], loss_order: Sequence[str] = ()) -> str:
    """Rows: loss, τ and policy (softmax-temperature losses only); columns: the metrics of
    :data:`POLICY_METRICS` and the few-shot accuracies the rows hold, mean over seeds
    (``± std`` with several)."""
    groups: dict[tuple[str, float, str], list[Row]] = defaultdict(list)
    for row in rows:
        if temperature_is_scale(row["loss"]):
            continue
        groups[(row["loss"], float(row["temperature"]), row["temperature_policy"])].append(row)
    losses = _ordered_losses([(loss, tau) for loss, tau, _ in groups], loss_order)
    order = _policy_order(p for _, _, p in groups)
    # The few-shot accuracies the rows hold, after kNN and linear accuracy (as in Table 1).
    few_shot = [
        (few_shot_names(k)[0], f"{k}-shot acc. (%)", 100.0)
        for k in few_shot_counts(rows[0].keys() if rows else ())
    ]
    metrics = [*POLICY_METRICS[:2], *few_shot, *POLICY_METRICS[2:]]
    header = "| loss | τ (start) | policy | " + " | ".join(m[1] for m in metrics) + " |"
    lines = [header, "|---|---|---|" + "---|" * len(metrics)]
    for loss in losses:
        for tau in sorted({t for name, t, _ in groups if name == loss}):
            for policy in order:
                group = groups.get((loss, tau, policy))
                if not group:
                    continue
                cells = []
                for column, _, scale in metrics:
                    values = torch.tensor(
                        [float(r[column]) if r[column] != "" else math.nan for r in group],
                        dtype=torch.float64,
                    )
                    digits = 1 if scale == 100.0 else 3
                    cell = f"{values.mean().item() * scale:.{digits}f}"
                    if len(group) > 1:
                        cell += f" ± {values.std().item() * scale:.{digits}f}"
                    cells.append("n/a" if math.isnan(values.mean().item()) else cell)
                lines.append(
                    f"| {display_name(loss)} | {tau:g} | {policy} | " + " | ".join(cells) + " |"
                )
    return "\n".join(lines)


def load_temperatures(file: Path) -> tuple[list[int], list[float], list[float], list[float]]:
    """(steps, mean τ, min τ, max τ) of a run's ``temperatures/<run>.csv``."""
    steps, means, lows, highs = [], [], [], []
    for line in file.read_text().splitlines()[1:]:
        step, mean, low, high = line.split(",")
        steps.append(int(step))
        means.append(float(mean))
        lows.append(float(low))
        highs.append(float(high))
    return steps, means, lows, highs


def plot_temperatures(runs: Sequence[tuple[str, Path]], path: Path, title: str) -> Path | None:
    """τ over training, one line per run (``runs``: label and ``temperatures/<run>.csv``);
    a band between the smallest and largest τ of a per-sample policy."""
    present = [(label, file) for label, file in runs if file.exists()]
    if not present:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9.5, 4))
    for index, (label, file) in enumerate(present):
        steps, means, lows, highs = load_temperatures(file)
        color = f"C{index % 10}"
        ax.plot(steps, means, marker=".", color=color, label=label)
        if any(low != high for low, high in zip(lows, highs)):
            ax.fill_between(steps, lows, highs, color=color, alpha=0.2)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("τ in force (mean; band: min–max)")
    ax.set_title(f"τ over training per policy: {title}")
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))  # clear of the lines
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def policy_section(
    rows: Sequence[Row],
    output_dir: Path,
    title: str,
    table_policy: str,
    loss_order: Sequence[str] = (),
) -> list[str]:
    """The report's comparison of the temperature policies: table and τ-over-training plot."""
    runs = []
    first_seed = min((int(row["seed"]) for row in rows), default=0)
    for row in rows:
        policy = row["temperature_policy"]
        if policy == "constant" or temperature_is_scale(row["loss"]):
            continue
        if int(row["seed"]) != first_seed:  # one line per loss, τ and policy
            continue
        name = RunSpec.from_row(row).name
        label = f"{display_name(row['loss'])} τ={float(row['temperature']):g} {policy}"
        runs.append((label, output_dir / TEMPERATURE_DIR / f"{name}.csv"))
    plot = plot_temperatures(runs, output_dir / PLOTS["policies"], title)
    lines = [
        "## Temperature policies",
        "",
        "The same runs with the temperature under each policy: `constant` (the grid's τ), "
        "`cosine` (from τ_max = τ down to τ_min and back, Kukleva et al. 2023), `learnable` "
        "(τ trained with the model from τ, clamped), `adaptive` (MACL's τ = τ (1 + α (A − A0)), "
        "A the batch's mean positive similarity) and `individual` (one τ per training sample "
        "from τ, iSogCLR's update). The τ column is where each starts. Table 1 above shows the "
        f"`{table_policy}` runs.",
        "",
        format_policy_table(rows, loss_order),
        "",
    ]
    if plot is not None:
        lines += [
            f"τ in force at the end of each epoch (seed {first_seed}; the band of a "
            "per-sample τ: its smallest and largest):",
            "",
            f"![τ over training per policy]({PLOTS['policies']})",
            "",
        ]
    return lines


def write_report(
    rows: Sequence[Row],
    output_dir: str | Path,
    title: str,
    settings: Sequence[str] = (),
    loss_order: Sequence[str] = (),
    run_files: Sequence[tuple[str, str, str, Path]] = (),
    warn: Callable[[str], None] = print,
) -> Path:
    """Writes ``report.md`` and the plots into ``output_dir`` and returns the report's path.

    ``run_files``: (run name, loss, tau label, saved similarities) for the per-run plots;
    ``warn`` receives a line for each damaged file left out.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    all_rows = rows
    rows, table_policy = _table_rows(rows)
    agg = aggregate(rows)
    losses = _ordered_losses(agg, loss_order)
    lines = [f"# Temperature study: {title}", ""]
    if settings:
        lines += [f"- {s}" for s in settings] + [""]
    if not agg:
        lines.append("No finished runs yet.")
        path = output_dir / "report.md"
        path.write_text("\n".join(lines) + "\n")
        return path
    plot_metrics(agg, losses, output_dir, title)
    grid = plot_similarity_grid(
        _one_run_per_setting(run_files), output_dir / PLOTS["similarities"], warn
    )
    n_seeds = max(m["knn_accuracy"][2] for m in agg.values())
    lines += [
        "## Table 1 (shaped like the paper's)",
        "",
        "Rows: loss × metric; columns: temperature τ"
        + (f"; mean ± std over {n_seeds} seeds" if n_seeds > 1 else "")
        + ". Simple and HardSimple have no temperature (τ only rescales their gradient): they "
        "run once, at the τ of their column.",
        "",
        format_table(agg, losses),
        "",
    ]
    policies = {row.get("temperature_policy", "constant") for row in all_rows}
    if policies != {"constant"}:
        lines += policy_section(all_rows, output_dir, title, table_policy, loss_order)
    summary = direction_summary(agg)
    if summary:
        lines += ["## Direction of effects", ""] + summary + [""]
    findings = few_shot_findings(agg)
    if findings:
        lines += [
            "## Accuracy findings with few labels",
            "",
            "The paper's accuracy findings, on the few-shot accuracies (full-label kNN and "
            "linear accuracy saturate on small data sets). A difference holds *beyond the seed "
            "spread* when the two means ± their std over seeds do not overlap.",
            "",
            *findings,
            "",
        ]
    collapsed = collapse_summary(agg)
    if collapsed:
        lines += ["## Collapse", ""] + collapsed + [""]
    lines += [
        "## Metrics",
        "",
        "- **uniformity** = −L_uniformity (t = 2) of the normalised embeddings of the plain "
        "test images: higher means the embeddings spread more evenly over the hypersphere.",
        "- **tolerance**: mean cosine similarity of test embeddings of the same class: higher "
        "means semantically similar samples are kept closer together.",
        "- **alignment**: mean squared distance between the embeddings of two augmented views "
        "(lower = views closer); **positive / top-10 negative sim.**: mean similarity of each "
        "anchor to its positive and to its 10 most similar other samples (paper Fig. 8).",
        "- **top-10 false-neg. rate**: fraction of each plain test image's 10 most similar "
        "other test images that share its label (the hardest negatives that are in fact of "
        "its class); **effective negatives**: exp of the entropy of the relative penalties "
        "r_i of each anchor of the two views over its 2N − 2 negatives (its K with a top-K "
        "loss), at the run's τ: how many negatives the loss listens to (n/a for a loss whose "
        "τ only rescales it).",
        "- **embedding spread**: Lightly's `std_of_l2_normalized` of the plain test images' "
        "embeddings times sqrt(dim): 1 when they spread over the sphere, 0 when they all point "
        f"the same way; below {COLLAPSE_THRESHOLD} a run is flagged as collapsed.",
        "- **kNN / linear acc.**: test accuracy of Lightly's weighted kNN and of a logistic "
        "regression on the frozen backbone features.",
        "- **k-shot acc.**: accuracy of the test images' projections classified by their "
        "nearest (cosine) of k labelled train images per class, mean over seeded label draws "
        "(the same draws for every run); the plots' error bars span training seeds and label "
        "draws.",
        "- All analysis metrics are those `TemperatureAnalysis` logs for the trained module "
        "and these probes (`lightly_temperature.probe`), on the projection head's output.",
        "",
        "## Plots",
        "",
        f"![summary]({PLOTS['summary']})",
        "",
        f"- [accuracy against τ]({PLOTS['accuracy']})",
        f"- [uniformity against τ]({PLOTS['uniformity']})",
        f"- [tolerance against τ]({PLOTS['tolerance']})",
    ]
    if grid is not None:
        lines.append(
            f"- [positive vs top-10 negative similarities, one run per loss and τ (its first "
            f"seed)]({PLOTS['similarities']})"
        )
    lines += ["", "### Similarity distributions per run", ""]
    several_seeds = n_seeds > 1
    for name, loss, tau, _ in run_files:
        png = f"{SIMILARITY_DIR}/{name}.png"
        if (output_dir / png).exists():
            seed = _RUN_SEED.search(name) if several_seeds else None
            label = f", seed {seed[1]}" if seed else ""
            lines.append(f"- [{display_name(loss)}, {tau}{label}]({png})")
    lines += ["", "Raw numbers: [results.csv](results.csv)."]
    path = output_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
