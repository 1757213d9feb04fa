"""The gate every request passes: bearer auth, the body size limits, CORS for sending
events, and the request log.

A plain ASGI middleware (no per-request Request objects), because it runs on
every event sent and its cost is paid by every sender.

The request log (logger ``boltic.requests``, to stderr under ``boltic server``): one
line per refused request (status 400 and above), always, so a broken integration
leaves a trace; one per accepted request only with ``access_log``. A line is
``TIME METHOD PATH STATUS REASON token=KIND``: TIME is UTC RFC 3339 with
milliseconds, REASON the answer's ``message: details`` (for a refusal), KIND
``admin``, ``write key``, ``none`` (no Authorization header) or ``invalid`` (a token
that is neither). The token itself is never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from boltic_cli.server.responses import (
    UNKNOWN_TOKEN,
    Problem,
    error_body,
    store_read,
    unauthorized,
)

if TYPE_CHECKING:
    from boltic_cli.server.store import SourceInfo, Store

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

EVENTS_PATH = "/v1/streams/events"
BATCH_PATH = "/v1/streams/events/batch"
BENCH_NOOP_PATH = "/v1/_bench/noop"
PUBLIC_PATHS = frozenset({"/v1/health", "/v1/openapi.json"})
# The only routes a source's write key may call (with POST).
WRITE_KEY_PATHS = frozenset({EVENTS_PATH, BATCH_PATH, BENCH_NOOP_PATH})
# The routes whose inserting statement checks the write key's source again, so the
# gate may take an active source as this process last saw it (Store.source_for_key).
INSERT_PATHS = frozenset({EVENTS_PATH, BATCH_PATH})
# Routes browsers may send to (CORS).
CORS_PATHS = frozenset({EVENTS_PATH, BATCH_PATH})
PRINCIPAL = "boltic.principal"
HEADERS = "boltic.headers"
CORS_ALLOW_HEADERS = "Authorization, Content-Type, Idempotency-Key"

request_log = logging.getLogger("boltic.requests")
# How much of an error body the log reads for its reason (an Error is small).
REASON_BODY_BYTES = 2048
REASON_CHARS = 200


@dataclass(frozen=True)
class Principal:
    """Who is calling: the admin, or a source's write key (``source_id`` set; ``source``
    the key's source as the gate read it from the store for this request, so the route
    need not read it again: a read made after this request started, or, for a plain
    send, the process's earlier view of an active source, which the inserting statement
    checks again: Store.source_for_key)."""

    scope: str  # stands for the token in Idempotency-Key scoping, without keeping it
    source_id: str | None = None
    source: SourceInfo | None = None

    @property
    def is_admin(self) -> bool:
        return self.source_id is None


def token_scope(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:32]


def principal(scope: Scope) -> Principal:
    """The caller the gate let through (routes behind the gate only)."""
    return scope[PRINCIPAL]


def header(scope: Scope, name: bytes) -> str | None:
    """A request header (``name`` in lower case) as parsed once by the gate."""
    value = scope[HEADERS].get(name)
    return None if value is None else value.decode("latin-1")


class RequestGate:
    def __init__(
        self,
        app: Any,
        *,
        admin_token: str,
        max_body_bytes: int,
        store: Callable[[], Store],
        max_batch_body_bytes: int | None = None,
        access_log: bool = False,
    ) -> None:
        self.app = app
        self._admin_token = admin_token.encode()
        self._admin = Principal(token_scope(admin_token))
        self.max_body_bytes = max_body_bytes
        # Per-route limits; every other route has max_body_bytes.
        self.route_limits = {BATCH_PATH: max_batch_body_bytes or max_body_bytes}
        self._store = store
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        method: str = scope["method"]
        headers = _headers(scope)
        scope[HEADERS] = headers
        send = _logged(send, scope, self, self.access_log)
        if method == "OPTIONS" and path in CORS_PATHS:
            await _send_preflight(headers, send)
            return
        limit = self.route_limits.get(path, self.max_body_bytes)
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            # The body is left unread, so the connection cannot carry another request.
            await _send_error(send, *self._length_refusal(length, limit), CLOSE)
            return
        recheck_key: str | None = None
        if path not in PUBLIC_PATHS:
            try:
                # An Idempotency-Key may replay an answer without inserting anything.
                recheck = (
                    method == "POST" and path in INSERT_PATHS and b"idempotency-key" not in headers
                )
                caller = await self._authenticate(headers.get(b"authorization"), recheck)
            except Problem as p:
                await _send_error(send, p.status_code, p.message, p.details, p.headers)
                return
            if recheck and caller.source is not None:
                recheck_key = caller.source.write_key
            if caller.source_id is not None and not (method == "POST" and path in WRITE_KEY_PATHS):
                await _send_error(
                    send,
                    403,
                    "forbidden",
                    "a write key may only POST /streams/events and /streams/events/batch",
                )
                return
            scope[PRINCIPAL] = caller
        if method in ("POST", "PUT", "PATCH"):
            receive = self._limit(receive, limit)
        if b"origin" in headers and path in CORS_PATHS:
            send = _allow_any_origin(send)
        if recheck_key is not None:
            send = self._refusals_rechecked(send, recheck_key)
        await self.app(scope, receive, send)

    def _refusals_rechecked(self, send: Send, write_key: str) -> Send:
        """``send`` for a request whose write key the gate may have passed from this
        process's earlier view of its source (Store.source_for_key, ``recheck_on_insert``).
        The inserting statement checks that view; a refusal made before any insert (400,
        403, 404, 413, 422) is answered 401 instead when the key is unknown now, as the
        gate would have answered it (design.md "Several server processes": a deleted
        source's key is refused at once, with 401). Outermost, so the 401 gets the CORS
        headers and the log line."""
        replaced = False

        async def checked(message: Message) -> None:
            nonlocal replaced
            if replaced:
                return  # the refusal's body, replaced by the 401
            if message["type"] == "http.response.start" and _refusal_before_insert(
                message["status"]
            ):
                try:
                    gone = await store_read(self._store().source_for_key(write_key)) is None
                except Problem:
                    gone = False  # the store is down: the route's refusal stands
                if gone:
                    replaced = True
                    p = unauthorized(UNKNOWN_TOKEN)
                    headers = dict(p.headers or {})
                    # A refusal that left the body unread closes the connection; so must this.
                    for name, value in message.get("headers", ()):
                        if name.lower() == b"connection":
                            headers["Connection"] = value.decode("latin-1")
                    await _send_error(send, p.status_code, p.message, p.details, headers)
                    return
            await send(message)

        return checked

    def _token_kind(self, headers: dict[bytes, bytes]) -> str:
        """What kind of token the request carries, for the log (never the token)."""
        value = headers.get(b"authorization")
        if not value:
            return "none"
        token = value.partition(b" ")[2].strip()
        if hmac.compare_digest(token, self._admin_token):
            return "admin"
        return "write key" if token.startswith(b"wk_") else "invalid"

    def _length_refusal(self, length: bytes, limit: int) -> tuple[int, str, str]:
        if not length.isdigit():
            return 400, "bad request", "invalid Content-Length"
        return (413, "request body too large", f"the limit is {limit} bytes, got {int(length)}")

    async def _authenticate(self, header: bytes | None, recheck_on_insert: bool) -> Principal:
        if not header:
            raise unauthorized("missing Authorization: Bearer <token>")
        scheme, _, token = header.partition(b" ")
        token = token.strip()
        if scheme.lower() != b"bearer" or not token:
            raise unauthorized("expected Authorization: Bearer <token>")
        if hmac.compare_digest(token, self._admin_token):
            return self._admin
        if token.startswith(b"wk_"):
            text = token.decode("ascii", "replace")
            # A dict lookup hashes the key first, so its timing says nothing
            # useful about how much of a guessed key was right.
            source = await store_read(
                self._store().source_for_key(text, recheck_on_insert=recheck_on_insert)
            )
            if source is not None and hmac.compare_digest(source.write_key.encode(), token):
                return Principal(token_scope(text), source.id, source)
        raise unauthorized(UNKNOWN_TOKEN)

    def _limit(self, receive: Receive, limit: int) -> Receive:
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # Raised before the rest is read: a chunked body is cut off here.
                    raise Problem(
                        413, "request body too large", f"the limit is {limit} bytes", CLOSE
                    )
            return message

        return limited


def _logged(send: Send, scope: Scope, gate: RequestGate, access_log: bool) -> Send:
    """``send`` that logs the request's answer when it is a refusal (or always, with
    ``access_log``) once its body is complete. Accepted answers cost a comparison or
    two; the token kind is worked out only for a line that is written."""
    status = 0
    body = b""

    async def send_and_log(message: Message) -> None:
        nonlocal status, body
        await send(message)
        if message["type"] == "http.response.start":
            status = message["status"]
            return
        if message["type"] != "http.response.body" or not (status >= 400 or access_log):
            return
        if status >= 400 and len(body) < REASON_BODY_BYTES:
            body += message.get("body", b"")[: REASON_BODY_BYTES - len(body)]
        if not message.get("more_body", False):
            kind = gate._token_kind(scope[HEADERS])
            line = log_line(scope, status, _reason(status, body), kind)
            request_log.log(logging.WARNING if status >= 400 else logging.INFO, line)

    return send_and_log


def _refusal_before_insert(status: int) -> bool:
    """A refusal the key's state could change: not 401 (already the key's) or 503."""
    return status >= 400 and status not in (401, 503)


def log_line(scope: Scope, status: int, reason: str, token_kind: str) -> str:
    """One request-log line: time, method, path, status, reason, token kind."""
    from boltic_cli.models import format_time

    now = format_time(datetime.now(UTC))
    path = _printable(scope.get("path", ""))
    reason = f" {reason}" if reason else ""
    return f"{now} {scope.get('method', '?')} {path} {status}{reason} token={token_kind}"


def _reason(status: int, body: bytes) -> str:
    """``message: details`` from an Error body, cut to REASON_CHARS; "" when accepted."""
    if status < 400:
        return ""
    try:
        error = json.loads(body)
        parts = [str(error[k]) for k in ("message", "details") if error.get(k)]
    except (ValueError, TypeError, AttributeError):
        parts = []
    text = _printable(": ".join(parts)) or "(no reason given)"
    return text if len(text) <= REASON_CHARS else text[: REASON_CHARS - 1] + "…"


def _printable(text: str) -> str:
    """``text`` with anything a terminal could act on escaped (paths and details may
    carry what a stranger sent)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def _headers(scope: Scope) -> dict[bytes, bytes]:
    return {k.lower(): v for k, v in scope["headers"]}


# Sent with a refusal that leaves a body unread: uvicorn then closes the connection
# at once instead of reading and discarding the rest.
CLOSE = {"Connection": "close"}


async def _send_error(
    send: Send,
    status: int,
    message: str,
    details: str | None = None,
    headers: dict[str, str] | None = None,
) -> None:
    body = error_body(status, message, details)
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def _send_preflight(headers: dict[bytes, bytes], send: Send) -> None:
    requested = headers.get(b"access-control-request-headers")
    raw = [
        (b"access-control-allow-origin", b"*"),
        (b"access-control-allow-methods", b"POST, OPTIONS"),
        (b"access-control-allow-headers", requested or CORS_ALLOW_HEADERS.encode()),
        (b"access-control-max-age", b"600"),
        (b"vary", b"Origin"),
        (b"content-length", b"0"),
    ]
    await send({"type": "http.response.start", "status": 204, "headers": raw})
    await send({"type": "http.response.body", "body": b""})


def _allow_any_origin(send: Send) -> Send:
    async def send_with_cors(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [
                *message.get("headers", []),
                (b"access-control-allow-origin", b"*"),
            ]
        await send(message)

    return send_with_cors
