"""The drill's history: every command, fault and observation, as JSON lines.

One object a line, each with a `type` and `at` (wall-clock seconds, the drill's clock):

    meta       the run: cluster, seed, options, archives {node: location}
    sent       a command attempt: client, seq, kind, attempt, entry (stream entry id)
    committed  client, seq, position (its first event), count, digest (of its events'
               payloads), duplicate (answered with the original result), sent_at
    failed     client, seq, reason: the cluster answered that it will never run it
    unknown    client, seq, reason: no answer by the end of the drill
    fault      kind, target, detail, at .. end
    poison     stream, key, entry (id), expect (deadletter | error_reply)
    exit       a process exited without being asked: process, code, log
    violation  something the drill itself saw go wrong (a wedge), with what and when
    final      the settled cluster: leader, term, positions, role changes,
               leaders seen in the node logs, dead letters

The checker (controlplane.drill.checker) reads only this file and the archives, so a
history can be checked again later (`manage.py drill --check FILE --archives ...`).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any


def payload_digest(payloads: Sequence[bytes]) -> str:
    """SHA-256 of a result's event payloads, each length-prefixed (so boundaries count)."""
    digest = hashlib.sha256()
    for payload in payloads:
        digest.update(len(payload).to_bytes(4, "big"))
        digest.update(payload)
    return digest.hexdigest()


class History:
    """Appends records to the history file; safe to call from several threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed by close()
        self._lock = threading.Lock()

    def record(self, record_type: str, /, **fields: Any) -> dict:
        fields.setdefault("at", round(time.time(), 6))
        record = {"type": record_type, **fields}
        line = json.dumps(record, separators=(",", ":"), default=str)
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()
        return record

    def close(self) -> None:
        with self._lock:
            self._file.close()


def read_history(path: Path) -> Iterator[dict]:
    """The records of a history file; a torn last line (a killed drill) is skipped."""
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            line = line.strip()
            if not line:
                continue
            try:
                yield json.loads(line)
            except ValueError:
                if lines.readline():  # not the last line: the file is damaged
                    raise ValueError(f"{path}:{number}: not a JSON record") from None
