"""`-o` is never silently ignored: every command prints every format it accepts as that
format (parsed back here), or refuses it with exit 2 and one line. Through the CLI
against the real server app, piped (no terminal)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
import yaml

from boltic_cli.output import OUTPUT_FORMATS

BOX = "╭│╰"


@pytest.fixture
def world(api, tmp_path: Path) -> dict:
    source = api.post("/streams/sources", json={"name": "web", "type": "server"}).json()
    api.post(
        "/streams/events",
        json={"sourceId": source["id"], "type": "signup", "userId": "u1", "properties": {"a": 1}},
    )
    events = tmp_path / "events.ndjson"
    events.write_text(json.dumps({"sourceId": source["id"], "type": "batch"}) + "\n")
    return {"source": source, "file": str(events)}


# Commands that print data, each with a word its output must hold in every format.
DATA_COMMANDS = {
    "sources list": (["sources", "list"], "web"),
    "sources list -q": (["sources", "list", "-q"], "src_"),
    "sources get": (["sources", "get", "web"], "web"),
    "sources update": (["sources", "update", "web", "--name", "web"], "web"),
    "events query": (["events", "query"], "signup"),
    "events query --all": (["events", "query", "--all"], "signup"),
    "events send": (["events", "send", "web", "--type", "t"], "evt_"),
    "events send --file": (["events", "send", "--file", "{file}"], "sent"),
    "events generate": (["events", "generate", "web", "--count", "2"], "sent"),
    "debug status": (["debug", "status", "web"], "signup"),
    "debug tail": (["debug", "tail", "web", "--max-events", "1"], "signup"),
    "config list": (["config", "list"], "testserver"),
    "config get": (["config", "get", "api_url"], "testserver"),
    "auth status": (["auth", "status"], "testserver"),
    "destinations list -q": (["destinations", "list", "-q"], None),
    "sources create": (["sources", "create", "--name", "app", "--type", "mobile"], "app"),
    "config profiles": (["config", "profiles"], "local"),
    "events stats": (["events", "stats"], "signup"),
}


PROSE_SUMMARY = {"events send --file", "events generate"}


def parse(fmt: str, text: str):
    """``text`` read back as ``fmt``; fails when it is not that format."""
    if fmt == "json":
        return json.loads(text)
    if fmt == "ndjson":
        return [json.loads(line) for line in text.splitlines()]
    if fmt == "yaml":
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
        assert documents and not any(isinstance(d, str) and "\t" in d for d in documents)
        return documents
    if fmt == "csv":
        rows = list(csv.reader(io.StringIO(text)))
        assert len(rows) >= 2 and all(len(row) == len(rows[0]) for row in rows), text
        return rows
    assert not any(ch in text for ch in BOX), text  # piped: never a box
    if fmt == "plain":
        return text
    assert "\t" not in text, text  # a table aligns with spaces
    return text


@pytest.mark.parametrize("fmt", OUTPUT_FORMATS)
@pytest.mark.parametrize("name", list(DATA_COMMANDS))
def test_every_data_command_prints_every_format(cli, world, name, fmt):
    args, word = DATA_COMMANDS[name]
    args = [a.format(**world) for a in args]

    result = cli(*args, "-o", fmt, env={"COLUMNS": "200"})

    assert result.exit_code == 0, result.stderr
    if word is None:  # nothing to list: an empty list in the format
        return
    if name in PROSE_SUMMARY and fmt in ("table", "plain"):
        # For people the summary is a sentence on stderr; data formats print it as data.
        assert result.stdout == "" and word in result.stderr.lower()
        return
    # A tail has no end to close a JSON array at: json is one object per line (--help).
    parse("ndjson" if name == "debug tail" and fmt == "json" else fmt, result.stdout)
    assert word in result.stdout, (name, fmt, result.stdout, result.stderr)


@pytest.mark.parametrize(
    ("args", "accepted"),
    [
        (["completion", "bash"], ("plain", "table")),
        (["auth", "token"], ("plain", "table")),
        (["api", "GET", "/streams/sources"], ("plain", "table", "json")),
    ],
)
@pytest.mark.parametrize("fmt", OUTPUT_FORMATS)
def test_a_command_refuses_a_format_it_cannot_print(cli, world, args, accepted, fmt):
    result = cli(*args, "-o", fmt)

    if fmt in accepted:
        assert result.exit_code == 0, result.stderr
        assert result.stdout
    else:
        assert result.exit_code == 2
        assert result.stdout == ""
        lines = result.stderr.strip().splitlines()
        assert f"cannot print -o {fmt}" in lines[0]
        # One line; in JSON modes followed by the error as JSON (design.md).
        assert len(lines) == (2 if fmt in ("json", "ndjson") else 1)
        if len(lines) == 2:
            assert json.loads(lines[1])["error"]["exitCode"] == 2


def test_server_refuses_a_format_before_starting(cli):
    result = cli("server", "--port", "0", "-o", "yaml")

    assert result.exit_code == 2
    assert "cannot print -o yaml" in result.stderr


def test_a_default_format_from_the_environment_gives_way_instead(cli, world):
    result = cli("completion", "bash", env={"BOLTIC_OUTPUT": "csv"})

    assert result.exit_code == 0, result.stderr
    assert "complete" in result.stdout


def test_tail_as_a_table_piped_is_aligned_columns_with_the_whole_id(cli, api, world):
    source = world["source"]["id"]
    api.post("/streams/events", json={"sourceId": source, "type": "page_view", "userId": "u-22"})

    result = cli("debug", "tail", "web", "--max-events", "2", "-o", "table", env={"COLUMNS": "140"})

    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    ids = [e["id"] for e in api.get("/streams/events").json()["data"]][::-1]
    assert len(lines) == 2 and "\t" not in result.stdout
    # The same columns start at the same place on every line.
    for word in ("u1", "u-22"):
        assert word in result.stdout
    assert lines[0].index("u1") == lines[1].index("u-22")
    assert lines[0].index(ids[0]) == lines[1].index(ids[1])


def test_tail_csv_has_fixed_columns_and_yaml_one_document_per_event(cli, api, world):
    as_csv = cli("debug", "tail", "web", "--max-events", "1", "-o", "csv")
    as_yaml = cli("debug", "tail", "web", "--max-events", "1", "-o", "yaml")

    stored = api.get("/streams/events").json()["data"][0]
    (row,) = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert list(row) == [
        "receivedAt", "sourceId", "type", "userId", "anonymousId", "properties", "id",
    ]  # fmt: skip
    assert (row["id"], row["type"], json.loads(row["properties"])) == (
        stored["id"],
        "signup",
        {"a": 1},
    )
    (document,) = list(yaml.safe_load_all(as_yaml.stdout))
    assert document["id"] == stored["id"] and document["type"] == "signup"
