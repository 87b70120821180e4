"""HMAC-SHA256 signatures of command batches: one MAC per batch, never per command.

A signed command-stream entry carries, besides `r` (reply list) and `c` (the msgpack list
of encoded commands), `k` (the key id), `n` (a nonce: a decimal number that increases
with every batch signed with that key) and `s` (the 32-byte MAC). The MAC covers a
version tag, the cluster, the reply list, the key id, the nonce and `c`, so no field can be
moved to another entry, cluster or reply list. A key used by several processes at once
needs a key per process (the nonce must increase per key).
"""

from __future__ import annotations

import hashlib
import hmac
import time

VERSION = b"tec-batch-v1"
SEP = b"\x1f"


def mac(secret: bytes, cluster: str, reply_to: str, key_id: str, nonce: bytes, commands: bytes) -> bytes:
    """The MAC of one batch (32 bytes)."""
    signer = hmac.new(
        secret,
        SEP.join((VERSION, cluster.encode(), reply_to.encode(), key_id.encode(), nonce)) + SEP,
        hashlib.sha256,
    )
    signer.update(commands)
    return signer.digest()


class BatchSigner:
    """The client side: the extra fields of each batch it sends."""

    def __init__(self, cluster: str, key_id: str, secret: bytes | str) -> None:
        self.cluster = cluster
        self.key_id = key_id
        self.secret = bytes.fromhex(secret) if isinstance(secret, str) else secret
        self._nonce = 0

    def next_nonce(self) -> bytes:
        # Time-based, so that a restarted client does not reuse its nonces; increasing even
        # when the clock steps back.
        self._nonce = max(self._nonce + 1, time.time_ns())
        return str(self._nonce).encode()

    def fields(self, reply_to: str, commands: bytes) -> dict[str, bytes | str]:
        nonce = self.next_nonce()
        return {
            "k": self.key_id,
            "n": nonce,
            "s": mac(self.secret, self.cluster, reply_to, self.key_id, nonce, commands),
        }


    def args(self, reply_to: str, commands: bytes) -> tuple:
        """The same, as XADD arguments: k KEY_ID n NONCE s MAC."""
        nonce = self.next_nonce()
        return ("k", self.key_id, "n", nonce, "s", mac(self.secret, self.cluster, reply_to, self.key_id, nonce, commands))


def verify(secret: bytes, cluster: str, reply_to: str, key_id: str, nonce: bytes, commands: bytes, given: bytes) -> bool:
    return hmac.compare_digest(mac(secret, cluster, reply_to, key_id, nonce, commands), given)


# -- replication: acks and published entries --------------------------------------------

ACK_VERSION = b"tec-ack-v1"


class ReplicationKeys:
    """A cluster's replication keys as the heartbeat answer gives them to every node:
    `signing` names the key to sign with, `keys` every key that verifies (the signing one,
    the one before it while a rotation settles, never a retired one).

    The control plane makes a new key sign only once every node has had it in its answers
    for a failover timeout, so rotation needs no restart and refuses nothing genuine."""

    __slots__ = ("keys", "signing", "signing_secret")

    def __init__(self, signing: str, keys: dict[str, bytes]) -> None:
        self.signing = signing
        self.keys = keys
        self.signing_secret = keys[signing]

    @classmethod
    def from_view(cls, data: dict | None) -> ReplicationKeys | None:
        """None when the control plane sends no keys (then nothing is signed or checked)."""
        if not data or not data.get("keys") or data.get("signing") not in data["keys"]:
            return None
        return cls(data["signing"], {key_id: bytes.fromhex(secret) for key_id, secret in data["keys"].items()})

    @property
    def signing_key(self) -> tuple[str, bytes]:
        return self.signing, self.signing_secret


def ack_mac(secret: bytes, cluster: str, node: str, position: int, term: int, archive_id: str, nonce: int, key_id: str) -> bytes:
    """The MAC of one ack: every field the leader reads from it."""
    text = f"{cluster}\x1f{node}\x1f{position}\x1f{term}\x1f{archive_id}\x1f{nonce}\x1f{key_id}"
    return hmac.new(secret, ACK_VERSION + SEP + text.encode(), hashlib.sha256).digest()


class AckNonces:
    """A follower's ack nonces: increasing in this process, and past those of its earlier
    runs as long as the clock did not step back by more than the restart took."""

    def __init__(self) -> None:
        self._last = 0

    def next(self) -> int:
        self._last = max(self._last + 1, time.time_ns())
        return self._last


ACK_UNSIGNED = "unsigned"
ACK_UNKNOWN_KEY = "unknown_key"
ACK_BAD_SIGNATURE = "bad_signature"
ACK_REPLAYED = "replayed"


def ack_refusal(keys: ReplicationKeys, cluster: str, fields: dict, node: str, position: int, term: int,
                archive_id: str, nonces: dict[str, tuple[int, int]]) -> tuple[str, str] | None:
    """(code, reason) when the ack must not count, None when it may.

    `nonces` remembers, per node, the highest nonce and position taken from it. An ack
    whose nonce is not above that nonce and whose position is not above that position is
    a replay: counted, and it changes nothing. One whose nonce is behind but whose position
    is ahead is taken: its follower restarted on a clock that stepped back (nonces come
    from the clock), and refusing it would stall every commit that needs it until the clock
    caught up. A replay cannot use this: a genuine ack, signed for this term and archive,
    only ever claims positions the follower held in them."""
    key_id_raw, nonce_raw, given = fields.get(b"k"), fields.get(b"q"), fields.get(b"s")
    if key_id_raw is None or nonce_raw is None or given is None:
        return ACK_UNSIGNED, "unsigned ack: the cluster's acks are signed"
    key_id = key_id_raw.decode(errors="replace")
    secret = keys.keys.get(key_id)
    if secret is None:
        return ACK_UNKNOWN_KEY, f"unknown or retired replication key {key_id[:40]!r}"
    try:
        nonce = int(nonce_raw)
    except ValueError:
        return ACK_BAD_SIGNATURE, "the ack's nonce is not a number"
    if not hmac.compare_digest(ack_mac(secret, cluster, node, position, term, archive_id, nonce, key_id), given):
        return ACK_BAD_SIGNATURE, f"bad signature with replication key {key_id!r}"
    last_nonce, last_position = nonces.get(node, (0, -1))
    if nonce <= last_nonce and position <= last_position:
        return ACK_REPLAYED, f"replayed ack of {node}: nonce {nonce} not above {last_nonce}"
    nonces[node] = (max(nonce, last_nonce) if position <= last_position else nonce, max(position, last_position))
    return None
