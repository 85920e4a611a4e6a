"""Usage charts as inline SVG, drawn on the server: no script, no third-party library."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta

from markupsafe import Markup, escape

WIDTH, HEIGHT, LEFT, BOTTOM, TOP = 640, 220, 48, 28, 12


def days(count: int, today: date | None = None) -> list[str]:
    """The last ``count`` days, oldest first, as ISO dates."""
    end = today or date.today()
    return [(end - timedelta(days=offset)).isoformat() for offset in range(count - 1, -1, -1)]


def bar_chart(points: Sequence[tuple[str, float]], *, label: str, unit: str) -> Markup:
    """A bar per point; each bar carries its exact value in a tooltip and a data attribute."""
    top = max((value for _, value in points), default=0.0) or 1.0
    plot_w, plot_h = WIDTH - LEFT - 8, HEIGHT - BOTTOM - TOP
    slot = plot_w / max(1, len(points))
    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(label)}</title>",
    ]
    for step in range(5):  # horizontal grid lines with their values
        value = top * step / 4
        y = TOP + plot_h - plot_h * step / 4
        parts.append(
            f'<line class="grid" x1="{LEFT}" x2="{WIDTH - 8}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="axis" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{_short(value)}</text>"
        )
    for index, (name, value) in enumerate(points):
        height = plot_h * value / top
        x = LEFT + index * slot + slot * 0.15
        y = TOP + plot_h - height
        parts.append(
            f'<rect class="bar" data-label="{escape(name)}" data-value="{value:g}" '
            f'x="{x:.1f}" y="{y:.1f}" width="{slot * 0.7:.1f}" height="{height:.1f}">'
            f"<title>{escape(name)}: {value:g} {escape(unit)}</title></rect>"
        )
    every = max(1, len(points) // 6)
    for index in range(0, len(points), every):
        x = LEFT + index * slot + slot / 2
        parts.append(
            f'<text class="axis" x="{x:.1f}" y="{HEIGHT - 8}" text-anchor="middle">'
            f"{escape(points[index][0][-5:])}</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def _short(value: float) -> str:
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= size:
            return f"{value / size:.1f}{suffix}"
    return f"{value:.0f}" if value >= 10 or value == int(value) else f"{value:.2g}"
