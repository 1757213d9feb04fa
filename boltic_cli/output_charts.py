"""How ``debug top`` and ``events stats`` look on a terminal: pure functions from a
snapshot or a stats result and a width to Rich ``Text`` lines (no I/O here).

Laid out by display width (``rich.cells.cell_len``: CJK and emoji take two cells),
never wider than the width given; every text that came from events (type names,
source names) goes through ``output.sanitize`` first. Presentation layer: to be
folded into ``output`` (it is ``output``'s, split out only while that module is
being reorganised).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Group
    from rich.text import Text

    from boltic_cli.output import Output
    from boltic_cli.stats import EventStats
    from boltic_cli.top import SourceSnapshot, TopFeed, TopSnapshot

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


def clip(text: str, width: int) -> str:
    """``text`` cut to ``width`` display cells, an ellipsis marking the cut."""
    from rich.cells import cell_len, set_cell_size

    if width <= 0:
        return ""
    if cell_len(text) <= width:
        return text
    cut = set_cell_size(text, width - 1).rstrip(" ")
    # set_cell_size pads a half-cut wide character with a space: the ellipsis fills it.
    return cut + ELLIPSIS + " " * (width - 1 - cell_len(cut))


def pad(text: str, width: int, *, right: bool = False) -> str:
    """``text`` clipped and padded to exactly ``width`` cells."""
    from rich.cells import cell_len

    clipped = clip(text, width)
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


def number(value: float) -> str:
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

    from boltic_cli.output import sanitize

    width = max(20, width)
    lines: list[Text] = []
    head = Text(no_wrap=True, overflow="ellipsis")
    head.append("boltic debug top", style="bold")
    head.append(
        f"  {len(snapshot.sources)} source{'s' if len(snapshot.sources) != 1 else ''}"
        f" · {number(snapshot.rate_now)}/s now"
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
    header.append(" ".join(pad(h, w, right=r) for h, w, r in columns))
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
    labels = [clip(sanitize(name) or "(none)", TYPE_MAX) for name, _ in shown]
    label_width = max((_cells(label) for label in labels), default=0)
    counts = [f"{count:,}" for _, count in shown]
    count_width = max((len(c) for c in counts), default=0)
    total = sum(count for _, count in snapshot.types) or 1
    top = shown[0][1] if shown else 0
    label_width = min(label_width, max(4, width - count_width - 10))
    bar_width = max(0, width - label_width - count_width - 7)  # " 12" " 51% "
    for label, count_text, (_, count) in zip(labels, counts, shown, strict=True):
        row = Text(no_wrap=True, overflow="ellipsis")
        row.append(pad(label, label_width), style="cyan")
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
        "NOW/s": (number(source.rate_now), "bold"),
        "1m/s": (number(source.rate_minute), ""),
        "TODAY": ("—" if source.events_today is None else number(source.events_today), ""),
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
        row.append(pad(text, width, right=right), style=style)
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
    start, end = stats.since.astimezone(), (stats.until - timedelta(milliseconds=1)).astimezone()
    if start.date() == end.date():
        return f"%H:%M{seconds}"
    if start.year == end.year:
        return f"%a %m-%d %H:%M{seconds}"
    return f"%Y-%m-%d %H:%M{seconds}"


def stats_lines(stats: EventStats, width: int) -> list[Text]:
    """The terminal view of ``events stats``: one row per bucket (local time, a bar, the
    count), then the types with their counts, shares and bars; within ``width`` cells."""
    from rich.text import Text

    from boltic_cli.output import sanitize

    width = max(30, width)
    fmt = bucket_label_format(stats)
    labels = [
        _local(bucket.start, fmt) + ("*" if bucket.partial else "") for bucket in stats.buckets
    ]
    counts = [f"{bucket.count:,}" for bucket in stats.buckets]
    label_width = max((_cells(label) for label in labels), default=0)
    count_width = max((len(c) for c in counts), default=1)
    zone = stats.since.astimezone().tzname() or "local"
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
        row.append(pad(label, label_width), style="dim")
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
    type_labels = [clip(sanitize(name) or "(none)", TYPE_MAX) for name, _ in types]
    type_label_width = max([_cells("TYPE"), *(_cells(label) for label in type_labels)])
    type_counts = [f"{n:,}" for _, n in types]
    type_count_width = max([len("COUNT"), *(len(c) for c in type_counts)])
    header = Text(no_wrap=True, style="bold")
    header.append(pad("TYPE", type_label_width) + " " + "COUNT".rjust(type_count_width) + "  SHARE")
    lines.append(_fit_text(header, width))
    type_bar = max(0, width - type_label_width - type_count_width - 9)
    type_top = max((n for _, n in types), default=0)
    for label, count_text, (_, n) in zip(type_labels, type_counts, types, strict=True):
        row = Text(no_wrap=True)
        row.append(pad(label, type_label_width), style="cyan")
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


# -- to the terminal (methods of Output once this module is folded into output) -----------------

PROGRESS_AFTER = 0.5  # seconds before a progress line appears: quick runs stay quiet


@contextlib.contextmanager
def stats_progress(
    output: Output, clock: Callable[[], float]
) -> Iterator[Callable[[int, int], None]]:
    """A ``(done, planned)`` callback for ``event_stats``: on a terminal's stderr, a
    transient progress bar once the run has taken more than PROGRESS_AFTER seconds;
    elsewhere it does nothing."""
    if not output.stderr_isatty:
        yield lambda done, planned: None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    started = clock()
    progress = Progress(
        TextColumn("counting events"),
        BarColumn(),
        TextColumn("{task.completed:,.0f}/{task.total:,.0f} queries"),
        TimeElapsedColumn(),
        console=output.err_console,
        transient=True,
    )
    task = progress.add_task("stats", total=1)
    shown = False

    def update(done: int, planned: int) -> None:
        nonlocal shown
        if not shown and clock() - started >= PROGRESS_AFTER:
            progress.start()
            shown = True
        progress.update(task, completed=done, total=max(planned, 1), refresh=shown)

    try:
        yield update
    finally:
        if shown:
            progress.stop()


def emit_stats(output: Output, stats: EventStats) -> None:
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


def follow_top(output: Output, feed: TopFeed) -> TopSnapshot:
    """Run ``feed`` and show its snapshots until it ends or Ctrl-C: on a terminal with the
    table format a full-screen Rich Live view (the alternate screen, restored on the way
    out, whatever ends it), elsewhere one JSON snapshot per line, flushed. A one-line
    summary goes to stderr at the end (also on Ctrl-C); a closed pipe ends quietly."""
    last: list[TopSnapshot] = []

    def keep(snapshot: TopSnapshot) -> None:
        last[:1] = [snapshot]

    try:
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
    except BrokenPipeError:
        raise
    except BaseException:
        if last:
            output.info(top_summary(last[0]))
        raise
    if last:
        output.info(top_summary(last[0]))
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
