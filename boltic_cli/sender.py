"""The bulk sender behind ``events send --file`` and ``events generate``: read, batch,
fan out, count. No printing.

Input is NDJSON or a JSON array of EventInput objects, read in chunks so memory
stays flat however large the file. Each item is encoded once, then grouped into
batches for ``POST /streams/events/batch`` (design.md "Batch ingest": at most
500 items and 512 KiB a body) or, when the server answers that route with 404
or 405 (a spec-only server; decided once, by the first batch) or with
``batch=False``, sent with one ``POST /streams/events`` each. A bounded queue
feeds a fixed pool of worker threads; each sends over a keep-alive connection of
its own from one shared ``BolticClient`` (``event_sender()``), so threads never
queue on a shared pool. Every item that fails is recorded with the line it
starts on (and its index in a JSON array); the rest go on. Both ways report the
same: the server judges every item, and the few checks made here (JSON that
cannot be sent, an item over 32 KiB) are made in both.

Callbacks are called one at a time (under a lock), from worker threads and from
the thread that runs ``BulkSender.run``.
"""

from __future__ import annotations

import hashlib
import json
import queue
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TextIO

from boltic_cli.client import BATCH_OVERHEAD, batch_body, encode_json
from boltic_cli.errors import (
    APIError,
    AuthenticationFailed,
    BolticError,
    ExtensionUnavailable,
    NetworkError,
)
from boltic_cli.models import MAX_BATCH_ITEMS
from boltic_cli.params import (
    DEPTH_PROBLEM,
    MAX_JSON_DEPTH,
    check_text,
    json_depth,
    json_kind,
    loads_json,
    strict_decoder,
)

if TYPE_CHECKING:
    from boltic_cli.client import BatchResult, BolticClient, EventSender

CHUNK_CHARS = 64 * 1024
# Far above the server's 32 KiB body limit: an item this long is not an event,
# and buffering it further would break the constant-memory promise.
MAX_ITEM_CHARS = 1024 * 1024
# Failures after which every further send would fail the same way.
FATAL_ERRORS = (AuthenticationFailed, NetworkError)
# The batch route's limits (design.md "Batch ingest"); an event's limit is also the
# single POST's body limit (design.md: 413 over 32 KiB), so it is checked here for both.
MAX_BATCH_BYTES = 512 * 1024
MAX_EVENT_BYTES = 32 * 1024
# Worker threads when --concurrency is not given. Batches: chosen from the concurrency
# sweeps of tests/bench/bench_send.py (events/s, 50,000 events): at load 1.6, 1: 22k,
# 2: 32k, 4: 38k, 8: 41k (bench_send.json); at load 3, 4: 25k, 8: 19k
# (bench_send_busy.json); at load 6-7, 4: 6.8k twice, 8: 7.5-10.5k. With more batches
# waiting the server's writer commits several per fsync and reading overlaps the
# answers; 16 added little and ~15 MiB, 32 went past 100 MiB. Single POSTs: 8, as before.
DEFAULT_BATCH_CONCURRENCY = 8
DEFAULT_SINGLE_CONCURRENCY = 8

_WHITESPACE = " \t\r\n"
_NEXT_OBJECT_LINE = re.compile(r"\n[ \t\r]*,?[ \t\r]*\{")


@dataclass(frozen=True)
class InputItem:
    """One item of the input: its body, or why it could not be read."""

    line: int
    body: dict[str, Any] | None = None
    error: str | None = None
    # Position in a JSON array (1-based): several items can share a line.
    item: int | None = None


class _Flush:
    """In the items given to ``BulkSender.run``: send the partial batch now."""


#: Put between items when the next one will take a while (paced sample traffic), so
#: the events before it are not held back waiting for a batch to fill.
FLUSH = _Flush()


@dataclass(frozen=True)
class SendFailure:
    line: int
    error: dict[str, Any]  # {"code", "message", "details"}, like the API's Error
    item: int | None = None  # position in a JSON array input

    @property
    def where(self) -> str:
        return f"line {self.line}" + (f", item {self.item}" if self.item is not None else "")

    def to_dict(self) -> dict[str, Any]:
        where = {"line": self.line} | ({"item": self.item} if self.item is not None else {})
        return {**where, "error": self.error}


