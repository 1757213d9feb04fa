"""Pausing and renaming sources: ``PATCH /streams/sources/{id}`` (our extension) and
``boltic sources update`` over it, against the real server; and against a server that
offers only the spec."""

from __future__ import annotations

import httpx
import pytest

from tests.support import AppTransport


def create_source(api, name: str = "web") -> dict:
    response = api.post("/streams/sources", json={"name": name, "type": "javascript"})
    assert response.status_code == 201, response.text
    return response.json()


def send_with_key(api, source: dict) -> httpx.Response:
    return api.post(
        "/streams/events",
        json={"sourceId": source["id"], "type": "page_view"},
        headers={"Authorization": f"Bearer {source['writeKey']}"},
    )


def test_pausing_a_source_refuses_its_events_and_resuming_restores_its_key(cli, api):
    source = create_source(api)
    assert send_with_key(api, source).status_code == 202

    paused = cli("sources", "update", "web", "--status", "inactive", "-o", "json")

    assert paused.exit_code == 0, paused.stderr
    assert paused.json()["status"] == "inactive"
    assert paused.json()["writeKey"] == source["writeKey"]
    assert api.get(f"/streams/sources/{source['id']}").json()["status"] == "inactive"
    refused = send_with_key(api, source)
    assert refused.status_code == 403
    assert "inactive" in refused.json()["details"]
    # The CLI's own send ends with the forbidden exit code.
    assert cli("events", "send", source["id"], "--type", "t").exit_code == 4

    resumed = cli("sources", "update", source["id"], "--status", "active", "-o", "json")

    assert resumed.exit_code == 0, resumed.stderr
    assert resumed.json()["status"] == "active"
    assert send_with_key(api, source).status_code == 202


def test_renaming_keeps_everything_else(cli, api):
    source = create_source(api, "old name")

    result = cli("sources", "update", "old name", "--name", "new name", "-o", "json")

    assert result.exit_code == 0, result.stderr
    stored = api.get(f"/streams/sources/{source['id']}").json()
    assert stored["name"] == "new name"
    assert {k: v for k, v in stored.items() if k != "name"} == {
        k: v for k, v in source.items() if k not in ("name", "eventsToday")
    } | {"eventsToday": stored["eventsToday"]}
    assert result.json() == stored


def test_update_needs_something_to_change_and_a_real_name(cli, api):
    create_source(api)

    nothing = cli("sources", "update", "web")
    blank = cli("sources", "update", "web", "--name", "   ")
    bad_status = cli("sources", "update", "web", "--status", "paused")

    assert (nothing.exit_code, blank.exit_code, bad_status.exit_code) == (2, 2, 2)
    assert "--name" in nothing.stderr and "--status" in nothing.stderr
    assert "paused" in bad_status.stderr
    assert api.get("/streams/sources").json()["data"][0]["name"] == "web"


def test_update_of_an_unknown_source_is_not_found(cli, api):
    result = cli("sources", "update", "src_nope", "--status", "inactive")

    assert result.exit_code == 3
    assert "does not offer" not in result.stderr


@pytest.mark.parametrize(
    ("body", "field"),
    [({"status": "paused"}, "status"), ({"name": ""}, "name"), ({"name": "a\x00b"}, "name")],
)
def test_the_route_refuses_bad_bodies_with_422(api, body, field):
    source = create_source(api)

    response = api.patch(f"/streams/sources/{source['id']}", json=body)

    assert response.status_code == 422
    assert field in response.json()["details"]
    assert api.get(f"/streams/sources/{source['id']}").json()["name"] == "web"


def test_the_route_is_admin_only_and_answers_404_for_an_unknown_source(api):
    source = create_source(api)

    as_key = api.patch(
        f"/streams/sources/{source['id']}",
        json={"status": "inactive"},
        headers={"Authorization": f"Bearer {source['writeKey']}"},
    )
    unknown = api.patch("/streams/sources/src_missing", json={"status": "inactive"})

    assert as_key.status_code == 403
    assert unknown.status_code == 404
    assert api.get(f"/streams/sources/{source['id']}").json()["status"] == "active"


def test_the_route_is_listed_as_an_extension(api):
    document = api.get("/openapi.json", headers={"Authorization": ""}).json()

    operation = document["paths"]["/v1/streams/sources/{sourceId}"]["patch"]

    assert operation["x-boltic-extension"] is True
    assert operation["operationId"] == "updateStreamSource"


class SpecOnly(AppTransport):
    """The real server with the extension route gone: PATCH is answered as a server
    offering only the spec's operations would (405 on the source path, or 404)."""

    def __init__(self, client: httpx.Client, status: int) -> None:
        super().__init__(client)
        self.status = status

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "PATCH":
            body = {"code": self.status, "message": "method not allowed or no route"}
            return httpx.Response(self.status, json=body)
        return super().handle_request(request)


@pytest.mark.parametrize("status", [404, 405])
def test_against_a_spec_only_server_it_says_so_in_one_line(run_cli, api, status):
    create_source(api)
    env = {"BOLTIC_API_URL": "http://testserver/v1", "BOLTIC_TOKEN": "test-admin-token-0123456789"}

    result = run_cli(
        "sources", "update", "web", "--status", "inactive", env=env, transport=SpecOnly(api, status)
    )

    assert result.exit_code == 1
    assert result.stderr.strip().count("\n") == 0
    # Said like every missing extension (client._extension_unavailable).
    assert result.stderr.strip() == (
        "Error: this server does not offer updating sources "
        "(PATCH /streams/sources/{id} is a boltic server extension)"
    )
    assert "Traceback" not in result.stderr
    assert api.get("/streams/sources").json()["data"][0]["status"] == "active"
