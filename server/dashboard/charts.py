"""Server-drawn SVG charts of the dashboard's insight sections: the lineage graph of versions, rater
quality with intervals, and the reward models' reliability diagrams.

Drawn here, not in the browser, for the same reasons as the evaluation report's plots
(``server.evaluations.reports``, whose frame and helpers they share): no script is needed to read
them, they scale with the page, and every piece of text in them (version labels, rater names)
goes through ``escape``, so a template may embed the returned SVG as it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

from evaluation.proportions import wilson_interval
from server.evaluations.reports import PlotFrame, colour, is_finite_number, number_text, svg_document

# Status colours of raters, as the dashboard's badges: active blue, paused red, finished grey.
STATUS_COLOURS = {"active": "#0072B2", "paused": "#cf222e", "finished": "#57606a"}


def _clip(text: str, limit: int) -> str:
    """Keep the start and the end of a long label (where generator and version label are)."""
    if len(text) <= limit:
        return text
    head = (limit - 1) * 2 // 5
    return f"{text[:head]}…{text[len(text) - (limit - 1 - head) :]}"


# --- Lineage ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LineageNode:
    id: int
    label: str
    kind: str
    parent_id: int | None
    enrolled: bool
    rating: float | None = None
    lower: float | None = None
    upper: float | None = None
    rank: int | None = None
    edge_label: str = ""  # how it was made from its parent: "dpo · snapshot #3"
    battles: int | None = None  # on the latest leaderboard; 0: rated by the prior alone


NODE_WIDTH, NODE_HEIGHT, COLUMN_GAP, ROW_GAP = 240, 50, 130, 16


def lineage_layout(nodes: Sequence[LineageNode]) -> dict[int, tuple[int, int]]:
    """(column, row) of each node: column = generations from its root, rows in depth-first order
    so that a child sits on or below its parent's row and siblings stay together."""
    by_id = {node.id: node for node in nodes}
    children: dict[int | None, list[LineageNode]] = {}
    for node in nodes:
        parent = node.parent_id if node.parent_id in by_id else None
        children.setdefault(parent, []).append(node)
    places: dict[int, tuple[int, int]] = {}
    row = 0

    def place(node: LineageNode, depth: int) -> None:
        nonlocal row
        places[node.id] = (depth, row)
        kids = sorted(children.get(node.id, []), key=lambda kid: kid.id)
        if not kids:
            row += 1
        for kid in kids:
            place(kid, depth + 1)

    for root in sorted(children.get(None, []), key=lambda node: node.id):
        place(root, 0)
    return places


