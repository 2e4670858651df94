"""The evaluation report: one self-contained HTML page, its plots drawn here as inline SVG.

The page needs nothing else (no script, no stylesheet, no font, no image file), so it can be
mailed, archived or opened offline. Every piece of generated or user-supplied text (sample texts,
prompts, version labels, metric names, protocol values) goes through ``escape`` before it reaches
the page. The families of metrics are shown side by side with their intervals and never folded
into one "creativity score": automatic metrics correlate only weakly with human judgments.
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

from django.utils import timezone

from evaluation.rank_correlation import RankCorrelation, bootstrap_spearman
from server.evaluations.models import Evaluation
from server.evaluations.selectors import leaderboard_latest
from server.generators.images import image_asset_read
from server.generators.models import Sample
from server.studies.models import Study
from server.studies.selectors import study_criteria
from server.studies.services import ORIGINALITY_KEY, VALUE_KEY

# Okabe–Ito: distinguishable with the common colour-vision deficiencies.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
STRUCTURED_METRICS = {"novelty_curve", "points", "pareto_sample_ids", "memorisation_grid"}
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")
# The computed metrics validated against people, with the sign agreement should have: novelty
# against "Which is more original?", value against "Which is better?". A long span copied from the
# corpus is the opposite of novel, so it should correlate negatively.
NOVELTY_METRICS = (
    ("novelty_4gram", 1),
    ("embedding_novelty", 1),
    ("longest_copied_span", -1),
    ("surprisal_minus_baseline", 1),
)
VALUE_METRICS = (("reward_model_score", 1), ("win_rate_vs_parent", 1))
CORRELATION_ROUNDS = 2000
PARETO_SAMPLES_SHOWN = 5  # per version


def colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def is_finite_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def number_text(value: Any, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if is_finite_number(value) else "–"


@dataclass(frozen=True)
class Interval:
    label: str
    mean: float | None
    lower: float | None
    upper: float | None


@dataclass(frozen=True)
class Series:
    label: str
    points: list[tuple[float, float]]
    band: list[tuple[float, float, float]] | None = None  # (x, lower, upper)


class PlotFrame:
    """Maps data coordinates into an SVG plot area with margins for the axes."""

    def __init__(
        self,
        *,
        width: int,
        height: int,
        x_range: tuple[float, float],
        y_range: tuple[float, float],
        left: int = 64,
        right: int = 16,
        top: int = 16,
        bottom: int = 44,
    ) -> None:
        self.width, self.height = width, height
        self.left, self.right, self.top, self.bottom = left, right, top, bottom
        self.x0, self.x1 = _padded(*x_range)
        self.y0, self.y1 = _padded(*y_range)

    def x(self, value: float) -> float:
        span = self.width - self.left - self.right
        return self.left + (value - self.x0) / (self.x1 - self.x0) * span

    def y(self, value: float) -> float:
        span = self.height - self.top - self.bottom
        return self.height - self.bottom - (value - self.y0) / (self.y1 - self.y0) * span

    def axes(self, *, x_label: str, y_label: str, x_ticks: Sequence[float] | None = None) -> list[str]:
        parts = [
            f'<rect x="{self.left}" y="{self.top}" width="{self.width - self.left - self.right}" '
            f'height="{self.height - self.top - self.bottom}" fill="#fff" stroke="#d0d7de"/>'
        ]
        for tick in x_ticks if x_ticks is not None else axis_ticks(self.x0, self.x1):
            x = self.x(tick)
            parts.append(
                f'<line x1="{x:.1f}" y1="{self.top}" x2="{x:.1f}" y2="{self.height - self.bottom}" '
                f'stroke="#eef1f4"/><text x="{x:.1f}" y="{self.height - self.bottom + 16}" '
                f'text-anchor="middle">{escape(tick_text(tick))}</text>'
            )
        for tick in axis_ticks(self.y0, self.y1):
            y = self.y(tick)
            parts.append(
                f'<line x1="{self.left}" y1="{y:.1f}" x2="{self.width - self.right}" y2="{y:.1f}" '
                f'stroke="#eef1f4"/><text x="{self.left - 6}" y="{y + 4:.1f}" '
                f'text-anchor="end">{escape(tick_text(tick))}</text>'
            )
        parts.append(
            f'<text x="{(self.left + self.width - self.right) / 2:.1f}" y="{self.height - 6}" '
            f'text-anchor="middle" class="axis">{escape(x_label)}</text>'
            f'<text transform="translate(14 {(self.top + self.height - self.bottom) / 2:.1f}) rotate(-90)" '
            f'text-anchor="middle" class="axis">{escape(y_label)}</text>'
        )
        return parts


def _padded(low: float, high: float) -> tuple[float, float]:
    if not (is_finite_number(low) and is_finite_number(high)):
        return 0.0, 1.0
    if high - low < 1e-12:
        return low - 0.5, high + 0.5
    pad = (high - low) * 0.06
    return low - pad, high + pad


def axis_ticks(low: float, high: float, count: int = 5) -> list[float]:
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = min((m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw), default=raw)
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step) + 1)]


def tick_text(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


def svg_document(width: int, height: int, title: str, parts: list[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" aria-label="{escape(title)}"><title>{escape(title)}</title>'
        + "".join(parts)
        + "</svg>"
    )


def svg_interval_plot(intervals: list[Interval], *, title: str, x_label: str) -> str:
    """Dot-and-whisker plot: one row per label, the mean as a dot and the interval as a bar."""
    shown = [item for item in intervals if is_finite_number(item.mean)]
    if not shown:
        return ""
    values = [v for item in shown for v in (item.mean, item.lower, item.upper) if is_finite_number(v)]
    row_height, width = 26, 640
    label_width = min(260, 12 + 7 * max(len(item.label) for item in shown))
    height = 16 + 44 + row_height * len(shown)
    frame = PlotFrame(
        width=width,
        height=height,
        x_range=(min(values), max(values)),
        y_range=(0, len(shown)),
        left=label_width,
    )
    parts = frame.axes(x_label=x_label, y_label="")[:1]  # the box only; rows are labelled below
    for tick in axis_ticks(frame.x0, frame.x1):
        x = frame.x(tick)
        parts.append(
            f'<line x1="{x:.1f}" y1="{frame.top}" x2="{x:.1f}" y2="{height - frame.bottom}" '
            f'stroke="#eef1f4"/>'
            f'<text x="{x:.1f}" y="{height - frame.bottom + 16}" text-anchor="middle">'
            f"{escape(tick_text(tick))}</text>"
        )
    parts.append(
        f'<text x="{(label_width + width - frame.right) / 2:.1f}" y="{height - 6}" text-anchor="middle" '
        f'class="axis">{escape(x_label)}</text>'
    )
    for index, item in enumerate(shown):
        y = frame.top + row_height * (index + 0.5)
        parts.append(
            f'<text x="{label_width - 8}" y="{y + 4:.1f}" text-anchor="end">{escape(item.label)}</text>'
        )
        if is_finite_number(item.lower) and is_finite_number(item.upper):
            parts.append(
                f'<line x1="{frame.x(item.lower):.1f}" y1="{y:.1f}" x2="{frame.x(item.upper):.1f}" '
                f'y2="{y:.1f}" stroke="{colour(index)}" stroke-width="3" stroke-linecap="round"/>'
            )
        parts.append(
            f'<circle cx="{frame.x(item.mean):.1f}" cy="{y:.1f}" r="5" fill="{colour(index)}">'
            f"<title>{escape(item.label)}: {number_text(item.mean)} [{number_text(item.lower)}, "
            f"{number_text(item.upper)}]</title></circle>"
        )
    return svg_document(width, height, title, parts)


def svg_line_plot(series: list[Series], *, title: str, x_label: str, y_label: str) -> str:
    """Lines with optional shaded interval bands (e.g. the novelty curve over n)."""
    xs = [x for s in series for x, _ in s.points]
    ys = [y for s in series for _, y in s.points] + [
        v for s in series for _, lo, hi in (s.band or []) for v in (lo, hi)
    ]
    if not xs:
        return ""
    width, height = 640, 300
    frame = PlotFrame(width=width, height=height, x_range=(min(xs), max(xs)), y_range=(min(ys), max(ys)))
    integer_ticks = sorted({x for x in xs if float(x).is_integer()})
    # One tick per integer x (n = 1..8) while they fit; beyond a dozen, the default spacing.
    shown_ticks = integer_ticks if 0 < len(integer_ticks) <= 12 else None
    parts = frame.axes(x_label=x_label, y_label=y_label, x_ticks=shown_ticks)
    for index, item in enumerate(series):
        if item.band:
            upper = " ".join(f"{frame.x(x):.1f},{frame.y(hi):.1f}" for x, _, hi in item.band)
            lower = " ".join(f"{frame.x(x):.1f},{frame.y(lo):.1f}" for x, lo, _ in reversed(item.band))
            parts.append(f'<polygon points="{upper} {lower}" fill="{colour(index)}" fill-opacity="0.15"/>')
        line = " ".join(f"{frame.x(x):.1f},{frame.y(y):.1f}" for x, y in item.points)
        parts.append(f'<polyline points="{line}" fill="none" stroke="{colour(index)}" stroke-width="2"/>')
    parts.extend(_legend(series, width=width))
    return svg_document(width, height, title, parts)


def svg_scatter(
    series: list[Series], fronts: list[list[tuple[float, float]]], *, title: str, x_label: str, y_label: str
) -> str:
    """Points per series, and each series' Pareto front as a step line through its front points."""
    xs = [x for s in series for x, _ in s.points]
    ys = [y for s in series for _, y in s.points]
    if not xs:
        return ""
    width, height = 640, 360
    frame = PlotFrame(width=width, height=height, x_range=(min(xs), max(xs)), y_range=(min(ys), max(ys)))
    parts = frame.axes(x_label=x_label, y_label=y_label)
    for index, item in enumerate(series):
        for x, y in item.points:
            parts.append(
                f'<circle cx="{frame.x(x):.1f}" cy="{frame.y(y):.1f}" r="3" fill="{colour(index)}" '
                f'fill-opacity="0.45"/>'
            )
        front = sorted(fronts[index]) if index < len(fronts) else []
        if front:
            # Sorted by novelty, the front's value falls. The boundary of what the front dominates
            # drops from each point to the next one's value, then runs across to it.
            steps = [front[0]]
            for x, y in front[1:]:
                steps += [(steps[-1][0], y), (x, y)]
            line = " ".join(f"{frame.x(x):.1f},{frame.y(y):.1f}" for x, y in steps)
            parts.append(f'<polyline points="{line}" fill="none" stroke="{colour(index)}" stroke-width="2"/>')
            parts.extend(
                f'<circle cx="{frame.x(x):.1f}" cy="{frame.y(y):.1f}" r="4.5" fill="{colour(index)}" '
                f'stroke="#fff"/>'
                for x, y in front
            )
    parts.extend(_legend(series, width=width))
    return svg_document(width, height, title, parts)


