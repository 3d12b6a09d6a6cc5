"""The scan report: ``write_scan_report(report, out_dir)`` -> ``out_dir/index.html``.

Renders a ``ScanReport`` (typed fields only): the verdict (the headline follows ``flagged``), the
combined score and p-value when there is one, a table of the scanners (score, the method's own
threshold and criterion, p-value, suspects, time), and per scanner: the reversed triggers (from
``evidence["masks"]`` / ``["patterns"]`` when present), a per-class chart with its own threshold, and
the per-class figures. ``scan.json`` (``report.to_json()``) is written beside it; the whole folder is
replaced atomically (all or nothing).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from ..records import ScanReport, ScanResult
from ..utils import atomic_dir, atomic_write_bytes, atomic_write_json
from .html import render_page
from .images import grid_image, save_png
from .plots import fmt_threshold, scan_class_chart
from .tables import class_label, fmt, fmt_p, mapping_table, per_class_table, scan_methods_table

GRID_WIDTH = 1000  # pixels: wider trigger grids wrap onto several blocks


def slug(name: str) -> str:
    """A safe file-name stem for a method name."""
    s = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._")
    return s[:60] or "method"


def _as_tensor(v: Any) -> torch.Tensor | None:
    if v is None:
        return None
    try:
        t = torch.as_tensor(v).detach().cpu().float()
    except (TypeError, ValueError, RuntimeError):
        return None
    return t


def evidence_labels(result: ScanResult, k: int, class_names: Sequence[str] = ()) -> list[str]:
    """Column labels for ``k`` reversed triggers: ``evidence["labels"]`` (the class each one sends
    images to) when given; per candidate neuron (``evidence["neurons"]``, e.g. ABS) ``n<id>``, with
    ``-><class>`` from ``extras["candidates"][i]["pixel_label"]`` when there; else the classes when
    there is one trigger per class; else ``#i``."""
    labels_t = _as_tensor(result.evidence.get("labels"))
    if labels_t is not None and labels_t.numel() == k:
        return [class_label(int(v), class_names) for v in labels_t.flatten().tolist()]
    neurons = _as_tensor(result.evidence.get("neurons"))
    if neurons is not None and neurons.numel() == k:
        cands = result.extras.get("candidates")
        out = []
        for i, n in enumerate(neurons.flatten().tolist()):
            lab = None
            if isinstance(cands, list) and i < len(cands) and isinstance(cands[i], dict):
                lab = cands[i].get("pixel_label")
            out.append(f"n{int(n)}->{lab}" if isinstance(lab, int) and lab >= 0 else f"n{int(n)}")
        return out
    if len(result.classes) == k:
        return [class_label(t, class_names) for t in result.classes]
    return [f"#{i}" for i in range(k)]


