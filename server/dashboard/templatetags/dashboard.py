"""Formatting for the dashboard's numbers: missing values show as an en dash, never as "None"."""

from __future__ import annotations

import math
from typing import Any

from django import template
from django.utils.html import format_html

from evaluation.proportions import wilson_interval

register = template.Library()

DASH = "–"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


@register.filter
def percent(value: Any, digits: int = 0) -> str:
    number = _number(value)
    return DASH if number is None else f"{number * 100:.{int(digits)}f}%"


@register.filter
def number(value: Any, digits: int = 2) -> str:
    number = _number(value)
    return DASH if number is None else f"{number:,.{int(digits)}f}"


@register.filter
def hours(value: Any) -> str:
    """A duration in hours, in the largest unit that reads well."""
    number = _number(value)
    if number is None:
        return DASH
    if number < 1 / 60:
        return "under a minute"
    if number < 1:
        return f"{number * 60:.0f} min"
    if number < 48:
        return f"{number:.1f} h"
    if number < 24 * 60:
        return f"{number / 24:.1f} days"
    return f"{number / (24 * 7):.0f} weeks"


@register.filter
def get(mapping: Any, key: Any) -> Any:
    return mapping.get(key) if isinstance(mapping, dict) else None


@register.simple_tag
def share(value: Any, n: Any, unit: str = "", min_n: int = 1, low: Any = None, high: Any = None) -> str:
    """A share estimated from ``n`` trials, with its 95 % interval and its n:
    "62% [47–76%] of 40 pairs". The interval is ``low``–``high`` when given (one computed with
    more care, e.g. clustered by comparison), else Wilson's over ``n``. Below ``min_n`` trials the
    share is not shown at all ("too few pairs to judge (n = 1)"): a "100 %" from one pair reads
    as a result. No trials or no value: an en dash. Returns escaped HTML (the interval and n set
    in a muted small font)."""
    number = _number(value)
    count = n if isinstance(n, int) and not isinstance(n, bool) else None
    unit_text = f" {unit}" if unit else ""
    if number is None or not count:
        return DASH
    if count < min_n:
        return format_html(
            '<span class="dash-muted dash-too-few">too few{} to judge (n = {})</span>', unit_text, count
        )
    if _number(low) is None or _number(high) is None:
        successes = min(count, max(0, round(number * count)))
        low, high = wilson_interval(successes, count) or (math.nan, math.nan)
    return format_html(
        '{} <span class="dash-muted dash-small dash-interval">[{}–{}] of {}{}</span>',
        f"{number * 100:.0f}%",
        f"{low * 100:.0f}",
        f"{high * 100:.0f}%",
        count,
        unit_text,
    )
