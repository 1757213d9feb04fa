"""The bulk sender behind ``events send --file``: read, fan out, count. No printing.

Input is NDJSON or a JSON array of EventInput objects, read in chunks so memory
stays flat however large the file. A bounded queue feeds a fixed pool of worker
threads; each sends over a keep-alive connection of its own from one shared
``BolticClient`` (``event_sender()``), so threads never queue on a shared pool.
Every item that fails is recorded with the line it starts on; the rest go on.

Callbacks are called one at a time (under a lock), from worker threads and from
the thread that runs ``BulkSender.run``.
"""

from __future__ import annotations

import json
import queue
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TextIO

from boltic_cli.errors import AuthenticationFailed, BolticError, NetworkError
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
    from boltic_cli.client import BolticClient, EventSender

CHUNK_CHARS = 64 * 1024
# Far above the server's 32 KiB body limit: an item this long is not an event,
# and buffering it further would break the constant-memory promise.
MAX_ITEM_CHARS = 1024 * 1024
# Failures after which every further send would fail the same way.
FATAL_ERRORS = (AuthenticationFailed, NetworkError)

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
class SendSummary:
    sent: int = 0
    failed: int = 0
    seconds: float = 0.0
    interrupted: bool = False
    failures: list[SendFailure] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        figures: dict[str, Any] = {
            "sent": self.sent,
            "failed": self.failed,
            "seconds": round(self.seconds, 3),
            "rate": round(self.rate, 1),
        }
        if self.interrupted:
            figures["interrupted"] = True
        return figures


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


class _Stop:
    """Tells a worker to finish."""


_STOP = _Stop()


class BulkSender:
    """Sends ``InputItem`` bodies with ``concurrency`` threads over one client."""

    def __init__(
        self,
        client: BolticClient,
        *,
        concurrency: int = 8,
        default_source_id: str | None = None,
        on_sent: Callable[[SendSummary], None] | None = None,
        on_failure: Callable[[SendFailure], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.client = client
        self.concurrency = concurrency
        self.default_source_id = default_source_id
        self.on_sent = on_sent
        self.on_failure = on_failure
        self.clock = clock
        self._lock = threading.Lock()
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=concurrency * 4)
        self._abort = threading.Event()
        self._fatal: BolticError | None = None
        self._started: float | None = None
        self._summary = SendSummary()

    def summary(self) -> SendSummary:
        """The figures so far (final once ``run`` has returned or raised)."""
        with self._lock:
            if self._started is not None:
                self._summary.seconds = max(self.clock() - self._started, 0.0)
            self._summary.failures.sort(key=lambda f: f.line)
            return self._summary

    def run(self, items: Iterable[InputItem]) -> SendSummary:
        """Send every item; on Ctrl-C or SIGTERM stop feeding, let sends in flight
        finish, and re-raise (``summary()`` then has the figures)."""
        self._started = self.clock()
        senders = [self.client.event_sender() for _ in range(self.concurrency)]
        workers = [
            threading.Thread(
                target=self._work, args=(events,), name=f"boltic-send-{n}", daemon=True
            )
            for n, events in enumerate(senders)
        ]
        for worker in workers:
            worker.start()
        try:
            self._feed(items)
        except BaseException:
            with self._lock:
                self._summary.interrupted = True
            self._abort.set()
            self._discard_queued()
            raise
        finally:
            self._finish(workers)
            for events in senders:
                events.close()
        if self._fatal is not None:
            raise self._fatal
        return self.summary()

    def _feed(self, items: Iterable[InputItem]) -> None:
        for item in items:
            if self._abort.is_set():
                return
            if item.error is not None:
                self._record_failure(item, {"message": item.error})
                continue
            assert item.body is not None
            self._put((item, self._with_source(item.body)))

    def _put(self, work: Any) -> None:
        # A timeout keeps the feeding thread responsive to Ctrl-C and to a fatal error.
        while not self._abort.is_set():
            try:
                self._queue.put(work, timeout=0.2)
                return
            except queue.Full:
                continue

    def _with_source(self, body: dict[str, Any]) -> dict[str, Any]:
        if self.default_source_id and not body.get("sourceId"):
            return {**body, "sourceId": self.default_source_id}
        return body

    def _discard_queued(self) -> None:
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass

    def _finish(self, workers: list[threading.Thread]) -> None:
        for _ in workers:
            self._queue.put(_STOP)
        for worker in workers:
            while worker.is_alive():
                worker.join(timeout=0.2)

    def _work(self, events: EventSender) -> None:
        while True:
            work = self._queue.get()
            if work is _STOP:
                return
            if self._abort.is_set():
                continue
            item, body = work
            self._send_one(events, item, body)

    def _send_one(self, events: EventSender, item: InputItem, body: dict[str, Any]) -> None:
        try:
            events.send_event(body)
        except FATAL_ERRORS as e:
            self._record_failure(item, _error_dict(e))
            with self._lock:
                if self._fatal is None:
                    self._fatal = e
            self._abort.set()
        except BolticError as e:
            self._record_failure(item, _error_dict(e))
        except Exception as e:  # a worker must never die silently with the count wrong
            self._record_failure(item, {"message": f"{type(e).__name__}: {e}"})
        else:
            with self._lock:
                self._summary.sent += 1
                if self.on_sent is not None:
                    self.on_sent(self._summary)

    def _record_failure(self, item: InputItem, error: dict[str, Any]) -> None:
        failure = SendFailure(item.line, error, item.item)
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
