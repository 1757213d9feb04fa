"""The live-tail polling engine: dedupe, order, gaps, adaptive polling, reconnects.

The spec has no cursor, only ``GET /streams/sources/{id}/debug`` (newest first,
``limit`` 1..500), so the engine polls it and works out what is new. It yields
``TailRecord``s and never prints, nor knows how a record looks: the presentation
layer (``output.TailView`` and ``Output.follow_tail``) renders them. Time comes
from the ``clock`` (monotonic seconds) and ``sleep`` it is given, so tests can
drive it; ``records(on_idle=...)`` is the hook a live display uses to refresh
itself before each pause.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from boltic_cli.errors import (
    AuthenticationFailed,
    BolticError,
    NetworkError,
    NotFound,
    PermissionDenied,
    RateLimited,
    ServerError,
    UnexpectedResponse,
)

if TYPE_CHECKING:
    from boltic_cli.models import DebugResult, Event

MAX_LIMIT = 500  # the largest `limit` the debug endpoint allows (design.md)
IDLE_LIMIT = 50  # the endpoint's default: enough while traffic is light
SEEN_CAPACITY = 5000  # ids remembered for dedupe; ten full pages
MIN_DELAY = 0.1  # shortest pause between polls while events keep arriving
MAX_BACKOFF = 10.0
# How often ``--all`` re-reads the source list: a new source is tailed within this long
# (and from its first event: see ``SourceState.fresh``).
SOURCE_REFRESH_SECONDS = 2.0
RATE_WINDOW = 10.0
RATE_SAMPLES = 5000

# Failures worth waiting out: the server may come back.
TRANSIENT_ERRORS: tuple[type[BolticError], ...] = (
    NetworkError,
    ServerError,
    RateLimited,
    UnexpectedResponse,
)
# Failures that no amount of waiting fixes.
FATAL_ERRORS: tuple[type[BolticError], ...] = (AuthenticationFailed, PermissionDenied, NotFound)


@dataclass
class TailRecord:
    """One thing the tail has to say: an event, or a status change."""

    kind: str  # "event" | "gap" | "reconnecting" | "connected"
    source_id: str
    event: Event | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def to_wire(self) -> dict[str, Any]:
        """The ndjson line: the Event object plus ``kind``, or a status object."""
        if self.event is not None:
            return {**self.event.to_wire(), "kind": self.kind}
        return {"kind": self.kind, "sourceId": self.source_id, **self.info}


class SeenIds:
    """Event ids already handled, bounded: the oldest are forgotten first.

    ``floor`` is the newest ``receivedAt`` among forgotten ids: anything at or
    before it counts as seen, so forgetting an id never makes it new again.
    """

    def __init__(self, capacity: int = SEEN_CAPACITY):
        self.capacity = capacity
        self._ids: OrderedDict[str, datetime | None] = OrderedDict()
        self.floor: datetime | None = None

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, event_id: str) -> bool:
        return event_id in self._ids

    def is_new(self, event: Event) -> bool:
        if event.id is None or event.id in self._ids:
            return False
        return not (
            self.floor is not None
            and event.received_at is not None
            and event.received_at <= self.floor
        )

    def add(self, event: Event) -> None:
        if event.id is None:
            return
        self._ids[event.id] = event.received_at
        while len(self._ids) > self.capacity:
            _, received_at = self._ids.popitem(last=False)
            if received_at is not None and (self.floor is None or received_at > self.floor):
                self.floor = received_at


def arrival_order(event: Event) -> tuple[str, str]:
    """Sort key: by ``receivedAt``, ties by id (ids are time-sortable)."""
    received = event.received_at.isoformat() if event.received_at is not None else ""
    return received, event.id or ""


@dataclass
class SourceState:
    """What the engine knows about one source between polls."""

    source_id: str
    seen: SeenIds = field(default_factory=SeenIds)
    primed: bool = False  # the first (history) page has been read
    # Found after the tail started (``--all``): everything it holds is new, shown as
    # live from its first event, not cut to ``history``.
    fresh: bool = False
    ever_connected: bool = False
    limit: int = IDLE_LIMIT
    delay: float = MIN_DELAY
    high_water: datetime | None = None
    failures: int = 0
    retry_at: float = 0.0


@dataclass
class PollResult:
    new: list[Event]
    gap: dict[str, Any] | None
    full_of_new: bool
    page: DebugResult
    history: bool = False


@dataclass
class TailStats:
    started: float
    shown: int = 0
    gaps: int = 0
    polls: int = 0
    reconnects: int = 0
    last_event_at: datetime | None = None
    connected: bool = False
    # When live (not history) events were shown, for the recent rate; bounded.
    arrivals: deque[float] = field(default_factory=lambda: deque(maxlen=RATE_SAMPLES))

    def recent_rate(self, now: float) -> float:
        """Live events per second over the last RATE_WINDOW seconds."""
        since = now - RATE_WINDOW
        count = sum(1 for when in self.arrivals if when > since)
        span = min(RATE_WINDOW, max(now - self.started, 1.0))
        return count / span


class Tail:
    """Follow one or more sources; iterate ``records()`` for what happens.

    ``sources`` is a list of ids, or a function returning the current list
    (``--all``: re-read every ``SOURCE_REFRESH_SECONDS``; a source that appears later
    is read from its first event; one that disappears is dropped instead of ending
    the tail). ``history`` is how many recent events are shown first, in total over
    all sources (merged by arrival). ``since`` (a wall-clock time): events received
    at or after it that are already there at the start count as new, instead of
    ``history`` (``debug wait --since``). One "connected" record per poll round
    names every source that connected in it (``info["sourceIds"]`` when more than one).
    """

    def __init__(
        self,
        client: Any,
        sources: Iterable[str] | Callable[[], Iterable[str]],
        *,
        history: int = 10,
        interval: float = 1.0,
        page_size: int = MAX_LIMIT,
        accept: Callable[[Event], bool] | None = None,
        duration: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        seen_capacity: int = SEEN_CAPACITY,
        since: datetime | None = None,
    ):
        self.client = client
        self._list_sources = sources if callable(sources) else None
        self.history = max(0, history)
        self._history_left = self.history
        self.since = since
        self._listed_once = False
        self.interval = max(interval, 0.0)
        self.max_limit = max(1, min(page_size, MAX_LIMIT))
        self.idle_limit = min(IDLE_LIMIT, self.max_limit)
        self.accept = accept or (lambda event: True)
        self.clock = clock
        self.sleep = sleep
        self.seen_capacity = seen_capacity
        self.stats = TailStats(started=clock())
        self.deadline = None if duration is None else self.stats.started + duration
        self.states: dict[str, SourceState] = {}
        self._next_refresh = 0.0
        initial = [] if self._list_sources else list(sources)  # type: ignore[arg-type]
        for source_id in initial:
            self._add_source(source_id)

    # -- public ---------------------------------------------------------------

    def records(self, *, on_idle: Callable[[], None] | None = None) -> Iterator[TailRecord]:
        """History first, then live records, until the duration runs out (forever without one).

        ``on_idle`` is called before each pause between polls (not when the
        engine polls again at once): a live status line refreshes itself there.
        """
        while not self._expired():
            self._refresh_sources()
            batch: list[tuple[Event, str, bool]] = []
            connected: list[tuple[SourceState, DebugResult]] = []
            for state in list(self.states.values()):
                if self.clock() < state.retry_at:
                    continue
                yield from self._poll_source(state, batch, connected)
            if connected:
                yield self._connected(connected)
            batch.sort(key=lambda pair: arrival_order(pair[0]))
            batch = self._within_history(batch)
            for event, source_id, live in batch:
                self.stats.shown += 1
                self.stats.last_event_at = event.received_at
                if live:
                    self.stats.arrivals.append(self.clock())
                yield TailRecord("event", source_id, event)
            self._pause(on_idle)

    def _within_history(
        self, batch: list[tuple[Event, str, bool]]
    ) -> list[tuple[Event, str, bool]]:
        """``batch`` (in arrival order) with only the newest history events that fit in
        what is left of ``history`` (a total over every source, not per source)."""
        history = [pair for pair in batch if not pair[2]]
        if len(history) <= self._history_left:
            self._history_left -= len(history)
            return batch
        dropped = {id(pair) for pair in history[: len(history) - self._history_left]}
        self._history_left = 0
        return [pair for pair in batch if id(pair) not in dropped]

    # -- polling ----------------------------------------------------------------

    def _poll_source(
        self,
        state: SourceState,
        batch: list[tuple[Event, str, bool]],
        connected: list[tuple[SourceState, DebugResult]],
    ) -> Iterator[TailRecord]:
        try:
            result = self._poll(state)
        except FATAL_ERRORS as e:
            if self._list_sources is not None and isinstance(e, NotFound):
                self.states.pop(state.source_id, None)
                return
            raise
        except TRANSIENT_ERRORS as e:
            yield self._reconnecting(state, e)
            return
        if state.failures or not state.ever_connected:
            state.failures = 0
            state.ever_connected = True
            connected.append((state, result.page))
        self.stats.connected = True
        if result.gap is not None:
            self.stats.gaps += 1
            yield TailRecord("gap", state.source_id, info=result.gap)
        batch.extend(
            (event, state.source_id, not result.history)
            for event in result.new
            if self.accept(event)
        )
        self._adapt(state, result)

    def _poll(self, state: SourceState) -> PollResult:
        self.stats.polls += 1
        if not state.primed:
            return self._prime(state)
        limit = state.limit
        page = self._fetch(state, limit)
        if limit < self.max_limit and self._full_of_new(state, page.data, limit):
            # The small idle page overflowed: the rest may still be on the server.
            limit = state.limit = self.max_limit
            page = self._fetch(state, limit)
        return self._absorb(state, page, limit)

    def _prime(self, state: SourceState) -> PollResult:
        """The first page: remember all of it, show only the last ``history`` matches
        (all of them for a source found later; those since ``since`` as new)."""
        page = self._fetch(state, self.max_limit)
        events = sorted(page.data, key=arrival_order)
        for event in events:
            state.seen.add(event)
        self._raise_high_water(state, events)
        state.primed = True
        matching = [event for event in events if self.accept(event)]
        if state.fresh:
            gap = None
            if len(page.data) >= self.max_limit and events:
                # More arrived since it was created than one page holds.
                gap = {
                    "after": None,
                    "before": _wire_time(events[0].received_at),
                    "limit": self.max_limit,
                    "message": f"more than {self.max_limit} events arrived before the "
                    "new source was noticed; some were not shown",
                }
            return PollResult(new=matching, gap=gap, full_of_new=False, page=page)
        if self.since is not None:
            # Events since then are new; ``history`` does not apply.
            recent = [
                e for e in matching if e.received_at is not None and e.received_at >= self.since
            ]
            return PollResult(new=recent, gap=None, full_of_new=False, page=page)
        history = matching[-self.history :] if self.history else []
        return PollResult(new=history, gap=None, full_of_new=False, page=page, history=True)

    def _fetch(self, state: SourceState, limit: int) -> DebugResult:
        return self.client.debug_stream_source(state.source_id, limit=limit)

    @staticmethod
    def _full_of_new(state: SourceState, events: list[Event], limit: int) -> bool:
        return len(events) >= limit and all(state.seen.is_new(event) for event in events)

    def _absorb(self, state: SourceState, page: DebugResult, limit: int) -> PollResult:
        """Pick out the events not seen before; a full page of only new ones is a gap."""
        fresh = sorted((e for e in page.data if state.seen.is_new(e)), key=arrival_order)
        full_of_new = self._full_of_new(state, page.data, limit)
        gap = None
        if full_of_new and fresh:
            gap = {
                "after": _wire_time(state.high_water),
                "before": _wire_time(fresh[0].received_at),
                "limit": limit,
                "message": f"more than {limit} events arrived between two polls; "
                "some were not shown",
            }
        for event in fresh:
            state.seen.add(event)
        self._raise_high_water(state, fresh)
        return PollResult(new=fresh, gap=gap, full_of_new=full_of_new, page=page)

    @staticmethod
    def _raise_high_water(state: SourceState, events: list[Event]) -> None:
        for event in events:
            if event.received_at is not None and (
                state.high_water is None or event.received_at > state.high_water
            ):
                state.high_water = event.received_at

    # -- pacing -----------------------------------------------------------------

    def _adapt(self, state: SourceState, result: PollResult) -> None:
        """Busy: ask for the most, come back at once. Idle: ease back towards the interval."""
        busy_threshold = max(1, state.limit // 2)
        if result.full_of_new or len(result.new) >= busy_threshold:
            state.limit = self.max_limit
        elif not result.new:
            state.limit = self.idle_limit
        if result.full_of_new:
            state.delay = 0.0
        elif result.new:
            state.delay = min(MIN_DELAY, self.interval)
        else:
            state.delay = min(max(state.delay, MIN_DELAY) * 2, self.interval)

    def _reconnecting(self, state: SourceState, error: BolticError) -> TailRecord:
        state.failures += 1
        self.stats.reconnects += 1
        self.stats.connected = False
        backoff = min(0.5 * 2 ** (state.failures - 1), max(MAX_BACKOFF, self.interval))
        state.retry_at = self.clock() + backoff
        return TailRecord(
            "reconnecting",
            state.source_id,
            info={"attempt": state.failures, "retryIn": round(backoff, 3), "reason": error.message},
        )

    def _pause(self, on_idle: Callable[[], None] | None = None) -> None:
        now = self.clock()
        delays = [s.delay for s in self.states.values() if s.retry_at <= now]
        waits = [s.retry_at - now for s in self.states.values() if s.retry_at > now]
        delay = min([*delays, *waits], default=self.interval)
        if self.deadline is not None:
            delay = min(delay, self.deadline - now)
        if delay > 0:
            if on_idle is not None:
                on_idle()
            self.sleep(delay)

    def _expired(self) -> bool:
        return self.deadline is not None and self.clock() >= self.deadline

    # -- sources ------------------------------------------------------------------

    def _add_source(self, source_id: str, *, fresh: bool = False) -> None:
        if source_id not in self.states:
            self.states[source_id] = SourceState(
                source_id, seen=SeenIds(self.seen_capacity), limit=self.idle_limit, fresh=fresh
            )

    def _refresh_sources(self) -> None:
        if self._list_sources is None or self.clock() < self._next_refresh:
            return
        try:
            current = list(self._list_sources())
        except TRANSIENT_ERRORS:
            return
        finally:
            self._next_refresh = self.clock() + SOURCE_REFRESH_SECONDS
        for source_id in current:
            self._add_source(source_id, fresh=self._listed_once)
        self._listed_once = True
        for source_id in set(self.states) - set(current):
            del self.states[source_id]

    @staticmethod
    def _connected(connected: list[tuple[SourceState, DebugResult]]) -> TailRecord:
        """One record for the sources that (re)connected in a round: the one source's
        facts, or every source's id under ``sourceIds``."""
        state, page = connected[0]
        info: dict[str, Any] = {}
        if len(connected) > 1:
            info["sourceIds"] = [s.source_id for s, _ in connected]
            return TailRecord("connected", state.source_id, info=info)
        if page.connected is not None:
            info["sourceConnected"] = page.connected
        if page.last_event_at is not None:
            info["lastEventAt"] = _wire_time(page.last_event_at)
        return TailRecord("connected", state.source_id, info=info)


def seconds_from(wall_clock: Callable[[], datetime]) -> Callable[[], float]:
    """A ``clock`` for ``Tail`` made from a wall clock (``Environment.clock``): POSIX
    seconds, so a test that moves the environment's clock moves the tail too."""
    return lambda: wall_clock().timestamp()


def all_source_ids(client: Any, names: dict[str, str]) -> Callable[[], list[str]]:
    """For tailing every source: a function the engine calls for the current source ids;
    each call also keeps ``names`` (id -> name) current for the view."""

    def current_ids() -> list[str]:
        ids = []
        for found in client.list_stream_sources():
            if found.id:
                names[found.id] = found.name or found.id
                ids.append(found.id)
        return ids

    return current_ids


def _wire_time(value: datetime | None) -> str | None:
    if value is None:
        return None
    from boltic_cli.models import format_time

    return format_time(value)
