"""Logging filters: keep the dev server's log readable with nodes heartbeating every 0.5 s."""

from __future__ import annotations

import logging


class SkipHeartbeats(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "/heartbeat/" not in record.getMessage() or record.levelno >= logging.WARNING
