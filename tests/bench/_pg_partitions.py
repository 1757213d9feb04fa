"""An experimental variant of the PostgreSQL schema, measured against the store's row
deletes by bench_pg_retention.py and NOT used by the server: events and deliveries in
one partition per UTC day of ``received_at`` (``created_at``), retention by dropping
whole days. It was written and measured as schema migration 3 on branch
``partitions`` (issue 19) and moved here unchanged, apart from the package's own
migration 3 (the sources trigger dropped) no longer being part of ``PARTITION``; the
package keeps deleting rows (docs/internals.md, "Retention on PostgreSQL").

What it measured (bench_pg_retention.json; 1,000,000 events over 30 days with one
delivery each): pruning the oldest 7 days at once, dropping the days wrote ~7x less
WAL than deleting the rows (17 MB against 124 MB) and gave the space back (events
744 -> 592 MB), 1.9 s against 2.5 s; in the steady state (the cutoff moving a day in
hourly steps) the day at the cutoff is deleted row by row, so the WAL is the same
(22 MB a day either way) and it took longer (1.41 s against 0.25 s); and every read of
``events`` opens every partition (the filters are on ``timestamp``, the key is
``received_at``): p50 source + type + 7 days 0.43 -> 1.72 ms.

Use: a database at the package's schema 3, then ``PARTITION`` (one transaction);
``prune_received_before(conn, cutoff_ms)`` on a connection with the store's session
settings, called again while it returns at least PRUNE_CHUNK.

Layout. ``events`` is ``PARTITION BY RANGE (received_at)``, ``deliveries`` ``PARTITION
BY RANGE (created_at)`` (a delivery's ``created_at`` is its event's ``received_at``, so
an event and its deliveries are in the same day); partition ``events_YYYYMMDD`` holds
``[day * 86400000, (day + 1) * 86400000)``, and ``events_default`` /
``deliveries_default`` take whatever falls in no day (a clock far off, a server that
did not run maintenance). Indexes and the statement-level triggers (counters, outbox,
deliveries dropped with their events) are on the parents, so every partition has
them; triggers with transition tables fire once per statement for the rows of every
partition it touched.

Days ahead. ``boltic_add_day(day)`` (SQL, below) creates a day's pair of partitions if
missing: as a plain table ``ATTACH``-ed to the parent (``SHARE UPDATE EXCLUSIVE`` on
the parent, which inserts and reads do not wait for; ``CREATE TABLE ... PARTITION OF``
would take ``ACCESS EXCLUSIVE``), after moving rows of that day out of the default
partition (which it locks, ``ACCESS EXCLUSIVE`` while attaching). Maintenance (``add_days``)
makes today and DAYS_AHEAD days after it, so inserts land in their day in normal running.

Dropping a day. In one transaction, under ``lock_timeout`` (DROP_LOCK_TIMEOUT_MS):
lock the day's events partition (``SHARE``: no row can come or go while it is counted),
subtract its rows from ``event_counts`` (grouped by the event ``timestamp``'s day) and
delete its ``received_counts`` day, delete its deliveries' attempts, then ``DROP
TABLE`` both partitions. DROP takes ``ACCESS EXCLUSIVE`` on the parent: inserts and
reads of events wait for the rest of that transaction (milliseconds), and the DROP
itself waits for statements already running on ``events``; if it cannot have the lock
within the timeout it gives up (the day is tried again at the next maintenance),
so a long query delays retention, never ingest for longer than the timeout. The
timeout is shorter than ``deadlock_timeout`` (1 s), so in a lock cycle with a
concurrent ``delete_source`` it is this transaction that gives way.

Several processes: every maintenance transaction on events (a day made, a day
dropped, a chunk of rows deleted: ``lock()``) first takes a transaction-scoped
advisory lock (MAINTENANCE_LOCK), so they take turns across processes, each short.
Without it one process's chunk DELETE (which, under the store's generic plans,
locks every partition of ``events``) and another's DROP would lock each other out
until the lock timeout, and the day would wait for the next run. Existence checks
(``pg_class`` read after the lock) make a repeat harmless.
"""