def _legend(series: list[Series], *, width: int) -> list[str]:
    parts = []
    for index, item in enumerate(series):
        y = 28 + 16 * index
        parts.append(
            f'<rect x="{width - 190}" y="{y - 9}" width="10" height="10" fill="{colour(index)}"/>'
            f'<text x="{width - 175}" y="{y}">{escape(item.label[:28])}</text>'
        )
    return parts


# --- The report -----------------------------------------------------------------------------------


# The novelty–value plane's horizontal axis: what each modality's evaluation calls novelty.
NOVELTY_AXIS = {
    "text": "novelty (share of novel 4-grams)",
    "image": "novelty (feature distance to the nearest training image)",
}


def novelty_axis_label(study: Study) -> str:
    return NOVELTY_AXIS.get(study.modality, NOVELTY_AXIS["text"])


def latest_evaluations(*, study: Study) -> list[Evaluation]:
    """The newest evaluation of each version of the study, ordered by version id."""
    latest: dict[int, Evaluation] = {}
    for evaluation in (
        Evaluation.objects.filter(study=study)
        .select_related("version__generator")
        .order_by("-created_at", "-id")
    ):
        latest.setdefault(evaluation.version_id, evaluation)
    return [latest[version_id] for version_id in sorted(latest)]


def scalar_metric_names(evaluations: list[Evaluation]) -> list[str]:
    """Names of the metrics with a mean (not the curve or the scatter), alphabetically."""
    return sorted(
        {
            name
            for evaluation in evaluations
            for name, value in evaluation.metrics.items()
            if name not in STRUCTURED_METRICS and isinstance(value, dict)
        }
    )


