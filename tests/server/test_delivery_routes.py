"""The destination extension routes without delivering: get, patch, delete, webhook config
validation (422 naming the field), the signing secret, the delivery list's parameters,
and the server options that set the delivery periods."""

from __future__ import annotations

import base64

import pytest

from tests.conftest import ADMIN_TOKEN


@pytest.fixture
def server_settings(tmp_path):
    from boltic_cli.server.settings import ServerSettings

    # No worker: these tests look at rows, not at deliveries.
    return ServerSettings(db_path=tmp_path / "server.db", admin_token=ADMIN_TOKEN, delivery=False)


def create(api, config, type="webhook"):
    return api.post("/streams/destinations", json={"name": "hook", "type": type, "config": config})


def test_signing_secret_is_made_unless_given(api):
    made = create(api, {"url": "https://example.com/hook"}).json()
    secret = made["config"]["signingSecret"]
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret[6:], validate=True)) == 32
    given = "whsec_" + base64.b64encode(b"k" * 24).decode()
    kept = create(api, {"url": "https://example.com/hook", "signingSecret": given}).json()
    assert kept["config"]["signingSecret"] == given
    # Other types are stored as given.
    other = create(api, {"bucket": "b"}, type="s3").json()
    assert other["config"] == {"bucket": "b"}


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"url": "ftp://x/y"}, "config.url"),
        ({"url": "http://x", "headers": ["a"]}, "config.headers"),
        ({"url": "http://x", "headers": {"X-A": 1}}, "config.headers.X-A"),
        ({"url": "http://x", "headers": {"Bad Name": "v"}}, "config.headers.Bad Name"),
        ({"url": "http://x", "headers": {"X-A": "a\r\nInjected: 1"}}, "config.headers.X-A"),
        ({"url": "http://x", "headers": {"webhook-signature": "v1,x"}}, "config.headers"),
        ({"url": "http://x", "eventTypes": "signup"}, "config.eventTypes"),
        ({"url": "http://x", "eventTypes": [""]}, "config.eventTypes"),
        ({"url": "http://x", "sourceIds": [1]}, "config.sourceIds"),
        ({"url": "http://x", "signingSecret": "secret"}, "config.signingSecret"),
    ],
)
def test_webhook_config_is_checked(api, config, field):
    response = create(api, config)
    assert response.status_code == 422
    assert response.json()["details"].startswith(field)
    assert api.get("/streams/destinations").json() == {"data": []}


def test_get_patch_delete(api):
    made = create(api, {"url": "https://example.com/a", "eventTypes": ["signup"]}).json()
    url = f"/streams/destinations/{made['id']}"
    assert api.get(url).json() == made
    renamed = api.patch(url, json={"name": "renamed"})
    assert renamed.status_code == 200
    assert renamed.json() == {**made, "name": "renamed"}
    reconfigured = api.patch(url, json={"config": {"url": "https://example.com/b"}}).json()
    assert reconfigured["config"] == {
        "url": "https://example.com/b",
        "signingSecret": made["config"]["signingSecret"],
    }
    assert api.patch(url, json={"status": "inactive"}).json()["status"] == "inactive"
    assert api.get("/streams/destinations").json()["data"][0]["status"] == "inactive"
    bad = api.patch(url, json={"config": {"url": "nope"}})
    assert bad.status_code == 422 and bad.json()["details"].startswith("config.url")
    assert api.patch(url, json={"status": "paused"}).status_code == 422
    assert api.patch(url, json={"colour": "red"}).status_code == 422
    assert api.delete(url).status_code == 204
    assert api.get(url).status_code == 404
    assert api.delete(url).status_code == 404
    assert api.patch(url, json={"name": "x"}).status_code == 404
    assert api.get("/streams/destinations").json() == {"data": []}


def test_deliveries_are_rows_for_matching_events_only(api, source, send):
    made = create(api, {"url": "http://127.0.0.1:9/x", "eventTypes": ["signup"]}).json()
    send(source["id"], "page_view")
    first = send(source["id"], "signup").json()["eventId"]
    second = send(source["id"], "signup").json()["eventId"]
    url = f"/streams/destinations/{made['id']}/deliveries"
    rows = api.get(url).json()["data"]
    assert [r["eventId"] for r in rows] == [second, first]  # newest first
    assert {r["status"] for r in rows} == {"pending"} and rows[0]["attempts"] == 0
    assert rows[0]["destinationId"] == made["id"] and rows[0]["nextAttemptAt"].endswith("Z")
    assert [r["eventId"] for r in api.get(url, params={"limit": 1}).json()["data"]] == [second]
    assert api.get(url, params={"status": "failed"}).json()["data"] == []
    assert api.get(url, params={"eventId": first}).json()["data"][0]["eventId"] == first
    for bad in ({"limit": 0}, {"limit": 501}, {"status": "done"}):
        assert api.get(url, params=bad).status_code == 422
    assert api.get("/streams/destinations/dst_nope/deliveries").status_code == 404
    one = api.get(f"{url}/{rows[0]['id']}").json()
    assert one["history"] == [] and one["id"] == rows[0]["id"]
    assert api.get(f"{url}/dlv_nope").status_code == 404
    # Inactive: new events get no delivery.
    api.patch(f"/streams/destinations/{made['id']}", json={"status": "inactive"})
    send(source["id"], "signup")
    assert len(api.get(url).json()["data"]) == 2


def test_write_key_may_not_use_the_extensions(api, source):
    made = create(api, {"url": "http://127.0.0.1:9/x"}).json()
    headers = {"Authorization": f"Bearer {source['writeKey']}"}
    for method, path in (
        ("get", f"/streams/destinations/{made['id']}"),
        ("delete", f"/streams/destinations/{made['id']}"),
        ("get", f"/streams/destinations/{made['id']}/deliveries"),
        ("post", f"/streams/destinations/{made['id']}/test"),
    ):
        assert api.request(method, path, headers=headers).status_code == 403


def test_delivery_options_of_boltic_server():
    from boltic_cli.commands.server import delivery_settings
    from boltic_cli.errors import UsageError

    assert delivery_settings(None, None, None, None) == {}
    assert delivery_settings("1s, 500ms,2m", "5s", "1h", "2s") == {
        "delivery_schedule": (1.0, 0.5, 120.0),
        "delivery_lease": 5.0,
        "delivery_auto_disable": 3600.0,
        "delivery_timeout": 2.0,
    }
    with pytest.raises(UsageError, match="--delivery-lease"):
        delivery_settings(None, "soon", None, None)
    with pytest.raises(UsageError, match="--delivery-schedule"):
        delivery_settings(",", None, None, None)
