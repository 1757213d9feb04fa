"""SQLite: the delivery outbox (schema migration and SQL). Every function runs on a
connection inside the caller's transaction (the writer's for writes, a reader's
snapshot for reads).

The outbox is kept by triggers, so the fast event insert stays one statement:

- ``events_outbox``: an inserted event gets a pending delivery, due at once, for each
  active webhook destination whose ``eventTypes``/``sourceIds`` (absent or empty =
  all) match; committed with the event, so nothing is lost between a 202 and its
  delivery. With no active webhook destination its WHEN clause skips it.
- ``events_drop_deliveries``: an event deleted (source deleted, retention) takes its
  deliveries with it, and ``deliveries_drop_attempts`` their attempts.

The delivery row holds its last attempt; recording the next one first moves that one
into ``delivery_attempts`` (the history), so a delivery whose first attempt succeeds
(the common case) writes one row, not two.

A claim is a lease: ``next_attempt_at`` is moved to ``now + lease``, so a process
that dies mid-attempt leaves the delivery due again when the lease ends.
Deliveries point at their event by rowid (``event_rowid``, checked against the
event id) so finding the body needs no index on ``events.id``; a delivery's id is
``dlv_`` + its event's ULID + the destination's rowid in hex, so the deliveries of an
event are a key range (no index on ``event_id`` either). The key is (destination, id):
an event's insert adds two index entries per destination, the row and the due index.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from boltic_cli import webhooks
from boltic_cli.server.store.outbox import (
    AttemptRecord,
    Claim,
    DeliveryStore,
    DestinationGone,
    delivery_row,
    delivery_status,
    period_text,
)

if TYPE_CHECKING:
    from boltic_cli.server.store.sqlite.writer import Writer

MIGRATION = """
ALTER TABLE destinations ADD COLUMN disabled_reason TEXT;
ALTER TABLE destinations ADD COLUMN failing_since INTEGER;
CREATE TABLE deliveries (
    id TEXT NOT NULL,
    destination_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    event_rowid INTEGER NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    round_attempts INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    next_attempt_at INTEGER,
    last_attempt_at INTEGER,
    outcome TEXT,
    response_status INTEGER,
    duration_ms INTEGER,
    error TEXT,
    response_body TEXT,
    PRIMARY KEY (destination_id, id)
) WITHOUT ROWID;
CREATE INDEX deliveries_due ON deliveries (destination_id, next_attempt_at)
    WHERE status = 'pending';
CREATE TABLE delivery_attempts (
    delivery_id TEXT NOT NULL,
    n INTEGER NOT NULL,
    at INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    response_status INTEGER,
    duration_ms INTEGER NOT NULL,
    error TEXT,
    response_body TEXT,
    PRIMARY KEY (delivery_id, n)
) WITHOUT ROWID;
CREATE TRIGGER events_outbox AFTER INSERT ON events
WHEN EXISTS (SELECT 1 FROM destinations WHERE status = 'active' AND type = 'webhook')
BEGIN
    INSERT INTO deliveries (id, destination_id, event_id, event_rowid, status,
                            created_at, next_attempt_at)
    SELECT 'dlv_' || substr(NEW.id, 5) || printf('%02X', d.rowid), d.id, NEW.id, NEW.rowid,
           'pending', NEW.received_at, NEW.received_at
    FROM destinations d
    WHERE d.status = 'active' AND d.type = 'webhook'
      AND (coalesce(json_array_length(d.config, '$.eventTypes'), 0) = 0
           OR NEW.type IN (SELECT value FROM json_each(d.config, '$.eventTypes')))
      AND (coalesce(json_array_length(d.config, '$.sourceIds'), 0) = 0
           OR NEW.source_id IN (SELECT value FROM json_each(d.config, '$.sourceIds')));
END;
CREATE TRIGGER events_drop_deliveries AFTER DELETE ON events BEGIN
    DELETE FROM deliveries WHERE destination_id IN (SELECT id FROM destinations)
        AND id >= 'dlv_' || substr(OLD.id, 5) AND id < 'dlv_' || substr(OLD.id, 5) || 'G';
END;
CREATE TRIGGER deliveries_drop_attempts AFTER DELETE ON deliveries BEGIN
    DELETE FROM delivery_attempts WHERE delivery_id = OLD.id;
