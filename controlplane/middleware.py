"""Refusals before any view runs: oversized bodies (413) and NUL characters in the URL (400)."""

from __future__ import annotations

from django.conf import settings
from django.http import JsonResponse


class RejectHostileRequests:
    """A body larger than DATA_UPLOAD_MAX_MEMORY_SIZE gets a short JSON 413, whatever the
    view (Django's own check answers 400, and only when a view reads the body). A NUL in the
    path or the query string would reach PostgreSQL, which refuses NUL in text: 400 here."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        raw_length = request.META.get("CONTENT_LENGTH") or "0"
        try:
            length = int(raw_length)
        except ValueError:
            return JsonResponse({"detail": "Content-Length is not a number."}, status=400)
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if length > limit:
            return JsonResponse(
                {"detail": f"The body is larger than {limit} bytes.", "code": "too_large"}, status=413
            )
        if "\x00" in request.path or any(
            "\x00" in key or any("\x00" in value for value in values)
            for key, values in request.GET.lists()
        ):
            return JsonResponse({"detail": "NUL characters are not allowed in the URL."}, status=400)
        return self.get_response(request)