def novelty_value_series(
    evaluation: Evaluation,
) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """(all points, Pareto-front points) of an evaluation's novelty–value scatter."""
    points = [
        point
        for point in evaluation.metrics.get("points", [])
        if isinstance(point, dict)
        and is_finite_number(point.get("novelty"))
        and is_finite_number(point.get("value"))
    ]
    front_ids = set(evaluation.metrics.get("pareto_sample_ids", []))
    return (
        [(p["novelty"], p["value"]) for p in points],
        [(p["novelty"], p["value"]) for p in points if p.get("sample_id") in front_ids],
    )


def metric_forest_plots(evaluations: list[Evaluation], names: list[str]) -> list[tuple[str, str]]:
    """(metric name, forest plot SVG) for each metric that has an interval for some version: one
    row per version, the mean as a dot and the 95 % interval as a bar. The SVG escapes every label,
    so the dashboard embeds it as it is."""
    labels = [str(evaluation.version) for evaluation in evaluations]
    plots = []
    for name in names:
        intervals = [
            Interval(label, value.get("mean"), value.get("lower"), value.get("upper"))
            for label, evaluation in zip(labels, evaluations, strict=True)
            if isinstance(value := evaluation.metrics.get(name), dict)
        ]
        if any(is_finite_number(item.lower) for item in intervals):
            plots.append((name, svg_interval_plot(intervals, title=name, x_label=name)))
    return plots


