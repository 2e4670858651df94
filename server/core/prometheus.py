"""The Prometheus text exposition format, version 0.0.4: metric families in, text out.

Pure: no Django, no I/O. Written here instead of depending on ``prometheus_client`` because the
web process keeps no counters of its own (gunicorn runs several processes): every value is read
from the database and the broker at scrape time, so only the format is needed, and it is small.
Reference: https://prometheus.io/docs/instrumenting/exposition_formats/#text-based-format
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

MetricType = Literal["counter", "gauge", "histogram"]

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


@dataclass(frozen=True)
class Sample:
    """One line: the family's name plus ``suffix`` (``_bucket``, ``_sum``, ``_count`` of a
    histogram; empty otherwise), labels in the order given, and the value."""

    labels: Mapping[str, str]
    value: float
    suffix: str = ""


@dataclass(frozen=True)
class MetricFamily:
    name: str  # a counter's name ends in _total, as its samples' names do
    type: MetricType
    help: str
    samples: Sequence[Sample] = field(default_factory=list)


def histogram_samples(
    *,
    labels: Mapping[str, str],
    bounds: Sequence[float],
    cumulative_counts: Sequence[int],
    count: int,
    total: float,
) -> list[Sample]:
    """The samples of one histogram series: a ``_bucket`` per upper bound (``cumulative_counts[i]``
    observations at most ``bounds[i]``), the ``+Inf`` bucket (= ``count``), ``_sum`` and ``_count``."""
    if len(bounds) != len(cumulative_counts):
        raise ValueError("a histogram needs one cumulative count per bucket bound")
    buckets = [
        Sample({**labels, "le": format_value(bound)}, observed, "_bucket")
        for bound, observed in zip(bounds, cumulative_counts, strict=True)
    ]
    return [
        *buckets,
        Sample({**labels, "le": "+Inf"}, count, "_bucket"),
        Sample(labels, total, "_sum"),
        Sample(labels, count, "_count"),
    ]


def render(families: Sequence[MetricFamily]) -> str:
    """The exposition text of ``families``, in the order given; ends with a newline."""
    lines: list[str] = []
    for family in families:
        _check_name(family.name, _METRIC_NAME, "metric")
        lines.append(f"# HELP {family.name} {_escape_help(family.help)}")
        lines.append(f"# TYPE {family.name} {family.type}")
        allowed_suffixes = _HISTOGRAM_SUFFIXES if family.type == "histogram" else ("",)
        for sample in family.samples:
            if sample.suffix not in allowed_suffixes:
                raise ValueError(f"a {family.type} has no sample suffix {sample.suffix!r} ({family.name})")
            lines.append(f"{family.name}{sample.suffix}{_labels(sample.labels)} {format_value(sample.value)}")
    return "\n".join(lines) + "\n" if lines else ""


def format_value(value: float) -> str:
    """A number as Prometheus reads it: integers without a decimal point, ``+Inf``, ``-Inf``, ``NaN``."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 2**53:  # exact as an integer
        return str(int(value))
    return repr(float(value))


def escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    for name in labels:
        _check_name(name, _LABEL_NAME, "label")
    return (
        "{" + ",".join(f'{name}="{escape_label_value(str(value))}"' for name, value in labels.items()) + "}"
    )


def _check_name(name: str, pattern: re.Pattern[str], what: str) -> None:
    # Names come from our code, never from data: a bad one is a programming error.
    # Label names starting with "__" are reserved for Prometheus itself.
    if not pattern.fullmatch(name) or (what == "label" and name.startswith("__")):
        raise ValueError(f"not a valid Prometheus {what} name: {name!r}")
