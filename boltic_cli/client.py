"""The thin HTTP layer: one typed method per operationId of the Streams API.

One ``httpx.Client`` per ``BolticClient`` (keep-alive across the calls of one
command run). Every failure leaves as an exception from ``boltic_cli.errors``;
the admin token never appears in a URL, a hook call or an error message.
"""

from __future__ import annotations

import errno
import json as jsonlib
import random
import re
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import quote

from boltic_cli._compat import httpx_client_transport, skip_httpx_cli

skip_httpx_cli()  # before the first `import httpx`: spares ~45 ms per request command

import httpx
import pydantic

from boltic_cli import __version__
from boltic_cli.client_transport import LazyTLSTransport, PreparedPost
from boltic_cli.durations import parse_retry_after
from boltic_cli.errors import (
    APIError,
    BolticError,
    ConfigError,
    ExtensionUnavailable,
    NetworkError,
    NotFound,
    RequestTimeout,
    UnexpectedResponse,
    UsageError,
    error_for_status,
)
from boltic_cli.models import (
    MAX_BATCH_ITEMS,
    DebugResult,
    Delivery,
    DeliveryList,
    DeliveryTestResult,
    DestinationList,
    Error,
    Event,
    EventAccepted,
    EventBatchResult,
    EventInput,
    EventQueryResult,
    EventSummary,
    ReplayResult,
    SourceList,
    StreamDestination,
    StreamDestinationInput,
    StreamDestinationUpdate,
    StreamSource,
    StreamSourceInput,
    StreamSourceUpdate,
    WireModel,
    format_time,
)

# What send_events answers: accepted/rejected counts and one entry per item, in order.
BatchResult = EventBatchResult
ResponseHook = Callable[[str, str, int | None, float], None]
M = TypeVar("M", bound=WireModel)

CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 30.0
RETRY_STATUSES = frozenset({429, 502, 503, 504})
BACKOFF_BASE = 0.5
BACKOFF_CAP = 8.0
# A server asking for a longer pause than this is not coming back within one
# command run; waiting would only make the user wait for the same error.
MAX_RETRY_AFTER = 60.0
# The largest `limit` GET /streams/events takes (spec: 1..1000).
MAX_EVENTS_LIMIT = 1000
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
LOGIN_HINT = "run 'boltic auth login'"
LOCAL_SERVER_HINT = "is `boltic server` running with another token?"
# A 401 for a write key says nothing about the admin token or a login.
WRITE_KEY_HINT = (
    "this server does not know the write key: its source may have been deleted, "
    "or the key belongs to another server"
)
REDACTED = "***"
# design.md (Ids): a token starting with this is a source's write key, which may
# only POST /streams/events (and the batch route); the CLI makes no other call with one.
WRITE_KEY_PREFIX = "wk_"
WRITE_KEY_ROUTES = frozenset({("POST", "/streams/events"), ("POST", "/streams/events/batch")})

# The spec's own operations' paths (below the base URL): a 404 "no route" on one of
# them means the API URL is wrong, not the id.
SPEC_LISTS = frozenset({"/streams/sources", "/streams/destinations"})
SPEC_ROUTES = (
    re.compile(r"^/streams/(sources|events|destinations)$"),
    re.compile(r"^/streams/sources/[^/]+(/debug)?$"),
)

# What a request body is called in a message (not its model's name).
INPUT_NAMES = {
    "StreamSourceInput": "source",
    "EventInput": "event",
    "StreamDestinationInput": "destination",
}

_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _clean(text: str, limit: int = 500) -> str:
    """Server text bound for a terminal line: no control characters, bounded length."""
    text = _CONTROL_CHARS.sub("?", text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _full_jitter(attempt: int) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base * 2**attempt)]."""
    return random.uniform(0.0, min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt))


def _connection_reason(exc: BaseException) -> str:
    """Why a connection failed, in a few words, from the OS error under httpx's."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, ConnectionRefusedError) or (
            isinstance(cause, OSError) and cause.errno == errno.ECONNREFUSED
        ):
            return "connection refused"
        if isinstance(cause, ConnectionResetError):
            return "connection reset"
        if isinstance(cause, socket.gaierror):
            return "host name not resolved"
        if isinstance(cause, ssl.SSLError):
            return f"TLS error ({cause.reason or cause.__class__.__name__})"
        cause = cause.__cause__ or cause.__context__
    if isinstance(exc, httpx.RemoteProtocolError):
        return "connection closed by the server"
    text = str(exc).lower()
    if "refused" in text:
        return "connection refused"
    if "reset" in text:
        return "connection reset"
    return str(exc) or exc.__class__.__name__


