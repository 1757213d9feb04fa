"""SQLite storage for the local server: schema, one writer thread with group commit, reads.

Every write goes through one writer thread. It takes whatever jobs are queued,
runs them in one transaction, commits (``synchronous=FULL``: the WAL is fsynced)
and only then resolves each job's future, so an answer built from a future is
never sent for data that is not on disk. A batch of nothing but plain event
inserts (the common case) is one autocommitted INSERT statement. Reads use one
connection per thread; WAL lets them run beside the writer.

Event counts are kept as events are written, per source, type and UTC day of
``timestamp`` (for query summaries) and per source and UTC day of ``receivedAt``
(for ``eventsToday``), so a summary over millions of events adds up a few
thousand counters and counts only the partial days at the edges of a window.

Times are stored as integer milliseconds since the epoch (UTC).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 2
DAY_MS = 86_400_000
# 1024 events x 6 columns stays under MAX_SQL_VARIABLES: a batch of events is one
# INSERT statement, so autocommitting it commits the whole batch at once.
MAX_BATCH = 1024
IDEMPOTENCY_TTL_MS = 24 * 3600 * 1000
PRUNE_CHUNK = 5000
MAX_SQL_VARIABLES = 32000  # SQLite's limit is 32766 since 3.32

SCHEMA = """
CREATE TABLE sources (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    type TEXT NOT NULL,
    write_key TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE destinations (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    type TEXT NOT NULL,
    config TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE events (
    id TEXT NOT NULL,
    source_id TEXT NOT NULL,
    type TEXT NOT NULL,
    timestamp INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    body TEXT NOT NULL
);
-- One index per filter combination of GET /streams/events, each ending in the
-- sort order (timestamp, id), and the debug read's (source, receivedAt, id).
CREATE INDEX events_by_source_type_time ON events (source_id, type, timestamp, id);
CREATE INDEX events_by_source_time ON events (source_id, timestamp, id);
CREATE INDEX events_by_type_time ON events (type, timestamp, id);
CREATE INDEX events_by_time ON events (timestamp, id);
CREATE INDEX events_by_source_received ON events (source_id, received_at, id);
CREATE TABLE event_counts (
    source_id TEXT NOT NULL,
    type TEXT NOT NULL,
    day INTEGER NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (source_id, type, day)
) WITHOUT ROWID;
CREATE INDEX event_counts_by_day ON event_counts (day, type);
CREATE TABLE received_counts (
    source_id TEXT NOT NULL,
    day INTEGER NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (source_id, day)
) WITHOUT ROWID;
CREATE TABLE idempotency (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    status INTEGER NOT NULL,
    body TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
) WITHOUT ROWID;
CREATE INDEX idempotency_by_age ON idempotency (created_at);
"""

# Counts kept by the database itself, in the same statement as the write: no extra
# round trips from the writer thread (which competes with request handlers for the
# GIL), and no way for an insert or delete to miss its count.
DAY_OF = "(CASE WHEN {t} >= 0 THEN {t} / 86400000 ELSE ({t} - 86399999) / 86400000 END)"
COUNT_TRIGGERS = f"""
CREATE TRIGGER events_count_insert AFTER INSERT ON events BEGIN
    INSERT INTO event_counts (source_id, type, day, n)
    VALUES (NEW.source_id, NEW.type, {DAY_OF.format(t="NEW.timestamp")}, 1)
    ON CONFLICT (source_id, type, day) DO UPDATE SET n = n + 1;
    INSERT INTO received_counts (source_id, day, n)
    VALUES (NEW.source_id, {DAY_OF.format(t="NEW.received_at")}, 1)
    ON CONFLICT (source_id, day) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER events_count_delete AFTER DELETE ON events BEGIN
    UPDATE event_counts SET n = n - 1 WHERE source_id = OLD.source_id
        AND type = OLD.type AND day = {DAY_OF.format(t="OLD.timestamp")};
    UPDATE received_counts SET n = n - 1 WHERE source_id = OLD.source_id
        AND day = {DAY_OF.format(t="OLD.received_at")};
END;
"""

MIGRATIONS: dict[int, str] = {1: SCHEMA, 2: COUNT_TRIGGERS}


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


@dataclass(frozen=True)
class SourceInfo:
    id: str
    write_key: str
    status: str


@dataclass(frozen=True)
class Idempotency:
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
    id: str
    source_id: str
    type: str
    timestamp: int
    received_at: int
    body: str


@dataclass
class QueryResult:
    bodies: list[str]
    total: int
    unique_types: int
    earliest: int | None
    latest: int | None


@dataclass(slots=True)
class _Job:
    run: Callable[[sqlite3.Connection, list[Callable[[], None]]], Any] | None
    # A plain event insert (no Idempotency-Key): batched with its neighbours.
    record: EventRecord | None = None
    # Set for writes awaited on an event loop: settled there, one wake-up per batch.
    waiter: asyncio.Future | None = None
    # Set for the other writes. Not made for waiters: a Future builds a Condition,
    # a cost every event sent would pay for nothing.
    future: Future | None = None


def _settle_waiters(items: list[tuple[asyncio.Future, Any, bool]]) -> None:
    for waiter, value, ok in items:
        if waiter.done():
            continue
        if ok:
            waiter.set_result(value)
        else:
            waiter.set_exception(value)


def _settle(outcomes: Iterable[tuple[_Job, Any, bool]]) -> None:
    """Resolve jobs: futures directly, loop waiters with one call per loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future, Any, bool]]] = {}
    for job, value, ok in outcomes:
        if job.waiter is not None:
            by_loop.setdefault(job.waiter.get_loop(), []).append((job.waiter, value, ok))
            continue
        assert job.future is not None
        if ok:
            job.future.set_result(value)
        else:
            job.future.set_exception(value)
    for loop, items in by_loop.items():
        # RuntimeError: the loop is closed, nobody is waiting any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_settle_waiters, items)


