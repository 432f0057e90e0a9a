"""Inline SVG line charts (models_registry.svg_charts): drawn from the data, labelled, honest."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from models_registry import formatting
from models_registry.svg_charts import HEIGHT, TOP, line_chart

T0 = datetime(2024, 2, 1, tzinfo=UTC)


def polyline_points(svg: str) -> list[tuple[float, float]]:
    found = re.search(r'<polyline [^>]*points="([^"]+)"', svg)
    assert found, svg
    return [tuple(map(float, pair.split(","))) for pair in found.group(1).split()]  # type: ignore[misc]


def test_a_series_becomes_a_polyline_with_one_vertex_per_point_and_labelled_axes() -> None:
    points = [(T0 + timedelta(days=n), v) for n, v in enumerate([0.01, -0.02, 0.03])]

    svg = line_chart(points, title="Return", y_format=formatting.percent)

    assert len(polyline_points(svg)) == 3
    assert 'data-points="3"' in svg
    assert ">3.00 %</text>" in svg and ">-2.00 %</text>" in svg  # y max and min
    assert "2024-02-01 00:00:00 UTC" in svg and "2024-02-03 00:00:00 UTC" in svg  # x first/last


def test_the_highest_value_is_drawn_highest_and_time_runs_left_to_right() -> None:
    # Given out of order: the chart sorts by x.
    points = [(T0 + timedelta(days=2), 5.0), (T0, 1.0), (T0 + timedelta(days=1), 3.0)]

    coords = polyline_points(line_chart(points, title="Sharpe"))

    xs = [x for x, _ in coords]
    ys = [y for _, y in coords]
    assert xs == sorted(xs)
    assert ys[2] == TOP  # the maximum touches the top of the plot (SVG y grows downwards)
    assert ys[0] > ys[1] > ys[2]


def test_no_point_or_only_missing_values_say_no_data_yet() -> None:
    assert "Sharpe: no data yet" in line_chart([], title="Sharpe")
    empty = line_chart([(T0, None), (T0, float("nan"))], title="Sharpe")  # type: ignore[list-item]
    assert "Sharpe: no data yet" in empty and "<svg" not in empty


def test_one_point_or_a_flat_series_is_drawn_in_the_middle_not_divided_by_zero() -> None:
    coords = polyline_points(line_chart([(T0, 0.5), (T0 + timedelta(hours=1), 0.5)], title="x"))
    assert len(coords) == 2 and coords[0][1] == coords[1][1] < HEIGHT


def test_titles_and_labels_are_escaped() -> None:
    svg = line_chart([(1, 1.0)], title="<script>")
    assert "<script>" not in svg and "&lt;script&gt;" in svg
