"""Open each HTML report in headless Chromium: tables are in the DOM, every image decodes, the page draws.

Skipped when no ``chromium`` / ``chromium-browser`` is on PATH, except under CI (``CI`` set), where
``.ci/run`` installs Debian's ``chromium`` and a missing browser is a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from backdoorlab.records import ScanReport
from backdoorlab.report.demo import DemoSummary, demo_tables, write_demo_report
from backdoorlab.report.scan import write_scan_report

# Writes what the browser actually rendered into the DOM once everything has loaded.
PROBE = """<script>
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  document.body.setAttribute("data-probe", JSON.stringify({
    images: imgs.length,
    decoded: imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length,
    tables: document.querySelectorAll("table").length,
    rows: document.querySelectorAll("tbody tr").length,
    scripts: document.scripts.length,
    title: document.title
  }));
});
</script>
"""


def _browser() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        if os.environ.get("CI", "").lower() not in ("", "0", "false"):
            pytest.fail("CI: chromium is not installed (.ci/run installs Debian's chromium)")
        pytest.skip("chromium not installed (apt-get install chromium)")
    return exe


def _chromium(exe: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [
        exe,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-extensions",
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90, check=False)


class _Probe(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.value: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body":
            self.value = dict(attrs).get("data-probe")


def check_in_browser(exe: str, page: Path, tmp: Path, n_tables: int) -> None:
    """Load ``page`` (with a probe script added to a copy) and take a screenshot of the original."""
    html = page.read_text(encoding="utf-8")
    assert "</body>" in html
    probe_page = page.with_name("_probe.html")
    probe_page.write_text(html.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    res = _chromium(
        exe, tmp / "profile-dom", "--virtual-time-budget=5000", "--dump-dom", probe_page.as_uri()
    )
    assert res.returncode == 0, res.stderr[-2000:]
    p = _Probe()
    p.feed(res.stdout)
    assert p.value is not None, f"the page did not finish loading: {res.stdout[:500]}"
    probe = json.loads(p.value)
    local = sorted(page.parent.glob("*.png"))
    assert probe["images"] == len(local) > 0
    assert probe["decoded"] == probe["images"], f"images that did not render: {probe}"
    assert probe["tables"] == n_tables
    assert probe["rows"] > n_tables
    assert (
        probe["scripts"] == 1
    )  # only the probe: the report runs no script (hostile names included)
    # each image file beside the page is a real PNG
    for f in local:
        with Image.open(f) as im:
            im.load()
            assert im.width > 10 and im.height > 10
    shot = tmp / f"{page.parent.name}.png"
    res = _chromium(
        exe,
        tmp / "profile-shot",
        "--window-size=1200,2000",
        "--virtual-time-budget=5000",
        f"--screenshot={shot}",
        page.as_uri(),
    )
    assert res.returncode == 0 and shot.exists(), res.stderr[-2000:]
    with Image.open(shot) as im:
        g = im.convert("L")
        assert g.size == (1200, 2000)
        hist = g.histogram()
        not_white = sum(hist[:240]) / (g.width * g.height)
        assert not_white > 0.01, "screenshot is blank"
        assert len(g.getcolors(256 * 256) or []) > 20


def test_scan_report_renders_in_chromium(scan_report_record: ScanReport, tmp_path: Path) -> None:
    exe = _browser()
    page = write_scan_report(scan_report_record, tmp_path / "scan")
    # scanners, model, and per result: per-class figures and other figures
    check_in_browser(exe, page, tmp_path, n_tables=6)


def test_demo_report_renders_in_chromium(demo_summary_record: DemoSummary, tmp_path: Path) -> None:
    exe = _browser()
    page = write_demo_report(tmp_path / "demo", demo_summary_record)
    check_in_browser(exe, page, tmp_path, n_tables=len(demo_tables(demo_summary_record)))
