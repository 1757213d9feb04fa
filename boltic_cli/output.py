"""Rendering results: table, plain, json, ndjson, yaml and csv.

Data goes to stdout, everything else (info, warnings) to stderr. Every command
imports this module, so Rich and PyYAML are imported only where they are used.

It also renders the live tail (``TailView``, ``Output.follow_tail``): the engine in
``tail.py`` yields records and knows nothing of how they look.

Event data is written by strangers' browsers: every text cell of table, plain and
csv output and every stderr message goes through ``sanitize``. JSON and YAML are
safe by construction once the few characters their encoders leave raw (C1,
bidirectional overrides, line separators, lone surrogates) are escaped too.
"""

from __future__ import annotations

import contextlib
import csv
import json
import re
import textwrap
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, TextIO

#: Every format ``-o`` takes (design.md, "CLI conventions"); the one list.
OUTPUT_FORMATS = ("table", "plain", "json", "ndjson", "yaml", "csv")
JSON_FORMATS = ("json", "ndjson")

if TYPE_CHECKING:
    from rich.console import Console, Group
    from rich.progress import Progress
    from rich.table import Table
    from rich.text import Text

    from boltic_cli.models import Event
    from boltic_cli.stats import EventStats
    from boltic_cli.tail import Tail, TailRecord, TailStats
    from boltic_cli.top import SourceSnapshot, TopFeed, TopSnapshot

# One event, one screen line: long properties are cut with an ellipsis, never wrapped.
ONE_LINE: dict[str, Any] = {"no_wrap": True, "overflow": "ellipsis", "crop": True}
MASK = "********"
SECRET_KEY_PARTS = ("secret", "token", "password", "apikey", "authorization", "privatekey")

# Characters a terminal may act on beyond printing them: C0, DEL, C1 (\x9b is a
# one-byte CSI on some terminals), bidirectional controls that reorder what is shown,
# line/paragraph separators, and lone surrogates (they cannot even be encoded).
_BEYOND_C0 = "\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff"
_UNSAFE_TEXT = re.compile(f"[\x00-\x1f{_BEYOND_C0}]")
# json.dumps already escapes C0; these are what it leaves raw with ensure_ascii=False.
_UNSAFE_IN_JSON = re.compile(f"[{_BEYOND_C0}]")
_NAMED_ESCAPES = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _visible_escape(char: str) -> str:
    code = ord(char)
    if char in _NAMED_ESCAPES:
        return _NAMED_ESCAPES[char]
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def sanitize(text: str) -> str:
    """``text`` with control characters and escape sequences made visible and inert.

    ``"\\x1b[31m"`` becomes the literal text ``\\x1b[31m``: the ESC that would start
    the sequence is gone, so the rest is harmless. Tabs and newlines are escaped too,
    which keeps one value on one line and in one tab-separated cell.
    """
    if not _UNSAFE_TEXT.search(text):
        return text
    return _UNSAFE_TEXT.sub(lambda m: _visible_escape(m.group()), text)


def _json_escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def dumps_json(value: Any, *, indent: int | None = None) -> str:
    """JSON that keeps non-ASCII text readable but can't drive a terminal."""
    separators = (",", ":") if indent is None else None
    text = json.dumps(value, ensure_ascii=False, indent=indent, separators=separators)
    return _UNSAFE_IN_JSON.sub(_json_escape, text)


def _is_secret_key(key: Any) -> bool:
    if not isinstance(key, str):
        return False
    normalised = key.lower().replace("_", "").replace("-", "")
    return any(part in normalised for part in SECRET_KEY_PARTS)


def mask_secrets(value: Any) -> Any:
    """A copy of ``value`` with values under secret-looking keys replaced by ``********``.

    Empty values stay as they are: that a secret is unset is worth seeing.
    """
    if isinstance(value, dict):
        return {
            k: MASK if _is_secret_key(k) and v not in (None, "") else mask_secrets(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [mask_secrets(v) for v in value]
    return value


def format_age(when: datetime, now: datetime) -> str:
    """How long ago ``when`` was, in its largest whole unit: ``12s ago``, ``3h ago``."""
    seconds = int((_aware(now) - _aware(when)).total_seconds())
    if abs(seconds) < 1:
        return "just now"
    amount = abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if amount >= size:
            text = f"{amount // size}{unit}"
            break
    return f"{text} ago" if seconds > 0 else f"in {text}"


def local_time(when: datetime) -> tuple[datetime, bool]:
    """``when`` in the machine's time zone, and True; or, when that conversion leaves
    the calendar (``9999-12-31T23:00Z`` east of UTC, ``0001-01-01T00:00Z`` west of it)
    or the platform cannot convert it, ``when`` in UTC and False. Never raises: a
    stored time, planted by anyone with a write key, must not break a view."""
    aware = _aware(when)
    try:
        return aware.astimezone(), True
    except (OverflowError, ValueError, OSError):
        return aware.astimezone(UTC), False


def format_local_time(when: datetime, now: datetime) -> str:
    """``when`` in the machine's time zone with its age: ``2026-11-26 16:49:14 (12s ago)``;
    in UTC, marked so, where local time cannot show it (``local_time``)."""
    local, is_local = local_time(when)
    zone = "" if is_local else " UTC"
    return f"{_date_time_text(local)}{zone} ({format_age(when, now)})"


def _date_time_text(value: datetime) -> str:
    # Not strftime: "%Y" does not pad years before 1000 on every platform.
    return (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d} "
        f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}"
    )


def cell_width(text: str) -> int:
    """How many terminal cells ``text`` takes (CJK and emoji are two wide). Padding and
    cutting by cells: ``pad_cells`` and ``clip_cells`` (below, with the charts)."""
    from rich.cells import cell_len

    return cell_len(text)


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return _aware(value)
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return _aware(datetime.fromisoformat(value))
    return None


def _rfc3339(value: datetime) -> str:
    from boltic_cli.models import format_time

    return format_time(value)


def to_wire(data: Any) -> Any:
    """Models as their wire dicts (``to_wire()``), lists element-wise, anything else as is."""
    if hasattr(data, "to_wire"):
        return data.to_wire()
    if isinstance(data, dict | str | bytes | int | float | bool) or data is None:
        return data
    if isinstance(data, Iterable):
        return [to_wire(item) for item in data]
    return data


def lookup(row: Any, path: str) -> Any:
    """The value at a dotted ``path`` in nested dicts, or None when any step is missing."""
    value = row
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


@dataclass(frozen=True)
class Column:
    header: str
    key: str | Callable[[dict], Any]  # dotted path into the wire dict, or a function of it
    kind: str = "text"  # text | time | json | number | secret-json | id
    max_width: int | None = None
    name: str | None = None  # plain output's label for a computed value (default: the key)

    def value(self, row: dict) -> Any:
        return self.key(row) if callable(self.key) else lookup(row, self.key)

    @property
    def label(self) -> str:
        """The name plain output puts before a single object's value: the wire path."""
        if self.name is not None:
            return self.name
        return self.key if isinstance(self.key, str) else self.header


def _guess_kind(key: str, sample: Any) -> str:
    if isinstance(sample, str) and (key.endswith("At") or key == "timestamp"):
        return "time"
    if isinstance(sample, int | float) and not isinstance(sample, bool):
        return "number"
    if isinstance(sample, dict | list):
        return "json"
    return "text"


def columns_for(rows: list[dict], fields: list[str] | None = None) -> list[Column]:
    """One column per wire field (when a command gives none): ``fields`` (a schema's,
    see ``schema_fields``) in that order whatever the rows hold, else the rows' keys in
    first-seen order."""
    samples: dict[str, Any] = dict.fromkeys(fields) if fields is not None else {}
    for row in rows:
        for key, value in row.items():
            if fields is not None and key not in samples:
                continue
            if samples.get(key) is None:
                samples[key] = value
    return [Column(key, key, _guess_kind(key, value)) for key, value in samples.items()]


def schema_fields(data: Any, model: type | None = None) -> list[str] | None:
    """The wire names of ``model``'s fields (or of the model ``data`` or its first item
    is), in the schema's order: the fixed columns of CSV and plain output, whatever
    optional fields the rows carry (issue 12). None when ``data`` is not a model."""
    from boltic_cli.models import WireModel

    if model is None:
        sample = data[0] if isinstance(data, list | tuple) and data else data
        model = type(sample) if isinstance(sample, WireModel) else None
    if model is None or not issubclass(model, WireModel):
        return None
    return [info.alias or name for name, info in model.model_fields.items()]


def _scalar_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return sanitize(value)
    if isinstance(value, datetime):
        return _rfc3339(value)
    if isinstance(value, dict | list):
        return dumps_json(value)
    return sanitize(str(value))


# OWASP "CSV injection": a cell starting with one of these is a formula to a spreadsheet.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def csv_cell(value: Any) -> str:
    """A CSV cell: ``_scalar_text`` (sanitized text, nested values as JSON), with ``'``
    before text that a spreadsheet would run as a formula: text starting with ``=``,
    ``+``, ``-``, ``@``, TAB or CR that is not a number (OWASP's advice; README,
    Security). Numbers (``-5``, ``+1.5e3``) stay as they are."""
    text = _scalar_text(value)
    if isinstance(value, str) and value.startswith(FORMULA_START) and not _NUMBER.fullmatch(value):
        return "'" + text
    return text


def _as_row(item: Any) -> dict:
    return item if isinstance(item, dict) else {"value": item}


