"""The delivery store's promises (docs/internals.md, "Webhook delivery"), through the async
interface only: every store in test_store_contract.STORES runs them (the PostgreSQL
store will, with FOR UPDATE SKIP LOCKED behind the same methods)."""

from __future__ import annotations

import json

import pytest

from boltic_cli.server.store import Store
from boltic_cli.server.store.outbox import AttemptRecord, DestinationGone
from tests.server import test_store_contract as contract
from tests.server.test_store_contract import NOW_MS, new_source, rec

run = contract.run  # the fixture: one freshly opened store per kind in STORES

URL = "http://127.0.0.1:9/hook"
SECRET = "whsec_" + "A" * 43 + "="


async def new_destination(store: Store, did: str = "dst_a", **config) -> None:
    row = {
        "id": did,
        "name": did,
        "type": "webhook",
        "config": json.dumps({"url": URL, "signingSecret": SECRET, **config}),
        "status": "active",
        "created_at": NOW_MS,
    }
    await store.create_destination(row, lambda r: "{}")


def record(claim, outcome="success", at=NOW_MS, status=200, next_ms=None, **kw) -> AttemptRecord:
    return AttemptRecord(
        delivery_id=claim.delivery_id,
        destination_id=claim.destination_id,
        at_ms=at,
        duration_ms=3,
        outcome=outcome,
        response_status=status,
        next_attempt_ms=next_ms,
        **kw,
    )


def test_outbox_rows_with_the_event_and_leased_claims(run):
    async def scenario(store: Store) -> None:
        await new_source(store)
        await new_source(store, "src_b")
        await new_destination(store, "dst_a")
        await new_destination(store, "dst_t", eventTypes=["t"], sourceIds=["src_b"])
        await store.insert_event(rec("evt_01AAAAAAAAAAAAAAAAAAAAAAAA"))
        await store.insert_event(rec("evt_01BBBBBBBBBBBBBBBBBBBBBBBB", "src_b"))
        rows = await store.list_deliveries("dst_a")
        assert [r["event_id"] for r in rows] == [
            "evt_01BBBBBBBBBBBBBBBBBBBBBBBB",
            "evt_01AAAAAAAAAAAAAAAAAAAAAAAA",
        ]
        assert all(r["status"] == "pending" and r["attempts"] == 0 for r in rows)
        assert all(r["id"].startswith("dlv_01") for r in rows)
        # rec() makes type "t": only src_b's event matches dst_t.
        assert [r["event_id"] for r in await store.list_deliveries("dst_t")] == [
            "evt_01BBBBBBBBBBBBBBBBBBBBBBBB"
        ]
        claims = await store.claim_deliveries(NOW_MS, 60_000, 10)
        assert len(claims) == 3
        body = json.loads(claims[0].body)
        assert body["id"] == claims[0].event_id and claims[0].config["url"] == URL
        # Leased: nobody else gets them until the lease ends...
        assert await store.claim_deliveries(NOW_MS + 59_999, 60_000, 10) == []
        # ...then they are due again (the holder died).
        again = await store.claim_deliveries(NOW_MS + 60_000, 60_000, 10)
        assert {c.delivery_id for c in again} == {c.delivery_id for c in claims}
        # per_destination and skip.
        await store.release_deliveries([(c.destination_id, c.delivery_id) for c in again], NOW_MS)
        some = await store.claim_deliveries(NOW_MS, 1000, 1, skip={"dst_t"})
        assert [c.destination_id for c in some] == ["dst_a"]

    run(scenario)


