"""Long output on a terminal goes through a pager (git and gh do the same): a fake
``$PAGER`` records what it was given. Streaming: a table prints rows as they arrive."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

FAKE_PAGER = """\
import json, os, sys
data = sys.stdin.read()
with open(sys.argv[1], "w") as f:
    json.dump({"stdin": data, "LESS": os.environ.get("LESS"), "args": sys.argv[2:]}, f)
"""


@pytest.fixture
def pager(tmp_path: Path):
    """A pager command that records its input, environment and arguments; ``.record()``
    reads what it got (None when it never ran)."""
    script = tmp_path / "fake_pager.py"
    script.write_text(FAKE_PAGER)
    recorded = tmp_path / "paged.json"

    class Pager:
        command = f"{sys.executable} {script} {recorded}"

        def record(self):
            return json.loads(recorded.read_text()) if recorded.exists() else None

    return Pager()


@pytest.fixture
def events(api) -> list[dict]:
    source = api.post("/streams/sources", json={"name": "web", "type": "server"}).json()
    for n in range(5):
        api.post("/streams/events", json={"sourceId": source["id"], "type": f"t{n}"})
    return api.get("/streams/events").json()["data"]


def test_events_query_on_a_terminal_goes_through_boltic_pager(cli, events, pager):
    result = cli("events", "query", tty=True, env={"BOLTIC_PAGER": pager.command})

    assert result.exit_code == 0, result.stderr
    got = pager.record()
    assert got is not None, "the pager never ran"
    assert result.stdout == ""  # everything went to the pager
    for event in events:
        assert event["id"] in got["stdin"]
    assert "Total events:  5" in got["stdin"]  # the summary is paged with the table
    assert got["LESS"] == "FRX"  # as git does, unless LESS is set


def test_pager_falls_back_to_pager_and_keeps_a_users_less(cli, cli_env, events, pager):
    cli_env.pop("BOLTIC_PAGER")

    result = cli("sources", "list", tty=True, env={"PAGER": pager.command, "LESS": "-S"})

    assert result.exit_code == 0, result.stderr
    got = pager.record()
    assert "web" in got["stdin"] and got["LESS"] == "-S"


@pytest.mark.parametrize(
    ("args", "env", "tty"),
    [
        (["--no-pager"], {}, True),  # asked not to
        (["events", "query", "--no-pager"], {}, True),  # the flag works after the command too
        ([], {}, False),  # piped: never
        ([], {"BOLTIC_PAGER": ""}, True),  # turned off
        ([], {"BOLTIC_PAGER": "cat"}, True),
    ],
    ids=["--no-pager", "--no-pager-after", "piped", "empty", "cat"],
)
def test_no_pager(cli, events, pager, args, env, tty):
    argv = args if args[:2] == ["events", "query"] else [*args, "events", "query"]
    environ = {"BOLTIC_PAGER": pager.command, **env}

    result = cli(*argv, tty=tty, env=environ)

    assert result.exit_code == 0, result.stderr
    assert pager.record() is None
    assert events[0]["id"] in result.stdout


def test_a_pager_that_cannot_start_leaves_stdout_as_it_was(cli, events):
    result = cli("events", "query", tty=True, env={"BOLTIC_PAGER": "/nonexistent/pager"})

    assert result.exit_code == 0, result.stderr
    assert events[0]["id"] in result.stdout


def test_quitting_the_pager_early_ends_the_command_quietly(cli, events, tmp_path):
    # A pager that reads nothing and leaves at once, like q in less on a long table.
    result = cli("events", "query", tty=True, env={"BOLTIC_PAGER": "true"})

    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""


def test_a_streamed_table_prints_rows_before_the_rest_arrive():
    import io
    from datetime import UTC, datetime

    from boltic_cli.output import STREAM_CHUNK, Column, Output

    out = io.StringIO()
    output = Output(
        format="table",
        stdout=out,
        stderr=io.StringIO(),
        color=False,
        stdout_isatty=True,
        stderr_isatty=True,
        width=80,
        clock=lambda: datetime(2026, 11, 26, tzinfo=UTC),
    )
    seen_before: list[int] = []

    def items():
        for n in range(STREAM_CHUNK * 2 + 5):
            if n == STREAM_CHUNK + 1:
                seen_before.append(out.getvalue().count("evt_"))
            yield {"id": f"evt_{n:026d}", "type": "t" * (n % 30 + 1)}

    columns = [Column("TYPE", "type", max_width=20), Column("ID", "id", kind="id")]
    count = output.emit_stream(items(), columns=columns)

    lines = out.getvalue().splitlines()
    assert count == STREAM_CHUNK * 2 + 5
    assert seen_before == [STREAM_CHUNK]  # the first chunk was on screen already
    assert lines[0].split() == ["TYPE", "ID"] and len(lines) == count + 1  # one header
    assert len({line.index("evt_") for line in lines[1:]}) == 1  # the widths hold
    assert all(len(line) <= 80 for line in lines)
