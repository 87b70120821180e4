"""Fenced delivery of results and fenced acknowledgements (DESIGN §4 "Fencing").

Like the fenced publish (archive/publisher.py), each script checks the cluster's fence
and writes in one atomic step, so nothing of a term slips in after the control plane
moved the fence past it:

- `deliver`: a leader reports results to its clients (RPUSH on their reply lists) and
  acknowledges the commands in the command stream only while the fence is at its term.
  Once the fence moved, the set of results ever reported in the term is closed, before
  anyone is elected. The same step raises the batch-nonce marks of the signed batches it
  acknowledges (wire.nonces), so the next leader reads every one of them.
- `acknowledge`: a follower's ack of term T enters the ack stream only while the fence is
  at T. A node that read a newer fence, then measured its log, has acknowledged nothing
  beyond what it measured: its report is a valid vote (nodes.protocol.election).

The verdicts are those of nodes.protocol.fencing.check: ok, missing, behind, deposed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from redis import Redis
from redis.commands.core import Script

from wire.keys import keys
from wire.redisconn import DirectConnection

# The verdict of nodes.protocol.fencing.check, in Lua. Returns nil when the fence is at
# the term; otherwise the verdict and the fence (or '').
_CHECK = """
local function fence_verdict(fence_key, term)
    local fence = redis.call('GET', fence_key)
    if fence == false then return {'missing', ''} end
    local value = tonumber(fence)
    if value == term then return nil end
    if value < term then return {'behind', fence} end
    return {'deposed', fence}
end
"""

# KEYS: fence, commands stream, nonce marks, then one reply list per client. ARGV: term,
# group, reply TTL (s), number of command ids, the ids, number of marks, (key id, nonce)
# per mark, then per reply list: message count, messages. Nonces are canonical decimal
# strings compared as such: past 2^53 Lua's numbers would round them.
_DELIVER = _CHECK + """
local function above(a, b)
    return #a > #b or (#a == #b and a > b)
end
local refused = fence_verdict(KEYS[1], tonumber(ARGV[1]))
if refused then return refused end
local ttl = tonumber(ARGV[3])
local ids = tonumber(ARGV[4])
local at = 5
if ids > 0 then
    local batch = {}
    for i = at, at + ids - 1 do
        batch[#batch + 1] = ARGV[i]
        if #batch == 1000 then
            redis.call('XACK', KEYS[2], ARGV[2], unpack(batch))
            redis.call('XDEL', KEYS[2], unpack(batch))
            batch = {}
        end
    end
    if #batch > 0 then
        redis.call('XACK', KEYS[2], ARGV[2], unpack(batch))
        redis.call('XDEL', KEYS[2], unpack(batch))
    end
end
at = at + ids
local marks = tonumber(ARGV[at])
at = at + 1
for i = at, at + 2 * marks - 1, 2 do
    local seen = redis.call('HGET', KEYS[3], ARGV[i])
    if not seen or above(ARGV[i + 1], seen) then redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1]) end
