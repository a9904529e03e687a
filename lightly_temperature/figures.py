"""The paper's Fig. 8: positive vs top-k negative cosine similarities, as density histograms.

One renderer for every such picture of the package: the PNG :class:`TemperatureAnalysis`
writes per evaluation and the study's per-run PNGs and grid of all runs. Same bins (100 of
width 0.02 on [-1, 1]), same colours (positive ``C0``, negatives ``C1``: the first colours of
Matplotlib's property cycle, also those of positives and negatives in ``explain --plot``),
same labels. The y range leaves the top quarter free for the legend. Matplotlib's object API
with the Agg canvas: no global backend switch, no pyplot; style settings (rcParams) are read
when a figure is built.

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
#: Colours of the positive and the negatives, in every figure of the package that shows them.
POSITIVE_COLOR, NEGATIVE_COLOR = "C0", "C1"
#: The tallest histogram reaches this fraction of the axes' height: the legend, in the top
#: left corner, stays clear of the peaks wherever they are.
PEAK_HEIGHT = 0.75
#: Labels of the histograms and of the axes.
POSITIVE_LABEL, Y_LABEL = "positive", "density"


def similarity_densities(values: Tensor) -> Any:
    """Density histogram of ``values`` over :data:`SIMILARITY_BINS` (a NumPy array; zeros when
    no value lies in [-1, 1])."""
    import numpy as np

    density, _ = np.histogram(
        values.detach().float().cpu().reshape(-1).numpy(), bins=SIMILARITY_BINS, density=True
    )
    return np.nan_to_num(density)


def negatives_label(k: int) -> str:
    return f"top-{k} negatives"


def fitted_range(*values: Tensor) -> tuple[float, float]:
    """An x range for similarity histograms holding every finite value of ``values``: the
    data's extent widened by 0.05 and rounded out to tenths, within [-1, 1] (at least 0.2
    wide); [-1, 1] when there is no finite value."""
    import torch

    finite = [v.detach().float().reshape(-1) for v in values]
    finite = [v[torch.isfinite(v)] for v in finite]
    finite = [v for v in finite if v.numel()]
    if not finite:
        return -1.0, 1.0
    low = min(float(v.min()) for v in finite)
    high = max(float(v.max()) for v in finite)
    low = max(-1.0, math.floor((low - 0.05) * 10) / 10)
    high = min(1.0, math.ceil((high + 0.05) * 10) / 10)
    if high - low < 0.2:
        low, high = max(-1.0, high - 0.2), min(1.0, low + 0.2)
    return low, high


def _similarity_axes(
    ax: Any, k: int, x_range: tuple[float, float] = (-1.0, 1.0), legend: bool = True
) -> tuple[list[Any], Any, Any]:
    """Draws the empty histograms, axis labels and limits, title and legend (unless not
    ``legend``) into ``ax``; returns (the two step patches, the title, the legend or None)."""
    zeros = [0.0] * (len(SIMILARITY_BINS) - 1)
    # Matplotlib's stairs: the picture of hist(histtype="stepfilled", density=True).
    patches = [
        ax.stairs(zeros, SIMILARITY_BINS, fill=True, alpha=0.6, color=color, label=label)
        for color, label in (
            (POSITIVE_COLOR, POSITIVE_LABEL),
            (NEGATIVE_COLOR, negatives_label(k)),
        )
    ]
    ax.set_xlabel("cosine similarity")
    ax.set_ylabel(Y_LABEL)
    ax.set_xlim(*x_range)
    title = ax.set_title("", fontsize=10)
    handle = ax.legend(loc="upper left", fontsize=8) if legend else None
    return patches, title, handle


def _set_data(
    ax: Any, patches: list[Any], positive: Tensor, negatives: Tensor, peak: float = PEAK_HEIGHT
) -> None:
    """The histograms of ``positive`` and ``negatives``, the tallest reaching ``peak`` of the
    axes' height."""
    top = 0.0
    for patch, values in zip(patches, (positive, negatives)):
        density = similarity_densities(values)
        patch.set_data(density)
        top = max(top, float(density.max()))
    ax.set_ylim(0, top / peak if top > 0 else 1.0)


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

    def __init__(self, k: int, x_range: tuple[float, float] = (-1.0, 1.0)) -> None:
        self.k = k
        #: Fixed, so that the figures of successive evaluations (or runs) compare.
        self.x_range = x_range
        self._parts: tuple[Any, ...] | None = None

    def __getstate__(self) -> dict[str, Any]:  # the Matplotlib objects are rebuilt when needed
        return {"k": self.k, "x_range": self.x_range, "_parts": None}

    def _build(self) -> tuple[Any, ...]:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        figure = Figure(figsize=(5, 3.5), dpi=self.DPI)
        canvas = FigureCanvasAgg(figure)
        ax = figure.add_subplot(1, 1, 1)
        patches, title, legend = _similarity_axes(ax, self.k, self.x_range)
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
    title: str | None = None,
) -> None:
    """One PNG holding a panel per ``(title, positive, negatives)``, ``columns`` per row, each
    drawn as :class:`SimilarityFigure` draws its figure, for a slide: one x range fitted to
    every panel's data (:func:`fitted_range`, the same in all panels so that they compare),
    one legend for the figure above the panels, titles and labels at a readable size.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    if not panels:
        raise ValueError("panels must hold at least one (title, positive, negatives), got none")
    columns = min(columns, len(panels))
    rows = math.ceil(len(panels) / columns)
    x_range = fitted_range(*(v for _, positive, negatives in panels for v in (positive, negatives)))
    figure = Figure(
        figsize=(4 * columns, 3.2 * rows + 0.6), dpi=SimilarityFigure.DPI, layout="constrained"
    )
    FigureCanvasAgg(figure)
    for index, (panel_title, positive, negatives) in enumerate(panels):
        ax = figure.add_subplot(rows, columns, index + 1)
        patches, title_artist, _ = _similarity_axes(ax, k, x_range, legend=False)
        _set_data(ax, patches, positive, negatives, peak=1 / 1.05)  # no legend inside
        title_artist.set_text(panel_title)
        title_artist.set_fontsize(12)
        ax.xaxis.label.set_fontsize(11)
        ax.yaxis.label.set_fontsize(11)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=5))  # tick labels that do not touch
        if index % columns:
            ax.set_ylabel("")  # one y label per row, on its first panel
    figure.legend(
        handles=patches,
        loc="outside upper center",
        ncol=2,
        fontsize=11,
        frameon=False,
        title=title,
        title_fontsize=13,
    )
    os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)
    figure.savefig(path)
