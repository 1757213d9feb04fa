"""The engine behind ``debug top``: live rates, counts and types per source, from the tail.

``TopAggregator`` is fed tail records (``boltic_cli.tail.TailRecord``: ``event``,
``gap``, ``reconnecting``, ``connected``) and answers ``snapshot()``: per source its
state, events/s now (last 5 s) and over the last minute, a per-second series of the
last ``window`` seconds (for a sparkline), counts in the window and since the start,
events today, the last event's age, gaps and reconnects; and the top event types in
the window. Arrivals are bucketed by the engine's own clock (when the tail saw them),
so clock skew between this machine and the server does not bend the rates.

``TopFeed`` runs one ``Tail`` over every source (the tail merges them by arrival),
feeds the aggregator, and calls ``on_snapshot`` once per interval, also while the
tail is idle. It never prints: the caller renders the snapshots. Events today start
from each source's ``eventsToday`` (the spec's source listing, re-read every 10 s)
and grow with what the tail sees after that listing.

Engine layer: imports base modules and the tail engine; never typer, rich or output.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from boltic_cli.tail import Tail, TailRecord

WINDOW_SECONDS = 60
NOW_SECONDS = 5  # "events/s now" averages this many seconds
MAX_TYPES = 1000  # distinct types remembered per source since the start; the rest: OTHER
OTHER = "(other types)"
BASELINE_SECONDS = 10.0  # how often eventsToday is re-read from the source listing
MAX_PENDING_TODAY = 100_000


@dataclass
class SourceSnapshot:
    """One source at one moment. Rates are events per second; ``series`` is the events
    seen in each of the last ``window`` seconds, oldest first (the last one is the
    current, partial second); ``events_today`` is None when the server gave no
    ``eventsToday``; ``status`` is ``connected``, ``reconnecting`` or ``connecting``."""

    source_id: str
    name: str
    status: str
    rate_now: float
    rate_minute: float
    series: list[int]
    events_window: int
    events_total: int
    events_today: int | None
    last_event_at: datetime | None
    last_event_age: float | None
    gaps: int
    reconnects: int
    types_window: dict[str, int]
    types_total: dict[str, int]

    def to_wire(self) -> dict[str, Any]:
        from boltic_cli.models import format_time

        wire: dict[str, Any] = {
            "sourceId": self.source_id,
            "name": self.name,
            "status": self.status,
            "rateNow": round(self.rate_now, 3),
            "rateMinute": round(self.rate_minute, 3),
            "eventsInWindow": self.events_window,
            "eventsSinceStart": self.events_total,
        }
        if self.events_today is not None:
            wire["eventsToday"] = self.events_today
        if self.last_event_at is not None:
            wire["lastEventAt"] = format_time(self.last_event_at)
        if self.last_event_age is not None:
            wire["lastEventAgeSeconds"] = round(self.last_event_age, 3)
        wire.update(
            gaps=self.gaps,
            reconnects=self.reconnects,
            series=list(self.series),
            typesInWindow=dict(self.types_window),
            typesSinceStart=dict(self.types_total),
        )
        return wire


@dataclass
class TopSnapshot:
    """Every source (busiest first: by rate now, then over the minute, then name) and
    the event types in the window over all sources (most first, ties by name)."""

    at: datetime
    elapsed: float
    window: int
    sources: list[SourceSnapshot]
    types: list[tuple[str, int]]

    @property
    def gaps(self) -> int:
        return sum(source.gaps for source in self.sources)

    @property
    def reconnects(self) -> int:
        return sum(source.reconnects for source in self.sources)

    @property
    def rate_now(self) -> float:
        return sum(source.rate_now for source in self.sources)

    @property
    def events_window(self) -> int:
        return sum(source.events_window for source in self.sources)

    @property
    def events_total(self) -> int:
        return sum(source.events_total for source in self.sources)

    def to_wire(self) -> dict[str, Any]:
        """One ndjson line of ``debug top``: ``{"kind": "snapshot", ...}``."""
        from boltic_cli.models import format_time

        return {
            "kind": "snapshot",
            "at": format_time(self.at),
            "elapsedSeconds": round(self.elapsed, 3),
            "windowSeconds": self.window,
            "rateNow": round(self.rate_now, 3),
            "eventsInWindow": self.events_window,
            "eventsSinceStart": self.events_total,
            "gaps": self.gaps,
            "reconnects": self.reconnects,
            "sources": [source.to_wire() for source in self.sources],
            "types": [{"type": name, "count": count} for name, count in self.types],
        }


@dataclass
class _Source:
    source_id: str
    status: str = "connecting"
    seconds: deque[tuple[int, Counter[str]]] = field(default_factory=deque)
    total: int = 0
    types_total: Counter[str] = field(default_factory=Counter)
    last_event_at: datetime | None = None
    gaps: int = 0
    reconnects: int = 0
    today_base: int | None = None
    today_as_of: datetime | None = None
    after_base: deque[datetime] = field(default_factory=lambda: deque(maxlen=MAX_PENDING_TODAY))


class TopAggregator:
    """Counts what the tail reports, per source and per second; ``snapshot()`` sums up.

    ``clock`` is monotonic seconds (when a record was seen); ``now`` the wall clock
    (ages of the last event, the UTC day for events today). ``names`` maps ids to the
    names shown; sources not named yet appear when their first record comes.
    """

    def __init__(
        self,
        sources: Iterable[str] = (),
        *,
        names: dict[str, str] | None = None,
        window: int = WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        max_types: int = MAX_TYPES,
    ) -> None:
        self.names = names if names is not None else {}
        self.window = max(1, int(window))
        self.clock = clock
        self.now = now
        self.max_types = max_types
        self.started = clock()
        self.sources: dict[str, _Source] = {}
        for source_id in sources:
            self.track(source_id)

    def track(self, source_id: str) -> _Source:
        """The state of ``source_id``, created (``connecting``) when new."""
        state = self.sources.get(source_id)
        if state is None:
            state = self.sources[source_id] = _Source(source_id)
        return state

    def forget(self, source_id: str) -> None:
        self.sources.pop(source_id, None)

    # -- what the tail says ------------------------------------------------------------

    def add(self, record: TailRecord) -> None:
        """Count one tail record."""
        state = self.track(record.source_id)
        if record.kind == "event" and record.event is not None:
            self._add_event(state, record)
        elif record.kind == "gap":
            state.gaps += 1
            state.status = "connected"
        elif record.kind == "reconnecting":
            state.reconnects += 1
            state.status = "reconnecting"
        elif record.kind == "connected":
            state.status = "connected"
            self.saw_last_event(record.source_id, _time(record.info.get("lastEventAt")))

    def _add_event(self, state: _Source, record: TailRecord) -> None:
        event = record.event
        assert event is not None
        state.status = "connected"
        second = self._second()
        if not state.seconds or state.seconds[-1][0] != second:
            state.seconds.append((second, Counter()))
            self._prune(state, second)
        type_ = event.type or ""
        state.seconds[-1][1][type_] += 1
        state.total += 1
        if type_ in state.types_total or len(state.types_total) < self.max_types:
            state.types_total[type_] += 1
        else:
            state.types_total[OTHER] += 1
        received = event.received_at
        if received is not None:
            self.saw_last_event(state.source_id, received)
            if state.today_as_of is not None and received > state.today_as_of:
                state.after_base.append(received)

    def saw_last_event(self, source_id: str, when: datetime | None) -> None:
        """``when`` is a receivedAt known for the source (e.g. the newest on its first page)."""
        if when is None:
            return
        state = self.track(source_id)
        if state.last_event_at is None or when > state.last_event_at:
            state.last_event_at = when

    def polled(self, source_id: str) -> None:
        """The tail read the source without an error: it is connected."""
        state = self.track(source_id)
        if state.status == "connecting":
            state.status = "connected"

    def set_events_today(self, source_id: str, count: int | None, as_of: datetime) -> None:
        """The server's ``eventsToday`` for the source as listed at ``as_of``; events the
        tail sees received after ``as_of`` are added to it."""
        state = self.track(source_id)
        if count is None:
            return
        state.today_base = count
        state.today_as_of = as_of
        kept = [when for when in state.after_base if when > as_of]
        state.after_base.clear()
        state.after_base.extend(kept)

    # -- the picture -----------------------------------------------------------------------

    def snapshot(self) -> TopSnapshot:
        """Where things stand now."""
        now = self.now()
        elapsed = max(0.0, self.clock() - self.started)
        second = self._second()
        sources = [self._source_snapshot(state, second, elapsed, now) for state in self._states()]
        sources.sort(key=lambda s: (-s.rate_now, -s.rate_minute, s.name, s.source_id))
        types: Counter[str] = Counter()
        for source in sources:
            types.update(source.types_window)
        ranked = sorted(types.items(), key=lambda pair: (-pair[1], pair[0]))
        return TopSnapshot(now, elapsed, self.window, sources, ranked)

    def _states(self) -> list[_Source]:
        return list(self.sources.values())

    def _second(self) -> int:
        return int(self.clock() - self.started)

    def _prune(self, state: _Source, second: int) -> None:
        oldest = second - self.window + 1
        while state.seconds and state.seconds[0][0] < oldest:
            state.seconds.popleft()

    def _source_snapshot(
        self, state: _Source, second: int, elapsed: float, now: datetime
    ) -> SourceSnapshot:
        self._prune(state, second)
        by_second = {s: sum(counter.values()) for s, counter in state.seconds}
        series = [by_second.get(s, 0) for s in range(second - self.window + 1, second + 1)]
        types_window: Counter[str] = Counter()
        for _, counter in state.seconds:
            types_window.update(counter)
        partial = elapsed - second  # how far into the current second
        recent = sum(series[-NOW_SECONDS:])
        rate_now = recent / max(1.0, min(elapsed, NOW_SECONDS - 1 + partial))
        rate_minute = sum(series) / max(1.0, min(elapsed, self.window - 1 + partial))
        age = None
        if state.last_event_at is not None:
            age = max(0.0, (now - state.last_event_at).total_seconds())
        return SourceSnapshot(
            source_id=state.source_id,
            name=self.names.get(state.source_id) or state.source_id,
            status=state.status,
            rate_now=rate_now,
            rate_minute=rate_minute,
            series=series,
            events_window=sum(series),
            events_total=state.total,
            events_today=_events_today(state, now),
            last_event_at=state.last_event_at,
            last_event_age=age,
            gaps=state.gaps,
            reconnects=state.reconnects,
            types_window=dict(sorted(types_window.items(), key=lambda p: (-p[1], p[0]))),
            types_total=dict(sorted(state.types_total.items(), key=lambda p: (-p[1], p[0]))),
        )


def _events_today(state: _Source, now: datetime) -> int | None:
    if state.today_base is None or state.today_as_of is None:
        return None
    today = _utc_day(now)
    base = state.today_base if _utc_day(state.today_as_of) == today else 0
    return base + sum(1 for when in state.after_base if _utc_day(when) == today)


def _utc_day(value: datetime) -> date:
    return value.astimezone(UTC).date()


def _time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        from boltic_cli.models import to_utc

        try:
            return to_utc(datetime.fromisoformat(value.replace("Z", "+00:00")))
        except ValueError:
            return None
    return None


class TopFeed:
    """A ``Tail`` (history 0) over the sources, feeding a ``TopAggregator``; ``run``
    hands a snapshot to ``on_snapshot`` every ``interval`` seconds until the tail ends
    (its ``duration``) or the caller stops it (Ctrl-C goes up as usual).

    ``list_sources()`` returns the spec's source listing (``StreamSource`` models); it
    is called every BASELINE_SECONDS for names and ``eventsToday`` (a failure there
    is skipped: the tail's own errors are what counts). With ``follow_all`` the tail
    follows whatever that listing holds.
    """

    def __init__(
        self,
        make_tail: Callable[..., Tail],
        aggregator: TopAggregator,
        *,
        list_sources: Callable[[], list[Any]],
        source_ids: Iterable[str] = (),
        follow_all: bool = False,
        interval: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.aggregator = aggregator
        self.clock = aggregator.clock
        self.list_sources = list_sources
        self.follow_all = follow_all
        self.interval = max(0.05, interval)
        self._sleep = sleep
        self._next_listing = 0.0
        self._listed: list[str] | None = None
        self._on_snapshot: Callable[[TopSnapshot], None] = lambda snapshot: None
        self._due = 0.0
        fixed = list(source_ids)
        for source_id in fixed:
            aggregator.track(source_id)
        sources: Any = self._current_ids if follow_all else fixed
        self.tail = make_tail(sources, history=0, sleep=self._sleep_between_snapshots)

    def run(self, on_snapshot: Callable[[TopSnapshot], None]) -> TopSnapshot:
        """Follow until the tail ends; returns the last snapshot (also handed over)."""
        self._on_snapshot = on_snapshot
        self._refresh_listing(force=True)
        self._due = self.clock() + self.interval
        for record in self.tail.records():
            self.aggregator.add(record)
            self._emit_if_due()
        return self._emit()

    # -- inside the tail's pauses ------------------------------------------------------------

    def _sleep_between_snapshots(self, seconds: float) -> None:
        """The tail's pause, cut at each due snapshot so the view keeps its pace."""
        end = self.clock() + seconds
        while True:
            self._emit_if_due()
            left = end - self.clock()
            if left <= 0:
                return
            self._sleep(min(left, max(self._due - self.clock(), 0.001)))

    def _emit_if_due(self) -> None:
        if self.clock() >= self._due:
            self._emit()
            while self._due <= self.clock():
                self._due += self.interval

    def _emit(self) -> TopSnapshot:
        self._refresh_listing()
        self._sync_with_tail()
        snapshot = self.aggregator.snapshot()
        self._on_snapshot(snapshot)
        return snapshot

    def _sync_with_tail(self) -> None:
        """What the tail knows beyond its records: which sources it reads without errors,
        and the newest receivedAt on each one's first page."""
        for source_id, state in list(self.tail.states.items()):
            self.aggregator.track(source_id)
            if state.primed and not state.failures:
                self.aggregator.polled(source_id)
            self.aggregator.saw_last_event(source_id, state.high_water)
        if self.follow_all and self._listed is not None:
            for source_id in set(self.aggregator.sources) - set(self._listed):
                self.aggregator.forget(source_id)  # deleted since

    # -- the source listing ------------------------------------------------------------------

    def _current_ids(self) -> list[str]:
        self._refresh_listing(force=True)
        return list(self._listed or [])

    def _refresh_listing(self, *, force: bool = False) -> None:
        if not force and self.clock() < self._next_listing:
            return
        self._next_listing = self.clock() + BASELINE_SECONDS
        from boltic_cli.tail import TRANSIENT_ERRORS

        try:
            listed = self.list_sources()
        except TRANSIENT_ERRORS:
            return
        as_of = self.aggregator.now()
        self._listed = []
        for source in listed:
            if not source.id:
                continue
            self._listed.append(source.id)
            self.aggregator.names[source.id] = source.name or source.id
            if self.follow_all or source.id in self.aggregator.sources:
                self.aggregator.set_events_today(source.id, source.events_today, as_of)
