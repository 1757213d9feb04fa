"""The store on its own: summaries from counters agree with brute force, retention keeps
the counters right, writes share transactions, the schema is versioned."""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
import threading
import time

import pytest

from boltic_cli.server.store import (
    DAY_MS,
    EventRecord,
    SchemaTooNew,
    SourceGone,
    SourceInfo,
    StoreUnavailable,
)
from boltic_cli.server.store.sqlite import (
    SCHEMA_VERSION,
    SQLiteStore,
    connect,
    insert_events,
    migrate,
)

BASE = 1_780_000_000_000 // DAY_MS * DAY_MS  # a UTC midnight
SOURCES = ["src_a", "src_b", "src_c"]
TYPES = ["view", "buy", "signup", "click", "rare"]


def make_events(rng: random.Random, n: int) -> list[EventRecord]:
    events = []
    for i in range(n):
        ts = BASE + rng.randrange(-DAY_MS, 4 * DAY_MS)
        if i % 50 == 0:
            ts = BASE + rng.randrange(0, 4) * DAY_MS  # exactly on midnight
        source = rng.choice(SOURCES)
        type_ = "rare" if i % 97 == 0 else rng.choice(TYPES[:4])
        eid = f"evt_{i:026d}"
        events.append(
            EventRecord(eid, source, type_, ts, BASE + 5 * DAY_MS + i, json.dumps({"id": eid}))
        )
    return events


@pytest.fixture
def store(tmp_path):
    with SQLiteStore(tmp_path / "s.db") as s:
        yield s


def load(store: SQLiteStore, events: list[EventRecord]) -> None:
    store.run_in_writer(lambda conn: insert_events(conn, events)).result()


def brute(events, source, type_, lo, hi):
    return [
        e
        for e in events
        if (source is None or e.source_id == source)
        and (type_ is None or e.type == type_)
        and (lo is None or e.timestamp >= lo)
        and (hi is None or e.timestamp < hi)
    ]


def test_summaries_match_brute_force(store):
    rng = random.Random(7)
    events = make_events(rng, 3000)
    load(store, events)
    edges = [None, BASE, BASE + DAY_MS, BASE - 1, BASE + 1]
    for _ in range(300):
        lo = rng.choice([*edges, BASE + rng.randrange(-2 * DAY_MS, 5 * DAY_MS)])
        hi = rng.choice([*edges, BASE + rng.randrange(-2 * DAY_MS, 5 * DAY_MS)])
        source = rng.choice([None, *SOURCES, "src_none"])
        type_ = rng.choice([None, *TYPES, "none"])
        limit = rng.choice([1, 7, 100])
        got = asyncio.run(
            store.query_events(
                source_id=source, event_type=type_, from_ms=lo, to_ms=hi, limit=limit
            )
        )
        want = brute(events, source, type_, lo, hi)
        assert got.total == len(want), (source, type_, lo, hi)
        assert got.unique_types == len({e.type for e in want})
        if want:
            assert got.earliest == min(e.timestamp for e in want)
            assert got.latest == max(e.timestamp for e in want)
        else:
            assert got.earliest is None and got.latest is None
        newest = sorted(want, key=lambda e: (e.timestamp, e.id), reverse=True)[:limit]
        assert [json.loads(b)["id"] for b in got.bodies] == [e.id for e in newest]


def test_pruning_keeps_counts_consistent(store):
    rng = random.Random(3)
    events = make_events(rng, 2000)
    for s in SOURCES:
        store.remember_source(SourceInfo(s, f"wk_{s}", "active"))
    load(store, events)
    cutoff = BASE + 5 * DAY_MS + 1500  # the first 1500 were received before this
    while asyncio.run(store.prune_received_before(cutoff)):
        pass
    kept = [e for e in events if e.received_at >= cutoff]
    assert len(kept) == 500
    for source in [None, *SOURCES]:
        got = asyncio.run(store.query_events(source_id=source, limit=1))
        want = brute(kept, source, None, None, None)
        assert got.total == len(want)
        assert got.unique_types == len({e.type for e in want})
    conn = sqlite3.connect(store.path)
    assert conn.execute("SELECT sum(n) FROM received_counts").fetchone() == (500,)
    assert conn.execute("SELECT count(*) FROM event_counts WHERE n <= 0").fetchone() == (0,)


