"""HTML pages from Jinja2 templates (``templates/*.html.j2``), autoescaped: no HTML strings elsewhere.

``render_page("scan.html.j2", **ctx)`` renders a page that extends ``base.html.j2`` (skeleton and the
one CSS block) and uses the macros of ``macros.html.j2`` (``table(t)`` for a ``tables.Table``,
``figure(src, caption)`` for a PNG with a caption). Undefined names are an error, so a template can
never silently show a key a record does not have.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from .. import __version__


@cache
def environment() -> Any:
    """The one Jinja2 environment (templates shipped in the package, autoescape on)."""
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("backdoorlab.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render_page(template: str, **ctx: Any) -> str:
    """Render ``templates/<template>`` with ``ctx`` (plus ``version``) to an HTML string."""
    ctx.setdefault("version", __version__)
    ctx.setdefault("command", None)
    out: str = environment().get_template(template).render(**ctx)
    return out
