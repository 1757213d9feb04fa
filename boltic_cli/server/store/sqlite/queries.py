"""SQL of the SQLite store: inserting events, Idempotency-Keys, and every read.

Functions here take a connection and run inside the caller's transaction (the
writer's, or a reader's snapshot); they hold no state.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Container, Sequence
from typing import Any

from boltic_cli.server.store.base import (
    DAY_MS,
    IDEMPOTENCY_TTL_MS,
    MESSAGE_ID_TTL_MS,
    EventRecord,
    Idempotency,
    IdempotencyConflict,
    QueryResult,
    SourceGone,
    StoredResponse,
    StoreError,
)

MAX_SQL_VARIABLES = 32000  # SQLite's limit is 32766 since 3.32

SOURCE_COLUMNS = (
    "SELECT s.id, s.name, s.type, s.write_key, s.status, s.created_at, "
    "coalesce(c.n, 0) FROM sources s LEFT JOIN received_counts c "
    "ON c.source_id = s.id AND c.day = ?"
)


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


def store_records(
    conn: sqlite3.Connection, records: Sequence[EventRecord], known: Container[str], now_ms: int
) -> list[str | StoreError]:
    """Insert ``records`` in order (inside the caller's transaction) but those whose
    source is not ``known`` (SourceGone) and those whose messageId the source used
    within MESSAGE_ID_TTL_MS, here or earlier in ``records`` (answered with the first
    event's id). Per record, in order: the event id it is answered with, or its error."""
    keyed = [r for r in records if r.message_id is not None and r.source_id in known]
    first = known_message_ids(conn, keyed, now_ms - MESSAGE_ID_TTL_MS) if keyed else {}
    outcomes: list[str | StoreError] = []
    fresh: list[EventRecord] = []
    remembered: list[tuple[str, str, str, int]] = []
    for record in records:
        if record.source_id not in known:
            outcomes.append(SourceGone(record.source_id))
            continue
        if record.message_id is not None:
            key = (record.source_id, record.message_id)
            seen = first.get(key)
            if seen is not None:
                outcomes.append(seen)
                continue
            first[key] = record.id
            remembered.append((record.source_id, record.message_id, record.id, now_ms))
        outcomes.append(record.id)
        fresh.append(record)
    # OR REPLACE: a row older than the TTL (not yet expired) gives way.
    _insert_rows(
        conn,
        "INSERT OR REPLACE INTO message_ids (source_id, message_id, event_id, created_at) "
        "VALUES {}",
        remembered,
    )
    insert_events(conn, fresh)
    return outcomes


def known_message_ids(
    conn: sqlite3.Connection, records: Sequence[EventRecord], since_ms: int
) -> dict[tuple[str, str], str]:
    """(source, messageId) -> first event id, for the records' messageIds used since
    ``since_ms``."""
    by_source: dict[str, list[str]] = {}
    for record in records:
        by_source.setdefault(record.source_id, []).append(record.message_id)  # type: ignore[arg-type]
    found: dict[tuple[str, str], str] = {}
    per_statement = MAX_SQL_VARIABLES - 2
    for source_id, ids in by_source.items():
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), per_statement):
            chunk = unique[start : start + per_statement]
            marks = ", ".join("?" * len(chunk))
            for message_id, event_id in conn.execute(
                "SELECT message_id, event_id FROM message_ids WHERE source_id = ? "
                f"AND message_id IN ({marks}) AND created_at >= ?",
                [source_id, *chunk, since_ms],
            ):
                found[(source_id, message_id)] = event_id
    return found


# idempotency


def replay(
    conn: sqlite3.Connection, idem: Idempotency | None, now_ms: int
) -> StoredResponse | None:
    """The first answer to this Idempotency-Key (within IDEMPOTENCY_TTL_MS), or None.
    Raises IdempotencyConflict when the key came with a different request."""
    if idem is None:
        return None
    row = conn.execute(
        "SELECT request_hash, status, body FROM idempotency "
        "WHERE scope = ? AND key = ? AND created_at >= ?",
        (idem.scope, idem.key, now_ms - IDEMPOTENCY_TTL_MS),
    ).fetchone()
    if row is None:
        return None
    if row[0] != idem.request_hash:
        raise IdempotencyConflict("this Idempotency-Key was used with a different request")
    return StoredResponse(row[1], row[2])


def record_answer(
    conn: sqlite3.Connection, idem: Idempotency | None, response: StoredResponse, now_ms: int
) -> None:
    """Remember ``response`` as the answer to this Idempotency-Key (in the same
    transaction as the write it answers)."""
    if idem is not None:
        conn.execute(
            "INSERT OR REPLACE INTO idempotency "
            "(scope, key, request_hash, status, body, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (idem.scope, idem.key, idem.request_hash, response.status, response.body, now_ms),
        )


def expire_idempotency(conn: sqlite3.Connection, now_ms: int) -> int:
    """Forget Idempotency-Keys and messageIds past their time; returns how many."""
    keys = conn.execute(
        "DELETE FROM idempotency WHERE created_at < ?", (now_ms - IDEMPOTENCY_TTL_MS,)
    ).rowcount
    message_ids = conn.execute(
        "DELETE FROM message_ids WHERE created_at < ?", (now_ms - MESSAGE_ID_TTL_MS,)
    ).rowcount
    return keys + message_ids


# reads


def list_sources(conn: sqlite3.Connection, today: int) -> list[dict[str, Any]]:
    return [_source_row(r) for r in conn.execute(SOURCE_COLUMNS + " ORDER BY s.id", (today,))]


def get_source(conn: sqlite3.Connection, today: int, source_id: str) -> dict[str, Any] | None:
    row = conn.execute(SOURCE_COLUMNS + " WHERE s.id = ?", (today, source_id)).fetchone()
    return None if row is None else _source_row(row)


def debug_events(
    conn: sqlite3.Connection, source_id: str, limit: int
) -> tuple[list[str], int | None]:
    rows = conn.execute(
        "SELECT body, received_at FROM events WHERE source_id = ? "
        "ORDER BY received_at DESC, id DESC LIMIT ?",
        (source_id, limit),
    ).fetchall()
    return [r[0] for r in rows], (rows[0][1] if rows else None)


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


def query(
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


# deletes


def delete_source(conn: sqlite3.Connection, source_id: str) -> None:
    """The source, its events and its counters."""
    # Counters after events: the delete trigger updates them row by row.
    for table in ("events", "event_counts", "received_counts", "message_ids"):
        conn.execute(f"DELETE FROM {table} WHERE source_id = ?", (source_id,))
    conn.execute("DELETE FROM sources WHERE id = ?", (source_id,))


def prune_received_before(
    conn: sqlite3.Connection, source_ids: list[str], cutoff_ms: int, chunk: int
) -> int:
    """Delete up to ``chunk`` events received before the cutoff, source by source (each
    uses the (source_id, received_at) index), and the counters left at zero."""
    deleted = 0
    for source_id in source_ids:
        deleted += conn.execute(
            "DELETE FROM events WHERE rowid IN (SELECT rowid FROM events "
            "WHERE source_id = ? AND received_at < ? LIMIT ?)",
            (source_id, cutoff_ms, chunk - deleted),
        ).rowcount
        if deleted >= chunk:
            break
    conn.execute("DELETE FROM event_counts WHERE n <= 0")
    conn.execute("DELETE FROM received_counts WHERE n <= 0")
    return deleted
