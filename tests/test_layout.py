"""Layout through the CLI against the real server, rendered at fixed widths with colour
off: every table one line per row within the terminal (cut with an ellipsis), event
ids in every event table and plain output, the status view included, help examples
one per line."""

from __future__ import annotations

import pytest

from boltic_cli.output import short_id

WIDTHS = [60, 80, 100, 200]
LONG_NAME = "website checkout funnel for the enterprise plan"


@pytest.fixture
def events(api) -> list[dict]:
    source = api.post("/streams/sources", json={"name": LONG_NAME, "type": "javascript"}).json()
    for n in range(3):
        api.post(
            "/streams/events",
            json={
                "sourceId": source["id"],
                "type": "checkout_completed_with_coupon" if n else "page_view",
                "userId": "user_1234567890abcdef",
                "properties": {"path": "/pricing/enterprise/compare", "n": n},
            },
        )
    return api.get("/streams/events").json()["data"]


def check_table(text: str, width: int, rows: int) -> list[str]:
    """The table's lines: within ``width``, one per row (plus header, plus box)."""
    lines = [line.rstrip() for line in text.splitlines()]
    assert all(len(line) <= width for line in lines), "\n".join(lines)
    boxed = lines[0].startswith("╭")
    assert len(lines) == rows + (4 if boxed else 1), "\n".join(lines)
    return lines


@pytest.mark.parametrize("tty", [False, True], ids=["piped", "terminal"])
@pytest.mark.parametrize("width", WIDTHS)
def test_events_query_table_shows_the_event_id_at_every_width(cli, events, width, tty):
    result = cli("events", "query", "-o", "table", env={"COLUMNS": str(width)}, tty=tty)

    assert result.exit_code == 0, result.stderr
    table = result.stdout.split("\n\n")[0]
    lines = check_table(table, width, len(events))
    for event in events:
        whole = event["id"] in table
        assert whole or short_id(event["id"]) in table
        if width >= 100:
            assert whole
    header = lines[1 if lines[0].startswith("╭") else 0]
    assert header.replace("│", " ").split()[-1] == "ID"


def test_plain_output_has_the_whole_event_id(cli, events):
    result = cli("events", "query", env={"COLUMNS": "60"})

    rows = [line.split("\t") for line in result.stdout.splitlines()]
    assert [row[-1] for row in rows] == [e["id"] for e in events]


@pytest.mark.parametrize("tty", [False, True], ids=["piped", "terminal"])
@pytest.mark.parametrize("width", WIDTHS)
def test_debug_status_is_one_line_per_field_and_per_event(cli, events, width, tty):
    result = cli("debug", "status", LONG_NAME, "-o", "table", env={"COLUMNS": str(width)}, tty=tty)

    assert result.exit_code == 0, result.stderr
    lines = [line.rstrip() for line in result.stdout.splitlines()]
    assert all(len(line) <= width for line in lines), "\n".join(lines)
    fields = lines[: 7 if tty else 5]
    labels = ["Source", "Status", "Connected", "Last event", "Events today"]
    for label, line in zip(labels, fields[1:-1] if tty else fields, strict=True):
        assert line.strip("│ ").startswith(label)
    # A value too long for the terminal is cut with an ellipsis, never wrapped.
    if width <= 80:
        assert "…" in fields[1 if tty else 0]
    check_table("\n".join(lines[len(fields) :]), width, len(events))
    for event in events:
        assert event["id"] in result.stdout or short_id(event["id"]) in result.stdout


@pytest.mark.parametrize("width", WIDTHS)
def test_sources_list_header_never_splits(cli, events, width):
    result = cli("sources", "list", "-o", "table", env={"COLUMNS": str(width)}, tty=True)

    lines = check_table(result.stdout, width, 1)
    header = lines[1] if lines[0].startswith("╭") else lines[0]
    assert "EVENTS TODAY" in header


@pytest.mark.parametrize("width", [60, 80, 200])
def test_tail_on_a_terminal_is_aligned_with_the_event_id(cli, events, width):
    result = cli(
        "debug", "tail", LONG_NAME, "--max-events", "3", env={"COLUMNS": str(width)}, tty=True
    )

    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 3 and all(len(line) <= width for line in lines)
    oldest_first = events[::-1]
    shown = [e["id"] if width >= 120 else short_id(e["id"]) for e in oldest_first]
    starts = {line.index(id_) for line, id_ in zip(lines, shown, strict=True)}
    assert len(starts) == 1  # the id column starts at the same place on every line


def test_completion_help_keeps_each_example_whole_on_its_own_line(cli):
    for width in ("80", "200"):
        result = cli("completion", "--help", env={"COLUMNS": width})

        examples = [line.strip() for line in result.stdout.splitlines() if " > " in line]
        assert examples == [
            "boltic completion bash > ~/.local/share/bash-completion/completions/boltic",
            'boltic completion zsh > "${fpath[1]}/_boltic"',
            "boltic completion fish > ~/.config/fish/completions/boltic.fish",
        ]


def test_generated_readme_reference_keeps_them_too():
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    reference = readme[readme.index("### `boltic completion`") :]
    assert '\n    boltic completion zsh > "${fpath[1]}/_boltic"\n' in reference
