"""Server-rendered SVG charts: no JavaScript, no CDN, fine under a strict CSP.

Only presentation attributes and classes (styled by cabinet.css) are used:
the CSP forbids inline ``style``.
"""

from __future__ import annotations

import datetime as dt

from markupsafe import Markup, escape

WIDTH, HEIGHT = 720, 240
LEFT, RIGHT, TOP, BOTTOM = 72, 8, 16, 32


def _nice_ceiling(value: int) -> int:
    if value <= 0:
        return 1
    magnitude = 10 ** (len(str(value)) - 1)
    for step in (1, 2, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return 10 * magnitude


def daily_bars(series: list[tuple[dt.date, int, int]], *, title: str,
               label_down: str, label_up: str, format_volume) -> Markup:
    """Stacked bars, one a day: download (bottom) and upload (top), in octets."""
    count = max(1, len(series))
    peak = _nice_ceiling(max((down + up for _day, down, up in series), default=0))
    plot_width = WIDTH - LEFT - RIGHT
    plot_height = HEIGHT - TOP - BOTTOM
    slot = plot_width / count
    bar = max(1.0, slot * 0.7)
    parts = [f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
             f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
             f"<title>{escape(title)}</title>"]
    for fraction in (0, 0.5, 1):
        y = TOP + plot_height * (1 - fraction)
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" '
                     f'y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(f'<text class="axis" x="{LEFT - 4}" y="{y + 4:.1f}" '
                     f'text-anchor="end">{escape(format_volume(int(peak * fraction)))}</text>')
    for index, (day, down, up) in enumerate(series):
        x = LEFT + slot * index + (slot - bar) / 2
        down_height = plot_height * down / peak
        up_height = plot_height * up / peak
        base = TOP + plot_height
        tip = (f"{day.isoformat()}: {label_down} {format_volume(down)}, "
               f"{label_up} {format_volume(up)}")
        parts.append(f'<g data-day="{day.isoformat()}"><title>{escape(tip)}</title>'
                     f'<rect class="down" x="{x:.1f}" y="{base - down_height:.1f}" '
                     f'width="{bar:.1f}" height="{down_height:.1f}"/>'
                     f'<rect class="up" x="{x:.1f}" y="{base - down_height - up_height:.1f}" '
                     f'width="{bar:.1f}" height="{up_height:.1f}"/></g>')
        if count <= 12 or day.day in (1, 5, 10, 15, 20, 25):
            parts.append(f'<text class="axis" x="{x + bar / 2:.1f}" y="{HEIGHT - 8}" '
                         f'text-anchor="middle">{day.day}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
