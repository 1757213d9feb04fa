"""``PostgresStore``: the store interface on PostgreSQL (asyncpg, one pool per process).

Writes. Plain event inserts (no Idempotency-Key) wait in a group: while one group's
statement is in flight, the inserts that arrive meanwhile queue, and then go to the
database together as ONE autocommitted statement (``INSERT ... SELECT FROM unnest(...)``,
one round trip); each waiter is answered only after that statement committed
(``synchronous_commit`` as the server has it, ``on`` by default: the WAL is flushed).
The statement itself checks every event's source (each distinct source row locked
once ``FOR KEY SHARE`` in the statement's CTE and joined, so
a concurrent ``delete_source`` either waits for the insert and then deletes its rows,
or has committed and the insert skips them): an event whose source is gone is refused
alone (``SourceGone``), by the database, in the inserting statement. Writes with an
Idempotency-Key claim the key by its primary key (``INSERT ... ON CONFLICT``) in their
own transaction, so the database dedupes them across processes too.

Sources. ``source`` and ``source_for_key`` read the database (lookups waiting
together go as one statement per group, as inserts do), so nothing can go stale when
another process deletes or pauses a source (design.md "Several server processes": a
request that starts after the delete's 204 is refused on every process, with the
status a gone key gets, 401, and the debug read answers 404). One exception, proven
safe within the request that could observe it: ``source_for_key(...,
recheck_on_insert=True)``, asked by the gate for a plain send, answers a write key
this process last saw active without asking. The inserting statement checks the
source again (active, locked), so a stale answer only turns into SourceGone, and the
route then asks again without the flag (which refreshes or drops the entry) and
answers 401 or 403 as the gate would have (404 if the source is active again by then,
as for a lookup made fresh: paused and resumed while the insert was in flight). A
write key never changes for its source, so the key-to-source part cannot go stale.
It saves one statement per request: tests/bench/bench_write_key.json. (A per-process
hint kept fresh by LISTEN/NOTIFY, its predecessor, was removed in issue 19: NOTIFY
arrives after the commit, so another process could serve a deleted source's debug
read, and nothing checked again.)

Failures. A lost connection, a refused connect, a timeout, or any database error
raises ``StoreUnavailable`` (the routes answer 503 with Retry-After); the pool opens
new connections on the next request, so the store recovers by itself when
PostgreSQL is back. An event is never answered 202 unless its statement returned.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

from boltic_cli.server.store import base
from boltic_cli.server.store.base import (
    DAY_MS,
    IDEMPOTENCY_TTL_MS,
    MESSAGE_ID_TTL_MS,
    PRUNE_CHUNK,
    EventRecord,
    Idempotency,
    IdempotencyConflict,
    QueryResult,
    SourceGone,
    SourceInfo,
    StoredResponse,
    StoreError,
    StoreUnavailable,
    accepted,
)
from boltic_cli.server.store.postgres.deliveries import (
    DESTINATION_COLUMNS,
    PostgresDeliveries,
    destination_row,
)
from boltic_cli.server.store.postgres.schema import migrate

log = logging.getLogger("boltic.server.postgres")

# The most waiting writes (or lookups) one group statement carries.
MAX_GROUP = 1000


def _insert_events(source_ids: str, rows: str) -> str:
    """The inserting statement over ``rows`` (a FROM item of the six columns, in
    order), ``source_ids`` being what follows ``SELECT DISTINCT`` to list their
    source ids: one template for every way the columns are sent."""
    return f"""