def _body_json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


class BolticClient:
    """The Streams API, one method per operation, returning ``boltic_cli.models``."""

    def __init__(
        self,
        base_url: str,
        token: str | None,
        *,
        timeout: float | None = None,
        transport: httpx.BaseTransport | None = None,
        retries: int = 3,
        on_response: ResponseHook | None = None,
        sleep: Callable[[float], None] = time.sleep,
        user_agent: str | None = None,
    ) -> None:
        try:
            url = httpx.URL(base_url.rstrip("/") + "/")
        except httpx.InvalidURL as e:
            raise ConfigError(f"invalid API URL {base_url!r}: {e}") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise ConfigError(f"invalid API URL {base_url!r}: expected http(s)://host/...")
        self.base_url = url
        self._token = token or None
        self._retries = max(1, retries)
        self._on_response = on_response
        self._sleep = sleep
        headers = {
            "User-Agent": user_agent or f"boltic-cli/{__version__}",
            "Accept": "application/json",
        }
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        read = timeout if timeout is not None else READ_TIMEOUT
        self._http = httpx.Client(
            base_url=url,
            headers=headers,
            timeout=httpx.Timeout(read, connect=min(CONNECT_TIMEOUT, read)),
            transport=transport or LazyTLSTransport(),
            follow_redirects=False,
        )
        self._own_transport = transport is None
        self._event_post: PreparedPost | None = None
        self._batch_post: PreparedPost | None = None
        self._ssl_context: ssl.SSLContext | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> BolticClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    @property
    def is_write_key(self) -> bool:
        """Whether the token is a source's write key (``wk_...``): it may only send events."""
        return bool(self._token) and self._token.startswith(WRITE_KEY_PREFIX)

    # Operations (one per operationId)

    def list_stream_sources(self) -> list[StreamSource]:
        return self._call("GET", "/streams/sources", SourceList).data

    def create_stream_source(self, body: StreamSourceInput | dict) -> StreamSource:
        payload = self._wire(StreamSourceInput, body)
        return self._call("POST", "/streams/sources", StreamSource, json=payload)

    def get_stream_source(self, source_id: str) -> StreamSource:
        return self._call("GET", f"/streams/sources/{self._segment(source_id)}", StreamSource)

    def update_stream_source(self, source_id: str, body: StreamSourceUpdate | dict) -> StreamSource:
        """``PATCH /streams/sources/{id}``: our server's extension (design.md, "Sources").

        A spec-only server has the path (GET, DELETE) but not the method: its 405, or a
        404 for a source the spec's GET then finds, is ``ExtensionUnavailable``; a 404
        for a source that is not there stays ``NotFound``.
        """
        payload = self._wire(StreamSourceUpdate, body)
        path = f"/streams/sources/{self._segment(source_id)}"
        try:
            return self._call("PATCH", path, StreamSource, json=payload)
        except APIError as e:
            # Only on this error path: a GET tells a missing route from a missing source.
            if e.status == 405 or (isinstance(e, NotFound) and self._source_exists(source_id)):
                raise _extension_unavailable(e.status, "PATCH", path, "updating sources") from None
            raise

    def _source_exists(self, source_id: str) -> bool:
        try:
            self.get_stream_source(source_id)
        except NotFound:
            return False
        return True

    def delete_stream_source(self, source_id: str) -> None:
        self._call("DELETE", f"/streams/sources/{self._segment(source_id)}", None)

    def debug_stream_source(self, source_id: str, *, limit: int | None = None) -> DebugResult:
        path = f"/streams/sources/{self._segment(source_id)}/debug"
        return self._call("GET", path, DebugResult, params=self._params(limit=limit))

    def send_event(
        self, body: EventInput | dict, *, idempotency_key: str | None = None
    ) -> EventAccepted:
        payload = self._wire(EventInput, body)
        return self.send_event_json(encode_json(payload), idempotency_key=idempotency_key)

    def send_event_json(
        self, payload: bytes, *, idempotency_key: str | None = None
    ) -> EventAccepted:
        """POST an EventInput already serialised (the caller vouches for its shape)."""
        return self._post_event(self._prepared_event_post(), payload, idempotency_key)

    # Batch ingest (extension, design.md "Batch ingest": POST /streams/events/batch)

    def send_events(
        self, items: Sequence[EventInput | dict], *, idempotency_key: str | None = None
    ) -> BatchResult:
        """Send 1..500 events in one ``POST /streams/events/batch``; one result per item.

        Dict items are sent as given (the server judges each one: a bad item is a
        ``rejected`` entry with the API's ``Error``, not an exception); ``EventInput``
        models are sent with ``to_wire()``. The answer comes after every accepted item
        is committed. ``idempotency_key`` (a fresh one by default) is kept by the
        retries, so a retried batch is stored once. Raises ``UsageError`` for an empty
        or over-long list or a value JSON cannot hold (NaN), ``ExtensionUnavailable``
        when the server has no batch route (404/405: a spec-only server; send the
        items one by one with ``send_event`` instead), ``BadRequest`` for a refused
        body (400/422; 413 over 512 KiB), and the rest of the error tree as any call.
        """
        if not 1 <= len(items) <= MAX_BATCH_ITEMS:
            raise UsageError(f"a batch holds 1 to {MAX_BATCH_ITEMS} events, got {len(items)}")
        try:
            encoded = [
                encode_json(item.to_wire() if isinstance(item, WireModel) else item)
                for item in items
            ]
        except (TypeError, ValueError) as e:
            raise UsageError("an event cannot be sent as JSON", details=str(e)) from None
        return self.send_events_json(batch_body(encoded), idempotency_key=idempotency_key)

    def send_events_json(
        self, payload: bytes, *, idempotency_key: str | None = None
    ) -> BatchResult:
        """POST an ``EventBatchInput`` already serialised (see ``batch_body``)."""
        return self._post_batch(self._prepared_batch_post(), payload, idempotency_key)

    def _post_batch(
        self, prepared: PreparedPost, payload: bytes, idempotency_key: str | None
    ) -> BatchResult:
        key = idempotency_key or str(uuid.uuid4())
        response = self._send_with_retries(prepared.request(payload, key), prepared.send)
        if response.status_code in (404, 405):
            error = self._api_error(response)
            raise ExtensionUnavailable(
                response.status_code,
                "this server does not offer batch ingest (POST /streams/events/batch)",
                details=error.message,
            )
        self.raise_for_status(response)
        try:
            # Straight from the bytes: half the CPU of json.loads + validate, per item.
            return EventBatchResult.model_validate_json(response.content)
        except pydantic.ValidationError:
            return self._parse(response, EventBatchResult)  # says what is wrong

    def _prepared_batch_post(self) -> PreparedPost:
        if self._batch_post is None:
            self._batch_post = PreparedPost(self._http, self.base_url.join("streams/events/batch"))
        return self._batch_post

    def event_sender(self) -> EventSender:
        """A sender of events for one worker thread, over a keep-alive connection of its own.

        Threads sharing one connection pool pay for it on every request (the pool
        is scanned and each idle connection polled under a shared lock). With an
        injected transport or a proxy, the sender shares the client's instead.
        """
        prepared = self._prepared_event_post()
        batch = self._prepared_batch_post()
        transport = self._new_event_transport(prepared) if self._own_transport else None
        if transport is None:
            return EventSender(self, prepared, batch)
        # Both routes over the one connection of this sender; close() closes it once.
        events, batches = prepared.with_transport(transport), batch.with_transport(transport)
        return EventSender(self, events, batches)

    def query_events(
        self,
        *,
        source_id: str | None = None,
        event_type: str | None = None,
        from_: datetime | None = None,
        to: datetime | None = None,
        limit: int | None = None,
    ) -> EventQueryResult:
        params = self._params(
            sourceId=source_id,
            eventType=event_type,
            **{"from": format_time(from_) if from_ is not None else None},
            to=format_time(to) if to is not None else None,
            limit=limit,
        )
        return self._call("GET", "/streams/events", EventQueryResult, params=params)

    def list_stream_destinations(self) -> list[StreamDestination]:
        return self._call("GET", "/streams/destinations", DestinationList).data

    def create_stream_destination(self, body: StreamDestinationInput | dict) -> StreamDestination:
        payload = self._wire(StreamDestinationInput, body)
        return self._call("POST", "/streams/destinations", StreamDestination, json=payload)

    # Destinations that deliver (extensions, design.md "Destinations that deliver").
    # Each raises ExtensionUnavailable when the server does not have the route (404/405
    # for the route itself: see _extension_call), NotFound for an unknown id.

    def get_stream_destination(self, destination_id: str) -> StreamDestination:
        """``GET /streams/destinations/{id}`` (extension)."""
        path = f"/streams/destinations/{self._segment(destination_id)}"
        return self._extension_call("GET", path, StreamDestination, what="getting a destination")

    def update_stream_destination(
        self, destination_id: str, body: StreamDestinationUpdate | dict
    ) -> StreamDestination:
        """``PATCH /streams/destinations/{id}`` with any of ``name``, ``config`` (replaced
        whole; the server keeps a webhook's signing secret unless one is given), ``status``."""
        payload = self._wire(StreamDestinationUpdate, body)
        path = f"/streams/destinations/{self._segment(destination_id)}"
        return self._extension_call(
            "PATCH", path, StreamDestination, json=payload, what="updating destinations"
        )

    def delete_stream_destination(self, destination_id: str) -> None:
        """``DELETE /streams/destinations/{id}`` (extension): with its deliveries."""
        path = f"/streams/destinations/{self._segment(destination_id)}"
        self._extension_call("DELETE", path, None, what="deleting destinations")

    def list_destination_deliveries(
        self,
        destination_id: str,
        *,
        status: str | None = None,
        event_id: str | None = None,
        limit: int | None = None,
    ) -> list[Delivery]:
        """``GET .../{id}/deliveries``: newest first; ``status`` pending|succeeded|failed,
        ``limit`` 1..500 (server default 100)."""
        path = f"/streams/destinations/{self._segment(destination_id)}/deliveries"
        params = self._params(status=status, eventId=event_id, limit=limit)
        result = self._extension_call(
            "GET", path, DeliveryList, params=params, what="a delivery log"
        )
        return result.data

    def get_destination_delivery(self, destination_id: str, delivery_id: str) -> Delivery:
        """``GET .../{id}/deliveries/{deliveryId}``: one delivery with ``history``, every
        attempt oldest first."""
        path = (
            f"/streams/destinations/{self._segment(destination_id)}"
            f"/deliveries/{self._segment(delivery_id)}"
        )
        return self._extension_call("GET", path, Delivery, what="a delivery log")

    def test_stream_destination(self, destination_id: str) -> DeliveryTestResult:
        """``POST .../{id}/test``: the server delivers a ``boltic.test`` event now and
        answers with that one attempt (nothing is stored)."""
        path = f"/streams/destinations/{self._segment(destination_id)}/test"
        return self._extension_call(
            "POST", path, DeliveryTestResult, json={}, what="test deliveries"
        )

    def replay_destination_deliveries(
        self, destination_id: str, *, status: str = "failed", since: datetime | None = None
    ) -> ReplayResult:
        """``POST .../{id}/replay``: the deliveries in ``status`` created at or after
        ``since`` are queued again (a fresh retry schedule); answers ``queued``."""
        path = f"/streams/destinations/{self._segment(destination_id)}/replay"
        body: dict[str, Any] = {"status": status}
        if since is not None:
            body["since"] = format_time(since)
        return self._extension_call("POST", path, ReplayResult, json=body, what="replaying")

    def follow_deliveries(
        self,
        destination_id: str,
        *,
        status: str | None = None,
        event_id: str | None = None,
        interval: float = 1.0,
        duration: float | None = None,
        limit: int = 100,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] | None = None,
    ) -> Iterator[Delivery]:
        """Deliveries as their attempts happen: polls the delivery log every ``interval``
        seconds (the log has no cursor) and yields a delivery each time it is new or its
        ``attempts``/``status`` changed, oldest change first; the first poll only sets the
        baseline. Ends after ``duration`` seconds (None: never; Ctrl-C ends it). Raises
        what ``list_destination_deliveries`` raises. Seen ids are bounded by the page
        (``limit``, at most 500): a delivery that falls off the page is forgotten.
        """
        pause = sleep or self._sleep
        started = clock()
        seen: dict[str, tuple[int | None, str | None]] | None = None
        while True:
            page = self.list_destination_deliveries(
                destination_id, status=status, event_id=event_id, limit=limit
            )
            current = {d.id: (d.attempts, d.status) for d in page if d.id}
            if seen is not None:
                for delivery in reversed(page):  # newest first on the wire
                    if delivery.id and seen.get(delivery.id) != current[delivery.id]:
                        yield delivery
            seen = current
            if duration is not None and clock() - started >= duration:
                return
            wait = interval
            if duration is not None:
                wait = max(0.0, min(interval, duration - (clock() - started)))
            pause(wait)

    def _extension_call(
        self, method: str, path: str, model: type[M] | None, *, what: str, **kwargs: Any
    ) -> Any:
        """``_call`` for an extension route. 405, or a 404 that is about the route (no
        JSON Error, a "no route" detail, or a bare "not found" that names nothing: what
        a spec-only server says for a path it lacks), becomes ``ExtensionUnavailable``;
        a 404 naming the resource ("destination not found") stays ``NotFound``."""
        response = self.request(method, path, **kwargs)
        if response.status_code in (404, 405) and (
            response.status_code == 405 or _route_missing(response)
        ):
            raise _extension_unavailable(response.status_code, method, path, what)
        self.raise_for_status(response)
        return None if model is None else self._parse(response, model)

    # The raw request, for `boltic api`

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Any = None,
        json: Any = None,
        content: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """One API call with auth, retries, timeouts and the hook; any status is returned."""
        method = method.upper()
        request_headers = dict(headers or {})
        if method == "POST" and not any(k.lower() == "idempotency-key" for k in request_headers):
            # The key is what makes retrying a POST safe: the server answers a
            # repeated key with the first answer instead of storing twice.
            request_headers["Idempotency-Key"] = str(uuid.uuid4())
        request = self._http.build_request(
            method,
            self._relative(path),
            params=params,
            json=json,
            content=content,
            headers=request_headers,
        )
        return self._send_with_retries(request, self._http.send)

    def raise_for_status(self, response: httpx.Response) -> None:
        """Raise the error-tree exception for a non-2xx answer (with the server's message)."""
        if not response.is_success:
            raise self._api_error(response)

    # Internals

    def _call(
        self,
        method: str,
        path: str,
        model: type[M] | None,
        *,
        params: Any = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        if self.is_write_key and (method, path) not in WRITE_KEY_ROUTES:
            raise UsageError(
                f"a write key (wk_...) can only send events, not {method} {path}; "
                "use an admin token (BOLTIC_TOKEN or 'boltic auth login')"
            )
        response = self.request(method, path, params=params, json=json, headers=headers)
        self.raise_for_status(response)
        if model is None:
            return None
        return self._parse(response, model)

    def _parse(self, response: httpx.Response, model: type[M]) -> M:
        try:
            body = response.json()
        except ValueError:
            kind = response.headers.get("content-type", "no content type")
            raise UnexpectedResponse(
                f"{self._where(response)} answered {response.status_code} "
                "with a body that is not JSON",
                details=_clean(kind),
                status=response.status_code,
            ) from None
        try:
            return model.model_validate(body)
        except pydantic.ValidationError as e:
            from boltic_cli.models import problem_field, problem_phrase

            problems = "; ".join(
                f"{problem_field(err)} {problem_phrase(err)}" for err in e.errors()[:5]
            )
            raise UnexpectedResponse(
                f"{self._where(response)} answered {response.status_code} "
                "with JSON of the wrong shape",
                details=_clean(problems),
                status=response.status_code,
            ) from None

    def _where(self, response: httpx.Response) -> str:
        return f"{response.request.method} {self._redact(response.request.url)}"

    def _post_event(
        self, prepared: PreparedPost, payload: bytes, idempotency_key: str | None
    ) -> EventAccepted:
        # The request is cloned from one prepared for this route, which skips
        # httpx's per-call URL merging and header building: most of the client's
        # CPU per event. Auth, retries, timeouts and the hook are those of any call.
        key = idempotency_key or str(uuid.uuid4())
        response = self._send_with_retries(prepared.request(payload, key), prepared.send)
        self.raise_for_status(response)
        return self._parse(response, EventAccepted)

    def _new_event_transport(self, prepared: PreparedPost) -> httpx.HTTPTransport | None:
        if prepared.transport is not httpx_client_transport(self._http):  # a proxy
            return None
        if self.base_url.scheme == "http":
            # No TLS on this route: spares loading the CA bundle (~80 ms) per run.
            return httpx.HTTPTransport(verify=False)
        with self._lock:
            if self._ssl_context is None:
                # Loading the CA bundle takes tens of ms: once per client, not per thread.
                self._ssl_context = httpx.create_ssl_context(trust_env=True)
        return httpx.HTTPTransport(verify=self._ssl_context)

    def _prepared_event_post(self) -> PreparedPost:
        # Built on first use; two threads racing here build equal objects.
        if self._event_post is None:
            self._event_post = PreparedPost(self._http, self.base_url.join("streams/events"))
        return self._event_post

    def _api_error(self, response: httpx.Response) -> APIError:
        status = response.status_code
        body = _body_json(response)
        message = details = None
        if isinstance(body, dict):
            try:
                error = Error.model_validate(body)
                message, details = error.message, error.details
            except pydantic.ValidationError:
                # Not the spec's Error (e.g. details as an object): take what reads as text.
                message = body.get("message") if isinstance(body.get("message"), str) else None
                raw = body.get("details")
                details = None if raw is None else str(raw)
        if not message:
            message = f"HTTP {status} {response.reason_phrase}".rstrip()
        error = error_for_status(status, _clean(message), _clean(details) if details else None)
        if status == 401:
            error.hint = self._unauthorized_hint()
        elif status == 404 and self._missing_route(response, message, details):
            error.hint = self._base_path_hint()
        elif status == 429:
            error.hint = "rate limited; try again later"
        return error

    def _missing_route(self, response: httpx.Response, message: str, details: str | None) -> bool:
        """Whether a 404 says that one of the spec's own routes is not there: the API
        URL is then wrong, most often for a missing ``/v1``. A list (GET sources or
        destinations, which always exist) answering 404, or any spec route answered
        with "no route" (our server's text)."""
        base = self.base_url.path.rstrip("/")
        path = response.request.url.path
        if not path.startswith(base):
            return False
        relative = path[len(base) :]
        if response.request.method == "GET" and relative in SPEC_LISTS:
            return True
        text = f"{message} {details or ''}".lower()
        return "no route" in text and any(r.match(relative) for r in SPEC_ROUTES)

    def _base_path_hint(self) -> str:
        base = str(self.base_url).rstrip("/")
        if not self.base_url.path.rstrip("/").endswith("/v1"):
            return (
                f"the API URL {base} may lack /v1: try {base}/v1 "
                "(--api-url, BOLTIC_API_URL or 'boltic config set api_url')"
            )
        return f"is {base} the Streams API? check the API URL"

    def _unauthorized_hint(self) -> str:
        if self.is_write_key:
            return WRITE_KEY_HINT
        # The client does not know the profile; the local profile is the one on loopback.
        if self.base_url.host in LOOPBACK_HOSTS:
            return LOCAL_SERVER_HINT
        return LOGIN_HINT

    def _send_with_retries(
        self, request: httpx.Request, send: Callable[[httpx.Request], httpx.Response]
    ) -> httpx.Response:
        replayable = request.method in IDEMPOTENT_METHODS or "idempotency-key" in request.headers
        attempt = 0
        while True:
            attempt += 1
            last = attempt >= self._retries
            try:
                response = self._send_once(request, send)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as e:
                # Nothing reached the server: any method may be tried again.
                if last:
                    raise self._transport_error(request, e) from None
                self._sleep(_full_jitter(attempt - 1))
                continue
            except httpx.TimeoutException as e:
                # A slow server gets no second chance: retrying would multiply the
                # wait the user asked for with --request-timeout.
                raise self._transport_error(request, e) from None
            except httpx.TransportError as e:
                if last or not replayable:
                    raise self._transport_error(request, e) from None
                self._sleep(_full_jitter(attempt - 1))
                continue
            if last or not replayable or response.status_code not in RETRY_STATUSES:
                return response
            delay = self._retry_delay(response, attempt)
            if delay is None:
                return response
            response.close()
            self._sleep(delay)

    def _retry_delay(self, response: httpx.Response, attempt: int) -> float | None:
        """How long to wait before the next try, or None when waiting is pointless."""
        asked = parse_retry_after(response.headers.get("retry-after"))
        if asked is None:
            return _full_jitter(attempt - 1)
        if asked > MAX_RETRY_AFTER:
            return None
        return asked

    def _send_once(
        self, request: httpx.Request, send: Callable[[httpx.Request], httpx.Response]
    ) -> httpx.Response:
        started = time.monotonic()
        status: int | None = None
        try:
            response = send(request)
            status = response.status_code
            response.read()
            return response
        except httpx.DecodingError as e:
            raise UnexpectedResponse(
                f"{request.method} {self._redact(request.url)}: undecodable body",
                details=_clean(str(e)),
                status=status,
            ) from None
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as e:
            raise ConfigError(f"cannot request {self._redact(request.url)}: {e}") from None
        finally:
            if self._on_response is not None:
                elapsed = (time.monotonic() - started) * 1000
                self._on_response(request.method, self._redact(request.url), status, elapsed)

    def _transport_error(self, request: httpx.Request, exc: httpx.TransportError) -> BolticError:
        url = self._redact(request.url.copy_with(query=None))
        if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout):
            return RequestTimeout(f"cannot reach {url}: connect timed out")
        if isinstance(exc, httpx.TimeoutException):
            seconds = self._http.timeout.read
            return RequestTimeout(
                f"{request.method} {url} timed out after {seconds:g} s",
                hint="raise it with --request-timeout",
            )
        return NetworkError(f"cannot reach {url}: {self._scrub(_connection_reason(exc))}")

    def _redact(self, url: httpx.URL) -> str:
        """The URL as it may be shown: no user info, never the token."""
        if url.userinfo:
            url = url.copy_with(username=None, password=None)
        return self._scrub(str(url))

    def _scrub(self, text: str) -> str:
        if self._token:
            text = text.replace(self._token, REDACTED).replace(quote(self._token), REDACTED)
        return text

    def _relative(self, path: str) -> str:
        """``path`` below the base URL; refuses anything that would leave its host."""
        if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", path):
            base = str(self.base_url)
            if not path.startswith(base):
                raise UsageError(f"{path!r} is not below the API URL {base}")
            path = path[len(base) :]
        # A leading "//" would make httpx read a host name; any number of slashes is fine.
        return path.lstrip("/")

    @staticmethod
    def _segment(value: str) -> str:
        # Ids go in one path segment; "../" or "/" in one must not change the route.
        return quote(value, safe="")

    @staticmethod
    def _params(**values: Any) -> dict[str, Any]:
        return {k: v for k, v in values.items() if v is not None}

    @staticmethod
    def _wire(model: type[WireModel], body: WireModel | dict) -> dict[str, Any]:
        if isinstance(body, WireModel):
            return body.to_wire()
        try:
            return model.model_validate(body).to_wire()
        except pydantic.ValidationError as e:
            # In the user's words: the field's wire name and what it allows, no model names.
            from boltic_cli.models import problem_field, problem_phrase

            what = INPUT_NAMES.get(model.__name__, "input")
            problems = "; ".join(
                f"{problem_field(err, 'body')} {problem_phrase(err)}" for err in e.errors()
            )
            raise UsageError(f"invalid {what}: {_clean(problems)}") from None

    # -- paging without a cursor (events query --all) ------------------------------

    def iter_events(
        self,
        *,
        source_id: str | None = None,
        event_type: str | None = None,
        from_: datetime | None = None,
        to: datetime | None = None,
        page_size: int = MAX_EVENTS_LIMIT,
        on_summary: Callable[[EventSummary | None], None] | None = None,
        on_warning: Callable[[str], None] | None = None,
        on_missed: Callable[[int, datetime], None] | None = None,
    ) -> Iterator[Event]:
        """Every event matching the filters, newest first, fetched ``page_size`` at a time.

        The filters are ``query_events``' (``from_`` inclusive, ``to`` exclusive).
        ``GET /streams/events`` has no cursor (spec), so each next page asks for
        events before the oldest one seen (``to`` is exclusive, hence +1 ms, the API's
        time precision, to include its ties) and drops the ties already yielded. A
        full page that is all one millisecond cannot move on that way: that
        millisecond is then fetched on its own (``from`` = it, ``to`` = +1 ms, limit
        1000, the largest the spec allows) and the walk goes on before it. Only more
        than 1000 events in one millisecond cannot all be fetched:
        ``on_missed(count, timestamp)`` is told how many were left out (and
        ``on_warning``, one sentence). Events without a time end the walk with a
        warning. The page size is the walker's business, not a user's ``--limit``.
        ``on_summary`` gets the first page's ``summary`` (it counts every match).
        Raises what ``query_events`` raises; a request is made only as the iterator
        is consumed.

            with BolticClient(url, token) as client:
                for event in client.iter_events(event_type="signup"):
                    ...
        """
        one_ms = timedelta(milliseconds=1)

        def when(event: Event) -> datetime | None:
            return event.timestamp or event.received_at

        filters = {"source_id": source_id, "event_type": event_type}
        boundary_ids: set[str] = set()
        first = True
        while True:
            result = self.query_events(**filters, from_=from_, to=to, limit=page_size)
            if first and on_summary is not None:
                on_summary(result.summary)
            first = False
            for event in result.data:
                if event.id not in boundary_ids:
                    yield event
            if len(result.data) < page_size:
                return
            newest, oldest = when(result.data[0]), when(result.data[-1])
            if oldest is None or newest is None:
                if on_warning is not None:
                    on_warning("events without a timestamp: cannot page further back")
                return
            if newest != oldest:
                to = oldest + one_ms
                boundary_ids = {e.id for e in result.data if e.id and when(e) == oldest}
                continue
            # A whole page in one millisecond: fetch that millisecond on its own.
            seen = boundary_ids | {e.id for e in result.data if e.id}
            tie = self.query_events(
                **filters, from_=oldest, to=oldest + one_ms, limit=MAX_EVENTS_LIMIT
            )
            for event in tie.data:
                if event.id not in seen:
                    yield event
            total = tie.summary.total_events if tie.summary is not None else None
            missed = (total or 0) - len(tie.data)
            if missed > 0 and total is not None:
                if on_warning is not None:
                    on_warning(
                        f"{missed:,} of {total:,} events at {format_time(oldest)} cannot be "
                        f"fetched (the API returns at most {MAX_EVENTS_LIMIT} per request)"
                    )
                if on_missed is not None:
                    on_missed(missed, oldest)
            to, boundary_ids = oldest, set()


