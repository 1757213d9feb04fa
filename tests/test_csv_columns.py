"""CSV (and plain) columns of a resource are the schema's, whatever the rows hold (issue 12)."""

from __future__ import annotations

import csv
import io

import pytest

EVENT_FIELDS = [
    "id",
    "sourceId",
    "type",
    "properties",
    "context",
    "userId",
    "anonymousId",
    "timestamp",
    "receivedAt",
    "messageId",
]


def header_and_rows(text: str) -> tuple[list[str], list[dict]]:
    reader = csv.reader(io.StringIO(text))
    rows = list(reader)
    return rows[0], [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]


@pytest.mark.parametrize("all_pages", [False, True])
def test_events_csv_header_is_the_same_whatever_optional_fields_the_events_carry(
    cli, api, source, all_pages
):
    bare = {"sourceId": source["id"], "type": "bare"}
    rich = {
        "sourceId": source["id"],
        "type": "rich",
        "userId": "u1",
        "messageId": "m1",
        "properties": {"a": 1},
        "context": {"locale": "en"},
    }
    for body in (bare, rich):
        assert api.post("/streams/events", json=body).status_code == 202
    extra = ["--all"] if all_pages else []

    only_bare = cli("events", "query", "--type", "bare", "-o", "csv", *extra)
    only_rich = cli("events", "query", "--type", "rich", "-o", "csv", *extra)
    nothing = cli("events", "query", "--type", "none", "-o", "csv", *extra)

    for result in (only_bare, only_rich, nothing):
        assert result.exit_code == 0, result.stderr
        assert header_and_rows(result.stdout)[0] == EVENT_FIELDS
    (row,) = header_and_rows(only_bare.stdout)[1]
    assert row["type"] == "bare" and row["userId"] == "" and row["messageId"] == ""
    (row,) = header_and_rows(only_rich.stdout)[1]
    assert row["userId"] == "u1" and row["messageId"] == "m1"
    assert header_and_rows(nothing.stdout)[1] == []


def test_sources_csv_header_is_the_schemas(cli, api, source):
    result = cli("sources", "list", "-o", "csv")

    assert result.exit_code == 0, result.stderr
    header, rows = header_and_rows(result.stdout)
    assert header == ["id", "name", "type", "writeKey", "status", "eventsToday", "createdAt"]
    assert rows[0]["id"] == source["id"]


def test_plain_without_command_columns_uses_the_schema_order():
    from boltic_cli.models import Event
    from boltic_cli.output import Output

    out = io.StringIO()
    output = Output(
        format="plain",
        stdout=out,
        stderr=io.StringIO(),
        color=False,
        stdout_isatty=False,
        stderr_isatty=False,
        width=None,
        clock=lambda: None,
    )
    output.emit_stream(iter([Event(id="evt_1", type="t"), Event(id="evt_2", user_id="u")]))

    lines = [line.split("\t") for line in out.getvalue().splitlines()]
    assert all(len(cells) == len(EVENT_FIELDS) for cells in lines)
    assert lines[0][0] == "evt_1" and lines[0][2] == "t"
    assert lines[1][0] == "evt_2" and lines[1][5] == "u"