@dataclass
class SendFigures:
    """What a run of sends did, the one shape ``-o json`` prints for ``events send``
    (``SendSummary``) and sample traffic (``traffic.TrafficSummary``): events accepted
    (``sent``) and refused (``failed``), ``seconds`` of clock time since the start, and
    whether Ctrl-C or a stop ended it early (``interrupted``)."""

    sent: int = 0
    failed: int = 0
    seconds: float = 0.0
    interrupted: bool = False

    @property
    def rate(self) -> float:
        """Accepted events per second; 0 when no time has passed (nothing to measure)."""
        return self.sent / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """``{"sent", "failed", "seconds", "rate"}`` (+ ``"interrupted": true``)."""
        figures: dict[str, Any] = {
            "sent": self.sent,
            "failed": self.failed,
            "seconds": round(self.seconds, 3),
            "rate": round(self.rate, 1),
        }
        if self.interrupted:
            figures["interrupted"] = True
        return figures


@dataclass
class SendSummary(SendFigures):
    """``events send``'s figures, with each failed line and how the events went."""

    failures: list[SendFailure] = field(default_factory=list)
    # How the events went: "batch" or "single" (None until decided). Not in to_dict():
    # the two ways differ in speed only.
    mode: str | None = None
    requests: int = 0


# Reading the input


def read_items(stream: TextIO, *, chunk_chars: int = CHUNK_CHARS) -> Iterator[InputItem]:
    """The items of an NDJSON stream or a JSON array, decided by the first character."""
    head = stream.read(chunk_chars)
    while head and not head.strip(_WHITESPACE + "\ufeff"):
        more = stream.read(chunk_chars)
        if not more:
            break
        head += more
    chunks = _chunks(stream, chunk_chars)
    head = head.lstrip("\ufeff")
    if head.lstrip(_WHITESPACE).startswith("["):
        return _json_array_items(head, chunks)
    return _ndjson_items(head, chunks)


def _chunks(stream: TextIO, chunk_chars: int) -> Iterator[str]:
    return iter(lambda: stream.read(chunk_chars), "")


def _item_from_text(line: int, text: str) -> InputItem:
    # Strict JSON (params.loads_json): NaN, Infinity, 1e999, lone surrogates and
    # nesting beyond the server's depth fail this line alone.
    try:
        value = loads_json(text)
    except ValueError as e:
        return InputItem(line, error=f"invalid JSON: {_decode_reason(e)}")
    return _item_from_value(line, value)


def _item_from_value(line: int, value: Any, *, checked: bool = True) -> InputItem:
    if not checked:
        try:
            if json_depth(value) > MAX_JSON_DEPTH:
                raise ValueError(DEPTH_PROBLEM)
            check_text(value)
        except ValueError as e:
            return InputItem(line, error=f"invalid JSON: {e}")
    if not isinstance(value, dict):
        return InputItem(line, error=f"expected a JSON object, got {json_kind(value)}")
    return InputItem(line, body=value)


def _decode_reason(error: ValueError) -> str:
    if isinstance(error, json.JSONDecodeError):
        return f"{error.msg} (column {error.colno})"
    return str(error)


def _ndjson_items(head: str, chunks: Iterator[str]) -> Iterator[InputItem]:
    pending = ""
    line = 1
    skipping = False  # inside a line already reported as too long
    for chunk in _with_head(head, chunks):
        pending += chunk
        *complete, pending = pending.split("\n")
        for text in complete:
            if skipping:
                skipping = False
            elif text.strip(_WHITESPACE):
                yield _item_from_text(line, text)
            line += 1
        if len(pending) > MAX_ITEM_CHARS:
            if not skipping:
                yield InputItem(line, error=f"line longer than {MAX_ITEM_CHARS} characters")
            skipping = True
            pending = ""
    if pending.strip(_WHITESPACE) and not skipping:
        yield _item_from_text(line, pending)


def _with_head(head: str, chunks: Iterator[str]) -> Iterator[str]:
    yield head
    yield from chunks