def _name_os_thread(name: str) -> None:
    """Show the thread's name to the OS (top -H, /proc/PID/task/*/comm), where Python
    3.11 leaves the process name: per-thread CPU is then measurable from outside."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        pr_set_name = 15
        ctypes.CDLL(None).prctl(pr_set_name, name.encode()[:15], 0, 0, 0)


def accepted(event_id: str) -> StoredResponse:
    return StoredResponse(202, f'{{"eventId":"{event_id}","status":"accepted"}}')


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=10.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=10000")
    return conn


def migrate(conn: sqlite3.Connection) -> None:
    """Create or upgrade the schema to SCHEMA_VERSION."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"database schema version {version} is newer than this boltic ({SCHEMA_VERSION})"
        )
    for target in range(version + 1, SCHEMA_VERSION + 1):
        # One transaction per version; executescript, because triggers contain ";".
        try:
            conn.executescript(
                f"BEGIN IMMEDIATE;\n{MIGRATIONS[target]};\nPRAGMA user_version={target};\nCOMMIT;"
            )
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise


def _insert_rows(conn: sqlite3.Connection, sql: str, rows: list[tuple]) -> None:
    """Run ``sql`` with its ``VALUES {}`` filled by many rows at once: one statement per
    chunk instead of one per row, so the writer gives up and retakes the GIL once, not
    once per row, while request handlers compete for it."""
    if not rows:
        return
    width = len(rows[0])
    per_statement = MAX_SQL_VARIABLES // width
    placeholder = "(" + ", ".join("?" * width) + ")"
    for start in range(0, len(rows), per_statement):
        chunk = rows[start : start + per_statement]
        params = [value for row in chunk for value in row]
        conn.execute(sql.format(", ".join([placeholder] * len(chunk))), params)


def insert_events(conn: sqlite3.Connection, records: list[EventRecord]) -> None:
    """Insert events (inside the caller's transaction); triggers count them."""
    _insert_rows(
        conn,
        "INSERT INTO events (id, source_id, type, timestamp, received_at, body) VALUES {}",
        [(r.id, r.source_id, r.type, r.timestamp, r.received_at, r.body) for r in records],
    )


