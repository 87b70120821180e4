"""Which command batches the leader takes when its cluster enforces trading permissions.

Pure: the leader calls `Admission.admit` once per command-stream entry (one MAC check and a
nonce comparison) and `Grant.refusal` per command (a set lookup). The policy comes from the
control plane in the leader's heartbeat answer (`trading`): per key id, the client it
belongs to, its secret, its accounts, and whether it may manage instruments or is the
control plane itself (which checked the user's grants before sending), and `nonces`, the
highest nonce per key any earlier leader acknowledged (wire.nonces): a batch captured in
an earlier term is refused as a replay here too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from wire import signing
from wire.nonces import NONCE_MAX, raise_marks

REFUSED_UNSIGNED = "unsigned"
REFUSED_UNKNOWN_KEY = "unknown_key"
REFUSED_BAD_SIGNATURE = "bad_signature"
REFUSED_REPLAYED = "replayed"
# How a replay refusal begins: a sender that shares its key between processes (the
# control plane's web workers) may see its own batch refused so when another process's
# later nonce reached the stream first, and sends it again with a new nonce.
REPLAYED_BATCH = "replayed batch"


@dataclass(frozen=True)
class Grant:
    """What one trading client may do."""

    client: str
    accounts: frozenset[str] = frozenset()
    instruments: bool = False  # may add instruments and change their status
    trusted: bool = False  # the control plane: it checked the user's own grant already

    def refusal(self, command: Any) -> str | None:
        """Why `command` is refused for this client, or None when it may go to the engine."""
        if self.trusted:
            return None
        client_id = command.client_id
        if client_id != self.client and not client_id.startswith(self.client + "."):
            return (
                f"client id {client_id!r} is not in the namespace of client {self.client} "
                f"(use {self.client!r} or {self.client + '.'!r} followed by anything)"
            )
        account = getattr(command, "account", None)
        if account is None:
            if not self.instruments:
                return f"client {self.client} may not manage instruments"
            return None
        if account not in self.accounts:
            return f"client {self.client} is not granted account {account!r}"
        return None


@dataclass
class Verdict:
    grant: Grant | None
    reason: str = ""  # why the whole batch is refused (grant is None)
    code: str = ""
    key_id: str = ""  # admitted: the batch's key and nonce, for the marks (wire.nonces)
    nonce: int = 0


@dataclass
class Admission:
    """The leader's check of signed batches; `nonces` remembers the last nonce per key,
    from the marks of earlier terms on."""

    cluster: str
    keys: dict[str, tuple[bytes, Grant]]
    nonces: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_policy(
        cls, cluster: str, policy: dict[str, Any] | None, previous: Admission | None = None,
        marks: dict[str, int] | None = None,
    ) -> Admission | None:
        """None when the cluster does not enforce trading permissions. The nonces carry on
        from `previous` (this leader's last policy) or else `marks` (what it read when its
        term began), raised by the policy's own marks (the control plane's)."""
        if not policy or not policy.get("enforced"):
            return None
        keys = {
            key_id: (
                bytes.fromhex(entry["secret"]),
                Grant(
                    client=entry["client"],
                    accounts=frozenset(entry.get("accounts", ())),
                    instruments=bool(entry.get("instruments")),
                    trusted=bool(entry.get("trusted")),
                ),
            )
            for key_id, entry in policy.get("keys", {}).items()
        }
        nonces = previous.nonces if previous is not None else dict(marks or {})
        handed = policy.get("nonces")
        if isinstance(handed, dict):
            raise_marks(nonces, {k: v for k, v in handed.items() if isinstance(v, int) and not isinstance(v, bool)})
        return cls(cluster, keys, nonces)

    def admit(self, fields: dict, reply_to: str) -> Verdict:
        """Check one entry's signature and nonce; its raw `c` field is what was signed."""
        key_id_raw, nonce, given = fields.get(b"k"), fields.get(b"n"), fields.get(b"s")
        if key_id_raw is None or nonce is None or given is None:
            return Verdict(None, "unsigned batch: trading permissions are enforced", REFUSED_UNSIGNED)
        key_id = key_id_raw.decode(errors="replace")
        known = self.keys.get(key_id)
        if known is None:
            return Verdict(None, f"unknown or revoked key {key_id[:40]!r}", REFUSED_UNKNOWN_KEY)
        secret, grant = known
        if not signing.verify(secret, self.cluster, reply_to, key_id, nonce, fields[b"c"], given):
            return Verdict(None, f"bad signature with key {key_id!r}", REFUSED_BAD_SIGNATURE)
        try:
            value = int(nonce)
        except ValueError:
            return Verdict(None, "the nonce is not a number", REFUSED_BAD_SIGNATURE)
        if not 0 < value <= NONCE_MAX:  # the marks are bigints in the control plane
            return Verdict(None, f"the nonce is not between 1 and {NONCE_MAX}", REFUSED_BAD_SIGNATURE)
        if value <= self.nonces.get(key_id, 0):
            return Verdict(None, f"{REPLAYED_BATCH}: nonce {value} of key {key_id!r} already seen", REFUSED_REPLAYED)
        self.nonces[key_id] = value
        return Verdict(grant, key_id=key_id, nonce=value)