def _metrics_table(evaluations: list[Evaluation], names: list[str]) -> str:
    header = "".join(f"<th>{escape(str(e.version))}</th>" for e in evaluations)
    rows = []
    for name in names:
        cells = []
        for evaluation in evaluations:
            value = evaluation.metrics.get(name)
            if not isinstance(value, dict) or not is_finite_number(value.get("mean")):
                cells.append("<td>–</td>")
            elif is_finite_number(value.get("lower")) and is_finite_number(value.get("upper")):
                cells.append(
                    f"<td>{number_text(value['mean'])} <span class=ci>[{number_text(value['lower'])}, "
                    f"{number_text(value['upper'])}]</span></td>"
                )
            else:
                cells.append(f"<td>{number_text(value['mean'])}</td>")
        rows.append(f"<tr><th scope=row>{escape(name)}</th>{''.join(cells)}</tr>")
    return f"<table><thead><tr><th>metric</th>{header}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _leaderboard_section(study: Study) -> str:
    board = leaderboard_latest(study=study)
    if board is None:
        return "<p>No leaderboard has been computed for this study yet.</p>"
    rows = "".join(
        f"<tr><td>{escape(str(row.get('rank', '')))}</td><td>{escape(str(row.get('label', '')))}</td>"
        f"<td>{number_text(row.get('rating'), 1)}</td><td>{number_text(row.get('lower'), 1)} – "
        f"{number_text(row.get('upper'), 1)}</td><td>{escape(str(row.get('battles', '')))}</td>"
        f"<td>{number_text(row.get('win_rate'), 3)}</td></tr>"
        for row in board.rows
    )
    plot = svg_interval_plot(
        [
            Interval(str(row.get("label", "")), row.get("rating"), row.get("lower"), row.get("upper"))
            for row in board.rows
        ],
        title="Bradley–Terry ratings with 95% intervals",
        x_label="rating",
    )
    return (
        f"<p>{board.judgment_count} judgments, computed "
        f"{escape(board.created_at.strftime('%Y-%m-%d %H:%M'))} "
        f"UTC on the {escape(str(board.params.get('split', 'all')))} split.</p>"
        "<table><thead><tr><th>rank</th><th>version</th><th>rating</th><th>95% interval</th>"
        f"<th>battles</th><th>win rate</th></tr></thead><tbody>{rows}</tbody></table>{plot}"
    )


