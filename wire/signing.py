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