class StatusBelow:
    """Lines scrolling above a live status line (``Output.status_below``)."""

    def __init__(self, live: Any, status_line: Callable[[], str]) -> None:
        self._live = live
        self._status_line = status_line

    @property
    def width(self) -> int:
        return self._live.console.width

    def status_text(self) -> Any:
        from rich.text import Text

        return Text(self._status_line(), style="dim", no_wrap=True, overflow="ellipsis")

    def refresh(self) -> None:
        """Redraw the status line now."""
        self._live.update(self.status_text(), refresh=True)

    def line(self, line: Any) -> None:
        """One line (text or Rich ``Text``), cut at the width, then the status redrawn."""
        self._live.console.print(line, **ONE_LINE)
        self.refresh()

    def notice(self, text: str) -> None:
        """A notice (a gap, a reconnect) in yellow among the lines."""
        from rich.text import Text

        self.line(Text(text, style="yellow"))


class Output:
    """Where a command's results go, in the format the user chose."""

    def __init__(
        self,
        *,
        format: str,
        stdout: TextIO,
        stderr: TextIO,
        color: bool,
        stdout_isatty: bool,
        stderr_isatty: bool,
        width: int | None,
        clock: Callable[[], datetime],
        stderr_color: bool | None = None,
    ) -> None:
        if format not in OUTPUT_FORMATS:
            from boltic_cli.errors import UsageError

            raise UsageError(f"unknown output format {format!r}")
        self.format = format
        self.stdout = stdout
        self.stderr = stderr
        self.color = color
        # Colour meant for a terminal on stdout would be garbage in a 2>log file.
        self.stderr_color = color and stderr_isatty if stderr_color is None else stderr_color
        self.stdout_isatty = stdout_isatty
        self.stderr_isatty = stderr_isatty
        self.width = width
        self.clock = clock
        self._progress: ProgressLine | None = None  # messages print above it while shown
        self._pager: Any = None  # the pager process while stdout goes into it
        self._unpaged_stdout = stdout

    @property
    def is_json(self) -> bool:
        return self.format in JSON_FORMATS

    def can_show(self, text: str) -> bool:
        """Whether stdout's encoding holds every character of ``text`` (a chart's "█" on
        a cp1252 console does not: it would be written as ``\\u2588`` escapes)."""
        encoding = getattr(self.stdout, "encoding", None) or "utf-8"
        try:
            text.encode(encoding)
        except (UnicodeEncodeError, LookupError):
            return False
        return True

    @cached_property
    def console(self) -> Console:
        return self._make_console(self.stdout, self.color)

    @cached_property
    def err_console(self) -> Console:
        return self._make_console(self.stderr, self.stderr_color)

    def _make_console(self, file: TextIO, color: bool) -> Console:
        from rich.console import Console

        class PipeAwareConsole(Console):
            # Rich's own answer to a closed pipe is exit 1 after pointing fd 1 at
            # /dev/null; a closed pipe (| head, a pager quit early) is app's to end
            # quietly with 0 (design.md).
            def on_broken_pipe(self) -> None:
                raise BrokenPipeError

        return PipeAwareConsole(
            file=file, force_terminal=color, no_color=not color, width=self.width, highlight=False
        )

    # data on stdout

    def emit(
        self,
        data: Any,
        *,
        columns: list[Column] | None = None,
        model: type | None = None,
        fields: list[str] | None = None,
    ) -> None:
        """Print a model, a dict, or a list of them.

        CSV (and plain without ``columns``) has one column per field of the schema
        (``model``, else the model ``data`` is made of; ``fields`` when given), in its
        order, whatever the rows hold; rows of plain dicts use their keys.
        """
        if fields is None:
            fields = schema_fields(data, model)
        wire = to_wire(data)
        if self.format == "json":
            self._write(dumps_json(wire, indent=2) + "\n")
        elif self.format == "ndjson":
            for item in wire if isinstance(wire, list) else [wire]:
                self.emit_record(item)
        elif self.format == "yaml":
            self._write(_dump_yaml(wire))
        elif self.format == "csv":
            self._write_csv(wire if isinstance(wire, list) else [wire], fields)
        elif isinstance(wire, list):
            rows = [mask_secrets(_as_row(item)) for item in wire]
            self._emit_rows(rows, columns or columns_for(rows, fields))
        elif isinstance(wire, dict):
            row = mask_secrets(wire)
            self._emit_fields(row, columns or columns_for([row], fields))
        else:
            self._write(_scalar_text(wire) + "\n")

    def emit_stream(
        self,
        items: Iterable[Any],
        *,
        columns: list[Column] | None = None,
        model: type | None = None,
    ) -> int:
        """Print items as they arrive (json, ndjson, plain; a table STREAM_CHUNK rows at a
        time, unboxed); yaml and csv print at the end.

        Columns as ``emit``'s (``model``, else the first item's). Returns how many
        items were printed.
        """
        fields = schema_fields([], model) if model is not None else None
        if self.format == "json":
            return self._stream_json(items)
        if self.format in ("ndjson", "plain"):
            count = 0
            for item in items:
                if self.format == "ndjson":
                    self.emit_record(to_wire(item))
                else:
                    if fields is None:
                        fields = schema_fields(item)
                    row = mask_secrets(_as_row(to_wire(item)))
                    columns = columns or columns_for([row], fields)
                    self._write_plain_row(row, columns)
                    self.stdout.flush()
                count += 1
            return count
        if self.format == "table":
            return self._stream_table(items, columns, fields)
        collected = list(items)
        self.emit(collected, columns=columns, fields=fields or schema_fields(collected))
        return len(collected)

    def emit_record(self, record: Any) -> None:
        """One compact JSON line, flushed at once (ndjson)."""
        self._write(dumps_json(to_wire(record)) + "\n")

    def emit_tail_record(self, record: TailRecord, view: TailView) -> None:
        """A tail record as one line: JSON (json, ndjson); else an event on stdout, a
        notice on stderr (a gap as a warning: events were missed)."""
        if self.is_json:
            self.emit_record(record.to_wire())
        elif record.kind == "event":
            self._write(view.plain_line(record) + "\n")
        elif record.kind == "gap":
            self.warn(view.notice(record))
        else:
            self.info(view.notice(record))

    def follow_tail(self, tail: Tail, view: TailView, *, max_events: int | None = None) -> None:
        """Show what ``tail`` yields until it ends, ``max_events`` events were shown, or an
        exception (Ctrl-C, SIGTERM, a fatal error) goes on up; then its summary on stderr.

        On a terminal with the table format, events scroll above a status line that
        keeps its place at the bottom (refreshed through the engine's ``on_idle``
        hook); otherwise each record is one line (``emit_tail_record``). A closed
        pipe (``| head``) ends it without a summary: the reader wants nothing more.
        """
        started = tail.clock()

        def summary(_: BaseException | None) -> str:
            return view.summary(tail.stats, elapsed=tail.clock() - started)

        with (
            self.summary_at_end(summary),
            self._tail_printer(tail, view, started) as (show, refresh),
        ):
            for record in tail.records(on_idle=refresh):
                show(record)
                if max_events and record.kind == "event" and tail.stats.shown >= max_events:
                    break

    @contextlib.contextmanager
    def _tail_printer(
        self, tail: Tail, view: TailView, started: float
    ) -> Iterator[tuple[Callable[[TailRecord], None], Callable[[], None] | None]]:
        """``(show(record), refresh())`` for the format and terminal in use."""
        if not (self.format == "table" and self.stdout_isatty):
            yield self._tail_line_printer(view), None
            return

        def status_line() -> str:
            return view.status_line(tail.stats, elapsed=tail.clock() - started, now=self.clock())

        with self.status_below(status_line) as below:

            def show(record: TailRecord) -> None:
                # "connected" lives in the status line; the rest scrolls by above it.
                if record.kind == "event":
                    below.line(view.terminal_line(record, below.width))
                elif record.kind != "connected":
                    below.notice(view.notice(record))
                else:
                    below.refresh()

            yield show, below.refresh

    def _tail_line_printer(self, view: TailView) -> Callable[[TailRecord], None]:
        """``show(record)`` off a live terminal: one flushed line (or CSV row, or YAML
        document) per event in the chosen format; notices on stderr (``emit_tail_record``).
        ``-o table`` piped prints the terminal's aligned columns without colour."""
        if self.format not in ("table", "csv", "yaml"):
            return lambda record: self.emit_tail_record(record, view)
        writer = csv.writer(self.stdout, lineterminator="\n")
        started = False

        def show(record: TailRecord) -> None:
            nonlocal started
            if record.kind != "event":
                self.emit_tail_record(record, view)
                return
            if self.format == "table":
                line = view.terminal_line(record, self.console.width)
                self.console.print(line, **ONE_LINE)
            elif self.format == "csv":
                if not started:
                    writer.writerow(view.csv_header())
                writer.writerow(view.csv_row(record))
            else:
                assert record.event is not None
                self.stdout.write("---\n" + _dump_yaml(record.event.to_wire()))
            started = True
            self.stdout.flush()

        return show

    def follow_top(self, feed: TopFeed) -> TopSnapshot:
        """Run ``debug top``'s feed and show its snapshots until it ends or Ctrl-C: on a
        terminal with the table format a full-screen Rich Live view (the alternate
        screen, restored on the way out whatever ends it), elsewhere one JSON snapshot
        per line, flushed. A one-line summary goes to stderr at the end (also on Ctrl-C);
        a closed pipe ends it quietly. Returns the last snapshot."""
        return _follow_top(self, feed)

    def emit_stats(self, stats: EventStats) -> None:
        """``events stats`` in the chosen format: json/yaml the whole object; csv, plain
        and ndjson one row per bucket and per type (``stats_rows``); a table is the bar
        chart over time and the types table, as wide as the terminal."""
        _emit_stats(self, stats)

    def emit_ids(self, ids: Iterable[Any]) -> None:
        """Only the ids (``-q``): one per line in table and plain; a JSON array of
        strings (json), one JSON string per line (ndjson), a YAML list, or a CSV
        column ``id``."""
        if self.format in ("table", "plain"):
            for id_ in ids:
                self.stdout.write(_scalar_text(id_) + "\n")
            self.stdout.flush()
        elif self.format == "csv":
            self._write_csv([{"id": id_} for id_ in ids])
        else:
            self.emit(list(ids))

    def raw(self, data: str | bytes) -> None:
        """``data`` on stdout exactly as given, flushed: no format, no sanitising.

        For what the user asked to see unchanged (``boltic api``'s answer when piped,
        ``auth token``). Bytes go to the stream's binary buffer when it has one.
        """
        if isinstance(data, bytes):
            buffer = getattr(self.stdout, "buffer", None)
            if buffer is not None:
                self.stdout.flush()
                buffer.write(data)
                buffer.flush()
                return
            data = data.decode("utf-8", errors="replace")
        self._write(data)

    def text_lines(self, lines: Iterable[str]) -> None:
        """Lines of prose on stdout (a summary after a table, a ready-to-paste command).

        Written as given (no markup, no wrapping); the caller sanitises event text.
        """
        for line in lines:
            self.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def _write(self, text: str) -> None:
        self.stdout.write(text)
        self.stdout.flush()

    def _stream_json(self, items: Iterable[Any]) -> int:
        # Written the way json.dumps(list, indent=2) lays it out, one item at a time;
        # the array is closed even when the stream is cut short, so it stays parseable.
        count = 0

        def close() -> None:
            self._write("\n]\n" if count else "]\n")

        self._write("[")
        try:
            for item in items:
                body = textwrap.indent(dumps_json(to_wire(item), indent=2), "  ")
                self._write((",\n" if count else "\n") + body)
                count += 1
        except BaseException:
            with contextlib.suppress(OSError, ValueError):
                close()
            raise
        close()
        return count

    def _write_csv(self, items: list[Any], schema: list[str] | None = None) -> None:
        # CSV is data, like JSON: secrets are masked only where people read (table, plain).
        rows = [_as_row(item) for item in items]
        if schema is not None:
            fields = schema
        else:
            fields = list(dict.fromkeys(key for row in rows for key in row))
        writer = csv.writer(self.stdout, lineterminator="\n")
        writer.writerow([csv_cell(str(field)) for field in fields])
        for row in rows:
            writer.writerow([csv_cell(row.get(field)) for field in fields])
        self.stdout.flush()

    def _write_plain_row(self, row: dict, columns: list[Column]) -> None:
        cells = (self._plain_cell(column, row) for column in columns)
        self.stdout.write("\t".join(cells) + "\n")

    def _plain_cell(self, column: Column, row: dict) -> str:
        value = column.value(row)
        if column.kind == "time" and (when := _parse_time(value)) is not None:
            return _rfc3339(when)
        if column.kind == "secret-json":
            value = mask_secrets(value)
        return _scalar_text(value)

    def _table_cell(self, column: Column, row: dict, now: datetime, *, short: bool = False) -> str:
        value = column.value(row)
        if column.kind == "time" and (when := _parse_time(value)) is not None:
            return format_age(when, now) if short else format_local_time(when, now)
        if column.kind == "secret-json":
            value = mask_secrets(value)
        return _scalar_text(value)

    def _emit_rows(self, rows: list[dict], columns: list[Column]) -> None:
        if self.format == "plain":
            for row in rows:
                self._write_plain_row(row, columns)
            self.stdout.flush()
            return
        if not rows:
            self.info("No results.")
            return
        layout = _TableLayout(columns, self.console.width, boxed=self.stdout_isatty)
        layout.fit(self._cell_variants(rows, columns))
        self._print_rows(rows, columns, layout, header=True)

    def _cell_variants(
        self, rows: list[dict], columns: list[Column]
    ) -> dict[tuple[bool, bool], list[list[str]]]:
        """The table cells of ``rows`` by (short times, short ids)."""
        now = self.clock()
        variants: dict[tuple[bool, bool], list[list[str]]] = {}
        for short_times in (False, True):
            cells = [
                [self._table_cell(column, row, now, short=short_times) for column in columns]
                for row in rows
            ]
            variants[(short_times, False)] = cells
            variants[(short_times, True)] = [
                [
                    short_id(cell) if _is_id(column) else cell
                    for column, cell in zip(columns, row_cells, strict=True)
                ]
                for row_cells in cells
            ]
        return variants

    def _print_rows(
        self, rows: list[dict], columns: list[Column], layout: _TableLayout, *, header: bool
    ) -> None:
        """``rows`` as a table in ``layout``'s widths (the header only with ``header``)."""
        from rich.text import Text

        table = self._new_table(show_header=header, boxed=layout.boxed)
        for column, width in zip(columns, layout.widths, strict=True):
            table.add_column(
                Text(column.header, no_wrap=True, overflow="ellipsis"),
                justify="right" if column.kind == "number" else "left",
                width=width,
                no_wrap=True,
                overflow="ellipsis",
            )
        cells = self._cell_variants(rows, columns)[(layout.short_times, layout.short_ids)]
        for row_cells in cells:
            table.add_row(*(Text(cell, no_wrap=True, overflow="ellipsis") for cell in row_cells))
        total = layout.total_width
        # A table that cannot fit even cut (a very narrow terminal) is printed wider.
        too_wide = total > self.console.width
        if too_wide:
            table.width = total
        self.console.print(table, crop=not too_wide)
        self.stdout.flush()

    def _stream_table(
        self, items: Iterable[Any], columns: list[Column] | None, fields: list[str] | None
    ) -> int:
        """A table printed as its rows arrive, STREAM_CHUNK rows at a time: the first
        chunk sets the column widths (and prints the header), later chunks keep them.
        Without a box, which could only be closed at the end."""
        count = 0
        chunk: list[dict] = []
        layout: _TableLayout | None = None

        def flush() -> None:
            nonlocal layout, columns
            if not chunk:
                return
            columns = columns or columns_for(chunk, fields)
            first = layout is None
            if layout is None:
                layout = _TableLayout(columns, self.console.width, boxed=False)
                layout.fit(self._cell_variants(chunk, columns))
            self._print_rows(chunk, columns, layout, header=first)
            chunk.clear()

        for item in items:
            if fields is None and not count:
                fields = schema_fields(item)
            chunk.append(mask_secrets(_as_row(to_wire(item))))
            count += 1
            if len(chunk) >= STREAM_CHUNK:
                flush()
        flush()
        if not count:
            self.info("No results.")
        return count

    # the pager

    def start_pager(self, command: str, environ: Mapping[str, str]) -> bool:
        """From now on, write stdout into ``command`` (the pager: a program and its
        arguments, split like a shell would, not run by one) instead; False when it
        cannot be started (stdout stays as it was). ``LESS=FRX``
        is set unless the environment sets ``LESS`` (as git does), so a plain ``less``
        prints short output and keeps colours. The width stays the terminal's."""
        import shlex
        import shutil
        import subprocess

        env = dict(environ)
        env.setdefault("LESS", "FRX")
        try:
            pager = subprocess.Popen(
                shlex.split(command),
                stdin=subprocess.PIPE,
                env=env,
                text=True,
                encoding="utf-8",
                errors="backslashreplace",
            )
        except (OSError, ValueError):  # not found, not executable, unbalanced quotes
            return False
        if self.width is None:
            self.width = shutil.get_terminal_size().columns
        self._pager = pager
        self._unpaged_stdout = self.stdout
        assert pager.stdin is not None
        self.stdout = pager.stdin
        self.__dict__.pop("console", None)  # a console made before writes to the old stdout
        return True

    def close_pager(self) -> None:
        """End the pager's input and wait until the user leaves it; stdout is restored."""
        pager = getattr(self, "_pager", None)
        if pager is None:
            return
        self._pager = None
        with contextlib.suppress(OSError, ValueError):
            self.stdout.close()  # BrokenPipeError when the user quit early: nothing to say
        with contextlib.suppress(KeyboardInterrupt):
            pager.wait()
        self.stdout = self._unpaged_stdout
        self.__dict__.pop("console", None)

    def _emit_fields(self, row: dict, columns: list[Column]) -> None:
        if self.format == "plain":
            for column in columns:
                self.stdout.write(f"{sanitize(column.label)}\t{self._plain_cell(column, row)}\n")
            self.stdout.flush()
            return
        from rich.cells import cell_len
        from rich.text import Text

        now = self.clock()
        values = [self._table_cell(column, row, now) for column in columns]
        table = self._new_table(show_header=False)
        label_width = max((cell_len(column.header) for column in columns), default=1)
        # One line per field, cut with an ellipsis (a long name never wraps into
        # fragments that read as continuous text); labels stay whole.
        overhead = 7 if self.stdout_isatty else 2  # "│ " + " │ " + " │", or a 2-space gap
        room = max(self.console.width - label_width - overhead, 1)
        value_width = min(max((cell_len(v) for v in values), default=1), room)
        table.add_column(style="bold", no_wrap=True, width=label_width)
        table.add_column(no_wrap=True, overflow="ellipsis", width=max(value_width, 1))
        for column, value in zip(columns, values, strict=True):
            table.add_row(Text(column.header), Text(value, no_wrap=True, overflow="ellipsis"))
        self.console.print(table)

    def _new_table(self, *, show_header: bool, boxed: bool | None = None) -> Table:
        from rich import box
        from rich.table import Table

        boxed = self.stdout_isatty if boxed is None else boxed
        return Table(
            box=box.ROUNDED if boxed else None,
            show_header=show_header,
            pad_edge=boxed,
            header_style="bold",
        )

    # messages on stderr

    @contextlib.contextmanager
    def summary_at_end(
        self, summary: Callable[[BaseException | None], str | None]
    ) -> Iterator[None]:
        """design.md: a long command prints its summary before it exits, on a signal too.

        When the block ends, the line ``summary(error)`` returns goes to stderr: after a
        normal end (``error`` None), or before an exception (Ctrl-C, SIGTERM, a fatal
        error) goes on up. Nothing when it returns None, nor on a closed pipe (``|
        head``: the reader wants nothing more). The one owner of that rule for every
        command that follows a feed (tail, forward, top, deliveries --follow).
        """
        try:
            yield
        except BrokenPipeError:
            raise
        except BaseException as error:
            self._summary_line(summary(error))
            raise
        self._summary_line(summary(None))

    def _summary_line(self, text: str | None) -> None:
        if text is not None:
            self.info(text)

    @contextlib.contextmanager
    def status_below(self, status_line: Callable[[], str]) -> Iterator[StatusBelow]:
        """On a terminal: lines printed through the ``StatusBelow`` it yields scroll up
        above a dim status line (``status_line()``, redrawn after every line and on
        ``refresh()``) that keeps its place at the bottom and leaves no trace (Rich
        ``Live``, transient). Used by ``follow_tail`` and ``follow_forward``."""
        from rich.live import Live

        live = Live(
            console=self.console,
            transient=True,
            auto_refresh=False,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        below = StatusBelow(live, status_line)
        live.update(below.status_text())
        with live:
            yield below

    @contextlib.contextmanager
    def progress(self, *counters: str, **fields: Any) -> Iterator[ProgressLine | None]:
        """A transient progress line on a terminal's stderr; None when stderr is not one.

        ``counters`` are Rich ``TextColumn`` templates over the task
        (``"{task.completed:,.0f} sent"``, ``"{task.fields[failed]:,} failed"``);
        ``fields`` their initial values. A spinner leads and the elapsed time ends
        the line. While it is shown, ``info``/``log``/``warn`` print above it.
        """
        if not self.stderr_isatty:
            yield None
            return
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        progress = Progress(
            SpinnerColumn(),
            *(TextColumn(counter) for counter in counters),
            TimeElapsedColumn(),
            console=self.err_console,
            transient=True,
        )
        line = ProgressLine(progress, progress.add_task("progress", total=None, **fields))
        with progress:
            self._progress = line
            try:
                yield line
            finally:
                self._progress = None

    def info(self, text: str) -> None:
        """A message for the user on stderr, one line, sanitised."""
        self._message(text, None)

    def log(self, line: str) -> None:
        """A diagnostic line on stderr (a server's settings, a failed item): never data,
        never styled; sanitised like every message."""
        self._message(line, None)

    def warn(self, text: str) -> None:
        self._message(f"Warning: {text}", "yellow")

    def success(self, text: str) -> None:
        self._message(text, "green")

    def _message(self, text: str, style: str | None) -> None:
        line = sanitize(text)
        if self._progress is not None:
            self._progress.print(line, style)
        elif self.stderr_color and style:
            from rich.text import Text

            self.err_console.print(Text(line, style=style), soft_wrap=True)
        else:
            self.stderr.write(line + "\n")
            self.stderr.flush()


class ProgressLine:
    """The handle ``Output.progress`` yields: move the counts, print above the line."""

    def __init__(self, progress: Progress, task: Any) -> None:
        self._progress = progress
        self._task = task

    @property
    def speed(self) -> float | None:
        """Recent completions per second, as Rich estimates it (None at first)."""
        return self._progress.tasks[0].speed

    def update(self, *, completed: float | None = None, **fields: Any) -> None:
        """Set the count and/or fields the counters show."""
        self._progress.update(self._task, completed=completed, **fields)

    def advance(self, amount: float = 1) -> None:
        """Add ``amount`` to the count."""
        self._progress.advance(self._task, amount)

    def print(self, line: str, style: str | None = None) -> None:
        """A line above the progress line (already sanitised by the caller)."""
        from rich.text import Text

        self._progress.console.print(Text(line, style=style or ""), soft_wrap=True)


# A "connected" notice names up to this many sources, else gives their count.
MAX_NAMED_SOURCES = 5


class TailView:
    """How tail records read, as text: the event lines and notices of ``debug tail``
    and ``dev``, the terminal's status line, the closing summary. No I/O here:
    ``Output.follow_tail`` and ``Output.emit_tail_record`` print them.

    Everything that came from an event is sanitised: senders are strangers.
    ``names`` maps source ids to names; with several sources each line says which.
    """

    def __init__(self, *, names: dict[str, str] | None = None, multi_source: bool = False):
        self.names = names if names is not None else {}
        self.multi_source = multi_source

    def plain_line(self, record: TailRecord) -> str:
        """One tab-separated line for a pipe: receivedAt, [source,] type, user,
        properties, id (whole)."""
        event = record.event
        assert event is not None
        cells = [_rfc3339(event.received_at) if event.received_at is not None else ""]
        if self.multi_source:
            cells.append(self._source_label(record.source_id))
        cells += [event.type or "", _event_user(event), _event_properties(event), event.id or ""]
        return "\t".join(sanitize(cell) for cell in cells)

    def terminal_line(self, record: TailRecord, width: int | None = None) -> Text:
        """The event as a styled line in columns: local time, [source,] type, id, user,
        properties (the rest of the line, cut by the caller). Source, type and user are
        padded or cut to fixed widths so lines align (narrower below WIDE_TAIL terminal
        columns, so the id stays on screen at 60); the id is whole from WHOLE_ID_WIDTH
        columns up, ``short_id`` below (``width`` None: a wide terminal)."""
        from rich.text import Text

        event = record.event
        assert event is not None
        wide = width is None or width >= WIDE_TAIL
        line = Text(no_wrap=True, overflow="ellipsis")
        line.append(_clock_time(event.received_at), style="dim")
        if self.multi_source:
            source = sanitize(self._source_label(record.source_id))
            line.append("  ")
            line.append(_fit(source, self._source_width(wide)), style="magenta")
        line.append("  ")
        type_width = TAIL_TYPE_WIDTH if wide else TAIL_TYPE_WIDTH * 2 // 3
        line.append(_fit(sanitize(event.type or "?"), type_width), style="bold cyan")
        line.append("  ")
        event_id = sanitize(event.id or "")
        whole = width is None or width >= WHOLE_ID_WIDTH
        line.append(event_id if whole else short_id(event_id), style="dim")
        line.append("  ")
        user_width = TAIL_USER_WIDTH if wide else TAIL_USER_WIDTH * 2 // 3
        line.append(_fit(sanitize(_event_user(event)), user_width), style="green")
        properties = _event_properties(event)
        if properties:
            line.append("  ")
            line.append(sanitize(properties))
        return line

    def _source_width(self, wide: bool) -> int:
        from rich.cells import cell_len

        longest = max((cell_len(sanitize(n)) for n in self.names.values()), default=8)
        return min(longest, TAIL_SOURCE_WIDTH if wide else TAIL_SOURCE_WIDTH * 2 // 3)

    def csv_header(self) -> list[str]:
        """The fixed columns of ``debug tail -o csv`` (``csv_row``)."""
        return ["receivedAt", "sourceId", "type", "userId", "anonymousId", "properties", "id"]

    def csv_row(self, record: TailRecord) -> list[str]:
        """An event as CSV cells (``csv_header``), each cell as every CSV cell is written
        (``_scalar_text``: sanitised, nested values as JSON)."""
        event = record.event
        assert event is not None
        wire = event.to_wire()
        return [_scalar_text(wire.get(key)) for key in self.csv_header()]

    def notice(self, record: TailRecord) -> str:
        """A status record (gap, reconnecting, connected) as one stderr sentence."""
        source = self._source_label(record.source_id)
        info = record.info
        if record.kind == "gap":
            return f"gap in {source}: {info.get('message', 'events were missed')}"
        if record.kind == "reconnecting":
            return (
                f"reconnecting to {source} in {info.get('retryIn', 0):g}s "
                f"(attempt {info.get('attempt', 1)}: {info.get('reason', 'connection lost')})"
            )
        sources = info.get("sourceIds")
        if sources and len(sources) > 1:
            if len(sources) > MAX_NAMED_SOURCES:
                return f"connected to {len(sources)} sources"
            return "connected to " + ", ".join(self._source_label(s) for s in sources)
        return f"connected to {source}"

    def status_line(self, stats: TailStats, *, elapsed: float, now: datetime) -> str:
        """The terminal's live line: connected, last event age, shown count, rate.

        ``elapsed`` is engine-clock seconds since the tail started; ``now`` the wall clock.
        """
        if stats.connected:
            state = "connected"
        else:
            state = "reconnecting" if stats.reconnects else "connecting"
        last = format_age(stats.last_event_at, now) if stats.last_event_at else "none yet"
        rate = stats.recent_rate(stats.started + elapsed)
        return f"{state} · last event {last} · {stats.shown} shown · {rate:.1f}/s"

    def summary(self, stats: TailStats, *, elapsed: float) -> str:
        """What the tail did, for stderr when it ends."""
        gaps = f", {stats.gaps} gap{'s' if stats.gaps != 1 else ''}" if stats.gaps else ""
        rate = stats.shown / elapsed if elapsed > 0 else 0.0
        return (
            f"{stats.shown} event{'s' if stats.shown != 1 else ''} shown in {elapsed:.1f}s "
            f"({rate:.1f}/s{gaps})"
        )

    def _source_label(self, source_id: str) -> str:
        return self.names.get(source_id) or source_id


# Tail lines in columns (``TailView.terminal_line``): type and user are padded or cut
# to these widths (two thirds of them below WIDE_TAIL columns); ids are whole on
# terminals at least WHOLE_ID_WIDTH wide.
WIDE_TAIL = 100
TAIL_TYPE_WIDTH = 18
TAIL_USER_WIDTH = 16
TAIL_SOURCE_WIDTH = 16
WHOLE_ID_WIDTH = 120


def _fit(text: str, width: int) -> str:
    """``text`` padded to ``width`` cells, or cut to it with an ellipsis."""
    from rich.cells import cell_len, set_cell_size

    if cell_len(text) > width:
        return set_cell_size(text, width - 1) + "…"
    return set_cell_size(text, width)


def _event_user(event: Event) -> str:
    return event.user_id or event.anonymous_id or ""


def _event_properties(event: Event) -> str:
    return dumps_json(event.properties) if event.properties else ""


def _clock_time(value: datetime | None) -> str:
    """``HH:MM:SS.mmm`` in local time (a live tail shows today's events)."""
    if value is None:
        return "--:--:--.---"
    # local_time: a receivedAt a server sent at the calendar's edge is shown in UTC.
    local, _ = local_time(value)
    return f"{local:%H:%M:%S}.{local.microsecond // 1000:03d}"


# A streamed table (``emit_stream``) prints this many rows at a time.
STREAM_CHUNK = 100
# A text column whose values are all at most this wide (a type, a status) is cut
# only after names and JSON.
SHORT_TEXT = 16
# The narrowest a text column (a name, a type, JSON) is cut to before the table gives
# up fitting the terminal; its header is cut to it too.
NARROW = 6
# A shortened id keeps its prefix and this many characters of its (random) tail.
ID_TAIL = 6


def short_id(value: str) -> str:
    """``evt_01M8…`` ids on a narrow terminal: the prefix, an ellipsis, the last
    ID_TAIL characters (a ULID's tail is its random part, so it tells ids apart):
    ``evt_…NPNMMY``. Text that is not longer than that is returned as is."""
    prefix = value[: value.index("_") + 1] if "_" in value[:5] else ""
    if len(value) <= len(prefix) + 1 + ID_TAIL:
        return value
    return f"{prefix}…{value[-ID_TAIL:]}"


def _is_id(column: Column) -> bool:
    return column.kind == "id" or column.key == "id"


class _TableLayout:
    """Column widths for a table of one line per row that fits ``width`` terminal
    columns where it can (design: every table cuts cleanly with an ellipsis).

    Headers and numbers are never cut. In order, as room runs short: times show the
    age alone, names and JSON are cut (down to NARROW), the box goes, short text
    (types, statuses) is cut, ids show their prefix and tail (``short_id``). Below
    that the table is wider than the terminal.
    """

    def __init__(self, columns: list[Column], width: int, *, boxed: bool) -> None:
        self.columns = columns
        self.width = width
        self.boxed = boxed
        self.widths: list[int] = []
        self.short_times = False
        self.short_ids = False

    def _overhead(self, boxed: bool) -> int:
        count = len(self.columns)
        # Rich's padding is one space either side of a cell (none at the edges without
        # a box); a box adds a rule between columns and one at each edge.
        return 3 * count + 1 if boxed else 2 * (count - 1)

    @property
    def total_width(self) -> int:
        return sum(self.widths) + self._overhead(self.boxed)

    def fit(self, variants: dict[tuple[bool, bool], list[list[str]]]) -> None:
        """Choose the widths; ``variants[(short_times, short_ids)]`` are the cells."""
        from rich.cells import cell_len

        def naturals(cells: list[list[str]]) -> list[int]:
            result = []
            for index, column in enumerate(self.columns):
                widest = max((cell_len(row[index]) for row in cells), default=0)
                natural = max(widest, cell_len(column.header))
                if column.max_width is not None and not _is_id(column):
                    natural = min(natural, max(column.max_width, cell_len(column.header)))
                result.append(natural)
            return result

        def floors(cells: list[list[str]], cut_short: bool) -> list[int]:
            result = []
            for index, column in enumerate(self.columns):
                widest = max((cell_len(row[index]) for row in cells), default=0)
                header = cell_len(column.header)
                # Headers stay whole; values of ids, numbers and times too, and short
                # text (a type, a status) until nothing else can give way.
                short = column.kind == "text" and column.max_width is None and widest <= SHORT_TEXT
                if _is_id(column) or column.kind in ("number", "time") or (short and not cut_short):
                    result.append(max(widest, header))
                else:
                    result.append(max(header, min(widest, NARROW)))
            return result

        boxed_choices = (True, False) if self.boxed else (False,)
        # Whole: everything at its natural width, the long times first.
        for short_times in (False, True):
            for boxed in boxed_choices:
                wanted = naturals(variants[(short_times, False)])
                if sum(wanted) + self._overhead(boxed) <= self.width:
                    self._choose(wanted, boxed, short_times, False)
                    return
        # Cut: ages only; names and JSON share what is left, then short text; ids
        # stay whole while they fit.
        steps = [(False, False, b) for b in boxed_choices] + [(True, False, False)]
        for cut_short, short_ids, boxed in [*steps, (True, True, False)]:
            cells = variants[(True, short_ids)]
            low = floors(cells, cut_short)
            room = self.width - self._overhead(boxed)
            if sum(low) <= room or short_ids:
                self._choose(self._share(low, naturals(cells), room), boxed, True, short_ids)
                return

    def _share(self, low: list[int], high: list[int], room: int) -> list[int]:
        """From ``low``, one cell at a time round the columns that want more, while
        ``room`` lasts (water-filling: the narrowest grow first)."""
        widths = list(low)
        while sum(widths) < room:
            wanting = [i for i in range(len(widths)) if widths[i] < high[i]]
            if not wanting:
                break
            narrowest = min(wanting, key=lambda i: widths[i])
            widths[narrowest] += 1
        return widths

    def _choose(self, widths: list[int], boxed: bool, short_times: bool, short_ids: bool) -> None:
        self.widths, self.boxed = widths, boxed
        self.short_times, self.short_ids = short_times, short_ids


def _dump_yaml(data: Any) -> str:
    import yaml

    # allow_unicode keeps "café" readable, but PyYAML would then write NEL, bidi
    # controls and line separators raw; data holding any of them is escaped in full.
    readable = not _has_unsafe_text(data)
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=readable)


def _has_unsafe_text(value: Any) -> bool:
    if isinstance(value, str):
        return _UNSAFE_IN_JSON.search(value) is not None
    if isinstance(value, dict):
        return any(_has_unsafe_text(k) or _has_unsafe_text(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_unsafe_text(v) for v in value)
    return False


TEST_EVENT_TYPE = "test_event"


def curl_send_example(api_url: str, source_id: str, write_key: str) -> str:
    """The one ready-to-paste ``curl`` that POSTs a ``test_event`` to a source with its
    write key (``sources create`` and `boltic dev`'s banner), broken over lines with
    ``\\`` so it fits an 80-column terminal; every word shell-quoted.

    ``api_url`` includes ``/v1`` (design.md). The body is
    ``{"sourceId": ..., "type": "test_event"}``: short enough that the longest line
    (the Authorization header, with a 43-character write key) stays under 80 columns.
    """
    import json
    import shlex

    body = json.dumps({"sourceId": source_id, "type": TEST_EVENT_TYPE}, separators=(",", ":"))
    url = api_url.rstrip("/") + "/streams/events"
    return " \\\n  ".join(
        [
            f"curl -X POST {shlex.quote(url)}",
            f"-H {shlex.quote(f'Authorization: Bearer {write_key}')}",
            "-H 'Content-Type: application/json'",
            f"-d {shlex.quote(body)}",
        ]
    )


# -- debug forward ------------------------------------------------------------------------
#
# The forwarding engine (``forward.py``) yields ``ForwardRecord``s; these render them.

if TYPE_CHECKING:
    from boltic_cli.forward import Forwarder, ForwardRecord, ForwardStats

#: Record kinds that are one attempt at POSTing an event (stdout); the rest are notices.
FORWARD_ATTEMPTS = ("forwarded", "failed")


class ForwardView:
    """How `debug forward` reads, as text: the banner, one line per attempt, notices
    (endpoint down/up, dropped events, the tail's gap/reconnecting), the terminal's
    status line and the summary. No I/O. Event text (type, id) is sanitised; the
    receiver's reason phrase too."""

    def __init__(self, *, names: dict[str, str] | None = None, multi_source: bool = False):
        self.tail_view = TailView(names=names, multi_source=multi_source)

    @staticmethod
    def banner(
        *, sources: list[str], url: str, secret: str, filters: list[str] | None = None
    ) -> list[str]:
        """The stderr lines printed once at start: what goes where, and the secret."""
        what = "every source" if not sources else ", ".join(sources)
        lines = [f"Forwarding events of {what} to {url}"]
        if filters:
            lines.append(f"  only events with {' and '.join(filters)}")
        lines += [
            f"  signing secret  {secret}  (Standard Webhooks; --print-secret prints it)",
            "Ctrl-C to stop.",
        ]
        return [sanitize(line) for line in lines]

    @staticmethod
    def result_text(record: ForwardRecord) -> str:
        """``-> 200 OK 12 ms``, ``-> connection refused, retry in 0.5s``,
        ``-> 400 Bad Request 2 ms, skipped (rejected)``."""
        if record.status is not None:
            text = f"{record.status} {record.reason}".rstrip()
            if record.ms is not None:
                text += f" {record.ms:.0f} ms"
        else:
            text = record.reason or "no answer"
        if record.retry_in is not None:
            text += f", retry in {record.retry_in:.1f}s"
        elif record.kind == "failed":
            text += f", skipped ({record.outcome})"
        if record.attempt > 1:
            text += f" (attempt {record.attempt})"
        return "-> " + sanitize(text)

    def plain_line(self, record: ForwardRecord) -> str:
        """One tab-separated attempt line for a pipe: time (UTC), type, event id, result."""
        event = record.event
        assert event is not None
        cells = [_rfc3339(record.at), sanitize(event.type or ""), sanitize(event.id or "")]
        return "\t".join([*cells, self.result_text(record)])

    def terminal_line(self, record: ForwardRecord) -> Text:
        """The attempt as a styled line: local time, type, event id, result."""
        from rich.text import Text

        event = record.event
        assert event is not None
        if record.kind == "forwarded":
            style = "green"
        elif record.retry_in is not None:
            style = "yellow"
        else:
            style = "red"
        line = Text(no_wrap=True, overflow="ellipsis")
        line.append(_clock_time(record.at), style="dim")
        line.append("  ")
        line.append(sanitize(event.type or "?"), style="bold cyan")
        line.append("  ")
        line.append(sanitize(event.id or ""))
        line.append("  ")
        line.append(self.result_text(record), style=style)
        return line

    def notice(self, record: ForwardRecord) -> str:
        """A notice (not an attempt) as one stderr sentence."""
        info = record.info
        if record.kind == "endpoint_down":
            return (
                f"endpoint {info.get('url', '')} is down ({info.get('reason', 'no answer')}): "
                "holding events and retrying"
            )
        if record.kind == "endpoint_up":
            return f"endpoint {info.get('url', '')} is up again after {info.get('downFor', 0):.1f}s"
        if record.kind == "dropped":
            count = info.get("count", 0)
            return (
                f"dropped {count} event{'s' if count != 1 else ''}: more than "
                f"{info.get('buffer')} were waiting ({info.get('totalDropped', count)} dropped "
                "in all)"
            )
        return self.tail_view.notice(record)  # type: ignore[arg-type]

    @staticmethod
    def status_line(stats: ForwardStats, *, pending: int) -> str:
        """The terminal's live line: endpoint state and the counts."""
        if stats.endpoint_up is None:
            endpoint = "endpoint not tried yet"
        else:
            endpoint = "endpoint up" if stats.endpoint_up else "endpoint DOWN"
        api = "" if stats.connected else " · connecting to the API"
        return (
            f"{endpoint} · {stats.forwarded} forwarded · {stats.failed} failed · "
            f"{pending} pending · {stats.dropped} dropped{api}"
        )

    @staticmethod
    def summary(stats: ForwardStats, *, elapsed: float) -> str:
        """What the run did, for stderr when it ends (every end)."""
        return (
            f"forwarded {stats.forwarded}, failed {stats.failed}, dropped {stats.dropped}, "
            f"pending {stats.pending} ({stats.attempts} attempt"
            f"{'s' if stats.attempts != 1 else ''} in {elapsed:.1f}s)"
        )


def follow_forward(
    out: Output, forwarder: Forwarder, tail_records: Iterable[Any], view: ForwardView
) -> None:
    """Show what ``forwarder`` yields while forwarding ``tail_records`` until it ends or
    an exception (Ctrl-C, SIGTERM, a fatal tail error) goes on up; then its summary on
    stderr (not on a closed pipe).

    json/ndjson: every record is one JSON line with ``kind`` on stdout. Otherwise one
    line per attempt on stdout and notices on stderr; on a terminal with the table
    format the attempts scroll above a status line (Rich ``Live``).
    """
    started = forwarder.clock()

    def summary(_: BaseException | None) -> str:
        return view.summary(forwarder.stats, elapsed=forwarder.clock() - started)

    with out.summary_at_end(summary), _forward_printer(out, forwarder, view) as (show, refresh):
        for record in forwarder.records(tail_records, on_idle=refresh):
            show(record)


@contextlib.contextmanager
def _forward_printer(
    out: Output, forwarder: Forwarder, view: ForwardView
) -> Iterator[tuple[Callable[[ForwardRecord], None], Callable[[], None] | None]]:
    if out.is_json:
        yield (lambda record: out.emit_record(record.to_wire())), None
        return
    if not (out.format == "table" and out.stdout_isatty):

        def show_line(record: ForwardRecord) -> None:
            if record.kind in FORWARD_ATTEMPTS:
                out._write(view.plain_line(record) + "\n")
            elif record.kind in ("gap", "dropped", "endpoint_down"):
                out.warn(view.notice(record))
            elif record.kind != "connected":
                out.info(view.notice(record))

        yield show_line, None
        return

    def status_line() -> str:
        return view.status_line(forwarder.stats, pending=forwarder.pending)

    with out.status_below(status_line) as below:

        def show(record: ForwardRecord) -> None:
            if record.kind in FORWARD_ATTEMPTS:
                below.line(view.terminal_line(record))
            elif record.kind != "connected":
                below.notice(view.notice(record))
            else:
                below.refresh()

        yield show, below.refresh


# -- charts: debug top and events stats -----------------------------------------------------
#
# Pure functions from a snapshot or a stats result and a width to Rich Text lines, laid out
# by display width (rich.cells.cell_len: CJK and emoji take two cells), never wider than
# the width given; every text that came from events goes through sanitize first.

SPARKS = "▁▂▃▄▅▆▇█"
BAR = "█"
PARTIAL_BARS = " ▏▎▍▌▋▊▉"  # eighths of a cell
ELLIPSIS = "…"
NAME_MAX = 24
TYPE_MAX = 32
TOP_TYPES_DEFAULT = 10
STATUS_LABEL = {"connected": "● live", "reconnecting": "↻ retry", "connecting": "○ wait"}
STATUS_STYLE = {"connected": "green", "reconnecting": "yellow", "connecting": "dim"}


# -- cells ---------------------------------------------------------------------------------


def clip_cells(text: str, width: int) -> str:
    """``text`` cut to ``width`` display cells, an ellipsis marking the cut."""
    from rich.cells import cell_len, set_cell_size

    if width <= 0:
        return ""
    if cell_len(text) <= width:
        return text
    cut = set_cell_size(text, width - 1).rstrip(" ")
    # set_cell_size pads a half-cut wide character with a space: the ellipsis fills it.
    return cut + ELLIPSIS + " " * (width - 1 - cell_len(cut))


def pad_cells(text: str, width: int, *, right: bool = False) -> str:
    """``text`` clipped and padded to exactly ``width`` cells."""
    from rich.cells import cell_len

    clipped = clip_cells(text, width)
    room = " " * max(0, width - cell_len(clipped))
    return room + clipped if right else clipped + room


def bar(value: float, top: float, width: int) -> str:
    """A horizontal bar of ``value / top`` of ``width`` cells, in eighths; at least a
    sliver for any value above zero."""
    if width <= 0 or top <= 0 or value <= 0:
        return ""
    eighths = max(1, round(value / top * width * 8))
    full, rest = divmod(min(eighths, width * 8), 8)
    return BAR * full + (PARTIAL_BARS[rest] if rest else "")


def sparkline(series: list[int], width: int) -> str:
    """``series`` (oldest first) as ``width`` cells of ▁..█, scaled to its own peak;
    more points than cells are summed in groups ending at the newest; a cell with no
    events is blank."""
    if width <= 0:
        return ""
    group = max(1, -(-len(series) // width))
    points = []
    end = len(series)
    while end > 0 and len(points) < width:
        points.append(sum(series[max(0, end - group) : end]))
        end -= group
    points.reverse()
    peak = max(points, default=0)
    cells = []
    for point in points:
        if point <= 0 or peak <= 0:
            cells.append(" ")
        else:
            cells.append(SPARKS[min(len(SPARKS) - 1, (point * len(SPARKS) - 1) // peak)])
    return "".join(cells).rjust(width)


def short_number(value: float) -> str:
    """Short counts and rates: 7, 12.5, 1.2k, 3.4M."""
    if value >= 999_950:
        return f"{value / 1_000_000:.1f}M"
    if value >= 9_999.5:
        return f"{value / 1000:.1f}k"
    if value != int(value) or isinstance(value, float):
        return f"{value:.1f}" if value < 100 else f"{value:.0f}"
    return f"{int(value)}"


def _seconds(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m"


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 1:
        return "now"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit} ago"
    return f"{int(seconds)}s ago"


# -- debug top -------------------------------------------------------------------------------

# (header, width, right-aligned); the name and the sparkline take what is left.
_TOP_FIXED = [
    ("STATUS", 7, False),
    ("NOW/s", 6, True),
    ("1m/s", 6, True),
    ("TODAY", 7, True),
    ("LAST", 7, True),
    ("GAPS", 4, True),
    ("RECON", 5, True),
]


def top_view(snapshot: TopSnapshot, width: int, height: int | None = None) -> Group:
    """The full-terminal ``debug top`` picture: a header, one row per source (busiest
    first) with a sparkline of the window, then the top types with bars. Fits ``width``
    cells; with ``height`` (terminal lines) as many types as fit, else ten."""
    from rich.console import Group

    lines = top_lines(snapshot, width, height)
    return Group(*lines)


def top_lines(snapshot: TopSnapshot, width: int, height: int | None = None) -> list[Text]:
    """``top_view`` as a list of lines."""
    from rich.text import Text

    width = max(20, width)
    lines: list[Text] = []
    head = Text(no_wrap=True, overflow="ellipsis")
    head.append("boltic debug top", style="bold")
    head.append(
        f"  {len(snapshot.sources)} source{'s' if len(snapshot.sources) != 1 else ''}"
        f" · {short_number(snapshot.rate_now)}/s now"
        f" · {snapshot.events_window:,} in {snapshot.window}s"
        f" · {snapshot.events_total:,} since start · up {_seconds(snapshot.elapsed)}"
    )
    lines.append(_fit_text(head, width))
    if snapshot.gaps or snapshot.reconnects:
        warning = (
            f"! {snapshot.gaps} gap{'s' if snapshot.gaps != 1 else ''} "
            "(more arrived between two polls than a page holds: some events not counted)"
            if snapshot.gaps
            else ""
        )
        if snapshot.reconnects:
            again = f"{snapshot.reconnects} reconnect{'s' if snapshot.reconnects != 1 else ''}"
            warning = f"{warning}; {again}" if warning else f"! {again}"
        lines.append(_fit_text(Text(warning, style="yellow"), width))
    lines.append(Text(""))

    columns = _top_columns(width)
    header = Text(no_wrap=True, style="bold")
    header.append(" ".join(pad_cells(h, w, right=r) for h, w, r in columns))
    lines.append(_fit_text(header, width))
    for source in snapshot.sources:
        lines.append(_fit_text(_source_row(source, columns, sanitize), width))
    if not snapshot.sources:
        lines.append(Text("no sources yet", style="dim"))

    lines.append(Text(""))
    lines.append(_fit_text(Text(f"TOP TYPES (last {snapshot.window}s)", style="bold"), width))
    room = TOP_TYPES_DEFAULT if height is None else max(1, height - len(lines) - 1)
    shown = snapshot.types[:room]
    if not shown:
        lines.append(Text("no events in the window", style="dim"))
    labels = [clip_cells(sanitize(name) or "(none)", TYPE_MAX) for name, _ in shown]
    label_width = max((_cells(label) for label in labels), default=0)
    counts = [f"{count:,}" for _, count in shown]
    count_width = max((len(c) for c in counts), default=0)
    total = sum(count for _, count in snapshot.types) or 1
    top = shown[0][1] if shown else 0
    label_width = min(label_width, max(4, width - count_width - 10))
    bar_width = max(0, width - label_width - count_width - 7)  # " 12" " 51% "
    for label, count_text, (_, count) in zip(labels, counts, shown, strict=True):
        row = Text(no_wrap=True, overflow="ellipsis")
        row.append(pad_cells(label, label_width), style="cyan")
        row.append(" " + count_text.rjust(count_width))
        row.append(f" {count / total:>4.0%} ", style="dim")
        row.append(bar(count, top, bar_width), style="blue")
        lines.append(_fit_text(row, width))
    if len(snapshot.types) > len(shown):
        more = len(snapshot.types) - len(shown)
        lines.append(Text(f"… {more} more type{'s' if more != 1 else ''}", style="dim"))
    return lines


def _top_columns(width: int) -> list[tuple[str, int, bool]]:
    """Column headers, widths and alignment for ``width`` cells: the fixed columns,
    then the source name and the sparkline share the rest (a narrow terminal drops the
    rightmost details first; the header line still counts gaps and reconnects)."""
    fixed = list(_TOP_FIXED)
    while True:
        used = sum(w for _, w, _ in fixed) + len(fixed) + 1  # one space between columns
        left = width - used
        if left >= 20 or len(fixed) <= 3:
            break
        fixed.pop()
    name = min(NAME_MAX, max(6, left // 3))
    spark = max(0, min(60, left - name))
    return [("SOURCE", name, False), *fixed[:1], ("LAST 60s", spark, False), *fixed[1:]]


def _source_row(source: SourceSnapshot, columns: list[tuple[str, int, bool]], sanitize) -> Text:
    from rich.text import Text

    row = Text(no_wrap=True, overflow="ellipsis")
    values = {
        "SOURCE": (sanitize(source.name), "magenta"),
        "STATUS": (STATUS_LABEL.get(source.status, "?"), STATUS_STYLE.get(source.status, "")),
        "NOW/s": (short_number(source.rate_now), "bold"),
        "1m/s": (short_number(source.rate_minute), ""),
        "TODAY": ("—" if source.events_today is None else short_number(source.events_today), ""),
        "LAST": (_age(source.last_event_age), "dim"),
        "GAPS": (str(source.gaps), "yellow" if source.gaps else "dim"),
        "RECON": (str(source.reconnects), "yellow" if source.reconnects else "dim"),
    }  # fmt: skip
    for index, (header, width, right) in enumerate(columns):
        if index:
            row.append(" ")
        if header == "LAST 60s":
            row.append(sparkline(source.series, width), style="green")
            continue
        text, style = values[header]
        row.append(pad_cells(text, width, right=right), style=style)
    return row


def _fit_text(text: Text, width: int) -> Text:
    """Cut a line to ``width`` cells (by display width)."""
    from rich.cells import cell_len

    if cell_len(text.plain) > width:
        text.truncate(width, overflow="ellipsis")
    text.no_wrap = True
    return text


def _cells(text: str) -> int:
    from rich.cells import cell_len

    return cell_len(text)


# -- events stats ------------------------------------------------------------------------------


def stats_rows(stats: EventStats) -> list[dict[str, Any]]:
    """The numbers as rows for csv and plain: one per bucket (``kind`` bucket), then one
    per type over the whole window (``kind`` type), then unnamed events if any."""
    from boltic_cli.models import format_time

    rows: list[dict[str, Any]] = [
        {"kind": "bucket", "from": format_time(b.start), "to": format_time(b.end), "type": "",
         "count": b.count}
        for b in stats.buckets
    ]  # fmt: skip
    window = {"from": format_time(stats.since), "to": format_time(stats.until)}
    rows += [{"kind": "type", **window, "type": name, "count": n} for name, n in stats.types]
    if stats.unnamed:
        rows.append({"kind": "unnamed", **window, "type": "", "count": stats.unnamed})
    return rows


def bucket_label_format(stats: EventStats) -> str:
    """strftime format of the bucket labels: as short as the window and bucket allow."""
    by = stats.by
    seconds = ":%S" if by.total_seconds() % 60 else ""
    if by >= timedelta(days=1) and by.total_seconds() % 86400 == 0:
        return "%a %Y-%m-%d"
    # local_time: UTC where local time would leave the calendar (never raises).
    start, _ = local_time(stats.since)
    end, _ = local_time(stats.until - timedelta(milliseconds=1))
    if start.date() == end.date():
        return f"%H:%M{seconds}"
    if start.year == end.year:
        return f"%a %m-%d %H:%M{seconds}"
    return f"%Y-%m-%d %H:%M{seconds}"


def stats_lines(stats: EventStats, width: int) -> list[Text]:
    """The terminal view of ``events stats``: one row per bucket (local time, a bar, the
    count), then the types with their counts, shares and bars; within ``width`` cells."""
    from rich.text import Text

    width = max(30, width)
    fmt = bucket_label_format(stats)
    labels = [
        _local(bucket.start, fmt) + ("*" if bucket.partial else "") for bucket in stats.buckets
    ]
    counts = [f"{bucket.count:,}" for bucket in stats.buckets]
    label_width = max((_cells(label) for label in labels), default=0)
    count_width = max((len(c) for c in counts), default=1)
    zone = local_time(stats.since)[0].tzname() or "local"
    lines: list[Text] = []
    head = Text(no_wrap=True)
    head.append(f"Events per {_duration(stats.by)}", style="bold")
    span = f"{_local(stats.since, '%Y-%m-%d %H:%M')} to {_local(stats.until, '%Y-%m-%d %H:%M')}"
    head.append(f"  {span} ({zone})")
    lines.append(_fit_text(head, width))
    top = max((bucket.count for bucket in stats.buckets), default=0)
    bar_width = max(1, width - label_width - count_width - 2)
    for label, count_text, bucket in zip(labels, counts, stats.buckets, strict=True):
        row = Text(no_wrap=True)
        row.append(pad_cells(label, label_width), style="dim")
        row.append(" " + count_text.rjust(count_width) + " ")
        row.append(bar(bucket.count, top, bar_width), style="blue")
        lines.append(_fit_text(row, width))
    if any(bucket.partial for bucket in stats.buckets):
        lines.append(Text("* partial bucket: cut by the window's start or end", style="dim"))
    lines.append(Text(""))

    total = stats.total
    types = list(stats.types)
    if stats.unnamed:
        types.append(("(unnamed)", stats.unnamed))
    type_labels = [clip_cells(sanitize(name) or "(none)", TYPE_MAX) for name, _ in types]
    type_label_width = max([_cells("TYPE"), *(_cells(label) for label in type_labels)])
    type_counts = [f"{n:,}" for _, n in types]
    type_count_width = max([len("COUNT"), *(len(c) for c in type_counts)])
    header = Text(no_wrap=True, style="bold")
    header.append(
        pad_cells("TYPE", type_label_width) + " " + "COUNT".rjust(type_count_width) + "  SHARE"
    )
    lines.append(_fit_text(header, width))
    type_bar = max(0, width - type_label_width - type_count_width - 9)
    type_top = max((n for _, n in types), default=0)
    for label, count_text, (_, n) in zip(type_labels, type_counts, types, strict=True):
        row = Text(no_wrap=True)
        row.append(pad_cells(label, type_label_width), style="cyan")
        row.append(" " + count_text.rjust(type_count_width))
        row.append(f" {n / total if total else 0:>6.1%} ", style="dim")
        row.append(bar(n, type_top, type_bar), style="blue")
        lines.append(_fit_text(row, width))
    if not types:
        lines.append(Text("no events in the window", style="dim"))
    lines.append(Text(""))
    summary = (
        f"{total:,} event{'s' if total != 1 else ''}, {len(types)} type"
        f"{'s' if len(types) != 1 else ''}; exact counts from {stats.queries:,} queries"
    )
    lines.append(_fit_text(Text(summary, style="dim"), width))
    return lines


def _local(value: datetime, fmt: str) -> str:
    try:
        return value.astimezone().strftime(fmt)
    except (OverflowError, ValueError, OSError):
        return value.strftime(fmt) + "Z"  # cannot be shown in local time: UTC


def _duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    for unit, name in ((86400, "day"), (3600, "hour"), (60, "minute"), (1, "second")):
        if seconds % unit == 0:
            amount = seconds // unit
            return name if amount == 1 else f"{amount} {name}s"
    return f"{value.total_seconds():g} seconds"


# -- debug top and events stats on the terminal (Output.follow_top, Output.emit_stats) ---------


def _emit_stats(output: Output, stats: EventStats) -> None:
    """``events stats`` in the chosen format: json/yaml the whole object; ndjson one
    line per bucket and type (``stats_rows``); csv and plain the same rows; a table is
    the bar chart over time and the types table, as wide as the terminal."""
    if output.format in ("json", "yaml"):
        output.emit(stats.to_wire())
        return
    if output.format in ("ndjson", "csv", "plain"):
        output.emit(stats_rows(stats))
        return
    for line in stats_lines(stats, output.console.width):
        output.console.print(line, no_wrap=True, overflow="ellipsis", crop=True)


def _follow_top(output: Output, feed: TopFeed) -> TopSnapshot:
    """Run ``feed`` and show its snapshots until it ends or Ctrl-C: on a terminal with the
    table format a full-screen Rich Live view (the alternate screen, restored on the way
    out, whatever ends it), elsewhere one JSON snapshot per line, flushed. A one-line
    summary goes to stderr at the end (also on Ctrl-C); a closed pipe ends quietly."""
    last: list[TopSnapshot] = []

    def keep(snapshot: TopSnapshot) -> None:
        last[:1] = [snapshot]

    with output.summary_at_end(lambda _: top_summary(last[0]) if last else None):
        if output.format == "table" and output.stdout_isatty:
            from rich.live import Live

            console = output.console
            with Live(console=console, screen=True, auto_refresh=False, transient=True) as live:

                def show(snapshot: TopSnapshot) -> None:
                    keep(snapshot)
                    live.update(top_view(snapshot, console.width, console.height), refresh=True)

                feed.run(show)
        else:

            def emit(snapshot: TopSnapshot) -> None:
                keep(snapshot)
                output.emit_record(snapshot.to_wire())

            feed.run(emit)
    return last[0] if last else feed.aggregator.snapshot()


def top_summary(snapshot: TopSnapshot) -> str:
    """What ``debug top`` saw, for stderr when it ends."""
    sources = len(snapshot.sources)
    text = (
        f"{snapshot.events_total:,} event{'s' if snapshot.events_total != 1 else ''} from "
        f"{sources} source{'s' if sources != 1 else ''} in {_seconds(snapshot.elapsed)}"
    )
    if snapshot.gaps:
        text += f", {snapshot.gaps} gap{'s' if snapshot.gaps != 1 else ''} (events missed)"
    if snapshot.reconnects:
        text += f", {snapshot.reconnects} reconnect{'s' if snapshot.reconnects != 1 else ''}"
    return text


# -- destinations: deliveries and attempts (design.md "Destinations that deliver") ------

ANSWER_LINES = 3
ANSWER_CHARS = 300


def _last_answer(row: dict) -> Any:
    """The last attempt in a few characters: the receiver's status, else the error."""
    status = row.get("responseStatus")
    return status if status is not None else row.get("error")


def _answer_lines(row: dict) -> str:
    """The first lines of the receiver's answer, on one line (`` | `` between them)."""
    body = row.get("responseBody")
    if not isinstance(body, str) or not body.strip():
        return ""
    lines = [line.strip() for line in body.strip().splitlines()[:ANSWER_LINES]]
    text = " | ".join(line for line in lines if line)
    return text if len(text) <= ANSWER_CHARS else text[: ANSWER_CHARS - 1] + "…"


def delivery_columns(types: dict[str, str] | None = None, *, detail: bool = False) -> list[Column]:
    """A delivery row: its event (and the event's type when ``types`` knows it), state,
    attempts, last answer, next attempt (an age in tables). ``detail`` adds the ids, the
    times and the last answer's text, for one delivery shown as fields."""
    known = types or {}
    columns = [
        Column("EVENT", "eventId"),
        Column("TYPE", lambda r: known.get(r.get("eventId") or ""), max_width=24, name="type"),
        Column("STATUS", "status"),
        Column("TRIES", "attempts", kind="number"),
        Column("LAST", _last_answer, max_width=16, name="last"),
        Column("NEXT", "nextAttemptAt", kind="time"),
    ]
    if not detail:
        return columns
    return [
        Column("ID", "id"),
        Column("DESTINATION", "destinationId"),
        *[c for c in columns if c.header != "TYPE"],
        Column("CREATED", "createdAt", kind="time"),
        Column("LAST ATTEMPT", "lastAttemptAt", kind="time"),
        Column("MS", "durationMs", kind="number"),
        Column("ANSWER", _answer_lines, name="answer"),
    ]


def delivery_attempt_columns(*, detail: bool = False) -> list[Column]:
    """One attempt per row (a delivery's history); ``detail``: the fields of
    ``destinations test``'s single attempt, with the webhook and event ids."""
    if detail:
        return [
            Column("OUTCOME", "outcome"),
            Column("STATUS", "responseStatus", kind="number"),
            Column("MS", "durationMs", kind="number"),
            Column("ERROR", "error"),
            Column("ANSWER", _answer_lines, name="answer"),
            Column("WEBHOOK ID", "webhookId"),
            Column("EVENT", "eventId"),
        ]
    return [
        Column("#", "n", kind="number"),
        Column("AT", "at", kind="time"),
        Column("OUTCOME", "outcome"),
        Column("STATUS", "responseStatus", kind="number"),
        Column("MS", "durationMs", kind="number"),
        Column("ERROR / ANSWER", lambda r: r.get("error") or _answer_lines(r), name="answer"),
    ]


def follow_deliveries(output: Output, deliveries: Iterable[Any]) -> int:
    """``destinations deliveries --follow``: one line per delivery change as the feed
    yields it (a new delivery or a new attempt), flushed. JSON formats: the delivery
    object per line; plain: tab-separated fields; table: time, delivery, event, state,
    attempt number, last answer and ms. When the feed ends, or Ctrl-C (or an error
    after the first line) ends it, one summary line goes to stderr and the exception
    goes on up; a closed pipe ends it without one. Returns how many lines were printed."""
    shown = [0]

    def summary(error: BaseException | None) -> str | None:
        if isinstance(error, Exception) and not shown[0]:
            return None  # an error before anything was shown says it all on its own
        return f"{shown[0]} delivery {'update' if shown[0] == 1 else 'updates'} shown."

    with output.summary_at_end(summary):
        _print_deliveries(output, deliveries, shown)
    return shown[0]


def _print_deliveries(output: Output, deliveries: Iterable[Any], shown: list[int]) -> None:
    columns = [
        Column("AT", lambda r: r.get("lastAttemptAt") or r.get("createdAt"), kind="time"),
        Column("DELIVERY", "id"),
        Column("EVENT", "eventId"),
        Column("STATUS", "status"),
        Column("TRIES", "attempts", kind="number"),
        Column("LAST", _last_answer, name="last"),
        Column("MS", "durationMs", kind="number"),
    ]
    for delivery in deliveries:
        row = to_wire(delivery)
        if output.format in ("json", "ndjson", "yaml", "csv"):
            output.emit_record(row)
        elif output.format == "plain":
            output._write_plain_row(row, columns)
            output.stdout.flush()
        else:
            when = _parse_time(columns[0].value(row))
            cells = [_clock_time(when)] + [output._plain_cell(c, row) for c in columns[1:]]
            cells[-2] = cells[-2] or "-"
            cells[-1] = f"{cells[-1]}ms" if cells[-1] else ""
            output._write("  ".join(cells).rstrip() + "\n")
        shown[0] += 1
