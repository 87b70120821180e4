"""JSON log lines (LOG_FORMAT=json): one object a line, for a log pipeline to index.

Each line has time, level, logger and message; `cluster`, `node` and `term` when the
record carries them (`log.info(..., extra={"cluster": ...})`), else the node this process
runs (NODE_NAME) for `node`; and the exception's traceback as `exc`.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime

CONTEXT_FIELDS = ("cluster", "node", "term")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in CONTEXT_FIELDS:
            value = getattr(record, field, None)
            if value is not None:
                line[field] = value
        if "node" not in line and os.environ.get("NODE_NAME"):
            line["node"] = os.environ["NODE_NAME"]
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)