@dataclass(frozen=True)
class HumanRating:
    version_id: int
    label: str
    rating: float
    lower: float | None
    upper: float | None


@dataclass(frozen=True)
class MetricAgreement:
    """How well a computed metric orders versions as people's answers to a criterion do."""

    metric: str
    criterion: str  # the criterion's key
    expected_sign: int
    correlation: RankCorrelation


def human_ratings(*, study: Study) -> dict[str, dict[int, HumanRating]] | None:
    """People's Bradley–Terry ratings per version on the creativity criteria, by key
    (``ORIGINALITY_KEY``, ``VALUE_KEY``), from each criterion's latest leaderboard; None when the
    study does not ask both questions."""
    criteria = {criterion.key: criterion for criterion in study_criteria(study=study)}
    if ORIGINALITY_KEY not in criteria or VALUE_KEY not in criteria:
        return None
    ratings: dict[str, dict[int, HumanRating]] = {}
    for key in (ORIGINALITY_KEY, VALUE_KEY):
        board = leaderboard_latest(study=study, criterion_id=criteria[key].id)
        ratings[key] = {
            row["version_id"]: HumanRating(
                row["version_id"],
                str(row.get("label", "")),
                row["rating"],
                row.get("lower"),
                row.get("upper"),
            )
            for row in (board.rows if board else [])
            if is_finite_number(row.get("rating")) and row.get("battles")
        }
    return ratings


def metric_human_agreement(
    evaluations: list[Evaluation], ratings: dict[str, dict[int, HumanRating]], *, seed: int = 0
) -> list[MetricAgreement]:
    """Spearman's rho, over versions, between each novelty metric's mean and people's originality
    rating and between each value metric's mean and people's value rating, with a bootstrap
    interval over versions (``evaluation.rank_correlation`` says why versions). Metrics no
    evaluation has are left out."""
    results = []
    for family, key in ((NOVELTY_METRICS, ORIGINALITY_KEY), (VALUE_METRICS, VALUE_KEY)):
        for metric, sign in family:
            pairs = [
                (value["mean"], ratings[key][evaluation.version_id].rating)
                for evaluation in evaluations
                if isinstance(value := evaluation.metrics.get(metric), dict)
                and is_finite_number(value.get("mean"))
                and evaluation.version_id in ratings[key]
            ]
            if not pairs:
                continue
            correlation = bootstrap_spearman(
                [x for x, _ in pairs], [y for _, y in pairs], rounds=CORRELATION_ROUNDS, seed=seed
            )
            results.append(MetricAgreement(metric, key, sign, correlation))
    return results


def svg_human_plane(points: list[tuple[HumanRating, HumanRating]], *, title: str) -> str:
    """Each version at (originality rating, value rating), with both 95 % intervals as a cross."""
    if not points:
        return ""
    xs = [v for o, _ in points for v in (o.rating, o.lower, o.upper) if is_finite_number(v)]
    ys = [v for _, b in points for v in (b.rating, b.lower, b.upper) if is_finite_number(v)]
    width, height = 640, 420
    frame = PlotFrame(width=width, height=height, x_range=(min(xs), max(xs)), y_range=(min(ys), max(ys)))
    parts = frame.axes(
        x_label="people's originality (rating, “Which is more original?”)",
        y_label="people's value (rating, “Which is better?”)",
    )
    for index, (original, valued) in enumerate(points):
        x, y = frame.x(original.rating), frame.y(valued.rating)
        if is_finite_number(original.lower) and is_finite_number(original.upper):
            parts.append(
                f'<line x1="{frame.x(original.lower):.1f}" y1="{y:.1f}" x2="{frame.x(original.upper):.1f}" '
                f'y2="{y:.1f}" stroke="{colour(index)}" stroke-width="2"/>'
            )
        if is_finite_number(valued.lower) and is_finite_number(valued.upper):
            parts.append(
                f'<line x1="{x:.1f}" y1="{frame.y(valued.lower):.1f}" x2="{x:.1f}" '
                f'y2="{frame.y(valued.upper):.1f}" stroke="{colour(index)}" stroke-width="2"/>'
            )
        parts.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5" fill="{colour(index)}" stroke="#fff">'
            f"<title>{escape(original.label)}: originality {number_text(original.rating, 1)} "
            f"[{number_text(original.lower, 1)}, {number_text(original.upper, 1)}], value "
            f"{number_text(valued.rating, 1)} [{number_text(valued.lower, 1)}, "
            f"{number_text(valued.upper, 1)}]</title></circle>"
            f'<text x="{x + 7:.1f}" y="{y - 7:.1f}">{escape(original.label[:28])}</text>'
        )
    return svg_document(width, height, title, parts)


