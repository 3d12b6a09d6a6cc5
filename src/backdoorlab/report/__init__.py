"""Reports for people: HTML pages (Jinja2 templates), charts (matplotlib) and image grids (Pillow).

- ``write_scan_report(report, out_dir)``: a ``ScanReport`` -> ``index.html`` + PNGs + ``scan.json``.
- ``write_demo_report(out_dir, summary)``: a ``DemoSummary`` -> ``index.html`` + ``table.md`` + PNGs.
- ``tables``: records -> ``Table`` rows (HTML and markdown from the same rows); ``plots``: charts;
  ``html.render_page``: the one place HTML is produced.

Jinja2 and matplotlib are imported only when a report is written.
"""

from .images import amplified_difference, grid_image, save_png, save_trigger_grid

__all__ = [
    "amplified_difference",
    "grid_image",
    "save_png",
    "save_trigger_grid",
    "write_demo_report",
    "write_scan_report",
]


def __getattr__(name: str) -> object:
    # lazy: importing backdoorlab.report (for image grids) does not load Jinja2 or matplotlib
    if name == "write_scan_report":
        from .scan import write_scan_report

        return write_scan_report
    if name == "write_demo_report":
        from .demo import write_demo_report

        return write_demo_report
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
