"""Find a stream source by its id or its exact name.

Commands take either, because people remember names and scripts keep ids.
design.md ("Extensions beyond the spec", Ids): an argument that starts with a
resource's prefix is an id and is never looked up by name; with a write key
(``wk_...``) the CLI makes no call the key may not make, so a name cannot be
resolved with one (``UsageError``, exit 2).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from boltic_cli.errors import NotFound, UsageError

if TYPE_CHECKING:
    from boltic_cli.client import BolticClient
    from boltic_cli.models import StreamSource

# Ids the server hands out carry these prefixes (design.md); anything else is a name.
SOURCE_ID_PREFIX = "src_"
ID_PREFIXES = ("src_", "dst_", "evt_", "dlv_")


def is_id(ref: str) -> bool:
    """Whether ``ref`` is a resource id (starts with ``src_``, ``dst_``, ``evt_``, ``dlv_``)."""
    return ref.startswith(ID_PREFIXES)


def resolve_source(client: BolticClient, ref: str) -> StreamSource:
    """The source whose id is ``ref`` (``src_...``: fetched, never matched by name),
    else the one source named exactly ``ref``.

    Raises ``NotFound`` (no such id or name), ``UsageError`` (empty ``ref``, several
    sources with that name, or a write key, which may not read sources).
    """
    _check_ref(client, ref)
    if ref.startswith(SOURCE_ID_PREFIX):
        return client.get_stream_source(ref)
    return _find_in_list(client.list_stream_sources(), ref)


def resolve_source_id(client: BolticClient, ref: str) -> str:
    """The id of the source ``ref`` names: ``ref`` itself when it is an id (no request,
    so it works with a write key), else the id of the one source named ``ref``.

    Raises as ``resolve_source``; with a write key, a name is a ``UsageError``.
    """
    _check_ref(client, ref)
    if ref.startswith(SOURCE_ID_PREFIX):
        return ref
    source = resolve_source(client, ref)
    assert source.id is not None
    return source.id


def _check_ref(client: BolticClient, ref: str) -> None:
    if not ref:
        raise UsageError("a source id or name is required")
    if is_id(ref) and not ref.startswith(SOURCE_ID_PREFIX):
        raise UsageError(f"{ref!r} is not a source id (source ids start with {SOURCE_ID_PREFIX})")
    if client.is_write_key and not ref.startswith(SOURCE_ID_PREFIX):
        raise UsageError(
            f"a write key cannot look up the source named {ref!r}; give its id (src_...)"
        )


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
