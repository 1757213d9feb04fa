"""Stream destinations over HTTP."""

from __future__ import annotations

import re

import pytest


def test_any_type_is_stored_and_listed(api):
    created = api.post(
        "/streams/destinations",
        json={"name": "lake", "type": "bigquery", "config": {"dataset": "raw", "n": 1}},
    )
    assert created.status_code == 201
    body = created.json()
    assert re.match(r"^dst_[0-9A-Z]{26}$", body["id"])
    assert body["config"] == {"dataset": "raw", "n": 1}
    assert body["status"] == "active"
    assert body["createdAt"].endswith("Z")
    listed = api.get("/streams/destinations")
    assert listed.status_code == 200
    assert listed.json() == {"data": [body]}


def test_webhook_with_url(api):
    created = api.post(
        "/streams/destinations",
        json={"name": "hook", "type": "webhook", "config": {"url": "http://localhost:9/x"}},
    )
    assert created.status_code == 201


@pytest.mark.parametrize(
    "config", [{}, {"url": ""}, {"url": 5}, {"url": "ftp://x/y"}, {"url": "https://"}]
)
def test_webhook_needs_http_url(api, config):
    response = api.post(
        "/streams/destinations", json={"name": "hook", "type": "webhook", "config": config}
    )
    assert response.status_code == 422
    assert response.json()["details"].startswith("config.url: ")
    assert api.get("/streams/destinations").json() == {"data": []}


def test_required_fields(api):
    response = api.post("/streams/destinations", json={"name": "x"})
    assert response.status_code == 422
    details = response.json()["details"]
    assert "type: field required" in details and "config: field required" in details


def test_write_key_is_forbidden(api, source):
    response = api.get(
        "/streams/destinations", headers={"Authorization": f"Bearer {source['writeKey']}"}
    )
    assert response.status_code == 403