class Store:
    def __init__(self, path: Path, *, commit_delay: float = 0.0, clock=time.time) -> None:
        self.path = Path(path)
        self.commit_delay = commit_delay
        self.clock = clock
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._writer_conn: sqlite3.Connection | None = None
        self._writer: threading.Thread | None = None
        self._closed = False
        # Committed write transactions: group commit shows as fewer of these than writes.
        self.commits = 0
        # Owned by the writer thread; read by request handlers for a fast
        # answer. The writer re-checks inside its transaction.
        self._sources: dict[str, SourceInfo] = {}
        self._by_key: dict[str, SourceInfo] = {}

    # lifecycle

    def open(self) -> Store:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = connect(self.path)
        try:
            migrate(conn)
            for sid, key, status in conn.execute("SELECT id, write_key, status FROM sources"):
                self._remember(SourceInfo(sid, key, status))
        except BaseException:
            conn.close()
            raise
        self._writer_conn = conn
        self._writer = threading.Thread(target=self._write_loop, name="boltic-writer", daemon=True)
        self._writer.start()
        return self

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        if self._writer is not None:
            self._writer.join()
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()
        if self._writer_conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._writer_conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._writer_conn.close()

    def __enter__(self) -> Store:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    # the writer

    def submit(
        self,
        run: Callable[[sqlite3.Connection, list[Callable[[], None]]], Any] | None,
        record: EventRecord | None = None,
        waiter: asyncio.Future | None = None,
    ) -> Future | None:
        """Queue a write; the future it returns (or ``waiter``, then it returns None)
        resolves after its transaction committed."""
        job = _Job(run, record, waiter, None if waiter is not None else Future())
        if self._closed:
            _settle([(job, StoreUnavailable("the store is closed"), False)])
        else:
            self._queue.put(job)
        return job.future

    def _write_loop(self) -> None:
        _name_os_thread("boltic-writer")
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < MAX_BATCH:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stopping = True
                    break
                batch.append(nxt)
            self._run_batch(batch)
        self._fail_queued()

    def _fail_queued(self) -> None:
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            if job is not None:
                _settle([(job, StoreUnavailable("the store is closed"), False)])

    def _run_batch(self, batch: list[_Job]) -> None:
        if all(job.record is not None for job in batch):
            self._run_event_batch(batch)
            return
        # Jobs raise StoreError only before they write anything, so a refused job
        # needs no savepoint; any sqlite3.Error fails the whole transaction.
        conn = self._writer_conn
        assert conn is not None
        undo: list[Callable[[], None]] = []
        outcomes: list[tuple[_Job, Any, bool]] = []
        events: list[_Job] = []

        def insert_pending_events() -> None:
            if events:
                insert_events(conn, [job.record for job in events])  # type: ignore[misc]
                outcomes.extend((job, accepted(job.record.id), True) for job in events)  # type: ignore[union-attr]
                events.clear()

        try:
            conn.execute("BEGIN IMMEDIATE")
            for job in batch:
                if job.record is not None:
                    if job.record.source_id in self._sources:
                        events.append(job)
                    else:
                        outcomes.append((job, SourceGone(job.record.source_id), False))
                    continue
                # In queue order: events sent before a delete are deleted with it.
                insert_pending_events()
                assert job.run is not None
                try:
                    outcomes.append((job, job.run(conn, undo), True))
                except StoreError as e:
                    outcomes.append((job, e, False))
            insert_pending_events()
            if self.commit_delay:
                time.sleep(self.commit_delay)
            conn.execute("COMMIT")
            self.commits += 1
        except Exception as e:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            for restore in reversed(undo):
                restore()
            failure = StoreUnavailable(f"the database cannot be written: {e}")
            _settle((job, failure, False) for job in batch)
            return
        _settle(outcomes)

    def _run_event_batch(self, batch: list[_Job]) -> None:
        """Plain event inserts: one INSERT statement outside an explicit transaction,
        so SQLite commits it (and fsyncs) before the statement returns.

        Each statement the writer runs gives up the GIL and must take it back from
        the busy event loop, which can take up to a switch interval; BEGIN, INSERT
        and COMMIT paid that three times per batch, one autocommitted statement once.
        """
        conn = self._writer_conn
        assert conn is not None
        outcomes: list[tuple[_Job, Any, bool]] = []
        records: list[EventRecord] = []
        for job in batch:
            record = job.record
            assert record is not None
            if record.source_id in self._sources:
                records.append(record)
                outcomes.append((job, accepted(record.id), True))
            else:
                outcomes.append((job, SourceGone(record.source_id), False))
        if records:
            if self.commit_delay:
                # Received, not yet committed: where the durability tests kill.
                time.sleep(self.commit_delay)
            try:
                insert_events(conn, records)
            except sqlite3.Error as e:
                failure = StoreUnavailable(f"the database cannot be written: {e}")
                _settle((job, failure, False) for job in batch)
                return
            self.commits += 1
        _settle(outcomes)

    # the source cache (changed by the writer thread only)

    def _remember(self, info: SourceInfo) -> None:
        self._sources[info.id] = info
        self._by_key[info.write_key] = info

    def _forget(self, info: SourceInfo) -> None:
        self._sources.pop(info.id, None)
        self._by_key.pop(info.write_key, None)

    def source(self, source_id: str) -> SourceInfo | None:
        return self._sources.get(source_id)

    def source_for_key(self, write_key: str) -> SourceInfo | None:
        return self._by_key.get(write_key)

    # idempotency

    def _replay(self, conn: sqlite3.Connection, idem: Idempotency | None) -> StoredResponse | None:
        if idem is None:
            return None
        row = conn.execute(
            "SELECT request_hash, status, body FROM idempotency "
            "WHERE scope = ? AND key = ? AND created_at >= ?",
            (idem.scope, idem.key, self.now_ms() - IDEMPOTENCY_TTL_MS),
        ).fetchone()
        if row is None:
            return None
        if row[0] != idem.request_hash:
            raise IdempotencyConflict("this Idempotency-Key was used with a different request")
        return StoredResponse(row[1], row[2])

    def _record(
        self, conn: sqlite3.Connection, idem: Idempotency | None, response: StoredResponse
    ) -> None:
        if idem is not None:
            conn.execute(
                "INSERT OR REPLACE INTO idempotency "
                "(scope, key, request_hash, status, body, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    idem.scope,
                    idem.key,
                    idem.request_hash,
                    response.status,
                    response.body,
                    self.now_ms(),
                ),
            )

    # writes

    async def insert_event_async(
        self, record: EventRecord, idem: Idempotency | None = None
    ) -> StoredResponse:
        """``insert_event`` awaited on the running loop without a thread hand-off per event."""
        waiter = asyncio.get_running_loop().create_future()
        self.insert_event(record, idem, waiter=waiter)
        return await waiter

    def insert_event(
        self,
        record: EventRecord,
        idem: Idempotency | None = None,
        *,
        waiter: asyncio.Future | None = None,
    ) -> Future | None:
        """Future[StoredResponse]: the 202 body, or the first answer to this Idempotency-Key
        (given to ``waiter`` instead, if one is given)."""
        if idem is None:
            return self.submit(None, record, waiter)

        def run(conn: sqlite3.Connection, undo: list) -> StoredResponse:
            replay = self._replay(conn, idem)
            if replay is not None:
                return replay
            if record.source_id not in self._sources:
                raise SourceGone(record.source_id)
            insert_events(conn, [record])
            response = accepted(record.id)
            self._record(conn, idem, response)
            return response

        return self.submit(run, waiter=waiter)

    def create_source(
        self,
        row: dict[str, Any],
        render: Callable[[dict[str, Any]], str],
        idem: Idempotency | None = None,
    ) -> Future:
        """Future[StoredResponse]; ``row`` has id, name, type, write_key, status, created_at."""

        def remember(undo: list) -> None:
            info = SourceInfo(row["id"], row["write_key"], row["status"])
            self._remember(info)
            undo.append(lambda: self._forget(info))

        return self._create(
            "sources",
            ("id", "name", "type", "write_key", "status", "created_at"),
            row,
            lambda: render({**row, "events_today": 0}),
            idem,
            after=remember,
        )

    def delete_source(self, source_id: str) -> Future:
        """Future[None]; fails with SourceGone. Deletes the source's events and counts."""

        def run(conn: sqlite3.Connection, undo: list) -> None:
            info = self._sources.get(source_id)
            if info is None:
                raise SourceGone(source_id)
            # Counters after events: the delete trigger updates them row by row.
            for table in ("events", "event_counts", "received_counts"):
                conn.execute(f"DELETE FROM {table} WHERE source_id = ?", (source_id,))
            conn.execute("DELETE FROM sources WHERE id = ?", (source_id,))
            self._forget(info)
            undo.append(lambda: self._remember(info))

        return self.submit(run)

    def create_destination(
        self,
        row: dict[str, Any],
        render: Callable[[dict[str, Any]], str],
        idem: Idempotency | None = None,
    ) -> Future:
        """Future[StoredResponse]; ``row`` has id, name, type, config (JSON text), status,
        created_at."""
        return self._create(
            "destinations",
            ("id", "name", "type", "config", "status", "created_at"),
            row,
            lambda: render(row),
            idem,
        )

    def _create(
        self,
        table: str,
        columns: tuple[str, ...],
        row: dict[str, Any],
        body: Callable[[], str],
        idem: Idempotency | None,
        after: Callable[[list], None] | None = None,
    ) -> Future:
        """Future[StoredResponse]: insert ``row`` and answer 201 with ``body()``, once per
        Idempotency-Key (a retry gets the first answer); ``after(undo)`` runs on a real insert."""
        sql = (
            f"INSERT INTO {table} ({', '.join(columns)}) "
            f"VALUES ({', '.join(':' + c for c in columns)})"
        )

        def run(conn: sqlite3.Connection, undo: list) -> StoredResponse:
            replay = self._replay(conn, idem)
            if replay is not None:
                return replay
            conn.execute(sql, row)
            response = StoredResponse(201, body())
            self._record(conn, idem, response)
            if after is not None:
                after(undo)
            return response

        return self.submit(run)

    def prune_received_before(self, cutoff_ms: int) -> Future:
        """Future[int]: delete up to PRUNE_CHUNK events received before the cutoff, with
        their counts, in one transaction (call again while it returns PRUNE_CHUNK)."""

        def run(conn: sqlite3.Connection, undo: list) -> int:
            deleted = 0
            for source_id in list(self._sources):
                deleted += conn.execute(
                    "DELETE FROM events WHERE rowid IN (SELECT rowid FROM events "
                    "WHERE source_id = ? AND received_at < ? LIMIT ?)",
                    (source_id, cutoff_ms, PRUNE_CHUNK - deleted),
                ).rowcount
                if deleted >= PRUNE_CHUNK:
                    break
            conn.execute("DELETE FROM event_counts WHERE n <= 0")
            conn.execute("DELETE FROM received_counts WHERE n <= 0")
            return deleted

        return self.submit(run)

    def expire_idempotency_keys(self) -> Future:
        def run(conn: sqlite3.Connection, undo: list) -> int:
            cur = conn.execute(
                "DELETE FROM idempotency WHERE created_at < ?",
                (self.now_ms() - IDEMPOTENCY_TTL_MS,),
            )
            return cur.rowcount

        return self.submit(run)

    def run_in_writer(self, fn: Callable[[sqlite3.Connection], Any]) -> Future:
        """Run ``fn(conn)`` in the writer's transaction (bulk loads, maintenance)."""

        def run(conn: sqlite3.Connection, undo: list) -> Any:
            return fn(conn)

        return self.submit(run)

    # reads

    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise StoreUnavailable("the store is closed")
            conn = connect(self.path)
            conn.execute("PRAGMA query_only=1")
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    def _read(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run ``fn`` in one read transaction, so its statements see one snapshot."""
        conn = self._reader()
        conn.execute("BEGIN")
        try:
            return fn(conn)
        finally:
            conn.execute("COMMIT")

    def list_sources(self) -> list[dict[str, Any]]:
        today = self.now_ms() // DAY_MS
        return self._read(
            lambda conn: [
                _source_row(r)
                for r in conn.execute(
                    "SELECT s.id, s.name, s.type, s.write_key, s.status, s.created_at, "
                    "coalesce(c.n, 0) FROM sources s LEFT JOIN received_counts c "
                    "ON c.source_id = s.id AND c.day = ? ORDER BY s.id",
                    (today,),
                )
            ]
        )

    def get_source(self, source_id: str) -> dict[str, Any] | None:
        today = self.now_ms() // DAY_MS
        row = self._read(
            lambda conn: conn.execute(
                "SELECT s.id, s.name, s.type, s.write_key, s.status, s.created_at, "
                "coalesce(c.n, 0) FROM sources s LEFT JOIN received_counts c "
                "ON c.source_id = s.id AND c.day = ? WHERE s.id = ?",
                (today, source_id),
            ).fetchone()
        )
        return None if row is None else _source_row(row)

    def list_destinations(self) -> list[dict[str, Any]]:
        return self._read(
            lambda conn: [
                {
                    "id": r[0],
                    "name": r[1],
                    "type": r[2],
                    "config": json.loads(r[3]),
                    "status": r[4],
                    "created_at": r[5],
                }
                for r in conn.execute(
                    "SELECT id, name, type, config, status, created_at FROM destinations "
                    "ORDER BY id"
                )
            ]
        )

    def debug_events(self, source_id: str, limit: int) -> tuple[list[str], int | None]:
        """The newest ``limit`` events by receivedAt (JSON texts) and the newest receivedAt."""
        rows = self._read(
            lambda conn: conn.execute(
                "SELECT body, received_at FROM events WHERE source_id = ? "
                "ORDER BY received_at DESC, id DESC LIMIT ?",
                (source_id, limit),
            ).fetchall()
        )
        return [r[0] for r in rows], (rows[0][1] if rows else None)

    def query_events(
        self,
        *,
        source_id: str | None = None,
        event_type: str | None = None,
        from_ms: int | None = None,
        to_ms: int | None = None,
        limit: int = 100,
    ) -> QueryResult:
        """Matches newest first by timestamp (ties by id); the summary covers all matches."""
        return self._read(lambda conn: _query(conn, source_id, event_type, from_ms, to_ms, limit))


def _source_row(r: tuple) -> dict[str, Any]:
    return {
        "id": r[0],
        "name": r[1],
        "type": r[2],
        "write_key": r[3],
        "status": r[4],
        "created_at": r[5],
        "events_today": r[6],
    }


def _conditions(*pairs: tuple[str, Any]) -> tuple[list[str], list[Any]]:
    """The SQL conditions (``"column op ?"``) of the pairs whose value is given."""
    given = [(sql, value) for sql, value in pairs if value is not None]
    return [sql for sql, _ in given], [value for _, value in given]


def _filters(
    source_id: str | None, event_type: str | None, lo: int | None, hi: int | None
) -> tuple[str, list[Any]]:
    clauses, params = _conditions(
        ("source_id = ?", source_id),
        ("type = ?", event_type),
        ("timestamp >= ?", lo),
        ("timestamp < ?", hi),
    )
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def _query(
    conn: sqlite3.Connection,
    source_id: str | None,
    event_type: str | None,
    lo: int | None,
    hi: int | None,
    limit: int,
) -> QueryResult:
    if lo is not None and hi is not None and lo >= hi:
        return QueryResult([], 0, 0, None, None)
    where, params = _filters(source_id, event_type, lo, hi)
    rows = conn.execute(
        f"SELECT body, timestamp FROM events{where} ORDER BY timestamp DESC, id DESC LIMIT ?",
        [*params, limit],
    ).fetchall()
    if not rows:
        return QueryResult([], 0, 0, None, None)
    bodies = [r[0] for r in rows]
    latest = rows[0][1]
    earliest = conn.execute(f"SELECT min(timestamp) FROM events{where}", params).fetchone()[0]
    total, types = _summarise(conn, source_id, event_type, lo, hi)
    return QueryResult(bodies, total, len(types), earliest, latest)


def _summarise(
    conn: sqlite3.Connection,
    source_id: str | None,
    event_type: str | None,
    lo: int | None,
    hi: int | None,
) -> tuple[int, set[str]]:
    """Count matches and collect their types: whole UTC days from the counters, the
    partial days at the window's edges from the events themselves."""
    first_full = None if lo is None else -(-lo // DAY_MS)  # ceil
    end_full = None if hi is None else hi // DAY_MS
    if first_full is not None and end_full is not None and first_full >= end_full:
        # No whole day inside the window: it spans at most two partial days.
        return _count_range(conn, source_id, event_type, lo, hi)
    total, types = _count_days(conn, source_id, event_type, first_full, end_full)
    edges = []
    if lo is not None and lo < first_full * DAY_MS:
        edges.append((lo, first_full * DAY_MS))
    if hi is not None and end_full * DAY_MS < hi:
        edges.append((end_full * DAY_MS, hi))
    for edge_lo, edge_hi in edges:
        n, edge_types = _count_range(conn, source_id, event_type, edge_lo, edge_hi, types)
        total += n
        types |= edge_types
    return total, types


def _count_days(
    conn: sqlite3.Connection,
    source_id: str | None,
    event_type: str | None,
    first_day: int | None,
    end_day: int | None,
) -> tuple[int, set[str]]:
    clauses, params = _conditions(
        ("source_id = ?", source_id),
        ("type = ?", event_type),
        ("day >= ?", first_day),
        ("day < ?", end_day),
    )
    clauses.insert(0, "n > 0")
    total = 0
    types: set[str] = set()
    for type_, n in conn.execute(
        f"SELECT type, sum(n) FROM event_counts WHERE {' AND '.join(clauses)} GROUP BY type",
        params,
    ):
        total += n
        types.add(type_)
    return total, types


def _count_range(
    conn: sqlite3.Connection,
    source_id: str | None,
    event_type: str | None,
    lo: int | None,
    hi: int | None,
    known_types: set[str] = frozenset(),  # type: ignore[assignment]
) -> tuple[int, set[str]]:
    """Count events in [lo, hi) (less than two days) and find their types not yet known."""
    where, params = _filters(source_id, event_type, lo, hi)
    total = conn.execute(f"SELECT count(*) FROM events{where}", params).fetchone()[0]
    if total == 0:
        return 0, set()
    if event_type is not None:
        return total, {event_type}
    # Candidate types come from the counters of the days the range touches; each
    # is confirmed with one index probe instead of a DISTINCT scan.
    day_lo = lo // DAY_MS if lo is not None else None
    day_hi = (hi - 1) // DAY_MS if hi is not None else None
    cand_where, cand_params = _conditions(
        ("source_id = ?", source_id), ("day >= ?", day_lo), ("day <= ?", day_hi)
    )
    cand_where.insert(0, "n > 0")
    candidates = [
        r[0]
        for r in conn.execute(
            f"SELECT DISTINCT type FROM event_counts WHERE {' AND '.join(cand_where)}",
            cand_params,
        )
        if r[0] not in known_types
    ]
    found: set[str] = set()
    for candidate in candidates:
        where, params = _filters(source_id, candidate, lo, hi)
        if conn.execute(f"SELECT 1 FROM events{where} LIMIT 1", params).fetchone():
            found.add(candidate)
    return total, found
