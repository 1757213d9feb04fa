"""The forwarding engine behind `debug forward`: live events POSTed to a local endpoint.

design.md, "Forwarding to a local endpoint": every event the tail yields is POSTed to
the URL the way the server's delivery would post it (``webhooks.delivery_headers``:
the Event as JSON, ``Content-Type: application/json``, Standard Webhooks headers with
``webhook-id`` = the event id, signed with the profile's local secret), and nothing is
lost silently:

- a ``transient`` outcome (``webhooks.classify``: no answer, timeout, 408, 429, 5xx) is
  retried with backoff (``webhooks.retry_delay`` on :data:`FORWARD_SCHEDULE`, capped,
  honouring ``Retry-After``) for as long as the run lasts, and later events wait
  behind it (in order at ``concurrency=1``);
- events waiting are bounded (``buffer``); past the bound the oldest waiting ones are
  dropped and a ``dropped`` record says how many;
- a ``rejected`` or ``gone`` outcome is reported and that event skipped;
- the tail's own status records (``gap``, ``reconnecting``, ``connected``) pass through.

The engine never imports the tail (engines import base and library only): the command
hands it the tail's ``records()`` iterator, which a reader thread drains into the
buffer while the caller's thread does the POSTs, so polling never waits for a slow
endpoint. It yields :class:`ForwardRecord`s and never prints; ``output.ForwardView``
and ``Output.follow_forward`` render them.
"""

from __future__ import annotations

import random as _random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from boltic_cli import __version__, webhooks
from boltic_cli.durations import parse_retry_after
from boltic_cli.errors import UsageError

if TYPE_CHECKING:
    import httpx

    from boltic_cli.models import Event
    from boltic_cli.settings import Settings

#: Pauses before each retry of one event (seconds), then the last one again and again:
#: a laptop's endpoint comes back in seconds, not hours (the server's schedule is longer).
FORWARD_SCHEDULE: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0, 10.0)
#: A ``Retry-After`` longer than this is cut to it (a local endpoint asking for an hour
#: is more likely a bug than a plan; the run keeps trying, reported each time).
MAX_RETRY_AFTER = 300.0
DEFAULT_BUFFER = 10_000
DEFAULT_ATTEMPT_TIMEOUT = 10.0
#: How long the forwarding loop waits for a new event before calling ``on_idle``.
IDLE_TICK = 0.25
#: Config key (per profile) holding the local signing secret.
SECRET_KEY = "forward_secret"
USER_AGENT = f"boltic-cli/{__version__} (debug forward)"


# -- the signing secret ------------------------------------------------------------------


def forward_secret(settings: Settings, *, create: bool = True) -> str:
    """The profile's local signing secret (``whsec_...``), made with
    ``webhooks.new_signing_secret`` and saved in the config file (0600, through
    ``ConfigFile.save``) on first use, so a receiver configured once keeps verifying.

    Raises ``ConfigError`` when the config file cannot be written, or when the stored
    value is not a usable secret (someone edited it).
    """
    from boltic_cli.errors import ConfigError

    stored = settings.config.profiles.get(settings.profile, {}).get(SECRET_KEY)
    if stored is not None:
        if not webhooks.is_signing_secret(stored):
            raise ConfigError(
                f"{settings.config_file}: [profiles.{settings.profile}] {SECRET_KEY} "
                "is not a whsec_ secret",
                hint=f"remove it with 'boltic config unset {SECRET_KEY}' to make a new one",
            )
        return stored
    secret = webhooks.new_signing_secret()
    if create:
        settings.config.set_value(settings.profile, SECRET_KEY, secret)
        settings.config.save()
    return secret


