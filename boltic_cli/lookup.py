"""Find a stream source by its id or its exact name.

Commands take either, because people remember names and scripts keep ids.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from boltic_cli.errors import NotFound, UsageError

if TYPE_CHECKING:
    from boltic_cli.client import BolticClient
    from boltic_cli.models import StreamSource

# Ids the server hands out carry this prefix (design.md); anything else is
# looked up in the list straight away.
SOURCE_ID_PREFIX = "src_"


def resolve_source(client: BolticClient, ref: str) -> StreamSource:
    """The source whose id is ``ref`` or, failing that, whose name is exactly ``ref``."""
    if not ref:
        raise UsageError("a source id or name is required")
    if ref.startswith(SOURCE_ID_PREFIX):
        try:
            return client.get_stream_source(ref)
        except NotFound:
            pass  # a source may also be *named* like an id
    return _find_in_list(client.list_stream_sources(), ref)


def resolve_source_id(client: BolticClient, ref: str) -> str:
    """The id of the source ``ref`` names (see ``resolve_source``)."""
    source = resolve_source(client, ref)
    assert source.id is not None
    return source.id


def _find_in_list(sources: list[StreamSource], ref: str) -> StreamSource:
    by_id = [s for s in sources if s.id == ref]
    if by_id:
        return by_id[0]
    by_name = [s for s in sources if s.name == ref and s.id]
    if len(by_name) == 1:
        return by_name[0]
    if by_name:
        raise UsageError(
            f"{len(by_name)} sources are named {ref!r}; use an id",
            details=describe_matches(by_name),
        )
    raise NotFound(404, f"no source with id or name {ref!r}")


def describe_matches(sources: list[StreamSource]) -> str:
    """One ``id (type, created ...)`` per source, for choosing between them.

    The text goes into an error's ``details``: ids and types come from the server,
    so any that is not printable is shown with Python escapes (``\\x1b``), never raw.
    """
    from boltic_cli.models import format_time

    parts = []
    for source in sources:
        facts = [_printable(source.type or "unknown type")]
        if source.created_at is not None:
            facts.append(f"created {format_time(source.created_at)}")
        parts.append(f"{_printable(source.id or '')} ({', '.join(facts)})")
    return "; ".join(parts)


def _printable(text: str) -> str:
    """``text`` unchanged when printable, else with its unprintable characters escaped."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)
