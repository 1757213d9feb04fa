"""A write key is answered as its source is now, whichever process saw it before.

The PostgreSQL store's gate may pass a write key from this process's earlier view of
an active source (Store.source_for_key, ``recheck_on_insert``); the inserting
statement checks the source again and the route then answers as the gate would have.
Here the source is deleted or paused through another app on the same database (on
SQLite, one process per file: through the same app), after the key was used, and
every kind of send must be refused as a fresh lookup refuses it: 401 for a deleted
source's key (with WWW-Authenticate), 403 for a paused source, nothing stored and no
earlier answer replayed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import ADMIN_TOKEN


@pytest.fixture
def elsewhere(api, server_settings, store_kind) -> Iterator[Any]:
    """An admin client of another app on the same database (PostgreSQL), or ``api``."""
    if store_kind == "sqlite":
        yield api
        return
    from fastapi.testclient import TestClient

    from boltic_cli.server.app import create_app

    other = dataclasses.replace(server_settings, delivery=False)
    with TestClient(
        create_app(other),
        base_url="http://testserver/v1",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    ) as client:
        yield client


def _post(api, path: str, body: dict, key: str, **headers: str):
    return api.post(path, json=body, headers={"Authorization": f"Bearer {key}", **headers})


def _send(api, source: dict, **fields: Any):
    body = {"sourceId": source["id"], "type": "signup", **fields}
    return _post(api, "/streams/events", body, source["writeKey"])


def _batch(api, source: dict, n: int = 3, **fields: Any):
    body = {"batch": [{"sourceId": source["id"], "type": "signup", **fields} for _ in range(n)]}
    return _post(api, "/streams/events/batch", body, source["writeKey"])


def _stored(db, source: dict) -> int:
    return db.rows("SELECT count(*) FROM events WHERE source_id = ?", (source["id"],))[0][0]


@pytest.mark.parametrize("first", ["single", "batch"])
def test_a_used_key_is_refused_401_once_its_source_is_deleted_elsewhere(
    api, elsewhere, make_source, db, first
):
    """``first`` is the send that meets the stale view (a refusal refreshes it)."""
    source = make_source()
    assert _send(api, source).status_code == 202  # this process has seen the key
    assert _batch(api, source).status_code == 200
    assert elsewhere.delete(f"/streams/sources/{source['id']}").status_code == 204

    sends = [_send, _batch] if first == "single" else [_batch, _send]
    for answer in [send(api, source) for send in sends] + [_send(api, source)]:
        assert answer.status_code == 401, answer.text
        assert answer.headers["www-authenticate"] == "Bearer"
        assert answer.json()["details"] == "unknown token"
    assert _stored(db, source) == 0


@pytest.mark.parametrize("first", ["single", "batch"])
def test_a_used_key_is_refused_403_while_its_source_is_paused_elsewhere(
    api, elsewhere, make_source, db, first
):
    source = make_source()
    assert _send(api, source).status_code == 202
    paused = elsewhere.patch(f"/streams/sources/{source['id']}", json={"status": "inactive"})
    assert paused.status_code == 200, paused.text

    if first == "single":
        single, batch = _send(api, source), _batch(api, source)
    else:
        batch, single = _batch(api, source), _send(api, source)
    assert single.status_code == 403, single.text
    assert single.json()["details"] == f"source {source['id']} is inactive"
    assert batch.status_code == 200 and batch.json()["rejected"] == 3, batch.text
    assert {
        (d["status"], d["error"]["code"], d["error"]["details"]) for d in batch.json()["data"]
    } == {("rejected", 403, f"source {source['id']} is inactive")}
    assert _stored(db, source) == 1

    assert elsewhere.patch(f"/streams/sources/{source['id']}", json={"status": "active"}).is_success
    assert _send(api, source).status_code == 202
    assert _batch(api, source).json()["accepted"] == 3
    assert _stored(db, source) == 5


@pytest.mark.parametrize("change", ["delete", "pause"])
@pytest.mark.parametrize("repeat", ["idempotency-key", "messageId", "messageId in a batch"])
def test_no_earlier_answer_is_replayed_for_a_key_whose_source_changed(
    api, elsewhere, make_source, db, change, repeat
):
    """An Idempotency-Key or a repeated messageId answers without inserting: each is
    refused like a new send once the source is deleted or paused (one kind per test:
    a refusal makes this process look the key up again)."""
    source = make_source()
    body = {"sourceId": source["id"], "type": "t"}

    def send():
        if repeat == "idempotency-key":
            return _post(
                api, "/streams/events", body, source["writeKey"], **{"Idempotency-Key": "k-1"}
            )
        if repeat == "messageId":
            return _send(api, source, messageId="m-1")
        return _batch(api, source, n=1, messageId="m-1")

    assert send().is_success
    assert _send(api, source).status_code == 202  # a plain send: the key is known
    if change == "delete":
        assert elsewhere.delete(f"/streams/sources/{source['id']}").status_code == 204
    else:
        patched = elsewhere.patch(f"/streams/sources/{source['id']}", json={"status": "inactive"})
        assert patched.status_code == 200

    answer = send()
    if change == "delete":
        assert answer.status_code == 401, answer.text
        assert _stored(db, source) == 0
        return
    if repeat == "messageId in a batch":  # a batch refuses each item on its own
        [item] = answer.json()["data"]
        assert item["status"] == "rejected" and item["error"]["code"] == 403, answer.text
    else:
        assert answer.status_code == 403, answer.text
    assert _stored(db, source) == 2


def test_a_plain_send_with_a_known_key_asks_the_database_once(api, store, make_source, store_kind):
    """The statement saved (PostgreSQL): a known key's plain sends look nothing up; an
    Idempotency-Key send and an admin send still do."""
    if store_kind == "sqlite":
        pytest.skip("the SQLite store holds its sources in the process: no lookup statements")
    source = make_source()
    assert _send(api, source).status_code == 202
    before = store.lookups
    for _ in range(5):
        assert _send(api, source).status_code == 202
        assert _batch(api, source).status_code == 200
    assert store.lookups == before

    body = {"sourceId": source["id"], "type": "t"}
    assert (
        _post(
            api, "/streams/events", body, source["writeKey"], **{"Idempotency-Key": "k"}
        ).status_code
        == 202
    )
    assert store.lookups == before + 1
    assert api.post("/streams/events", json=body).status_code == 202
    assert store.lookups == before + 2


@pytest.mark.parametrize(
    "request_",
    [
        "malformed JSON",
        "invalid event",
        "another source",
        "batch of invalid items",
        "batch for another source",
    ],
)
def test_a_used_key_refused_before_any_insert_is_answered_401_once_its_source_is_deleted(
    api, elsewhere, make_source, request_
):
    """Refusals made before the inserting statement (which is what checks a known key)
    are answered as the gate answers a gone key, whatever the body: 401."""
    source, other = make_source(), make_source("other")
    key = {"Authorization": f"Bearer {source['writeKey']}", "Content-Type": "application/json"}
    assert _send(api, source).status_code == 202
    assert elsewhere.delete(f"/streams/sources/{source['id']}").status_code == 204

    event = {"sourceId": source["id"], "type": "t"}
    if request_ == "malformed JSON":
        answer = api.post("/streams/events", content=b'{"sourceId": ', headers=key)
    elif request_ == "invalid event":
        answer = api.post("/streams/events", json={"sourceId": source["id"]}, headers=key)
    elif request_ == "another source":
        answer = api.post("/streams/events", json={**event, "sourceId": other["id"]}, headers=key)
    elif request_ == "batch of invalid items":
        answer = api.post("/streams/events/batch", json={"batch": [{"type": 1}]}, headers=key)
    else:
        batch = {"batch": [{**event, "sourceId": other["id"]}]}
        answer = api.post("/streams/events/batch", json=batch, headers=key)
    assert answer.status_code == 401, answer.text
    assert answer.headers["www-authenticate"] == "Bearer"
    assert answer.json() == {
        "code": 401,
        "message": "not authenticated",
        "details": "unknown token",
    }


def test_a_paused_sources_key_keeps_the_routes_own_refusals(api, elsewhere, make_source):
    """Only a gone key turns a refusal into 401: a paused source's key with an invalid
    body is answered 422, as a fresh lookup answers it."""
    source = make_source()
    key = {"Authorization": f"Bearer {source['writeKey']}"}
    assert _send(api, source).status_code == 202
    paused = elsewhere.patch(f"/streams/sources/{source['id']}", json={"status": "inactive"})
    assert paused.status_code == 200
    answer = api.post("/streams/events", json={"sourceId": source["id"]}, headers=key)
    assert answer.status_code == 422, answer.text
