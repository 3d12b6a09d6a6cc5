"""The demo report: ``write_demo_report(out_dir, summary)`` writes index.html, table.md, results.json.

The demo builds a ``DemoSummary`` (typed, frozen, JSON round-trip like every record): the clean
model's ``EvalMetrics``, one ``DemoAttackRow`` per attack (label, trigger family, the ``AttackRun``,
the trigger's ASR on the clean model) and one ``DemoDefenseRow`` per defense (the model it ran on and
any ``DefenseRecord`` subclass). ``demo_tables`` turns it into ``tables.Table`` objects once; the HTML
page and ``table.md`` both render those, so they always agree.

Files (each written atomically into ``out_dir``, which may be the demo's own ``atomic_dir`` folder):
``index.html``, ``table.md``, ``results.json`` (``summary.to_json()``), ``overview.png`` (CA / ASR
per model) and ``triggers.png`` when ``summary.triggers`` holds a picture.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from PIL import Image

from ..errors import DataError
from ..records import NOT_JSON, RECORDS, AttackRun, DefenseRecord, EvalMetrics, Record
from ..utils import atomic_write_bytes, atomic_write_json
from .html import render_page
from .plots import bar_chart
from .tables import Table, defense_tables, fmt, make_table


@dataclass(frozen=True, kw_only=True)
class DemoAttackRow(Record):
    """One backdoored model of the demo: its label, trigger family, run record and the trigger's ASR
    on the clean model (what the trigger does without a backdoor)."""

    kind: ClassVar[str] = "demo-attack"
    label: str
    family: str = ""
    run: AttackRun
    clean_model_asr: float | None = None
    seconds: float = 0.0


@dataclass(frozen=True, kw_only=True)
class DemoDefenseRow(Record):
    """One defense run of the demo: the attack row it ran on and its record (any family)."""

    kind: ClassVar[str] = "demo-defense"
    on: str
    record: DefenseRecord

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DemoDefenseRow:
        """Rebuild, reading ``record`` as the record class its ``kind`` names."""
        if not isinstance(data, Mapping):
            raise DataError(f"{cls.kind}: expected a JSON object, got {type(data).__name__}")
        rec = data.get("record")
        kind = rec.get("kind") if isinstance(rec, Mapping) else None
        rcls = RECORDS.get(str(kind))
        if rcls is None or not issubclass(rcls, DefenseRecord):
            raise DataError(f"{cls.kind}: record of unknown kind {kind!r}")
        unknown = sorted(set(data) - {"kind", "on", "record"})
        if unknown:
            raise DataError(f"{cls.kind} record: unknown field(s) {', '.join(unknown)}")
        assert isinstance(rec, Mapping)
        return cls(on=str(data.get("on", "")), record=rcls.from_json(rec))


@dataclass(frozen=True, kw_only=True)
class DemoSummary(Record):
    """Everything the demo report shows. ``triggers`` (in memory only): a Pillow image or PNG bytes."""

    kind: ClassVar[str] = "demo"
    data: str
    epochs: int
    seed: int
    seconds: float = 0.0
    clean: EvalMetrics
    attacks: tuple[DemoAttackRow, ...] = ()
    defenses: tuple[DemoDefenseRow, ...] = ()
    command: str | None = None
    triggers: Any = field(default=None, compare=False, repr=False, metadata=NOT_JSON)


def _num(v: float | None) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def attack_table(s: DemoSummary) -> Table:
    """Clean model and each backdoored model: CA, ASR, the trigger's ASR on the clean model, stealth."""
    cols = [
        ("model", False),
        ("trigger family", False),
        ("trigger", False),
        ("clean acc", True),
        ("ASR", True),
        ("ASR on clean model", True),
        ("PSNR (dB)", True),
        ("SSIM", True),
        ("seconds", True),
    ]
    rows = [
        ["clean", "-", "-", fmt(s.clean.clean_acc), "-", "-", "-", "-", fmt(s.clean.seconds, 0)]
    ]
    for a in s.attacks:
        r = a.run
        secs = a.seconds or sum(r.timings.values())
        rows.append(
            [
                a.label,
                a.family or "-",
                r.trigger or "-",
                fmt(_num(r.clean_acc)),
                fmt(_num(r.asr)),
                fmt(_num(a.clean_model_asr)),
                fmt(_num(r.stealth.get("psnr")), 2),
                fmt(_num(r.stealth.get("ssim"))),
                fmt(float(secs), 0),
            ]
        )
    return make_table(
        cols,
        rows,
        title="Attacks",
        caption="Clean accuracy on the clean test set; ASR: triggered test images of other classes "
        "sent to the target; ASR on the clean model: what the trigger alone does.",
    )