end
at = at + 2 * marks
for k = 4, #KEYS do
    local count = tonumber(ARGV[at])
    at = at + 1
    local batch = {}
    for i = at, at + count - 1 do
        batch[#batch + 1] = ARGV[i]
        if #batch == 1000 then
            redis.pcall('RPUSH', KEYS[k], unpack(batch))
            batch = {}
        end
    end
    -- pcall: a reply key someone made of another type loses its own results only.
    if #batch > 0 then redis.pcall('RPUSH', KEYS[k], unpack(batch)) end
    redis.pcall('EXPIRE', KEYS[k], ttl)
    at = at + count
end
return {'ok', ''}
"""

# KEYS: fence, ack stream. ARGV: term, max stream length, then field/value pairs.
_ACKNOWLEDGE = _CHECK + """
local refused = fence_verdict(KEYS[1], tonumber(ARGV[1]))
if refused then return refused end
local args = {'XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*'}
for i = 3, #ARGV do args[#args + 1] = ARGV[i] end
redis.call(unpack(args))
return {'ok', ''}
"""


# KEYS: fence, status hash. ARGV: term, then field/value pairs.
_STATUS = _CHECK + """
local refused = fence_verdict(KEYS[1], tonumber(ARGV[1]))
if refused then return refused end
local args = {'HSET', KEYS[2]}
for i = 2, #ARGV do args[#args + 1] = ARGV[i] end
redis.call(unpack(args))
return {'ok', ''}
"""


class FencedWrites:
    """The fenced writes of one cluster's nodes; each returns (verdict, fence or None).

    Each write also comes as a command (`*_command(line, ...)`) for a node's hot loop to
    send on its own DirectConnection, alone or pipelined with its next read; `verdict()`
    reads its reply.
    """

    def __init__(self, redis: Redis, cluster: str) -> None:
        self._fence_key = keys(cluster).fence
        self._nonces_key = keys(cluster).nonces
        self._deliver = redis.register_script(_DELIVER)
        self._acknowledge = redis.register_script(_ACKNOWLEDGE)
        self._status = redis.register_script(_STATUS)

    def deliver(
        self,
        term: int,
        replies: Mapping[str, Sequence[bytes]],
        *,
        commands_key: str,
        group: str,
        command_ids: Sequence[bytes],
        reply_ttl: int,
        nonces: Mapping[str, int] | None = None,
        line: DirectConnection | None = None,
    ) -> tuple[str, int | None]:
        """Push each client's result messages, acknowledge the commands and raise the
        nonce marks of their batches (key id -> highest nonce), if the fence is at
        `term`; nothing at all otherwise."""
        return _run(line, *self._deliver_call(term, replies, commands_key, group, command_ids, reply_ttl, nonces))

    def deliver_command(
        self,
        line: DirectConnection,
        term: int,
        replies: Mapping[str, Sequence[bytes]],
        *,
        commands_key: str,
        group: str,
        command_ids: Sequence[bytes],
        reply_ttl: int,
        nonces: Mapping[str, int] | None = None,
    ) -> tuple:
        return line.evalsha(*self._deliver_call(term, replies, commands_key, group, command_ids, reply_ttl, nonces))

    def _deliver_call(self, term, replies, commands_key, group, command_ids, reply_ttl, nonces) -> tuple[Script, list, list]:
        nonces = nonces or {}
        args: list = [term, group, reply_ttl, len(command_ids), *command_ids, len(nonces)]
        for key_id, nonce in nonces.items():
            args.extend((key_id, str(int(nonce))))
        for messages in replies.values():
            args.append(len(messages))
            args.extend(messages)
        return self._deliver, [self._fence_key, commands_key, self._nonces_key, *replies], args

    def status(
        self, term: int, key: str, mapping: Mapping[str, object], line: DirectConnection | None = None
    ) -> tuple[str, int | None]:
        """Write the leader's commit status hash if the fence is at `term`: a deposed
        leader's stale status never overwrites its successor's."""
        return _run(line, self._status, [self._fence_key, key], _field_args(term, mapping))

    def status_command(self, line: DirectConnection, term: int, key: str, mapping: Mapping[str, object]) -> tuple:
        return line.evalsha(self._status, [self._fence_key, key], _field_args(term, mapping))

    def acknowledge(
        self,
        term: int,
        acks_key: str,
        fields: Mapping[str, object],
        maxlen: int = 1000,
        line: DirectConnection | None = None,
    ) -> tuple[str, int | None]:
        """Add a follower's ack {fields} to the ack stream if the fence is at `term`."""
        return _run(line, self._acknowledge, [self._fence_key, acks_key], _field_args(term, fields, maxlen))

    def acknowledge_command(
        self, line: DirectConnection, term: int, acks_key: str, fields: Mapping[str, object], maxlen: int = 1000
    ) -> tuple:
        return line.evalsha(self._acknowledge, [self._fence_key, acks_key], _field_args(term, fields, maxlen))


def _run(line: DirectConnection | None, script: Script, keys: list, args: list) -> tuple[str, int | None]:
    """One fenced write now: on the caller's connection if it has one, else through redis-py."""
    return verdict(line.script_call(script, keys, args) if line is not None else script(keys=keys, args=args))


def _field_args(term: int, mapping: Mapping[str, object], *before: object) -> list:
    """ARGV of the status and ack scripts: the term, what comes before the fields, then
    field/value pairs."""
    args: list = [term, *before]
    for name, value in mapping.items():
        args.extend((name, value))
    return args


def verdict(reply) -> tuple[str, int | None]:
    """(verdict, fence or None) from the reply of a fenced write."""
    status, fence = reply
    status = status.decode() if isinstance(status, bytes) else str(status)
    fence = fence.decode() if isinstance(fence, bytes) else fence
    return status, (int(fence) if fence else None)
