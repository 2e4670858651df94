"""The text exposition format 0.0.4, checked against hand-written text."""

from __future__ import annotations

import math

import pytest

from server.core.prometheus import MetricFamily, Sample, format_value, histogram_samples, render


def test_counter_and_gauge_render_help_type_and_one_line_per_sample() -> None:
    families = [
        MetricFamily(
            "lovelace_judgments_total",
            "counter",
            "Judgments submitted.",
            [Sample({"study": "poems"}, 12), Sample({"study": "jokes"}, 0)],
        ),
        MetricFamily("lovelace_broker_up", "gauge", "1 when the broker answered.", [Sample({}, 1)]),
    ]

    assert render(families) == (
        "# HELP lovelace_judgments_total Judgments submitted.\n"
        "# TYPE lovelace_judgments_total counter\n"
        'lovelace_judgments_total{study="poems"} 12\n'
        'lovelace_judgments_total{study="jokes"} 0\n'
        "# HELP lovelace_broker_up 1 when the broker answered.\n"
        "# TYPE lovelace_broker_up gauge\n"
        "lovelace_broker_up 1\n"
    )


def test_label_values_escape_backslash_quote_and_newline_and_help_escapes_backslash_and_newline() -> None:
    family = MetricFamily(
        "worker_seen",
        "gauge",
        'Path C:\\temp\nsecond "line"',
        [Sample({"worker": 'a\\b"c\nd', "queue": "gpu"}, 2.5)],
    )

    assert render([family]) == (
        '# HELP worker_seen Path C:\\\\temp\\nsecond "line"\n'
        "# TYPE worker_seen gauge\n"
        'worker_seen{worker="a\\\\b\\"c\\nd",queue="gpu"} 2.5\n'
    )


def test_a_histogram_has_cumulative_buckets_inf_sum_and_count() -> None:
    samples = histogram_samples(
        labels={"kind": "generate"}, bounds=[1, 10, 0.5], cumulative_counts=[1, 3, 3], count=4, total=1234.5
    )

    assert render([MetricFamily("job_seconds", "histogram", "Durations.", samples)]) == (
        "# HELP job_seconds Durations.\n"
        "# TYPE job_seconds histogram\n"
        'job_seconds_bucket{kind="generate",le="1"} 1\n'
        'job_seconds_bucket{kind="generate",le="10"} 3\n'
        'job_seconds_bucket{kind="generate",le="0.5"} 3\n'
        'job_seconds_bucket{kind="generate",le="+Inf"} 4\n'
        'job_seconds_sum{kind="generate"} 1234.5\n'
        'job_seconds_count{kind="generate"} 4\n'
    )


def test_a_family_without_samples_still_declares_itself_and_nothing_renders_empty() -> None:
    assert render([MetricFamily("queue_depth", "gauge", "Waiting.")]) == (
        "# HELP queue_depth Waiting.\n# TYPE queue_depth gauge\n"
    )
    assert render([]) == ""


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "0"),
        (3.0, "3"),
        (-7, "-7"),
        (0.25, "0.25"),
        (1712345678.123456, "1712345678.123456"),
        (2.0**60, "1.152921504606847e+18"),
        (math.inf, "+Inf"),
        (-math.inf, "-Inf"),
        (math.nan, "NaN"),
    ],
)
def test_values_are_written_as_prometheus_reads_them(value: float, text: str) -> None:
    assert format_value(value) == text


@pytest.mark.parametrize(
    ("family", "message"),
    [
        (MetricFamily("bad-name", "gauge", "x"), "not a valid Prometheus metric name: 'bad-name'"),
        (MetricFamily("ok", "gauge", "x", [Sample({"1st": "v"}, 1)]), "label name: '1st'"),
        (MetricFamily("ok", "gauge", "x", [Sample({"__name": "v"}, 1)]), "label name: '__name'"),
        (
            MetricFamily("ok", "gauge", "x", [Sample({}, 1, "_bucket")]),
            "a gauge has no sample suffix '_bucket'",
        ),
    ],
)
def test_names_and_suffixes_that_prometheus_would_reject_are_refused(
    family: MetricFamily, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        render([family])


def test_a_histogram_needs_one_count_per_bound() -> None:
    with pytest.raises(ValueError, match="one cumulative count per bucket bound"):
        histogram_samples(labels={}, bounds=[1, 2], cumulative_counts=[1], count=1, total=0.5)
