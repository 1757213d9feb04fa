"""Stream sources over HTTP: create, list, get, delete (cascade), auth, errors."""

from __future__ import annotations

import re

from tests.conftest import ADMIN_TOKEN

ID = re.compile(r"^src_[0-9A-HJKMNP-TV-Z]{26}$")
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def test_create_returns_the_source(api):
    response = api.post("/streams/sources", json={"name": "web", "type": "javascript"})
    assert response.status_code == 201
    body = response.json()
    assert ID.match(body["id"])
    assert body["name"] == "web" and body["type"] == "javascript"
    assert body["status"] == "active"
    assert body["eventsToday"] == 0
    assert re.match(r"^wk_[A-Za-z0-9_-]{32,}$", body["writeKey"])
    assert TIME.match(body["createdAt"])


def test_ids_sort_by_creation_and_list_keeps_that_order(api, make_source):
    made = [make_source(f"s{i}") for i in range(5)]
    assert [s["id"] for s in made] == sorted(s["id"] for s in made)
    listed = api.get("/streams/sources")
    assert listed.status_code == 200
    assert [s["id"] for s in listed.json()["data"]] == [s["id"] for s in made]


def test_get_and_unknown_id(api, source):
    got = api.get(f"/streams/sources/{source['id']}")
    assert got.status_code == 200
    assert got.json() == source
    missing = api.get("/streams/sources/src_nope")
    assert missing.status_code == 404
    assert missing.json()["code"] == 404
    assert "src_nope" in missing.json()["details"]


def test_validation_names_each_field(api):
    response = api.post("/streams/sources", json={"type": "fax"})
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == 422
    assert "name: field required" in body["details"]
    assert "type: must be one of javascript, server, mobile, webhook (not 'fax')" in body["details"]
    assert "Input should" not in body["details"] and "Value error" not in body["details"]


def test_malformed_json_is_400(api):
    response = api.post(
        "/streams/sources", content=b'{"name": ', headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert set(response.json()) == {"code", "message", "details"}


def test_empty_body_is_422(api):
    response = api.post("/streams/sources", content=b"")
    assert response.status_code == 422
    assert response.json()["details"] == "body: field required"


def test_json_body_without_json_content_type_is_accepted(api):
    # curl -d sends application/x-www-form-urlencoded; the body is still JSON.
    response = api.post(
        "/streams/sources",
        content=b'{"name":"curl","type":"server"}',
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 201


def test_events_today_counts_todays_events(api, source, send):
    for _ in range(3):
        assert send(source["id"]).status_code == 202
    # An old timestamp still counts: eventsToday is about when it arrived.
    assert send(source["id"], timestamp="2001-01-01T00:00:00Z").status_code == 202
    assert api.get(f"/streams/sources/{source['id']}").json()["eventsToday"] == 4
    assert api.get("/streams/sources").json()["data"][0]["eventsToday"] == 4


def test_delete_cascades_and_kills_the_write_key(api, make_source, send):
    doomed, kept = make_source("doomed"), make_source("kept")
    assert send(doomed["id"]).status_code == 202
    assert send(kept["id"]).status_code == 202
    assert send(doomed["id"], token=doomed["writeKey"]).status_code == 202

    assert api.delete(f"/streams/sources/{doomed['id']}").status_code == 204

    assert api.get(f"/streams/sources/{doomed['id']}").status_code == 404
    after = send(doomed["id"], token=doomed["writeKey"])
    assert after.status_code == 401
    assert after.headers["WWW-Authenticate"] == "Bearer"
    assert send(doomed["id"]).status_code == 404
    remaining = api.get("/streams/events").json()
    assert [e["sourceId"] for e in remaining["data"]] == [kept["id"]]
    assert remaining["summary"]["totalEvents"] == 1
    assert api.get("/streams/events", params={"sourceId": doomed["id"]}).json()["summary"] == {
        "totalEvents": 0,
        "uniqueEventTypes": 0,
    }
    assert api.delete(f"/streams/sources/{doomed['id']}").status_code == 404


def test_missing_and_unknown_tokens_are_401(api):
    for headers in (
        {"Authorization": ""},
        {"Authorization": "Bearer nope"},
        {"Authorization": f"Basic {ADMIN_TOKEN}"},
    ):
        response = api.get("/streams/sources", headers=headers)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert response.json()["code"] == 401
        assert ADMIN_TOKEN not in response.text


def test_write_key_may_not_manage_sources(api, source):
    key = {"Authorization": f"Bearer {source['writeKey']}"}
    assert api.get("/streams/sources", headers=key).status_code == 403
    assert api.delete(f"/streams/sources/{source['id']}", headers=key).status_code == 403
    assert api.get("/streams/events", headers=key).status_code == 403
    assert api.get(f"/streams/sources/{source['id']}/debug", headers=key).status_code == 403
    assert api.get("/streams/sources").status_code == 200


def test_unknown_route_and_wrong_method(api):
    missing = api.get("/streams/nothing")
    assert missing.status_code == 404
    assert missing.json()["code"] == 404
    wrong = api.put("/streams/sources")
    assert wrong.status_code == 405
    assert wrong.json() == {
        "code": 405,
        "message": "method not allowed",
        "details": "PUT is not allowed on /v1/streams/sources",
    }
    outside = api.get("http://testserver/elsewhere")
    assert outside.status_code == 404 and outside.json()["code"] == 404


def test_health_needs_no_token(api):
    response = api.get("/health", headers={"Authorization": ""})
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_idempotent_create(api):
    headers = {"Idempotency-Key": "create-1"}
    first = api.post("/streams/sources", json={"name": "a", "type": "server"}, headers=headers)
    again = api.post("/streams/sources", json={"name": "a", "type": "server"}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert len(api.get("/streams/sources").json()["data"]) == 1
    other = api.post("/streams/sources", json={"name": "b", "type": "server"}, headers=headers)
    assert other.status_code == 422
    assert len(api.get("/streams/sources").json()["data"]) == 1
