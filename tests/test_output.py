"""Rendering: every format for a list of sources, untrusted text, secrets, streaming, ages."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import yaml

from boltic_cli.models import StreamDestination, StreamSource
from boltic_cli.output import (
    MASK,
    Column,
    Output,
    format_age,
    format_local_time,
    mask_secrets,
    sanitize,
    short_id,
)

NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)
EVIL = "evil\x1b[31mred\x07"

SOURCES = [
    StreamSource(
        id="src_01JDW8K2M3",
        name="Website",
        type="javascript",
        write_key="wk_Zx81aQ",
        status="active",
        events_today=1234,
        created_at=NOW - timedelta(seconds=12, milliseconds=400),
    ),
    StreamSource(
        id="src_01JDW8K2M4",
        name=EVIL,
        type="server",
        write_key="wk_P0q9Lm",
        status="inactive",
        events_today=0,
        created_at=NOW - timedelta(days=3),
    ),
    # Optional fields absent; Rich markup and emoji codes in a name must print as text.
    StreamSource(
        id="src_01JDW8K2M5",
        name="[bold]Mobile[/bold] café :smile:",
        type="mobile",
        status="active",
        created_at=NOW - timedelta(hours=2),
    ),
]
WIRE = [source.to_wire() for source in SOURCES]

COLUMNS = [
    Column("ID", "id"),
    Column("NAME", "name"),
    Column("TYPE", "type"),
    Column("STATUS", "status"),
    Column("EVENTS TODAY", "eventsToday", "number"),
    Column("CREATED", "createdAt", "time"),
]

DESTINATIONS = [
    StreamDestination(
        id="dst_01",
        name="hook",
        type="webhook",
        config={"url": "https://example.com/in", "headers": {"Authorization": "Bearer abc"}},
        status="active",
    ),
    StreamDestination(
        id="dst_02",
        name="warehouse",
        type="bigquery",
        config={"dataset": "events", "privateKey": "-----BEGIN KEY-----", "api_key": ""},
    ),
]


def make_output(fmt: str, *, tty: bool = False, color: bool = False, width: int = 100) -> Output:
    return Output(
        format=fmt,
        stdout=io.StringIO(),
        stderr=io.StringIO(),
        color=color,
        stdout_isatty=tty,
        stderr_isatty=tty,
        width=width,
        clock=lambda: NOW,
    )


def render(
    fmt: str, data, *, columns=None, tty: bool = False, color: bool = False, width: int = 100
):
    output = make_output(fmt, tty=tty, color=color, width=width)
    output.emit(data, columns=columns)
    return output.stdout.getvalue(), output.stderr.getvalue()


def stripped_lines(text: str) -> list[str]:
    """Rich pads every table line to the table width; compare without the padding."""
    return [line.rstrip() for line in text.splitlines()]


@pytest.fixture
def india_time(monkeypatch) -> Iterator[None]:
    """Local time is UTC+05:30 (a POSIX TZ rule, so no tz database is needed)."""
    monkeypatch.setenv("TZ", "IST-5:30")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


# --- a list of sources in every format --------------------------------------------


def test_json_list_is_the_wire_array_pretty_printed():
    out, err = render("json", SOURCES, columns=COLUMNS)
    assert json.loads(out) == WIRE
    assert out.startswith('[\n  {\n    "id": "src_01JDW8K2M3",\n')
    assert out.endswith("}\n]\n")
    assert "\x1b" not in out and "\x07" not in out
    assert '"evil\\u001b[31mred\\u0007"' in out
    assert err == ""


def test_json_single_resource_is_an_object():
    out, _ = render("json", SOURCES[0])
    assert json.loads(out) == WIRE[0]


def test_ndjson_one_compact_object_per_line():
    out, _ = render("ndjson", SOURCES, columns=COLUMNS)
    lines = out.splitlines()
    assert len(lines) == 3
    assert [json.loads(line) for line in lines] == WIRE
    assert lines[0].startswith('{"id":"src_01JDW8K2M3","name":"Website",')


def test_yaml_is_the_wire_list_in_key_order():
    out, _ = render("yaml", SOURCES, columns=COLUMNS)
    parsed = yaml.safe_load(out)
    assert parsed == WIRE
    assert [list(item) for item in parsed] == [list(item) for item in WIRE]
    assert out.startswith("- id: src_01JDW8K2M3\n  name: Website\n")
    assert "\x1b" not in out and "\x07" not in out
    assert "café" in out


def test_csv_has_every_wire_field_and_parses_back():
    out, _ = render("csv", SOURCES, columns=COLUMNS)
    rows = list(csv.DictReader(io.StringIO(out)))
    header = out.splitlines()[0].split(",")
    assert header == ["id", "name", "type", "writeKey", "status", "eventsToday", "createdAt"]
    expected = [{key: sanitize(str(source.get(key, ""))) for key in header} for source in WIRE]
    assert rows == expected
    assert rows[1]["name"] == "evil\\x1b[31mred\\x07"
    assert rows[2]["eventsToday"] == "" and rows[2]["writeKey"] == ""


def test_plain_is_tab_separated_rows_with_utc_times():
    out, _ = render("plain", SOURCES, columns=COLUMNS)
    assert out.splitlines() == [
        "src_01JDW8K2M3\tWebsite\tjavascript\tactive\t1234\t2026-11-26T11:59:47.600Z",
        "src_01JDW8K2M4\tevil\\x1b[31mred\\x07\tserver\tinactive\t0\t2026-11-23T12:00:00.000Z",
        "src_01JDW8K2M5\t[bold]Mobile[/bold] café :smile:\tmobile\tactive\t\t"
        "2026-11-26T10:00:00.000Z",
    ]


def test_table_piped_has_no_box_and_local_times_with_ages(india_time):
    out, err = render("table", SOURCES, columns=COLUMNS, width=120)
    assert stripped_lines(out) == [
        "ID              NAME                              TYPE        STATUS    EVENTS TODAY  "
        "CREATED",
        "src_01JDW8K2M3  Website                           javascript  active            1234  "
        "2026-11-26 17:29:47 (12s ago)",
        "src_01JDW8K2M4  evil\\x1b[31mred\\x07               server      inactive             0  "
        "2026-11-23 17:30:00 (3d ago)",
        "src_01JDW8K2M5  [bold]Mobile[/bold] café :smile:  mobile      active                  "
        "2026-11-26 15:30:00 (2h ago)",
    ]
    # Narrower, the times lose their dates before a name is cut; narrower still, the
    # name is cut, still one line per row.
    out, err = render("table", SOURCES, columns=COLUMNS, width=100)
    assert "12s ago" in out and "17:29:47" not in out and "café :smile:" in out
    out, err = render("table", SOURCES, columns=COLUMNS, width=80)
    lines = stripped_lines(out)
    assert len(lines) == 4 and "…" in lines[3] and ":smile:" not in out
    assert err == ""


LONG_IDS = [
    StreamSource(
        id=f"src_01M8BYP6ES6A0PP5B6X7CYW6{n}",
        name=name,
        type=type_,
        status="inactive" if n == 2 else "active",
        events_today=n * 1000,
        created_at=NOW - timedelta(seconds=8 + n),
    )
    for n, (name, type_) in enumerate(
        [("checkout-service-for-the-shop", "javascript"), ("web", "server"), ("app", "mobile")]
    )
]


@pytest.mark.parametrize("tty", [False, True], ids=["piped", "terminal"])
def test_table_at_80_columns_keeps_ids_whole_and_cuts_the_rest_on_one_line(india_time, tty):
    out, _ = render("table", LONG_IDS, columns=COLUMNS, tty=tty, width=80)
    lines = stripped_lines(out)
    assert all(len(line) <= 80 for line in lines)
    # One line per row and one header line: nothing wraps, no header splits.
    assert len(lines) == len(LONG_IDS) + 1
    assert lines[0].split() == ["ID", "NAME", "TYPE", "STATUS", "EVENTS", "TODAY", "CREATED"]
    for source in LONG_IDS:
        row = next(line for line in lines if source.id in line.split())
        assert f"{source.events_today}" in row.split()
    assert "checkout-service-for-the-shop" not in out and "…" in out
    # The local time gives way to the age alone.
    assert "8s ago" in out and "17:29" not in out


@pytest.mark.parametrize("width", [60, 80, 100, 200])
@pytest.mark.parametrize("tty", [False, True], ids=["piped", "terminal"])
def test_every_table_width_is_one_line_per_row_within_the_terminal(india_time, tty, width):
    out, _ = render("table", LONG_IDS, columns=COLUMNS, tty=tty, width=width)
    lines = stripped_lines(out)
    boxed = lines[0].startswith("╭")
    assert len(lines) == len(LONG_IDS) + (4 if boxed else 1)
    assert all(len(line) <= width for line in lines)
    assert [w for w in out.split() if w in ("EVENTS", "TODAY")][:2] == ["EVENTS", "TODAY"]
    assert "EVENTS TODAY" in out
    for source in LONG_IDS:
        shown = source.id if width >= 80 else short_id(source.id)
        assert shown in out
        assert f"{source.events_today}" in out
    if width == 200:
        assert "…" not in out and "17:29:52 (8s ago)" in out


def test_table_at_60_columns_shows_short_ids(india_time):
    out, _ = render("table", LONG_IDS, columns=COLUMNS, width=60)
    assert "src_…CYW60" not in out  # the tail is six characters
    for source in LONG_IDS:
        assert short_id(source.id) in out.split()
        assert short_id(source.id) == f"src_…{source.id[-6:]}"


def test_table_id_column_anywhere_is_kept_whole_while_it_fits(india_time):
    columns = [Column("NAME", "name", max_width=40), Column("ID", "id")]
    out, _ = render("table", LONG_IDS, columns=columns, width=40)
    for source in LONG_IDS:
        assert source.id in out.split()


def test_a_single_resource_is_one_line_per_field_cut_with_an_ellipsis(india_time):
    long_name = StreamSource(id="src_01M8BYP6ES6A0PP5B6X7CYW61", name="n" * 120, type="server")
    for tty in (False, True):
        out, _ = render("table", long_name, columns=COLUMNS[:3], tty=tty, width=60)
        lines = stripped_lines(out)
        assert len(lines) == 3 + (2 if tty else 0)
        assert all(len(line) <= 60 for line in lines)
        assert "n…" in out and "NAME" in out


def test_plain_label_of_a_computed_column_is_its_name():
    columns = [Column("Source", lambda r: r["id"], name="source"), Column("Status", "status")]
    out, _ = render("plain", SOURCES[0], columns=columns)
    assert out.splitlines() == ["source\tsrc_01JDW8K2M3", "status\tactive"]
    out, _ = render("table", SOURCES[0], columns=columns)
    assert stripped_lines(out) == ["Source  src_01JDW8K2M3", "Status  active"]


def test_table_on_a_terminal_has_a_box(india_time):
    out, _ = render("table", SOURCES[:2], columns=COLUMNS[:2] + COLUMNS[-1:], tty=True)
    assert stripped_lines(out) == [
        "╭────────────────┬─────────────────────┬───────────────────────────────╮",
        "│ ID             │ NAME                │ CREATED                       │",
        "├────────────────┼─────────────────────┼───────────────────────────────┤",
        "│ src_01JDW8K2M3 │ Website             │ 2026-11-26 17:29:47 (12s ago) │",
        "│ src_01JDW8K2M4 │ evil\\x1b[31mred\\x07 │ 2026-11-23 17:30:00 (3d ago)  │",
        "╰────────────────┴─────────────────────┴───────────────────────────────╯",
    ]


def test_table_with_colour_escapes_only_its_own_styles(india_time):
    out, _ = render("table", SOURCES, columns=COLUMNS[:2], tty=True, color=True)
    assert "\x1b[1m" in out  # the bold header
    assert "evil\\x1b[31mred\\x07" in out
    assert "\x1b[31m" not in out and "\x07" not in out


def test_single_resource_as_field_lines(india_time):
    out, _ = render("plain", SOURCES[1], columns=COLUMNS)
    assert out.splitlines() == [
        "id\tsrc_01JDW8K2M4",
        "name\tevil\\x1b[31mred\\x07",
        "type\tserver",
        "status\tinactive",
        "eventsToday\t0",
        "createdAt\t2026-11-23T12:00:00.000Z",
    ]
    out, _ = render("table", SOURCES[1], columns=COLUMNS)
    assert stripped_lines(out) == [
        "ID            src_01JDW8K2M4",
        "NAME          evil\\x1b[31mred\\x07",
        "TYPE          server",
        "STATUS        inactive",
        "EVENTS TODAY  0",
        "CREATED       2026-11-23 17:30:00 (3d ago)",
    ]


def test_without_columns_every_wire_field_is_shown():
    out, _ = render("plain", SOURCES[:1])
    assert out == "src_01JDW8K2M3\tWebsite\tjavascript\twk_Zx81aQ\tactive\t1234\t" + (
        "2026-11-26T11:59:47.600Z\n"
    )


def test_empty_list():
    assert render("json", []) == ("[]\n", "")
    assert render("ndjson", []) == ("", "")
    assert render("plain", [], columns=COLUMNS) == ("", "")
    assert yaml.safe_load(render("yaml", [])[0]) == []
    assert render("table", [], columns=COLUMNS) == ("", "No results.\n")


# --- untrusted text -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("evil\x1b[31mred\x07", "evil\\x1b[31mred\\x07"),
        ("\x1b]0;pwned\x07title", "\\x1b]0;pwned\\x07title"),  # OSC: set window title
        ("over\rwrite", "over\\rwrite"),
        ("two\nlines\tand tab", "two\\nlines\\tand tab"),
        ("c1 \x9b31m csi", "c1 \\x9b31m csi"),
        ("nel\x85 del\x7f nul\x00", "nel\\x85 del\\x7f nul\\x00"),
        ("bidi \u202egnp.exe", "bidi \\u202egnp.exe"),
        ("isolate \u2066x\u2069", "isolate \\u2066x\\u2069"),
        ("line\u2028sep", "line\\u2028sep"),
        ("lone \ud800 surrogate", "lone \\ud800 surrogate"),
    ],
)
def test_sanitize_neutralises_controls(raw, shown):
    assert sanitize(raw) == shown


@pytest.mark.parametrize(
    "text", ["plain text, with spaces", "café ünïcödé 日本語", "family 👨\u200d👩\u200d👧", ""]
)
def test_sanitize_leaves_printable_text_alone(text):
    assert sanitize(text) is text


def test_json_and_yaml_escape_what_their_encoders_leave_raw():
    source = StreamSource(id="src_x", name="c1\x9b2J nel\x85 \u202eevil café")
    for fmt, load in (("json", json.loads), ("ndjson", json.loads), ("yaml", yaml.safe_load)):
        out, _ = render(fmt, source)
        assert not any(ch in out for ch in "\x9b\x85\u202e"), fmt
        assert load(out) == source.to_wire(), fmt
    assert "café" in render("json", source)[0]


def test_messages_go_to_stderr_sanitized():
    output = make_output("plain")
    output.info(f"sent to {EVIL}")
    output.warn("gap\nforged line")
    output.success("done")
    assert output.stdout.getvalue() == ""
    assert output.stderr.getvalue() == (
        "sent to evil\\x1b[31mred\\x07\nWarning: gap\\nforged line\ndone\n"
    )


def test_emit_ids_one_per_line():
    output = make_output("plain")
    output.emit_ids(["src_1", "src_\x1b2"])
    assert output.stdout.getvalue() == "src_1\nsrc_\\x1b2\n"


# --- secrets ---------------------------------------------------------------------


def test_mask_secrets_nested_without_touching_the_input():
    config = {
        "url": "https://example.com",
        "webhookSecret": "s3cr3t",
        "auth": {"Authorization": "Bearer x", "user": "bob", "PASSWORD": "hunter2"},
        "keys": [{"api_key": "k1"}, {"apiKey": 7, "name": "n"}],
        "token": {"nested": "whole value hidden"},
        "privateKey": "",
        "writeKey": "wk_public",
    }
    assert mask_secrets(config) == {
        "url": "https://example.com",
        "webhookSecret": MASK,
        "auth": {"Authorization": MASK, "user": "bob", "PASSWORD": MASK},
        "keys": [{"api_key": MASK}, {"apiKey": MASK, "name": "n"}],
        "token": MASK,
        "privateKey": "",
        "writeKey": "wk_public",
    }
    assert config["webhookSecret"] == "s3cr3t"


def test_secrets_masked_in_table_and_plain_but_kept_in_csv_json_yaml():
    columns = [Column("ID", "id"), Column("CONFIG", "config", "json")]
    plain, _ = render("plain", DESTINATIONS, columns=columns)
    assert plain.splitlines() == [
        'dst_01\t{"url":"https://example.com/in","headers":{"Authorization":"********"}}',
        'dst_02\t{"dataset":"events","privateKey":"********","api_key":""}',
    ]
    table, _ = render("table", DESTINATIONS, columns=columns)
    assert "Bearer abc" not in table and "BEGIN KEY" not in table
    # CSV is data, like JSON: a script reading it gets the real values.
    wire = [d.to_wire() for d in DESTINATIONS]
    rows = list(csv.DictReader(io.StringIO(render("csv", DESTINATIONS)[0])))
    assert [json.loads(row["config"]) for row in rows] == [d["config"] for d in wire]
    assert MASK not in render("csv", DESTINATIONS)[0]
    assert rows[1]["status"] == ""
    assert json.loads(render("json", DESTINATIONS)[0]) == wire
    assert yaml.safe_load(render("yaml", DESTINATIONS)[0]) == wire


# --- streaming -----------------------------------------------------------------------


@pytest.mark.parametrize("count", [0, 1, 3])
def test_emit_stream_json_is_a_valid_array(count):
    output = make_output("json")
    written = output.emit_stream(source for source in SOURCES[:count])
    assert written == count
    out = output.stdout.getvalue()
    assert json.loads(out) == WIRE[:count]
    assert out == json.dumps(WIRE[:count], indent=2, ensure_ascii=False) + "\n"


def test_emit_stream_json_writes_each_item_as_it_arrives_and_closes_on_error():
    output = make_output("json")
    seen: list[str] = []

    def items():
        yield SOURCES[0]
        seen.append(output.stdout.getvalue())
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        output.emit_stream(items())
    assert '"src_01JDW8K2M3"' in seen[0]
    assert json.loads(output.stdout.getvalue()) == WIRE[:1]


def test_emit_stream_ndjson_and_plain_print_each_item_before_the_next_arrives():
    for fmt in ("ndjson", "plain"):
        output = make_output(fmt)
        lines_before_each: list[int] = []

        def items(output=output, lines_before_each=lines_before_each):
            for source in SOURCES:
                lines_before_each.append(output.stdout.getvalue().count("\n"))
                yield source

        assert output.emit_stream(items(), columns=COLUMNS) == 3
        assert lines_before_each == [0, 1, 2], fmt


def test_emit_stream_table_collects_then_prints(india_time):
    output = make_output("table")
    assert output.emit_stream(iter(SOURCES), columns=COLUMNS) == 3
    assert stripped_lines(output.stdout.getvalue()) == stripped_lines(
        render("table", SOURCES, columns=COLUMNS)[0]
    )


def test_emit_record_is_one_flushed_line():
    output = make_output("ndjson")
    output.emit_record({"kind": "gap", "missed": True, "note": "\x1b"})
    assert output.stdout.getvalue() == '{"kind":"gap","missed":true,"note":"\\u001b"}\n'


# --- times ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("delta", "age"),
    [
        (timedelta(milliseconds=300), "just now"),
        (timedelta(seconds=12), "12s ago"),
        (timedelta(seconds=59, milliseconds=999), "59s ago"),
        (timedelta(minutes=5, seconds=30), "5m ago"),
        (timedelta(hours=3, minutes=59), "3h ago"),
        (timedelta(days=9), "9d ago"),
        (timedelta(seconds=-7), "in 7s"),
    ],
)
def test_format_age(delta, age):
    assert format_age(NOW - delta, NOW) == age


def test_format_local_time_uses_the_local_zone(india_time):
    when = datetime(2026, 11, 26, 11, 59, 0, tzinfo=UTC)
    assert format_local_time(when, NOW) == "2026-11-26 17:29:00 (1m ago)"


def test_time_column_accepts_datetimes_from_a_function(india_time):
    columns = [Column("SEEN", lambda row: NOW - timedelta(seconds=90), "time")]
    assert render("plain", [{}], columns=columns)[0] == "2026-11-26T11:58:30.000Z\n"
    assert stripped_lines(render("table", [{}], columns=columns)[0])[1] == (
        "2026-11-26 17:28:30 (1m ago)"
    )


def test_importing_output_loads_neither_rich_nor_yaml_nor_pydantic():
    code = (
        "import sys, boltic_cli.output, boltic_cli.params;"
        "print(sorted(m for m in ('rich', 'yaml', 'pydantic', 'httpx') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


# -- the one route to the terminal -------------------------------------------------


def test_raw_writes_text_and_bytes_unchanged_and_log_goes_to_stderr():
    out = make_output("table")
    out.raw('{"a": 1}\n')
    out.log("database: /tmp/x.db")
    out.log("bad \x1b[2J line")
    assert out.stdout.getvalue() == '{"a": 1}\n'
    assert out.stderr.getvalue() == "database: /tmp/x.db\nbad \\x1b[2J line\n"

    class Binary(io.StringIO):
        def __init__(self) -> None:
            super().__init__()
            self.buffer = io.BytesIO()

    binary = Output(
        format="plain",
        stdout=Binary(),
        stderr=io.StringIO(),
        color=False,
        stdout_isatty=False,
        stderr_isatty=False,
        width=80,
        clock=lambda: NOW,
    )
    binary.raw(b"\xff\x00raw")
    assert binary.stdout.buffer.getvalue() == b"\xff\x00raw"
    out.raw(b"caf\xc3\xa9\n")  # no binary buffer: decoded
    assert out.stdout.getvalue().endswith("café\n")


def test_text_lines_print_prose_on_stdout_without_markup():
    out = make_output("table", tty=True, width=20)
    out.text_lines(["", "Total events:  [bold]3[/bold] and a long line that is not wrapped"])
    assert out.stdout.getvalue() == (
        "\nTotal events:  [bold]3[/bold] and a long line that is not wrapped\n"
    )


def test_progress_is_none_off_a_terminal_and_messages_print_above_it_on_one():
    quiet = make_output("table")
    with quiet.progress("{task.completed:,.0f} sent") as progress:
        assert progress is None
        quiet.log("one")
    assert quiet.stderr.getvalue() == "one\n"

    out = make_output("table", tty=True)
    with out.progress("{task.completed:,.0f} sent", "{task.fields[failed]} failed", failed=0) as p:
        assert p is not None
        p.advance()
        p.update(completed=41, failed=2)
        out.log("line 3: bad \x1b[31m")
        out.warn("careful")
    text = out.stderr.getvalue()
    assert "line 3: bad \\x1b[31m" in text and "Warning: careful" in text
    assert "\x1b[31m" not in text
    out.log("after")  # the line is gone: messages are plain again
    assert out.stderr.getvalue().endswith("after\n")


# -- the live tail's rendering -----------------------------------------------------


class ScriptedTail:
    """What Output.follow_tail needs of a Tail (clock, stats, records), with set records."""

    def __init__(self, records):
        from boltic_cli.tail import TailStats

        self.now = 0.0
        self.stats = TailStats(started=0.0)
        self._records = records
        self.idle_hooks = []

    def clock(self) -> float:
        return self.now

    def records(self, *, on_idle=None):
        self.idle_hooks.append(on_idle)
        for record in self._records:
            if on_idle is not None:
                on_idle()
            self.now += 1.0
            if record.kind == "event":
                self.stats.shown += 1
            yield record


def tail_records():
    from boltic_cli.models import Event
    from boltic_cli.tail import TailRecord

    when = datetime(2026, 11, 26, 12, 0, 1, 250000, tzinfo=UTC)
    event = Event(id="evt_1", type="sign\x1bup", received_at=when, user_id="u1")
    return [
        TailRecord("connected", "src_1"),
        TailRecord("event", "src_1", event),
        TailRecord("gap", "src_1", info={"message": "more than 500 events arrived"}),
        TailRecord("event", "src_1", event),
        TailRecord("event", "src_1", event),
    ]


def test_follow_tail_piped_prints_lines_and_a_summary_and_stops_at_max_events():
    from boltic_cli.output import TailView

    out = make_output("plain")
    tail = ScriptedTail(tail_records())
    out.follow_tail(tail, TailView(names={"src_1": "web"}), max_events=2)
    lines = out.stdout.getvalue().splitlines()
    assert lines == ["2026-11-26T12:00:01.250Z\tsign\\x1bup\tu1\t\tevt_1"] * 2
    assert out.stderr.getvalue().splitlines() == [
        "connected to web",
        "Warning: gap in web: more than 500 events arrived",
        "2 events shown in 4.0s (0.5/s)",
    ]
    assert tail.idle_hooks == [None]  # nothing to refresh off a terminal


def test_follow_tail_on_a_terminal_refreshes_through_the_idle_hook():
    from boltic_cli.output import TailView

    out = make_output("table", tty=True, width=60)
    tail = ScriptedTail(tail_records())
    out.follow_tail(tail, TailView(names={"src_1": "web"}))
    assert callable(tail.idle_hooks[0])  # the status line's refresh, not a swapped sleep
    text = out.stdout.getvalue()
    assert text.count("sign\\x1bup    evt_1  u1") == 3 and "sign\x1bup" not in text
    assert "gap in web" in text and "connected to web" not in text
    assert out.stderr.getvalue() == "3 events shown in 5.0s (0.6/s)\n"


# -- the summary of a followed feed: one rule for tail, forward, top, deliveries ----------


@pytest.mark.parametrize(
    ("error", "said"),
    [
        (None, ["end: None"]),
        (KeyboardInterrupt(), ["end: KeyboardInterrupt"]),
        (RuntimeError("boom"), ["end: RuntimeError"]),
        (BrokenPipeError(), []),  # | head: the reader wants nothing more
    ],
)
def test_summary_at_end_says_it_however_the_block_ends_but_a_closed_pipe(error, said):
    out = make_output("plain")

    def summary(seen: BaseException | None) -> str:
        assert seen is error
        return f"end: {type(seen).__name__ if seen else None}"

    with contextlib.suppress(BaseException), out.summary_at_end(summary):
        if error is not None:
            raise error
    assert out.stderr.getvalue().splitlines() == said


def test_summary_at_end_says_nothing_when_the_summary_is_none():
    out = make_output("plain")
    with pytest.raises(KeyboardInterrupt), out.summary_at_end(lambda _: None):
        raise KeyboardInterrupt
    assert out.stderr.getvalue() == ""
