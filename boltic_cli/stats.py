"""Exact event counts over time and per type, from the spec's ``queryEvents`` alone.

``GET /streams/events`` answers a page of events plus a ``summary`` of *every* match
(``totalEvents``, ``uniqueEventTypes``, ``timeRange``; design.md, wire decisions).
So a count is one ``limit=1`` query: per bucket of the window, and per event type
over the window. No extension route is used, so this works against any server that
implements the spec.

Type names are not in the summary, only how many there are. They are found from the
events the pages return: a window whose page shows as many distinct types as its
``uniqueEventTypes`` (or every one of its events) is done; otherwise the part of the
window the page did not cover (events are newest first, so the part at or before the
page's oldest ``timestamp``) is cut in four and each part asked again, unless the
types it lacks are all names found already (one ``limit=1`` count each tells). Each
round narrows the window around the rare types hidden among common ones. More than a
page of events at one millisecond cannot be split further in time: their unseen types
are counted as ``unnamed``.

Windows are ``[since, until)``: ``from`` inclusive, ``to`` exclusive (design.md), in
whole milliseconds (the wire's resolution). Bucket edges fall on multiples of the
bucket size in local time (hours on the local hour, days at local midnight, using the
UTC offset at the window's start); the first and last bucket are cut to the window
(``partial``). Queries run on a bounded thread pool sharing the one ``BolticClient``
(httpx's client is thread-safe).

Library layer: imports only base modules and the client's interface; never typer,
rich or output.
"""

from __future__ import annotations

import itertools
import queue
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from boltic_cli.errors import UnexpectedResponse, UsageError

if TYPE_CHECKING:
    from boltic_cli.client import BolticClient
    from boltic_cli.models import EventQueryResult

COUNT_LIMIT = 1  # a count needs only the summary; the smallest page the spec allows
DISCOVERY_LIMIT = 1000  # the first page: the largest queryEvents allows, most types at once
NARROW_LIMIT = 200  # pages of narrowed windows: cheaper, and the window shrinks faster
SPLIT = 4  # an unexplored window is cut in this many
MAX_BUCKETS = 10_000
DEFAULT_CONCURRENCY = 4

ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class StatsBucket:
    """Events with ``start <= timestamp < end``; ``partial`` when the window's edge cut it
    shorter than the bucket size."""

    start: datetime
    end: datetime
    count: int
    partial: bool = False

    def to_wire(self) -> dict[str, Any]:
        from boltic_cli.models import format_time

        wire: dict[str, Any] = {
            "from": format_time(self.start),
            "to": format_time(self.end),
            "count": self.count,
        }
        if self.partial:
            wire["partial"] = True
        return wire


@dataclass
class EventStats:
    """What ``event_stats`` found. ``types`` is most frequent first (ties by name);
    ``unnamed`` counts events whose type could not be named (0 unless more than a page of
    events share one millisecond); ``queries`` is how many requests it took."""

    since: datetime
    until: datetime
    by: timedelta
    source_ids: list[str] | None
    event_types: list[str] | None
    buckets: list[StatsBucket]
    types: list[tuple[str, int]]
    unnamed: int = 0
    queries: int = 0

    @property
    def total(self) -> int:
        """Every matching event in the window: the sum of the buckets."""
        return sum(bucket.count for bucket in self.buckets)

    def to_wire(self) -> dict[str, Any]:
        """The JSON object ``events stats -o json`` prints (camelCase, UTC times)."""
        from boltic_cli.models import format_time

        wire: dict[str, Any] = {
            "from": format_time(self.since),
            "to": format_time(self.until),
            "bucketSeconds": self.by.total_seconds(),
            "totalEvents": self.total,
            # Unnamed events are of at least one more type.
            "uniqueEventTypes": sum(1 for _, n in self.types if n) + (1 if self.unnamed else 0),
        }
        if self.source_ids:
            wire["sourceIds"] = list(self.source_ids)
        if self.event_types:
            wire["eventTypes"] = list(self.event_types)
        wire["buckets"] = [bucket.to_wire() for bucket in self.buckets]
        wire["types"] = [{"type": name, "count": count} for name, count in self.types]
        if self.unnamed:
            wire["unnamedEvents"] = self.unnamed
        wire["queries"] = self.queries
        return wire


