"""Small inline SVG line charts drawn from the data, for admin pages.

A chart is text in the page: no image request, no matplotlib on the request path,
and drawing 1,000 points costs microseconds. ``line_chart`` turns one series of
(x, y) points into an SVG polyline with its axes labelled (y: min and max, x: first
and last); with no point it says "no data yet" instead of drawing empty axes.
Reusable by any page: x may be datetimes or numbers, ``y_format`` formats the labels.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from typing import Any

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from models_registry import formatting

WIDTH = 640
HEIGHT = 140
# Room for the y labels on the left and the x labels below the plot area.
LEFT, RIGHT, TOP, BOTTOM = 80, 10, 18, 22

Point = tuple[Any, float]


def _x_number(x: Any) -> float:
    return x.timestamp() if isinstance(x, datetime) else float(x)


def _x_label(x: Any) -> str:
    return formatting.utc(x) if isinstance(x, datetime) else formatting.number(x)


def _finite(points: Sequence[Point]) -> list[Point]:
    """Points that can be drawn: None, NaN and infinities say nothing about a position."""
    return [
        (x, float(y))
        for x, y in points
        if x is not None and y is not None and math.isfinite(float(y))
    ]


def _scale(low: float, high: float, size: float) -> Callable[[float], float]:
    # A flat series (one point, or all equal) sits in the middle rather than dividing by 0.
    if high == low:
        return lambda _value: size / 2
    return lambda value: (value - low) / (high - low) * size


def no_data(title: str) -> SafeString:
    return format_html(
        '<figure class="svg-chart no-data" data-points="0"><figcaption>{}</figcaption>'
        '<p class="chart-empty">{}: no data yet</p></figure>',
        title,
        title,
    )


def line_chart(
    points: Sequence[Point],
    *,
    title: str,
    y_format: Callable[[Any], str] = formatting.number,
    x_title: str = "",
) -> SafeString:
    """One series as an inline SVG polyline with labelled axes, or "no data yet"."""
    drawable = sorted(_finite(points), key=lambda p: _x_number(p[0]))
    if not drawable:
        return no_data(title)
    xs = [_x_number(x) for x, _ in drawable]
    ys = [y for _, y in drawable]
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    sx, sy = _scale(min(xs), max(xs), plot_w), _scale(min(ys), max(ys), plot_h)
    coords = [(LEFT + sx(x), TOP + plot_h - sy(y)) for x, y in zip(xs, ys, strict=True)]
    polyline = " ".join(f"{px:.1f},{py:.1f}" for px, py in coords)
    # Plain f-strings with html.escape: format_html per point is most of the cost at 365 points.
    dots = mark_safe(  # noqa: S308 -- every interpolated text is escaped here
        "".join(
            f'<circle cx="{px:.1f}" cy="{py:.1f}" r="2.5"><title>'
            f"{escape(_x_label(x))}: {escape(y_format(y))}</title></circle>"
            for (px, py), (x, y) in zip(coords, drawable, strict=True)
        )
    )
    return format_html(
        '<figure class="svg-chart" data-points="{n}"><figcaption>{title}</figcaption>'
        '<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{title}" '
        'viewBox="0 0 {w} {h}" width="{w}" height="{h}" style="max-width:100%">'
        '<g stroke="#999" stroke-width="1">'
        '<line x1="{left}" y1="{top}" x2="{left}" y2="{base}"/>'
        '<line x1="{left}" y1="{base}" x2="{right}" y2="{base}"/></g>'
        '<g font-size="10" fill="#333">'
        '<text class="y-max" x="{ylab}" y="{top}" text-anchor="end" dy="4">{ymax}</text>'
        '<text class="y-min" x="{ylab}" y="{base}" text-anchor="end">{ymin}</text>'
        '<text class="x-first" x="{left}" y="{xlab}">{xfirst}</text>'
        '<text class="x-last" x="{right}" y="{xlab}" text-anchor="end">{xlast}</text>'
        '<text class="x-title" x="{mid}" y="{xlab}" text-anchor="middle">{x_title}</text></g>'
        '<polyline fill="none" stroke="#0d6efd" stroke-width="1.5" points="{points}"/>'
        '<g fill="#0d6efd">{dots}</g></svg></figure>',
        n=len(drawable),
        title=title,
        w=WIDTH,
        h=HEIGHT,
        left=LEFT,
        top=TOP,
        right=WIDTH - RIGHT,
        base=TOP + plot_h,
        ylab=LEFT - 4,
        xlab=HEIGHT - 6,
        mid=LEFT + plot_w // 2,
        ymax=y_format(max(ys)),
        ymin=y_format(min(ys)),
        xfirst=_x_label(drawable[0][0]),
        xlast=_x_label(drawable[-1][0]),
        x_title=x_title,
        points=polyline,
        dots=dots,
    )


# --- several series on one time axis ----------------------------------------------

MULTI_W, MULTI_H = 620, 220
MULTI_MAX_POINTS = 300  # per series: finer than the chart's pixels are wide


@dataclass(frozen=True)
class Series:
    label: str
    colour: str
    points: Sequence[Point]
    dash: str = ""


def _thinned(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    if len(points) <= MULTI_MAX_POINTS:
        return points
    stride = len(points) / MULTI_MAX_POINTS
    return [*(points[int(i * stride)] for i in range(MULTI_MAX_POINTS)), points[-1]]


def lines_chart(
    series: Sequence[Series],
    *,
    title: str,
    y_format: Callable[[Any], str] = formatting.number,
) -> SafeString:
    """Several series (equity curves) on one inline SVG, each labelled in a legend.

    620 px wide and ``max-width:100%``: it fits a laptop's page beside nothing else.
    """
    drawn = [
        (
            s,
            [
                (_x_number(x), y)
                for x, y in sorted(_finite(s.points), key=lambda p: _x_number(p[0]))
            ],
        )
        for s in series
    ]
    drawn = [(s, pts) for s, pts in drawn if pts]
    if not drawn:
        return no_data(title)
    xs = [x for _s, pts in drawn for x, _y in pts]
    ys = [y for _s, pts in drawn for _x, y in pts]
    plot_w, plot_h = MULTI_W - LEFT - RIGHT, MULTI_H - TOP - BOTTOM
    sx, sy = _scale(min(xs), max(xs), plot_w), _scale(min(ys), max(ys), plot_h)
    polylines = format_html_join(
        "",
        '<polyline class="series" data-label="{}" fill="none" stroke="{}" stroke-width="1.6" '
        'stroke-dasharray="{}" points="{}"><title>{}</title></polyline>',
        (
            (
                s.label,
                s.colour,
                s.dash or "none",
                " ".join(
                    f"{LEFT + sx(x):.1f},{TOP + plot_h - sy(y):.1f}" for x, y in _thinned(pts)
                ),
                s.label,
            )
            for s, pts in drawn
        ),
    )
    legend = format_html_join(
        "",
        '<g class="legend"><rect x="{}" y="{}" width="14" height="3" fill="{}"/>'
        '<text x="{}" y="{}" font-size="11">{}</text></g>',
        (
            (LEFT + 8, TOP + 6 + 14 * i, s.colour, LEFT + 26, TOP + 10 + 14 * i, s.label)
            for i, (s, _pts) in enumerate(drawn)
        ),
    )
    first_x = min(xs)
    last_x = max(xs)
    return format_html(
        '<figure class="svg-chart lines-chart" data-series="{n}"><figcaption>{title}</figcaption>'
        '<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{title}" '
        'viewBox="0 0 {w} {h}" width="{w}" height="{h}" style="max-width:100%;height:auto">'
        '<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#ccc"/>'
        '<g font-size="10" fill="#333">'
        '<text class="y-max" x="{ylab}" y="{top}" text-anchor="end" dy="4">{ymax}</text>'
        '<text class="y-min" x="{ylab}" y="{base}" text-anchor="end">{ymin}</text>'
        '<text class="x-first" x="{left}" y="{xlab}">{xfirst}</text>'
        '<text class="x-last" x="{right}" y="{xlab}" text-anchor="end">{xlast}</text></g>'
        "{polylines}{legend}</svg></figure>",
        n=len(drawn),
        title=title,
        w=MULTI_W,
        h=MULTI_H,
        left=LEFT,
        top=TOP,
        pw=plot_w,
        ph=plot_h,
        right=MULTI_W - RIGHT,
        base=TOP + plot_h,
        ylab=LEFT - 4,
        xlab=MULTI_H - 6,
        ymax=y_format(max(ys)),
        ymin=y_format(min(ys)),
        xfirst=formatting.utc(datetime.fromtimestamp(first_x, tz=UTC)),
        xlast=formatting.utc(datetime.fromtimestamp(last_x, tz=UTC)),
        polylines=polylines,
        legend=legend,
    )
