"""Redis users and what each may do (Redis 7 ACLs with selectors), applied with ACL SETUSER.

Three kinds of user, each with the commands and keys it needs and no more:

- `tec-controlplane`: the control plane (fences, command submission for the API, reads for
  the dashboard, Celery): every key, no dangerous command (FLUSHALL, CONFIG, ACL, DEBUG...).
- `tec-node`: the node workers: the clusters' keys `tec:*` and Celery's own keys, the same
  commands; never ACL, CONFIG or FLUSH*.
- `tec-client-NAME`, one per trading client: XADD to any cluster's command stream, its own
  reply lists (`tec:{C}:reply:NAME-xxxxxxxx` as wire.client names them, or `NAME.*`), and
  HGETALL of the commit hash (the client's timeout message). Not acks, events, the fence,
  replay streams, dead letters, nor other clients' replies; no Pub/Sub.

Nothing here turns the `default` user off: on a shared development Redis that would lock
out everything else. In production, run `manage.py redis_acl --apply --lock-default`.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from urllib.parse import quote, urlsplit, urlunsplit

import redis as redis_lib

# What redis-py sends when it connects (HELLO for RESP3, CLIENT SETINFO for its name).
CONNECT = ["+ping", "+hello", "+client|setname", "+select"]
# Celery (kombu): task queues, bindings, unacked bookkeeping, results, remote-control mailboxes.
CELERY_KEYS = ["~celery*", "~_kombu.*", "~unacked*", "~node.*", "~controlplane*", "~*.celery.pidbox*"]


def controlplane_rules() -> list[str]:
    return ["resetkeys", "resetchannels", "~*", "&*", "-@all", "+@all", "-@dangerous",
            "+info", "+client|setname"]  # fmt: skip


def node_rules() -> list[str]:
    return ["resetkeys", "resetchannels", "~tec:*", *CELERY_KEYS, "&*", "-@all", "+@all",
            "-@dangerous", "+info", "+client|setname"]  # fmt: skip


def client_rules(client: str) -> list[str]:
    """One selector per kind of key, so that each key gets only its own commands."""
    own_replies = f"tec:*:reply:{client}-????????"
    return [
        "resetkeys", "resetchannels", "-@all", *CONNECT,
        "%W~tec:*:commands", "+xadd",
        f"({' '.join(['~' + own_replies, f'~tec:*:reply:{client}.*', '+blpop', '+blmpop', '+lpop', '+del'])})",
        "(~tec:*:commit +hgetall)",
    ]  # fmt: skip


def users(clients: Iterable[str] = ()) -> dict[str, list[str]]:
    """Every user and its rules: the control plane's, the nodes', and one per trading client."""
    made = {"tec-controlplane": controlplane_rules(), "tec-node": node_rules()}
    for client in clients:
        made[f"tec-client-{client}"] = client_rules(client)
    return made


def set_user(connection: redis_lib.Redis, name: str, password: str, rules: list[str]) -> None:
    """Create or replace the user: its earlier rules and passwords are reset first."""
    connection.execute_command("ACL", "SETUSER", name, "reset", "on", f">{password}", *rules)


def url_for(base_url: str, user: str, password: str) -> str:
    """`base_url` (redis:// or rediss://) with this user's credentials in it."""
    parts = urlsplit(base_url)
    host = parts.hostname or "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def new_password() -> str:
    return secrets.token_urlsafe(24)
