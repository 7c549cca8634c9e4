"""Calls per operation over time as a server-side SVG (stacked bars, no script, no library): the console's
usage chart. Colours come from a fixed palette; text is escaped."""
from __future__ import annotations

from datetime import datetime, timedelta
from html import escape

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")
WIDTH, HEIGHT, LEFT, BOTTOM, TOP = 720, 260, 48, 40, 12


def usage_svg(series: dict[str, list[int]], start: datetime, end: datetime, title: str) -> str:
    buckets = max((len(v) for v in series.values()), default=0)
    names = sorted(series, key=lambda n: -sum(series[n]))
    shown = names[: len(PALETTE) - 1]
    other = [sum(series[n][i] for n in names[len(shown):]) for i in range(buckets)] if len(names) > len(shown) else None
    stacks = [(n, series[n]) for n in shown] + ([("other", other)] if other else [])
    totals = [sum(values[i] for _, values in stacks) for i in range(buckets)]
    peak = max(totals, default=0) or 1
    plot_w, plot_h = WIDTH - LEFT - 8, HEIGHT - BOTTOM - TOP
    bar_w = plot_w / max(buckets, 1)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT + 20 * len(stacks)}" '
             f'role="img" aria-labelledby="chart-title" class="chart"><title id="chart-title">{escape(title)}</title>',
             f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH - 8}" y2="{TOP + plot_h}" stroke="#444"/>',
             f'<text x="{LEFT - 6}" y="{TOP + 10}" text-anchor="end" font-size="11">{peak}</text>',
             f'<text x="{LEFT - 6}" y="{TOP + plot_h}" text-anchor="end" font-size="11">0</text>']
    for i in range(buckets):
        y = TOP + plot_h
        for index, (name, values) in enumerate(stacks):
            if values[i]:
                h = values[i] / peak * plot_h
                y -= h
                parts.append(f'<rect x="{LEFT + i * bar_w + 1:.1f}" y="{y:.1f}" width="{max(bar_w - 2, 1):.1f}" '
                             f'height="{h:.1f}" fill="{PALETTE[index]}"><title>{escape(name)}: {values[i]}</title></rect>')
    step = (end - start) / max(buckets, 1)
    for i in (0, buckets // 2, buckets - 1) if buckets else ():
        label = (start + step * i).strftime("%Y-%m-%d %H:%M")
        parts.append(f'<text x="{LEFT + i * bar_w + bar_w / 2:.1f}" y="{TOP + plot_h + 16}" font-size="11" '
                     f'text-anchor="middle">{escape(label)}</text>')
    for index, (name, values) in enumerate(stacks):
        y = HEIGHT + 20 * index
        parts.append(f'<rect x="{LEFT}" y="{y - 10}" width="12" height="12" fill="{PALETTE[index]}"/>'
                     f'<text x="{LEFT + 18}" y="{y}" font-size="12">{escape(name)} ({sum(values)})</text>')
    parts.append("</svg>")
    return "".join(parts)


def bucket_count(start: datetime, end: datetime) -> int:
    span = end - start
    return 24 if span <= timedelta(days=2) else 30 if span <= timedelta(days=60) else 52