WITH s AS MATERIALIZED (
    SELECT id FROM sources
    WHERE id = ANY(ARRAY(SELECT DISTINCT {source_ids})) AND status = 'active'
    FOR KEY SHARE
), inserted AS (
    INSERT INTO events (id, source_id, type, timestamp, received_at, body)
    SELECT u.id, u.source_id, u.type, u.timestamp, u.received_at, u.body
    FROM {rows}
        AS u(id, source_id, type, timestamp, received_at, body)
    JOIN s ON s.id = u.source_id
)
SELECT id FROM s
"""


# Each distinct source of the statement is locked once (the CTE, by its primary key),
# then joined: locking in the join (``FOR KEY SHARE OF s`` on the joined rows) locked
# the same source row once per event, 500 times for a batch, and with concurrent
# inserts each of those went through the row's MultiXact. The statement answers the
# ids of the sources it locked (the events of exactly those were inserted: usually one
# row), not each inserted event's id (500 rows to send and decode for a batch).
# Measured on 500-event inserts: docs/internals.md.
INSERT_EVENTS = _insert_events(
    "unnest($2::text[])",
    "unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::text[])",
)
# INSERT_EVENTS with each text column sent as one string joined by SEPARATOR (U+001F)
# and the times as one comma-joined string, split by the database: asyncpg checks every
# element of a text[] parameter with Python-level ABC isinstance calls, which py-spy
# showed as ~6 % of the server's batch-ingest time. 500-event insert, CPU per event
# (tests/bench/bench_pg_batch_encoding.json): server 4.3 -> 1.9 us, PostgreSQL +0.5 us.
# Used only when no value holds the separator (``_joined``); otherwise INSERT_EVENTS.
SEPARATOR = "\x1f"
_SPLIT = "string_to_array(${}, E'\\x1f')"
INSERT_EVENTS_JOINED = _insert_events(
    f"unnest({_SPLIT.format(2)})",
    f"unnest({_SPLIT.format(1)}, {_SPLIT.format(2)}, {_SPLIT.format(3)},"
    " string_to_array($4, ',')::bigint[], string_to_array($5, ',')::bigint[],"
    f" {_SPLIT.format(6)})",
)
# Write keys of active sources this process has seen (``source_for_key``); emptied
# when full, so a process that sees many keys asks more often, never answers wrong.
KNOWN_KEYS = 10_000
ACTIVE_SOURCES = """
SELECT id FROM sources WHERE id = ANY($1::text[]) AND status = 'active' FOR KEY SHARE
"""
# PostgreSQL text cannot hold U+0000, so no stored id, type or key contains it
# (design.md: it is 422 in identifiers); a lookup by such a value finds nothing
# without asking (the database would refuse the parameter).
NUL = "\x00"
LOOKUP_SOURCES = """
SELECT id, write_key, status FROM sources
WHERE id = ANY($1::text[]) OR write_key = ANY($2::text[])
"""
CLAIM_KEY = """
INSERT INTO idempotency AS i (scope, key, request_hash, status, body, created_at)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (scope, key) DO UPDATE SET request_hash = EXCLUDED.request_hash,
    status = EXCLUDED.status, body = EXCLUDED.body, created_at = EXCLUDED.created_at
    WHERE i.created_at < $7
RETURNING 1
"""
CLAIM_MESSAGE_IDS = """
INSERT INTO message_ids AS m (source_id, message_id, event_id, created_at)
SELECT u.source_id, u.message_id, u.event_id, $4
FROM unnest($1::text[], $2::text[], $3::text[]) AS u(source_id, message_id, event_id)
ORDER BY 1, 2
ON CONFLICT (source_id, message_id) DO UPDATE SET event_id = EXCLUDED.event_id,
    created_at = EXCLUDED.created_at
    WHERE m.created_at < $5
