"""Small SVG charts drawn on the server: no chart library, no CDN, nothing to load but the page.

Every text that goes into a chart (method names come from table columns) is escaped here.
"""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

from etlnorm.warehouse.phases import Bucket

# One colour per method family: people, lexical hits, inferred answers, non-answers.
COLOURS = {"curated": "#1b7837", "exact": "#5aae61", "synonym": "#a6dba0", "fuzzy": "#d9f0d3",
           "retrieval": "#4393c3", "crossencoder": "#92c5de", "rerank": "#2166ac", "llm": "#b2abd2",
           "llm+retrieval": "#8073ac", "negated": "#fdb863", "multiple": "#e08214", "none": "#d6604d",
           "empty": "#e0e0e0"}  # fmt: skip
OTHER = "#bababa"


def histogram_svg(buckets: Sequence[Bucket], width: int = 320, height: int = 120) -> Markup:
    """Rows per confidence bucket: mapped rows dark, abstentions (rows without an ID) light on top."""
    top = max((b.rows for b in buckets), default=0) or 1
    bar = width / max(1, len(buckets))
    parts = [f'<svg class="chart" role="img" viewBox="0 0 {width} {height + 16}" width="{width}" height="{height + 16}">',
             "<title>rows by confidence</title>"]  # fmt: skip
    for n, b in enumerate(buckets):
        mapped_h, rest_h = height * b.mapped / top, height * (b.rows - b.mapped) / top
        x = n * bar
        tip = escape(f"{b.low:.1f}–{b.high:.1f}: {b.rows} rows, {b.mapped} mapped")
        parts.append(f'<g><title>{tip}</title>'
                     f'<rect x="{x + 1:.1f}" y="{height - mapped_h:.1f}" width="{bar - 2:.1f}" height="{mapped_h:.1f}" fill="#2166ac"/>'
                     f'<rect x="{x + 1:.1f}" y="{height - mapped_h - rest_h:.1f}" width="{bar - 2:.1f}" height="{rest_h:.1f}" fill="#f4a582"/></g>')  # fmt: skip
    for n in range(0, len(buckets) + 1, max(1, len(buckets) // 5)):
        anchor = "start" if n == 0 else "end" if n == len(buckets) else "middle"
        parts.append(f'<text x="{n * bar:.1f}" y="{height + 13}" font-size="10" text-anchor="{anchor}">'
                     f"{n / max(1, len(buckets)):.1f}</text>")  # fmt: skip
    parts.append("</svg>")
    return Markup("".join(parts))


def methods_svg(methods: dict[str, int], width: int = 320, height: int = 14) -> Markup:
    """One bar split by method (rows each), with a legend of the methods present."""
    total = sum(methods.values()) or 1
    order = sorted(methods, key=lambda m: (list(COLOURS).index(m) if m in COLOURS else len(COLOURS), m))
    parts = [f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}">',
             "<title>rows by method</title>"]  # fmt: skip
    x = 0.0
    for method in order:
        w = width * methods[method] / total
        tip = escape(f"{method}: {methods[method]} rows")
        parts.append(f'<rect x="{x:.1f}" y="0" width="{w:.1f}" height="{height}" fill="{COLOURS.get(method, OTHER)}">'
                     f"<title>{tip}</title></rect>")  # fmt: skip
        x += w
    parts.append("</svg>")
    legend = "".join(f'<span class="key"><svg width="10" height="10"><rect width="10" height="10" '
                     f'fill="{COLOURS.get(m, OTHER)}"/></svg> {escape(m)} {methods[m]}</span>' for m in order)  # fmt: skip
    return Markup("".join(parts) + f'<div class="legend">{legend}</div>')
