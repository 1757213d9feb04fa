"""boltic sources: create, list, get, delete, and source id-or-name resolution."""

from __future__ import annotations

import json
import shlex

import pytest


def create_source(api, name: str, type_: str = "server") -> dict:
    response = api.post("/streams/sources", json={"name": name, "type": type_})
    assert response.status_code == 201, response.text
    return response.json()


def stored_sources(api) -> list[dict]:
    response = api.get("/streams/sources")
    assert response.status_code == 200
    return response.json()["data"]


def test_create_json_prints_the_object_the_server_holds(cli, api):
    result = cli("sources", "create", "--name", "web", "--type", "javascript", "-o", "json")

    assert result.exit_code == 0, result.stderr
    created = result.json()
    assert created["name"] == "web"
    assert created["type"] == "javascript"
    assert created["status"] == "active"
    assert created["writeKey"].startswith("wk_")
    assert [s["id"] for s in stored_sources(api)] == [created["id"]]


def test_create_rejects_a_type_outside_the_spec_enum_before_any_request(cli, api):
    result = cli("sources", "create", "--name", "web", "--type", "desktop")

    assert result.exit_code == 2
    assert "desktop" in result.stderr
    for choice in ("javascript", "server", "mobile", "webhook"):
        assert choice in result.stderr
    assert stored_sources(api) == []


def test_create_on_a_terminal_prints_a_curl_command_that_works(cli, api):
    result = cli("sources", "create", "--name", "shop", "--type", "server", tty=True)

    assert result.exit_code == 0, result.stderr
    source = stored_sources(api)[0]
    assert f"ID:        {source['id']}" in result.stdout
    assert f"Write key: {source['writeKey']}" in result.stdout
    # The admin token must not leak into a command meant to be pasted and shared.
    assert "test-admin-token" not in result.stdout + result.stderr

    curl = result.stdout[result.stdout.index("curl ") :].replace("\\\n", " ")
    words = shlex.split(curl)
    assert words[:4] == ["curl", "-X", "POST", "http://testserver/v1/streams/events"]
    headers = dict(words[i + 1].split(": ", 1) for i, w in enumerate(words) if w == "-H")
    body = json.loads(words[words.index("-d") + 1])
    assert headers["Authorization"] == f"Bearer {source['writeKey']}"
    assert body["sourceId"] == source["id"]

    sent = api.post("/streams/events", json=body, headers=headers)
    assert sent.status_code == 202, sent.text
    events = api.get("/streams/events", params={"sourceId": source["id"]}).json()
    assert events["summary"]["totalEvents"] == 1


def test_list_json_ids_and_plain(cli, api):
    first = create_source(api, "alpha", "server")
    second = create_source(api, "beta", "mobile")
    api.post("/streams/events", json={"sourceId": second["id"], "type": "open"})

    listed = cli("sources", "list", "-o", "json")
    assert listed.exit_code == 0
    by_id = {s["id"]: s for s in listed.json()}
    assert set(by_id) == {first["id"], second["id"]}
    assert by_id[second["id"]]["eventsToday"] == 1
    assert by_id[first["id"]]["writeKey"] == first["writeKey"]

    quiet = cli("sources", "list", "-q")
    assert quiet.exit_code == 0
    assert sorted(quiet.stdout.split()) == sorted([first["id"], second["id"]])

    plain = cli("sources", "list")
    rows = [line.split("\t") for line in plain.stdout.splitlines()]
    assert sorted(row[:5] for row in rows) == sorted(
        [
            [first["id"], "alpha", "server", "active", "0"],
            [second["id"], "beta", "mobile", "active", "1"],
        ]
    )
    assert {row[5] for row in rows} == {first["createdAt"], second["createdAt"]}


def test_list_table_at_fixed_width(cli, api):
    source = create_source(api, "checkout-service", "server")

    result = cli("sources", "list", "-o", "table")

    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert all(len(line) <= 120 for line in lines)
    assert lines[0].split() == ["ID", "NAME", "TYPE", "STATUS", "EVENTS", "TODAY", "CREATED"]
    assert lines[1].split()[:5] == [source["id"], "checkout-service", "server", "active", "0"]


def _table_ids_and_headers(cli, what: str, columns: str, tty: bool):
    result = cli(what, "list", "-o", "table", env={"COLUMNS": columns}, tty=tty)
    assert result.exit_code == 0, result.stderr
    return result.stdout, result.stdout.split()


