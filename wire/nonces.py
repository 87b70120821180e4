"""Batch-nonce high-water marks that outlive a leader: the merge rule and its input checks, pure.

The leader refuses a signed batch whose nonce is not above the last one it took from the
same key (wire.admission). Kept only in the leader's memory, that mark died with the
leader: a batch captured in one term and replayed in the next passed the new leader's
admission, and only the engine's idempotency stopped it (duplicate events in the log,
no refusal counted). So the marks are kept in two places, and every new leader starts
from the higher of both:

- **Redis, inside the fenced delivery** (archive/fenced.py `deliver`). The script that
  acknowledges a batch's entries in the command stream also raises the marks of the
  batches it acknowledges, in the same atomic step, and only while the fence is at the
  leader's term. When a term ends the fence moves before anyone is elected, so the next
  leader, reading the marks when it starts (nodes/leader.py), sees the mark of every
  batch the old leader ever acknowledged: no window between the old leader's last report
  and its death. The entries it had not acknowledged stay pending in the stream; the new
  leader takes them over (XAUTOCLAIM), and their nonces are above the marks (a leader
  takes a key's batches in increasing nonce order, and acknowledges them in order), so a
  genuine batch cut off by a failover is still executed or answered as a duplicate, never
  refused as its own replay. That is why the mark moves on acknowledgement, not when the
  batch is admitted.
- **The control plane's database**, for when Redis loses its data (a restart without
  persistence, an asynchronous replica promoted): the leader reports the marks it has
  acknowledged in its heartbeat (`client_nonces`), the control plane keeps the highest per
  (cluster, key) and never lowers it (one upsert with GREATEST), and the leader's heartbeat
  answer (`trading.nonces`) hands them to whichever node leads next.

Residual window: only after Redis lost its data, a batch acknowledged after the old
leader's last answered heartbeat (within a heartbeat interval; at most its lease, after
which a leader whose heartbeats go unanswered stops, plus the batches it delivers while
stopping) can be replayed once to a later leader; the engine answers its commands as
duplicates (no book changes; the batch is counted as `commands.all_duplicates`, as are
the clients' own resends and the batches taken over from a failed leader), and from then
on that leader refuses it.

Nonces come from the client's clock (wire.signing.BatchSigner: time in ns, increasing), so
a mark is a time: a client restarted with its clock set back is refused as a replay until
its clock passes its last mark, now in every term as it was within one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

NONCE_MAX = 2**63 - 1  # a PostgreSQL bigint; time_ns() reaches it in 2262
MAX_KEYS = 10_000  # marks in one heartbeat report
KEY_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")  # models.NAME_VALIDATOR: every key id there is


def raise_marks(marks: dict[str, int], more: Mapping[str, int]) -> dict[str, int]:
    """Merge `more` into `marks` in place, per key the higher of both; a mark is never
    lowered. Returns the marks that rose (what is worth writing on)."""
    risen = {}
    for key_id, nonce in more.items():
        if nonce > marks.get(key_id, 0):
            marks[key_id] = risen[key_id] = nonce
    return risen


def marks_refusal(data: Any) -> str | None:
    """Why a heartbeat's `client_nonces` cannot be taken (a 400), or None when it can:
    an object of at most MAX_KEYS key ids, each a positive integer up to NONCE_MAX."""
    if not isinstance(data, dict):
        return "expected an object: key id -> the highest nonce acknowledged"
    if len(data) > MAX_KEYS:
        return f"at most {MAX_KEYS} key ids in one report"
    for key_id, nonce in data.items():
        if not isinstance(key_id, str) or not KEY_ID.fullmatch(key_id):
            return f"{str(key_id)[:40]!r} is not a key id"
        if isinstance(nonce, bool) or not isinstance(nonce, int) or not 0 < nonce <= NONCE_MAX:
            return f"the nonce of {key_id!r} must be an integer from 1 to {NONCE_MAX}"
    return None


def parse_stored(raw: Mapping[bytes, bytes]) -> dict[str, int]:
    """The marks as Redis keeps them (a hash of decimal strings); an unreadable field is
    skipped (only a node may write the hash: Redis ACLs)."""
    marks = {}
    for key_id, nonce in raw.items():
        try:
            marks[key_id.decode()] = int(nonce)
        except (UnicodeDecodeError, ValueError):
            continue
    return marks
