"""Records -> table rows, once: the HTML reports and ``table.md`` render the same ``Table`` objects.

A ``Table`` holds already formatted cells (strings); ``Table.to_markdown()`` writes it as a GitHub
markdown table and the Jinja2 macro ``table`` in ``templates/macros.html.j2`` as HTML, so the two
can never disagree. The builders here read typed fields of the records in ``backdoorlab.records``
(never dictionary keys a record may not have):

- ``scan_methods_table``: one row per scanner of a ``ScanReport``.
- ``per_class_table``: a scanner's per-class figures, with the per-class score on its threshold's scale.
- ``defense_tables``: any ``DefenseRecord`` subclasses, one table per family with that family's
  columns (detectors: AUROC / FRR / FAR; sanitisers: removal and retrained CA / ASR, plus a budget
  table; repairs: CA / ASR before and after, DER; scanners: verdict, score, threshold).
- ``mapping_table``: a key / value table of scalars (model facts, extras).

``per_class_score`` finds, for a ``ScanResult``, the per-class statistic on the same scale as its
``score`` and ``threshold`` (so that a threshold line can be drawn over it), and checks that its
largest value is the score; when it cannot, the chart shows a per-class figure without a threshold.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..records import (
    DefenseRecord,
    InputDetectionResult,
    RepairResult,
    SanitizeResult,
    ScanReport,
    ScanResult,
)

# ----------------------------------------------------------------------------- formatting


def fmt(v: Any, digits: int = 3) -> str:
    """One cell: ``None`` -> "-", bools -> yes/no, floats to ``digits`` decimals, inf/nan spelled out."""
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "n/a"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return f"{v:.{digits}f}"
    return str(v)


def fmt_threshold(t: float | None) -> str:
    """A threshold as the method set it (``2.65``, ``1``); "(none)" when it has none."""
    return f"{t:g}" if isinstance(t, int | float) and math.isfinite(t) else "(none)"


def fmt_sig(v: Any) -> str:
    """A per-class figure: 4 significant digits (``40``, ``0.1234``, ``1.235e+04``)."""
    if isinstance(v, float) and math.isfinite(v):
        return f"{v:.4g}"
    return fmt(v)


def fmt_p(p: float | None) -> str:
    """A p-value: three significant digits, "< 0.001" below that."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "-"
    return "< 0.001" if p < 0.001 else f"{p:.3g}"


def fmt_change(before: float | None, after: float | None) -> str:
    """``before -> after`` (either may be missing)."""
    if before is None and after is None:
        return "-"
    return f"{fmt(before)} → {fmt(after)}"


def class_label(c: int, class_names: Sequence[str]) -> str:
    """``3 (dress)`` when the class has a name other than its number, else ``3``."""
    name = class_names[c] if 0 <= c < len(class_names) else ""
    return f"{c} ({name})" if name and name != str(c) else str(c)


def _md_cell(s: str) -> str:
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return s.replace("|", "\\|").replace("\r", " ").replace("\n", " ")


@dataclass(frozen=True)
class Table:
    """Headers and formatted rows; ``numeric[i]`` right-aligns column i; ``row_classes`` tag rows."""

    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    numeric: tuple[bool, ...] = ()
    row_classes: tuple[str, ...] = ()
    caption: str = ""
    title: str = ""

    def __post_init__(self) -> None:
        for i, r in enumerate(self.rows):
            if len(r) != len(self.headers):
                raise ValueError(
                    f"table row {i} has {len(r)} cells for {len(self.headers)} headers"
                )

    def is_numeric(self, i: int) -> bool:
        return i < len(self.numeric) and self.numeric[i]

    def row_class(self, i: int) -> str:
        return self.row_classes[i] if i < len(self.row_classes) else ""

    def to_markdown(self) -> str:
        """GitHub markdown; HTML-special characters and pipes in cells are escaped."""
        head = "| " + " | ".join(_md_cell(h) for h in self.headers) + " |"
        rule = (
            "|"
            + "|".join("---:" if self.is_numeric(i) else "---" for i in range(len(self.headers)))
            + "|"
        )
        body = ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in self.rows]
        out = [f"**{_md_cell(self.title)}**", ""] if self.title else []
        out += [head, rule, *body]
        if self.caption:
            out += ["", _md_cell(self.caption)]
        return "\n".join(out)


def make_table(
    columns: Sequence[tuple[str, bool]],
    rows: Sequence[Sequence[str]],
    **kw: Any,
) -> Table:
    return Table(
        headers=tuple(c for c, _ in columns),
        rows=tuple(tuple(r) for r in rows),
        numeric=tuple(n for _, n in columns),
        **kw,
    )


