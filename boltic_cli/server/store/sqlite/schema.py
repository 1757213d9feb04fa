"""The SQLite schema, its migrations, and how a connection is opened.

Times are stored as integer milliseconds since the epoch (UTC). Event counts are
kept by triggers as events are written, per source, type and UTC day of
``timestamp`` (for query summaries) and per source and UTC day of ``receivedAt``
(for ``eventsToday``), so a summary over millions of events adds up a few
thousand counters and counts only the partial days at the edges of a window.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from boltic_cli.server.store.base import SchemaTooNew
from boltic_cli.server.store.sqlite import deliveries

SCHEMA_VERSION = 4

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

# messageId dedupe: the primary key is the unique index that enforces it; rows older
# than MESSAGE_ID_TTL_MS no longer count and are expired with Idempotency-Keys.
MESSAGE_IDS = """
CREATE TABLE message_ids (
    source_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (source_id, message_id)
) WITHOUT ROWID;
CREATE INDEX message_ids_by_age ON message_ids (created_at);
"""

MIGRATIONS: dict[int, str] = {
    1: SCHEMA,
    2: COUNT_TRIGGERS,
    3: MESSAGE_IDS,
    4: deliveries.MIGRATION,
}


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


def prepare(path: Path) -> None:
    """Create the file's directory, then create or migrate the schema (before serving)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = connect(path)
    try:
        migrate(conn)
    finally:
        conn.close()