def svg_lineage(nodes: Sequence[LineageNode], *, leaderboard: bool = True) -> str:
    """Versions as boxes (label, kind, latest rating with its interval and rank), trained ones
    joined to their parent by an arrow labelled with the method and what it trained on.
    ``leaderboard`` False: there is no leaderboard (of the question shown) yet, and the enrolled
    boxes say so."""
    if not nodes:
        return ""
    places = lineage_layout(nodes)
    columns = max(column for column, _ in places.values()) + 1
    rows = max(row for _, row in places.values()) + 1
    width = 16 + columns * (NODE_WIDTH + COLUMN_GAP) - COLUMN_GAP + 16
    height = 16 + rows * (NODE_HEIGHT + ROW_GAP) - ROW_GAP + 16

    def corner(node_id: int) -> tuple[float, float]:
        column, row = places[node_id]
        return 16 + column * (NODE_WIDTH + COLUMN_GAP), 16 + row * (NODE_HEIGHT + ROW_GAP)

    parts = [
        '<defs><marker id="lineage-arrow" viewBox="0 0 8 8" refX="8" refY="4" markerWidth="7" '
        'markerHeight="7" orient="auto"><path d="M0,0 L8,4 L0,8 z" fill="#8c959f"/></marker></defs>'
    ]
    for node in nodes:
        if node.parent_id not in places:
            continue
        parent_x, parent_y = corner(node.parent_id)  # type: ignore[arg-type]
        x, y = corner(node.id)
        start = (parent_x + NODE_WIDTH, parent_y + NODE_HEIGHT / 2)
        end = (x, y + NODE_HEIGHT / 2)
        middle = (start[0] + end[0]) / 2
        parts.append(
            f'<path d="M{start[0]:.1f},{start[1]:.1f} C{middle:.1f},{start[1]:.1f} {middle:.1f},{end[1]:.1f} '
            f'{end[0]:.1f},{end[1]:.1f}" fill="none" stroke="#8c959f" stroke-width="1.5" '
            f'marker-end="url(#lineage-arrow)"/>'
        )
        if node.edge_label:
            # The method above the arrow, what it trained on below it.
            method, _, source = node.edge_label.partition(" · ")
            parts.append(
                f'<text x="{middle:.1f}" y="{end[1] - 7:.1f}" text-anchor="middle" class="lineage-edge">'
                f"{escape(_clip(method, 20))}<title>{escape(node.edge_label)}</title></text>"
            )
            if source:
                parts.append(
                    f'<text x="{middle:.1f}" y="{end[1] + 15:.1f}" text-anchor="middle" class="lineage-edge">'
                    f"{escape(_clip(source, 20))}</text>"
                )
    for index, node in enumerate(nodes):
        x, y = corner(node.id)
        stroke = colour(index) if node.enrolled else "#8c959f"
        dash = "" if node.enrolled else ' stroke-dasharray="4 3"'
        if is_finite_number(node.rating) and node.battles != 0:
            interval = (
                f" [{number_text(node.lower, 0)}–{number_text(node.upper, 0)}]"
                if is_finite_number(node.lower) and is_finite_number(node.upper)
                else ""
            )
            rank = f" · rank {node.rank}" if node.rank else ""
            detail = f"{number_text(node.rating, 0)}{interval}{rank}"
        else:
            detail = (
                "no judgments yet"
                if node.battles == 0
                else ("not on the leaderboard" if leaderboard else "no leaderboard yet")
                if node.enrolled
                else "not enrolled in this study"
            )
        parts.append(
            f'<g class="lineage-node" data-version-id="{node.id}"><rect x="{x:.1f}" y="{y:.1f}" '
            f'width="{NODE_WIDTH}" height="{NODE_HEIGHT}" rx="6" fill="#fff" stroke="{stroke}" '
            f'stroke-width="2"{dash}/><title>{escape(node.label)} ({escape(node.kind)})</title>'
            f'<text x="{x + 10:.1f}" y="{y + 20:.1f}" class="lineage-label">'
            f"{escape(_clip(node.label, 26))}</text>"
            f'<text x="{x + 10:.1f}" y="{y + 38:.1f}" class="lineage-detail">{escape(node.kind)} · '
            f"{escape(detail)}</text></g>"
        )
    return svg_document(width, height, "Lineage of versions", parts)


# --- Rater quality ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class QualityMeasure:
    key: str  # the share's key in ``Rater.quality``
    count_key: str  # the number of checks it rests on
    title: str
    threshold: float | None  # the study's acceptable level (a line), if it has one
    higher_is_better: bool = True