@pytest.mark.parametrize("tty", [False, True], ids=["piped", "terminal"])
@pytest.mark.parametrize("columns", ["100", "80", "60"])
def test_list_table_on_a_narrow_terminal_is_one_line_per_row_with_every_header(
    cli, api, columns, tty
):
    from boltic_cli.output import short_id

    sources = [
        create_source(api, "checkout-service-with-a-long-name", "javascript"),
        create_source(api, "web", "server"),
        create_source(api, "app", "mobile"),
    ]

    out, words = _table_ids_and_headers(cli, "sources", columns, tty)

    lines = [line.rstrip() for line in out.splitlines()]
    boxed = lines[0].startswith("╭")
    assert len(lines) == len(sources) + (4 if boxed else 1)
    assert all(len(line) <= int(columns) for line in lines)
    # Ids whole while they fit (80 and wider), their prefix and tail below.
    for source in sources:
        assert (source["id"] if columns != "60" else short_id(source["id"])) in words
    # Headers are never split (EVENTS TODAY stays one header on one line).
    assert "EVENTS TODAY" in lines[1 if boxed else 0]
    for header in ("ID", "NAME", "TYPE", "STATUS", "CREATED"):
        assert header in words
    for value in ("server", "mobile", "active"):
        assert value in words
    # The long local time gives way to the age alone.
    assert "ago" in out or "just now" in out
    assert sources[0]["createdAt"][:10] not in out


def test_list_table_at_120_columns_keeps_local_time_and_age(cli, api):
    create_source(api, "checkout-service", "server")

    out = cli("sources", "list", "-o", "table", tty=True).stdout

    assert "(just now)" in out or " ago)" in out
    assert all(len(line) <= 120 for line in out.splitlines())


def test_list_with_no_sources(cli):
    assert cli("sources", "list", "-o", "json").json() == []
    table = cli("sources", "list", "-o", "table")
    assert table.exit_code == 0
    assert "No results." in table.stderr


def test_get_by_id_and_by_exact_name(cli, api):
    source = create_source(api, "billing")
    create_source(api, "billing-v2")

    by_id = cli("sources", "get", source["id"], "-o", "json")
    by_name = cli("sources", "get", "billing", "-o", "json")

    assert by_id.exit_code == by_name.exit_code == 0
    assert by_id.json()["id"] == by_name.json()["id"] == source["id"]


def test_get_plain_shows_fields(cli, api):
    source = create_source(api, "api-backend")

    result = cli("sources", "get", "api-backend")

    fields = dict(line.split("\t", 1) for line in result.stdout.splitlines())
    assert fields["id"] == source["id"]
    assert fields["name"] == "api-backend"
    assert fields["eventsToday"] == "0"
    assert fields["writeKey"] == source["writeKey"]


def test_get_table_shows_the_write_key(cli, api):
    source = create_source(api, "api-backend")

    result = cli("sources", "get", "api-backend", "-o", "table")

    assert result.exit_code == 0, result.stderr
    assert ["WRITE", "KEY", source["writeKey"]] in [
        line.split() for line in result.stdout.splitlines()
    ]


def test_create_piped_shows_the_write_key(cli, api):
    result = cli("sources", "create", "--name", "shop", "--type", "server")

    assert result.exit_code == 0, result.stderr
    fields = dict(line.split("\t", 1) for line in result.stdout.splitlines())
    source = stored_sources(api)[0]
    assert fields["id"] == source["id"]
    assert fields["writeKey"] == source["writeKey"]


def test_list_does_not_show_write_keys(cli, api):
    source = create_source(api, "web")

    assert source["writeKey"] not in cli("sources", "list").stdout
    assert source["writeKey"] not in cli("sources", "list", "-o", "table").stdout


def test_ambiguous_name_is_a_usage_error_listing_the_matches(cli, api):
    first = create_source(api, "twin", "server")
    second = create_source(api, "twin", "mobile")

    result = cli("sources", "get", "twin")

    assert result.exit_code == 2
    assert first["id"] in result.stderr and second["id"] in result.stderr
    assert "use an id" in result.stderr


def test_unknown_source_is_not_found(cli, api):
    create_source(api, "known")

    by_name = cli("sources", "get", "unknown", "-o", "json")
    by_id = cli("sources", "get", "src_00000000000000000000000000")

    assert by_name.exit_code == by_id.exit_code == 3
    error = json.loads(by_name.stderr.strip().splitlines()[-1])["error"]
    assert error["exitCode"] == 3
    assert "unknown" in error["message"]


def test_an_argument_with_an_id_prefix_is_never_looked_up_by_name(cli, api):
    # design.md (Ids): src_... is an id, even when a source happens to be named so.
    create_source(api, "src_not_really_an_id")

    result = cli("sources", "get", "src_not_really_an_id", "-o", "json")

    assert result.exit_code == 3


def test_delete_off_a_terminal_needs_yes(cli, api):
    source = create_source(api, "keep-me")

    result = cli("sources", "delete", "keep-me")

    assert result.exit_code == 2
    assert "--yes" in result.stderr
    assert api.get(f"/streams/sources/{source['id']}").status_code == 200


def test_delete_with_yes_removes_source_events_and_write_key(cli, api):
    source = create_source(api, "old")
    api.post("/streams/events", json={"sourceId": source["id"], "type": "x"})

    result = cli("sources", "delete", "old", "--yes")

    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert "Deleted source old" in result.stderr
    assert api.get(f"/streams/sources/{source['id']}").status_code == 404
    assert api.get("/streams/events").json()["summary"]["totalEvents"] == 0
    with_key = api.post(
        "/streams/events",
        json={"sourceId": source["id"], "type": "x"},
        headers={"Authorization": f"Bearer {source['writeKey']}"},
    )
    assert with_key.status_code == 401


