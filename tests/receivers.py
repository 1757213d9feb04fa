"""Real HTTP receivers on 127.0.0.1 for tests of anything that sends webhooks.

A :class:`Receiver` is a small HTTP/1.1 server (keep-alive, Content-Length or chunked
request bodies) running its own asyncio loop in a background thread. It records every
request it gets and answers each from a script::

    from tests.receivers import Receiver, Reply

    with Receiver() as rx:                       # answers 200 "ok" to everything
        rx.script(Reply(500), Reply(500))        # the next two requests get 500
        rx.script(Reply(429, headers={"Retry-After": "2"}))
        rx.script(Reply(200, delay=20))          # answers after 20 s (a timeout)
        rx.script(Reply(close=True))             # closes the connection, no answer
        ... send to rx.url ...
        got = rx.wait_for(5, timeout=10)         # list[Received], raises if fewer came
        assert got[0].json()["id"] == ...
        got[0].headers["webhook-id"], got[0].body, got[0].target

- Scripted replies are used in order, one per request; when they run out every
  request gets ``default`` (a constructor argument, 200 by default). Instead of a
  script, ``respond=`` takes a function ``Received -> Reply`` for each request.
- ``rx.url`` is ``http://127.0.0.1:PORT/hook``; any path is accepted and recorded.
- ``refused_url()`` gives a loopback URL nothing listens on (connection refused).
- The fixture ``receiver`` yields a started Receiver and stops it afterwards; import it
  into a test module (``from tests.receivers import receiver_fixture  # noqa: F401``).
- ``python -m tests.receivers [--port N] [--arrivals FILE]`` runs one in the
  foreground (answers 200, on uvloop when installed; with ``--arrivals``, writes each
  request's arrival time and event id to FILE on exit): the fast receiver the delivery
  benchmarks send to from another process. It prints its URL as the first line.

Headers are recorded lower-cased (``Received.headers``, the last value of a repeated
header wins) and as sent (``Received.raw_headers``, pairs in order).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

REASONS = {
    200: "OK",
    201: "Created",
    202: "Accepted",
    204: "No Content",
    302: "Found",
    400: "Bad Request",
    404: "Not Found",
    408: "Request Timeout",
    410: "Gone",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


@dataclass(frozen=True)
class Reply:
    """One scripted answer: ``status``, extra ``headers`` and ``body``, sent after
    ``delay`` seconds; with ``close=True`` the connection is closed instead (after the
    delay), so the sender sees the server disconnect without an answer."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | str = b"ok"
    delay: float = 0.0
    close: bool = False


@dataclass(frozen=True)
class Received:
    """One request as it arrived: ``target`` is the path with its query string;
    ``at`` is the time.time() when its body had been read."""

    method: str
    target: str
    raw_headers: list[tuple[str, str]]
    body: bytes
    at: float

    @property
    def headers(self) -> dict[str, str]:
        return {name.lower(): value for name, value in self.raw_headers}

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.target).query)

    def json(self) -> Any:
        return json.loads(self.body)


