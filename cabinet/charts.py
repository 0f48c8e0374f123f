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


LOAD_HEIGHT = 300
# Series colours come from cabinet.css (svg.chart .c0 ... .c5); more
# classes than that reuse them in turn.
CLASS_STYLES = 6


def load_graph(count: int, down: list[list[int]], up: list[list[int]], *, title: str,
               ticks: dict[int, str], format_rate, label_down: str,
               label_up: str) -> Markup:
    """A channel-load graph: one slot per interval, download stacked by
    class above the middle line and upload below it, in bit/s on one scale.

    ``down[i]`` and ``up[i]`` hold interval i's bit/s per class (the
    caller's class order; class j is drawn with style ``c{j % 6}``);
    ``ticks`` maps an interval index to its label on the time axis.
    """
    count = max(1, count)
    peak = _nice_ceiling(max([sum(v) for v in down] + [sum(v) for v in up] + [0]))
    plot_width = WIDTH - LEFT - RIGHT
    half = (LOAD_HEIGHT - TOP - BOTTOM) / 2
    middle = TOP + half
    slot = plot_width / count
    parts = [f'<svg class="chart load" viewBox="0 0 {WIDTH} {LOAD_HEIGHT}" role="img" '
             f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
             f"<title>{escape(title)}</title>"]
    # The scale's ends are written inside the plot, under and over its
    # edges: "↓ 100 Mbit/s" is wider than the margin on a phone.
    for fraction, text, shift in ((1, f"↓ {format_rate(peak)}", 14), (0, "0", 4),
                                  (-1, f"↑ {format_rate(peak)}", -6)):
        y = middle - half * fraction
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" '
                     f'y1="{y:.1f}" y2="{y:.1f}"/>')
        x, anchor = (LEFT - 4, "end") if fraction == 0 else (LEFT + 4, "start")
        parts.append(f'<text class="axis" x="{x}" y="{y + shift:.1f}" '
                     f'text-anchor="{anchor}">{escape(text)}</text>')
    for index in range(min(count, len(down))):
        if not any(down[index]) and not any(up[index]):
            continue
        x = LEFT + slot * index
        rects = []
        for values, sign in ((down[index], -1), (up[index], 1)):
            edge = middle
            for class_index, rate in enumerate(values):
                if rate <= 0:
                    continue
                height = half * rate / peak
                y = edge - height if sign < 0 else edge
                edge = y if sign < 0 else edge + height
                style = f"c{class_index % CLASS_STYLES}"
                rects.append(f'<rect class="{style}{" out" if sign > 0 else ""}" '
                             f'x="{x:.2f}" y="{y:.2f}" width="{max(slot, 0.5):.2f}" '
                             f'height="{height:.2f}"/>')
        parts.append(f'<g data-interval="{index}">{"".join(rects)}</g>')
    for index, label in sorted(ticks.items()):
        x = LEFT + slot * index
        parts.append(f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" '
                     f'y2="{LOAD_HEIGHT - BOTTOM}"/>')
        parts.append(f'<text class="axis" x="{x:.1f}" y="{LOAD_HEIGHT - 8}" '
                     f'text-anchor="middle">{escape(label)}</text>')
    parts.append(f'<text class="axis" x="{WIDTH - RIGHT}" y="{TOP + 12}" text-anchor="end">'
                 f'{escape(label_down)}</text>')
    parts.append(f'<text class="axis" x="{WIDTH - RIGHT}" y="{LOAD_HEIGHT - BOTTOM - 4}" '
                 f'text-anchor="end">{escape(label_up)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