@pytest.mark.parametrize(("answer", "exit_code", "status"), [("y\n", 0, 404), ("n\n", 1, 200)])
def test_delete_on_a_terminal_asks(cli, api, answer, exit_code, status):
    source = create_source(api, "asked")

    result = cli("sources", "delete", source["id"], tty=True, input=answer)

    assert result.exit_code == exit_code
    assert f"Source asked ({source['id']}) and all its events will be deleted." in result.stderr
    assert "Delete it? [y/N]:" in result.stderr
    assert api.get(f"/streams/sources/{source['id']}").status_code == status
    if answer == "n\n":  # the user's choice, not an error
        assert result.stderr.splitlines()[-1].endswith("Nothing deleted.")
        assert "Error" not in result.stderr


def test_delete_prompt_stays_short_whatever_the_name(cli, api):
    source = create_source(api, "a-source-with-a-name-long-enough-to-fill-a-terminal-line")

    result = cli("sources", "delete", source["id"], tty=True, input="n\n")

    # The question is a line of its own; the prompt is short, so its ":" never wraps
    # alone onto the next line of an 80-column terminal.
    question, prompt = result.stderr.splitlines()[:2]
    assert source["id"] in question
    assert prompt.startswith("Delete it? [y/N]:") and len("Delete it? [y/N]: ") < 80


def test_interrupting_the_prompt_ends_its_line_first(cli, api):
    source = create_source(api, "kept")

    result = cli("sources", "delete", source["id"], tty=True, input="")  # Ctrl-D / Ctrl-C

    assert result.exit_code == 130
    assert result.stderr.endswith("Delete it? [y/N]:\nInterrupted\n")
    assert api.get(f"/streams/sources/{source['id']}").status_code == 200


def test_declined_in_json_mode_is_an_error_object_without_null_fields(cli, api):
    source = create_source(api, "kept")
    result = cli("sources", "delete", source["id"], "-o", "json", tty=True, input="n\n")
    assert result.exit_code == 1
    error = json.loads(result.stderr.splitlines()[-1])["error"]
    assert error == {"message": "Nothing deleted.", "exitCode": 1}


def test_delete_unknown_source_exits_3(cli):
    result = cli("sources", "delete", "ghost", "--yes")
    assert result.exit_code == 3


# -- source names are cached briefly ------------------------------------------------


def _http_calls(result) -> list[str]:
    """The -v lines: one per HTTP call, ``METHOD URL STATUS ms``."""
    return [line for line in result.stderr.splitlines() if line.split(" ", 1)[0] in HTTP_VERBS]


HTTP_VERBS = {"GET", "POST", "PATCH", "DELETE"}


def test_a_source_name_is_looked_up_once_then_cached(cli, api, tmp_path):
    source = create_source(api, "shop")

    first = cli("events", "send", "shop", "--type", "a", "-v")
    second = cli("events", "send", "shop", "--type", "b", "-v")
    waited = cli("events", "query", "--source", "shop", "-v")

    assert (first.exit_code, second.exit_code, waited.exit_code) == (0, 0, 0)
    assert [c.split()[0] for c in _http_calls(first)] == ["GET", "POST"]
    assert [c.split()[0] for c in _http_calls(second)] == ["POST"]
    assert [c.split()[0] for c in _http_calls(waited)] == ["GET"]  # the query itself
    stored = api.get("/streams/events", params={"sourceId": source["id"]}).json()["data"]
    assert sorted(e["type"] for e in stored) == ["a", "b"]
    cache = tmp_path / "cache" / "source-names.json"
    assert oct(cache.stat().st_mode & 0o777) == "0o600"
    assert "test-admin-token" not in cache.read_text()


def test_the_cache_is_cleared_by_delete_create_and_rename(cli, api):
    old = create_source(api, "shop")
    assert cli("events", "send", "shop", "--type", "a").exit_code == 0

    assert cli("sources", "delete", "shop", "--yes").exit_code == 0
    new = cli("sources", "create", "--name", "shop", "--type", "server", "-o", "json").json()
    sent = cli("events", "send", "shop", "--type", "b", "-o", "json")

    assert sent.exit_code == 0, sent.stderr
    assert [e["sourceId"] for e in api.get("/streams/events").json()["data"]] == [new["id"]]
    assert old["id"] != new["id"]
    assert cli("sources", "update", "shop", "--name", "store").exit_code == 0
    assert cli("events", "send", "shop", "--type", "c").exit_code == 3


def test_a_stale_cache_entry_is_not_used(cli, api):
    from datetime import UTC, datetime, timedelta

    create_source(api, "shop")
    start = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    later = start + timedelta(seconds=31)

    cli("events", "send", "shop", "--type", "a", clock=lambda: start)
    result = cli("events", "send", "shop", "--type", "b", "-v", clock=lambda: later)

    assert [c.split()[0] for c in _http_calls(result)] == ["GET", "POST"]