RETURNING source_id, message_id
"""
FIND_MESSAGE_IDS = """
SELECT source_id, message_id, event_id FROM message_ids
WHERE (source_id, message_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))
"""
SOURCE_ROW = """
SELECT s.id, s.name, s.type, s.write_key, s.status, s.created_at, coalesce(c.n, 0)
FROM sources s LEFT JOIN received_counts c ON c.source_id = s.id AND c.day = $1
"""
PRUNE = """
DELETE FROM events WHERE ctid = ANY(ARRAY(
    SELECT e.ctid FROM sources s CROSS JOIN LATERAL (
        SELECT ctid FROM events WHERE source_id = s.id AND received_at < $1 LIMIT $2
    ) e LIMIT $2
))
"""

T = TypeVar("T")
R = TypeVar("R")


def _driver_errors() -> tuple[type[BaseException], ...]:
    import asyncpg

    return (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


class _Group(Generic[T, R]):
    """Calls that wait together run together: ``await group.submit(item)`` queues
    ``item``; a flush hands every queued item (up to MAX_GROUP) to ``run(items)`` (one
    statement), whose list of results (a value or an exception, one per item, in
    order) answers each caller. Up to ``parallel`` flushes are in flight at once, each
    on its own connection: while one waits for its commit to reach the disk, the next
    group is already on its way (PostgreSQL flushes the WAL of commits waiting
    together once). Items queued meanwhile go in the next flush."""

    def __init__(
        self, run: Callable[[list[T]], Awaitable[list[R | BaseException]]], parallel: int = 1
    ) -> None:
        self._run = run
        self.parallel = parallel
        self._pending: list[tuple[T, asyncio.Future]] = []
        self._inflight: set[asyncio.Future] = set()
        self._flushers = 0
        self._tasks: set[asyncio.Task] = set()
        self.flushes = 0

    def submit(self, item: T) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append((item, future))
        if self._flushers < self.parallel:
            self._flushers += 1
            self._tasks.add(task := loop.create_task(self._flush()))
            task.add_done_callback(self._tasks.discard)
        return future

    async def drain(self) -> None:
        """Wait until everything submitted before this call has been answered."""
        waiting = [f for _, f in self._pending] + list(self._inflight)
        if waiting:
            await asyncio.wait(waiting)

    async def _flush(self) -> None:
        try:
            while self._pending:
                group, self._pending = self._pending[:MAX_GROUP], self._pending[MAX_GROUP:]
                futures = [future for _, future in group]
                self._inflight.update(futures)
                try:
                    results: list[Any] = await self._run([item for item, _ in group])
                except BaseException as e:  # handed to every waiter
                    results = [e] * len(group)
                self.flushes += 1
                self._inflight.difference_update(futures)
                for future, result in zip(futures, results, strict=True):
                    if future.done():
                        continue
                    if isinstance(result, BaseException):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            self._flushers -= 1


class PostgresStore(PostgresDeliveries, base.Store):
    """The store on one PostgreSQL database, reached with ``url`` (``postgresql://...``).

    ``pool_size``: most connections this process holds; ``connect_timeout`` and
    ``statement_timeout`` in seconds (a statement past its timeout is cancelled and
    its request answered 503). ``group_parallel``: group statements in flight at once
    (1, as SQLite's one writer: on this 2-core machine two in flight made smaller
    groups and cost more CPU per event, in PostgreSQL and in the event loop).
    ``commit_delay`` (tests): seconds to sleep before each
    group's statement, so a kill can land between receiving and committing.
    """

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        connect_timeout: float = 5.0,
        statement_timeout: float = 30.0,
        commit_delay: float = 0.0,
        group_parallel: int = 1,
        clock=time.time,
    ) -> None:
        self.url = url
        self.pool_size = pool_size
        self.connect_timeout = connect_timeout
        self.statement_timeout = statement_timeout
        self.commit_delay = commit_delay
        self.clock = clock
        self._pool: Any = None
        # The loop the pool was opened on: asyncpg connections belong to it, so calls
        # from another loop (the delivery worker's thread) run there.
        self._home: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._errors: tuple[type[BaseException], ...] = ()
        self._inserts: _Group[EventRecord, StoredResponse] = _Group(
            self._insert_group, parallel=max(1, min(group_parallel, pool_size - 1))
        )
        self._known_keys: dict[str, SourceInfo] = {}
        # Source lookups (by id or write key) waiting together: one statement.
        self._lookups: _Group[tuple[str, str], SourceInfo | None] = _Group(
            self._lookup_group, parallel=max(1, min(group_parallel, pool_size - 1))
        )

    # lifecycle

    async def open(self) -> None:
        import asyncpg

        self._errors = _driver_errors()
        self._home = asyncio.get_running_loop()
        try:
            conn = await asyncpg.connect(self.url, timeout=self.connect_timeout)
            try:
                await migrate(conn)
            finally:
                await conn.close()
            self._pool = await asyncpg.create_pool(
                self.url,
                min_size=1,
                max_size=self.pool_size,
                timeout=self.connect_timeout,
                command_timeout=self.statement_timeout,
                reset=_keep_session,
                server_settings={
                    "statement_timeout": str(int(self.statement_timeout * 1000)),
                    # Every statement is prepared with parameters for values; planning
                    # the summary query anew for each request cost more than running it.
                    "plan_cache_mode": "force_generic_plan",
                    # The page of a filtered query should walk the index of exactly its
                    # filter (source, type, time), not the time index filtering the rows
                    # it fetches; the default cost of a random page (4, for spinning
                    # disks) made the planner prefer the latter, 10x the rows read.
                    "random_page_cost": "1.1",
                    "application_name": "boltic-server",
                },
            )
        except BaseException as e:
            if self._pool is not None:
                self._pool.terminate()
                self._pool = None
            if isinstance(e, self._errors):
                raise StoreUnavailable(f"cannot open the database: {_reason(e)}") from None
            raise

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._pool is not None:
            with contextlib.suppress(*self._errors):
                await asyncio.wait_for(self._pool.close(), 10)
            self._pool.terminate()

    @property
    def commits(self) -> int:
        """Group statements sent so far: group commit shows as fewer than events."""
        return self._inserts.flushes

    @property
    def lookups(self) -> int:
        """Source lookup statements sent so far (a known write key sends none)."""
        return self._lookups.flushes

    async def _call(self, fn: Callable[[Any], Awaitable[T]], *, transaction: bool = False) -> T:
        """``fn(conn)`` on a pooled connection (in one transaction if asked); every
        driver or connection failure becomes StoreUnavailable. Called from another
        event loop (the delivery worker's thread), it runs on the pool's own loop."""
        if self._closed or self._pool is None:
            raise StoreUnavailable("the store is closed")
        home = self._home
        if home is not None and asyncio.get_running_loop() is not home:
            if home.is_closed():
                raise StoreUnavailable("the store is closed")
            return await asyncio.wrap_future(
                asyncio.run_coroutine_threadsafe(self._call(fn, transaction=transaction), home)
            )
        try:
            async with self._pool.acquire() as conn:
                if not transaction:
                    return await fn(conn)
                async with conn.transaction():
                    return await fn(conn)
        except StoreError:
            raise
        except self._errors as e:
            raise StoreUnavailable(f"the database cannot be reached: {_reason(e)}") from None

    # sources

    async def _lookup_group(self, items: list[tuple[str, str]]) -> list[SourceInfo | None]:
        ids = [value for kind, value in items if kind == "id"]
        keys = [value for kind, value in items if kind == "key"]
        rows = await self._call(lambda conn: conn.fetch(LOOKUP_SOURCES, ids, keys))
        by_id = {r[0]: SourceInfo(r[0], r[1], r[2]) for r in rows}
        by_key = {info.write_key: info for info in by_id.values()}
        return [(by_id if kind == "id" else by_key).get(value) for kind, value in items]

    async def source(self, source_id: str) -> SourceInfo | None:
        """The source as the database has it now (a statement sent after this call)."""
        if NUL in source_id:
            return None
        return await self._lookups.submit(("id", source_id))

    async def source_for_key(
        self, write_key: str, *, recheck_on_insert: bool = False
    ) -> SourceInfo | None:
        """The write key's source as the database has it now; with
        ``recheck_on_insert``, as this process last saw it active (module docstring)."""
        if NUL in write_key:
            return None
        if recheck_on_insert and (known := self._known_keys.get(write_key)) is not None:
            return known
        info = await self._lookups.submit(("key", write_key))
        if info is not None and info.status == "active":
            if len(self._known_keys) >= KNOWN_KEYS:
                self._known_keys.clear()
            self._known_keys[write_key] = info
        else:
            self._known_keys.pop(write_key, None)
        return info

    # writes

    async def _insert_group(self, records: list[EventRecord]) -> list[Any]:
        """One statement for the group (each event's answer, or SourceGone)."""
        if self.commit_delay:
            await asyncio.sleep(self.commit_delay)
        try:
            live = await self._call(lambda conn: _insert(conn, records))
        except StoreUnavailable as e:
            return [e] * len(records)
        return [accepted(r.id) if r.source_id in live else SourceGone(r.source_id) for r in records]

    async def insert_event(
        self, record: EventRecord, idem: Idempotency | None = None
    ) -> StoredResponse:
        if idem is None and record.message_id is None:
            return await self._inserts.submit(record)

        async def run(conn: Any) -> StoredResponse:
            replay = await self._claim(conn, idem, accepted(record.id))
            if replay is not None:
                return replay
            (outcome,) = await self._store_records(conn, [record])
            if isinstance(outcome, StoreError):
                raise outcome  # rolls the claimed key back
            response = accepted(outcome)
            await self._record_answer(conn, idem, response)
            return response

        return await self._call(run, transaction=True)

    async def insert_batch(
        self,
        records: Sequence[EventRecord],
        render: Callable[[list[str | StoreError]], str],
        idem: Idempotency | None = None,
    ) -> StoredResponse:
        records = list(records)
        if idem is None and all(r.message_id is None for r in records):
            # The batch is its own group: one autocommitted statement.
            live = await self._call(lambda conn: _insert(conn, records))
            return StoredResponse(
                200,
                render([r.id if r.source_id in live else SourceGone(r.source_id) for r in records]),
            )

        async def run(conn: Any) -> StoredResponse:
            # The key is claimed first (its row lock makes a concurrent retry wait for
            # this answer), and the answer recorded once the outcomes are known.
            replay = await self._claim(conn, idem, StoredResponse(200, ""))
            if replay is not None:
                return replay
            response = StoredResponse(200, render(await self._store_records(conn, records)))
            await self._record_answer(conn, idem, response)
            return response

        return await self._call(run, transaction=True)

    async def _store_records(self, conn: Any, records: list[EventRecord]) -> list[str | StoreError]:
        """Insert ``records`` (inside the caller's transaction) but those whose source is
        gone (SourceGone) and those whose messageId the source used within
        MESSAGE_ID_TTL_MS, here or earlier in ``records`` (answered with the first
        event's id). The messageId is claimed by its primary key first, so the same
        messageId sent to two processes at once stores one event (the second waits
        for the first's commit, then finds its id)."""
        now = self.now_ms()
        first: dict[tuple[str, str], int] = {}
        for i, r in enumerate(records):
            if r.message_id is not None:
                first.setdefault((r.source_id, r.message_id), i)
        existing: dict[tuple[str, str], str] = {}
        if first:
            keys = list(first)
            claimed = {
                (row[0], row[1])
                for row in await conn.fetch(
                    CLAIM_MESSAGE_IDS,
                    [k[0] for k in keys],
                    [k[1] for k in keys],
                    [records[first[k]].id for k in keys],
                    now,
                    now - MESSAGE_ID_TTL_MS,
                )
            }
            taken = [k for k in keys if k not in claimed]
            if taken:
                rows = await conn.fetch(
                    FIND_MESSAGE_IDS, [k[0] for k in taken], [k[1] for k in taken]
                )
                existing = {(row[0], row[1]): row[2] for row in rows}
        # A repeated messageId is answered with its first event only while its source
        # is active: the caller's check may be this process's earlier view of a write
        # key (``source_for_key``), and nothing is inserted to check it again.
        active: set[str] = set()
        if existing:
            ids = sorted({k[0] for k in existing})
            active = {row[0] for row in await conn.fetch(ACTIVE_SOURCES, ids)}
        fresh = [
            r
            for i, r in enumerate(records)
            if r.message_id is None
            or (
                first[(r.source_id, r.message_id)] == i
                and (r.source_id, r.message_id) not in existing
            )
        ]
        live = await _insert(conn, fresh) if fresh else set()
        stored = {r.id for r in fresh if r.source_id in live}
        outcomes: list[str | StoreError] = []
        refused_claims: list[tuple[str, str]] = []
        for i, r in enumerate(records):
            key = None if r.message_id is None else (r.source_id, r.message_id)
            if key is not None and key in existing:
                outcomes.append(existing[key] if key[0] in active else SourceGone(key[0]))
                continue
            origin = records[first[key]] if key is not None else r
            if origin.id in stored:
                outcomes.append(origin.id)
            else:
                outcomes.append(SourceGone(r.source_id))
                if key is not None and first[key] == i:
                    refused_claims.append(key)
        if refused_claims:
            await conn.execute(
                "DELETE FROM message_ids WHERE (source_id, message_id) IN "
                "(SELECT * FROM unnest($1::text[], $2::text[]))",
                [k[0] for k in refused_claims],
                [k[1] for k in refused_claims],
            )
        return outcomes

    async def insert_records(self, records: list[EventRecord], chunk: int = 5000) -> int:
        """Bulk load (tests, benchmarks; not for routes): insert events of existing
        sources in statements of ``chunk`` rows; returns how many were stored."""
        stored = 0
        for start in range(0, len(records), chunk):
            part = records[start : start + chunk]
            live = await self._call(lambda conn, part=part: _insert(conn, part))
            stored += sum(1 for r in part if r.source_id in live)
        return stored

    async def _record_answer(
        self, conn: Any, idem: Idempotency | None, response: StoredResponse
    ) -> None:
        """Replace the answer recorded by ``_claim`` (same transaction) with the final one."""
        if idem is not None:
            await conn.execute(
                "UPDATE idempotency SET status = $3, body = $4 WHERE scope = $1 AND key = $2",
                idem.scope,
                idem.key,
                response.status,
                response.body,
            )

    async def _claim(
        self, conn: Any, idem: Idempotency | None, response: StoredResponse
    ) -> StoredResponse | None:
        """Record ``response`` under the key (inside the caller's transaction) and
        return None; or, if the key is taken and young, the first answer (raises
        IdempotencyConflict when it was for another request). Concurrent first uses
        of one key wait on its primary key: one wins, the others replay its answer."""
        if idem is None:
            return None
        now = self.now_ms()
        claimed = await conn.fetchval(
            CLAIM_KEY,
            idem.scope,
            idem.key,
            idem.request_hash,
            response.status,
            response.body,
            now,
            now - IDEMPOTENCY_TTL_MS,
        )
        if claimed is not None:
            return None
        row = await conn.fetchrow(
            "SELECT request_hash, status, body FROM idempotency WHERE scope = $1 AND key = $2",
            idem.scope,
            idem.key,
        )
        if row[0] != idem.request_hash:
            raise IdempotencyConflict("this Idempotency-Key was used with a different request")
        return StoredResponse(row[1], row[2])

    async def create_source(
        self,
        row: dict[str, Any],
        render: Callable[[dict[str, Any]], str],
        idem: Idempotency | None = None,
    ) -> StoredResponse:
        return await self._create(
            "sources",
            ("id", "name", "type", "write_key", "status", "created_at"),
            row,
            render({**row, "events_today": 0}),
            idem,
        )

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
            render(row),
            idem,
        )

    async def _create(
        self,
        table: str,
        columns: tuple[str, ...],
        row: dict[str, Any],
        body: str,
        idem: Idempotency | None,
    ) -> StoredResponse:
        sql = (
            f"INSERT INTO {table} ({', '.join(columns)}) "
            f"VALUES ({', '.join(f'${i}' for i in range(1, len(columns) + 1))})"
        )
        response = StoredResponse(201, body)

        async def run(conn: Any) -> StoredResponse:
            replay = await self._claim(conn, idem, response)
            if replay is not None:
                return replay
            await conn.execute(sql, *(row[c] for c in columns))
            return response

        return await self._call(run, transaction=True)

    async def delete_source(self, source_id: str) -> None:
        if NUL in source_id:
            raise SourceGone(source_id)
        # Events queued before this call go first (and are deleted with the source).
        await self._inserts.drain()

        async def run(conn: Any) -> None:
            # The source row first: its lock waits for inserts holding it (FOR KEY
            # SHARE), so the events deleted next include theirs; later inserts skip it.
            if await conn.fetchval("DELETE FROM sources WHERE id = $1 RETURNING 1", source_id):
                for table in ("events", "event_counts", "received_counts", "message_ids"):
                    await conn.execute(f"DELETE FROM {table} WHERE source_id = $1", source_id)
                return
            raise SourceGone(source_id)

        await self._call(run, transaction=True)

    async def update_source(
        self, source_id: str, *, name: str | None = None, status: str | None = None
    ) -> None:
        if NUL in source_id:
            raise SourceGone(source_id)
        # The inserting statement checks ``status = 'active'`` itself, and a process's
        # earlier view of a key is checked again by it (source_for_key): a paused source
        # refuses at once, on every process.

        async def run(conn: Any) -> None:
            found = await conn.fetchval(
                "UPDATE sources SET name = coalesce($2, name), status = coalesce($3, status)"
                " WHERE id = $1 RETURNING 1",
                source_id,
                name,
                status,
            )
            if not found:
                raise SourceGone(source_id)

        await self._call(run, transaction=True)

    # maintenance

    async def prune_received_before(self, cutoff_ms: int) -> int:
        async def run(conn: Any) -> int:
            deleted = _rowcount(await conn.execute(PRUNE, cutoff_ms, PRUNE_CHUNK))
            await conn.execute("DELETE FROM event_counts WHERE n <= 0")
            await conn.execute("DELETE FROM received_counts WHERE n <= 0")
            return deleted

        return await self._call(run, transaction=True)

    async def expire_idempotency_keys(self) -> int:
        now = self.now_ms()

        async def run(conn: Any) -> int:
            keys = await conn.execute(
                "DELETE FROM idempotency WHERE created_at < $1", now - IDEMPOTENCY_TTL_MS
            )
            message_ids = await conn.execute(
                "DELETE FROM message_ids WHERE created_at < $1", now - MESSAGE_ID_TTL_MS
            )
            return _rowcount(keys) + _rowcount(message_ids)

        return await self._call(run)

    # reads

    async def list_sources(self) -> list[dict[str, Any]]:
        today = self.now_ms() // DAY_MS
        rows = await self._call(lambda conn: conn.fetch(SOURCE_ROW + " ORDER BY s.id", today))
        return [_source_row(r) for r in rows]

    async def get_source(self, source_id: str) -> dict[str, Any] | None:
        if NUL in source_id:
            return None
        today = self.now_ms() // DAY_MS
        row = await self._call(
            lambda conn: conn.fetchrow(SOURCE_ROW + " WHERE s.id = $2", today, source_id)
        )
        return None if row is None else _source_row(row)

    async def list_destinations(self) -> list[dict[str, Any]]:
        rows = await self._call(
            lambda conn: conn.fetch(f"SELECT {DESTINATION_COLUMNS} FROM destinations ORDER BY id")
        )
        return [destination_row(r) for r in rows]

    async def debug_events(self, source_id: str, limit: int) -> tuple[list[str], int | None]:
        if NUL in source_id:
            return [], None
        rows = await self._call(
            lambda conn: conn.fetch(
                "SELECT body, received_at FROM events WHERE source_id = $1 "
                "ORDER BY received_at DESC, id DESC LIMIT $2",
                source_id,
                limit,
            )
        )
        return [r[0] for r in rows], (rows[0][1] if rows else None)

    async def query_events(
        self,
        *,
        source_id: str | None = None,
        event_type: str | None = None,
        from_ms: int | None = None,
        to_ms: int | None = None,
        limit: int = 100,
    ) -> QueryResult:
        if (from_ms is not None and to_ms is not None and from_ms >= to_ms) or any(
            value is not None and NUL in value for value in (source_id, event_type)
        ):
            return QueryResult([], 0, 0, None, None)
        sql, params = _query(source_id, event_type, from_ms, to_ms, limit)

        rows = await self._call(lambda conn: conn.fetch(sql, *params))
        if rows[0][0] is None:
            return QueryResult([], 0, 0, None, None)
        _, latest, earliest, total, types = rows[0]
        return QueryResult([r[0] for r in rows], total, types, earliest, latest)


async def _keep_session(conn: Any) -> None:
    """What a connection needs before going back to the pool. asyncpg's default sends
    ``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`` on every release:
    a round trip per statement, for session state this store never leaves (no
    session locks, cursors, LISTEN or SET). Only an open transaction is ended."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


async def _insert(conn: Any, records: list[EventRecord]) -> set[str]:
    """Insert ``records`` in one statement (autocommitted, or in the caller's
    transaction); the ids of the active sources it locked: exactly the events of those
    were inserted, the others skipped (their source gone or not active)."""
    joined = _joined(records)
    if joined is not None:
        rows = await conn.fetch(INSERT_EVENTS_JOINED, *joined)
    else:
        rows = await conn.fetch(INSERT_EVENTS, *_columns(records))
    return {row[0] for row in rows}


def _joined(records: list[EventRecord]) -> tuple[str, ...] | None:
    """INSERT_EVENTS_JOINED's six strings, or None when a value holds the separator
    (a sender's type, or source id, may: each string must split into exactly one
    value per record) or a string is empty (``string_to_array('', ...)`` is an empty
    array, not one empty value)."""
    texts = [
        SEPARATOR.join(column)
        for column in (
            [r.id for r in records],
            [r.source_id for r in records],
            [r.type for r in records],
            [r.body for r in records],
        )
    ]
    if any(not text or text.count(SEPARATOR) != len(records) - 1 for text in texts):
        return None
    ids, sources, types, bodies = texts
    timestamps = ",".join([str(r.timestamp) for r in records])
    received = ",".join([str(r.received_at) for r in records])
    return ids, sources, types, timestamps, received, bodies


def _columns(records: list[EventRecord]) -> tuple[list, ...]:
    """INSERT_EVENTS' six arrays."""
    return (
        [r.id for r in records],
        [r.source_id for r in records],
        [r.type for r in records],
        [r.timestamp for r in records],
        [r.received_at for r in records],
        [r.body for r in records],
    )


def _reason(e: BaseException) -> str:
    return str(e) or type(e).__name__


def _rowcount(status: str) -> int:
    """The row count of a command tag such as ``DELETE 12``."""
    try:
        return int(status.rsplit(" ", 1)[1])
    except (IndexError, ValueError):
        return 0


def _source_row(r: Any) -> dict[str, Any]:
    return {
        "id": r[0],
        "name": r[1],
        "type": r[2],
        "write_key": r[3],
        "status": r[4],
        "created_at": r[5],
        "events_today": r[6],
    }


def _query(
    source_id: str | None, event_type: str | None, lo: int | None, hi: int | None, limit: int
) -> tuple[str, list[Any]]:
    """ONE statement (one round trip, one snapshot) for GET /streams/events, and its
    parameters: the page (body, timestamp; newest first, ties by id), each row carrying
    the summary (the earliest match, the count of matches and of their types); with no
    match, one row whose body is NULL.

    As in SQLite: whole UTC days inside the window are added up from the counters;
    the partial days at its edges are counted from the events, and (without a type
    filter) their types not already known are each confirmed by one index probe
    (candidates from the counters of the edge days), not by a DISTINCT scan. With a
    type filter the types are that one type, when anything matches.

    The text depends only on which filters are given and where the window's edges
    fall (``_query_text``, cached): the same few statements, prepared once per
    connection; each value is one parameter however often the text uses it.
    """
    first_full = None if lo is None else -(-lo // DAY_MS)  # ceil
    end_full = None if hi is None else hi // DAY_MS
    whole_days = first_full is None or end_full is None or first_full < end_full
    first_ms = None if first_full is None else first_full * DAY_MS
    end_ms = None if end_full is None else end_full * DAY_MS
    values = {
        "source": source_id,
        "type": event_type,
        "lo": lo,
        "hi": hi,
        "limit": limit,
        "first_day": first_full,
        "end_day": end_full,
        "first_ms": first_ms,
        "end_ms": end_ms,
        "lo_day": None if lo is None else lo // DAY_MS,
        "hi_day_end": None if hi is None else (hi - 1) // DAY_MS + 1,
    }
    sql, names = _query_text(
        source_id is not None,
        event_type is not None,
        lo is not None,
        hi is not None,
        whole_days,
        whole_days and lo is not None and first_ms is not None and lo < first_ms,
        whole_days and hi is not None and end_ms is not None and end_ms < hi,
    )
    return sql, [values[name] for name in names]


@functools.lru_cache(maxsize=128)
def _query_text(
    by_source: bool,
    by_type: bool,
    has_lo: bool,
    has_hi: bool,
    whole_days: bool,
    lo_edge: bool,
    hi_edge: bool,
) -> tuple[str, tuple[str, ...]]:
    """``_query``'s statement for one shape, and the names of its parameters in order
    ($1, $2, ...): ``whole_days``, a whole UTC day lies inside the window (else it is
    at most two partial days, counted from the events); ``lo_edge``/``hi_edge``, the
    window starts/ends inside a day."""
    names: list[str] = []

    def p(name: str) -> str:
        if name not in names:
            names.append(name)
        return f"${names.index(name) + 1}"

    def where(*conditions: tuple[bool, str, str], prefix: str = "") -> str:
        clauses = [f"{prefix}{column} {p(name)}" for given, column, name in conditions if given]
        return " AND ".join(clauses) if clauses else "TRUE"

    source = (by_source, "source_id =", "source")
    type_ = (by_type, "type =", "type")
    matches = where(source, type_, (has_lo, "timestamp >=", "lo"), (has_hi, "timestamp <", "hi"))
    # Each edge: its time range and the range of days whose counters may hold its types.
    edges: list[tuple[str, str, str, str]] = []
    if not whole_days:
        edges.append(("lo", "hi", "lo_day", "hi_day_end"))
    if lo_edge:
        edges.append(("lo", "first_ms", "lo_day", "first_day"))
    if hi_edge:
        edges.append(("end_ms", "hi", "end_day", "hi_day_end"))

    page = (
        f"SELECT body, timestamp, id FROM events WHERE {matches} "
        f"ORDER BY timestamp DESC, id DESC LIMIT {p('limit')}"
    )
    earliest = f"SELECT min(timestamp) FROM events WHERE {matches}"
    if whole_days:
        day_where = where(
            source,
            type_,
            (has_lo, "day >=", "first_day"),
            (has_hi, "day <", "end_day"),
        )
        day_types = (
            f"SELECT type, sum(n) AS n FROM event_counts WHERE n > 0 AND {day_where} GROUP BY type"
        )
    else:
        day_types = "SELECT NULL::text AS type, 0::bigint AS n WHERE FALSE"
    # One subquery per edge (not an OR of ranges), so each is an index range scan.
    ranges = [
        where((True, "timestamp >=", edge_lo), (True, "timestamp <", edge_hi))
        for edge_lo, edge_hi, _, _ in edges
    ]
    edge_count = (
        " + ".join(
            f"(SELECT count(*) FROM events WHERE {where(source, type_)} AND {r})" for r in ranges
        )
        or "0::bigint"
    )
    total = f"(SELECT coalesce(sum(n), 0) FROM day_types)::bigint + {edge_count}"
    if by_type:
        # The one type is there when anything matches.
        types = "(total > 0)::int"
        ctes = f"page AS ({page}), day_types AS ({day_types})"
    else:
        types = "(SELECT count(*) FROM day_types) + (SELECT count(*) FROM edge_types)"
        if edges:
            cand_days = " OR ".join(
                f"({where((True, 'day >=', day_lo), (True, 'day <', day_hi))})"
                for _, _, day_lo, day_hi in edges
            )
            probes = " OR ".join(
                f"EXISTS (SELECT 1 FROM events e WHERE e.type = c.type AND "
                f"{where(source, prefix='e.')} AND {r})"
                for r in ranges
            )
            edge_types = (
                "SELECT c.type FROM (SELECT DISTINCT type FROM event_counts "
                f"WHERE n > 0 AND {where(source)} AND ({cand_days})) c "
                "WHERE NOT EXISTS (SELECT 1 FROM day_types d WHERE d.type = c.type) "
                f"AND ({probes})"
            )
        else:
            edge_types = "SELECT NULL::text AS type WHERE FALSE"
        ctes = f"page AS ({page}), day_types AS ({day_types}), edge_types AS ({edge_types})"
    sql = (
        f"WITH {ctes}, counted AS (SELECT ({earliest}) AS earliest, {total} AS total), "
        f"summary AS (SELECT earliest, total, {types} AS types FROM counted) "
        "SELECT p.body, p.timestamp, s.earliest, s.total, s.types "
        "FROM summary s LEFT JOIN page p ON TRUE ORDER BY p.timestamp DESC, p.id DESC"
    )
    return sql, tuple(names)
