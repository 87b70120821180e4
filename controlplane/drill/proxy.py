"""A small TCP fault proxy: one node talks to Redis or the control plane through it.

It forwards 127.0.0.1:<port> to an upstream address and, on request, breaks the path:

- `cut("hold")`: a partition. Nothing is forwarded either way and new connections wait,
  as packets would be dropped and retransmitted; when the cut heals, what was held is
  delivered in order (TCP would, for a partition shorter than its retry limit).
- `cut("reset")`: every connection is reset and new ones are refused until it heals
  (a firewall's RST, a NAT table flushed).
- `delay(seconds)`: every chunk is delivered `seconds` late, in order (a slow link).

It runs its own asyncio loop in a daemon thread; the methods are safe from any thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time

from controlplane.drill.servers import free_port


class FaultProxy:
    def __init__(self, name: str, upstream_host: str, upstream_port: int) -> None:
        self.name = name
        self.upstream = (upstream_host, upstream_port)
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=f"proxy-{name}", daemon=True)
        self._ready = threading.Event()
        self._open: asyncio.Event | None = None  # set while traffic flows
        self._mode = "open"  # open | hold | reset
        self._delay = 0.0
        self._connections: set[asyncio.Transport] = set()
        self._server: asyncio.AbstractServer | None = None

    @property
    def state(self) -> str:
        return f"{self._mode}" + (f", {self._delay * 1000:.0f} ms delay" if self._delay else "")

    # -- control, from any thread --------------------------------------------------------

    def start(self) -> FaultProxy:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError(f"the {self.name} proxy did not start")
        return self

    def cut(self, mode: str = "hold") -> None:
        if mode not in ("hold", "reset"):
            raise ValueError(f"cut mode {mode!r}: use hold or reset")
        self._call(self._cut, mode)

    def delay(self, seconds: float) -> None:
        self._call(self._set_delay, seconds)

    def heal(self) -> None:
        self._call(self._heal)

    def stop(self) -> None:
        if self._thread.is_alive():
            self._call(self._shutdown)
            self._thread.join(5)

    def _call(self, function, *args) -> None:
        done = threading.Event()

        def run() -> None:
            try:
                function(*args)
            finally:
                done.set()

        self._loop.call_soon_threadsafe(run)
        done.wait(5)

    # -- the loop ------------------------------------------------------------------------

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._open = asyncio.Event()
        self._open.set()
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._accept, "127.0.0.1", self.port, reuse_address=True)
        )
        self._ready.set()
        self._loop.run_forever()
        with contextlib.suppress(Exception):
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
        self._loop.close()

    def _cut(self, mode: str) -> None:
        self._mode = mode
        self._open.clear()
        if mode == "reset":
            for transport in list(self._connections):
                transport.abort()  # RST, not FIN
            self._connections.clear()

    def _set_delay(self, seconds: float) -> None:
        self._delay = max(0.0, seconds)

    def _heal(self) -> None:
        self._mode, self._delay = "open", 0.0
        self._open.set()

    def _shutdown(self) -> None:
        for transport in list(self._connections):
            transport.abort()
        if self._server is not None:
            self._server.close()
        for task in asyncio.all_tasks(self._loop):
            task.cancel()
        self._loop.call_later(0.1, self._loop.stop)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._mode == "reset":
            writer.transport.abort()
            return
        await self._open.wait()  # a partition: the connection waits, as a SYN would be retried
        try:
            up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(*self.upstream), 10)
        except (OSError, TimeoutError):
            writer.transport.abort()
            return
        transports = {writer.transport, up_writer.transport}
        self._connections |= transports
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._connections -= transports
            for transport in transports:
                transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Read as data arrives; deliver each chunk when it is due and the path is open."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, data = await queue.get()
                if not data:
                    return
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                await self._open.wait()
                writer.write(data)
                await writer.drain()

        delivery = asyncio.ensure_future(deliver())
        try:
            while True:
                data = await reader.read(65536)
                queue.put_nowait((time.monotonic() + self._delay, data))
                if not data:
                    break
            await delivery
        finally:
            delivery.cancel()
            with contextlib.suppress(Exception):
                writer.transport.abort()
