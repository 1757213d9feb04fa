"""The store interface the routes and background tasks use, and the values it trades in.

Every method that may touch the database is a coroutine, so a store with an async
driver (PostgreSQL) implements it natively and the SQLite store hides its threads
behind it. What each method promises (ordering, durability, errors, idempotency) is
written in docs/internals.md, "Server store"; a store must keep those promises.

Times are integer milliseconds since the epoch (UTC) throughout.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from boltic_cli.server.store.outbox import DeliveryStore

DAY_MS = 86_400_000
# How long an Idempotency-Key is remembered.
IDEMPOTENCY_TTL_MS = 24 * 3600 * 1000
# How long a messageId dedupes (design.md: 24 h).
MESSAGE_ID_TTL_MS = IDEMPOTENCY_TTL_MS
# The most events one prune_received_before call deletes.
PRUNE_CHUNK = 5000


class StoreError(Exception):
    """Base of what a store operation can fail with."""


class StoreUnavailable(StoreError):
    """The database cannot be written (disk full, I/O error, closed): HTTP 503."""


class SourceGone(StoreError):
    """The source does not exist (any more)."""


class IdempotencyConflict(StoreError):
    """The Idempotency-Key was used before with a different request."""


class SchemaTooNew(StoreError):
    """The database was created by a newer version."""


class StoreNotAvailable(StoreError):
    """The database URL names a store this build cannot open (yet)."""


@dataclass(frozen=True)
class SourceInfo:
    """What the hot path needs to know about a source: its write key and status."""

    id: str
    write_key: str
    status: str


@dataclass(frozen=True)
class Idempotency:
    """An Idempotency-Key: ``scope`` stands for the caller's token, ``request_hash``
    for the method, path and body the key was first used with."""

    scope: str
    key: str
    request_hash: str


@dataclass(frozen=True)
class StoredResponse:
    """What a write answered: replayed as is for a retried Idempotency-Key."""

    status: int
    body: str


@dataclass(frozen=True)
class EventRecord:
    """An event as stored: ``body`` is the Event's wire JSON text, kept byte for byte.
    ``message_id`` (the sender's dedupe key, also inside ``body``) makes the store
    answer with the first event's id for a repeat within MESSAGE_ID_TTL_MS."""

    id: str
    source_id: str
    type: str
    timestamp: int
    received_at: int
    body: str
    message_id: str | None = None


@dataclass
class QueryResult:
    """A page of events (JSON texts, newest first) and the summary of every match."""

    bodies: list[str]
    total: int
    unique_types: int
    earliest: int | None
    latest: int | None


def accepted(event_id: str) -> StoredResponse:
    """The 202 answer to a stored event."""
    return StoredResponse(202, f'{{"eventId":"{event_id}","status":"accepted"}}')


class Store(DeliveryStore):
    """One database behind the API. Open with ``await open()``, end with ``await close()``.

    ``clock`` (seconds since the epoch) is what ``now_ms`` reads; tests move it.
    """

    clock: Callable[[], float] = time.time

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    # lifecycle

    @abc.abstractmethod
    async def open(self) -> None:
        """Create or migrate the schema and get ready to serve. Raises SchemaTooNew,
        StoreUnavailable (cannot open)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Finish queued writes (or fail them with StoreUnavailable), release the database.
        Idempotent."""

    # sources (the hot path: called for every event sent)

    @abc.abstractmethod
    async def source(self, source_id: str) -> SourceInfo | None:
        """The source, or None if it does not exist."""

    @abc.abstractmethod
    async def source_for_key(
        self, write_key: str, *, recheck_on_insert: bool = False
    ) -> SourceInfo | None:
        """The source whose write key this is, or None. The caller compares the key
        again in constant time.

        ``recheck_on_insert``: the caller only inserts events with the key (no
        Idempotency-Key, no other route), and when an insert is refused with
        SourceGone it asks again without the flag and answers from that (401 for a
        deleted key, 403 for a paused source). A store may then answer an active source
        from what this process saw earlier, because its inserting statement checks the
        source again, and a write key never changes for its source (the spec has no
        rotation). Without the flag the answer is the database's now."""

    # writes: each resolves only after its transaction committed durably

    @abc.abstractmethod
    async def insert_event(
        self, record: EventRecord, idem: Idempotency | None = None
    ) -> StoredResponse:
        """Store one event; answers the 202 (for a known Idempotency-Key the first
        answer; for a messageId this source sent within MESSAGE_ID_TTL_MS a 202 with
        the first event's id, nothing stored). Raises SourceGone,
        IdempotencyConflict, StoreUnavailable."""

    @abc.abstractmethod
    async def insert_batch(
        self,
        records: Sequence[EventRecord],
        render: Callable[[list[str | StoreError]], str],
        idem: Idempotency | None = None,
    ) -> StoredResponse:
        """Store a batch of events in one transaction (or as part of one group commit);
        answers 200 with ``render(outcomes)``: per record, in order, its event id (for
        a repeated messageId the first event's id, nothing stored) or the StoreError
        that refused it alone (SourceGone). With ``idem`` the rendered answer is
        recorded in the same transaction and replayed for a retry. ``render`` may
        raise (the route does, with SourceGone, for a write key whose source is gone:
        its records are all of that one source, so none was stored); the exception
        propagates and nothing of the batch nor the key is recorded. Raises
        IdempotencyConflict, StoreUnavailable (then nothing of the batch is stored)."""

    @abc.abstractmethod
    async def create_source(
        self,
        row: dict[str, Any],
        render: Callable[[dict[str, Any]], str],
        idem: Idempotency | None = None,
    ) -> StoredResponse:
        """Insert a source (``row``: id, name, type, write_key, status, created_at) and
        answer 201 with ``render({**row, "events_today": 0})``. Raises
        IdempotencyConflict, StoreUnavailable."""

    @abc.abstractmethod
    async def delete_source(self, source_id: str) -> None:
        """Delete the source with its events and counts; its write key stops working
        for every request that starts after this returns. Raises SourceGone,
        StoreUnavailable."""

    @abc.abstractmethod
    async def update_source(
        self, source_id: str, *, name: str | None = None, status: str | None = None
    ) -> None:
        """Set the source's ``name`` and/or ``status`` (``active``|``inactive``; None
        keeps a field). Its write key is kept: an inactive source's key is refused
        (403) by the routes, which read ``status`` through ``source()``/``source_for_key``;
        setting it active again restores it for every request that starts after this
        returns. Raises SourceGone, StoreUnavailable."""

    @abc.abstractmethod
    async def create_destination(
        self,
        row: dict[str, Any],
        render: Callable[[dict[str, Any]], str],
        idem: Idempotency | None = None,
    ) -> StoredResponse:
        """Insert a destination (``row``: id, name, type, config (JSON text), status,
        created_at) and answer 201 with ``render(row)``. Raises IdempotencyConflict,
        StoreUnavailable."""

    # maintenance

    @abc.abstractmethod
    async def prune_received_before(self, cutoff_ms: int) -> int:
        """Delete up to PRUNE_CHUNK events received before ``cutoff_ms`` with their
        counts, in one transaction; returns how many (call again while it is PRUNE_CHUNK)."""

    @abc.abstractmethod
    async def expire_idempotency_keys(self) -> int:
        """Forget Idempotency-Keys older than IDEMPOTENCY_TTL_MS and messageIds older
        than MESSAGE_ID_TTL_MS; returns how many."""

    # reads: each sees one consistent snapshot

    @abc.abstractmethod
    async def list_sources(self) -> list[dict[str, Any]]:
        """Every source by id: dicts with id, name, type, write_key, status, created_at,
        events_today (events received since 00:00 UTC of ``now_ms()``)."""

    @abc.abstractmethod
    async def get_source(self, source_id: str) -> dict[str, Any] | None:
        """One source as in ``list_sources``, or None."""

    @abc.abstractmethod
    async def list_destinations(self) -> list[dict[str, Any]]:
        """Every destination by id: id, name, type, config (parsed), status, created_at."""

    @abc.abstractmethod
    async def debug_events(self, source_id: str, limit: int) -> tuple[list[str], int | None]:
        """The newest ``limit`` events of the source by receivedAt (ties by id, JSON
        texts) and the newest receivedAt (None without events)."""

    @abc.abstractmethod
    async def query_events(
        self,
        *,
        source_id: str | None = None,
        event_type: str | None = None,
        from_ms: int | None = None,
        to_ms: int | None = None,
        limit: int = 100,
    ) -> QueryResult:
        """Matches newest first by timestamp (ties by id), ``from_ms`` inclusive and
        ``to_ms`` exclusive; the summary covers every match, not just the page."""
