"""Rate limits. Every API view has a scope (``throttle_scope``); its rate is in
``REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]``. A view that names none is throttled as ``read`` for
safe methods and ``write`` otherwise, so no endpoint is ever unlimited by omission."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import SAFE_METHODS
from rest_framework.request import Request
from rest_framework.throttling import ScopedRateThrottle


class ScopedThrottle(ScopedRateThrottle):
    def allow_request(self, request: Request, view: Any) -> bool:
        if getattr(view, self.scope_attr, None) is None:
            default_scope = "read" if request.method in SAFE_METHODS else "write"
            view.throttle_scope = default_scope
        return super().allow_request(request, view)