def mapping_table(d: Mapping[str, Any], title: str = "") -> Table | None:
    """Key / value rows for the scalar entries of ``d`` (lists and dicts are left to the JSON file)."""
    rows = []
    for k, v in d.items():
        if (
            isinstance(v, list | tuple)
            and len(v) <= 8
            and all(isinstance(x, int | float | str) for x in v)
        ):
            rows.append((str(k), ", ".join(fmt_sig(x) for x in v)))
        elif v is None or isinstance(v, bool | int | float | str):
            rows.append((str(k), fmt_sig(v)))
    if not rows:
        return None
    return make_table([("", False), ("", False)], rows, title=title)


# ----------------------------------------------------------------------------- scanners


@dataclass(frozen=True)
class PerClassScore:
    """A per-class statistic of a scanner; ``on_score_scale`` when ``threshold`` applies to it."""

    name: str
    values: tuple[float, ...]
    classes: tuple[int, ...]
    on_score_scale: bool
    derived: bool = False


def _numeric_lists(r: ScanResult) -> dict[str, list[float]]:
    n = len(r.classes)
    out = {}
    for k, v in r.per_class.items():
        if (
            isinstance(v, list | tuple)
            and v
            and (n == 0 or len(v) == n)
            and all(isinstance(x, int | float) and not isinstance(x, bool) for x in v)
        ):
            out[k] = [float(x) for x in v]
    return out


def _ratio_per_class(r: ScanResult, cols: dict[str, list[float]]) -> list[float] | None:
    """NC/TABOR ``ratio``: for each class, the smallest other class's mask norm / its own."""
    norms = cols.get("mask_l1")
    if not norms or len(norms) < 2:
        return None
    out = []
    for i, v in enumerate(norms):
        other = min(x for j, x in enumerate(norms) if j != i)
        out.append(other / v if v > 0 else math.inf)
    return out


def _reasr_per_class(r: ScanResult, cols: dict[str, list[float]]) -> list[float] | None:
    """ABS ``reasr``: per class, the larger of pixel / filter REASR over its own threshold."""
    parts = []
    for kind in ("pixel", "filter"):
        vals, thr = cols.get(f"{kind}_reasr"), r.extras.get(f"threshold_{kind}")
        if vals is not None and isinstance(thr, int | float) and thr > 0:
            parts.append([v / float(thr) for v in vals])
    if not parts:
        return None
    return [max(vs) for vs in zip(*parts)]


# criterion -> how to get the per-class statistic on the score's own scale (``per_class["score"]``,
# when a scanner writes it, always wins)
PER_CLASS_SCORE: dict[str, Callable[[ScanResult, dict[str, list[float]]], list[float] | None]] = {
    "mad": lambda r, cols: cols.get("anomaly_index"),
    "ratio": _ratio_per_class,
    "reasr": _reasr_per_class,
}

SCORE_NAMES = {"mad": "anomaly index", "ratio": "norm ratio", "reasr": "REASR / threshold"}


def per_class_score(r: ScanResult) -> PerClassScore | None:
    """The per-class statistic to chart for ``r``: on the score's scale when possible (see module doc)."""
    cols = _numeric_lists(r)
    if not cols:
        return None
    n = len(next(iter(cols.values())))
    classes = tuple(r.classes) if r.classes else tuple(range(n))
    vals = cols.get("score")
    derived = False
    if vals is None and r.criterion in PER_CLASS_SCORE:
        vals = PER_CLASS_SCORE[r.criterion](r, cols)
        derived = vals is not None and r.criterion != "mad"
    if vals is not None and len(vals) == len(classes):
        finite_thr = isinstance(r.threshold, int | float) and math.isfinite(r.threshold)
        top = max(vals)
        agrees = math.isfinite(top) and abs(top - r.score) <= 1e-3 * max(1.0, abs(r.score))
        agrees = agrees or (math.isinf(top) and math.isinf(r.score))
        if finite_thr and agrees:
            name = SCORE_NAMES.get(r.criterion, "score")
            return PerClassScore(name, tuple(vals), classes, True, derived)
    key = next(iter(cols))
    return PerClassScore(key, tuple(cols[key]), classes, False)