from __future__ import annotations

import datetime as _dt
import re
from typing import Any

from boltic_cli.server.store.base import PRUNE_CHUNK

DAY_MS = 86_400_000
# Days after today whose partitions maintenance makes ahead of time.
DAYS_AHEAD = 3
# PARTITION makes partitions for days with rows at most this far back (older rows
# go to the default partition, and retention deletes them row by row).
MIGRATION_DAYS_BACK = 400
# pg_advisory_xact_lock key for maintenance on events: "bolticp" in ASCII.
MAINTENANCE_LOCK = 0x626F6C74696370
# How long a partition DDL statement may wait for its lock (ms): inserts queued behind
# it wait at most this long (bench_pg_retention.py measures what they waited).
DROP_LOCK_TIMEOUT_MS = 500

_DAY_NAME = re.compile(r"^events_(\d{8})$")


def day_suffix(day: int) -> str:
    """``YYYYMMDD`` of a UTC day number (days since 1970-01-01)."""
    return (_dt.date(1970, 1, 1) + _dt.timedelta(days=day)).strftime("%Y%m%d")


def day_of_suffix(suffix: str) -> int:
    """The UTC day number of ``YYYYMMDD``."""
    return (_dt.datetime.strptime(suffix, "%Y%m%d").date() - _dt.date(1970, 1, 1)).days


ADD_DAY = """
CREATE FUNCTION boltic_add_day(d bigint) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    suffix text := to_char(date '1970-01-01' + d::integer, 'YYYYMMDD');
    lo bigint := d * 86400000;
    hi bigint := (d + 1) * 86400000;
    parent text;
    col text;
BEGIN
    -- pg_class read with this statement's snapshot (to_regclass may answer from a
    -- cache not yet told of another process's change made while this one waited).
    IF EXISTS (SELECT 1 FROM pg_class WHERE relname = 'events_' || suffix
               AND pg_table_is_visible(oid)) THEN
        RETURN false;
    END IF;
    FOR parent, col IN VALUES ('events', 'received_at'), ('deliveries', 'created_at') LOOP
        -- No insert may land in the default partition's part for this day meanwhile.
        EXECUTE format('LOCK TABLE %I IN EXCLUSIVE MODE', parent || '_default');
        EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS)',
                       parent || '_' || suffix, parent);
        EXECUTE format('WITH moved AS (DELETE FROM %I WHERE %I >= $1 AND %I < $2 RETURNING *) '
                       'INSERT INTO %I SELECT * FROM moved',
                       parent || '_default', col, col, parent || '_' || suffix)
            USING lo, hi;
        EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%s) TO (%s)',
                       parent, parent || '_' || suffix, lo, hi);
    END LOOP;
    RETURN true;
END $$;
"""

EVENTS_INDEXES = """
CREATE INDEX events_by_source_type_time ON events (source_id, type, timestamp, id);
CREATE INDEX events_by_source_time ON events (source_id, timestamp, id);
CREATE INDEX events_by_type_time ON events (type, timestamp, id);
CREATE INDEX events_by_time ON events (timestamp, id);
CREATE INDEX events_by_source_received ON events (source_id, received_at, id);
"""

