"""Messages speak the user's language (issue 12): the option or field that is wrong and
what it allows; no model names or pydantic wording, from the CLI or the server."""

from __future__ import annotations

import json

import pytest

LEAKS = ("StreamSourceInput", "EventInput", "StreamDestinationInput", "Value error",
         "String should", "Input should", "Field required")  # fmt: skip


def assert_plain_words(text: str) -> None:
    for leak in LEAKS:
        assert leak not in text, text


def test_source_name_of_only_spaces_is_refused_before_any_request(cli, api):
    result = cli("sources", "create", "--name", "   ", "--type", "server", "-v")

    assert result.exit_code == 2
    assert "--name" in result.stderr and "spaces" in result.stderr
    assert not [line for line in result.stderr.splitlines() if line.startswith(("GET", "POST"))]
    assert api.get("/streams/sources").json()["data"] == []


def test_a_second_source_with_a_taken_name_warns_and_is_created(cli, api):
    first = cli("sources", "create", "--name", "web", "--type", "server", "-o", "json").json()

    result = cli("sources", "create", "--name", "web", "--type", "mobile", "-o", "json")

    assert result.exit_code == 0, result.stderr
    assert "Warning: a source named 'web' already exists" in result.stderr
    assert first["id"] in result.stderr and "need an id" in result.stderr
    assert len(api.get("/streams/sources").json()["data"]) == 2
    other = cli("sources", "create", "--name", "app", "--type", "mobile")
    assert "Warning" not in other.stderr


def test_an_unknown_source_type_names_the_option_and_the_choices(cli):
    result = cli("sources", "create", "--name", "x", "--type", "bogus")

    assert result.exit_code == 2
    assert "--type" in result.stderr and "javascript" in result.stderr
    assert_plain_words(result.stderr)


def test_client_side_validation_names_the_field_and_what_is_allowed(client):
    from boltic_cli.errors import UsageError

    with pytest.raises(UsageError) as info:
        client.create_stream_source({"name": "", "type": "bogus"})
    message = info.value.message
    assert message.startswith("invalid source: name must not be empty; type must be one of")
    assert "javascript, server, mobile, webhook (not 'bogus')" in message
    assert_plain_words(message)

    with pytest.raises(UsageError) as info:
        client.send_event({"sourceId": "src_x"})
    assert info.value.message == "invalid event: type is required"

    with pytest.raises(UsageError) as info:
        client.send_event({"sourceId": "src_x", "type": "t", "timestamp": "yesterday"})
    assert "timestamp must be a time such as 2026-01-31T12:00:00Z (not 'yesterday')" in (
        info.value.message
    )


def test_a_file_line_without_a_type_reads_as_words_through_the_cli(cli, api):
    source = api.post("/streams/sources", json={"name": "web", "type": "server"}).json()
    lines = [json.dumps({"sourceId": source["id"], "properties": {"a": 1}})]

    result = cli("events", "send", "--file", "-", input="\n".join(lines))

    assert result.exit_code == 1
    assert "line 1: invalid event: type is required" in result.stderr
    assert_plain_words(result.stderr)


@pytest.mark.parametrize(
    ("path", "body", "details"),
    [
        ("/streams/sources", {"name": "", "type": "server"}, "name: must not be empty"),
        ("/streams/events/batch", {"batch": []}, "batch: must have at least 1 item"),
        ("/streams/events", {"sourceId": "s", "type": "t", "properties": [1]},
         "properties: must be a JSON object"),
    ],
)  # fmt: skip
def test_server_details_say_what_is_allowed(api, path, body, details):
    response = api.post(path, json=body)
    assert response.status_code == 422
    assert response.json()["details"] == details


def test_server_query_limit_details(api):
    assert api.get("/streams/events", params={"limit": 0}).json()["details"] == (
        "limit: must be at least 1"
    )
    assert api.get("/streams/events", params={"limit": "abc"}).json()["details"] == (
        "limit: must be a whole number (not 'abc')"
    )


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("events", "query", "--limit", "0"), "Invalid value for '--limit': must be at least 1"),
        (("events", "query", "--limit", "abc"), "'--limit': must be a whole number (not 'abc')"),
        (("sources", "create", "--name", "x", "--type", "fax"),
         "'--type': 'fax' is not one of 'javascript', 'server', 'mobile', 'webhook'"),
    ],
)  # fmt: skip
def test_bad_option_values_say_what_is_allowed(cli, args, says):
    result = cli(*args)
    assert result.exit_code == 2
    assert says in result.stderr
    assert_plain_words(result.stderr)


def test_a_name_that_reads_as_an_id_warns(cli, api):
    result = cli("sources", "create", "--name", "src_web", "--type", "server", "-o", "json")

    assert result.exit_code == 0
    assert "starts like an id" in result.stderr