class _ArrayReader:
    """A window on a JSON array text that tracks line numbers as it moves forward."""

    def __init__(self, head: str, chunks: Iterator[str]) -> None:
        self.buf = head
        self.pos = 0
        self.line = 1
        self.chunks = chunks
        self.eof = False

    def advance(self, to: int) -> None:
        self.line += self.buf.count("\n", self.pos, to)
        self.pos = to

    def read_more(self) -> bool:
        """Append the next chunk (dropping what was consumed); False at the end."""
        if self.eof:
            return False
        chunk = next(self.chunks, "")
        if not chunk:
            self.eof = True
            return False
        self.buf = self.buf[self.pos :] + chunk
        self.pos = 0
        return True

    def skip(self, chars: str) -> str | None:
        """Skip ``chars``; the next character, or None at the end of input."""
        while True:
            end = self.pos
            while end < len(self.buf) and self.buf[end] in chars:
                end += 1
            self.advance(end)
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self.read_more():
                return None

    def resync(self) -> bool:
        """Move to the next line that starts an object; False when there is none."""
        while True:
            match = _NEXT_OBJECT_LINE.search(self.buf, self.pos + 1)
            if match:
                self.advance(match.start() + 1)
                return True
            # Keep the last partial line: the newline that ends it may be next.
            self.advance(max(self.pos, self.buf.rfind("\n")))
            if not self.read_more():
                return False


def _json_array_items(head: str, chunks: Iterator[str]) -> Iterator[InputItem]:
    for number, item in enumerate(_json_array_values(head, chunks), start=1):
        yield replace(item, item=number)


def _json_array_values(head: str, chunks: Iterator[str]) -> Iterator[InputItem]:
    reader = _ArrayReader(head, chunks)
    decoder = strict_decoder()
    reader.skip(_WHITESPACE)
    reader.advance(reader.pos + 1)  # the "["
    while True:
        char = reader.skip(_WHITESPACE + ",")
        if char is None:
            yield InputItem(reader.line, error="the JSON array is not closed with ']'")
            return
        if char == "]":
            return
        try:
            value, end = decoder.raw_decode(reader.buf, reader.pos)
        except json.JSONDecodeError as e:
            if not reader.eof and len(reader.buf) - reader.pos <= MAX_ITEM_CHARS:
                reader.read_more()
                continue
            yield InputItem(reader.line, error=f"invalid JSON: {e.msg}")
            if not reader.resync():
                return
            continue
        except (ValueError, RecursionError) as e:
            # A number JSON cannot hold, or nesting so deep the decoder gave up.
            reason = str(e) if not isinstance(e, RecursionError) else "nested far too deep"
            yield InputItem(reader.line, error=f"invalid JSON: {reason}")
            if not reader.resync():
                return
            continue
        if end == len(reader.buf) and not reader.eof:
            # A number or literal may go on in the next chunk: decode again with it.
            reader.read_more()
            continue
        yield _item_from_value(reader.line, value, checked=False)
        reader.advance(end)


# Sending


def message_id_for(item: InputItem) -> str:
    """A ``messageId`` derived from an item's content and place (line, array index).

    The same file sent again gives the same ids, so the server (which dedupes a
    ``messageId`` per source for 24 h) stores nothing twice after a crash or a
    Ctrl-C. Two identical items on the same line of two different files get the
    same id too: give real ids (``messageId`` in the items) where that matters.
    """
    canonical = json.dumps(
        item.body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    )
    digest = hashlib.blake2b(canonical.encode("utf-8", "surrogatepass"), digest_size=12)
    return f"boltic-{item.line}-{item.item or 0}-{digest.hexdigest()}"


class _Stop:
    """Tells a worker to finish."""


_STOP = _Stop()

Pair = tuple[InputItem, bytes]  # an item and its body, encoded once