def to_ms(value: datetime) -> int:
    """Whole milliseconds since the epoch (floored), the wire's resolution."""
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    delta = aware - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def from_ms(ms: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)


def local_offset(at: datetime) -> timedelta:
    """The machine's UTC offset at ``at`` (honours ``TZ``); zero where local time would
    leave the calendar (``0001-01-01T00:00Z`` west of UTC): buckets are then UTC."""
    try:
        return at.astimezone().utcoffset() or timedelta(0)
    except (OverflowError, ValueError, OSError):
        return timedelta(0)


def bucket_edges(since_ms: int, until_ms: int, by_ms: int, offset_ms: int = 0) -> list[int]:
    """``since``, every multiple of ``by`` (shifted by ``offset``, i.e. in local time)
    strictly between, and ``until``: consecutive pairs are the buckets.

    Raises ``UsageError`` when the window is empty or would need more than MAX_BUCKETS.
    """
    if by_ms <= 0:
        raise UsageError("--by must be more than zero")
    if until_ms <= since_ms:
        raise UsageError("--since must be before --until")
    first = ((since_ms + offset_ms) // by_ms + 1) * by_ms - offset_ms
    count = max(0, -(-(until_ms - first) // by_ms)) + 1
    if count > MAX_BUCKETS:
        raise UsageError(
            f"that window makes {count:,} buckets; at most {MAX_BUCKETS:,}: use a larger --by"
        )
    edges = [since_ms]
    edges.extend(range(first, until_ms, by_ms))
    edges.append(until_ms)
    return edges


class _Pool:
    """A fixed set of worker threads taking calls by priority (lower first, then in
    order): the type search, whose rounds wait on each other, goes before the counts
    queued behind it, so the counts fill the time the search spends waiting."""

    def __init__(self, workers: int) -> None:
        self._queue: queue.PriorityQueue[tuple[int, int, Any, Any]] = queue.PriorityQueue()
        self._order = itertools.count()
        self._threads = [
            threading.Thread(target=self._work, name=f"boltic-stats-{n}", daemon=True)
            for n in range(max(1, workers))
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, call: Callable[[], Any], priority: int) -> Future:
        future: Future = Future()
        self._queue.put((priority, next(self._order), future, call))
        return future

    def shutdown(self) -> None:
        """Cancel what has not started; the workers end after their current call."""
        for _ in self._threads:
            self._queue.put((sys.maxsize, next(self._order), None, None))

    def _work(self) -> None:
        while True:
            _, _, future, call = self._queue.get()
            if future is None:
                return
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(call())
            except BaseException as e:  # handed to the waiting caller
                future.set_exception(e)


SEARCH, COUNT = 0, 1  # priorities


def plan_buckets(
    since: datetime, until: datetime, by: timedelta, utc_offset: timedelta | None = None
) -> list[int]:
    """The bucket edges (ms) ``event_stats`` will count: ``bucket_edges`` aligned to
    ``utc_offset`` (default: the machine's local offset at ``since``). Callers may use
    it to refuse a bad window before any request; raises ``UsageError``."""
    offset = local_offset(since) if utc_offset is None else utc_offset
    return bucket_edges(to_ms(since), to_ms(until), to_ms_delta(by), to_ms_delta(offset))


@dataclass
class _Runner:
    """Runs queries on the pool; counts them; reports progress from the caller's thread."""

    client: BolticClient
    pool: _Pool
    on_progress: ProgressCallback | None
    done: int = 0
    planned: int = 0
    started: list[Future] = field(default_factory=list)

    def query(
        self, source_id: str | None, event_type: str | None, lo: int, hi: int, limit: int
    ) -> EventQueryResult:
        return self.client.query_events(
            source_id=source_id,
            event_type=event_type,
            from_=from_ms(lo),
            to=from_ms(hi),
            limit=limit,
        )

    def start(self, calls: Sequence[Callable[[], Any]], priority: int = COUNT) -> list[Future]:
        """Queue the calls; their results are collected later with ``run_until``."""
        futures = [self.pool.submit(call, priority) for call in calls]
        self.started += futures
        self.planned += len(futures)
        self._report()
        return futures

    def run(self, calls: Sequence[Callable[[], Any]], priority: int = SEARCH) -> list[Any]:
        """Every call's result, in order; the first failure anywhere is raised."""
        return self.results(self.start(calls, priority))

    def results(self, futures: list[Future]) -> list[Any]:
        """Wait for ``futures`` (reporting progress as any started call ends)."""
        wanted = set(futures)
        while True:
            pending = {f for f in self.started if not f.done()}
            finished = [f for f in self.started if f.done()]
            for future in finished:
                if future.exception() is not None:
                    raise future.exception()  # type: ignore[misc]
            self.done = len(finished)
            self._report()
            if not wanted & pending:
                return [future.result() for future in futures]
            wait(wanted & pending, return_when=FIRST_COMPLETED)

    def cancel(self) -> None:
        for future in self.started:
            future.cancel()

    def _report(self) -> None:
        if self.on_progress is not None:
            self.on_progress(self.done, self.planned)


def _total(result: EventQueryResult) -> int:
    summary = result.summary
    if summary is None or summary.total_events is None:
        raise UnexpectedResponse("the server's event query answer has no summary.totalEvents")
    return summary.total_events


def event_stats(
    client: BolticClient,
    *,
    since: datetime,
    until: datetime,
    by: timedelta,
    source_ids: Iterable[str] | None = None,
    event_types: Iterable[str] | None = None,
    utc_offset: timedelta | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    on_progress: ProgressCallback | None = None,
) -> EventStats:
    """Exact counts of the events matching the filters in ``[since, until)``: per bucket
    of size ``by`` and per event type.

    ``source_ids`` / ``event_types``: any of them (each a separate query, summed);
    None or empty means all. ``utc_offset`` aligns the buckets (default: the machine's
    local offset at ``since``). ``on_progress(done, planned)`` is called from the
    calling thread as requests finish (``planned`` grows while types are searched).
    Raises ``UsageError`` for an empty window or too many buckets, and the client's
    errors (``APIError``, ``NetworkError``, ``UnexpectedResponse``) for failed requests.
    """
    sources: list[str | None] = list(dict.fromkeys(source_ids or [])) or [None]
    given_types = list(dict.fromkeys(event_types or []))
    since_ms, until_ms = to_ms(since), to_ms(until)
    by_ms = to_ms_delta(by)
    edges = plan_buckets(since, until, by, utc_offset)
    pool = _Pool(concurrency)
    runner = _Runner(client, pool, on_progress)
    filters = [(source, name) for source in sources for name in (given_types or [None])]
    try:
        # The buckets need no type names: queued at once, behind the type search.
        bucket_futures = runner.start(
            [
                _count_call(runner, source, name, lo, hi)
                for lo, hi in itertools.pairwise(edges)
                for source, name in filters
            ]
        )
        if given_types:
            names: list[str] = given_types
            window_totals: list[int] | None = None
        else:
            found, window_totals = _discover_types(runner, sources, since_ms, until_ms)
            names = sorted(found)
        type_futures = runner.start(
            [
                _count_call(runner, source, name, since_ms, until_ms)
                for name in names
                for source in sources
            ]
        )
        counts = runner.results(bucket_futures)
        type_counts = runner.results(type_futures)
    except BaseException:
        runner.cancel()
        raise
    finally:
        pool.shutdown()
    per_bucket = len(filters)
    buckets = []
    for index, (lo, hi) in enumerate(itertools.pairwise(edges)):
        count = sum(counts[index * per_bucket : (index + 1) * per_bucket])
        buckets.append(StatsBucket(from_ms(lo), from_ms(hi), count, partial=hi - lo < by_ms))
    totals = {
        name: sum(type_counts[i * len(sources) : (i + 1) * len(sources)])
        for i, name in enumerate(names)
    }
    # Types asked for by name are listed even with no events: that is the answer.
    listed = totals.items() if given_types else ((n, c) for n, c in totals.items() if c > 0)
    ranked = sorted(listed, key=lambda p: (-p[1], p[0]))
    unnamed = 0
    if window_totals is not None:
        unnamed = max(0, sum(window_totals) - sum(totals.values()))
    return EventStats(
        since=from_ms(since_ms),
        until=from_ms(until_ms),
        by=by,
        source_ids=[s for s in sources if s is not None] or None,
        event_types=given_types or None,
        buckets=buckets,
        types=ranked,
        unnamed=unnamed,
        queries=runner.done,
    )


def to_ms_delta(value: timedelta) -> int:
    return (value.days * 86_400 + value.seconds) * 1000 + value.microseconds // 1000


def _count_call(
    runner: _Runner, source: str | None, name: str | None, lo: int, hi: int
) -> Callable[[], int]:
    return lambda: _total(runner.query(source, name, lo, hi, COUNT_LIMIT))


def _discover_types(
    runner: _Runner, sources: list[str | None], lo: int, hi: int
) -> tuple[set[str], list[int]]:
    """Every type name among the matches in ``[lo, hi)`` (per source filter), and each
    source filter's total over the window (to tell how many events stayed unnamed).

    Round by round: a page of each open window; a window is done when its page holds
    all its events, or shows ``uniqueEventTypes`` types, or the types it lacks are all
    accounted for by type names already found (one ``limit=1`` count each); otherwise
    the part the page did not cover is cut in SPLIT for the next round.
    """
    found: set[str] = set()
    frontier = [(source, lo, hi) for source in sources]
    window_totals: list[int] = []
    limit = DISCOVERY_LIMIT
    while frontier:
        results = runner.run([_page_call(runner, s, a, b, limit) for s, a, b in frontier])
        if not window_totals:
            window_totals = [_total(result) for result in results]
        pages = []
        for window, result in zip(frontier, results, strict=True):
            seen = {event.type for event in result.data if event.type is not None}
            found |= seen
            pages.append((window, result, seen))
        # Windows still missing types: are the missing ones among the names known now?
        open_windows = [(w, r, seen) for w, r, seen in pages if _missing(r, seen) != 0]
        # (Fewer known names than missing types: a new name is in there, no need to ask.)
        checks = [
            (index, name)
            for index, (_, result, seen) in enumerate(open_windows)
            if (missing := _missing(result, seen)) is not None and missing <= len(found - seen)
            for name in sorted(found - seen)
        ]
        present = runner.run(
            [_count_call(runner, open_windows[i][0][0], name, *open_windows[i][0][1:])
             for i, name in checks]
        )  # fmt: skip
        accounted = [0] * len(open_windows)
        for (index, _), count in zip(checks, present, strict=True):
            accounted[index] += count > 0
        frontier = []
        for index, ((source, a, b), result, seen) in enumerate(open_windows):
            missing = _missing(result, seen)
            if missing is not None and accounted[index] >= missing:
                continue
            frontier.extend(_parts(source, a, b, result))
        limit = NARROW_LIMIT
    return found, window_totals


def _page_call(
    runner: _Runner, source: str | None, lo: int, hi: int, limit: int
) -> Callable[[], Any]:
    return lambda: runner.query(source, None, lo, hi, limit)


def _missing(result: EventQueryResult, seen: set[str]) -> int | None:
    """How many of the window's types its page did not show: 0 when the page held every
    match, None when the server does not say how many types there are."""
    if len(result.data) >= _total(result):
        return 0  # every match was on the page
    unique = result.summary.unique_event_types if result.summary is not None else None
    if unique is None:
        return None
    return max(0, unique - len(seen))


def _parts(
    source: str | None, lo: int, hi: int, result: EventQueryResult
) -> list[tuple[str | None, int, int]]:
    """The part of ``[lo, hi)`` the page did not cover, in SPLIT windows: as many pages
    as halving twice, in half the rounds."""
    # Newest first: every match later than the page's oldest timestamp was on the page,
    # so the types not seen are at or before it (ties included, hence +1 ms).
    stamps = [to_ms(event.timestamp) for event in result.data if event.timestamp is not None]
    if len(stamps) == len(result.data) and stamps:
        hi = min(hi, min(stamps) + 1)
    time_range = result.summary.time_range if result.summary is not None else None
    if time_range is not None and time_range.from_ is not None:
        lo = max(lo, to_ms(time_range.from_))
    if hi - lo <= 1:
        return []  # a single millisecond cannot be split: its unseen types stay unnamed
    parts = min(SPLIT, hi - lo)
    cuts = [lo + (hi - lo) * k // parts for k in range(parts + 1)]
    return [(source, a, b) for a, b in itertools.pairwise(cuts)]