def _human_creativity_section(study: Study, evaluations: list[Evaluation]) -> str:
    """Boden's novel and valuable as people judge them, and how far each computed metric agrees."""
    ratings = human_ratings(study=study)
    if ratings is None:
        return ""
    original, valued = ratings[ORIGINALITY_KEY], ratings[VALUE_KEY]
    points = [
        (original[version_id], valued[version_id]) for version_id in sorted(set(original) & set(valued))
    ]
    plane = svg_human_plane(points, title="versions on people's originality × value plane")
    agreements = metric_human_agreement(evaluations, ratings)
    rows = "".join(
        f"<tr><th scope=row>{escape(item.metric)}</th><td>{escape(item.criterion)}</td>"
        f"<td>{'+' if item.expected_sign > 0 else '−'}</td>"
        f"<td>{number_text(item.correlation.rho, 2)} <span class=ci>"
        f"[{number_text(item.correlation.lower, 2)}, {number_text(item.correlation.upper, 2)}]</span></td>"
        f"<td>{item.correlation.count}</td></tr>"
        for item in agreements
    )
    table = (
        "<table id=metric-agreement><thead><tr><th>computed metric</th><th>people's criterion</th>"
        "<th>expected sign</th><th>Spearman ρ [95% interval]</th><th>versions</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
        if rows
        else "<p>No evaluated version has a rating on both questions yet.</p>"
    )
    return f"""
<h2>People's originality and value</h2>
<p>Each version's Bradley–Terry rating on “Which is more original?” against its rating on “Which is
better?” (Boden: creative = novel and valuable), both with 95% bootstrap intervals.</p>
{plane or "<p>No version has been rated on both questions yet.</p>"}
<h3>Do the computed metrics agree with people?</h3>
<p class=note>Spearman rank correlation over versions between each computed metric's mean and people's
rating on the matching question: novelty metrics against originality, value metrics against value.
The interval resamples versions ({CORRELATION_ROUNDS} rounds): the metrics and the human ratings exist
per version only, so versions are the unit; it leaves out the noise of the ratings themselves (shown
above) and is wide with few versions.</p>
{table}
"""


def _sample_content(sample: Sample) -> str:
    """A sample as the self-contained report shows it: its text, escaped, or its image inline (the
    stored bytes, re-encoded on import, as a data URI of the stored format's type)."""
    if sample.image is None:
        return f"<blockquote>{escape(sample.text)}</blockquote>"
    data = base64.b64encode(image_asset_read(sample.image)).decode("ascii")
    return (
        f'<p><img class=sample-image src="data:{sample.image.content_type};base64,{data}" '
        f'alt="image sample" width="96" height="96"></p>'
    )