_GENERIC_NOT_FOUND = {"not found", "not_found", "http 404 not found", "404 not found"}


def _route_missing(response: httpx.Response) -> bool:
    """Whether a 404 is about the route rather than a resource (see ``_extension_call``)."""
    body = _body_json(response)
    if not isinstance(body, dict) or not isinstance(body.get("message"), str):
        return True
    details = body.get("details")
    if isinstance(details, str) and details.lower().startswith("no route"):
        return True
    return body["message"].strip().lower() in _GENERIC_NOT_FOUND


def _extension_unavailable(status: int, method: str, path: str, what: str) -> ExtensionUnavailable:
    """The one way a missing extension is said (design.md "Extensions beyond the spec"):
    ``this server does not offer WHAT (METHOD /template is a boltic server extension)``."""
    return ExtensionUnavailable(
        status,
        f"this server does not offer {what} ({method} {_template(path)} is a "
        "boltic server extension)",
    )


def _template(path: str) -> str:
    """``/streams/destinations/dst_1/test`` as ``/streams/destinations/{id}/test``."""
    parts = path.split("/")
    if len(parts) > 3:
        parts[3] = "{id}"
    if len(parts) > 5:
        parts[5] = "{deliveryId}"
    return "/".join(parts)


# One encoder for every body: json.dumps with options builds a new one per call.
_COMPACT_JSON = jsonlib.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def encode_json(value: Any) -> bytes:
    """Compact UTF-8 JSON, as httpx would send ``json=``; NaN and Infinity raise
    ``ValueError`` (they are not JSON)."""
    return _COMPACT_JSON.encode(value).encode()


