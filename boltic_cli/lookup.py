"""Find a stream source by its id or its exact name.

Commands take either, because people remember names and scripts keep ids.
design.md ("Extensions beyond the spec", Ids): an argument that starts with a
resource's prefix is an id and is never looked up by name; with a write key
(``wk_...``) the CLI makes no call the key may not make, so a name cannot be
resolved with one (``UsageError``, exit 2).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from boltic_cli.errors import NotFound, UsageError

if TYPE_CHECKING:
    from boltic_cli.client import BolticClient
    from boltic_cli.models import StreamDestination, StreamSource

T = TypeVar("T", bound="StreamSource | StreamDestination")

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


def cached_source_id(client: BolticClient, ref: str, cache: SourceNameCache) -> str:
    """``resolve_source_id``, but a name it answered in the last NAME_CACHE_SECONDS
    (``cache``) costs no request. Ids and every lookup go through ``resolve_source_id``
    (its rules, e.g. for write keys, hold); only a name it resolved is cached."""
    if not ref.startswith(SOURCE_ID_PREFIX) and (cached := cache.get(ref)) is not None:
        return cached
    source_id = resolve_source_id(client, ref)
    if not ref.startswith(SOURCE_ID_PREFIX):
        cache.put(ref, source_id)
    return source_id


# How long a source name -> id answer is reused (as completion's cache: briefly, so a
# rename or delete made elsewhere is seen soon; this CLI's own create, update and
# delete clear it at once).
NAME_CACHE_SECONDS = 30.0
NAME_CACHE_FILE = "source-names.json"


class SourceNameCache:
    """Source ids by exact name, kept for NAME_CACHE_SECONDS in ``path`` (0600 JSON),
    one entry per API URL and token (the token only as a hash prefix: never on disk).

    A name is kept only once ``resolve_source`` found exactly one source by it.
    Failures to read or write the file cost a lookup, nothing more.
    """

    def __init__(
        self,
        path: Path,
        api_url: str,
        token: str | None,
        *,
        clock: Callable[[], float] = time.time,
        max_age: float = NAME_CACHE_SECONDS,
    ) -> None:
        digest = hashlib.sha256((token or "").encode()).hexdigest()[:16]
        self.path, self.key, self.clock, self.max_age = path, f"{api_url} {digest}", clock, max_age

    def get(self, name: str) -> str | None:
        """The id cached for ``name`` if looked up in the last ``max_age`` seconds."""
        found = self._names().get(name)
        if not isinstance(found, list) or len(found) != 2:
            return None
        source_id, at = found
        try:
            fresh = 0 <= self.clock() - float(at) <= self.max_age
        except (TypeError, ValueError):
            return None
        ok = fresh and isinstance(source_id, str) and source_id.startswith(SOURCE_ID_PREFIX)
        return source_id if ok else None

    def put(self, name: str, source_id: str) -> None:
        """Remember that ``name`` is ``source_id`` (as of now)."""
        names = {k: v for k, v in self._names().items() if self._fresh(v)}
        names[name] = [source_id, self.clock()]
        self._store(names)

    def forget(self) -> None:
        """Drop this API URL and token's names (after a create, rename or delete)."""
        self._store(None)

    def _names(self) -> dict[str, Any]:
        names = self._load().get(self.key)
        return names if isinstance(names, dict) else {}

    def _fresh(self, value: Any) -> bool:
        try:
            return 0 <= self.clock() - float(value[1]) <= self.max_age
        except (IndexError, KeyError, TypeError, ValueError):
            return False

    def _load(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _store(self, names: dict[str, Any] | None) -> None:
        from boltic_cli.paths import write_private

        data = {
            key: kept
            for key, value in self._load().items()
            if key != self.key and isinstance(value, dict)
            if (kept := {n: v for n, v in value.items() if self._fresh(v)})
        }
        if names:
            data[self.key] = names
        with contextlib.suppress(OSError):
            write_private(self.path, json.dumps(data))


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
    return _one_named(sources, ref, "source")


def _one_named(items: Iterable[T], ref: str, kind: str) -> T:
    """The one source or destination (``kind``) among ``items`` whose name is exactly
    ``ref`` (design.md: a command takes an id or an exact name). Several of that name
    are a ``UsageError`` listing them (``describe_matches``), none is ``NotFound``."""
    by_name = [item for item in items if item.name == ref and item.id]
    if len(by_name) == 1:
        return by_name[0]
    if by_name:
        raise UsageError(
            f"{len(by_name)} {kind}s are named {ref!r}; use an id",
            details=describe_matches(by_name),  # type: ignore[arg-type]
        )
    raise NotFound(404, f"no {kind} with id or name {ref!r}")


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


# -- destinations ------------------------------------------------------------------

DESTINATION_ID_PREFIX = "dst_"


def resolve_destination(client: BolticClient, ref: str) -> StreamDestination:
    """The destination whose id is ``ref`` (anything starting ``dst_`` is an id and is
    never looked up by name, design.md "Extensions") or whose name is exactly ``ref``.

    An id is fetched with the extension ``GET /streams/destinations/{id}``, or found in
    the spec's list when the server lacks that route. Raises ``UsageError`` for an empty
    ref or several destinations of that name, ``NotFound`` (exit 3) when none matches.
    """
    from boltic_cli.errors import ExtensionUnavailable

    if not ref:
        raise UsageError("a destination id or name is required")
    if ref.startswith(DESTINATION_ID_PREFIX):
        try:
            return client.get_stream_destination(ref)
        except ExtensionUnavailable:
            pass
        for destination in client.list_stream_destinations():
            if destination.id == ref:
                return destination
        raise NotFound(404, f"no destination with id {ref!r}")
    return _one_named(client.list_stream_destinations(), ref, "destination")


def resolve_destination_id(client: BolticClient, ref: str) -> str:
    """The id of the destination ``ref`` names (see ``resolve_destination``)."""
    destination = resolve_destination(client, ref)
    assert destination.id is not None
    return destination.id
