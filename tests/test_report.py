"""HTML report builder: scan and demo reports rendered from hand-built typed records."""

from __future__ import annotations

import json
import math
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch
from PIL import Image

from backdoorlab.records import ScanReport, ScanResult
from backdoorlab.report.demo import DemoSummary, demo_tables, write_demo_report
from backdoorlab.report.html import render_page
from backdoorlab.report.plots import bar_chart, line_chart, scan_class_chart
from backdoorlab.report.scan import evidence_labels, write_scan_report
from backdoorlab.report.tables import Table, fmt_threshold, per_class_score
from conftest import HOSTILE


class _Tables(HTMLParser):
    """Every <table> as a list of rows of cell texts; every <img src>; every <script>."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.images: list[str] = []
        self.scripts = 0
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "img":
            self.images.append(dict(attrs).get("src") or "")
        elif tag == "script":
            self.scripts += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def parse(page: Path) -> _Tables:
    p = _Tables()
    p.feed(page.read_text(encoding="utf-8"))
    return p


def table_with(p: _Tables, header: str) -> list[list[str]]:
    for t in p.tables:
        if t and header in t[0]:
            return t
    raise AssertionError(f"no table with a {header!r} column")


# ----------------------------------------------------------------------------- scan report


def test_scan_report_files_and_thresholds(scan_report_record: ScanReport, tmp_path: Path) -> None:
    page = write_scan_report(scan_report_record, tmp_path / "rep")
    assert page == tmp_path / "rep" / "index.html"
    names = sorted(f.name for f in page.parent.iterdir())
    assert names == [
        "abs_per_class.png",
        "abs_triggers.png",
        "index.html",
        "nc_per_class.png",
        "nc_triggers.png",
        "scan.json",
    ]
    assert not [f for f in tmp_path.iterdir() if f.name.startswith(".")]  # no temp folder left
    for f in page.parent.glob("*.png"):
        with Image.open(f) as im:
            assert im.width > 100 and im.height > 50
    # scan.json is the record itself
    assert ScanReport.from_json(json.loads((page.parent / "scan.json").read_text())) == (
        scan_report_record
    )
    p = parse(page)
    t = table_with(p, "threshold")
    col = t[0].index("threshold")
    shown = {row[0]: row[col] for row in t[1:]}
    # each method's OWN threshold (ABS: 1 on its REASR / threshold scale; NC ratio: 2.65)
    assert shown == {r.method: fmt_threshold(r.threshold) for r in scan_report_record.results}
    assert shown == {"nc": "2.65", "abs": "1"}
    assert set(p.images) == {f.name for f in page.parent.glob("*.png")}
    text = page.read_text()
    assert "BACKDOOR SUSPECTED" in text
    assert "0.008" in text  # combined p-value


def test_scan_report_verdict_follows_flagged(
    scan_report_record: ScanReport, tmp_path: Path
) -> None:
    clean = scan_report_record.replace(
        flagged=False, suspect_targets=(), verdict="no scanner found a backdoor"
    )
    text = write_scan_report(clean, tmp_path / "rep").read_text()
    assert "No backdoor found" in text and "BACKDOOR SUSPECTED" not in text


def test_scan_report_escapes_hostile_strings(
    scan_report_record: ScanReport, tmp_path: Path
) -> None:
    hostile_method = scan_report_record.results[0].replace(method='x"><img src=y onerror=alert(1)>')
    rep = scan_report_record.replace(results=(hostile_method, *scan_report_record.results[1:]))
    page = write_scan_report(rep, tmp_path / "rep")
    text = page.read_text()
    assert HOSTILE not in text and "<img src=y" not in text
    assert "&lt;script&gt;" in text
    p = parse(page)
    assert p.scripts == 0
    assert all(src.endswith(".png") and "/" not in src for src in p.images)
    # the hostile class name is shown as text in the per-class table
    rows = table_with(p, "mask_l1")
    assert any(HOSTILE in cell for row in rows for cell in row)


def test_scan_report_is_atomic(
    scan_report_record: ScanReport, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "rep"
    write_scan_report(scan_report_record, out)
    before = {f.name: f.read_bytes() for f in out.iterdir()}

    def boom(*a: object, **k: object) -> str:
        raise RuntimeError("template failed")

    monkeypatch.setattr("backdoorlab.report.scan.render_page", boom)
    with pytest.raises(RuntimeError):
        write_scan_report(scan_report_record.replace(verdict="changed"), out)
    assert {f.name: f.read_bytes() for f in out.iterdir()} == before
    assert sorted(f.name for f in tmp_path.iterdir()) == ["rep"]


def test_per_class_score_on_the_thresholds_scale(scan_report_record: ScanReport) -> None:
    nc, ab = scan_report_record.results
    for r in (nc, ab):
        pcs = per_class_score(r)
        assert pcs is not None and pcs.on_score_scale
        assert max(pcs.values) == pytest.approx(r.score)
        chart = scan_class_chart(r, scan_report_record.class_names)
        assert chart is not None and chart.threshold_drawn
        assert f"threshold {r.threshold:g}" in chart.caption
        assert chart.png.startswith(b"\x89PNG")
    # MAD: the anomaly index itself; a score the per-class figures do not reproduce gets no line
    mad = nc.replace(criterion="mad", threshold=3.2, score=max(nc.per_class["anomaly_index"]))
    pcs = per_class_score(mad)
    assert pcs is not None and pcs.on_score_scale and pcs.name == "anomaly index"
    odd = nc.replace(score=99.0)
    pcs = per_class_score(odd)
    assert pcs is not None and not pcs.on_score_scale
    chart = scan_class_chart(odd)
    assert chart is not None and not chart.threshold_drawn
    assert "not to this figure" in chart.caption
    assert per_class_score(ScanResult(method="none")) is None


def test_trigger_columns_name_what_each_trigger_is(scan_report_record: ScanReport) -> None:
    nc, ab = scan_report_record.results
    names = scan_report_record.class_names
    assert evidence_labels(nc, 6, names)[3] == "3 (dress)"  # one trigger per class
    # ABS: one trigger per candidate neuron, even when there are as many candidates as classes
    assert evidence_labels(ab, 4, names) == ["n7->1", "n3->2", "n12->2", "n5"]
    six = ab.replace(evidence={"neurons": torch.arange(6)}, extras={})
    assert evidence_labels(six, 6, names) == [f"n{i}" for i in range(6)]
    given = ab.replace(evidence={"labels": torch.tensor([3, 0])})
    assert evidence_labels(given, 2, names) == ["3 (dress)", "0 (zero)"]
    assert evidence_labels(ScanResult(method="x"), 2) == ["#0", "#1"]


def test_scan_report_without_evidence_or_per_class(tmp_path: Path) -> None:
    r = ScanResult(method="bare", score=0.2, threshold=0.5, criterion="toy")
    rep = ScanReport(results=(r,), score=0.2, verdict="nothing found")
    page = write_scan_report(rep, tmp_path / "rep")
    assert sorted(f.name for f in page.parent.iterdir()) == ["index.html", "scan.json"]
    t = table_with(parse(page), "threshold")
    assert t[1][t[0].index("threshold")] == "0.5"


# ----------------------------------------------------------------------------- demo report


def test_demo_report_files_and_round_trip(demo_summary_record: DemoSummary, tmp_path: Path) -> None:
    page = write_demo_report(tmp_path / "demo", demo_summary_record)
    assert sorted(f.name for f in page.parent.iterdir()) == [
        "index.html",
        "overview.png",
        "results.json",
        "table.md",
        "triggers.png",
    ]
    back = DemoSummary.load(page.parent / "results.json")
    assert back == demo_summary_record
    assert [type(d.record) for d in back.defenses] == [
        type(d.record) for d in demo_summary_record.defenses
    ]
    # rendering again from the JSON gives the same page (no in-memory-only inputs besides the picture)
    page2 = write_demo_report(
        tmp_path / "again", back.replace(triggers=demo_summary_record.triggers)
    )
    assert page2.read_text() == page.read_text()


def test_demo_html_and_markdown_show_the_same_tables(
    demo_summary_record: DemoSummary, tmp_path: Path
) -> None:
    page = write_demo_report(tmp_path / "demo", demo_summary_record)
    p = parse(page)
    tables = demo_tables(demo_summary_record)
    assert len(p.tables) == len(tables) == 6  # attacks, 4 defense families, sanitiser budgets
    md = (page.parent / "table.md").read_text()
    for t, html_rows in zip(tables, p.tables):
        assert html_rows[0] == list(t.headers)
        assert [r for r in html_rows[1:]] == [list(r) for r in t.rows]
        assert t.to_markdown() in md
    # family-specific columns
    heads = [tuple(t.headers) for t in tables]
    assert any("FAR" in h and "FRR" in h for h in heads)
    assert any("DER" in h and "ASR before → after" in h for h in heads)
    budgets = next(t for t in tables if "× poison count" in t.headers)
    labels = [r[budgets.headers.index("budget")] for r in budgets.rows]
    assert labels == ["half", "true count (oracle)"]
    assert budgets.row_classes == ("", "oracle")
    # the sanitiser's removal and retrained figures come from its record's fields
    san = next(t for t in tables if "removed (poison)" in t.headers)
    assert san.rows[0][san.headers.index("recall")] == "0.974"
    assert san.rows[0][san.headers.index("ASR before → after")] == "0.998 → 0.023"


def test_demo_report_escapes_hostile_strings(
    demo_summary_record: DemoSummary, tmp_path: Path
) -> None:
    page = write_demo_report(tmp_path / "demo", demo_summary_record)
    text = page.read_text()
    assert HOSTILE not in text and "&lt;script&gt;" in text
    assert parse(page).scripts == 0
    md = (page.parent / "table.md").read_text()
    assert HOSTILE not in md and "&lt;script&gt;" in md
    assert "invisible \\| perturb" in md  # a pipe inside a cell does not split the row


def test_demo_report_without_defenses_or_picture(
    demo_summary_record: DemoSummary, tmp_path: Path
) -> None:
    s = demo_summary_record.replace(defenses=(), triggers=None)
    page = write_demo_report(tmp_path / "demo", s)
    assert not (page.parent / "triggers.png").exists()
    assert "Defenses" not in page.read_text()
    assert len(parse(page).tables) == 1
    with pytest.raises(TypeError, match="triggers"):
        write_demo_report(tmp_path / "bad", s.replace(triggers="not a picture"))
    assert not (tmp_path / "bad").exists()  # nothing half-written


# ----------------------------------------------------------------------------- pieces


def test_table_rejects_ragged_rows_and_escapes_markdown() -> None:
    with pytest.raises(ValueError, match="row 0 has 1 cells for 2 headers"):
        Table(headers=("a", "b"), rows=(("x",),))
    t = Table(headers=("a|b", "n"), rows=(("<b>x</b>", "1"),), numeric=(False, True))
    assert t.to_markdown().splitlines() == [
        "| a\\|b | n |",
        "|---|---:|",
        "| &lt;b&gt;x&lt;/b&gt; | 1 |",
    ]


def test_render_page_autoescapes_and_rejects_undefined() -> None:
    import jinja2

    html = render_page("base.html.j2", title="<b>t</b>")
    assert "&lt;b&gt;t&lt;/b&gt;" in html and "<b>t</b>" not in html
    with pytest.raises(jinja2.UndefinedError):
        render_page("scan.html.j2", title="x")


def test_generic_charts_write_png(tmp_path: Path) -> None:
    png = bar_chart(
        ["a", "b", "c"],
        {"one": [0.1, None, math.inf], "two": [0.3, 0.2, float("nan")]},
        hline=0.25,
        hline_label="limit",
        path=tmp_path / "bar.png",
    )
    assert (tmp_path / "bar.png").read_bytes() == png
    png2 = line_chart([1, 2, 4], {"asr": [0.9, 0.5, None]}, logx=True, path=tmp_path / "line.png")
    for f, data in (("bar.png", png), ("line.png", png2)):
        with Image.open(tmp_path / f) as im:
            assert im.format == "PNG" and im.width > 200
            assert len(im.convert("L").getcolors(65536) or []) > 5  # something was drawn
        assert data.startswith(b"\x89PNG")