def batch_body(encoded_items: Sequence[bytes]) -> bytes:
    """The ``EventBatchInput`` body around items already encoded with ``encode_json``:
    ``len(batch_body(items)) == BATCH_OVERHEAD + sum(map(len, items)) + len(items) - 1``."""
    return b'{"batch":[' + b",".join(encoded_items) + b"]}"


BATCH_OVERHEAD = len(b'{"batch":[]}')


class EventSender:
    """``send_event``/``send_event_json`` of a client over a connection of its own.

    Made by ``BolticClient.event_sender()`` for one thread; close it (or use it as a
    context manager) when the thread is done.
    """

    def __init__(
        self, client: BolticClient, prepared: PreparedPost, batch: PreparedPost | None = None
    ) -> None:
        self._client = client
        self._prepared = prepared
        self._batch = batch or client._prepared_batch_post()

    def __enter__(self) -> EventSender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._prepared.close()

    def send_event(
        self, body: EventInput | dict, *, idempotency_key: str | None = None
    ) -> EventAccepted:
        payload = encode_json(self._client._wire(EventInput, body))
        return self.send_event_json(payload, idempotency_key=idempotency_key)

    def send_event_json(
        self, payload: bytes, *, idempotency_key: str | None = None
    ) -> EventAccepted:
        return self._client._post_event(self._prepared, payload, idempotency_key)

    def send_events_json(
        self, payload: bytes, *, idempotency_key: str | None = None
    ) -> BatchResult:
        """``BolticClient.send_events_json`` over this sender's connection."""
        return self._client._post_batch(self._batch, payload, idempotency_key)