def trigger_grid(result: ScanResult, class_names: Sequence[str] = ()) -> Image.Image | None:
    """Rows mask | pattern | mask*pattern of the reversed triggers, one column per class (or candidate).

    Columns are labelled by ``evidence["labels"]`` when a scanner gives them, else by ``classes``
    when there is one trigger per class, else ``#i``. ``None`` without masks and patterns.
    """
    masks = _as_tensor(result.evidence.get("masks"))
    patterns = _as_tensor(result.evidence.get("patterns"))
    if masks is None or patterns is None or masks.dim() not in (3, 4) or patterns.dim() != 4:
        return None
    if masks.dim() == 3:
        masks = masks.unsqueeze(1)
    if len(masks) != len(patterns) or masks.shape[-2:] != patterns.shape[-2:] or not len(masks):
        return None
    c = patterns.shape[1]
    if masks.shape[1] not in (1, c):
        return None
    m_img = masks.expand(-1, c, -1, -1) if masks.shape[1] == 1 else masks
    k = len(masks)
    cols = evidence_labels(result, k, class_names)
    h = masks.shape[-1]
    scale = max(1, min(8, 84 // max(1, h)))
    per = max(1, GRID_WIDTH // (h * scale + 2))
    blocks = []
    for s in range(0, k, per):
        sl = slice(s, s + per)
        blocks.append(
            grid_image(
                [m_img[sl], patterns[sl].clamp(0, 1), (masks * patterns)[sl].clamp(0, 1)],
                ["mask", "pattern", "mask*pattern"],
                scale=scale,
                col_labels=cols[sl],
            )
        )
    if len(blocks) == 1:
        return blocks[0]
    width = max(b.width for b in blocks)
    out = Image.new("RGB", (width, sum(b.height + 8 for b in blocks)), (255, 255, 255))
    y = 0
    for b in blocks:
        out.paste(b, (0, y))
        y += b.height + 8
    return out


def _fact(value: str, label: str) -> dict[str, str]:
    return {"value": value, "label": label}


def scan_page(
    report: ScanReport, figures: Sequence[list[dict[str, Any]]] = (), command: str | None = None
) -> str:
    """The HTML of a scan report, given the figures already written for each result (in order)."""
    names = report.class_names
    several = len(report.results) > 1
    facts = []
    if several or report.p_value is not None:
        facts.append(_fact(fmt(report.score), "combined score"))
    elif report.results:
        r0 = report.results[0]
        facts.append(_fact(fmt(r0.score), f"score ({r0.criterion or r0.method})"))
        facts.append(_fact(fmt_threshold(r0.threshold), "threshold"))
    if report.p_value is not None:
        facts.append(_fact(fmt_p(report.p_value), f"p-value (alpha {report.alpha:g})"))
    facts.append(
        _fact(
            ", ".join(class_label(t, names) for t in report.suspect_targets) or "none",
            "suspect targets",
        )
    )
    facts.append(_fact(f"{len(report.results)}", "scanner" if not several else "scanners"))
    secs = report.seconds or sum(r.seconds for r in report.results)
    facts.append(_fact(f"{secs:.1f} s", "time"))
    sections = []
    for i, r in enumerate(report.results):
        name = r.method or r.defense
        extras = mapping_table(r.extras, title=f"{name}: other figures")
        sections.append(
            {
                "name": name,
                "flagged": r.flagged,
                "score": fmt(r.score),
                "meaning": r.score_meaning or r.criterion or "higher = more suspicious",
                "threshold": fmt_threshold(r.threshold),
                "criterion": r.criterion,
                "p_value": fmt_p(r.p_value) if r.p_value is not None else "",
                "suspects": ", ".join(class_label(t, names) for t in r.suspect_targets) or "none",
                "seconds": f"{r.seconds:.1f}",
                "verdict": r.verdict,
                "figures": figures[i] if i < len(figures) else [],
                "per_class": per_class_table(r, names),
                "extras": extras,
            }
        )
    model = {k: v for k, v in report.model.items() if k != "classes"}
    return render_page(
        "scan.html.j2",
        title="backdoorlab scan",
        flagged=report.flagged,
        verdict=report.verdict,
        facts=facts,
        combination=report.combination if several else "",
        methods_table=scan_methods_table(report),
        model_table=mapping_table(model),
        sections=sections,
        command=command,
    )


def write_scan_report(
    report: ScanReport, out_dir: str | Path, *, command: str | None = None
) -> Path:
    """Write ``out_dir/index.html``, its PNGs and ``scan.json`` atomically; returns the page's path."""
    names = report.class_names
    with atomic_dir(out_dir) as tmp:
        figures: list[list[dict[str, Any]]] = []
        used: set[str] = set()
        for r in report.results:
            name = r.method or r.defense
            stem = slug(name)
            i = 1
            while stem in used:
                i += 1
                stem = f"{slug(name)}_{i}"
            used.add(stem)
            figs: list[dict[str, Any]] = []
            grid = trigger_grid(r, names)
            if grid is not None:
                save_png(grid, tmp / f"{stem}_triggers.png")
                per = (
                    "candidate neuron (n<id>-><class>: the class its trigger sends images to)"
                    if "neurons" in r.evidence and "labels" not in r.evidence
                    else "class"
                )
                figs.append(
                    {
                        "src": f"{stem}_triggers.png",
                        "caption": f"{name}: reversed trigger per {per}: "
                        "mask, pattern and mask*pattern.",
                        "pixel": True,
                    }
                )
            chart = scan_class_chart(r, names)
            if chart is not None:
                atomic_write_bytes(tmp / f"{stem}_per_class.png", chart.png)
                figs.append(
                    {"src": f"{stem}_per_class.png", "caption": chart.caption, "pixel": False}
                )
            figures.append(figs)
        page = scan_page(report, figures, command=command)
        atomic_write_bytes(tmp / "index.html", page.encode("utf-8"))
        atomic_write_json(tmp / "scan.json", report.to_json())
    return Path(out_dir) / "index.html"


__all__ = ["scan_page", "slug", "trigger_grid", "write_scan_report"]
