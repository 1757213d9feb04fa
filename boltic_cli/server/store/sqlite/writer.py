"""The one writer thread of a SQLite store, with group commit, and the source cache it owns.

Every write goes through the writer. It takes whatever jobs are queued, runs them
in one transaction, commits (``synchronous=FULL``: the WAL is fsynced) and only
then resolves each job's future or waiter, so an answer built from it is never
sent for data that is not on disk. A group of nothing but plain event inserts
(single events and batches without Idempotency-Key or messageId, the common case)
is one autocommitted INSERT statement.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from boltic_cli.server.store.base import (
    EventRecord,
    SourceGone,
    SourceInfo,
    StoreError,
    StoreUnavailable,
)
from boltic_cli.server.store.sqlite.queries import MAX_SQL_VARIABLES, insert_events, store_records

# The most jobs one group commit takes.
MAX_BATCH = 1024
# The most event rows one group commit takes (a job is never split): x 6 columns it
# stays under MAX_SQL_VARIABLES, so a group of plain events is one INSERT statement
# and autocommitting it commits the whole group at once.
MAX_GROUP_ROWS = MAX_SQL_VARIABLES // 6 - 500

# A job's work: runs inside the writer's transaction; ``undo`` collects what to
# restore in memory if the transaction rolls back.
Run = Callable[[sqlite3.Connection, list[Callable[[], None]]], Any]


class SourceCache:
    """Sources by id and by write key, changed by the writer thread only (and only
    with an undo for a rollback); read by request handlers for a fast answer. The
    writer re-checks inside its transaction."""

    def __init__(self) -> None:
        self.by_id: dict[str, SourceInfo] = {}
        self.by_key: dict[str, SourceInfo] = {}

    def remember(self, info: SourceInfo) -> None:
        self.by_id[info.id] = info
        self.by_key[info.write_key] = info

    def forget(self, info: SourceInfo) -> None:
        self.by_id.pop(info.id, None)
        self.by_key.pop(info.write_key, None)


@dataclass(slots=True)
class _Job:
    run: Run | None
    # Plain event inserts (no Idempotency-Key): grouped with their neighbours' rows.
    records: Sequence[EventRecord] | None = None
    # One event (answered with its id or its error) or a batch (answered with the
    # list of per-record outcomes).
    single: bool = False
    # Set for writes awaited on an event loop: settled there, one wake-up per group.
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


def name_os_thread(name: str) -> None:
    """Show the thread's name to the OS (top -H, /proc/PID/task/*/comm), where Python
    3.11 leaves the process name: per-thread CPU is then measurable from outside."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        pr_set_name = 15
        ctypes.CDLL(None).prctl(pr_set_name, name.encode()[:15], 0, 0, 0)


class Writer:
    """The writer thread over ``conn`` (which it owns from ``start()`` on).

    ``commit_delay`` (tests only) sleeps before each commit, so a kill can land
    between receiving a write and committing it. ``commits`` counts committed
    transactions: group commit shows as fewer of these than writes.
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        sources: SourceCache,
        *,
        commit_delay: float = 0.0,
        now_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.conn = conn
        self.now_ms = now_ms
        self.sources = sources
        self.commit_delay = commit_delay
        self.commits = 0
        self.closed = False
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="boltic-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Finish the queued jobs, fail any queued after, and end the thread."""
        if self.closed:
            return
        self.closed = True
        self._queue.put(None)
        if self._thread.is_alive():
            self._thread.join()

    def submit(
        self,
        run: Run | None,
        record: EventRecord | None = None,
        waiter: asyncio.Future | None = None,
        *,
        records: Sequence[EventRecord] | None = None,
    ) -> Future | None:
        """Queue a write: ``run`` (a job), ``record`` (a plain event insert: resolves to
        the event id it is answered with, or fails with SourceGone) or ``records``
        (plain inserts of a batch: resolves to the list of per-record outcomes, ids or
        StoreErrors). The future it returns (or ``waiter``, then it returns None)
        resolves after its transaction committed."""
        if record is not None:
            records, single = (record,), True
        else:
            single = False
        job = _Job(run, records, single, waiter, None if waiter is not None else Future())
        if self.closed:
            _settle([(job, StoreUnavailable("the store is closed"), False)])
        else:
            self._queue.put(job)
        return job.future

    async def wait(
        self,
        run: Run | None,
        record: EventRecord | None = None,
        *,
        records: Sequence[EventRecord] | None = None,
    ) -> Any:
        """``submit`` awaited on the running loop, without a thread hand-off."""
        waiter = asyncio.get_running_loop().create_future()
        self.submit(run, record, waiter, records=records)
        return await waiter

    def _loop(self) -> None:
        name_os_thread("boltic-writer")
        stopping = False
        carry: _Job | None = None
        while not stopping:
            first = carry if carry is not None else self._queue.get()
            carry = None
            if first is None:
                break
            batch = [first]
            rows = len(first.records or ())
            while len(batch) < MAX_BATCH:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stopping = True
                    break
                if nxt.records is not None:
                    rows += len(nxt.records)
                    if rows > MAX_GROUP_ROWS:
                        carry = nxt  # the next group's first job
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
        if all(
            job.records is not None and all(r.message_id is None for r in job.records)
            for job in batch
        ):
            self._run_event_batch(batch)
            return
        # Jobs raise StoreError only before they write anything, so a refused job
        # needs no savepoint; any sqlite3.Error fails the whole transaction.
        conn = self.conn
        known = self.sources.by_id
        undo: list[Callable[[], None]] = []
        outcomes: list[tuple[_Job, Any, bool]] = []
        events: list[_Job] = []
        now_ms = self.now_ms()

        def insert_pending_events() -> None:
            if events:
                records = [r for job in events for r in job.records]  # type: ignore[union-attr]
                stored = store_records(conn, records, known, now_ms)
                outcomes.extend(_outcomes(events, stored))
                events.clear()

        try:
            conn.execute("BEGIN IMMEDIATE")
            for job in batch:
                if job.records is not None:
                    events.append(job)
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
        and COMMIT paid that three times per group, one autocommitted statement once.
        """
        conn = self.conn
        known = self.sources.by_id
        records: list[EventRecord] = []
        stored: list[str | StoreError] = []
        for job in batch:
            for record in job.records:  # type: ignore[union-attr]
                if record.source_id in known:
                    records.append(record)
                    stored.append(record.id)
                else:
                    stored.append(SourceGone(record.source_id))
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
        _settle(_outcomes(batch, stored))


def _outcomes(jobs: list[_Job], stored: list[str | StoreError]) -> Iterable[tuple[_Job, Any, bool]]:
    """Hand each job its records' outcomes (``stored``, in the jobs' order): a single
    event its id or its error; a batch the list."""
    at = 0
    for job in jobs:
        n = len(job.records)  # type: ignore[arg-type]
        if job.single:
            outcome = stored[at]
            yield (job, outcome, True) if isinstance(outcome, str) else (job, outcome, False)
        else:
            yield job, stored[at : at + n], True
        at += n