def demo_tables(s: DemoSummary) -> list[Table]:
    """The attack table, then one table per defense family (``tables.defense_tables``)."""
    return [
        attack_table(s),
        *defense_tables([d.record for d in s.defenses], on=[d.on for d in s.defenses]),
    ]


def demo_markdown(s: DemoSummary) -> str:
    """``table.md``: the same tables as the HTML page."""
    parts = [f"# backdoorlab demo ({s.data})", ""]
    parts.append(
        f"{s.epochs} epochs per model, seed {s.seed}, {s.seconds:.0f} s"
        + (f"; command: `{s.command}`" if s.command else "")
    )
    for t in demo_tables(s):
        parts += ["", t.to_markdown()]
    return "\n".join(parts) + "\n"


def _png_bytes(picture: Any) -> bytes | None:
    if picture is None:
        return None
    if isinstance(picture, bytes | bytearray):
        return bytes(picture)
    if isinstance(picture, Image.Image):
        buf = io.BytesIO()
        picture.save(buf, format="PNG")
        return buf.getvalue()
    raise TypeError(
        f"DemoSummary.triggers: expected a Pillow image or PNG bytes, got {type(picture).__name__}"
    )


def overview_chart(s: DemoSummary, path: str | Path | None = None) -> bytes:
    """Grouped bars per model: clean accuracy, ASR, and the trigger's ASR on the clean model."""
    labels = ["clean", *(a.label for a in s.attacks)]
    series = {
        "clean accuracy": [_num(s.clean.clean_acc), *(_num(a.run.clean_acc) for a in s.attacks)],
        "ASR": [None, *(_num(a.run.asr) for a in s.attacks)],
        "ASR on clean model": [None, *(_num(a.clean_model_asr) for a in s.attacks)],
    }
    return bar_chart(
        labels,
        series,
        title="Clean accuracy and attack success per model",
        ylim=(0, 1.05),
        path=path,
    )


def write_demo_report(out_dir: str | Path, summary: DemoSummary) -> Path:
    """Write the demo report files into ``out_dir`` (created if needed); returns ``index.html``'s path."""
    out = Path(out_dir)
    png = _png_bytes(summary.triggers)  # checked first: a bad picture writes nothing
    tables = demo_tables(summary)
    page = render_page(
        "demo.html.j2",
        title="backdoorlab demo",
        s=summary,
        attack_table=tables[0],
        defense_tables=tables[1:],
        has_triggers=png is not None,
        command=summary.command,
    )
    markdown = demo_markdown(summary)
    overview = overview_chart(summary)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "overview.png", overview)
    if png is not None:
        atomic_write_bytes(out / "triggers.png", png)
    atomic_write_json(out / "results.json", summary.to_json())
    atomic_write_bytes(out / "table.md", markdown.encode("utf-8"))
    atomic_write_bytes(out / "index.html", page.encode("utf-8"))
    return out / "index.html"


__all__ = [
    "DemoAttackRow",
    "DemoDefenseRow",
    "DemoSummary",
    "attack_table",
    "demo_markdown",
    "demo_tables",
    "overview_chart",
    "write_demo_report",
]