def scan_methods_table(report: ScanReport) -> Table:
    """One row per scanner: verdict, score, its own threshold and criterion, p-value, suspects, time."""
    names = report.class_names
    rows, classes = [], []
    for r in report.results:
        rows.append(
            (
                r.method or r.defense,
                "FLAGGED" if r.flagged else "not flagged",
                fmt(r.score),
                fmt_threshold(r.threshold),
                r.criterion or "-",
                fmt_p(r.p_value),
                ", ".join(class_label(t, names) for t in r.suspect_targets) or "none",
                fmt(r.seconds, 1),
            )
        )
        classes.append("flagged" if r.flagged else "")
    cols = [
        ("method", False),
        ("verdict", False),
        ("score", True),
        ("threshold", True),
        ("criterion", False),
        ("p-value", True),
        ("suspect targets", False),
        ("seconds", True),
    ]
    return make_table(cols, rows, row_classes=tuple(classes))


def per_class_table(r: ScanResult, class_names: Sequence[str]) -> Table | None:
    """Per-class figures of one scanner (columns of ``per_class`` aligned with ``classes``)."""
    cols = {
        k: v
        for k, v in r.per_class.items()
        if isinstance(v, list | tuple) and v and (not r.classes or len(v) == len(r.classes))
    }
    if not cols:
        return None
    n = len(next(iter(cols.values())))
    classes = list(r.classes) if r.classes else list(range(n))
    pcs = per_class_score(r)
    extra = pcs if pcs is not None and pcs.derived else None
    headers = [("class", False)]
    if extra is not None:
        headers.append((f"{extra.name} (per class)", True))
    headers += [(k, all(isinstance(x, int | float) for x in v)) for k, v in cols.items()]
    rows, tags = [], []
    for i, c in enumerate(classes):
        row = [class_label(c, class_names)]
        if extra is not None:
            row.append(fmt_sig(extra.values[i]))
        row += [fmt_sig(v[i]) if i < len(v) else "" for v in cols.values()]
        rows.append(row)
        tags.append("suspect" if c in r.suspect_targets else "")
    return make_table(headers, rows, row_classes=tuple(tags))


# ----------------------------------------------------------------------------- any defense

FAMILY_TITLES = {
    "model-scan": "Model scanners",
    "input-detection": "Input detectors (run time)",
    "data-sanitize": "Data sanitisers",
    "model-repair": "Model repairs",
}


def _family(r: DefenseRecord) -> str:
    if isinstance(r, ScanResult):
        return "model-scan"
    if isinstance(r, InputDetectionResult):
        return "input-detection"
    if isinstance(r, SanitizeResult):
        return "data-sanitize"
    if isinstance(r, RepairResult):
        return "model-repair"
    return r.family or "other"


def _name(r: DefenseRecord) -> str:
    return r.defense or (r.method if isinstance(r, ScanResult) else "") or "?"


def _budget_label(b: Any) -> str:
    return f"{b.label} (oracle)" if b.oracle and "oracle" not in b.label.lower() else b.label