# Converts a database at the package's schema 3 (events and deliveries plain tables).
PARTITION = f"""
ALTER TABLE events RENAME TO events_v2;
ALTER TABLE deliveries RENAME TO deliveries_v2;
CREATE TABLE events (
    id text COLLATE "C" NOT NULL,
    source_id text COLLATE "C" NOT NULL,
    type text COLLATE "C" NOT NULL,
    timestamp bigint NOT NULL,
    received_at bigint NOT NULL,
    body text NOT NULL
) PARTITION BY RANGE (received_at);
CREATE TABLE events_default PARTITION OF events DEFAULT;
CREATE TABLE deliveries (
    id text COLLATE "C" NOT NULL,
    destination_id text COLLATE "C" NOT NULL,
    event_id text COLLATE "C" NOT NULL,
    source_id text COLLATE "C" NOT NULL,
    status text NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    round_attempts integer NOT NULL DEFAULT 0,
    created_at bigint NOT NULL,
    next_attempt_at bigint,
    last_attempt_at bigint,
    outcome text,
    response_status integer,
    duration_ms integer,
    error text,
    response_body text
) PARTITION BY RANGE (created_at);
CREATE TABLE deliveries_default PARTITION OF deliveries DEFAULT;
{ADD_DAY}
-- A day for each day with rows (up to {MIGRATION_DAYS_BACK} days back), today and the
-- days ahead; then the rows, then the indexes (built once over the loaded partitions).
SELECT boltic_add_day(d) FROM (
    SELECT DISTINCT boltic_day(received_at) AS d FROM events_v2
    WHERE received_at >= (boltic_day((extract(epoch FROM now()) * 1000)::bigint)
                          - {MIGRATION_DAYS_BACK}) * 86400000
      AND received_at < (boltic_day((extract(epoch FROM now()) * 1000)::bigint)
                         + {DAYS_AHEAD} + 1) * 86400000
    UNION
    SELECT boltic_day((extract(epoch FROM now()) * 1000)::bigint) + generate_series(0, {DAYS_AHEAD})
) days ORDER BY d;
INSERT INTO events (id, source_id, type, timestamp, received_at, body)
    SELECT id, source_id, type, timestamp, received_at, body FROM events_v2;
INSERT INTO deliveries (id, destination_id, event_id, source_id, status, attempts,
        round_attempts, created_at, next_attempt_at, last_attempt_at, outcome,
        response_status, duration_ms, error, response_body)
    SELECT id, destination_id, event_id, source_id, status, attempts, round_attempts,
        created_at, next_attempt_at, last_attempt_at, outcome, response_status,
        duration_ms, error, response_body FROM deliveries_v2;
DROP TABLE events_v2;
DROP TABLE deliveries_v2;
{EVENTS_INDEXES}
-- The partition key is part of every unique index of a partitioned table; a
-- delivery's id (its event's id and its destination's number) is unique by itself.
ALTER TABLE deliveries ADD PRIMARY KEY (destination_id, id, created_at);
CREATE INDEX deliveries_due ON deliveries (destination_id, next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX deliveries_by_event ON deliveries (event_id);
CREATE TRIGGER events_count_insert AFTER INSERT ON events
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION boltic_count_insert();
CREATE TRIGGER events_count_delete AFTER DELETE ON events
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT
    EXECUTE FUNCTION boltic_count_delete();
CREATE TRIGGER events_outbox AFTER INSERT ON events
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION boltic_outbox();
CREATE TRIGGER events_drop_deliveries AFTER DELETE ON events
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT
    EXECUTE FUNCTION boltic_drop_deliveries();
"""


async def partition(conn: Any) -> None:
    """Convert a database at the package's schema 3 to this layout (PARTITION), in one
    transaction: events and deliveries are locked meanwhile."""
    async with conn.transaction():
        await conn.execute(PARTITION)


LIST_DAYS = """
SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'events'::regclass
"""

# Whether a table exists, read from pg_class with the statement's snapshot: after
# waiting for the maintenance lock, to_regclass can still answer from this backend's
# catalog cache, which has not yet seen another process's DROP (committed meanwhile).
EXISTS = "SELECT EXISTS (SELECT 1 FROM pg_class WHERE relname = $1 AND pg_table_is_visible(oid))"
SUBTRACT_DAY = """
UPDATE event_counts c SET n = c.n - d.n
FROM (SELECT source_id, type, boltic_day(timestamp) AS day, count(*) AS n
      FROM {table} GROUP BY 1, 2, 3) d
WHERE c.source_id = d.source_id AND c.type = d.type AND c.day = d.day
"""


