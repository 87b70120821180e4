"""A node's settings, read once from the environment into a typed object."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from base.env import ConfigError, env_float, env_int, env_str
from wire.connection import RedisConfigError, RedisTarget

GC_POLICIES = ("freeze", "default", "off")


@dataclass(frozen=True)
class NodeConfig:
    name: str
    secret: str
    control_plane_url: str
    redis_url: str
    redis: RedisTarget  # the URL, or the Sentinels that know the primary
    batch_size: int
    stream_maxlen: int  # the most positions the live stream keeps (Redis memory)
    stream_window_s: float  # the live stream keeps what was published this long ago (0: stream_maxlen positions)
    snapshot_every: int
    gc_policy: str
    min_cycle_s: float = 0.003  # the leader's cycles start at least this far apart, under load (nodes.leader.CyclePacer)
    secret_file: str = ""  # re-read every heartbeat: a rotated secret is picked up live

    @classmethod
    def from_env(cls, name: str | None = None) -> NodeConfig:
        name = name or os.environ.get("NODE_NAME", "")
        if not name:
            raise ConfigError(
                "no node name: start the worker with --node-name NAME (or set NODE_NAME)"
            )
        secret = os.environ.get("NODE_SECRET", "")
        secret_file = "" if secret else os.environ.get("NODE_SECRET_FILE", "")
        if not secret and not secret_file:
            default_file = Path(__file__).resolve().parent.parent / "run" / f"node-{name}.secret"
            if default_file.exists():
                secret_file = str(default_file)
        if secret_file:
            secret = Path(secret_file).read_text().strip()
        if not secret:
            raise ConfigError(
                f"no secret for node {name}: set NODE_SECRET or NODE_SECRET_FILE "
                "(registering the node printed it)"
            )
        gc_policy = env_str("NODE_GC", "freeze")
        if gc_policy not in GC_POLICIES:
            raise ConfigError(f"NODE_GC={gc_policy!r}: use one of {', '.join(GC_POLICIES)}")
        redis_url = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
        try:
            redis = RedisTarget.from_env(redis_url)
        except RedisConfigError as error:
            raise ConfigError(str(error)) from None
        return cls(
            name=name,
            secret=secret,
            control_plane_url=env_str("CONTROL_PLANE_URL", "http://127.0.0.1:8000").rstrip("/"),
            redis_url=redis_url,
            redis=redis,
            batch_size=env_int("NODE_BATCH_SIZE", 4000, minimum=1),
            stream_maxlen=env_int("NODE_STREAM_MAXLEN", 500_000, minimum=10),
            stream_window_s=env_float("NODE_STREAM_WINDOW_S", 30.0, minimum=0.0),
            snapshot_every=env_int("NODE_SNAPSHOT_EVERY", 200_000, minimum=0),
            gc_policy=gc_policy,
            # Every command under load may wait this long for its cycle.
            min_cycle_s=env_float("NODE_MIN_CYCLE_MS", 3.0, minimum=0.0, maximum=50.0) / 1000,
            secret_file=secret_file,
        )
