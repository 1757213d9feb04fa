"""Shared pieces of the CLI fault matrix: a scripted socket server and the checks
every failing command must pass (one clear line, the documented exit code, no traceback).
"""

from __future__ import annotations

import json
import socket
import socketserver
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# A reply: raw bytes to write before closing, or a function doing its own writing.
Reply = bytes | Callable[[socket.socket, threading.Event], None]


def http_reply(
    status: int,
    body: bytes | str = b"",
    *,
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
    reason: str = "Whatever",
) -> bytes:
    """A complete HTTP/1.1 answer that closes the connection."""
    data = body.encode() if isinstance(body, str) else body
    lines = [
        f"HTTP/1.1 {status} {reason}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(data)}",
        "Connection: close",
        *(f"{k}: {v}" for k, v in (headers or {}).items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + data


def json_reply(status: int, value: Any, **kwargs: Any) -> bytes:
    return http_reply(status, json.dumps(value), **kwargs)


def error_reply(status: int, message: str, **kwargs: Any) -> bytes:
    return json_reply(status, {"code": status, "message": message}, **kwargs)


def cut_short(reply: bytes, keep: int) -> Reply:
    """Send the first ``keep`` bytes of ``reply``, then close: an answer lost half-way."""

    def send(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(reply[:keep])

    return send


def after(seconds: float, reply: bytes) -> Reply:
    """Answer only after ``seconds`` (cut short when the server stops)."""

    def send(conn: socket.socket, stop: threading.Event) -> None:
        if not stop.wait(seconds):
            conn.sendall(reply)

    return send


@dataclass
class Seen:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes


@dataclass
class FaultServer:
    """HTTP on 127.0.0.1:<free port> answering request n with ``replies[n]`` (the last repeats).

    Every connection gets one answer and is closed, so each try of the client is
    one entry in ``seen``.
    """

    replies: list[Reply]
    seen: list[Seen] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                outer._answer(self.request)

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def _answer(self, conn: socket.socket) -> None:
        request = _read_request(conn)
        if request is None:
            return
        with self._lock:
            index = min(len(self.seen), len(self.replies) - 1)
            self.seen.append(request)
        reply = self.replies[index]
        try:
            if isinstance(reply, bytes):
                conn.sendall(reply)
            else:
                reply(conn, self._stop)
        except OSError:
            pass  # the client gave up first: that is what some cases test

    def __enter__(self) -> FaultServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def _read_request(conn: socket.socket) -> Seen | None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    request_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    method, target, *_ = request_line.split(" ")
    return Seen(method, target, headers, body)


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sleeps:
    """A ``sleep`` that only records: retries and backoff cost no test time."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def assert_clean_failure(result: Any, exit_code: int, *, json_mode: bool = False) -> str:
    """One ``Error:`` line on stderr (plus the JSON error in -o json), the exit code,
    no traceback. Returns the line."""
    assert result.exit_code == exit_code, (result.exit_code, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == (2 if json_mode else 1), result.stderr
    assert lines[0].startswith("Error: "), lines
    assert len(lines[0]) < 400, "one clear line, not a dump"
    if json_mode:
        error = json.loads(lines[1])["error"]
        assert error["exitCode"] == exit_code
        assert isinstance(error["message"], str) and error["message"]
    return lines[0]


SOURCE = {
    "id": "src_01J0000000000000000000000",
    "name": "web",
    "type": "javascript",
    "writeKey": "wk_abcdefghijklmnopqrstuvwxyz0123456",
    "status": "active",
    "eventsToday": 0,
    "createdAt": "2026-11-26T11:19:14.123Z",
}
