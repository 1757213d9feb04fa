"""Sending and querying events over HTTP."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import ADMIN_TOKEN


def query(api, **params):
    response = api.get("/streams/events", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def test_send_is_committed_and_queryable(api, source, send, server_settings):
    response = send(
        source["id"],
        "signup",
        properties={"plan": "pro", "seats": 3, "nested": {"a": [1, None]}},
        userId="u1",
        anonymousId="a1",
        context={"locale": "de-DE", "page": {"url": "https://x.test/"}, "extra": 1},
    )
    assert response.status_code == 202
    accepted = response.json()
    assert accepted["status"] == "accepted"
    assert re.match(r"^evt_[0-9A-Z]{26}$", accepted["eventId"])
    # Committed: visible to a fresh connection on the file, not only to the server.
    with sqlite3.connect(server_settings.db_path) as db:
        assert db.execute(
            "SELECT count(*) FROM events WHERE id = ?", (accepted["eventId"],)
        ).fetchone() == (1,)
    [event] = query(api)["data"]
    assert event["id"] == accepted["eventId"]
    assert event["type"] == "signup"
    assert event["properties"] == {"plan": "pro", "seats": 3, "nested": {"a": [1, None]}}
    assert event["userId"] == "u1" and event["anonymousId"] == "a1"
    assert event["context"]["locale"] == "de-DE"
    assert event["context"]["page"] == {"url": "https://x.test/"}
    assert event["context"]["extra"] == 1
    assert event["timestamp"] == event["receivedAt"]
    assert None not in event.values()


def test_context_ip_and_user_agent_filled_when_absent(api, source, send):
    send(source["id"])
    api.post(
        "/streams/events",
        json={
            "sourceId": source["id"],
            "type": "x",
            "context": {"ip": "10.1.2.3", "userAgent": "mine"},
        },
        headers={"User-Agent": "theirs"},
    )
    filled, kept = sorted(query(api)["data"], key=lambda e: e["type"] != "page_view")
    assert filled["context"]["ip"] == "testclient"  # the peer address TestClient reports
    assert filled["context"]["userAgent"] == "testclient"
    assert kept["context"] == {"ip": "10.1.2.3", "userAgent": "mine"}


def test_timestamp_with_offset_is_normalised(api, source, send):
    send(source["id"], timestamp="2026-03-01T12:00:00.5+02:00")
    [event] = query(api)["data"]
    assert event["timestamp"] == "2026-03-01T10:00:00.500Z"
    assert event["receivedAt"] != event["timestamp"]


def test_validation_errors(api, source):
    response = api.post("/streams/events", json={"properties": []})
    assert response.status_code == 422
    details = response.json()["details"]
    for field in ("sourceId: field required", "type: field required", "properties: "):
        assert field in details
    bad_time = api.post(
        "/streams/events", json={"sourceId": source["id"], "type": "x", "timestamp": "soon"}
    )
    assert bad_time.status_code == 422
    assert bad_time.json()["details"].startswith("timestamp: ")
    not_object = api.post("/streams/events", json=[1, 2])
    assert not_object.status_code == 422
    assert api.post("/streams/events", content=b"{nope").status_code == 400


def test_unknown_source_is_404(send):
    response = send("src_missing")
    assert response.status_code == 404
    assert response.json()["details"] == "no source src_missing"


def test_text_plain_body_is_accepted(api, source):
    # navigator.sendBeacon and simple CORS requests send text/plain.
    response = api.post(
        "/streams/events",
        content=f'{{"sourceId":"{source["id"]}","type":"beacon"}}'.encode(),
        headers={"Content-Type": "text/plain;charset=UTF-8"},
    )
    assert response.status_code == 202


def test_write_key_sends_only_to_its_own_source(make_source, send):
    mine, other = make_source("mine"), make_source("other")
    assert send(mine["id"], token=mine["writeKey"]).status_code == 202
    forbidden = send(other["id"], token=mine["writeKey"])
    assert forbidden.status_code == 403
    assert forbidden.json()["code"] == 403
    unknown = send(mine["id"], token="wk_" + "x" * 43)
    assert unknown.status_code == 401
    assert unknown.headers["WWW-Authenticate"] == "Bearer"


def test_inactive_source_refuses_events(api, source, send, server_settings, store):
    from boltic_cli.server.store import SourceInfo

    with sqlite3.connect(server_settings.db_path) as db:
        db.execute("UPDATE sources SET status = 'inactive'")
    # No API deactivates a source; reflect the row change in the store's cache.
    store.remember_source(SourceInfo(source["id"], source["writeKey"], "inactive"))
    response = send(source["id"])
    assert response.status_code == 403


class TestIdempotency:
    def post(self, api, body, key, token=ADMIN_TOKEN):
        return api.post(
            "/streams/events",
            json=body,
            headers={"Idempotency-Key": key, "Authorization": f"Bearer {token}"},
        )

    def test_retry_returns_first_answer_and_stores_once(self, api, source):
        body = {"sourceId": source["id"], "type": "buy"}
        first = self.post(api, body, "k1")
        second = self.post(api, body, "k1")
        assert first.status_code == second.status_code == 202
        assert first.json() == second.json()
        assert query(api)["summary"]["totalEvents"] == 1

    def test_same_key_other_body_is_422(self, api, source):
        assert self.post(api, {"sourceId": source["id"], "type": "a"}, "k2").status_code == 202
        conflict = self.post(api, {"sourceId": source["id"], "type": "b"}, "k2")
        assert conflict.status_code == 422
        assert "Idempotency-Key" in conflict.json()["message"]
        assert query(api)["summary"]["totalEvents"] == 1

    def test_keys_are_scoped_to_the_token(self, api, source):
        body = {"sourceId": source["id"], "type": "a"}
        by_admin = self.post(api, body, "shared")
        by_key = self.post(api, body, "shared", token=source["writeKey"])
        assert by_admin.status_code == by_key.status_code == 202
        assert by_admin.json()["eventId"] != by_key.json()["eventId"]
        assert query(api)["summary"]["totalEvents"] == 2

    def test_expired_keys_are_forgotten(self, api, source, store):
        body = {"sourceId": source["id"], "type": "a"}
        self.post(api, body, "old")
        real_clock = store.clock
        store.clock = lambda: real_clock() + 25 * 3600
        try:
            assert asyncio.run(store.expire_idempotency_keys()) == 1
            again = self.post(api, body, "old")
        finally:
            store.clock = real_clock
        assert again.status_code == 202
        assert query(api)["summary"]["totalEvents"] == 2


class TestQuery:
    @pytest.fixture
    def events(self, make_source, send):
        a, b = make_source("a"), make_source("b")
        base = datetime(2026, 5, 10, 12, tzinfo=UTC)
        sent = []
        for i, (src, type_, minutes) in enumerate(
            [
                (a, "view", 0),
                (a, "buy", 10),
                (b, "view", 20),
                (a, "view", 30),
                (b, "signup", 40),
                (a, "view", 40),
            ]
        ):
            ts = (base + timedelta(minutes=minutes)).isoformat()
            response = send(src["id"], type_, timestamp=ts, properties={"i": i})
            assert response.status_code == 202
            sent.append(response.json()["eventId"])
        return {"a": a["id"], "b": b["id"], "ids": sent, "base": base}

    def test_newest_first_ties_by_id(self, api, events):
        data = query(api)["data"]
        assert [e["properties"]["i"] for e in data] == [5, 4, 3, 2, 1, 0]
        # The two events at +40 min tie on timestamp; the larger id comes first.
        assert data[0]["id"] > data[1]["id"]

    def test_summary_counts_all_matches_not_the_page(self, api, events):
        result = query(api, limit=2)
        assert len(result["data"]) == 2
        assert result["summary"] == {
            "totalEvents": 6,
            "uniqueEventTypes": 3,
            "timeRange": {"from": "2026-05-10T12:00:00.000Z", "to": "2026-05-10T12:40:00.000Z"},
        }

    def test_filters(self, api, events):
        by_source = query(api, sourceId=events["a"])
        assert by_source["summary"]["totalEvents"] == 4
        assert by_source["summary"]["uniqueEventTypes"] == 2
        by_type = query(api, eventType="view")
        assert by_type["summary"]["totalEvents"] == 4
        assert {e["type"] for e in by_type["data"]} == {"view"}
        both = query(api, sourceId=events["b"], eventType="view")
        assert [e["properties"]["i"] for e in both["data"]] == [2]

    def test_from_inclusive_to_exclusive(self, api, events):
        result = query(api, **{"from": "2026-05-10T12:10:00Z", "to": "2026-05-10T12:40:00Z"})
        assert [e["properties"]["i"] for e in result["data"]] == [3, 2, 1]
        assert result["summary"]["timeRange"] == {
            "from": "2026-05-10T12:10:00.000Z",
            "to": "2026-05-10T12:30:00.000Z",
        }
        offset = query(api, **{"from": "2026-05-10T14:10:00+02:00"})
        assert offset["summary"]["totalEvents"] == 5

    def test_no_match_omits_time_range(self, api, events):
        result = query(api, eventType="nothing")
        assert result == {"data": [], "summary": {"totalEvents": 0, "uniqueEventTypes": 0}}
        empty_window = query(api, **{"from": "2026-05-10T13:00:00Z", "to": "2026-05-10T12:00:00Z"})
        assert empty_window["summary"]["totalEvents"] == 0

    @pytest.mark.parametrize("limit", ["0", "1001", "-1", "ten"])
    def test_limit_out_of_range_is_422(self, api, limit):
        response = api.get("/streams/events", params={"limit": limit})
        assert response.status_code == 422
        assert response.json()["details"].startswith("limit: ")

    def test_limit_bounds_and_default(self, api, source, store):
        from boltic_cli.server.store import EventRecord
        from boltic_cli.server.store.sqlite import insert_events

        records = [
            EventRecord(
                f"evt_{i:026d}",
                source["id"],
                "bulk",
                1_700_000_000_000 + i,
                1_700_000_000_000 + i,
                f'{{"id":"evt_{i:026d}"}}',
            )
            for i in range(1001)
        ]
        store.run_in_writer(lambda conn: insert_events(conn, records)).result()
        assert len(query(api)["data"]) == 100
        assert len(query(api, limit=1)["data"]) == 1
        full = query(api, limit=1000)
        assert len(full["data"]) == 1000
        assert full["summary"]["totalEvents"] == 1001

    def test_bad_time_is_422(self, api):
        response = api.get("/streams/events", params={"from": "yesterday-ish"})
        assert response.status_code == 422
        assert response.json()["details"].startswith("from: ")


class TestDebug:
    def test_newest_received_first_with_connection_facts(self, api, source, send):
        ids = [
            send(source["id"], timestamp="2020-01-01T00:00:00Z").json()["eventId"] for _ in range(3)
        ]
        response = api.get(f"/streams/sources/{source['id']}/debug")
        assert response.status_code == 200
        body = response.json()
        assert [e["id"] for e in body["data"]] == ids[::-1]
        assert body["connected"] is True
        assert body["lastEventAt"] == body["data"][0]["receivedAt"]

    def test_quiet_source(self, api, source):
        body = api.get(f"/streams/sources/{source['id']}/debug").json()
        assert body == {"data": [], "connected": False}

    def test_not_connected_after_five_minutes(self, api, source, send, store):
        send(source["id"])
        real_clock = store.clock
        store.clock = lambda: real_clock() + 301
        try:
            body = api.get(f"/streams/sources/{source['id']}/debug").json()
        finally:
            store.clock = real_clock
        assert body["connected"] is False
        assert "lastEventAt" in body

    def test_limit(self, api, source, send):
        for _ in range(5):
            send(source["id"])
        url = f"/streams/sources/{source['id']}/debug"
        assert len(api.get(url).json()["data"]) == 5
        assert len(api.get(url, params={"limit": 2}).json()["data"]) == 2
        assert api.get(url, params={"limit": 500}).status_code == 200
        for bad in ("0", "501"):
            assert api.get(url, params={"limit": bad}).status_code == 422

    def test_unknown_source(self, api):
        assert api.get("/streams/sources/src_nope/debug").status_code == 404


class TestLimits:
    def big_event(self, source_id, size):
        padding = "x" * size
        return f'{{"sourceId":"{source_id}","type":"big","properties":{{"p":"{padding}"}}}}'

    def test_over_32_kib_with_content_length(self, api, source):
        response = api.post("/streams/events", content=self.big_event(source["id"], 33 * 1024))
        assert response.status_code == 413
        assert response.json()["code"] == 413
        assert query(api)["summary"]["totalEvents"] == 0

    def test_over_32_kib_chunked(self, api, source):
        body = self.big_event(source["id"], 40 * 1024).encode()

        def chunks():
            for i in range(0, len(body), 4096):
                yield body[i : i + 4096]

        response = api.post("/streams/events", content=chunks())
        assert response.status_code == 413
        assert query(api)["summary"]["totalEvents"] == 0

    def test_just_under_the_limit_is_accepted(self, api, source):
        body = self.big_event(source["id"], 0)
        body = self.big_event(source["id"], 32 * 1024 - len(body))
        assert len(body) == 32 * 1024
        assert api.post("/streams/events", content=body).status_code == 202


def test_cors_preflight(api):
    response = api.options(
        "/streams/events",
        headers={
            "Origin": "https://shop.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
            "Authorization": "",
        },
    )
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert "authorization" in response.headers["Access-Control-Allow-Headers"].lower()


def test_cross_origin_send_can_read_the_answer(api, source):
    response = api.post(
        "/streams/events",
        json={"sourceId": source["id"], "type": "x"},
        headers={"Origin": "https://shop.example", "Authorization": f"Bearer {source['writeKey']}"},
    )
    assert response.status_code == 202
    assert response.headers["Access-Control-Allow-Origin"] == "*"


def test_store_failure_is_503_and_nothing_is_acknowledged(api, source, send, server_settings):
    with sqlite3.connect(server_settings.db_path) as db:
        db.execute(
            "CREATE TRIGGER fail BEFORE INSERT ON events "
            "BEGIN SELECT RAISE(ABORT, 'simulated disk failure'); END"
        )
    response = send(source["id"])
    assert response.status_code == 503
    assert response.json()["code"] == 503
    assert response.headers["Retry-After"] == "1"
    with sqlite3.connect(server_settings.db_path) as db:
        db.execute("DROP TRIGGER fail")
    assert query(api)["summary"]["totalEvents"] == 0
    assert send(source["id"]).status_code == 202
    assert query(api)["summary"]["totalEvents"] == 1


def test_idempotency_compares_the_parsed_request_not_its_bytes(api):
    """Issue 11: the same JSON with other white space or key order under one key is the
    same request (the first answer again, nothing stored twice); another value is 422."""
    source = api.post("/streams/sources", json={"name": "idem", "type": "server"}).json()
    headers = {"Idempotency-Key": "ws-1", "Content-Type": "application/json"}
    compact = f'{{"sourceId":"{source["id"]}","type":"t","properties":{{"a":1,"b":[1,2]}}}}'
    spaced = (
        '{ "type" : "t",\n  "properties": {"b": [1, 2], "a": 1},'
        f'  "sourceId": "{source["id"]}" }}'
    )
    first = api.post("/streams/events", content=compact, headers=headers)
    again = api.post("/streams/events", content=spaced, headers=headers)
    assert first.status_code == again.status_code == 202, again.text
    assert again.json() == first.json()
    other = api.post("/streams/events", content=compact.replace('"a":1', '"a":2'), headers=headers)
    assert other.status_code == 422
    stored = api.get("/streams/events", params={"sourceId": source["id"]}).json()
    assert stored["summary"]["totalEvents"] == 1
