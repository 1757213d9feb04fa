"""Delivery on PostgreSQL across processes (design.md, "Several server processes"): two
``PostgresStore`` instances on one database stand for two ``boltic server`` processes.
A delivery claimed by one is not claimed by the other until its lease runs out; a
claim skips rows another transaction holds (``FOR UPDATE SKIP LOCKED``) instead of
waiting; and migration 2 gives destinations made at schema 1 their deliveries."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from boltic_cli.server.settings import ServerSettings
from boltic_cli.server.store import open_store
from tests.server.test_delivery_store import new_destination
from tests.server.test_store_contract import NOW_MS, new_source, rec

LEASE_MS = 60_000


def two_stores(url: str, tmp_path: Path, scenario) -> None:
    settings = ServerSettings(tmp_path / "unused.db", "token", database_url=url)

    async def main() -> None:
        a = await open_store(settings)
        b = await open_store(settings)
        for store in (a, b):
            store.clock = lambda: NOW_MS / 1000
        try:
            await scenario(a, b)
        finally:
            await a.close()
            await b.close()

    asyncio.run(main())


def events(n: int) -> list:
    return [rec(f"evt_01{i:024d}") for i in range(n)]


def test_a_claim_is_held_by_one_process_until_its_lease_ends(pg_database, tmp_path):
    async def scenario(a, b) -> None:
        await new_source(a)
        await new_destination(a, "dst_a")
        for r in events(6):
            await b.insert_event(r)
        first = await a.claim_deliveries(NOW_MS, LEASE_MS, 4)
        assert len(first) == 4
        # The other process gets only what the first did not take...
        second = await b.claim_deliveries(NOW_MS, LEASE_MS, 10)
        assert len(second) == 2
        assert not {c.delivery_id for c in first} & {c.delivery_id for c in second}
        # ...and nothing more within the leases...
        assert await b.claim_deliveries(NOW_MS + LEASE_MS - 1, LEASE_MS, 10) == []
        # ...the first process "dies" holding its four: the other gets them after the lease.
        late = await b.claim_deliveries(NOW_MS + LEASE_MS, LEASE_MS, 10)
        assert {c.delivery_id for c in late} == {c.delivery_id for c in first + second}

    two_stores(pg_database, tmp_path, scenario)


def test_simultaneous_claims_split_the_due_deliveries(pg_database, tmp_path):
    async def scenario(a, b) -> None:
        await new_source(a)
        await new_destination(a, "dst_a")
        await a.insert_records(events(200))
        for _ in range(5):
            got = await asyncio.gather(
                *(s.claim_deliveries(NOW_MS, LEASE_MS, 20) for s in (a, b, a, b))
            )
            ids = [c.delivery_id for claims in got for c in claims]
            assert len(ids) == len(set(ids))
        assert len(await a.list_deliveries("dst_a", limit=1000)) == 200

    two_stores(pg_database, tmp_path, scenario)


def test_a_claim_skips_rows_another_transaction_holds(pg_database, tmp_path):
    import asyncpg

    async def scenario(a, b) -> None:
        await new_source(a)
        await new_destination(a, "dst_a")
        for r in events(3):
            await a.insert_event(r)
        held = (await a.list_deliveries("dst_a"))[0]["id"]
        conn = await asyncpg.connect(pg_database)
        try:
            async with conn.transaction():
                await conn.execute(
                    "SELECT 1 FROM deliveries WHERE destination_id = 'dst_a' AND id = $1 "
                    "FOR UPDATE",
                    held,
                )
                claims = await asyncio.wait_for(b.claim_deliveries(NOW_MS, LEASE_MS, 10), 10)
                assert len(claims) == 2 and held not in {c.delivery_id for c in claims}
        finally:
            await conn.close()
        (last,) = await a.claim_deliveries(NOW_MS, LEASE_MS, 10)
        assert last.delivery_id == held

    two_stores(pg_database, tmp_path, scenario)


def test_migration_2_numbers_existing_destinations(pg_database, tmp_path):
    import asyncpg

    from boltic_cli.server.store.postgres.schema import MIGRATIONS

    async def at_version_1() -> None:
        conn = await asyncpg.connect(pg_database)
        try:
            await conn.execute("CREATE TABLE boltic_schema (version integer NOT NULL)")
            await conn.execute(MIGRATIONS[1])
            await conn.execute("INSERT INTO boltic_schema VALUES (1)")
            await conn.execute(
                "INSERT INTO destinations VALUES ('dst_old', 'old', 'webhook', $1, 'active', 0)",
                json.dumps({"url": "http://127.0.0.1:9/"}),
            )
        finally:
            await conn.close()

    asyncio.run(at_version_1())

    async def scenario(a, b) -> None:
        await new_source(a)
        await new_destination(a, "dst_new")
        await a.insert_event(rec("evt_01AAAAAAAAAAAAAAAAAAAAAAAA"))
        (old,) = await a.list_deliveries("dst_old")
        (new,) = await b.list_deliveries("dst_new")
        assert old["id"] == "dlv_01AAAAAAAAAAAAAAAAAAAAAAAA01"
        assert new["id"] == "dlv_01AAAAAAAAAAAAAAAAAAAAAAAA02"
        (destination,) = [d for d in await b.list_destinations() if d["id"] == "dst_old"]
        assert "disabled_reason" not in destination
        # Claimed with a signing secret given on the way (made before secrets).
        claims = await a.claim_deliveries(NOW_MS, LEASE_MS, 10)
        assert {c.destination_id for c in claims} == {"dst_old", "dst_new"}

    two_stores(pg_database, tmp_path, scenario)