END;
"""

DESTINATION_COLUMNS = "id, name, type, config, status, created_at, disabled_reason"
DELIVERY_COLUMNS = (
    "id, destination_id, event_id, status, attempts, created_at, last_attempt_at, "
    "next_attempt_at, response_status, duration_ms, error, response_body, outcome"
)
ATTEMPT_COLUMNS = "n, at, outcome, response_status, duration_ms, error, response_body"


def destination_row(r: tuple) -> dict[str, Any]:
    row = {
        "id": r[0],
        "name": r[1],
        "type": r[2],
        "config": json.loads(r[3]),
        "status": r[4],
        "created_at": r[5],
    }
    if r[6] is not None:
        row["disabled_reason"] = r[6]
    return row


def list_destinations(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    return [
        destination_row(r)
        for r in conn.execute(f"SELECT {DESTINATION_COLUMNS} FROM destinations ORDER BY id")
    ]


def get_destination(conn: sqlite3.Connection, destination_id: str) -> dict[str, Any] | None:
    r = conn.execute(
        f"SELECT {DESTINATION_COLUMNS} FROM destinations WHERE id = ?", (destination_id,)
    ).fetchone()
    return None if r is None else destination_row(r)


def update_destination(
    conn: sqlite3.Connection, destination_id: str, changes: Mapping[str, Any]
) -> bool:
    """Apply ``changes`` (name, config as JSON text, status); False if no such row."""
    sets = [f"{name} = :{name}" for name in ("name", "config", "status") if name in changes]
    if "status" in changes:
        sets += ["disabled_reason = NULL", "failing_since = NULL"]
    if not sets:
        return get_destination(conn, destination_id) is not None
    params = {name: changes[name] for name in ("name", "config", "status") if name in changes}
    sql = f"UPDATE destinations SET {', '.join(sets)} WHERE id = :id"
    cur = conn.execute(sql, {**params, "id": destination_id})
    return cur.rowcount > 0


def delete_destination(conn: sqlite3.Connection, destination_id: str) -> bool:
    conn.execute("DELETE FROM deliveries WHERE destination_id = ?", (destination_id,))
    return conn.execute("DELETE FROM destinations WHERE id = ?", (destination_id,)).rowcount > 0


def claim(
    conn: sqlite3.Connection,
    now_ms: int,
    lease_ms: int,
    per_destination: int,
    skip: Collection[str],
) -> list[Claim]:
    claims: list[Claim] = []
    destinations = conn.execute(
        "SELECT id, config FROM destinations WHERE status = 'active' AND type = 'webhook'"
    ).fetchall()
    for destination_id, config_text in destinations:
        if destination_id in skip:
            continue
        rows = conn.execute(
            "SELECT d.id, d.event_id, d.round_attempts, e.body FROM deliveries d "
            "JOIN events e ON e.rowid = d.event_rowid AND e.id = d.event_id "
            "WHERE d.destination_id = ? AND d.status = 'pending' AND d.next_attempt_at <= ? "
            "ORDER BY d.next_attempt_at LIMIT ?",
            (destination_id, now_ms, per_destination),
        ).fetchall()
        if not rows:
            continue
        config = json.loads(config_text)
        if not webhooks.is_signing_secret(config.get("signingSecret")):
            # Made before destinations had secrets (or edited by hand): give it one.
            config["signingSecret"] = webhooks.new_signing_secret()
            conn.execute(
                "UPDATE destinations SET config = ? WHERE id = ?",
                (json.dumps(config), destination_id),
            )
        claims += [Claim(r[0], destination_id, r[1], r[3], r[2], config) for r in rows]
    _set_due([(c.destination_id, c.delivery_id) for c in claims], now_ms + lease_ms, conn)
    return claims


DELIVERY_TARGETS = (
    "SELECT id, config FROM destinations WHERE status = 'active' AND type = 'webhook' "
    "AND id IN (SELECT value FROM json_each(?))"
)


def delivery_targets(
    conn: sqlite3.Connection, destination_ids: Collection[str]
) -> dict[str, dict[str, Any]]:
    """The config of each of ``destination_ids`` that is an active webhook, by id (one
    statement: the ids go in as a JSON array)."""
    rows = conn.execute(DELIVERY_TARGETS, (json.dumps(list(destination_ids)),))
    return {destination_id: json.loads(config) for destination_id, config in rows}


def _set_due(ids: Sequence[tuple[str, str]], due_ms: int, conn: sqlite3.Connection) -> None:
    """Make deliveries (destination id, delivery id) due at ``due_ms``."""
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        conn.executemany(
            "UPDATE deliveries SET next_attempt_at = ? WHERE destination_id = ? AND id = ? "
            "AND status = 'pending'",
            [(due_ms, destination_id, delivery_id) for destination_id, delivery_id in chunk],
        )


def release(conn: sqlite3.Connection, ids: Collection[tuple[str, str]], now_ms: int) -> None:
    _set_due(list(ids), now_ms, conn)


def record_attempts(
    conn: sqlite3.Connection, records: Sequence[AttemptRecord], auto_disable_ms: int
) -> None:
    records = sorted(records, key=lambda r: r.at_ms)
    ids = [(r.destination_id, r.delivery_id) for r in records]
    # The attempt being replaced moves to the history first.
    conn.executemany(
        "INSERT OR REPLACE INTO delivery_attempts (delivery_id, n, at, outcome, "
        "response_status, duration_ms, error, response_body) SELECT id, attempts, "
        "last_attempt_at, outcome, response_status, duration_ms, error, response_body "
        "FROM deliveries WHERE destination_id = ? AND id = ? AND attempts > 0",
        ids,
    )
    conn.executemany(
        "UPDATE deliveries SET attempts = attempts + 1, round_attempts = round_attempts + 1, "
        "status = ?, last_attempt_at = ?, next_attempt_at = ?, outcome = ?, "
        "response_status = ?, duration_ms = ?, error = ?, response_body = ? "
        "WHERE destination_id = ? AND id = ?",
        [
            (
                delivery_status(r),
                r.at_ms,
                r.next_attempt_ms if delivery_status(r) == "pending" else None,
                r.outcome,
                r.response_status,
                r.duration_ms,
                r.error,
                r.response_body,
                r.destination_id,
                r.delivery_id,
            )
            for r in records
        ],
    )
    by_destination: dict[str, list[AttemptRecord]] = {}
    for r in records:
        by_destination.setdefault(r.destination_id, []).append(r)
    for destination_id, attempts in by_destination.items():
        _track_destination(conn, destination_id, attempts, auto_disable_ms)


def _track_destination(
    conn: sqlite3.Connection,
    destination_id: str,
    attempts: list[AttemptRecord],
    auto_disable_ms: int,
) -> None:
    """A destination's failing streak after ``attempts`` (oldest first): a success ends
    it, a failure starts one; a 410 or a streak ``auto_disable_ms`` old disables it."""
    reason = next((r.disable_reason for r in attempts if r.disable_reason), None)
    if reason is not None:
        conn.execute(
            "UPDATE destinations SET status = 'inactive', disabled_reason = ? "
            "WHERE id = ? AND status = 'active'",
            (reason, destination_id),
        )
        return
    successes = [i for i, r in enumerate(attempts) if r.outcome == "success"]
    if successes:
        after = attempts[successes[-1] + 1 :]
        if not after:
            conn.execute(
                "UPDATE destinations SET failing_since = NULL "
                "WHERE id = ? AND failing_since IS NOT NULL",
                (destination_id,),
            )
            return
        conn.execute(
            "UPDATE destinations SET failing_since = ? WHERE id = ?",
            (after[0].at_ms, destination_id),
        )
    else:
        conn.execute(
            "UPDATE destinations SET failing_since = coalesce(failing_since, ?) WHERE id = ?",
            (attempts[0].at_ms, destination_id),
        )
    conn.execute(
        "UPDATE destinations SET status = 'inactive', disabled_reason = "
        "'every delivery attempt failed for ' || ? || ' (since ' || "
        "strftime('%Y-%m-%dT%H:%M:%SZ', failing_since / 1000, 'unixepoch') || ')' "
        "WHERE id = ? AND status = 'active' AND failing_since <= ?",
        (period_text(auto_disable_ms), destination_id, attempts[-1].at_ms - auto_disable_ms),
    )


def list_deliveries(
    conn: sqlite3.Connection,
    destination_id: str,
    status: str | None,
    event_id: str | None,
    limit: int,
) -> list[dict[str, Any]]:
    where, params = ["destination_id = ?"], [destination_id]
    if status is not None:
        where.append("status = ?")
        params.append(status)
    if event_id is not None:
        # An event's deliveries are a key range (see the module docstring).
        where += ["id >= ?", "id < ?", "event_id = ?"]
        params += [f"dlv_{event_id[4:]}", f"dlv_{event_id[4:]}G", event_id]
    return [
        delivery_row(r)
        for r in conn.execute(
            f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE {' AND '.join(where)} "
            "ORDER BY id DESC LIMIT ?",
            [*params, limit],
        )
    ]


def get_delivery(
    conn: sqlite3.Connection, destination_id: str, delivery_id: str
) -> dict[str, Any] | None:
    r = conn.execute(
        f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE destination_id = ? AND id = ?",
        (destination_id, delivery_id),
    ).fetchone()
    if r is None:
        return None
    row = delivery_row(r)
    history = [
        dict(zip(ATTEMPT_COLUMNS.split(", "), a, strict=True))
        for a in conn.execute(
            f"SELECT {ATTEMPT_COLUMNS} FROM delivery_attempts WHERE delivery_id = ? "
            "AND n < ? ORDER BY n",
            (delivery_id, row["attempts"]),
        )
    ]
    if row["attempts"]:
        # The last attempt lives on the delivery row itself.
        history.append(
            {
                "n": row["attempts"],
                "at": row["last_attempt_at"],
                "outcome": r[12],
                "response_status": row["response_status"],
                "duration_ms": row["duration_ms"],
                "error": row["error"],
                "response_body": row["response_body"],
            }
        )
    row["history"] = history
    return row


def replay(
    conn: sqlite3.Connection, destination_id: str, status: str, since_ms: int | None, now_ms: int
) -> int:
    sql = (
        "UPDATE deliveries SET status = 'pending', next_attempt_at = ?, round_attempts = 0 "
        "WHERE destination_id = ? AND status = ?"
    )
    params: list[Any] = [now_ms, destination_id, status]
    if since_ms is not None:
        sql += " AND created_at >= ?"
        params.append(since_ms)
    return conn.execute(sql, params).rowcount


class SQLiteDeliveries(DeliveryStore):
    """``DeliveryStore`` for ``SQLiteStore`` (mixed into it): writes go through its
    writer thread, reads through its reader connections. A writer job never raises
    for a missing row (that would fail the whole group commit): it answers None and
    the method raises here."""

    writer: Writer
    _read: Callable[[Callable[[sqlite3.Connection], Any]], Awaitable[Any]]
    read_now: Callable[[Callable[[sqlite3.Connection], Any]], Any]

    async def _write(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        return await self.writer.wait(lambda conn, undo: fn(conn))

    async def get_destination(self, destination_id: str) -> dict[str, Any] | None:
        return await self._read(lambda conn: get_destination(conn, destination_id))

    async def update_destination(
        self, destination_id: str, changes: Mapping[str, Any]
    ) -> dict[str, Any]:
        def run(conn: sqlite3.Connection) -> dict[str, Any] | None:
            if not update_destination(conn, destination_id, changes):
                return None
            return get_destination(conn, destination_id)

        row = await self._write(run)
        if row is None:
            raise DestinationGone(destination_id)
        return row

    async def delete_destination(self, destination_id: str) -> None:
        if not await self._write(lambda conn: delete_destination(conn, destination_id)):
            raise DestinationGone(destination_id)

    async def claim_deliveries(
        self, now_ms: int, lease_ms: int, per_destination: int, skip: Collection[str] = ()
    ) -> list[Claim]:
        return await self._write(lambda conn: claim(conn, now_ms, lease_ms, per_destination, skip))

    async def record_attempts(self, records: Sequence[AttemptRecord], auto_disable_ms: int) -> None:
        await self._write(lambda conn: record_attempts(conn, records, auto_disable_ms))

    async def delivery_targets(self, destination_ids: Collection[str]) -> dict[str, dict[str, Any]]:
        if not destination_ids:
            return {}
        # A fresh read transaction: everything committed before it starts. Run on the
        # caller's thread (the delivery worker's, with a reader connection of its own):
        # a primary-key lookup of a few rows takes tens of microseconds in WAL mode,
        # where the hop to a reader thread cost the worker ~0.1 ms of CPU per attempt
        # (tests/bench/bench_delivery_drain.json).
        return self.read_now(lambda conn: delivery_targets(conn, destination_ids))

    async def release_deliveries(
        self, delivery_ids: Collection[tuple[str, str]], now_ms: int
    ) -> None:
        await self._write(lambda conn: release(conn, delivery_ids, now_ms))

    async def list_deliveries(
        self,
        destination_id: str,
        *,
        status: str | None = None,
        event_id: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        return await self._read(
            lambda conn: list_deliveries(conn, destination_id, status, event_id, limit)
        )

    async def get_delivery(self, destination_id: str, delivery_id: str) -> dict[str, Any] | None:
        return await self._read(lambda conn: get_delivery(conn, destination_id, delivery_id))

    async def replay_deliveries(
        self, destination_id: str, status: str, since_ms: int | None, now_ms: int
    ) -> int:
        return await self._write(
            lambda conn: replay(conn, destination_id, status, since_ms, now_ms)
        )
