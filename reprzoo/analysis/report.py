"""The analysis page: one self-contained HTML file (figures inline as PNG data, no network, no external script),
with a section per analysis: what it measures and the paper, its numbers, its figures, or why it did not apply."""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Figure:
    """A rendered figure: its caption and PNG bytes."""

    caption: str
    png: bytes


@dataclass
class Section:
    """One analysis in the report."""

    key: str
    title: str
    paper: str
    what: str
    values: dict[str, Any] = field(default_factory=dict)
    figures: list[Figure] = field(default_factory=list)
    skipped: str | None = None  # why it did not apply to these models / this data
    seconds: float = 0.0


def render_png(fig) -> bytes:
    """A matplotlib figure as PNG bytes (the figure is closed)."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ddd; }
.paper { color: #555; font-style: italic; } .skipped { color: #8a6d3b; }
table { border-collapse: collapse; margin: .6em 0; font-size: .9em; }
td, th { border: 1px solid #ddd; padding: .25em .6em; text-align: right; } th { background: #f4f4f4; }
td:first-child, th:first-child { text-align: left; }
figure { display: inline-block; margin: .5em 1em .5em 0; vertical-align: top; }
figure img { max-width: 520px; border: 1px solid #eee; } figcaption { font-size: .85em; color: #555; }
nav a { margin-right: .8em; font-size: .9em; }
"""

# counts the figures the browser decoded: a test reads data-figures-loaded / data-figures-expected
_SCRIPT = """
window.addEventListener("load", function () {
  var images = document.querySelectorAll("figure img");
  var ok = 0;
  images.forEach(function (img) { if (img.complete && img.naturalWidth > 0) { ok += 1; } });
  document.body.setAttribute("data-figures-loaded", String(ok));
});
"""


def _value_rows(values: dict[str, Any]) -> str:
    """Scalars as a two-column table; ``{model: {metric: value}}`` as a models x metrics table."""
    if not values:
        return ""
    nested = {k: v for k, v in values.items() if isinstance(v, dict) and all(not isinstance(x, (dict, list)) for x in v.values())}
    scalars = {k: v for k, v in values.items() if isinstance(v, (int, float, str, bool)) or v is None}
    out = []
    if nested:
        columns = sorted({c for v in nested.values() for c in v})
        out.append("<table><tr><th></th>" + "".join(f"<th>{html.escape(str(c))}</th>" for c in columns) + "</tr>")
        for row, v in nested.items():
            cells = "".join(f"<td>{_fmt(v.get(c))}</td>" for c in columns)
            out.append(f"<tr><td>{html.escape(str(row))}</td>{cells}</tr>")
        out.append("</table>")
    if scalars:
        out.append("<table>" + "".join(f"<tr><td>{html.escape(k)}</td><td>{_fmt(v)}</td></tr>" for k, v in scalars.items()))
        out.append("</table>")
    return "\n".join(out)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape("-" if value is None else str(value))


def write_html(title: str, header: dict[str, Any], sections: list[Section]) -> str:
    """The page's HTML."""
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style><script>{_SCRIPT}</script></head>",
        f'<body data-figures-expected="{sum(len(s.figures) for s in sections)}">',
        f"<h1>{html.escape(title)}</h1>",
        "<table>" + "".join(f"<tr><td>{html.escape(k)}</td><td>{_fmt(v)}</td></tr>" for k, v in header.items()) + "</table>",
        "<nav>" + "".join(f'<a href="#{s.key}">{html.escape(s.title)}</a>' for s in sections) + "</nav>",
    ]
    for s in sections:
        parts.append(f'<section id="{s.key}"><h2>{html.escape(s.title)}</h2>')
        parts.append(f'<p class="paper">{html.escape(s.paper)}</p><p>{html.escape(s.what)}</p>')
        if s.skipped:
            parts.append(f'<p class="skipped">Not run: {html.escape(s.skipped)}</p>')
        parts.append(_value_rows(s.values))
        for f in s.figures:
            data = base64.b64encode(f.png).decode("ascii")
            parts.append(
                f'<figure><img alt="{html.escape(f.caption)}" src="data:image/png;base64,{data}">'
                f"<figcaption>{html.escape(f.caption)}</figcaption></figure>"
            )
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def to_json(header: dict[str, Any], sections: list[Section]) -> str:
    """``analysis.json``: the header and every section's values (figures are in the page)."""
    doc = {
        **header,
        "sections": {
            s.key: {"title": s.title, "paper": s.paper, "values": s.values, "skipped": s.skipped, "seconds": round(s.seconds, 2)}
            for s in sections
        },
    }
    return json.dumps(doc, indent=2, default=_jsonable) + "\n"


def _jsonable(value: Any):
    import torch

    if isinstance(value, torch.Tensor):
        return value.tolist()
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


__all__ = ["Figure", "Section", "render_png", "to_json", "write_html"]