def _pareto_samples(evaluations: list[Evaluation]) -> str:
    wanted = {
        sample_id
        for evaluation in evaluations
        for sample_id in evaluation.metrics.get("pareto_sample_ids", [])[:PARETO_SAMPLES_SHOWN]
    }
    samples = {
        sample.id: sample
        for sample in Sample.objects.filter(id__in=[i for i in wanted if isinstance(i, int)]).select_related(
            "prompt", "image"
        )
    }
    blocks = []
    for evaluation in evaluations:
        points = {p.get("sample_id"): p for p in evaluation.metrics.get("points", []) if isinstance(p, dict)}
        items = []
        for sample_id in evaluation.metrics.get("pareto_sample_ids", [])[:PARETO_SAMPLES_SHOWN]:
            sample = samples.get(sample_id)
            if sample is None:
                continue
            point = points.get(sample_id, {})
            items.append(
                f"<li><p class=meta>novelty {number_text(point.get('novelty'))} · value "
                f"{number_text(point.get('value'))} · prompt: {escape(sample.prompt.text)}</p>"
                f"{_sample_content(sample)}</li>"
            )
        if items:
            blocks.append(
                f"<h3>{escape(str(evaluation.version))}</h3><ul class=samples>{''.join(items)}</ul>"
            )
    return "".join(blocks) or "<p>No Pareto-front samples (no reward model or reference corpus yet).</p>"


def memorisation_grid(evaluation: Evaluation) -> list[dict[str, Any]]:
    """The sample / nearest-training-image pairs of an image evaluation, nearest first, with the
    PNGs as data URIs. Only well-formed base64 passes (the metrics are JSON a worker wrote, but
    nothing from a JSON field reaches HTML unchecked)."""
    cells = []
    for cell in evaluation.metrics.get("memorisation_grid", []):
        if not isinstance(cell, dict):
            continue
        sample, neighbour = cell.get("sample_png"), cell.get("neighbour_png")
        if not all(isinstance(data, str) and _BASE64.fullmatch(data) for data in (sample, neighbour)):
            continue
        cells.append(
            {
                "sample_src": f"data:image/png;base64,{sample}",
                "neighbour_src": f"data:image/png;base64,{neighbour}",
                "pixel_distance": cell.get("pixel_distance"),
                "feature_distance": cell.get("feature_distance"),
                "near": cell.get("near") is True,
            }
        )
    return cells


def _memorisation_grids(evaluations: list[Evaluation]) -> str:
    blocks = []
    for evaluation in evaluations:
        cells = memorisation_grid(evaluation)
        if not cells:
            continue
        items = "".join(
            f'<figure class=pair><img src="{escape(cell["sample_src"])}" alt=sample width=64 height=64>'
            f'<img src="{escape(cell["neighbour_src"])}" alt="nearest training image" width=64 height=64>'
            f"<figcaption>pixels {number_text(cell['pixel_distance'])} · features "
            f"{number_text(cell['feature_distance'])}{' · <b>near</b>' if cell['near'] else ''}"
            "</figcaption></figure>"
            for cell in cells
        )
        blocks.append(f"<h3>{escape(str(evaluation.version))}</h3><div class=grid>{items}</div>")
    if not blocks:
        return ""
    return (
        "<h2>Samples and their nearest training images</h2><p class=note>Each pair: a sample (left) and "
        "the training image nearest to it in pixels (right), nearest first. 'near' marks a distance below "
        "the memorisation threshold (the 5% quantile of training images' distances to each other).</p>"
        + "".join(blocks)
    )


REPORT_STYLE = """
body{font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1f2328;margin:0;
background:#f6f8fa}
main{max-width:980px;margin:0 auto;padding:24px 32px 48px;background:#fff}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:32px 0 8px;border-bottom:1px solid #d0d7de}
h3{font-size:15px;margin:16px 0 4px}
table{border-collapse:collapse;margin:8px 0;font-variant-numeric:tabular-nums}
th,td{border-bottom:1px solid #e6e9ed;padding:4px 10px;text-align:left;vertical-align:top}
thead th{background:#f6f8fa}.ci{color:#656d76;font-size:12px}.meta{color:#656d76;margin:0;font-size:12px}
blockquote{margin:2px 0 10px;padding:6px 10px;border-left:3px solid #d0d7de;white-space:pre-wrap}
svg{display:block;margin:8px 0;max-width:100%;height:auto;font-size:11px;fill:#1f2328}
svg .axis{font-size:12px}
ul.samples{list-style:none;padding:0}pre{background:#f6f8fa;padding:8px;overflow:auto;font-size:12px}
.note{color:#656d76}
.grid{display:flex;flex-wrap:wrap;gap:12px}.pair{margin:0;font-size:11px;color:#656d76}
.pair img{image-rendering:pixelated;border:1px solid #d0d7de;margin-right:2px}
.sample-image{image-rendering:pixelated;object-fit:contain;border:1px solid #d0d7de}
"""


