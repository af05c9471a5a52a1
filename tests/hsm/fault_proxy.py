"""A fault-injecting TCP proxy for client tests (127.0.0.1 only).

It forwards bytes both ways between clients and an upstream server and can,
on command, delay replies, hold them back entirely, or break every
connection at once.
"""

from __future__ import annotations

import asyncio
import contextlib


class FaultProxy:
    """``await start()`` then point clients at ``port``; faults are attributes/methods."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.reply_delay_s = 0.0
        self._replies_flowing = asyncio.Event()
        self._replies_flowing.set()
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def hold_replies(self) -> bool:
        """While true, replies from upstream are held back (not dropped)."""
        return not self._replies_flowing.is_set()

    @hold_replies.setter
    def hold_replies(self, hold: bool) -> None:
        if hold:
            self._replies_flowing.clear()
        else:
            self._replies_flowing.set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))
        for task in (
            asyncio.create_task(self._pump(reader, up_writer, replies=False)),
            asyncio.create_task(self._pump(up_reader, writer, replies=True)),
        ):
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, replies: bool
    ) -> None:
        try:
            while data := await reader.read(65536):
                if replies:
                    await self._replies_flowing.wait()
                    if self.reply_delay_s:
                        await asyncio.sleep(self.reply_delay_s)
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    def break_connections(self) -> None:
        """Reset every proxied connection (both sides) at once."""
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.break_connections()
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._server is not None:
            await self._server.wait_closed()
