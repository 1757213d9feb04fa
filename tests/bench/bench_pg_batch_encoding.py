"""Benchmark: three ways to hand a 500-event batch to PostgreSQL, CPU per event.

Run: .venv/bin/python tests/bench/bench_pg_batch_encoding.py [--batches 100] [--rounds 3]

Issue 18's batch ingest target (0.8 of SQLite) is missed by a little, so this measures
whether the way the server sends a batch is the lever. One asyncpg connection on a
throwaway PostgreSQL (``tests/pg.py``), the server's schema; per way, ``--batches``
batches of 500 events (the bench's event body, ~330 bytes), alternating the ways over
``--rounds`` rounds. The client's CPU per event (``time.process_time``, less the cost of
making the records, measured alone as ``records``) and the backend's (``/proc``):

- ``arrays``: the server's statement (``INSERT_EVENTS``: six arrays through unnest);
- ``copy``: binary COPY into a temporary table, then the same insert from it (one
  transaction, 3 round trips);
- ``json``: one JSON text through ``json_to_recordset``.

Writes bench_pg_batch_encoding.json beside this file.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from datetime import UTC, datetime
from importlib.metadata import version
from json.encoder import encode_basestring_ascii as quoted
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from boltic_cli.server.store.base import EventRecord  # noqa: E402
from boltic_cli.server.store.postgres.store import (  # noqa: E402
    INSERT_EVENTS,
    INSERT_EVENTS_JOINED,
    PostgresStore,
    _columns,
    _insert_events,
    _joined,
)
from tests.bench._common import load_averages  # noqa: E402
from tests.pg import start_postgres  # noqa: E402

ITEMS = 500
FROM_STAGING = _insert_events("source_id FROM staging", "staging")
FROM_JSON = _insert_events(
    "(j->>'s') FROM json_array_elements($1::json) j",
    "json_to_recordset($1::json)\n"
    "        AS j(i text, s text, t text, ts bigint, r bigint, b json),\n"
    "        LATERAL (SELECT j.i, j.s, j.t, j.ts, j.r, j.b::text)",
)
BODY = json.dumps(
    {
        "id": "evt_x",
        "sourceId": "src_a",
        "type": "page_view",
        "properties": {"path": "/pricing", "plan": "pro", "n": 1},
        "context": {"ip": "127.0.0.1", "userAgent": "wrk/4.1.0"},
        "timestamp": "2026-11-30T00:00:00.000Z",
        "receivedAt": "2026-11-30T00:00:00.000Z",
    },
    separators=(",", ":"),
)


def backend_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def as_json(records: list[EventRecord]) -> str:
    return (
        "["
        + ",".join(
            f'{{"i":"{r.id}","s":{quoted(r.source_id)},"t":{quoted(r.type)},'
            f'"ts":{r.timestamp},"r":{r.received_at},"b":{r.body}}}'
            for r in records
        )
        + "]"
    )


async def measure(args: argparse.Namespace) -> dict:
    import asyncpg

    pg = start_postgres()
    try:
        url = pg.url(pg.new_database())
        store = PostgresStore(url)
        await store.open()  # the schema
        await store.close()
        conn = await asyncpg.connect(url)
        await conn.execute(
            "INSERT INTO sources (id, name, type, write_key, status, created_at)"
            " VALUES ('src_a', 'a', 'server', 'wk_a', 'active', 0)"
        )
        await conn.execute(
            'CREATE TEMP TABLE staging (id text COLLATE "C", source_id text COLLATE "C",'
            ' type text COLLATE "C", timestamp bigint, received_at bigint, body text)'
            " ON COMMIT DELETE ROWS"
        )
        pid = await conn.fetchval("SELECT pg_backend_pid()")
        made = 0

        def records() -> list[EventRecord]:
            nonlocal made
            out = []
            for _ in range(ITEMS):
                made += 1
                out.append(
                    EventRecord(
                        f"evt_{made:026d}",
                        "src_a",
                        "page_view",
                        1_780_000_000_000 + made,
                        1_780_000_000_000,
                        BODY,
                    )
                )
            return out

        async def send(way: str, batch: list[EventRecord]) -> None:
            if way == "arrays":
                await conn.fetch(INSERT_EVENTS, *_columns(batch))
            elif way == "copy":
                async with conn.transaction():
                    rows = [
                        (r.id, r.source_id, r.type, r.timestamp, r.received_at, r.body)
                        for r in batch
                    ]
                    await conn.copy_records_to_table("staging", records=rows)
                    await conn.fetch(FROM_STAGING)
            elif way == "joined":
                await conn.fetch(INSERT_EVENTS_JOINED, *_joined(batch))
            elif way == "json":
                await conn.fetch(FROM_JSON, as_json(batch))

        ways = ["records", "arrays", "joined", "copy", "json"]
        per_round: dict[str, list[dict]] = {w: [] for w in ways}
        for _ in range(args.rounds):
            for way in ways:
                stored_before = await conn.fetchval("SELECT count(*) FROM events")
                client0, backend0 = time.process_time(), backend_cpu_s(pid)
                for _ in range(args.batches):
                    await send(way, records())
                client1, backend1 = time.process_time(), backend_cpu_s(pid)
                events = args.batches * ITEMS
                stored = await conn.fetchval("SELECT count(*) FROM events") - stored_before
                assert stored == (0 if way == "records" else events), (way, stored)
                per_round[way].append(
                    {
                        "client_us_per_event": (client1 - client0) / events * 1e6,
                        "postgres_us_per_event": (backend1 - backend0) / events * 1e6,
                    }
                )
        await conn.close()
    finally:
        pg.stop()
    base = statistics.median(r["client_us_per_event"] for r in per_round["records"])
    out = {}
    for way in ways[1:]:
        client = statistics.median(r["client_us_per_event"] for r in per_round[way]) - base
        backend = statistics.median(r["postgres_us_per_event"] for r in per_round[way])
        out[way] = {
            "client_us_per_event": round(client, 2),
            "postgres_us_per_event": round(backend, 2),
            "total_us_per_event": round(client + backend, 2),
            "rounds": [{k: round(v, 2) for k, v in r.items()} for r in per_round[way]],
        }
    out["making_records_us_per_event"] = round(base, 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "bench_pg_batch_encoding.json")
    args = parser.parse_args()
    report = {
        "command": "python tests/bench/bench_pg_batch_encoding.py " + " ".join(sys.argv[1:]),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_average_before": load_averages(),
        "events_per_batch": ITEMS,
        "asyncpg": version("asyncpg"),
        "note": "client CPU excludes making the records; medians over the rounds; the clock "
        "ticks are 10 ms, so each round is long enough for 1 % steps",
    }
    report["ways"] = asyncio.run(measure(args))
    report["load_average_after"] = load_averages()
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["ways"], indent=2))


if __name__ == "__main__":
    main()