def test_attempts_history_statuses_and_replay(run):
    async def scenario(store: Store) -> None:
        await new_source(store)
        await new_destination(store)
        await store.insert_event(rec("evt_01AAAAAAAAAAAAAAAAAAAAAAAA"))
        (claim,) = await store.claim_deliveries(NOW_MS, 1000, 10)
        await store.record_attempts(
            [record(claim, "transient", status=500, next_ms=NOW_MS + 5000, response_body="x")],
            auto_disable_ms=10**9,
        )
        (row,) = await store.list_deliveries("dst_a", status="pending")
        assert row["attempts"] == 1 and row["next_attempt_at"] == NOW_MS + 5000
        assert await store.claim_deliveries(NOW_MS + 4999, 1000, 10) == []
        (claim,) = await store.claim_deliveries(NOW_MS + 5000, 1000, 10)
        assert claim.round_attempts == 1
        await store.record_attempts(
            [record(claim, "rejected", at=NOW_MS + 5000, status=400)], auto_disable_ms=10**9
        )
        one = await store.get_delivery("dst_a", claim.delivery_id)
        assert one["status"] == "failed" and one["next_attempt_at"] is None
        assert [(a["n"], a["outcome"], a["response_status"]) for a in one["history"]] == [
            (1, "transient", 500),
            (2, "rejected", 400),
        ]
        assert one["history"][0]["response_body"] == "x"
        assert await store.replay_deliveries("dst_a", "failed", NOW_MS + 1, NOW_MS) == 0
        assert await store.replay_deliveries("dst_a", "failed", NOW_MS, NOW_MS + 9000) == 1
        (claim,) = await store.claim_deliveries(NOW_MS + 9000, 1000, 10)
        assert claim.round_attempts == 0
        await store.record_attempts([record(claim, at=NOW_MS + 9000)], auto_disable_ms=10**9)
        one = await store.get_delivery("dst_a", claim.delivery_id)
        assert one["status"] == "succeeded" and one["attempts"] == 3
        assert [a["n"] for a in one["history"]] == [1, 2, 3]
        assert await store.get_delivery("dst_other", claim.delivery_id) is None

    run(scenario)


def test_gone_and_auto_disable_set_the_destination_inactive(run):
    async def scenario(store: Store) -> None:
        await new_source(store)
        await new_destination(store, "dst_a")
        await new_destination(store, "dst_b")
        await store.insert_event(rec("evt_01AAAAAAAAAAAAAAAAAAAAAAAA"))
        claims = {c.destination_id: c for c in await store.claim_deliveries(NOW_MS, 1000, 10)}
        await store.record_attempts(
            [
                record(claims["dst_a"], "gone", status=410, disable_reason="answered 410"),
                record(claims["dst_b"], "transient", status=503, next_ms=NOW_MS + 1),
            ],
            auto_disable_ms=10_000,
        )
        a = await store.get_destination("dst_a")
        assert a["status"] == "inactive" and a["disabled_reason"] == "answered 410"
        assert (await store.get_destination("dst_b"))["status"] == "active"
        # An inactive destination's deliveries wait.
        await store.insert_event(rec("evt_01BBBBBBBBBBBBBBBBBBBBBBBB"))
        assert len(await store.list_deliveries("dst_a")) == 1
        claims = await store.claim_deliveries(NOW_MS + 10_000, 1000, 10, skip={"dst_x"})
        assert {c.destination_id for c in claims} == {"dst_b"} and len(claims) == 2
        await store.record_attempts(
            [
                record(c, "transient", at=NOW_MS + 10_000, status=503, next_ms=NOW_MS + 20_000)
                for c in claims
            ],
            auto_disable_ms=10_000,
        )
        b_row = await store.get_destination("dst_b")
        assert b_row["status"] == "inactive" and "failed for 10s" in b_row["disabled_reason"]
        # Active again: the reason and the streak go.
        b_row = await store.update_destination("dst_b", {"status": "active"})
        assert b_row["status"] == "active" and "disabled_reason" not in b_row

    run(scenario)


def test_deletes_take_deliveries_with_them(run):
    async def scenario(store: Store) -> None:
        await new_source(store, "src_a")
        await new_source(store, "src_b")
        await new_destination(store, "dst_a")
        await new_destination(store, "dst_b")
        await store.insert_event(rec("evt_01AAAAAAAAAAAAAAAAAAAAAAAA", "src_a"))
        await store.insert_event(rec("evt_01BBBBBBBBBBBBBBBBBBBBBBBB", "src_b", rx=NOW_MS - 10))
        await store.delete_source("src_a")
        assert [r["event_id"] for r in await store.list_deliveries("dst_a")] == [
            "evt_01BBBBBBBBBBBBBBBBBBBBBBBB"
        ]
        assert await store.prune_received_before(NOW_MS) == 1
        assert await store.list_deliveries("dst_a") == []
        assert await store.list_deliveries("dst_b") == []
        await store.insert_event(rec("evt_01CCCCCCCCCCCCCCCCCCCCCCCC", "src_b"))
        await store.delete_destination("dst_a")
        assert await store.get_destination("dst_a") is None
        assert await store.claim_deliveries(NOW_MS, 1000, 10) != []
        with pytest.raises(DestinationGone):
            await store.delete_destination("dst_a")
        with pytest.raises(DestinationGone):
            await store.update_destination("dst_a", {"name": "x"})

    run(scenario)
