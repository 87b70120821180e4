"""The archive's fixtures (a fresh PostgreSQL archive, a Redis namespace) for the contracts."""

from tests.archive.conftest import cluster, location, redis

__all__ = ["cluster", "location", "redis"]
