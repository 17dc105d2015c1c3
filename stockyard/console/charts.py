"""The stock-level chart of a product page: an SVG drawn on the server from the ledger's
levels (inventory/ledger/service.stock_levels), as a step line, with a text equivalent."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from html import escape

WIDTH, HEIGHT = 720, 240
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 16, 36


@dataclass(frozen=True, slots=True)
class Chart:
    svg: str
    points: list[tuple[datetime, int]]


def stock_chart(points: list[tuple[datetime, int]], *, title: str) -> Chart:
    """`points`: (end of bucket, level after it), oldest first, at least one."""
    low = min(0, *(level for _, level in points))
    high = max(1, *(level for _, level in points))
    span = high - low
    first, last = points[0][0].timestamp(), points[-1][0].timestamp()
    width = max(1.0, last - first)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(at: datetime) -> float:
        return LEFT + (at.timestamp() - first) / width * plot_w

    def y(level: int) -> float:
        return TOP + (high - level) / span * plot_h

    path: list[str] = []
    for index, (at, level) in enumerate(points):
        if index == 0:
            path.append(f"M{x(at):.1f},{y(level):.1f}")
        else:
            path.append(f"H{x(at):.1f}V{y(level):.1f}")
    ticks = sorted({low, high, (low + high) // 2})
    labels = "".join(
        f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(t):.1f}" y2="{y(t):.1f}"/>'
        f'<text class="tick" x="{LEFT - 6}" y="{y(t) + 4:.1f}" text-anchor="end">{t}</text>'
        for t in ticks
    )
    dates = (
        f'<text class="tick" x="{LEFT}" y="{HEIGHT - 12}">{points[0][0]:%Y-%m-%d}</text>'
        f'<text class="tick" x="{WIDTH - RIGHT}" y="{HEIGHT - 12}" text-anchor="end">'
        f"{points[-1][0]:%Y-%m-%d %H:%M}</text>"
    )
    svg = (
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-labelledby="chart-title" xmlns="http://www.w3.org/2000/svg">'
        f'<title id="chart-title">{escape(title)}</title>{labels}{dates}'
        f'<path class="level" d="{"".join(path)}"/></svg>'
    )
    return Chart(svg=svg, points=points)
