"""A small TCP proxy for the scale-out tests: workers on "other machines" reach the database
through it. It delays every chunk by ``delay`` seconds in each direction (order kept), and
:meth:`DelayingProxy.cut` drops every connection at once, as a network partition would.
(Traffic control, netem, is not available on these machines.)"""

from __future__ import annotations

import asyncio
import contextlib


class DelayingProxy:
    def __init__(self, target_host: str, target_port: int, delay: float = 0.001) -> None:
        self.target = (target_host, target_port)
        self.delay = delay
        self.port = 0
        self.connections = 0
        self.cuts = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> DelayingProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _accept(
        self, client_reader: asyncio.StreamReader, client: asyncio.StreamWriter
    ) -> None:
        try:
            server_reader, server = await asyncio.open_connection(*self.target)
        except OSError:
            client.close()
            return
        self.connections += 1
        self._writers |= {client, server}
        for source, sink in ((client_reader, server), (server_reader, client)):
            task = asyncio.create_task(self._pipe(source, sink, {client, server}))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(
        self,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        pair: set[asyncio.StreamWriter],
    ) -> None:
        # Chunks wait in a queue until their time: a later chunk never overtakes an earlier.
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        async def deliver() -> None:
            while True:
                due, chunk = await queue.get()
                if not chunk:
                    return
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                sink.write(chunk)
                await sink.drain()

        delivering = asyncio.create_task(deliver())
        try:
            while chunk := await source.read(65536):
                queue.put_nowait((loop.time() + self.delay, chunk))
            queue.put_nowait((0.0, b""))
            await delivering
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            delivering.cancel()
            for writer in pair:
                self._close(writer)

    def _close(self, writer: asyncio.StreamWriter) -> None:
        self._writers.discard(writer)
        with contextlib.suppress(Exception):
            writer.transport.abort()

    def cut(self) -> int:
        """Drops every connection now (new ones are still accepted); returns how many."""
        self.cuts += 1
        writers = list(self._writers)
        for writer in writers:
            self._close(writer)
        return len(writers) // 2

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.cut()
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)


async def _serve(target_port: int, listen_port: int, delay: float) -> None:
    proxy = DelayingProxy("127.0.0.1", target_port, delay)
    proxy._server = await asyncio.start_server(proxy._accept, "127.0.0.1", listen_port)
    print(f"proxy 127.0.0.1:{listen_port} -> 127.0.0.1:{target_port}, {delay * 1000:g} ms each way")
    await asyncio.Event().wait()


if __name__ == "__main__":
    # python -m tests.tcp_proxy TARGET_PORT LISTEN_PORT [DELAY_MS]: for benchmarks by hand.
    import sys

    asyncio.run(
        _serve(
            int(sys.argv[1]),
            int(sys.argv[2]),
            float(sys.argv[3] if len(sys.argv) > 3 else 1) / 1000,
        )
    )
