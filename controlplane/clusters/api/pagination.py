"""Pages of the API's lists: limit and offset, within what PostgreSQL can count."""

from __future__ import annotations

from rest_framework.pagination import LimitOffsetPagination

# PostgreSQL's LIMIT and OFFSET are bigints: an offset past this (with a limit added to it)
# would be an error in the database, a 500. No table comes near it: such a page is empty.
OFFSET_MAX = 2**62


class Pages(LimitOffsetPagination):
    """DRF's limit/offset pages, with a limit cut to `max_limit` and an offset cut to
    OFFSET_MAX (both silently, as DRF treats a limit or offset it cannot read)."""

    max_limit = 1000

    def get_offset(self, request) -> int:
        return min(super().get_offset(request), OFFSET_MAX)
