"""The evaluation report's server-side plots: escaped labels, coordinates inside the frame, and
nothing drawn for nothing."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from server.evaluations.reports import (
    Interval,
    Series,
    evaluation_report_html,
    novelty_value_series,
    svg_interval_plot,
    svg_line_plot,
    svg_scatter,
)
from tests.server.api.world import HOSTILE, build_world


def numbers(svg: str, attribute: str) -> list[float]:
    return [float(value) for value in re.findall(rf'\s{attribute}="(-?[0-9.]+)"', svg)]


def test_interval_plot_draws_one_dot_and_bar_per_finite_row_with_escaped_labels() -> None:
    svg = svg_interval_plot(
        [
            Interval("<b>a</b>", 1.0, 0.5, 1.5),
            Interval("b & c", 2.0, 1.0, 3.0),
            Interval("none", None, None, None),
        ],
        title="ratings",
        x_label="rating",
    )
    assert svg.count("<circle") == 2
    assert "&lt;b&gt;a&lt;/b&gt;" in svg and "b &amp; c" in svg and "<b>" not in svg
    assert all(64 <= x <= 640 for x in numbers(svg, "cx"))


def test_plots_of_nothing_are_empty() -> None:
    assert svg_interval_plot([Interval("x", None, None, None)], title="t", x_label="x") == ""
    assert svg_line_plot([], title="t", x_label="x", y_label="y") == ""
    assert svg_scatter([], [], title="t", x_label="x", y_label="y") == ""


def test_a_single_point_still_gets_a_frame() -> None:
    svg = svg_scatter([Series("only", [(0.5, 0.5)])], [[(0.5, 0.5)]], title="t", x_label="x", y_label="y")
    centres = numbers(svg, "cx")
    assert centres and all(64 < x < 624 for x in centres)


def test_line_plot_draws_a_band_per_series() -> None:
    svg = svg_line_plot(
        [
            Series("v1", [(1, 0.1), (2, 0.3)], [(1, 0.05, 0.15), (2, 0.2, 0.4)]),
            Series("v2", [(1, 0.2), (2, 0.5)]),
        ],
        title="novelty",
        x_label="n",
        y_label="share",
    )
    assert svg.count("<polygon") == 1 and svg.count("<polyline") == 2


@pytest.mark.django_db
def test_the_report_escapes_every_generated_string(settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings.VAR_DIR = tmp_path
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    world = build_world(hostile_text=True)
    html = evaluation_report_html(study=world.study_a)
    assert HOSTILE not in html
    assert "<script" not in html and "<img" not in html
    points, front = novelty_value_series(world.evaluation)
    assert len(points) == 5 and front == points[:2]
    # The Pareto-front samples are quoted, escaped.
    assert html.count("<blockquote>") == 2
