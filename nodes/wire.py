"""How commands and results travel between clients and the leader over Redis.

Command stream `tec:{cluster}:commands`: one entry per client batch, fields
  r = the client's reply list key, c = msgpack list of engine-encoded commands.
Reply list: one message per command-stream entry, msgpack
  [entry_id, [[status, first_position, [event payloads], error], ...]] in command order,
with status one of the RESULT_* codes below.
Ack stream `tec:{cluster}:acks`: followers add {n: node, p: archived position, t: term}.
Commit hash `tec:{cluster}:commit`: the leader's view of commits, for clients and operators.
"""

from __future__ import annotations

import msgspec

from archive.keys import PREFIX, keys

RESULT_COMMITTED = 0  # the command's own events, committed
RESULT_DUPLICATE = 1  # processed before: the payloads are the original result
RESULT_MALFORMED = 2  # could not be decoded; nothing reached the engine

LEADER_GROUP = "leader"

_encoder = msgspec.msgpack.Encoder()
encode = _encoder.encode
decode = msgspec.msgpack.decode


def events_key(cluster: str, term: int) -> str:
    """The live stream of one term. A new leader starts a new stream: its positions may
    overlap entries the old leader published but never committed."""
    return f"{keys(cluster).events}:{term}"


def commands_key(cluster: str) -> str:
    keys(cluster)  # validates the name
    return f"{PREFIX}:{cluster}:commands"


def acks_key(cluster: str) -> str:
    return f"{PREFIX}:{cluster}:acks"


def commit_key(cluster: str) -> str:
    return f"{PREFIX}:{cluster}:commit"


def reply_key(cluster: str, client_id: str) -> str:
    return f"{PREFIX}:{cluster}:reply:{client_id}"
