"""Charts for the reports and the benchmark, with matplotlib, as PNG bytes (or a file).

matplotlib is imported inside the functions and drawn on an explicit Agg canvas (no pyplot, no global
backend switch, no display needed), so importing ``backdoorlab`` stays light and thread-safe.

- ``bar_chart``: grouped bars (one or more series over labels), optional horizontal threshold line
  and highlighted bars; reused by the benchmark.
- ``line_chart``: one or more series over x values, optional threshold line.
- ``scan_class_chart``: a scanner's per-class statistic with the method's OWN threshold
  (``ScanResult.threshold``) drawn only when the statistic is on the score's scale (see
  ``tables.per_class_score``); the y axis names the criterion / score meaning.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..records import ScanResult
from ..utils import atomic_write_bytes
from .tables import class_label, fmt_threshold, per_class_score

PALETTE = ("#4c72b0", "#dd8452", "#55a868", "#8172b3", "#937860", "#64b5cd", "#c44e52")
HIGHLIGHT = "#c0392b"
THRESHOLD = "#c0392b"


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _finish(fig: Any, path: str | os.PathLike[str] | None) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    data = buf.getvalue()
    if path is not None:
        atomic_write_bytes(Path(path), data)
    return data


def _style(ax: Any, title: str, xlabel: str, ylabel: str) -> None:
    if title:
        ax.set_title(title, fontsize=11, loc="left")
    if xlabel:
        ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)


def _legend(fig: Any, ax: Any) -> None:
    """The legend in one row below the plot, never over the bars."""
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(4, len(labels)),
               fontsize=8, frameon=False)  # fmt: skip


def _finite(v: float | None) -> float:
    return 0.0 if v is None or math.isnan(v) else v


def bar_chart(
    labels: Sequence[str],
    series: Mapping[str, Sequence[float | None]] | Sequence[float | None],
    *,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    hline: float | None = None,
    hline_label: str = "",
    highlight: Sequence[int] = (),
    ylim: tuple[float, float] | None = None,
    path: str | os.PathLike[str] | None = None,
) -> bytes:
    """Bars of one or more series over ``labels``; ``None``/NaN values draw no bar, ``inf`` is clipped
    to the top and marked "inf". ``highlight`` colours those bars (single series) red."""
    data = dict(series) if isinstance(series, Mapping) else {"": list(series)}
    n, k = len(labels), max(1, len(data))
    fig = _figure(max(4.0, min(12.0, 1.2 + 0.55 * n * max(1, k * 0.7))), 3.4)
    ax = fig.add_subplot()
    finite = [
        float(v) for vs in data.values() for v in vs if v is not None and math.isfinite(float(v))
    ]
    top = max([*finite, hline if hline is not None and math.isfinite(hline) else 0.0, 0.0])
    bottom = min([*finite, 0.0])
    cap = top + 0.08 * (top - bottom or 1.0)
    width = 0.8 / k
    for j, (name, vals) in enumerate(data.items()):
        xs = [i - 0.4 + width * (j + 0.5) for i in range(n)]
        ys = []
        for v in vals:
            f = float("nan") if v is None else float(v)
            ys.append(cap if math.isinf(f) and f > 0 else _finite(f))
        colours = [
            HIGHLIGHT if (k == 1 and i in highlight) else PALETTE[j % len(PALETTE)]
            for i in range(n)
        ]
        ax.bar(xs, ys, width=width * 0.92, color=colours, label=name or None)
        for x, v in zip(xs, vals):
            if v is not None and math.isinf(float(v)):
                ax.annotate("inf", (x, cap), ha="center", va="bottom", fontsize=8)
    if hline is not None and math.isfinite(hline):
        ax.axhline(hline, color=THRESHOLD, linestyle="--", linewidth=1.5, label=hline_label or None)
    ax.set_xticks(range(n))
    short = [t if len(t) <= 16 else t[:15] + "…" for t in labels]
    rot = 30 if max((len(t) for t in short), default=0) * n > 70 else 0
    ax.set_xticklabels(short, rotation=rot, ha="right" if rot else "center", fontsize=9)
    if ylim is not None:
        ax.set_ylim(*ylim)
    _style(ax, title, xlabel, ylabel)
    if len(data) > 1 or hline_label:
        _legend(fig, ax)
    return _finish(fig, path)


def line_chart(
    x: Sequence[float],
    series: Mapping[str, Sequence[float | None]],
    *,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    hline: float | None = None,
    hline_label: str = "",
    logx: bool = False,
    ylim: tuple[float, float] | None = None,
    path: str | os.PathLike[str] | None = None,
) -> bytes:
    """One line per series over ``x`` (markers at the points); ``None`` leaves a gap."""
    fig = _figure(6.4, 3.6)
    ax = fig.add_subplot()
    for j, (name, vals) in enumerate(series.items()):
        ys = [float("nan") if v is None else float(v) for v in vals]
        ax.plot(list(x), ys, marker="o", markersize=4, color=PALETTE[j % len(PALETTE)], label=name)
    if hline is not None and math.isfinite(hline):
        ax.axhline(hline, color=THRESHOLD, linestyle="--", linewidth=1.5, label=hline_label or None)
    if logx:
        ax.set_xscale("log")
    if ylim is not None:
        ax.set_ylim(*ylim)
    _style(ax, title, xlabel, ylabel)
    if len(series) > 1 or hline_label:
        _legend(fig, ax)
    return _finish(fig, path)


@dataclass(frozen=True)
class ClassChart:
    """A per-class chart of one scanner and what it shows."""

    png: bytes
    caption: str
    statistic: str
    threshold_drawn: bool


def scan_class_chart(
    result: ScanResult,
    class_names: Sequence[str] = (),
    path: str | os.PathLike[str] | None = None,
) -> ClassChart | None:
    """Per-class bar chart of ``result`` with its own threshold line; ``None`` without per-class figures.

    Suspect targets are red. The threshold is ``result.threshold``, drawn only over a statistic whose
    largest value is the score (so the line means what the verdict means); otherwise the caption says
    which statistic is shown and that the threshold is not on its scale.
    """
    pcs = per_class_score(result)
    if pcs is None:
        return None
    labels = [class_label(c, class_names) for c in pcs.classes]
    hl = [i for i, c in enumerate(pcs.classes) if c in result.suspect_targets]
    meaning = result.score_meaning or result.criterion or "score"
    method = result.method or result.defense
    if pcs.on_score_scale:
        ylabel = pcs.name if len(pcs.name) <= 28 else "score"
        png = bar_chart(
            labels,
            list(pcs.values),
            title=f"{method}: {pcs.name} per class",
            ylabel=ylabel,
            hline=result.threshold,
            hline_label=f"threshold {result.threshold:g} ({result.criterion or 'score'})",
            highlight=hl,
            path=path,
        )
        caption = (
            f"{method}: per-class {pcs.name}; the score is its largest value ({meaning}); "
            f"dashed line: the method's threshold {result.threshold:g}; "
            "red: suspect targets."
        )
        return ClassChart(png, caption, pcs.name, True)
    png = bar_chart(
        labels,
        list(pcs.values),
        title=f"{method}: {pcs.name} per class",
        ylabel=pcs.name,
        highlight=hl,
        path=path,
    )
    caption = (
        f"{method}: per-class {pcs.name}; red: suspect targets. The threshold "
        f"{fmt_threshold(result.threshold)} applies to the score ({meaning}), not to this figure."
    )
    return ClassChart(png, caption, pcs.name, False)
