"""Where Redis is: a plain URL, or a primary found through Redis Sentinel; one factory for every process.

Nodes, the control plane, Celery and the client all connect through `RedisTarget`:

- `REDIS_URL` alone: one Redis server (`redis://[user:password@]host:port/db`).
- `REDIS_SENTINELS` (`host:port,host:port,...`) and `REDIS_SENTINEL_MASTER` (the name the
  Sentinels monitor, default `tec`): the client asks the Sentinels which server is the
  primary, and asks again whenever a connection breaks or the server it reached answers
  READONLY (a demoted primary). REDIS_URL then only gives the database number and the
  credentials; its host is not used.

Contract for callers: after a Sentinel failover the new primary may lack the last writes
the old one acknowledged (replication is asynchronous). Nothing of ours relies on them:
the fence is set again from the database (never lower), a leader republishes from its
archive what the live stream lost, a follower that finds a gap catches up from a peer,
and clients re-send unanswered commands with the same keys (idempotent).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from redis import Redis
from redis.sentinel import Sentinel

DEFAULT_URL = "redis://127.0.0.1:6379/0"
DEFAULT_MASTER = "tec"
SENTINEL_TIMEOUT_S = 1.0  # a Sentinel that does not answer within this is skipped


class RedisConfigError(ValueError):
    """A Redis setting that cannot be used; the message names the variable."""


@dataclass(frozen=True)
class RedisTarget:
    url: str = DEFAULT_URL
    sentinels: tuple[tuple[str, int], ...] = ()
    master: str = DEFAULT_MASTER

    @classmethod
    def from_env(cls, url: str | None = None, environ: Mapping[str, str] | None = None) -> RedisTarget:
        """REDIS_SENTINELS and REDIS_SENTINEL_MASTER from the environment; `url` as the
        caller read REDIS_URL (perhaps from REDIS_URL_FILE), else REDIS_URL itself."""
        environ = os.environ if environ is None else environ
        url = url or environ.get("REDIS_URL") or DEFAULT_URL
        master = environ.get("REDIS_SENTINEL_MASTER") or DEFAULT_MASTER
        return cls(url, parse_sentinels(environ.get("REDIS_SENTINELS", "")), master)

    @property
    def via_sentinel(self) -> bool:
        return bool(self.sentinels)

    def describe(self) -> str:
        if not self.via_sentinel:
            return self.url.split("@")[-1]
        where = ",".join(f"{host}:{port}" for host, port in self.sentinels)
        return f"primary {self.master!r} through Sentinels {where}"

    # -- redis-py ------------------------------------------------------------------------

    def client(self, sentinel_timeout: float = SENTINEL_TIMEOUT_S, **kwargs) -> Redis:
        """A client of the primary; kwargs as for redis.Redis (timeouts, health checks).
        Finding the primary asks each Sentinel in turn, `sentinel_timeout` seconds each."""
        if not self.via_sentinel:
            return Redis.from_url(self.url, **kwargs)
        parts = urlsplit(self.url)
        credentials = {
            "db": _db_of(parts.path),
            "username": unquote(parts.username) if parts.username else None,
            "password": unquote(parts.password) if parts.password else None,
        }
        if parts.scheme == "rediss":  # TLS to the primary, as the URL asks (CA: REDIS_CA_FILE)
            credentials["ssl"] = True
            if os.environ.get("REDIS_CA_FILE"):
                credentials["ssl_ca_certs"] = os.environ["REDIS_CA_FILE"]
        sentinel = Sentinel(
            list(self.sentinels),
            sentinel_kwargs={"socket_timeout": sentinel_timeout, "socket_connect_timeout": sentinel_timeout},
        )
        return sentinel.master_for(self.master, redis_class=Redis, **credentials, **kwargs)

    # -- Celery (kombu's sentinel transport, Celery's sentinel result backend) ------------

    def celery_url(self) -> str:
        """The broker / result backend URL: the plain one, or `sentinel://h:p;sentinel://h:p/db`."""
        if not self.via_sentinel:
            return self.url
        parts = urlsplit(self.url)
        auth = self.url[len(parts.scheme) + 3 :].split("@")[0] + "@" if "@" in parts.netloc else ""
        hosts = ";".join(f"sentinel://{auth}{host}:{port}" for host, port in self.sentinels)
        return f"{hosts}/{_db_of(parts.path)}"

    def celery_transport_options(self) -> dict:
        """broker_transport_options / result_backend_transport_options."""
        if not self.via_sentinel:
            return {}
        return {"master_name": self.master, "sentinel_kwargs": {"socket_timeout": SENTINEL_TIMEOUT_S}}


def parse_sentinels(text: str) -> tuple[tuple[str, int], ...]:
    """`host:port,host:port` (IPv6 as `[::1]:26379`); a port-less host gets 26379."""
    found = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        host, sep, port = item.rpartition(":")
        if not sep or host.endswith(":") or (host.startswith("[") and not host.endswith("]")):
            host, port = item, "26379"
        try:
            number = int(port)
        except ValueError:
            raise RedisConfigError(f"REDIS_SENTINELS: {item!r} is not host:port") from None
        if not host or not 0 < number < 65536:
            raise RedisConfigError(f"REDIS_SENTINELS: {item!r} is not host:port")
        found.append((host.strip("[]"), number))
    return tuple(found)


def _db_of(path: str) -> int:
    text = path.strip("/") or "0"
    try:
        return int(text)
    except ValueError:
        raise RedisConfigError(f"REDIS_URL: database {text!r} is not a number") from None