def defense_tables(
    records: Sequence[DefenseRecord],
    on: Sequence[str] | None = None,
    class_names: Sequence[str] = (),
) -> list[Table]:
    """One table per defense family present, with the family's own columns; ``on`` labels each record's
    model / run. Sanitisers that carry ``budgets`` add a budget table (the ``oracle`` row marked)."""
    groups: dict[str, list[tuple[str, DefenseRecord]]] = {}
    for i, r in enumerate(records):
        label = on[i] if on is not None and i < len(on) else (r.run or "-")
        groups.setdefault(_family(r), []).append((label, r))
    out: list[Table] = []
    order = [*FAMILY_TITLES, *sorted(set(groups) - set(FAMILY_TITLES))]
    for fam in order:
        items = groups.get(fam)
        if not items:
            continue
        title = FAMILY_TITLES.get(fam, fam)
        if fam == "model-scan":
            cols = [
                ("defense", False),
                ("on", False),
                ("verdict", False),
                ("score", True),
                ("threshold", True),
                ("criterion", False),
                ("p-value", True),
                ("suspect targets", False),
                ("seconds", True),
                ("conclusion", False),
            ]
            rows = []
            for label, r in items:
                assert isinstance(r, ScanResult)
                rows.append(
                    [
                        _name(r),
                        label,
                        "FLAGGED" if r.flagged else "not flagged",
                        fmt(r.score),
                        fmt_threshold(r.threshold),
                        r.criterion or "-",
                        fmt_p(r.p_value),
                        ", ".join(class_label(t, class_names) for t in r.suspect_targets) or "none",
                        fmt(r.seconds, 1),
                        r.verdict or "-",
                    ]
                )
            out.append(make_table(cols, rows, title=title))
        elif fam == "input-detection":
            cols = [
                ("defense", False),
                ("on", False),
                ("AUROC", True),
                ("TPR @ 1% FPR", True),
                ("FRR target", True),
                ("FRR", True),
                ("FAR", True),
                ("clean / triggered", True),
                ("seconds", True),
                ("conclusion", False),
            ]
            rows = []
            for label, r in items:
                assert isinstance(r, InputDetectionResult)
                rows.append(
                    [
                        _name(r),
                        label,
                        fmt(r.auroc),
                        fmt(r.tpr_at_1fpr),
                        fmt(r.frr_target),
                        fmt(r.frr),
                        fmt(r.far),
                        f"{r.n_clean} / {r.n_triggered}",
                        fmt(r.seconds, 1),
                        r.verdict or "-",
                    ]
                )
            out.append(
                make_table(
                    cols,
                    rows,
                    title=title,
                    caption="FRR: clean inputs flagged; FAR: triggered inputs missed "
                    "(threshold fitted on the defender's clean part at the FRR target).",
                )
            )
        elif fam == "data-sanitize":
            cols = [
                ("defense", False),
                ("on", False),
                ("AUROC", True),
                ("removed (poison)", True),
                ("precision", True),
                ("recall", True),
                ("CA before → after", True),
                ("ASR before → after", True),
                ("DER", True),
                ("seconds", True),
                ("conclusion", False),
            ]
            rows, brows = [], []
            for label, r in items:
                assert isinstance(r, SanitizeResult)
                rows.append(
                    [
                        _name(r),
                        label,
                        fmt(r.auroc),
                        f"{r.n_removed} ({r.n_poison_removed} of {r.n_poison})",
                        fmt(r.removed_precision),
                        fmt(r.removed_recall),
                        fmt_change(r.clean_acc_before, r.clean_acc_after),
                        fmt_change(r.asr_before, r.asr_after),
                        fmt(r.der),
                        fmt(r.seconds, 1),
                        r.verdict or "-",
                    ]
                )
                for b in r.budgets:
                    brows.append(
                        (
                            [
                                _name(r),
                                label,
                                _budget_label(b),
                                fmt(b.factor, 2),
                                str(b.n_removed),
                                str(b.n_poison_removed),
                                fmt(b.precision),
                                fmt(b.recall),
                            ],
                            "oracle" if b.oracle else "",
                        )
                    )
            out.append(
                make_table(
                    cols,
                    rows,
                    title=title,
                    caption="Removed: samples the sanitiser's own rule dropped (of which poison, "
                    "of all poison); precision / recall of that removal against the true "
                    "poison indices (scored afterwards); CA / ASR of the model retrained "
                    "on what was kept.",
                )
            )
            if brows:
                bcols = [
                    ("defense", False),
                    ("on", False),
                    ("budget", False),
                    ("× poison count", True),
                    ("removed", True),
                    ("poison removed", True),
                    ("precision", True),
                    ("recall", True),
                ]
                out.append(
                    make_table(
                        bcols,
                        [r for r, _ in brows],
                        row_classes=tuple(c for _, c in brows),
                        title=f"{title}: removal at fixed budgets",
                        caption="Each budget removes that multiple of the true poison count. "
                        "The oracle row uses the true count itself, which a defender never "
                        "knows: it is a reference, not a result.",
                    )
                )
        elif fam == "model-repair":
            cols = [
                ("defense", False),
                ("on", False),
                ("CA before → after", True),
                ("ASR before → after", True),
                ("RA before → after", True),
                ("DER", True),
                ("seconds", True),
                ("conclusion", False),
            ]
            rows = []
            for label, r in items:
                assert isinstance(r, RepairResult)
                rows.append(
                    [
                        _name(r),
                        label,
                        fmt_change(r.clean_acc_before, r.clean_acc_after),
                        fmt_change(r.asr_before, r.asr_after),
                        fmt_change(r.ra_before, r.ra_after),
                        fmt(r.der),
                        fmt(r.seconds, 1),
                        r.verdict or "-",
                    ]
                )
            out.append(
                make_table(
                    cols,
                    rows,
                    title=title,
                    caption="DER: defense effectiveness rate (higher: more ASR removed for less clean accuracy lost).",
                )
            )
        else:
            cols = [
                ("defense", False),
                ("on", False),
                ("family", False),
                ("seconds", True),
                ("conclusion", False),
            ]
            rows = [
                [_name(r), label, r.family or "-", fmt(r.seconds, 1), r.verdict or "-"]
                for label, r in items
            ]
            out.append(make_table(cols, rows, title=title))
    return out