class BulkSender:
    """Sends ``InputItem`` bodies in batches (or one by one) with worker threads.

    ``batch=False`` forces single POSTs; otherwise the first batch decides for the
    whole run (404/405 on the batch route: single POSTs). ``batch_size`` caps the
    items per batch (default and maximum 500; bodies also stay under 512 KiB).
    ``concurrency`` is the number of worker threads (default
    ``DEFAULT_BATCH_CONCURRENCY`` for batches, ``DEFAULT_SINGLE_CONCURRENCY`` for
    single POSTs). ``default_source_id`` fills a missing ``sourceId``;
    ``message_ids`` gives items without a ``messageId`` one (``message_id_for``).
    Callbacks: ``on_sent(summary)`` after each request that accepted events,
    ``on_accepted(item, event_id)`` per accepted event, ``on_failure(failure)`` per
    failed item. ``fatal``: errors of a whole request that end the run (raised by
    ``run`` after the sends in flight finish); any other error fails that
    request's items and the run goes on.
    """

    def __init__(
        self,
        client: BolticClient,
        *,
        concurrency: int | None = None,
        batch: bool = True,
        batch_size: int | None = None,
        default_source_id: str | None = None,
        message_ids: bool = False,
        on_sent: Callable[[SendSummary], None] | None = None,
        on_failure: Callable[[SendFailure], None] | None = None,
        on_accepted: Callable[[InputItem, str], None] | None = None,
        fatal: tuple[type[BolticError], ...] = FATAL_ERRORS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if concurrency is not None and concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if batch_size is not None and not 1 <= batch_size <= MAX_BATCH_ITEMS:
            raise ValueError(f"batch_size must be 1 to {MAX_BATCH_ITEMS}")
        self.client = client
        self.concurrency = concurrency
        self.batch_size = batch_size or MAX_BATCH_ITEMS
        self.default_source_id = default_source_id
        self.message_ids = message_ids
        self.on_sent = on_sent
        self.on_failure = on_failure
        self.on_accepted = on_accepted
        self.fatal = fatal
        self.clock = clock
        self._mode: str | None = None if batch else "single"
        self._lock = threading.Lock()
        self._queue: queue.Queue[Any] | None = None
        self._abort = threading.Event()
        self._fatal: BolticError | None = None
        self._started: float | None = None
        self._summary = SendSummary()
        self._senders: list[EventSender] = []
        self._workers: list[threading.Thread] = []
        self._workers_running = 0

    def summary(self) -> SendSummary:
        """The figures so far (final once ``run`` has returned or raised)."""
        with self._lock:
            if self._started is not None:
                self._summary.seconds = max(self.clock() - self._started, 0.0)
            self._summary.failures.sort(key=lambda f: (f.line, f.item or 0))
            self._summary.mode = self._mode
            return self._summary

    def stop(self) -> None:
        """Stop feeding (from any thread); ``run`` returns once the sends in flight end."""
        self._abort.set()

    def run(self, items: Iterable[InputItem | _Flush]) -> SendSummary:
        """Send every item; on Ctrl-C or SIGTERM stop feeding, let sends in flight
        finish, and re-raise (``summary()`` then has the figures)."""
        self._started = self.clock()
        try:
            self._feed(items)
        except BaseException:
            with self._lock:
                self._summary.interrupted = True
            self._abort.set()
            self._discard_queued()
            raise
        finally:
            self._finish()
        if self._fatal is not None:
            raise self._fatal
        return self.summary()

    # Feeding (the thread that called run)

    def _feed(self, items: Iterable[InputItem | _Flush]) -> None:
        pending: list[Pair] = []
        size = 0
        for item in items:
            if self._abort.is_set():
                return
            if isinstance(item, _Flush):
                if pending:
                    self._dispatch(pending)
                    pending, size = [], 0
                continue
            pair = self._prepare(item)
            if pair is None:
                continue
            if self._mode == "single":
                self._put(pair)
                continue
            grows = len(pair[1]) + 1  # the item and its comma
            full = len(pending) >= self.batch_size
            if pending and (full or size + grows + BATCH_OVERHEAD > MAX_BATCH_BYTES):
                self._dispatch(pending)
                pending, size = [], 0
                if self._mode == "single":  # the first batch just decided against batches
                    self._put(pair)
                    continue
            pending.append(pair)
            size += grows
        if pending and not self._abort.is_set():
            self._dispatch(pending)

    def _prepare(self, item: InputItem) -> Pair | None:
        """The item's body encoded (source filled, messageId added), or None: failed."""
        if item.error is not None:
            self._record_failure(item, {"message": item.error})
            return None
        body = item.body
        assert body is not None
        if self.message_ids and "messageId" not in body:
            body = {**body, "messageId": message_id_for(item)}
        if self.default_source_id and not body.get("sourceId"):
            body = {**body, "sourceId": self.default_source_id}
        try:
            payload = encode_json(body)
        except (TypeError, ValueError) as e:
            self._record_failure(item, {"message": f"invalid JSON: {e}"})
            return None
        if len(payload) > MAX_EVENT_BYTES:
            details = f"an event is at most {MAX_EVENT_BYTES} bytes, got {len(payload)}"
            self._record_failure(item, {"message": "event too large", "details": details})
            return None
        return item, payload

    def _dispatch(self, batch: list[Pair]) -> None:
        if self._mode is None:
            self._decide(batch)
            return
        self._put(batch)

    def _decide(self, first: list[Pair]) -> None:
        """Send the first batch and wait for it: the answer decides the run's way."""
        probe = self.client.event_sender()
        self._senders.append(probe)
        try:
            self._probe(probe, first)
        except ExtensionUnavailable:
            self._mode = "single"
            self._start_workers()
            for pair in first:
                self._put(pair)
            return
        self._mode = "batch"
        self._start_workers()

    def _probe(self, probe: EventSender, first: list[Pair]) -> None:
        """``_send_batch(first)`` on a thread of its own. A Ctrl-C or SIGTERM lands on
        the calling thread: the batch may already be stored, so its answer is waited
        for and counted before the interruption goes on (the summary must equal what
        the server holds)."""
        outcome: list[BaseException] = []
        done = threading.Event()

        def send() -> None:
            try:
                self._send_batch(probe, first, probing=True)
            except BaseException as e:
                outcome.append(e)
            finally:
                done.set()

        threading.Thread(target=send, name="boltic-send-probe", daemon=True).start()
        interrupted: BaseException | None = None
        # An Event, not join(): after a join that Ctrl-C interrupted, is_alive() can
        # report False while the thread still runs (CPython 3.11).
        while not done.is_set():
            try:
                done.wait(timeout=0.2)
            except BaseException as e:  # Ctrl-C or SIGTERM: finish the batch first
                interrupted = interrupted or e
        if interrupted is not None:
            raise interrupted
        if outcome:
            raise outcome[0]

    def _start_workers(self) -> None:
        default = (
            DEFAULT_SINGLE_CONCURRENCY if self._mode == "single" else DEFAULT_BATCH_CONCURRENCY
        )
        count = self.concurrency or default
        # One batch waiting per worker keeps them busy; memory stays ~ 2 x count x 512 KiB.
        self._queue = queue.Queue(maxsize=count if self._mode == "batch" else count * 4)
        while len(self._senders) < count:
            self._senders.append(self.client.event_sender())
        for n, events in enumerate(self._senders):
            worker = threading.Thread(
                target=self._work_then_mark, args=(events,), name=f"boltic-send-{n}", daemon=True
            )
            self._workers.append(worker)
            with self._lock:
                self._workers_running += 1
            worker.start()

    def _put(self, work: Any) -> None:
        if self._queue is None:
            self._start_workers()
        assert self._queue is not None
        # A timeout keeps the feeding thread responsive to Ctrl-C and to a fatal error.
        while not self._abort.is_set():
            try:
                self._queue.put(work, timeout=0.2)
                return
            except queue.Full:
                continue

    def _discard_queued(self) -> None:
        if self._queue is None:
            return
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass

    def _finish(self) -> None:
        if self._queue is not None:
            for _ in self._workers:
                self._queue.put(_STOP)
        # Events, not is_alive(): after a join that Ctrl-C interrupted, is_alive() can
        # report False while the worker still records its answer (CPython 3.11).
        while self._workers_running:
            with self._lock:
                if self._workers_running <= 0:
                    break
            time.sleep(0.02)
        for events in self._senders:
            events.close()

    # Sending (worker threads)

    def _work_then_mark(self, events: EventSender) -> None:
        try:
            self._work(events)
        finally:
            with self._lock:
                self._workers_running -= 1

    def _work(self, events: EventSender) -> None:
        assert self._queue is not None
        while True:
            work = self._queue.get()
            if work is _STOP:
                return
            if self._abort.is_set():
                continue
            if isinstance(work, list):
                self._send_batch(events, work)
            else:
                self._send_one(events, *work)

    def _send_batch(self, events: EventSender, batch: list[Pair], *, probing: bool = False):
        # One key per body: the client's retries resend it, so a batch whose answer
        # was lost is answered from the first try instead of being stored again.
        body = batch_body([payload for _, payload in batch])
        with self._lock:
            self._summary.requests += 1
        try:
            result = events.send_events_json(body, idempotency_key=str(uuid.uuid4()))
        except ExtensionUnavailable as e:
            if probing:
                raise
            self._fail_all(batch, _error_dict(e))
        except APIError as e:
            if e.status == 413 and len(batch) > 1:
                # Something in between (a proxy) takes less than the route does: halves.
                middle = len(batch) // 2
                self._send_batch(events, batch[:middle])
                self._send_batch(events, batch[middle:])
                return
            self._request_failed(batch, e)
        except BolticError as e:
            self._request_failed(batch, e)
        except Exception as e:  # a worker must never die silently with the count wrong
            self._fail_all(batch, {"message": f"{type(e).__name__}: {e}"})
        else:
            self._record_results(batch, result)

    def _send_one(self, events: EventSender, item: InputItem, payload: bytes) -> None:
        with self._lock:
            self._summary.requests += 1
        try:
            accepted = events.send_event_json(payload)
        except BolticError as e:
            self._request_failed([(item, payload)], e)
        except Exception as e:  # a worker must never die silently with the count wrong
            self._record_failure(item, {"message": f"{type(e).__name__}: {e}"})
        else:
            with self._lock:
                self._summary.sent += 1
                if self.on_accepted is not None:
                    self.on_accepted(item, accepted.event_id)
                if self.on_sent is not None:
                    self.on_sent(self._summary)

    def _request_failed(self, batch: list[Pair], error: BolticError) -> None:
        self._fail_all(batch, _error_dict(error))
        if isinstance(error, self.fatal):
            with self._lock:
                if self._fatal is None:
                    self._fatal = error
            self._abort.set()

    def _record_results(self, batch: list[Pair], result: BatchResult) -> None:
        entries = {entry.index: entry for entry in result.data}
        failures: list[SendFailure] = []
        with self._lock:
            for index, (item, _) in enumerate(batch):
                entry = entries.get(index)
                if entry is not None and entry.status == "accepted" and entry.event_id:
                    self._summary.sent += 1
                    if self.on_accepted is not None:
                        self.on_accepted(item, entry.event_id)
                    continue
                if entry is None:
                    error = {"message": "the server's answer has no result for this event"}
                elif entry.error is not None:
                    error = entry.error.to_wire()
                else:
                    error = {"message": f"the server answered {entry.status!r} without an id"}
                failures.append(SendFailure(item.line, error, item.item))
            if self.on_sent is not None and len(failures) < len(batch):
                self.on_sent(self._summary)
        for failure in failures:
            self._add_failure(failure)

    def _fail_all(self, batch: list[Pair], error: dict[str, Any]) -> None:
        for item, _ in batch:
            self._record_failure(item, error)

    def _record_failure(self, item: InputItem, error: dict[str, Any]) -> None:
        self._add_failure(SendFailure(item.line, error, item.item))

    def _add_failure(self, failure: SendFailure) -> None:
        with self._lock:
            self._summary.failed += 1
            self._summary.failures.append(failure)
            if self.on_failure is not None:
                self.on_failure(failure)


def _error_dict(error: BolticError) -> dict[str, Any]:
    out: dict[str, Any] = {"message": error.message}
    if error.code is not None:
        out["code"] = error.code
    if error.details:
        out["details"] = error.details
    return out