def refused_url() -> str:
    """A loopback URL where nothing listens: a port bound and released at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


class Receiver:
    """An HTTP server on 127.0.0.1 that records requests and answers from a script
    (see the module docstring). ``port=0`` picks a free port; ``record=False`` keeps
    nothing (for benchmarks that only count)."""

    def __init__(
        self,
        *,
        default: Reply | None = None,
        respond: Callable[[Received], Reply] | None = None,
        port: int = 0,
        record: bool = True,
    ) -> None:
        self.default = default or Reply()
        self.respond = respond
        self.record = record
        self.port = port
        self.count = 0
        self._script: list[Reply] = []
        self._received: list[Received] = []
        self._cond = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    # lifecycle

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> Receiver:
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self._server = loop.run_until_complete(
                    asyncio.start_server(self._serve, "127.0.0.1", self.port, backlog=1024)
                )
                self.port = self._server.sockets[0].getsockname()[1]
            except BaseException as e:
                failure.append(e)
                started.set()
                loop.close()
                return
            started.set()
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._thread = threading.Thread(target=run, name="test-receiver", daemon=True)
        self._thread.start()
        started.wait()
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive():
            return

        async def shutdown() -> None:
            assert self._server is not None
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            loop.stop()

        asyncio.run_coroutine_threadsafe(shutdown(), loop)
        thread.join(5)

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # script and records

    def script(self, *replies: Reply) -> None:
        """Queue answers for the next requests, in order."""
        with self._cond:
            self._script.extend(replies)

    @property
    def requests(self) -> list[Received]:
        """Every request recorded so far, oldest first (a copy)."""
        with self._cond:
            return list(self._received)

    def clear(self) -> None:
        with self._cond:
            self._received.clear()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        """The first ``count`` or more requests, waiting up to ``timeout`` seconds for
        them; AssertionError naming how many came if fewer did."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self._received) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"receiver got {len(self._received)} requests, expected {count}"
                    )
                self._cond.wait(left)
            return list(self._received)

    def _next_reply(self, request: Received) -> Reply:
        with self._cond:
            self.count += 1
            if self.record:
                self._received.append(request)
                self._cond.notify_all()
            if self._script:
                return self._script.pop(0)
        if self.respond is not None:
            return self.respond(request)
        return self.default

    # HTTP

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                request = await _read_request(reader)
                if request is None:
                    return
                reply = self._next_reply(request)
                if reply.delay:
                    await asyncio.sleep(reply.delay)
                if reply.close:
                    return
                writer.write(_response_bytes(reply))
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            return
        finally:
            self._writers.discard(writer)
            writer.close()


async def _read_request(reader: asyncio.StreamReader) -> Received | None:
    """One request from a keep-alive connection, or None when the peer closed it."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, target, _version = lines[0].split(" ", 2)
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers.append((name.strip(), value.strip()))
    lower = {name.lower(): value for name, value in headers}
    if lower.get("transfer-encoding", "").lower() == "chunked":
        body = bytearray()
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            body += chunk[:-2]
        body_bytes = bytes(body)
    else:
        body_bytes = await reader.readexactly(int(lower.get("content-length", "0")))
    return Received(method, target, headers, body_bytes, time.time())


def _response_bytes(reply: Reply) -> bytes:
    body = reply.body.encode() if isinstance(reply.body, str) else reply.body
    lines = [f"HTTP/1.1 {reply.status} {REASONS.get(reply.status, 'Status')}"]
    names = {name.lower() for name in reply.headers}
    lines += [f"{name}: {value}" for name, value in reply.headers.items()]
    if "content-length" not in names:
        lines.append(f"Content-Length: {len(body)}")
    if "content-type" not in names:
        lines.append("Content-Type: text/plain")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@pytest.fixture(name="receiver")
def receiver_fixture() -> Iterator[Receiver]:
    """A started :class:`Receiver` (200 to everything unless scripted), stopped after."""
    with Receiver() as rx:
        yield rx


def main() -> None:
    import argparse
    import signal

    parser = argparse.ArgumentParser(description="A fast HTTP receiver answering 200.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--arrivals",
        metavar="FILE",
        help="on exit, write one line per request: its arrival time.time() and the "
        "body's top-level id (a webhook's event id)",
    )
    args = parser.parse_args()
    arrivals: list[tuple[float, bytes]] = []

    def respond(request: Received) -> Reply:
        if args.arrivals:
            # The Event body starts with {"id":"evt_...": no JSON parse per request.
            arrivals.append((request.at, request.body[7:37]))
        return Reply()

    # uvloop (installed with uvicorn[standard]) where there is one: the receiver should
    # cost the machine as little as it can, it shares the cores with what is measured.
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    rx = Receiver(port=args.port, record=False, respond=respond).start()
    print(rx.url, flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()
    rx.stop()
    if args.arrivals:
        with open(args.arrivals, "w") as out:
            for at, event_id in arrivals:
                out.write(f"{at:.6f} {event_id.decode(errors='replace')}\n")


if __name__ == "__main__":
    main()
