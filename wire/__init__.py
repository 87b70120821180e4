"""How commands and results travel between clients and the leader over Redis.

Command stream `tec:{CLUSTER}:commands` (braces included: the hash tag, wire.keys): one entry per client batch, fields
  r = the client's reply list key, c = msgpack list of engine-encoded commands, and when
  signed (wire/signing.py) k = key id, n = nonce, s = HMAC-SHA256.
Reply list: one message per command-stream entry, msgpack
  [entry_id, [[status, first_position, [event payloads], error], ...]] in command order,
with status one of the RESULT_* codes below.
Ack stream `tec:{CLUSTER}:acks`: followers add {n: node, p: archived position, t: term}.
Commit hash `tec:{CLUSTER}:commit`: the leader's view of commits, for clients and operators.
"""

from __future__ import annotations

import functools
import time

import msgspec

from wire.keys import keys

RESULT_COMMITTED = 0  # the command's own events, committed
RESULT_DUPLICATE = 1  # processed before: the payloads are the original result
RESULT_MALFORMED = 2  # could not be decoded; nothing reached the engine
RESULT_REFUSED = 3  # not permitted (trading permissions, signature); nothing reached the engine

LEADER_GROUP = "leader"

MAX_ENTRY_BYTES = 4 * 1024 * 1024  # a command-stream entry larger than this is poison
MAX_COMMANDS_PER_ENTRY = 10_000


class PoisonEntry(ValueError):
    """A command-stream entry that is not what a client sends; set aside, never retried."""

_encoder = msgspec.msgpack.Encoder()
encode = _encoder.encode
decode = msgspec.msgpack.decode


def events_key(cluster: str, term: int) -> str:
    """The live stream of one term. A new leader starts a new stream: its positions may
    overlap entries the old leader published but never committed."""
    return f"{keys(cluster).events}:{term}"


def commands_key(cluster: str) -> str:
    return f"{keys(cluster).base}:commands"


def acks_key(cluster: str) -> str:
    return f"{keys(cluster).base}:acks"


def commit_key(cluster: str) -> str:
    return f"{keys(cluster).base}:commit"


def reply_key(cluster: str, client_id: str) -> str:
    return f"{keys(cluster).base}:reply:{client_id}"


@functools.lru_cache(maxsize=64)
def _reply_prefix(cluster: str) -> str:
    return reply_key(cluster, "")  # checks the name once, not for every entry


def parse_command_entry(cluster: str, fields: dict) -> tuple[str, list[bytes]]:
    """The reply list and the encoded commands of one command-stream entry.

    Raises PoisonEntry with the reason when the entry cannot be one a client sent
    (missing fields, not msgpack, not a list of byte strings, too large): the leader
    sets it aside and goes on (DESIGN §4 "Poison input"). Each command is decoded on its
    own later, so one bad command only fails itself.
    """
    try:
        reply_to = fields[b"r"].decode()
        raw = fields[b"c"]
    except KeyError as missing:
        raise PoisonEntry(f"missing field {missing.args[0]!r}") from None
    except UnicodeDecodeError:
        raise PoisonEntry("the reply list name is not UTF-8") from None
    if len(raw) > MAX_ENTRY_BYTES:
        raise PoisonEntry(f"{len(raw)} bytes, more than the {MAX_ENTRY_BYTES} an entry may hold")
    if not reply_to.startswith(_reply_prefix(cluster)) or len(reply_to) > 200:
        # The leader writes results there: never into a key that is not a reply list.
        raise PoisonEntry(f"reply list {reply_to[:80]!r} is not a reply list of cluster {cluster}")
    try:
        encoded = decode(raw)
    except (msgspec.DecodeError, ValueError, OverflowError, RecursionError) as error:
        raise PoisonEntry(f"not msgpack: {error}") from None
    if not isinstance(encoded, list) or not all(isinstance(item, bytes) for item in encoded):
        raise PoisonEntry(f"not a list of encoded commands: {type(encoded).__name__}")
    if not encoded:
        raise PoisonEntry("an empty batch")
    if len(encoded) > MAX_COMMANDS_PER_ENTRY:
        raise PoisonEntry(f"{len(encoded)} commands, more than {MAX_COMMANDS_PER_ENTRY} in one entry")
    return reply_to, encoded


def _id_tuple(entry_id: bytes | str) -> tuple[int, int]:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


class StreamCursor:
    """Where a reader of a stream with Redis-time ids stands (acks, peer requests).

    A Redis that restarted (or was flushed) starts the stream over, perhaps on a clock
    behind the ids we saw: reading after our last id would never see a new entry. When
    idle, the reader checks now and then whether the stream's newest entry is below its
    cursor (or the stream is gone) and starts over from the beginning.
    """

    def __init__(self, last_id: bytes | str = "$", check_every: float = 1.0) -> None:
        self.last_id = last_id
        self.check_every = check_every
        self._checked_at = time.monotonic()

    def advance(self, entry_id: bytes | str) -> None:
        self.last_id = entry_id

    def check_reset(self, redis, key: str) -> bool:
        """Call when a read came back empty; True if the cursor was moved back to 0."""
        now = time.monotonic()
        if self.last_id in ("$", b"$", "0-0", b"0-0") or now - self._checked_at < self.check_every:
            return False
        self._checked_at = now
        newest = redis.xrevrange(key, count=1)
        if newest and _id_tuple(newest[0][0]) >= _id_tuple(self.last_id):
            return False
        self.last_id = "0-0"
        return True
