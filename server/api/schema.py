"""OpenAPI generation: every operation documents the error responses the exception handler sends,
so a client (and schemathesis) knows each status code it may meet and the body that comes with it."""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema

ERROR_STATUSES = {
    "400": "The request is not valid (the body names the field or line).",
    "401": "No credentials, or invalid ones.",
    "403": "Authenticated, but not allowed to do this.",
    "404": "No such object, or not one this user may see.",
    "409": "Refused in the object's current state.",
    "429": "Too many requests: see Retry-After.",
}


class AutoSchema(SpectacularAutoSchema):
    def get_tags(self) -> list[str]:
        """A view's ``schema_tag`` groups the docs by what a client does, not by URL prefix."""
        tag = getattr(self.view, "schema_tag", None)
        return [tag] if tag else super().get_tags()

    def _get_response_bodies(self, direction: str = "response") -> dict[str, Any]:  # type: ignore[override]
        responses = super()._get_response_bodies(direction)
        from server.api.serializers import ErrorSerializer

        statuses = dict(ERROR_STATUSES)
        if self.method in ("POST", "PUT", "PATCH"):
            statuses["415"] = "The body's content type is not one this operation reads."
        for status, description in statuses.items():
            if status not in responses:
                response = self._get_response_for_code(ErrorSerializer, status, direction=direction)
                response["description"] = description
                responses[status] = response
        return responses


# Choice sets that share a field name with another set get their own component names in
# SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"], which points at these lists.
REGISTRABLE_VERSION_KINDS = [("base", "base"), ("external", "external")]
GENERATE_SPLITS = [("train", "train"), ("holdout", "holdout"), ("all", "all")]
EXPORT_KIND_CHOICES = [
    ("preferences", "preferences"),
    ("leaderboard", "leaderboard"),
    ("evaluation_report", "evaluation_report"),
]
