"""The simulated Redis: the fence, one live stream per term, the ack stream, the command stream
with its pending entries, and the clients' reply lists. Every method is one atomic Redis
call (a command or a Lua script), as in archive/ and nodes/.

A restart loses everything (`lose`): the fence, streams, acks, commands still pending and
reply lists. `epoch` counts restarts so a reader holding a cursor can tell.
"""

from __future__ import annotations

from bisect import bisect_right

Entry = tuple[int, int, int, int]  # (term, client id, client seq, original position or 0)


class Stream:
    """A live stream of one term: stream ids are log positions, so an XADD at or below the
    last id is refused (a publish can never rewrite a position), and old entries are trimmed."""

    __slots__ = ("entries", "keep", "positions")

    def __init__(self, keep: int) -> None:
        self.positions: list[int] = []
        self.entries: list[Entry] = []
        self.keep = keep

    def publish(self, first: int, entries: list[Entry]) -> int:
        """Append entries at positions first, first+1, ...; returns how many went in."""
        last = self.positions[-1] if self.positions else 0
        skip = max(0, last + 1 - first)  # ids at or below the last one are refused
        for offset in range(skip, len(entries)):
            self.positions.append(first + offset)
            self.entries.append(entries[offset])
        excess = len(self.positions) - self.keep
        if excess > 0:
            del self.positions[:excess]
            del self.entries[:excess]
        return len(entries) - skip

    def after(self, position: int, count: int) -> tuple[list[int], list[Entry]]:
        i = bisect_right(self.positions, position)
        return self.positions[i : i + count], self.entries[i : i + count]


class Redis:
    __slots__ = (
        "acks",
        "commands",
        "cursor",
        "epoch",
        "fence",
        "next_command_id",
        "pending",
        "replies",
        "stream_keep",
        "streams",
    )

    def __init__(self, fence: int, stream_keep: int) -> None:
        self.stream_keep = stream_keep
        self.next_command_id = 1
        self.epoch = 0
        self._empty()
        self.fence: int | None = fence

    def _empty(self) -> None:
        self.fence = None
        self.streams: dict[int, Stream] = {}
        self.acks: list[tuple[str, int, int, str]] = []  # (node, position, term, archive id)
        self.commands: list[tuple[int, int, int]] = []  # (entry id, client, seq)
        self.cursor = 0  # the consumer group's last-delivered entry (index into commands)
        self.pending: dict[int, tuple[int, int]] = {}  # entry id -> (client, seq): read, not acknowledged
        self.replies: dict[int, dict[int, int]] = {}  # client -> {seq: result position}

    def lose(self) -> None:
        """A restart without persistence: everything is gone."""
        self.epoch += 1
        self._empty()

    def set_fence(self, term: int) -> None:
        """archive.fence.set_fence: raise only, never lower (two writers may race)."""
        if self.fence is None or term > self.fence:
            self.fence = term

    def stream(self, term: int) -> Stream:
        stream = self.streams.get(term)
        if stream is None:
            stream = self.streams[term] = Stream(self.stream_keep)
        return stream

    def submit(self, client: int, seq: int) -> None:
        self.commands.append((self.next_command_id, client, seq))
        self.next_command_id += 1

    def read_new(self, count: int) -> list[tuple[int, int, int]]:
        """XREADGROUP '>': entries never delivered to the group; they become pending."""
        batch = self.commands[self.cursor : self.cursor + count]
        self.cursor += len(batch)
        for command_id, client, seq in batch:
            self.pending[command_id] = (client, seq)
        return batch
