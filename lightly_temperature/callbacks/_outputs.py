"""Where the callbacks' results go: loggers, histograms, a PNG figure and a CSV history."""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor


def current_log_step(trainer: Any) -> int:
    """The step Lightning logs step metrics at (batches that stepped the optimizer)."""
    epoch_loop = getattr(getattr(trainer, "fit_loop", None), "epoch_loop", None)
    return int(getattr(epoch_loop, "_batches_that_stepped", trainer.global_step))


def log_to_loggers(trainer: Any, metrics: Mapping[str, float], step: int) -> None:
    """Writes scalars to every attached logger at ``step`` (loggers write on rank zero only).

    Used for step-wise values, as Lightning's own LearningRateMonitor does: ``self.log`` with
    ``on_step=True`` only reaches the loggers on the trainer's ``log_every_n_steps``.
    """
    for logger in trainer.loggers:
        logger.log_metrics(dict(metrics), step=step)


def log_histograms(trainer: Any, histograms: Mapping[str, Tensor], step: int) -> None:
    """Histograms to the TensorBoard and Weights & Biases loggers attached (rank zero only).

    Loggers are recognised by duck typing: a TensorBoard ``SummaryWriter`` experiment has
    ``add_histogram``; a ``WandbLogger`` is recognised by its class name and ``wandb`` is
    imported only then (it is not a dependency).
    """
    for logger in trainer.loggers:
        experiment = logger.experiment
        if hasattr(experiment, "add_histogram"):
            for tag, values in histograms.items():
                experiment.add_histogram(tag, values.detach().float().cpu(), global_step=step)
        elif "wandb" in type(logger).__name__.lower():
            import wandb  # noqa: PLC0415 - optional, only when a WandbLogger is attached

            payload: dict[str, Any] = {
                tag: wandb.Histogram(values.detach().float().cpu().numpy())
                for tag, values in histograms.items()
            }
            payload["trainer/global_step"] = step
            experiment.log(payload)


#: Bin edges of the similarity histograms: 100 bins of width 0.02 on [-1, 1].
SIMILARITY_BINS = [i / 50 - 1 for i in range(101)]


class SimilarityFigure:
    """PNG of the positive vs top-k negative similarity distributions (paper Fig. 8), drawn
    again and again into one figure.

    The figure, its axes, labels, legend and the two filled step patches (Matplotlib's
    ``stairs``: the picture of ``hist(histtype="stepfilled", density=True)``) are built on the
    first :meth:`save`, and the parts that never change (the x axis, its labels, the frame
    background) are rendered once and kept as a pixel buffer. Every call then restores that
    buffer and draws only what changes: the two histograms, the y axis (its range follows the
    data), the spines, the legend and the title, in the order a full draw uses. The pixels are
    those of a full ``savefig`` of the same figure; drawing them costs about 5x less than
    building and drawing a new figure per evaluation (this runs inside the training loop).
    Matplotlib's object API with the Agg canvas: no global backend switch, no pyplot.
    Matplotlib style settings (rcParams) are read when the figure is built.

    Example:
        >>> figure = SimilarityFigure(k=10)
        >>> figure.save("epoch0.png", positive, negatives, "epoch 0")  # (A,), (A, 10)
    """

    DPI = 100

    def __init__(self, k: int) -> None:
        self.k = k
        self._parts: tuple[Any, ...] | None = None

    def __getstate__(self) -> dict[str, Any]:  # the Matplotlib objects are rebuilt when needed
        return {"k": self.k, "_parts": None}

    def _build(self) -> tuple[Any, ...]:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        figure = Figure(figsize=(5, 3.5), dpi=self.DPI)
        canvas = FigureCanvasAgg(figure)
        ax = figure.add_subplot(1, 1, 1)
        zeros = [0.0] * (len(SIMILARITY_BINS) - 1)
        patches = [  # C0, C1: the first colours of the property cycle, as ax.hist takes them
            ax.stairs(zeros, SIMILARITY_BINS, fill=True, alpha=0.6, color=color, label=label)
            for color, label in (("C0", "positive"), ("C1", f"top-{self.k} negatives"))
        ]
        ax.set_xlabel("cosine similarity")
        ax.set_ylabel("density")
        ax.set_xlim(-1, 1)
        title = ax.set_title("", fontsize=9)
        legend = ax.legend(loc="upper left", fontsize=8)
        # fixed margins: tight_layout would draw the figure twice
        figure.subplots_adjust(left=0.13, right=0.97, bottom=0.14, top=0.9)
        # What changes is "animated": left out of canvas.draw(), drawn by save() on top of
        # the background, in z-order (stable, as Axes.draw sorts its children).
        changing = [*patches, ax.yaxis, *ax.spines.values(), legend, title]
        for artist in changing:
            artist.set_animated(True)
        changing.sort(key=lambda artist: artist.get_zorder())
        canvas.draw()
        background = canvas.copy_from_bbox(figure.bbox)
        return figure, canvas, ax, patches, title, changing, background

    def save(self, path: str, positive: Tensor, negatives: Tensor, title: str) -> None:
        import numpy as np
        from matplotlib.image import imsave

        if self._parts is None:
            self._parts = self._build()
        figure, canvas, ax, patches, title_artist, changing, background = self._parts
        top = 0.0
        for patch, values in zip(patches, (positive, negatives)):
            density, _ = np.histogram(
                values.detach().float().cpu().reshape(-1).numpy(),
                bins=SIMILARITY_BINS,
                density=True,
            )
            density = np.nan_to_num(density)  # no value inside [-1, 1]: an empty histogram
            patch.set_data(density)
            top = max(top, float(density.max()))
        ax.set_ylim(0, 1.05 * top if top > 0 else 1.0)  # Matplotlib's 5 % autoscale margin
        title_artist.set_text(title)
        canvas.restore_region(background)
        for artist in changing:
            ax.draw_artist(artist)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        # what FigureCanvasAgg.print_png does with the buffer
        imsave(path, np.asarray(canvas.buffer_rgba()), format="png", origin="upper", dpi=self.DPI)


def save_similarity_figure(
    path: str, positive: Tensor, negatives: Tensor, title: str, k: int
) -> None:
    """One-off PNG of the positive vs top-k negative similarity distributions (paper Fig. 8);
    :class:`SimilarityFigure` reuses its figure over many calls."""
    SimilarityFigure(k).save(path, positive, negatives, title)


class CSVHistory:
    """A CSV file mirroring a list of rows: appended row by row, rewritten once after a resume.

    The first write after construction (or after :meth:`invalidate`, called on resume)
    rewrites the file from the whole in-memory history: rows written after the checkpoint by
    an interrupted run are dropped, and a new log directory gets the full history.
    """

    def __init__(self, columns: Sequence[str]) -> None:
        self.columns = list(columns)
        self._synced_path: str | None = None

    def invalidate(self) -> None:
        self._synced_path = None

    def write(self, path: str, history: list[Mapping[str, Any]]) -> None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if self._synced_path == path:
            rows, mode = history[-1:], "a"
        else:
            rows, mode = history, "w"
        with open(path, mode, newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.columns, extrasaction="ignore")
            if mode == "w":
                writer.writeheader()
            for row in rows:
                writer.writerow({c: _format(row.get(c)) for c in self.columns})
        self._synced_path = path


def _format(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return value
