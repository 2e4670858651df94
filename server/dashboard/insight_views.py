"""Dashboard pages of the insight sections (the study page's sections are rendered by
``views._render_study`` from ``insights.study_insights``)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from server.dashboard import selectors
from server.dashboard.insights import RationaleFilters, rationale_page
from server.dashboard.views import staff_required

KINDS = {"all": "rationales and skip reasons", "rationales": "rationales", "skips": "skip reasons"}


def _id(value: str | None) -> int | None:
    """A filter's id from the query string; anything but a positive whole number means no filter."""
    return int(value) if value and value.isdigit() and 0 < int(value) < 2**63 else None


@require_GET
@staff_required
def rationales(request: HttpRequest, slug: str) -> HttpResponse:
    """Rationales and skip reasons of a study, newest first, filtered by version, by pair of
    versions or by comparison, a page at a time, each with the pair's prompt and texts."""
    study = selectors.study_get(slug=slug)
    kind = request.GET.get("kind", "all")
    filters = RationaleFilters(
        version_id=_id(request.GET.get("version")),
        versus_id=_id(request.GET.get("versus")),
        comparison_id=_id(request.GET.get("comparison")),
        kind=kind if kind in KINDS else "all",
    )
    page = rationale_page(study=study, filters=filters, page=request.GET.get("page", 1))
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        "study": study,
        "page": page,
        "filters": filters,
        "kinds": KINDS,
        "versions": list(study.versions.select_related("generator").order_by("id")),
        "query": query.urlencode(),
    }
    return render(request, "dashboard/rationales.html", context)