def evaluation_report_html(*, study: Study) -> str:
    """The whole report page for a study's latest evaluation of each version."""
    evaluations = latest_evaluations(study=study)
    names = scalar_metric_names(evaluations)
    labels = [str(evaluation.version) for evaluation in evaluations]

    metric_plots = [f"<h3>{escape(name)}</h3>" + svg for name, svg in metric_forest_plots(evaluations, names)]

    curves = []
    for label, evaluation in zip(labels, evaluations, strict=True):
        curve = evaluation.metrics.get("novelty_curve") or {}
        ns, means = curve.get("n", []), curve.get("mean", [])
        lowers, uppers = curve.get("lower", []), curve.get("upper", [])
        points = [
            (n, m) for n, m in zip(ns, means, strict=False) if is_finite_number(n) and is_finite_number(m)
        ]
        band = [
            (n, lo, hi)
            for n, lo, hi in zip(ns, lowers, uppers, strict=False)
            if is_finite_number(n) and is_finite_number(lo) and is_finite_number(hi)
        ]
        if points:
            curves.append(Series(label, points, band))
    novelty_plot = svg_line_plot(
        curves, title="n-gram novelty curve", x_label="n (n-gram order)", y_label="share of novel n-grams"
    )

    scatter_series, fronts = [], []
    for label, evaluation in zip(labels, evaluations, strict=True):
        points, front = novelty_value_series(evaluation)
        if points:
            scatter_series.append(Series(label, points))
            fronts.append(front)
    scatter = svg_scatter(
        scatter_series,
        fronts,
        title="novelty–value scatter with each version's Pareto front",
        x_label=novelty_axis_label(study),
        y_label="value (reward-model score)",
    )

    protocols = "".join(
        f"<h3>{escape(label)} (evaluation {evaluation.id}, "
        f"{escape(evaluation.created_at.strftime('%Y-%m-%d %H:%M'))} UTC)</h3>"
        f"<pre>{escape(json.dumps(evaluation.protocol, indent=2, sort_keys=True, default=str))}</pre>"
        for label, evaluation in zip(labels, evaluations, strict=True)
    )
    body = f"""
<h1>Evaluation report: {escape(study.name)}</h1>
<p class=meta>{escape(study.question)}</p>
<p class=meta>Generated {escape(timezone.now().strftime("%Y-%m-%d %H:%M"))} UTC ·
{len(evaluations)} versions ·
intervals are 95% bootstrap intervals over prompts.</p>
<p class=note>Novelty, diversity, surprise and value are reported side by side, each with its uncertainty;
they are not combined into one score, because automatic metrics agree only weakly with human judgments.</p>
<h2>Leaderboard (human judgments)</h2>
{_leaderboard_section(study)}
{_human_creativity_section(study, evaluations)}
<h2>Metrics</h2>
{_metrics_table(evaluations, names) if evaluations else "<p>No evaluations yet.</p>"}
<h2>Novelty curve</h2>
{novelty_plot or "<p>No novelty curve (no reference corpus).</p>"}
<h2>Novelty and value</h2>
{scatter or "<p>No per-sample values yet (a reward model is needed).</p>"}
<h3>Pareto-front samples</h3>
{_pareto_samples(evaluations)}
{_memorisation_grids(evaluations)}
<h2>Each metric across versions</h2>
{"".join(metric_plots) or "<p>No metric has an interval yet.</p>"}
<h2>Protocol</h2>
{protocols}
"""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Evaluation report: {escape(study.name)}</title><style>{REPORT_STYLE}</style></head>"
        f"<body><main>{body}</main></body></html>"
    )
