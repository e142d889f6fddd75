"""Small inline SVG charts for server-rendered pages. Colours: the Okabe-Ito palette, readable
with the common colour-vision deficiencies; every chart has a table beside it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000"]


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    for step in (1, 2, 5, 10, 20, 25, 50):
        for scale in (1, 10, 100, 1000, 10_000, 100_000, 1_000_000, 10_000_000):
            if step * scale >= value:
                return float(step * scale)
    return value


def bar_chart(
    values: Sequence[float],
    labels: Sequence[str],
    *,
    title: str,
    width: int = 560,
    height: int = 180,
    colour: str = PALETTE[0],
    every: int = 1,
) -> SafeString:
    """Vertical bars; ``every`` thins the x labels."""
    left, bottom, top = 44, 22, 8
    plot_w, plot_h = width - left - 6, height - bottom - top
    top_value = _nice_max(max(values, default=0))
    n = max(len(values), 1)
    slot = plot_w / n
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(title)}" preserveAspectRatio="xMinYMin meet">',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 6}" y2="{top + plot_h}" '
        'class="chart-axis"/>',
    ]
    for fraction in (0.5, 1.0):
        y = top + plot_h * (1 - fraction)
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - 6}" y2="{y:.1f}" class="chart-grid"/>'
            f'<text x="{left - 4}" y="{y + 4:.1f}" class="chart-tick" text-anchor="end">'
            f"{_short(top_value * fraction)}</text>"
        )
    for index, (value, label) in enumerate(zip(values, labels, strict=True)):
        bar_h = plot_h * (value / top_value) if top_value else 0
        x = left + index * slot + slot * 0.12
        parts.append(
            f'<rect x="{x:.1f}" y="{top + plot_h - bar_h:.1f}" width="{slot * 0.76:.1f}" '
            f'height="{bar_h:.1f}" fill="{colour}"><title>{escape(label)}: '
            f"{_short(value)}</title></rect>"
        )
        if index % every == 0:
            parts.append(
                f'<text x="{x + slot * 0.38:.1f}" y="{height - 6}" class="chart-tick" '
                f'text-anchor="middle">{escape(label)}</text>'
            )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every label is escaped above


def named_bar_chart(
    values: Sequence[float],
    labels: Sequence[str],
    *,
    title: str,
    width: int = 560,
    row_height: int = 22,
    colour: str = PALETTE[0],
    label_chars: int = 24,
) -> SafeString:
    """Horizontal bars, each named on its left (a long name is cut with an ellipsis; the whole
    name and the value are in the bar's tooltip) and its value at its end."""
    left, right, top = 172, 44, 4
    plot_w = width - left - right
    height = top * 2 + row_height * max(len(values), 1)
    top_value = max(values, default=0) or 1
    parts = [
        f'<svg class="chart chart-named-bars" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(title)}" preserveAspectRatio="xMinYMin meet">',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - top}" class="chart-axis"/>',
    ]
    for index, (value, label) in enumerate(zip(values, labels, strict=True)):
        y = top + index * row_height
        bar_w = plot_w * value / top_value
        shown = label if len(label) <= label_chars else label[: label_chars - 1] + "…"
        parts.append(
            f'<text x="{left - 6}" y="{y + row_height * 0.68:.1f}" class="chart-tick" '
            f'text-anchor="end">{escape(shown)}</text>'
            f'<rect x="{left}" y="{y + row_height * 0.15:.1f}" width="{bar_w:.1f}" '
            f'height="{row_height * 0.7:.1f}" fill="{colour}"><title>{escape(label)}: '
            f"{_short(value)}</title></rect>"
            f'<text x="{left + bar_w + 4:.1f}" y="{y + row_height * 0.68:.1f}" '
            f'class="chart-tick">{_short(value)}</text>'
        )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every label is escaped above


def line_chart(
    series: Mapping[str, Sequence[float]],
    labels: Sequence[str],
    *,
    title: str,
    width: int = 560,
    height: int = 180,
) -> SafeString:
    """One polyline per series, coloured from the palette in order."""
    left, bottom, top = 44, 22, 8
    plot_w, plot_h = width - left - 10, height - bottom - top
    top_value = _nice_max(max((max(v, default=0) for v in series.values()), default=0))
    n = len(labels)
    step = plot_w / max(n - 1, 1)
    every = max(1, n // 8)
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(title)}" preserveAspectRatio="xMinYMin meet">',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 10}" y2="{top + plot_h}" '
        'class="chart-axis"/>',
    ]
    for fraction in (0.5, 1.0):
        y = top + plot_h * (1 - fraction)
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - 10}" y2="{y:.1f}" class="chart-grid"/>'
            f'<text x="{left - 4}" y="{y + 4:.1f}" class="chart-tick" text-anchor="end">'
            f"{_short(top_value * fraction)}</text>"
        )
    for index, label in enumerate(labels):
        if index % every == 0:
            parts.append(
                f'<text x="{left + index * step:.1f}" y="{height - 6}" class="chart-tick" '
                f'text-anchor="middle">{escape(label)}</text>'
            )
    for number, (name, values) in enumerate(series.items()):
        colour = PALETTE[number % len(PALETTE)]
        points = " ".join(
            f"{left + i * step:.1f},{top + plot_h * (1 - v / top_value):.1f}"
            for i, v in enumerate(values)
        )
        parts.append(
            f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2">'
            f"<title>{escape(name)}</title></polyline>"
        )
        if len(values) == 1:
            parts.append(
                f'<circle cx="{left:.1f}" cy="{top + plot_h * (1 - values[0] / top_value):.1f}"'
                f' r="3" fill="{colour}"/>'
            )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every label is escaped above


def share_bar(parts: Sequence[tuple[str, float]], *, title: str) -> SafeString:
    """One horizontal bar split into shares."""
    total = sum(v for _, v in parts) or 1
    x = 0.0
    out = [
        f'<svg class="chart chart-share" viewBox="0 0 560 28" role="img" '
        f'aria-label="{escape(title)}" preserveAspectRatio="none">'
    ]
    for number, (name, value) in enumerate(parts):
        w = 560 * value / total
        out.append(
            f'<rect x="{x:.1f}" y="0" width="{w:.1f}" height="28" '
            f'fill="{PALETTE[number % len(PALETTE)]}"><title>{escape(name)}: {value:g}</title>'
            "</rect>"
        )
        x += w
    out.append("</svg>")
    return mark_safe("".join(out))  # noqa: S308 - every label is escaped above


def _short(value: float) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:g}M"
    if value >= 1000:
        return f"{value / 1000:g}k"
    return f"{value:g}"