async def lock(conn: Any) -> None:
    """In the caller's transaction: wait for the maintenance lock (other processes'
    maintenance transactions are short), then limit every later lock wait of the
    transaction to DROP_LOCK_TIMEOUT_MS."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", MAINTENANCE_LOCK)
    await conn.execute(f"SET LOCAL lock_timeout = {DROP_LOCK_TIMEOUT_MS}")


async def days(conn: Any) -> list[int]:
    """The UTC days that have an events partition, oldest first."""
    names = [r[0] for r in await conn.fetch(LIST_DAYS)]
    return sorted(day_of_suffix(m.group(1)) for n in names if (m := _DAY_NAME.match(n)))


async def add_days(conn: Any, first: int, last: int) -> int:
    """Create the partitions of days ``first..last`` that are missing, one transaction,
    under the maintenance lock; returns how many days were created. The driver's
    errors (a lock timeout among them) propagate."""
    async with conn.transaction():
        await lock(conn)
        created = 0
        for day in range(first, last + 1):
            created += bool(await conn.fetchval("SELECT boltic_add_day($1)", day))
        return created


async def drop_day(conn: Any, day: int) -> int | None:
    """Drop day ``day``'s events and deliveries partitions with their counts, in one
    transaction under the maintenance lock; returns the events dropped, or None when
    the day is already gone. Raises the driver's LockNotAvailableError when a lock
    was not had within DROP_LOCK_TIMEOUT_MS."""
    suffix = day_suffix(day)
    events, deliveries = f"events_{suffix}", f"deliveries_{suffix}"
    async with conn.transaction():
        await lock(conn)
        if not await conn.fetchval(EXISTS, events):
            return None
        await conn.execute(f"LOCK TABLE {events}, {deliveries} IN SHARE MODE")
        n = await conn.fetchval(f"SELECT count(*) FROM {events}")
        await conn.execute(SUBTRACT_DAY.format(table=events))
        await conn.execute("DELETE FROM received_counts WHERE day = $1", day)
        await conn.execute(
            f"DELETE FROM delivery_attempts a USING {deliveries} d WHERE a.delivery_id = d.id"
        )
        await conn.execute(f"DROP TABLE {events}, {deliveries}")
        return n


# One chunk of retention by rows: the day at the cutoff (its partition is kept) and the
# default partition (rows of days that have none); older days are dropped whole
# (drop_day) before this runs. Rows are found per source through
# events_by_source_received (the ORDER BY keeps even a generic plan on that index) and
# deleted by (partition, ctid): a ctid alone is not unique across partitions.
PRUNE = """
DELETE FROM events e USING (
    SELECT x.tableoid AS t, x.ctid AS c FROM sources s CROSS JOIN LATERAL (
        SELECT tableoid, ctid FROM events
        WHERE source_id = s.id AND received_at < $1
          AND (received_at >= $3 OR tableoid = 'events_default'::regclass)
        ORDER BY received_at LIMIT $2
    ) x LIMIT $2
) old
WHERE e.received_at < $1 AND e.tableoid = old.t AND e.ctid = old.c
"""


async def prune_received_before(conn: Any, cutoff_ms: int) -> int:
    """Retention on the partitioned schema, as the store ran it on branch
    ``partitions``: drop every day partition wholly before ``cutoff_ms`` (one
    transaction per day, counts adjusted in it; a day whose lock is not had within
    DROP_LOCK_TIMEOUT_MS waits for the next call), then delete up to PRUNE_CHUNK rows of
    what is left before the cutoff (the cutoff's own day and the default partition) in
    one transaction with the counters' cleanup. Returns the events dropped and deleted:
    call again while it is at least PRUNE_CHUNK."""
    import asyncpg

    cutoff_day = cutoff_ms // DAY_MS
    dropped = 0
    for day in await days(conn):
        if day >= cutoff_day:
            break
        try:
            dropped += await drop_day(conn, day) or 0
        except asyncpg.exceptions.LockNotAvailableError:
            break
    async with conn.transaction():
        await lock(conn)
        status = await conn.execute(PRUNE, cutoff_ms, PRUNE_CHUNK, cutoff_day * DAY_MS)
        await conn.execute("DELETE FROM event_counts WHERE n <= 0")
        await conn.execute("DELETE FROM received_counts WHERE n <= 0")
    return dropped + int(status.rsplit(" ", 1)[1])
