"""The PostgreSQL schema: tables, counting triggers, versioned migrations.

Mirrors the SQLite schema (``store/sqlite/schema.py``) table for table, so the two
stores answer alike: times are bigint milliseconds since the epoch (UTC), event
bodies are ``text`` (not ``jsonb``: key order and ``\\u0000`` escapes survive byte for
byte), identifiers sort in byte order (``COLLATE "C"``, as in SQLite) whatever the
database's locale. Per-day counters are kept by statement-level triggers with
transition tables: one aggregated upsert per INSERT statement, however many rows it
carries (a group commit of 16 events is two counter upserts, not 32).

``migrate(conn)`` runs under a transaction-scoped advisory lock, so simultaneous
starts (several ``boltic server`` processes on one database) apply each version once.
Versions: 1 this module's tables, 2 the delivery outbox (``deliveries.py``), 3 the
sources trigger dropped (MIGRATION_3).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from boltic_cli.server.store.base import SchemaTooNew, StoreUnavailable
from boltic_cli.server.store.postgres import deliveries

if TYPE_CHECKING:
    import asyncpg

SCHEMA_VERSION = 3
# pg_advisory_xact_lock key for migrations: "boltic" in ASCII.
MIGRATION_LOCK = 0x626F6C746963

SCHEMA_V1 = """
CREATE TABLE sources (
    id text COLLATE "C" PRIMARY KEY,
    name text NOT NULL,
    type text NOT NULL,
    write_key text COLLATE "C" NOT NULL UNIQUE,
    status text NOT NULL,
    created_at bigint NOT NULL
);
CREATE TABLE destinations (
    id text COLLATE "C" PRIMARY KEY,
    name text NOT NULL,
    type text NOT NULL,
    config text NOT NULL,
    status text NOT NULL,
    created_at bigint NOT NULL
);
CREATE TABLE events (
    id text COLLATE "C" NOT NULL,
    source_id text COLLATE "C" NOT NULL,
    type text COLLATE "C" NOT NULL,
    timestamp bigint NOT NULL,
    received_at bigint NOT NULL,
    body text NOT NULL
);
-- As in SQLite: one index per filter combination of GET /streams/events, each ending
-- in the sort order (timestamp, id), and the debug read's (source, receivedAt, id).
CREATE INDEX events_by_source_type_time ON events (source_id, type, timestamp, id);
CREATE INDEX events_by_source_time ON events (source_id, timestamp, id);
CREATE INDEX events_by_type_time ON events (type, timestamp, id);
CREATE INDEX events_by_time ON events (timestamp, id);
CREATE INDEX events_by_source_received ON events (source_id, received_at, id);
CREATE TABLE event_counts (
    source_id text COLLATE "C" NOT NULL,
    type text COLLATE "C" NOT NULL,
    day bigint NOT NULL,
    n bigint NOT NULL,
    PRIMARY KEY (source_id, type, day)
);
CREATE INDEX event_counts_by_day ON event_counts (day, type);
CREATE TABLE received_counts (
    source_id text COLLATE "C" NOT NULL,
    day bigint NOT NULL,
    n bigint NOT NULL,
    PRIMARY KEY (source_id, day)
);
CREATE TABLE idempotency (
    scope text COLLATE "C" NOT NULL,
    key text COLLATE "C" NOT NULL,
    request_hash text NOT NULL,
    status integer NOT NULL,
    body text NOT NULL,
    created_at bigint NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_by_age ON idempotency (created_at);
-- messageId dedupe: the primary key enforces it (across processes); rows older than
-- MESSAGE_ID_TTL_MS no longer count and are expired with Idempotency-Keys.
CREATE TABLE message_ids (
    source_id text COLLATE "C" NOT NULL,
    message_id text COLLATE "C" NOT NULL,
    event_id text COLLATE "C" NOT NULL,
    created_at bigint NOT NULL,
    PRIMARY KEY (source_id, message_id)
);
CREATE INDEX message_ids_by_age ON message_ids (created_at);

-- The UTC day of a time in ms (floor division, also before 1970).
CREATE FUNCTION boltic_day(ms bigint) RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN (ms - mod(mod(ms, 86400000) + 86400000, 86400000)) / 86400000;

-- Counters in the same statement as the write: an insert or delete cannot miss its
-- count. Upserts in key order, so concurrent writers cannot deadlock on them.
CREATE FUNCTION boltic_count_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO event_counts AS c (source_id, type, day, n)
        SELECT source_id, type, boltic_day(timestamp), count(*) FROM new_rows
        GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        ON CONFLICT (source_id, type, day) DO UPDATE SET n = c.n + EXCLUDED.n;
    INSERT INTO received_counts AS c (source_id, day, n)
        SELECT source_id, boltic_day(received_at), count(*) FROM new_rows
        GROUP BY 1, 2 ORDER BY 1, 2
        ON CONFLICT (source_id, day) DO UPDATE SET n = c.n + EXCLUDED.n;
    RETURN NULL;
END $$;
CREATE FUNCTION boltic_count_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE event_counts c SET n = c.n - d.n
        FROM (SELECT source_id, type, boltic_day(timestamp) AS day, count(*) AS n
              FROM old_rows GROUP BY 1, 2, 3) d
        WHERE c.source_id = d.source_id AND c.type = d.type AND c.day = d.day;
    UPDATE received_counts c SET n = c.n - d.n
        FROM (SELECT source_id, boltic_day(received_at) AS day, count(*) AS n
              FROM old_rows GROUP BY 1, 2) d
        WHERE c.source_id = d.source_id AND c.day = d.day;
    RETURN NULL;
END $$;
-- Every process keeps a hint of active sources; any change to a source tells them
-- all (delivered at commit) to forget it.
CREATE FUNCTION boltic_source_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('boltic_sources', OLD.id);
    RETURN NULL;
END $$;
CREATE TRIGGER sources_changed AFTER UPDATE OR DELETE ON sources
    FOR EACH ROW EXECUTE FUNCTION boltic_source_changed();
CREATE TRIGGER events_count_insert AFTER INSERT ON events
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION boltic_count_insert();
CREATE TRIGGER events_count_delete AFTER DELETE ON events
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT
    EXECUTE FUNCTION boltic_count_delete();
"""

# The sources trigger told each process to forget its hint of active sources; nothing
# listens any more (every lookup asks the database), so it only cost each source
# change a NOTIFY. Events and deliveries keep their layout: retention deletes rows
# (partitioning by day was measured and not adopted: docs/internals.md).
MIGRATION_3 = """
DROP TRIGGER IF EXISTS sources_changed ON sources;
DROP FUNCTION IF EXISTS boltic_source_changed();
"""

MIGRATIONS: dict[int, str] = {1: SCHEMA_V1, 2: deliveries.MIGRATION, 3: MIGRATION_3}


def prepare(url: str, connect_timeout: float = 5.0) -> None:
    """Before serving: connect and create or migrate the schema, so an unreachable
    database or a newer schema is one clear error. Raises StoreUnavailable,
    SchemaTooNew."""
    import asyncio

    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(url, timeout=connect_timeout)
        try:
            await migrate(conn)
        finally:
            await conn.close()

    try:
        asyncio.run(run())
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as e:
        raise StoreUnavailable(str(e) or type(e).__name__) from None


async def schema_version(conn: asyncpg.Connection) -> int:
    """The version recorded in ``boltic_schema`` (0 for an empty database)."""
    await conn.execute("CREATE TABLE IF NOT EXISTS boltic_schema (version integer NOT NULL)")
    version = await conn.fetchval("SELECT max(version) FROM boltic_schema")
    return version or 0


async def migrate(conn: asyncpg.Connection, target: int = SCHEMA_VERSION) -> int:
    """Create or upgrade the schema to ``target`` (SCHEMA_VERSION; an older one only for
    tests and benchmarks that need a database as an older boltic left it), one
    transaction per version, each under the migration advisory lock (a second process
    waits, then finds it done). Returns the version. Raises SchemaTooNew; the driver's
    errors otherwise."""
    while True:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
            version = await schema_version(conn)
            if version > SCHEMA_VERSION:
                raise SchemaTooNew(
                    f"database schema version {version} is newer than this boltic "
                    f"({SCHEMA_VERSION})"
                )
            if version >= target:
                return version
            await conn.execute(MIGRATIONS[version + 1])
            # One row: the version now.
            await conn.execute("DELETE FROM boltic_schema")
            await conn.execute("INSERT INTO boltic_schema (version) VALUES ($1)", version + 1)
