"""A TCP proxy that injects faults between a client and a server (API server or registry).

It forwards bytes untouched, so TLS passes through end to end (the client still verifies the
server's certificate: the proxy listens on 127.0.0.1 as the servers do). Faults, settable at any
time from the test's event loop:
- `latency`: seconds added before each chunk is forwarded, in both directions (a slow network);
- `down()`: close every open connection and refuse new ones (accept, then close at once) until
  `up()`; a client sees its connection reset, as when a server or the network goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType

from ooto.testing.processes import free_port

CHUNK = 64 * 1024


class FaultProxy:
    def __init__(self, target_host: str, target_port: int, latency: float = 0.0) -> None:
        self.target = (target_host, target_port)
        self.latency = latency
        self.port = free_port()
        self.connections = 0
        self.refused = 0
        self.refused_at: list[float] = []  # loop times of refused connections
        self._down = False
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def host(self) -> str:
        """`127.0.0.1:PORT`, to put in place of the real server's address."""
        return f"127.0.0.1:{self.port}"

    async def start(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        self._close_all()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> FaultProxy:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def down(self) -> None:
        self._down = True
        self._close_all()

    def up(self) -> None:
        self._down = False

    def _close_all(self) -> None:
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._down:
            self.refused += 1
            self.refused_at.append(asyncio.get_running_loop().time())
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self.connections += 1
        self._writers.update((writer, up_writer))
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(source, sink), name="fault-proxy-pipe")
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while chunk := await source.read(CHUNK):
                if self.latency:
                    await asyncio.sleep(self.latency)
                sink.write(chunk)
                await sink.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(sink)
            with contextlib.suppress(Exception):
                sink.close()
