"""One dedicated Redis connection for a hot loop: commands out, raw replies back, pipelined.

redis-py's `Redis.execute_command` costs about 30 µs of CPU a call on these machines,
two thirds of it in the pool, the retry wrapper, locks and response callbacks; the same
round trip on a bare redis-py `Connection` costs about 10 µs. The node's loops (leader,
committer, follower) and the client make a few round trips per batch, so this is most of
their fixed cost per cycle. A `DirectConnection` keeps everything redis-py's connection
does (URL, auth, TLS, Sentinel-managed pools, the hiredis parser) and drops the rest:

- replies come back raw (bytes, ints, lists; maps under RESP3), see `stream_entries`;
- several commands go out in one write and their replies are read in order (`pipeline`):
  one round trip, as a redis-py pipeline, without its per-command bookkeeping;
- any error drops the connection (a reply half read would desynchronise it); the next
  call connects again. Errors are redis-py's (`redis.RedisError` and subclasses).

Not thread-safe: one per thread. `calls` counts round trips, and so does `tally` if given
(the node's LoopStats, shared by its connections).
"""

from __future__ import annotations

import select
from collections.abc import Sequence

from hiredis import pack_command
from redis import Redis
from redis.commands.core import Script
from redis.exceptions import NoScriptError

_SELECT_LIMIT = 1024  # FD_SETSIZE: select() takes no higher descriptor (then: poll, in ms)


class DirectConnection:
    def __init__(self, redis: Redis, tally=None) -> None:
        self._conn = redis.connection_pool.make_connection()
        self._scripts: dict[str, Script] = {}  # by sha: loaded again when Redis lost them
        self.calls = 0
        self._tally = tally  # an object with a `redis_round_trips` count (the node's stats)

    def call(self, *args):
        """One command, one round trip; its raw reply."""
        return self.pipeline((args,))[0]

    def pipeline(self, commands: Sequence[Sequence]) -> list:
        """Several commands in one round trip; their raw replies, in order. An error reply
        raises (redis.ResponseError) after the connection is dropped."""
        self.send(commands)
        return self.receive(len(commands))

    def send(self, commands: Sequence[Sequence]) -> None:
        """Send without waiting: the caller works while Redis answers, then `receive`s."""
        conn = self._conn
        try:
            if conn._sock is None:
                # Connect here, not lazily inside send_packed_command: a Sentinel-managed
                # connection asks the Sentinels for the primary only in connect() (redis-py
                # 8's lazy path would dial its default, localhost:6379).
                conn.connect()
            # hiredis packs in C; redis-py's pack_commands wraps it in Python per argument.
            conn.send_packed_command([b"".join(map(pack_command, commands))], check_health=False)
        except BaseException:
            conn.disconnect()
            raise
        self.calls += 1
        if self._tally is not None:
            self._tally.redis_round_trips += 1

    def receive(self, count: int) -> list:
        """The replies of the last `count` commands sent."""
        conn = self._conn
        try:
            return [conn.read_response() for _ in range(count)]
        except NoScriptError:
            # Redis restarted and lost our scripts: load them for the next attempt; this
            # one failed (the caller's loop retries it like any Redis error).
            conn.disconnect()
            for script in self._scripts.values():
                self.call("SCRIPT", "LOAD", script.script)
            raise
        except BaseException:
            conn.disconnect()
            raise

    def ready(self, timeout: float) -> bool:
        """Whether a reply can be read within `timeout` seconds (0: now), without reading it.

        Waits to the microsecond: redis-py waits with poll(), whose timeout is whole
        milliseconds, rounded up, so a client that receives until its next send was due
        in 0.3 ms sent it 1 ms later (bench/cluster.py measured its sends 0.5 ms late at
        the median, 1.4 ms at p99, at 10,000 commands/s)."""
        conn = self._conn
        try:
            if conn.can_read(0):  # a reply buffered, or already arrived
                return True
            if timeout <= 0:
                return False
            sock = conn._sock
            if sock is None or sock.fileno() >= _SELECT_LIMIT:
                return conn.can_read(timeout)
            readable, _, _ = select.select([sock], [], [], timeout)  # timeval: microseconds
            return bool(readable)  # a closed connection too: reading it raises, as it should
        except BaseException:
            conn.disconnect()
            raise

    def evalsha(self, script: Script, keys: Sequence, args: Sequence) -> tuple:
        """The EVALSHA command of a registered script, to send or pipeline. The first
        time this connection sees the script it loads it (one round trip): call it only
        with no reply pending."""
        if script.sha not in self._scripts:
            self.call("SCRIPT", "LOAD", script.script)
            self._scripts[script.sha] = script
        return ("EVALSHA", script.sha, len(keys), *keys, *args)

    def script_call(self, script: Script, keys: Sequence, args: Sequence):
        """EVALSHA of a registered script, loaded first if Redis lost it: one round trip
        (two when it had to be loaded)."""
        command = self.evalsha(script, keys, args)
        try:
            return self.call(*command)
        except NoScriptError:
            return self.call(*command)  # receive() loaded it

    def close(self) -> None:
        self._conn.disconnect()


def stream_entries(reply) -> list[tuple[bytes, dict]]:
    """The entries of a raw XREAD/XREADGROUP reply for one stream: [(id, {field: value})].
    An empty list for a timeout (None). Entries deleted under a consumer group come back
    with no fields: {}."""
    if not reply:
        return []
    rows = next(iter(reply.values())) if isinstance(reply, dict) else reply[0][1]  # RESP3: a map
    entries = []
    for entry_id, flat in rows:
        if flat:
            it = iter(flat)
            entries.append((entry_id, dict(zip(it, it, strict=True))))
        else:
            entries.append((entry_id, {}))
    return entries
