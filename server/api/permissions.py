"""Who may do what.

- Staff operate: create studies, add prompts, versions and samples, start and cancel jobs, read
  rater tables, leaderboards, evaluations and exports.
- A rater (a user with a ``Rater`` row in a study) sees that study and rates in it: its next pair,
  its own assignments, its votes. A study the user does not rate in answers 404, as if it did not
  exist, so slugs of other studies do not leak; a staff-only operation on a study the rater does
  see answers 403.
- Anonymous requests answer 401 (the token authenticator asks for a token).
"""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import NotFound
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from server.ratings.models import Rater
from server.studies.models import Study


def is_staff(user: Any) -> bool:
    return bool(user and user.is_authenticated and user.is_active and user.is_staff)


class IsStaff(BasePermission):
    message = "Only staff can do this."

    def has_permission(self, request: Request, view: Any) -> bool:
        return is_staff(request.user)


class StudyAccess(BasePermission):
    """Resolves ``view.kwargs["slug"]`` into ``view.study`` and checks the user may see it.

    ``view.staff_only`` (default True) makes the operation staff-only for a study the user sees.
    """

    message = "Only staff can do this."

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        study = Study.objects.filter(slug=view.kwargs.get("slug", "")).first()
        if study is None:
            raise NotFound("There is no such study.")
        if is_staff(user):
            view.study = study
            return True
        if not Rater.objects.filter(study=study, user=user).exists():
            raise NotFound("There is no such study.")
        view.study = study
        return not getattr(view, "staff_only", True)
