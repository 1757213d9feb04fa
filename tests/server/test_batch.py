"""POST /streams/events/batch and messageId dedupe, over real HTTP (uvicorn on loopback)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN_TOKEN
from tests.server.conftest import StoredRows

BATCH = "/streams/events/batch"


@pytest.fixture
def http(threaded_server) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=threaded_server.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    ) as client:
        yield client


def new_source(http: httpx.Client, name: str = "web") -> dict[str, Any]:
    response = http.post("/streams/sources", json={"name": name, "type": "server"})
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture
def src(http) -> dict[str, Any]:
    return new_source(http)


def stored(settings, where: str = "1 = 1") -> list[dict[str, Any]]:
    """The stored events (either store), in the order they were made (ids sort by time)."""
    rows = StoredRows(settings).rows(f"SELECT body FROM events WHERE {where} ORDER BY id")
    return [json.loads(r[0]) for r in rows]


def event(source_id: str, type: str = "page_view", **fields: Any) -> dict[str, Any]:
    return {"sourceId": source_id, "type": type, **fields}


def accepted_ids(answer: dict[str, Any]) -> list[str]:
    return [d["eventId"] for d in answer["data"] if d["status"] == "accepted"]


def test_mixed_items_get_exact_results_in_order(http, src, server_settings):
    batch = [
        event(src["id"], "a", properties={"n": 1}),
        {"sourceId": src["id"]},
        event("src_missing"),
        event(src["id"], "b", timestamp="soon"),
        "not an object",
        event(src["id"], "c", messageId="m-1", userId="u1"),
        event(src["id"], "d", properties={"big": "HUGE"}),
    ]
    # 1e400 parses as Infinity, which JSON cannot carry: refused like NaN.
    body = json.dumps({"batch": batch}).replace('"HUGE"', "1e400")
    response = http.post(BATCH, content=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["accepted"] == 2 and answer["rejected"] == 5
    assert [d["index"] for d in answer["data"]] == list(range(7))
    assert [d["status"] for d in answer["data"]] == [
        "accepted",
        "rejected",
        "rejected",
        "rejected",
        "rejected",
        "accepted",
        "rejected",
    ]
    errors = {d["index"]: d["error"] for d in answer["data"] if d["status"] == "rejected"}
    assert errors[1] == {
        "code": 422,
        "message": "invalid event",
        "details": "type: field required",
    }
    assert errors[2] == {
        "code": 404,
        "message": "source not found",
        "details": "no source src_missing",
    }
    assert errors[3]["code"] == 422 and errors[3]["details"].startswith("timestamp: ")
    assert errors[4]["code"] == 422 and errors[4]["details"].startswith("item: ")
    assert errors[6] == {
        "code": 422,
        "message": "invalid event",
        "details": "numbers must be finite (NaN and Infinity are not JSON)",
    }
    rows = stored(server_settings)
    assert [r["id"] for r in rows] == accepted_ids(answer)
    assert [r["type"] for r in rows] == ["a", "c"]
    assert rows[1]["messageId"] == "m-1" and rows[1]["userId"] == "u1"
    # Stored like a single POST's event: context filled, times set.
    assert rows[0]["context"]["ip"] == "127.0.0.1"
    assert rows[0]["receivedAt"] == rows[0]["timestamp"]


def test_batch_events_read_back_like_single_ones(http, src):
    single = http.post("/streams/events", json=event(src["id"], "x", properties={"k": [1, 2]}))
    assert single.status_code == 202
    batch = http.post(BATCH, json={"batch": [event(src["id"], "x", properties={"k": [1, 2]})]})
    [one, other] = http.get("/streams/events").json()["data"]
    for e in (one, other):
        del e["id"], e["timestamp"], e["receivedAt"]
    assert one == other
    assert batch.json()["data"][0]["eventId"].startswith("evt_")


class TestLimits:
    def test_500_items_accepted_501_refused_whole(self, http, src, server_settings):
        ok = http.post(BATCH, json={"batch": [event(src["id"])] * 500})
        assert ok.status_code == 200
        assert ok.json()["accepted"] == 500
        too_many = http.post(BATCH, json={"batch": [event(src["id"])] * 501})
        assert too_many.status_code == 422
        assert too_many.json()["details"].startswith("batch: ")
        assert len(stored(server_settings)) == 500
        # Too long is refused whole even when an item is bad too.
        bad_first = http.post(BATCH, json={"batch": [{}] + [event(src["id"])] * 500})
        assert bad_first.status_code == 422
        assert bad_first.json()["details"].startswith("batch: ")
        assert len(stored(server_settings)) == 500

    @pytest.mark.parametrize(
        ("body", "status", "details"),
        [
            (b"{nope", 400, None),
            (b"[1, 2]", 422, None),
            (b"{}", 422, "batch: field required"),
            (b'{"batch": []}', 422, None),
            (b'{"batch": {"sourceId": "x"}}', 422, None),
            (b"", 422, "body: field required"),
        ],
    )
    def test_whole_body_refusals(self, http, body, status, details):
        response = http.post(BATCH, content=body)
        assert response.status_code == status, response.text
        assert response.json()["code"] == status
        if details is not None:
            assert response.json()["details"] == details

    def items_of(self, src: dict[str, Any], size: int, n: int) -> list[dict[str, Any]]:
        """``n`` items, each encoded (compact) in exactly ``size`` bytes."""
        base = json.dumps(event(src["id"], properties={"p": ""}), separators=(",", ":"))
        pad = "x" * (size - len(base))
        return [event(src["id"], properties={"p": pad}) for _ in range(n)]

    def test_body_limit_is_512_kib_for_batches_only(self, http, src):
        items = self.items_of(src, 30 * 1024, 17)  # 510 KiB of items
        body = json.dumps({"batch": items}, separators=(",", ":")).encode()
        assert 500 * 1024 < len(body) <= 512 * 1024
        assert http.post(BATCH, content=body).json()["accepted"] == 17
        over = json.dumps({"batch": [*items, *self.items_of(src, 4 * 1024, 1)]}).encode()
        assert len(over) > 512 * 1024
        refused = http.post(BATCH, content=over)
        assert refused.status_code == 413
        assert refused.json()["details"] == f"the limit is {512 * 1024} bytes, got {len(over)}"
        # The single POST keeps its 32 KiB.
        single = json.dumps(self.items_of(src, 33 * 1024, 1)[0]).encode()
        assert http.post("/streams/events", content=single).status_code == 413

    def test_chunked_body_over_512_kib_is_cut_off(self, http, src, server_settings):
        body = json.dumps({"batch": self.items_of(src, 30 * 1024, 20)}).encode()

        def chunks():
            for i in range(0, len(body), 16384):
                yield body[i : i + 16384]

        response = http.post(BATCH, content=chunks())
        assert response.status_code == 413
        assert stored(server_settings) == []

    def test_each_item_at_most_32_kib(self, http, src):
        exact = self.items_of(src, 32 * 1024, 1)[0]
        over = self.items_of(src, 32 * 1024 + 1, 1)[0]
        # Non-ASCII counts by its UTF-8 bytes, not by \\u escapes.
        wide = self.items_of(src, 32 * 1024 - 2, 1)[0]
        wide["properties"]["p"] = wide["properties"]["p"][:-1] + "é"
        answer = http.post(BATCH, json={"batch": [exact, over, wide]}).json()
        assert [d["status"] for d in answer["data"]] == ["accepted", "rejected", "accepted"]
        assert answer["data"][1]["error"] == {
            "code": 413,
            "message": "event too large",
            "details": f"an item is at most 32768 bytes, got {32 * 1024 + 1}",
        }


def test_nan_in_an_item_is_rejected_alone(http, src, server_settings):
    item = json.dumps(event(src["id"], properties={"a": "NAN"})).replace('"NAN"', "NaN")
    body = '{"batch": [' + item + "]}"
    answer = http.post(BATCH, content=body).json()
    assert answer["data"][0]["error"]["code"] == 422
    assert answer["data"][0]["error"]["details"].startswith("numbers must be finite")
    assert stored(server_settings) == []


def test_write_key_items_for_another_source_are_rejected_alone(http, server_settings):
    mine, other = new_source(http, "mine"), new_source(http, "other")
    response = http.post(
        BATCH,
        json={"batch": [event(mine["id"]), event(other["id"]), event(mine["id"])]},
        headers={"Authorization": f"Bearer {mine['writeKey']}"},
    )
    assert response.status_code == 200
    answer = response.json()
    assert [d["status"] for d in answer["data"]] == ["accepted", "rejected", "accepted"]
    assert answer["data"][1]["error"] == {
        "code": 403,
        "message": "forbidden",
        "details": "this write key may only send to its own source",
    }
    assert {r["sourceId"] for r in stored(server_settings)} == {mine["id"]}
    # A write key still may not read.
    assert (
        http.get(
            "/streams/events", headers={"Authorization": f"Bearer {mine['writeKey']}"}
        ).status_code
        == 403
    )


def test_cors_like_the_single_post(http, src):
    preflight = http.options(
        BATCH,
        headers={
            "Origin": "https://shop.example",
            "Access-Control-Request-Method": "POST",
            "Authorization": "",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "*"
    response = http.post(
        BATCH,
        json={"batch": [event(src["id"])]},
        headers={"Origin": "https://shop.example", "Authorization": f"Bearer {src['writeKey']}"},
    )
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == "*"


class TestIdempotency:
    def post(self, http, batch, key):
        return http.post(BATCH, json={"batch": batch}, headers={"Idempotency-Key": key})

    def test_retried_batch_gets_the_first_answer_and_stores_once(self, http, src, server_settings):
        batch = [event(src["id"], "a"), {"bad": 1}, event(src["id"], "b")]
        first = self.post(http, batch, "batch-1")
        again = self.post(http, batch, "batch-1")
        assert first.status_code == again.status_code == 200
        assert first.content == again.content
        assert first.json()["accepted"] == 2
        assert len(stored(server_settings)) == 2
        conflict = self.post(http, [event(src["id"], "other")], "batch-1")
        assert conflict.status_code == 422
        assert "Idempotency-Key" in conflict.json()["message"]
        assert len(stored(server_settings)) == 2

    def test_a_batch_of_only_bad_items_is_replayed_too(self, http):
        first = self.post(http, [{"bad": 1}], "batch-2")
        assert first.json() == self.post(http, [{"bad": 1}], "batch-2").json()
        assert first.json()["rejected"] == 1


class TestMessageId:
    def test_dedupe_across_single_and_batch_and_within_a_batch(self, http, src, server_settings):
        first = http.post("/streams/events", json=event(src["id"], "a", messageId="m1"))
        assert first.status_code == 202
        first_id = first.json()["eventId"]
        again = http.post("/streams/events", json=event(src["id"], "a", messageId="m1"))
        assert again.status_code == 202 and again.json()["eventId"] == first_id
        answer = http.post(
            BATCH,
            json={
                "batch": [
                    event(src["id"], "b", messageId="m1"),
                    event(src["id"], "c", messageId="m2"),
                    event(src["id"], "c", messageId="m2"),
                    event(src["id"], "d"),
                ]
            },
        ).json()
        ids = [d["eventId"] for d in answer["data"]]
        assert answer["accepted"] == 4
        assert ids[0] == first_id
        assert ids[1] == ids[2] != first_id
        rows = stored(server_settings)
        assert [r["id"] for r in rows] == [first_id, ids[1], ids[3]]
        # Per source: another source's m1 is its own event.
        other = new_source(http, "other")
        theirs = http.post("/streams/events", json=event(other["id"], messageId="m1"))
        assert theirs.json()["eventId"] != first_id
        assert len(stored(server_settings)) == 4

    def test_dedupe_with_idempotency_key_too(self, http, src, server_settings):
        first = http.post("/streams/events", json=event(src["id"], messageId="m"))
        keyed = http.post(
            "/streams/events",
            json=event(src["id"], messageId="m"),
            headers={"Idempotency-Key": "k"},
        )
        assert keyed.json()["eventId"] == first.json()["eventId"]
        batch = http.post(
            BATCH,
            json={"batch": [event(src["id"], messageId="m")]},
            headers={"Idempotency-Key": "kb"},
        )
        assert batch.json()["data"][0]["eventId"] == first.json()["eventId"]
        assert len(stored(server_settings)) == 1

    def test_message_id_bounds(self, http, src):
        answer = http.post(
            BATCH,
            json={
                "batch": [
                    event(src["id"], messageId=""),
                    event(src["id"], messageId="x" * 101),
                    event(src["id"], messageId="a\u0000b"),
                ]
            },
        ).json()
        assert [d["error"]["code"] for d in answer["data"]] == [422, 422, 422]
        assert all(d["error"]["details"].startswith("messageId: ") for d in answer["data"])
        ok = http.post("/streams/events", json=event(src["id"], messageId="x" * 100))
        assert ok.status_code == 202

    def test_dedupe_survives_a_restart_and_ends_after_24_hours(self, server_settings):
        from boltic_cli.server.runner import start_in_thread

        def post(url: str, path: str, body: dict) -> httpx.Response:
            return httpx.post(
                url + path, json=body, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
            )

        with start_in_thread(server_settings) as server:
            src = post(server.url, "/streams/sources", {"name": "s", "type": "server"}).json()
            first = post(server.url, BATCH, {"batch": [event(src["id"], messageId="r")]})
            first_id = first.json()["data"][0]["eventId"]
        with start_in_thread(server_settings) as server:
            single = post(server.url, "/streams/events", event(src["id"], messageId="r"))
            assert single.json()["eventId"] == first_id
            assert len(stored(server_settings)) == 1
        # 24 h later the messageId is forgotten: the same id is a new event.
        StoredRows(server_settings).execute(
            "UPDATE message_ids SET created_at = created_at - 86400001"
        )
        with start_in_thread(server_settings) as server:
            later = post(server.url, "/streams/events", event(src["id"], messageId="r"))
            assert later.json()["eventId"] != first_id
            again = post(server.url, "/streams/events", event(src["id"], messageId="r"))
            assert again.json()["eventId"] == later.json()["eventId"]
        assert len(stored(server_settings)) == 2


def test_deleted_source_forgets_its_message_ids(http, src, server_settings):
    http.post("/streams/events", json=event(src["id"], messageId="gone"))
    assert http.delete(f"/streams/sources/{src['id']}").status_code == 204
    assert StoredRows(server_settings).rows("SELECT count(*) FROM message_ids") == [(0,)]


def test_openapi_lists_the_batch_route_as_an_extension(http):
    doc = http.get("/openapi.json").json()
    operation = doc["paths"]["/v1/streams/events/batch"]["post"]
    assert operation["x-boltic-extension"] is True
    assert operation["operationId"] == "sendEventBatch"
    props = doc["components"]["schemas"]["EventInput"]["properties"]
    [text] = [s for s in props["messageId"].get("anyOf", [props["messageId"]]) if "maxLength" in s]
    assert text["maxLength"] == 100