def check_url(url: str) -> str:
    """``url`` unchanged (query string and all) when it is an absolute http(s) URL with a
    host; ``UsageError`` (exit 2) otherwise."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        host = None
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not host:
        raise UsageError(f"--to must be an http:// or https:// URL with a host, not {url!r}")
    return url


# -- records -----------------------------------------------------------------------------


@dataclass
class ForwardRecord:
    """One thing the forwarder has to say.

    ``kind``: ``forwarded`` | ``failed`` (one per attempt), ``endpoint_down`` |
    ``endpoint_up``, ``dropped``, or a tail record passed through (``gap``,
    ``reconnecting``, ``connected``). ``at`` is the wall-clock time (UTC) it happened.
    For attempts: ``event``, ``attempt`` (1 = first try of that event), ``status``
    (None without an answer), ``reason`` (the status's reason phrase, or
    ``connection refused`` / ``timeout`` / ...), ``ms`` (the attempt's duration),
    ``outcome`` (``webhooks.Outcome`` value) and ``retry_in`` (seconds until the next
    try of a transient failure; None otherwise: the event was skipped).
    """

    kind: str
    at: datetime
    source_id: str = ""
    event: Event | None = None
    attempt: int = 0
    status: int | None = None
    reason: str = ""
    ms: float | None = None
    outcome: str | None = None
    retry_in: float | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def to_wire(self) -> dict[str, Any]:
        """The ndjson line: ``kind``, ``time`` and what this kind carries (camelCase)."""
        wire: dict[str, Any] = {"kind": self.kind, "time": _wire_time(self.at)}
        if self.event is not None:
            wire["eventId"] = self.event.id
            wire["type"] = self.event.type
            wire["sourceId"] = self.event.source_id or self.source_id
            wire["attempt"] = self.attempt
            if self.status is not None:
                wire["status"] = self.status
            wire["reason"] = self.reason
            if self.ms is not None:
                wire["ms"] = round(self.ms, 1)
            wire["outcome"] = self.outcome
            if self.retry_in is not None:
                wire["retryIn"] = round(self.retry_in, 3)
        elif self.source_id:
            wire["sourceId"] = self.source_id
        wire.update(self.info)
        return wire


@dataclass
class ForwardStats:
    """Counts of one run. ``forwarded``: events the endpoint took (2xx); ``failed``:
    events skipped after a ``rejected``/``gone`` answer; ``dropped``: events dropped
    past the buffer bound; ``pending``: events received and not yet settled
    (waiting or being retried); ``attempts`` and ``retries`` count POSTs."""

    started: float
    received: int = 0
    forwarded: int = 0
    failed: int = 0
    dropped: int = 0
    pending: int = 0
    attempts: int = 0
    retries: int = 0
    gaps: int = 0
    endpoint_up: bool | None = None  # None until the first answer or failure
    connected: bool = False  # the tail reaches the API

    @property
    def clean(self) -> bool:
        """Every event received was forwarded: nothing failed, dropped or left pending."""
        return not (self.failed or self.dropped or self.pending)

    def to_dict(self) -> dict[str, int]:
        return {
            "forwarded": self.forwarded,
            "failed": self.failed,
            "dropped": self.dropped,
            "pending": self.pending,
        }


@dataclass
class _Attempt:
    status: int | None
    reason: str
    ms: float
    retry_after: float | None
    outcome: webhooks.Outcome


@dataclass
class _Item:
    event: Event
    source_id: str
    attempts: int = 0
    not_before: float = 0.0  # monotonic time of the next try


# -- the events as the API returned them -----------------------------------------------


class OriginalEvents:
    """A client for the tail that also keeps each event's JSON object exactly as the
    debug endpoint returned it (unknown fields, key order), so the POST body is the
    Event as the API returns it, not as our model knows it.

    Wraps a ``BolticClient``: ``debug_stream_source`` is the spec's
    ``GET /streams/sources/{id}/debug`` through the client's ``request`` (auth,
    retries, timeouts, the verbose hook) and ``raise_for_status`` (the error tree);
    a body that is not a ``DebugResult`` is ``UnexpectedResponse`` as the client's own
    parse would make it. Everything else is the client's. Bounded: the last
    ``capacity`` event ids (:meth:`body` falls back to the model's wire form).
    """

    def __init__(self, client: Any, capacity: int = DEFAULT_BUFFER + 1000) -> None:
        from collections import OrderedDict

        self._client = client
        self.capacity = capacity
        self._raw: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def debug_stream_source(self, source_id: str, *, limit: int | None = None) -> Any:
        """The debug page (a ``DebugResult``), each event's JSON object remembered."""
        from urllib.parse import quote

        import pydantic

        from boltic_cli.errors import UnexpectedResponse
        from boltic_cli.models import DebugResult

        path = f"/streams/sources/{quote(source_id, safe='')}/debug"
        response = self._client.request(
            "GET", path, params=None if limit is None else {"limit": limit}
        )
        self._client.raise_for_status(response)
        try:
            body = response.json()
            page = DebugResult.model_validate(body)
        except (ValueError, pydantic.ValidationError) as e:
            raise UnexpectedResponse(
                f"GET {path} answered {response.status_code} with a body that is not a debug page",
                details=str(e).splitlines()[0],
                status=response.status_code,
            ) from None
        with self._lock:
            for item in body.get("data") or []:
                event_id = item.get("id") if isinstance(item, dict) else None
                if isinstance(event_id, str) and event_id not in self._raw:
                    self._raw[event_id] = item
                    while len(self._raw) > self.capacity:
                        self._raw.popitem(last=False)
        return page

    def body(self, event: Event) -> bytes:
        """The POST body of ``event``: its JSON object as the API returned it when
        remembered, else its wire form (:func:`event_body`)."""
        with self._lock:
            original = self._raw.get(event.id or "")
        return event_body(event) if original is None else encode(original)


# -- the engine --------------------------------------------------------------------------


class Forwarder:
    """Forward events to ``url``: iterate :meth:`records` over the tail's records for
    what happens.

    ``headers`` are added to every POST (the signature's and Content-Type cannot be
    replaced). ``attempt_timeout`` bounds each POST (seconds); ``concurrency`` is how
    many POSTs run at once (1 keeps order); ``buffer`` bounds the events waiting.
    ``max_events`` ends the run once that many events were received and settled;
    ``duration`` (seconds) ends it when it runs out, whatever is pending. Give the tail
    :meth:`sleep` as its ``sleep`` so it stops at once when the run ends.
    ``transport`` replaces httpx's (tests of faults a receiver cannot show).
    ``originals`` (the :class:`OriginalEvents` the tail polls through) supplies each
    event's JSON as the API returned it; without it the body is the model's wire form.
    """

    def __init__(
        self,
        url: str,
        secret: str,
        *,
        headers: Mapping[str, str] | None = None,
        attempt_timeout: float = DEFAULT_ATTEMPT_TIMEOUT,
        concurrency: int = 1,
        buffer: int = DEFAULT_BUFFER,
        max_events: int | None = None,
        duration: float | None = None,
        schedule: tuple[float, ...] = FORWARD_SCHEDULE,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        random: Callable[[], float] = _random.random,
        transport: httpx.BaseTransport | None = None,
        user_agent: str = USER_AGENT,
        originals: OriginalEvents | None = None,
    ) -> None:
        if not webhooks.is_signing_secret(secret):
            raise UsageError("the signing secret must be whsec_ followed by base64")
        self.url = check_url(url)
        self.secret = secret
        self.headers = dict(headers or {})
        self.attempt_timeout = attempt_timeout
        self.concurrency = max(1, concurrency)
        self.buffer = max(1, buffer)
        self.max_events = max_events
        self.schedule = schedule
        self.clock = clock
        self.wall_clock = wall_clock
        self.random = random
        self.transport = transport
        self.user_agent = user_agent
        self.originals = originals
        self.stats = ForwardStats(started=clock())
        self.deadline = None if duration is None else self.stats.started + duration
        self._cond = threading.Condition()
        self._waiting: deque[_Item] = deque()
        self._inflight: list[_Item] = []
        self._notices: deque[ForwardRecord] = deque()
        self._dropped_unreported = 0
        self._reader_done = False
        self._reader_error: BaseException | None = None
        self._stop = threading.Event()
        self._down_since: float | None = None

    # -- public --------------------------------------------------------------------------

    def sleep(self, seconds: float) -> None:
        """A ``sleep`` for the tail that returns early when the run ends."""
        self._stop.wait(max(seconds, 0.0))

    @property
    def pending(self) -> int:
        """Events received and not settled yet (waiting, or being tried), right now."""
        with self._cond:
            return len(self._waiting) + len(self._inflight)

    def stop(self) -> None:
        """End the run: the reader stops at its next record or pause."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()

    def records(
        self, tail_records: Iterable[Any], *, on_idle: Callable[[], None] | None = None
    ) -> Iterator[ForwardRecord]:
        """Forward the events of ``tail_records`` (the tail's ``records()``: items with
        ``.kind``, ``.source_id``, ``.event``, ``.to_wire()``), read by a thread of its
        own; yield attempts and notices as they happen, until the tail ends and every event is
        settled, ``max_events`` events were settled, or ``duration`` ran out.

        ``on_idle`` is called while waiting (for events, or before a retry), at least
        every :data:`IDLE_TICK` seconds: a live status line refreshes there. A fatal
        error of the tail (401/403/404) is raised here as soon as it is seen (events
        still pending stay counted in ``stats.pending``). On the way out (also on
        Ctrl-C) the reader is stopped and ``stats.pending`` is final.
        """
        import httpx

        reader = threading.Thread(
            target=self._read, args=(tail_records,), name="boltic-forward-tail", daemon=True
        )
        http = httpx.Client(
            timeout=httpx.Timeout(self.attempt_timeout),
            follow_redirects=False,
            transport=self.transport,
            limits=httpx.Limits(max_connections=max(10, self.concurrency)),
        )
        pool = None
        if self.concurrency > 1:
            from concurrent.futures import ThreadPoolExecutor

            pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="boltic-forward")
        reader.start()
        try:
            while True:
                yield from self._take_notices()
                if self._reader_error is not None:
                    raise self._reader_error  # what is pending is counted, not lost silently
                if self._expired():
                    break
                batch = self._next_batch(on_idle)
                if batch is None:
                    break
                if not batch:
                    continue
                yield from self._attempt(http, pool, batch)
            yield from self._take_notices()
        finally:
            self.stop()
            with self._cond:
                self.stats.pending = len(self._waiting) + len(self._inflight)
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)
            http.close()
            reader.join(timeout=1.0)

    # -- the reader thread: tail records into the buffer ---------------------------------

    def _read(self, tail_records: Iterable[Any]) -> None:
        try:
            for record in tail_records:
                if self._stop.is_set():
                    break
                self._take_tail_record(record)
                if self.max_events is not None and self.stats.received >= self.max_events:
                    break
        except BaseException as e:  # handed to the forwarding thread, raised there
            self._reader_error = e
        finally:
            with self._cond:
                self._reader_done = True
                self._cond.notify_all()

    def _take_tail_record(self, record: Any) -> None:
        with self._cond:
            if record.kind == "event" and record.event is not None:
                self.stats.received += 1
                self._waiting.append(_Item(record.event, record.source_id))
                excess = len(self._waiting) + len(self._inflight) - self.buffer
                while excess > 0 and self._waiting:
                    self._waiting.popleft()
                    self.stats.dropped += 1
                    self._dropped_unreported += 1
                    excess -= 1
            else:
                if record.kind == "gap":
                    self.stats.gaps += 1
                if record.kind == "connected":
                    self.stats.connected = True
                elif record.kind == "reconnecting":
                    self.stats.connected = False
                info = {k: v for k, v in record.to_wire().items() if k not in ("kind", "sourceId")}
                self._notices.append(
                    ForwardRecord(record.kind, self.wall_clock(), record.source_id, info=info)
                )
            self._cond.notify_all()

    # -- the forwarding thread -----------------------------------------------------------

    def _take_notices(self) -> Iterator[ForwardRecord]:
        with self._cond:
            notices = list(self._notices)
            self._notices.clear()
            dropped, self._dropped_unreported = self._dropped_unreported, 0
        yield from notices
        if dropped:
            yield ForwardRecord(
                "dropped",
                self.wall_clock(),
                info={
                    "count": dropped,
                    "totalDropped": self.stats.dropped,
                    "buffer": self.buffer,
                    "message": f"more than {self.buffer} events waiting; dropped the "
                    f"{dropped} oldest",
                },
            )

    def _next_batch(self, on_idle: Callable[[], None] | None) -> list[_Item] | None:
        """The events to try now (the retried ones first, in order); [] to go round the
        loop again (a notice to yield, time to refresh); None when all is done."""
        with self._cond:
            if not self._inflight:
                while self._waiting and len(self._inflight) < self.concurrency:
                    self._inflight.append(self._waiting.popleft())
            if not self._inflight:
                if self._reader_done:
                    return None
                self._wait(IDLE_TICK, on_idle)
                return []
            now = self.clock()
            due = min(item.not_before for item in self._inflight)
            if due > now:
                self._wait(min(due - now, IDLE_TICK), on_idle)
                return []
            return [item for item in self._inflight if item.not_before <= now]

    def _wait(self, seconds: float, on_idle: Callable[[], None] | None) -> None:
        """Wait (lock held) until woken or ``seconds`` pass; the deadline cuts it short."""
        if self._notices or self._dropped_unreported or self._stop.is_set():
            return
        if self.deadline is not None:
            seconds = min(seconds, max(self.deadline - self.clock(), 0.0))
        if on_idle is not None:
            self._cond.release()
            try:
                on_idle()
            finally:
                self._cond.acquire()
        if seconds > 0:
            self._cond.wait(seconds)

    def _attempt(
        self, http: httpx.Client, pool: Any, batch: list[_Item]
    ) -> Iterator[ForwardRecord]:
        if pool is None or len(batch) == 1:
            results = [self._post(http, item) for item in batch]
        else:
            results = list(pool.map(lambda item: self._post(http, item), batch))
        for item, result in zip(batch, results, strict=True):
            yield from self._settle(item, result)

    def _settle(self, item: _Item, result: _Attempt) -> Iterator[ForwardRecord]:
        now = self.clock()
        self.stats.attempts += 1
        if item.attempts:
            self.stats.retries += 1
        item.attempts += 1
        if result.status is not None and self._down_since is not None:
            yield ForwardRecord(
                "endpoint_up",
                self.wall_clock(),
                info={"url": self.url, "downFor": round(now - self._down_since, 3)},
            )
            self._down_since = None
        if result.status is not None:
            self.stats.endpoint_up = True
        retry_in = None
        if result.outcome is webhooks.Outcome.TRANSIENT:
            retry_in = self._retry_delay(item.attempts, result.retry_after)
            item.not_before = now + retry_in
            if result.status is None and self._down_since is None:
                self._down_since = now
                self.stats.endpoint_up = False
                yield ForwardRecord(
                    "endpoint_down",
                    self.wall_clock(),
                    info={"url": self.url, "reason": result.reason},
                )
        else:
            with self._cond:
                self._inflight.remove(item)
            if result.outcome is webhooks.Outcome.SUCCESS:
                self.stats.forwarded += 1
            else:
                self.stats.failed += 1
        yield ForwardRecord(
            "forwarded" if result.outcome is webhooks.Outcome.SUCCESS else "failed",
            self.wall_clock(),
            item.source_id,
            event=item.event,
            attempt=item.attempts,
            status=result.status,
            reason=result.reason,
            ms=result.ms,
            outcome=result.outcome.value,
            retry_in=retry_in,
        )

    def _retry_delay(self, attempts: int, retry_after: float | None) -> float:
        step = min(attempts, len(self.schedule))
        if retry_after is not None:
            retry_after = min(retry_after, MAX_RETRY_AFTER)
        delay = webhooks.retry_delay(
            step, schedule=self.schedule, random=self.random, retry_after=retry_after
        )
        return self.schedule[-1] if delay is None else delay

    def _post(self, http: httpx.Client, item: _Item) -> _Attempt:
        """One POST of ``item``'s event; never raises for what the network does."""
        import httpx

        body = self.originals.body(item.event) if self.originals else event_body(item.event)
        headers = webhooks.delivery_headers(
            self.secret,
            item.event.id or "",
            body,
            timestamp=int(time.time()),
            user_agent=self.user_agent,
            extra=self.headers,
        )
        started = time.perf_counter()
        try:
            response = http.post(self.url, content=body, headers=headers)
        except httpx.TimeoutException:
            return self._no_answer("timeout", started)
        except httpx.ConnectError as e:
            reason = "connection refused" if "refused" in str(e).lower() else "cannot connect"
            return self._no_answer(reason, started)
        except httpx.RemoteProtocolError:
            return self._no_answer("connection closed without an answer", started)
        except httpx.HTTPError as e:
            return self._no_answer(f"{type(e).__name__}: {e}", started)
        ms = (time.perf_counter() - started) * 1000
        outcome = webhooks.classify(response.status_code)
        retry_after = None
        if outcome is webhooks.Outcome.TRANSIENT:
            retry_after = parse_retry_after(response.headers.get("retry-after"), time.time())
        return _Attempt(response.status_code, response.reason_phrase, ms, retry_after, outcome)

    @staticmethod
    def _no_answer(reason: str, started: float) -> _Attempt:
        ms = (time.perf_counter() - started) * 1000
        return _Attempt(None, reason, ms, None, webhooks.Outcome.TRANSIENT)

    def _expired(self) -> bool:
        return self.deadline is not None and self.clock() >= self.deadline


def event_body(event: Event) -> bytes:
    """A POST body from the model: the Event's wire fields (camelCase, absent ones
    omitted) as compact UTF-8 JSON, as the server's delivery sends it."""
    return encode(event.to_wire())


def encode(value: Any) -> bytes:
    """Compact UTF-8 JSON (integers of any size kept, no NaN)."""
    import json

    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def _wire_time(value: datetime) -> str:
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