def test_concurrent_writes_share_transactions(tmp_path):
    with SQLiteStore(tmp_path / "g.db", commit_delay=0.02) as store:
        store.remember_source(SourceInfo("src_a", "wk_a", "active"))
        futures = []
        lock = threading.Lock()

        def sender(worker: int) -> None:
            for i in range(25):
                eid = f"evt_{worker:03d}{i:023d}"
                record = EventRecord(eid, "src_a", "t", 0, 0, "{}")
                with lock:
                    futures.append(store.submit(None, record))

        threads = [threading.Thread(target=sender, args=(w,)) for w in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for f in futures:
            assert f.result().startswith("evt_")
        assert asyncio.run(store.query_events(limit=1)).total == 200
        # With 20 ms per commit, 200 writes one at a time would need 200 commits.
        assert store.commits < 100


def test_answer_waits_for_commit(tmp_path):
    with SQLiteStore(tmp_path / "c.db", commit_delay=0.3) as store:
        store.remember_source(SourceInfo("src_a", "wk_a", "active"))
        future = store.submit(None, EventRecord("evt_1", "src_a", "t", 0, 0, "{}"))
        with pytest.raises(TimeoutError):
            future.result(timeout=0.05)
        assert future.result(timeout=5) == "evt_1"
        check = sqlite3.connect(store.path)
        assert check.execute("SELECT count(*) FROM events").fetchone() == (1,)


def test_schema_is_versioned(tmp_path):
    path = tmp_path / "v.db"
    conn = connect(path)
    migrate(conn)
    assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    migrate(conn)  # a second start changes nothing
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    with pytest.raises(SchemaTooNew):
        migrate(conn)


def test_every_query_shape_uses_an_index(store):
    conn = sqlite3.connect(store.path)
    shapes = [
        ("source_id = ? AND type = ? AND timestamp >= ? AND timestamp < ?", 4),
        ("source_id = ? AND timestamp >= ?", 2),
        ("type = ? AND timestamp < ?", 2),
        ("timestamp >= ?", 1),
        ("1", 0),
    ]
    for where, n in shapes:
        plan = " ".join(
            str(row[-1])
            for row in conn.execute(
                f"EXPLAIN QUERY PLAN SELECT body FROM events WHERE {where} "
                "ORDER BY timestamp DESC, id DESC LIMIT 10",
                [0] * n,
            )
        )
        assert "USING INDEX" in plan and "TEMP B-TREE" not in plan, (where, plan)
    debug = " ".join(
        str(r[-1])
        for r in conn.execute(
            "EXPLAIN QUERY PLAN SELECT body FROM events WHERE source_id = ? "
            "ORDER BY received_at DESC, id DESC LIMIT 50",
            ["x"],
        )
    )
    assert "events_by_source_received" in debug and "TEMP B-TREE" not in debug


def test_retention_prunes_old_events(tmp_path):
    from datetime import timedelta

    from fastapi.testclient import TestClient

    from boltic_cli.server.app import create_app
    from boltic_cli.server.settings import ServerSettings
    from tests.conftest import ADMIN_TOKEN

    settings = ServerSettings(tmp_path / "r.db", ADMIN_TOKEN, retention=timedelta(hours=1))
    app = create_app(settings)
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with TestClient(app, base_url="http://t/v1", headers=auth) as api:
        source = api.post("/streams/sources", json={"name": "s", "type": "server"}).json()
        api.post("/streams/events", json={"sourceId": source["id"], "type": "old"})
        runtime = app.state.runtime
        real_clock = runtime.store.clock
        runtime.store.clock = lambda: real_clock() + 1800
        api.post("/streams/events", json={"sourceId": source["id"], "type": "new"})
        runtime.store.clock = lambda: real_clock() + 3700
        asyncio.run(runtime.maintain_once())
        result = api.get("/streams/events").json()
        assert [e["type"] for e in result["data"]] == ["new"]
        assert result["summary"]["totalEvents"] == 1


def test_version_1_database_is_upgraded(tmp_path):
    from boltic_cli.server.store.sqlite import MIGRATIONS

    conn = connect(tmp_path / "old.db")
    conn.executescript(f"BEGIN; {MIGRATIONS[1]}; PRAGMA user_version=1; COMMIT;")
    migrate(conn)
    assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    conn.execute("BEGIN")
    insert_events(conn, [EventRecord("evt_1", "src_a", "t", -1, DAY_MS, "{}")])
    conn.execute("COMMIT")
    # Counted by the database, by UTC day rounded down like Python's // (here: day -1).
    assert conn.execute("SELECT day, n FROM event_counts").fetchall() == [(-1, 1)]
    assert conn.execute("SELECT day, n FROM received_counts").fetchall() == [(1, 1)]


def queued_together(store: SQLiteStore, records: list[EventRecord]) -> list:
    """Insert futures for ``records``, all queued while the writer is held, so they
    are written as one batch."""
    started, release = threading.Event(), threading.Event()

    def hold(conn: sqlite3.Connection) -> None:
        started.set()
        release.wait(5)

    held = store.run_in_writer(hold)
    assert started.wait(5)
    futures = [store.submit(None, r) for r in records]
    release.set()
    held.result(timeout=5)
    return futures


def test_event_batch_is_one_atomic_statement(tmp_path):
    with SQLiteStore(tmp_path / "a.db") as store:
        store.remember_source(SourceInfo("src_a", "wk_a", "active"))
        good = EventRecord("evt_good", "src_a", "t", 0, 0, "{}")
        # A NULL body breaks the NOT NULL constraint halfway through the batch.
        broken = EventRecord("evt_broken", "src_a", "t", 0, 0, None)  # type: ignore[arg-type]
        futures = queued_together(store, [good, broken])
        for f in futures:
            with pytest.raises(StoreUnavailable):
                f.result(timeout=5)
        # Neither was stored, and the counters agree: the statement was rolled back whole.
        check = sqlite3.connect(store.path)
        assert check.execute("SELECT count(*) FROM events").fetchone() == (0,)
        assert check.execute("SELECT count(*) FROM received_counts").fetchone() == (0,)
        # The writer carries on with the next batch.
        assert store.submit(None, good).result(timeout=5) == "evt_good"
        assert check.execute("SELECT count(*) FROM events").fetchone() == (1,)


def test_event_batch_refuses_only_events_of_unknown_sources(tmp_path):
    with SQLiteStore(tmp_path / "u.db") as store:
        store.remember_source(SourceInfo("src_a", "wk_a", "active"))
        records = [
            EventRecord("evt_1", "src_a", "t", 0, 0, "{}"),
            EventRecord("evt_2", "src_gone", "t", 0, 0, "{}"),
            EventRecord("evt_3", "src_a", "t", 0, 0, "{}"),
        ]
        commits_before = store.commits
        first, gone, third = queued_together(store, records)
        assert first.result(timeout=5) == "evt_1"
        assert third.result(timeout=5) == "evt_3"
        with pytest.raises(SourceGone):
            gone.result(timeout=5)
        assert store.commits == commits_before + 2  # the held job's, then the batch's
        assert asyncio.run(store.query_events()).bodies == ["{}", "{}"]


def test_open_store_picks_sqlite_by_path_and_postgresql_by_url(tmp_path, pg_database):
    from boltic_cli.server.settings import ServerSettings
    from boltic_cli.server.store import Store, open_store
    from boltic_cli.server.store.postgres import PostgresStore

    async def roundtrip(settings: ServerSettings, kind: type) -> list[dict]:
        store = await open_store(settings)
        try:
            assert isinstance(store, Store) and isinstance(store, kind)
            return await store.list_sources()
        finally:
            await store.close()

    assert asyncio.run(roundtrip(ServerSettings(tmp_path / "f.db", "t"), SQLiteStore)) == []
    settings = ServerSettings(tmp_path / "unused.db", "t", database_url=pg_database)
    assert asyncio.run(roundtrip(settings, PostgresStore)) == []
    assert not (tmp_path / "unused.db").exists()


@pytest.mark.parametrize("message_ids", [False, True])
def test_a_batch_is_one_commit_and_refuses_unknown_sources_alone(tmp_path, message_ids):
    with SQLiteStore(tmp_path / "b.db") as store:
        store.remember_source(SourceInfo("src_a", "wk_a", "active"))
        records = [
            EventRecord(
                f"evt_{i:03d}",
                "src_gone" if i == 7 else "src_a",
                "t",
                0,
                0,
                "{}",
                message_id=f"m{i % 250}" if message_ids else None,
            )
            for i in range(500)
        ]

        def render(outcomes: list) -> str:
            return json.dumps([o if isinstance(o, str) else type(o).__name__ for o in outcomes])

        before = store.commits
        answer = asyncio.run(store.insert_batch(records, render))
        assert store.commits == before + 1  # one transaction for the whole batch
        outcomes = json.loads(answer.body)
        assert answer.status == 200 and outcomes[7] == "SourceGone"
        if message_ids:  # the second half repeats the first half's messageIds
            assert outcomes[250:] == [
                "evt_257" if i == 257 else f"evt_{i - 250:03d}" for i in range(250, 500)
            ]
        else:
            assert outcomes[:3] == ["evt_000", "evt_001", "evt_002"]
        check = sqlite3.connect(store.path)
        stored = 250 if message_ids else 499
        assert check.execute("SELECT count(*) FROM events").fetchone() == (stored,)


def test_batches_beyond_one_statement_go_to_the_next_group_whole(tmp_path):
    from boltic_cli.server.store.sqlite.writer import MAX_GROUP_ROWS

    with SQLiteStore(tmp_path / "g.db") as store:
        store.remember_source(SourceInfo("src_a", "wk_a", "active"))
        started, release = threading.Event(), threading.Event()
        held = store.run_in_writer(lambda conn: (started.set(), release.wait(5)))
        assert started.wait(5)
        batches = [
            [EventRecord(f"evt_{b:02d}{i:03d}", "src_a", "t", 0, 0, "{}") for i in range(500)]
            for b in range(12)
        ]
        futures = [store.writer.submit(None, records=batch) for batch in batches]
        commits = store.commits
        release.set()
        held.result(timeout=5)
        for future, batch in zip(futures, batches, strict=True):
            assert future.result(timeout=10) == [r.id for r in batch]
        groups = -(-12 * 500 // (MAX_GROUP_ROWS // 500 * 500))
        assert store.commits == commits + 1 + groups  # the held job's, then the groups'
        check = sqlite3.connect(store.path)
        assert check.execute("SELECT count(*) FROM events").fetchone() == (6000,)


def test_close_waits_for_a_read_in_progress_then_refuses_reads(store):
    """Closing a reader connection under a running query crashed the process (a
    segfault in a CI run: an app stopped while its executor still ran a query)."""
    started = threading.Event()
    answers: list[object] = []

    def slow_read(conn: sqlite3.Connection) -> int:
        started.set()
        time.sleep(0.3)
        return conn.execute("SELECT count(*) FROM events").fetchone()[0]

    def read() -> None:
        try:
            answers.append(store.read_now(slow_read))
        except Exception as e:  # the answer is what is checked
            answers.append(e)

    reader = threading.Thread(target=read)
    reader.start()
    assert started.wait(5)
    store.close_now()
    reader.join(5)
    assert answers == [0]
    with pytest.raises(StoreUnavailable):
        store.read_now(lambda conn: conn.execute("SELECT 1").fetchone())
