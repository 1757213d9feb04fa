"""A source's write key through the CLI (design.md, Extensions beyond the spec: Ids).

A write key may only send events: the CLI never looks a source up with one, takes an
id as it is, and refuses a name in one line (exit 2) before any request.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import ADMIN_TOKEN


@pytest.fixture
def wk_cli(cli, source):
    """``boltic ARGS`` with the source's write key as BOLTIC_TOKEN."""

    def run(*args: str, **kwargs):
        return cli(*args, env={"BOLTIC_TOKEN": source["writeKey"]}, **kwargs)

    return run


def stored(api, source_id: str) -> list[dict]:
    return api.get("/streams/events", params={"sourceId": source_id, "limit": 1000}).json()["data"]


def test_events_send_with_a_write_key_and_a_source_id(wk_cli, api, source):
    result = wk_cli("events", "send", source["id"], "--type", "t", "-p", "a=1", "-v")

    assert result.exit_code == 0, result.stderr
    events = stored(api, source["id"])
    assert [e["type"] for e in events] == ["t"]
    assert result.stdout.strip() == events[0]["id"]
    # Exactly one request, the POST a write key may make.
    calls = [line for line in result.stderr.splitlines() if "/v1/" in line]
    assert len(calls) == 1 and calls[0].startswith("POST ") and "/streams/events " in calls[0]


def test_events_send_file_with_a_write_key(wk_cli, api, source):
    lines = "\n".join(json.dumps({"type": f"f{n}"}) for n in range(3))
    result = wk_cli("events", "send", source["id"], "--file", "-", input=lines)

    assert result.exit_code == 0, result.stderr
    assert sorted(e["type"] for e in stored(api, source["id"])) == ["f0", "f1", "f2"]


def test_events_generate_with_a_write_key(wk_cli, api, source):
    result = wk_cli("events", "generate", source["id"], "--count", "5", "-o", "json")

    assert result.exit_code == 0, result.stderr
    assert result.json()["sent"] == 5
    assert len(stored(api, source["id"])) == 5


@pytest.mark.parametrize(
    "command",
    [("events", "send", "web", "--type", "t"), ("events", "generate", "web", "--count", "1")],
)
def test_a_name_with_a_write_key_is_a_usage_error_before_any_request(wk_cli, api, source, command):
    result = wk_cli(*command, "-v")

    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "write key" in lines[0] and "'web'" in lines[0] and "src_" in lines[0]
    assert stored(api, source["id"]) == []


def test_other_commands_with_a_write_key_make_no_request(wk_cli, source):
    result = wk_cli("sources", "list", "-v")

    assert result.exit_code == 2
    assert "write key" in result.stderr
    assert not [line for line in result.stderr.splitlines() if line.startswith("GET ")]


def test_an_id_is_not_looked_up_even_with_an_admin_token(cli, api, source):
    result = cli(
        "events", "send", source["id"], "--type", "t", "-v", env={"BOLTIC_TOKEN": ADMIN_TOKEN}
    )

    assert result.exit_code == 0, result.stderr
    calls = [line for line in result.stderr.splitlines() if "/v1/" in line]
    assert len(calls) == 1 and calls[0].startswith("POST ")


def test_an_unknown_id_is_the_servers_not_found(wk_cli, cli, source):
    result = cli("events", "send", "src_00000000000000000000000000", "--type", "t")

    assert result.exit_code == 3


def test_a_destination_id_where_a_source_is_expected_is_a_usage_error(cli, source):
    result = cli("events", "send", "dst_00000000000000000000000000", "--type", "t")

    assert result.exit_code == 2
    assert "not a source id" in result.stderr


@pytest.mark.parametrize(
    "command",
    [
        ("events", "send", "{id}", "--type", "t"),
        ("events", "send", "{id}", "--file", "-"),
        ("events", "generate", "{id}", "--count", "3"),
    ],
    ids=lambda c: " ".join(c[:2]) + (" --file" if "--file" in c else ""),
)
def test_a_write_key_of_a_deleted_source_is_exit_4_naming_the_write_key(
    wk_cli, api, source, command
):
    assert api.delete(f"/streams/sources/{source['id']}").status_code in (200, 204)

    args = [part.format(id=source["id"]) for part in command]
    result = wk_cli(*args, input='{"type": "t"}\n')

    assert result.exit_code == 4, result.stderr
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("Error: ") and "write key" in error, result.stderr
    assert "source may have been deleted" in error
    # Not the admin token's hints: they would send the user after the wrong token.
    assert "boltic server" not in error and "auth login" not in error
    assert stored(api, source["id"]) == []