def svg_rater_quality(raters: Sequence[Any], measures: Sequence[QualityMeasure]) -> str:
    """One row per rater, one panel per measure: the share as a dot with its 95 % Wilson interval
    (from its number of checks), coloured by status, the study's threshold as a dashed line.
    ``raters`` have ``name``, ``status`` and ``quality`` (``RaterRow``)."""
    if not raters:
        return ""
    label_width, panel_width, gap, row_height = 150, 190, 18, 22
    top, bottom = 34, 34
    width = label_width + len(measures) * (panel_width + gap)
    height = top + row_height * len(raters) + bottom
    parts: list[str] = []
    for column, measure in enumerate(measures):
        left = label_width + column * (panel_width + gap)
        frame = PlotFrame(
            width=left + panel_width,
            height=height,
            x_range=(0.0, 1.0),
            y_range=(0.0, 1.0),
            left=left,
            right=0,
            top=top,
            bottom=bottom,
        )
        parts.append(
            f'<rect x="{left}" y="{top}" width="{panel_width}" height="{height - top - bottom}" '
            f'fill="#fff" stroke="#d0d7de"/>'
            f'<text x="{left + panel_width / 2:.1f}" y="{top - 12}" text-anchor="middle" class="axis">'
            f"{escape(measure.title)}</text>"
        )
        for tick in (0.0, 0.5, 1.0):
            x = frame.x(tick)
            parts.append(
                f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{height - bottom}" stroke="#eef1f4"/>'
                f'<text x="{x:.1f}" y="{height - bottom + 16}" text-anchor="middle">{tick:.0%}</text>'
            )
        if measure.threshold is not None:
            x = frame.x(measure.threshold)
            parts.append(
                f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{height - bottom}" stroke="#9a6700" '
                f'stroke-dasharray="4 3"><title>{"at least" if measure.higher_is_better else "at most"} '
                f"{measure.threshold:.0%}</title></line>"
            )
        for row, rater in enumerate(raters):
            y = top + row_height * (row + 0.5)
            share = rater.quality.get(measure.key)
            count = rater.quality.get(measure.count_key)
            if not is_finite_number(share) or not isinstance(count, int) or count <= 0:
                parts.append(
                    f'<text x="{left + panel_width / 2:.1f}" y="{y + 4:.1f}" text-anchor="middle" '
                    f'class="quality-none">–</text>'
                )
                continue
            low, high = wilson_interval(min(count, max(0, round(share * count))), count) or (share, share)
            fill = STATUS_COLOURS.get(rater.status, "#57606a")
            parts.append(
                f'<line x1="{frame.x(low):.1f}" y1="{y:.1f}" x2="{frame.x(high):.1f}" y2="{y:.1f}" '
                f'stroke="{fill}" stroke-width="2.5" stroke-opacity="0.55"/>'
                f'<circle cx="{frame.x(share):.1f}" cy="{y:.1f}" r="4.5" fill="{fill}">'
                f"<title>{escape(rater.name)}: {escape(measure.title)} {share:.0%} "
                f"[{low:.0%}–{high:.0%}] of {count}</title></circle>"
            )
    for row, rater in enumerate(raters):
        y = top + row_height * (row + 0.5)
        fill = STATUS_COLOURS.get(rater.status, "#57606a")
        parts.append(
            f'<text x="{label_width - 10}" y="{y + 4:.1f}" text-anchor="end" fill="{fill}">'
            f"{escape(_clip(rater.name, 20))}<title>{escape(rater.name)} ({escape(rater.status)})</title>"
            "</text>"
        )
    return svg_document(width, height, "Rater quality with 95% intervals", parts)


# --- Reliability diagram -------------------------------------------------------------------------------


def svg_reliability(bins: Sequence[dict[str, Any]], *, title: str) -> str:
    """Accuracy against mean confidence per bin, the diagonal of perfect calibration, each bin's
    95 % Wilson interval and its number of pairs written beside it."""
    shown = [
        item
        for item in bins
        if isinstance(item, dict)
        and isinstance(item.get("count"), int)
        and item["count"] > 0
        and is_finite_number(item.get("mean_confidence"))
        and is_finite_number(item.get("accuracy"))
    ]
    if not shown:
        return ""
    width, height = 420, 320
    frame = PlotFrame(width=width, height=height, x_range=(0.5, 1.0), y_range=(0.0, 1.0), left=56, bottom=44)
    parts = frame.axes(
        x_label="confidence (mean per bin)", y_label="share right", x_ticks=[0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    )
    parts.append(
        f'<line x1="{frame.x(0.5):.1f}" y1="{frame.y(0.5):.1f}" '
        f'x2="{frame.x(1.0):.1f}" y2="{frame.y(1.0):.1f}" '
        f'stroke="#8c959f" stroke-dasharray="5 4"><title>perfect calibration</title></line>'
    )
    largest = max(item["count"] for item in shown)
    for item in shown:
        count = item["count"]
        low, high = wilson_interval(min(count, max(0, round(item["accuracy"] * count))), count) or (0.0, 1.0)
        x, y = frame.x(item["mean_confidence"]), frame.y(item["accuracy"])
        radius = 3.5 + 5.5 * (count / largest) ** 0.5
        parts.append(
            f'<line x1="{x:.1f}" y1="{frame.y(low):.1f}" x2="{x:.1f}" y2="{frame.y(high):.1f}" '
            'stroke="#0072B2" '
            f'stroke-width="2" stroke-opacity="0.5"/>'
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{radius:.1f}" fill="#0072B2" class="reliability-bin">'
            f"<title>confidence {item['mean_confidence']:.2f}: right {item['accuracy']:.0%} "
            f"[{low:.0%}–{high:.0%}] of {count} pairs</title></circle>"
            f'<text x="{x + radius + 3:.1f}" y="{y + 4:.1f}" class="reliability-count">{count}</text>'
        )
    return svg_document(width, height, title, parts)
