"""``SQLiteStore``: the embedded store, assembled from the schema, the writer thread and
the queries. Writes go through the one writer thread (group commit); reads run in
worker threads, one connection per thread, beside the writer (WAL)."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from boltic_cli.server.store import base
from boltic_cli.server.store.base import (
    DAY_MS,
    PRUNE_CHUNK,
    EventRecord,
    Idempotency,
    QueryResult,
    SourceGone,
    SourceInfo,
    StoredResponse,
    StoreError,
    StoreUnavailable,
    accepted,
)
from boltic_cli.server.store.sqlite import queries
from boltic_cli.server.store.sqlite.deliveries import SQLiteDeliveries, list_destinations
from boltic_cli.server.store.sqlite.schema import connect, migrate
from boltic_cli.server.store.sqlite.writer import SourceCache, Writer


class SQLiteStore(SQLiteDeliveries, base.Store):
    """The store on one SQLite file. Also usable without an event loop (tests, bulk
    loads): ``with SQLiteStore(path) as store`` opens it, ``run_in_writer`` runs SQL
    in the writer's transaction and ``submit`` queues a raw write job."""

    def __init__(self, path: Path, *, commit_delay: float = 0.0, clock=time.time) -> None:
        self.path = Path(path)
        self.commit_delay = commit_delay
        self.clock = clock
        self._local = threading.local()
        # Each reader thread's connection with the lock it holds while reading: close
        # takes it, because closing a connection another thread is reading on
        # crashes the process (a segfault in a CI run: a test's app stopped while a
        # query it had answered late was still running in the executor).
        self._readers: list[tuple[sqlite3.Connection, threading.Lock]] = []
        self._readers_lock = threading.Lock()
        self._sources = SourceCache()
        self._writer: Writer | None = None
        self._closed = False

    # lifecycle

    def open_now(self) -> SQLiteStore:
        """``open`` without a loop (it does not wait on anything but the disk)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = connect(self.path)
        try:
            migrate(conn)
            for sid, key, status in conn.execute("SELECT id, write_key, status FROM sources"):
                self._sources.remember(SourceInfo(sid, key, status))
        except BaseException:
            conn.close()
            raise
        self._writer = Writer(
            conn, self._sources, commit_delay=self.commit_delay, now_ms=self.now_ms
        )
        self._writer.start()
        return self

    def close_now(self) -> None:
        """``close`` without a loop."""
        if self._closed:
            return
        self._closed = True
        if self._writer is not None:
            self._writer.stop()
        with self._readers_lock:
            for conn, in_use in self._readers:
                with in_use:
                    conn.close()
            self._readers.clear()
        if self._writer is not None:
            with contextlib.suppress(sqlite3.Error):
                self._writer.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._writer.conn.close()

    async def open(self) -> None:
        try:
            self.open_now()
        except sqlite3.Error as e:
            raise StoreUnavailable(f"cannot open the database {self.path}: {e}") from None

    async def close(self) -> None:
        self.close_now()

    def __enter__(self) -> SQLiteStore:
        return self.open_now()

    def __exit__(self, *exc: object) -> None:
        self.close_now()

    @property
    def commits(self) -> int:
        """Committed write transactions so far: group commit shows as fewer than writes."""
        return 0 if self._writer is None else self._writer.commits

    # the writer

    @property
    def writer(self) -> Writer:
        if self._writer is None:
            raise StoreUnavailable("the store is not open")
        return self._writer

    def submit(
        self,
        run: Callable[[sqlite3.Connection, list[Callable[[], None]]], Any] | None,
        record: EventRecord | None = None,
    ) -> Future:
        """Queue a write job (``run``) or one plain event insert (``record``: resolves to
        the id it is answered with); the future resolves after its transaction committed."""
        future = self.writer.submit(run, record)
        assert future is not None
        return future

    def run_in_writer(self, fn: Callable[[sqlite3.Connection], Any]) -> Future:
        """Run ``fn(conn)`` in the writer's transaction (bulk loads, maintenance, tests)."""
        return self.submit(lambda conn, undo: fn(conn))

    def remember_source(self, info: SourceInfo) -> None:
        """Tests and bulk loads only: make the cache know a source without a row."""
        self._sources.remember(info)

    # sources

    async def source(self, source_id: str) -> SourceInfo | None:
        return self._sources.by_id.get(source_id)

    async def source_for_key(
        self, write_key: str, *, recheck_on_insert: bool = False
    ) -> SourceInfo | None:
        # One process owns the file, so what it holds is always the database's now.
        return self._sources.by_key.get(write_key)

    # writes

    async def insert_event(
        self, record: EventRecord, idem: Idempotency | None = None
    ) -> StoredResponse:
        if idem is None:
            return accepted(await self.writer.wait(None, record))

        def run(conn: sqlite3.Connection, undo: list) -> StoredResponse:
            now = self.now_ms()
            replay = queries.replay(conn, idem, now)
            if replay is not None:
                return replay
            (outcome,) = queries.store_records(conn, (record,), self._sources.by_id, now)
            if isinstance(outcome, StoreError):
                raise outcome
            response = accepted(outcome)
            queries.record_answer(conn, idem, response, now)
            return response

        return await self.writer.wait(run)

    async def insert_batch(
        self,
        records: Sequence[EventRecord],
        render: Callable[[list[str | StoreError]], str],
        idem: Idempotency | None = None,
    ) -> StoredResponse:
        if idem is None:
            outcomes = await self.writer.wait(None, records=records) if records else []
            return StoredResponse(200, render(outcomes))

        def run(conn: sqlite3.Connection, undo: list) -> StoredResponse:
            now = self.now_ms()
            replay = queries.replay(conn, idem, now)
            if replay is not None:
                return replay
            outcomes = queries.store_records(conn, records, self._sources.by_id, now)
            response = StoredResponse(200, render(outcomes))
            queries.record_answer(conn, idem, response, now)
            return response

        return await self.writer.wait(run)

    async def create_source(
        self,
        row: dict[str, Any],
        render: Callable[[dict[str, Any]], str],
        idem: Idempotency | None = None,
    ) -> StoredResponse:
        def remember(undo: list) -> None:
            info = SourceInfo(row["id"], row["write_key"], row["status"])
            self._sources.remember(info)
            undo.append(lambda: self._sources.forget(info))

        return await self._create(
            "sources",
            ("id", "name", "type", "write_key", "status", "created_at"),
            row,
            lambda: render({**row, "events_today": 0}),
            idem,
            after=remember,
        )

    async def delete_source(self, source_id: str) -> None:
        def run(conn: sqlite3.Connection, undo: list) -> None:
            info = self._sources.by_id.get(source_id)
            if info is None:
                raise SourceGone(source_id)
            queries.delete_source(conn, source_id)
            self._sources.forget(info)
            undo.append(lambda: self._sources.remember(info))

        await self.writer.wait(run)

    async def update_source(
        self, source_id: str, *, name: str | None = None, status: str | None = None
    ) -> None:
        def run(conn: sqlite3.Connection, undo: list) -> None:
            info = self._sources.by_id.get(source_id)
            if info is None:
                raise SourceGone(source_id)
            if name is not None:
                conn.execute("UPDATE sources SET name = ? WHERE id = ?", (name, source_id))
            if status is not None and status != info.status:
                conn.execute("UPDATE sources SET status = ? WHERE id = ?", (status, source_id))
                self._sources.remember(SourceInfo(info.id, info.write_key, status))
                undo.append(lambda: self._sources.remember(info))

        await self.writer.wait(run)

    async def create_destination(
        self,
        row: dict[str, Any],
        render: Callable[[dict[str, Any]], str],
        idem: Idempotency | None = None,
    ) -> StoredResponse:
        return await self._create(
            "destinations",
            ("id", "name", "type", "config", "status", "created_at"),
            row,
            lambda: render(row),
            idem,
        )

    async def _create(
        self,
        table: str,
        columns: tuple[str, ...],
        row: dict[str, Any],
        body: Callable[[], str],
        idem: Idempotency | None,
        after: Callable[[list], None] | None = None,
    ) -> StoredResponse:
        """Insert ``row`` and answer 201 with ``body()``, once per Idempotency-Key (a retry
        gets the first answer); ``after(undo)`` runs on a real insert."""
        sql = (
            f"INSERT INTO {table} ({', '.join(columns)}) "
            f"VALUES ({', '.join(':' + c for c in columns)})"
        )

        def run(conn: sqlite3.Connection, undo: list) -> StoredResponse:
            now = self.now_ms()
            replay = queries.replay(conn, idem, now)
            if replay is not None:
                return replay
            conn.execute(sql, row)
            response = StoredResponse(201, body())
            queries.record_answer(conn, idem, response, now)
            if after is not None:
                after(undo)
            return response

        return await self.writer.wait(run)

    async def prune_received_before(self, cutoff_ms: int) -> int:
        return await self.writer.wait(
            lambda conn, undo: queries.prune_received_before(
                conn, list(self._sources.by_id), cutoff_ms, PRUNE_CHUNK
            )
        )

    async def expire_idempotency_keys(self) -> int:
        return await self.writer.wait(
            lambda conn, undo: queries.expire_idempotency(conn, self.now_ms())
        )

    # reads

    def _reader(self) -> tuple[sqlite3.Connection, threading.Lock]:
        reader = getattr(self._local, "reader", None)
        if reader is None:
            with self._readers_lock:
                if self._closed:
                    raise StoreUnavailable("the store is closed")
                conn = connect(self.path)
                conn.execute("PRAGMA query_only=1")
                reader = self._local.reader = (conn, threading.Lock())
                self._readers.append(reader)
        return reader

    def read_now(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run ``fn`` in one read transaction on this thread, so its statements see one
        snapshot. Raises StoreUnavailable once the store is closed (``close`` waits
        for a read in progress)."""
        conn, in_use = self._reader()
        with in_use:
            if self._closed:
                raise StoreUnavailable("the store is closed")
            conn.execute("BEGIN")
            try:
                return fn(conn)
            finally:
                conn.execute("COMMIT")

    async def _read(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        """``read_now`` in a worker thread: the loop keeps serving meanwhile."""
        return await asyncio.get_running_loop().run_in_executor(None, self.read_now, fn)

    async def list_sources(self) -> list[dict[str, Any]]:
        today = self.now_ms() // DAY_MS
        return await self._read(lambda conn: queries.list_sources(conn, today))

    async def get_source(self, source_id: str) -> dict[str, Any] | None:
        today = self.now_ms() // DAY_MS
        return await self._read(lambda conn: queries.get_source(conn, today, source_id))

    async def list_destinations(self) -> list[dict[str, Any]]:
        return await self._read(list_destinations)

    async def debug_events(self, source_id: str, limit: int) -> tuple[list[str], int | None]:
        return await self._read(lambda conn: queries.debug_events(conn, source_id, limit))

    async def query_events(
        self,
        *,
        source_id: str | None = None,
        event_type: str | None = None,
        from_ms: int | None = None,
        to_ms: int | None = None,
        limit: int = 100,
    ) -> QueryResult:
        return await self._read(
            lambda conn: queries.query(conn, source_id, event_type, from_ms, to_ms, limit)
        )
