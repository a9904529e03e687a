"""The paper's Fig. 8: positive vs top-k negative cosine similarities, as density histograms.

One renderer for every such picture of the package: the PNG :class:`TemperatureAnalysis`
writes per evaluation and the study's per-run PNGs and grid of all runs. Same bins (100 of
width 0.02 on [-1, 1]), same colours (positive ``C0``, negatives ``C1``: the first colours of
Matplotlib's property cycle), same labels. Matplotlib's object API with the Agg canvas: no
global backend switch, no pyplot; style settings (rcParams) are read when a figure is built.

Example:
    >>> from lightly_temperature.figures import save_similarity_figure, save_similarity_grid
    >>> save_similarity_figure("run.png", positive, negatives, "τ = 0.5", k=10)  # (N,), (N, 10)
    >>> save_similarity_grid("all.png", [("τ = 0.1", pos_a, neg_a), ("τ = 1", pos_b, neg_b)], k=10)
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

from torch import Tensor

#: Bin edges of the similarity histograms: 100 bins of width 0.02 on [-1, 1].
SIMILARITY_BINS = [i / 50 - 1 for i in range(101)]
#: Colours of the positive and the negatives' histograms.
POSITIVE_COLOR, NEGATIVE_COLOR = "C0", "C1"


def similarity_densities(values: Tensor) -> Any:
    """Density histogram of ``values`` over :data:`SIMILARITY_BINS` (a NumPy array; zeros when
    no value lies in [-1, 1])."""
    import numpy as np

    density, _ = np.histogram(
        values.detach().float().cpu().reshape(-1).numpy(), bins=SIMILARITY_BINS, density=True
    )
    return np.nan_to_num(density)


def _similarity_axes(ax: Any, k: int) -> tuple[list[Any], Any, Any]:
    """Draws the empty histograms, axis labels and limits, title and legend into ``ax``;
    returns (the two step patches, the title, the legend)."""
    zeros = [0.0] * (len(SIMILARITY_BINS) - 1)
    # Matplotlib's stairs: the picture of hist(histtype="stepfilled", density=True).
    patches = [
        ax.stairs(zeros, SIMILARITY_BINS, fill=True, alpha=0.6, color=color, label=label)
        for color, label in ((POSITIVE_COLOR, "positive"), (NEGATIVE_COLOR, f"top-{k} negatives"))
    ]
    ax.set_xlabel("cosine similarity")
    ax.set_ylabel("density")
    ax.set_xlim(-1, 1)
    title = ax.set_title("", fontsize=9)
    legend = ax.legend(loc="upper left", fontsize=8)
    return patches, title, legend


def _set_data(ax: Any, patches: list[Any], positive: Tensor, negatives: Tensor) -> None:
    top = 0.0
    for patch, values in zip(patches, (positive, negatives)):
        density = similarity_densities(values)
        patch.set_data(density)
        top = max(top, float(density.max()))
    ax.set_ylim(0, 1.05 * top if top > 0 else 1.0)  # Matplotlib's 5 % autoscale margin


class SimilarityFigure:
    """PNG of the positive vs top-k negative similarity distributions, drawn again and again
    into one figure.

    The figure, its axes, labels, legend and the two filled step patches are built on the
    first :meth:`save`, and the parts that never change (the x axis, its labels, the frame
    background) are rendered once and kept as a pixel buffer. Every call then restores that
    buffer and draws only what changes: the two histograms, the y axis (its range follows the
    data), the spines, the legend and the title, in the order a full draw uses. The pixels are
    those of a full ``savefig`` of the same figure; drawing them costs about 5x less than
    building and drawing a new figure per evaluation (this runs inside the training loop).

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
        patches, title, legend = _similarity_axes(ax, self.k)
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
        return canvas, ax, patches, title, changing, background

    def render(self, positive: Tensor, negatives: Tensor, title: str) -> Any:
        """The figure of ``positive`` (N,) and ``negatives`` (N, k) as RGBA pixels, a NumPy
        ``uint8`` array of shape (height, width, 4) (a copy: the next call redraws the canvas)."""
        import numpy as np

        if self._parts is None:
            self._parts = self._build()
        canvas, ax, patches, title_artist, changing, background = self._parts
        _set_data(ax, patches, positive, negatives)
        title_artist.set_text(title)
        canvas.restore_region(background)
        for artist in changing:
            ax.draw_artist(artist)
        return np.array(canvas.buffer_rgba())

    def save(
        self, path: str | os.PathLike, positive: Tensor, negatives: Tensor, title: str
    ) -> None:
        """Writes the PNG of ``positive`` (N,) and ``negatives`` (N, k) to ``path``."""
        write_png(path, self.render(positive, negatives, title), self.DPI)


def write_png(path: str | os.PathLike, pixels: Any, dpi: int = SimilarityFigure.DPI) -> None:
    """Writes RGBA ``pixels`` (height, width, 4) as a PNG, as ``FigureCanvasAgg.print_png``
    writes its buffer."""
    from matplotlib.image import imsave

    os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)
    imsave(path, pixels, format="png", origin="upper", dpi=dpi)


def save_similarity_figure(
    path: str | os.PathLike, positive: Tensor, negatives: Tensor, title: str, k: int
) -> None:
    """One-off PNG of the positive vs top-k negative similarity distributions;
    :class:`SimilarityFigure` reuses its figure over many calls."""
    SimilarityFigure(k).save(path, positive, negatives, title)


def save_similarity_grid(
    path: str | os.PathLike,
    panels: Sequence[tuple[str, Tensor, Tensor]],
    k: int,
    columns: int = 4,
) -> None:
    """One PNG holding a panel per ``(title, positive, negatives)``, ``columns`` per row, each
    drawn as :class:`SimilarityFigure` draws its figure."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not panels:
        raise ValueError("panels must hold at least one (title, positive, negatives), got none")
    columns = min(columns, len(panels))
    rows = math.ceil(len(panels) / columns)
    figure = Figure(figsize=(4 * columns, 3 * rows), dpi=SimilarityFigure.DPI)
    FigureCanvasAgg(figure)
    for index, (title, positive, negatives) in enumerate(panels):
        ax = figure.add_subplot(rows, columns, index + 1)
        patches, title_artist, _ = _similarity_axes(ax, k)
        _set_data(ax, patches, positive, negatives)
        title_artist.set_text(title)
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)
    figure.savefig(path)
