"""Dynamic shell completion: source ids and names, profiles, output formats, types.

Completion runs on every TAB, often with no server up: a short timeout, a hard
deadline, a small on-disk cache, and silence on any failure (a completer that
prints or raises breaks the shell's line).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

# A fresh cache answers without asking the API.
CACHE_SECONDS = 30.0
# An older entry is still offered when the API cannot be reached.
STALE_SECONDS = 24 * 3600.0
# HTTP connect and read timeout of the source lookup.
COMPLETION_TIMEOUT = 0.5
# Everything the lookup does (settings, token, imports, HTTP) must end by then: a
# keyring that waits for an unlock prompt must not freeze the shell.
LOOKUP_DEADLINE = 0.6
# Seconds; overrides LOOKUP_DEADLINE (and the HTTP timeout with it) on a machine too
# slow or too busy for 0.6 s (the test suite sets it: a loaded CI box misses 0.6 s).
DEADLINE_ENV = "BOLTIC_COMPLETION_DEADLINE"


def lookup_deadline() -> float:
    """``$BOLTIC_COMPLETION_DEADLINE`` when it is a positive number, else LOOKUP_DEADLINE."""
    import os

    try:
        value = float(os.environ.get(DEADLINE_ENV, ""))
    except ValueError:
        return LOOKUP_DEADLINE
    return value if 0 < value <= 60 else LOOKUP_DEADLINE


CACHE_FILE = "completion-sources.json"
MAX_DESCRIPTION = 60

# Shown when completing --type of events; any type is accepted.
COMMON_EVENT_TYPES = ("page_view", "signup", "login", "purchase", "add_to_cart", "search")
# Any destination type is stored; webhook is the one the server checks.
DESTINATION_TYPES = ("webhook",)

_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# A value the shell inserts as one word without quoting trouble.
_PLAIN_WORD = re.compile(r"^[^\s\x00-\x1f\x7f-\x9f\-][^\s\x00-\x1f\x7f-\x9f]*$")

T = TypeVar("T")
Source = dict[str, str]


def _root_params(ctx: Any) -> dict[str, Any]:
    root = ctx.find_root() if ctx is not None else None
    return dict(root.params) if root is not None and root.params else {}


def _settings(ctx: Any):
    from boltic_cli.settings import Settings

    params = _root_params(ctx)
    return Settings.load(os.environ, profile=params.get("profile"), api_url=params.get("api_url"))


def _cache_file() -> Path:
    from boltic_cli.paths import cache_dir

    return cache_dir(os.environ) / CACHE_FILE


def _load_cache() -> dict[str, Any]:
    try:
        cache = json.loads(_cache_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return cache if isinstance(cache, dict) else {}


def read_cache(key: str, now: float, max_age: float) -> list[Source] | None:
    """The sources cached under ``key`` if no older than ``max_age`` seconds."""
    entry = _load_cache().get(key)
    if not isinstance(entry, dict):
        return None
    try:
        age = now - float(entry.get("at", 0))
    except (TypeError, ValueError):
        return None
    sources = entry.get("sources")
    if not 0 <= age <= max_age or not isinstance(sources, list):
        return None
    return [s for s in sources if isinstance(s, dict) and isinstance(s.get("id"), str)]


def write_cache(key: str, sources: list[Source], now: float) -> None:
    """Store ``sources`` under ``key``, dropping entries too old to be offered at all."""
    from boltic_cli.paths import write_private

    def recent(entry: Any) -> bool:
        try:
            return now - float(entry["at"]) <= STALE_SECONDS
        except (KeyError, TypeError, ValueError):
            return False

    cache = {k: v for k, v in _load_cache().items() if recent(v)}
    cache[key] = {"at": now, "sources": sources}
    # A read-only cache dir costs a lookup per TAB, nothing more.
    with contextlib.suppress(OSError):
        write_private(_cache_file(), json.dumps(cache))


def _completion_client(settings: Any) -> Any:
    """A client for one completion lookup: one try, answering within the deadline."""
    from boltic_cli.client import BolticClient

    # The client bounds the connect phase by the read timeout too.
    return BolticClient(
        settings.api_url,
        settings.token(),
        timeout=max(COMPLETION_TIMEOUT, lookup_deadline() - 0.1),
        retries=1,
    )


def _fetch_sources(settings: Any) -> list[Source]:
    with _completion_client(settings) as client:
        return [{"id": s.id, "name": s.name or ""} for s in client.list_stream_sources() if s.id]


def run_with_deadline(fn: Callable[[], T], seconds: float) -> T:
    """``fn()``, or TimeoutError when it has not returned after ``seconds``.

    The worker is a daemon thread: if it is stuck, the process still exits.
    """
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:
            box["error"] = e

    worker = threading.Thread(target=work, name="boltic-completion", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise TimeoutError(f"no answer within {seconds:g} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def _fetch_destinations(settings: Any) -> list[Source]:
    with _completion_client(settings) as client:
        return [
            {"id": d.id, "name": d.name or ""} for d in client.list_stream_destinations() if d.id
        ]


def _lookup(ctx: Any, fetch: Callable[[Any], list[Source]] = _fetch_sources) -> list[Source]:
    settings = _settings(ctx)
    key = f"{settings.profile} {settings.api_url}"
    if fetch is not _fetch_sources:
        key = f"destinations {key}"
    now = time.time()
    fresh = read_cache(key, now, CACHE_SECONDS)
    if fresh is not None:
        return fresh
    try:
        sources = fetch(settings)
    except Exception:
        return read_cache(key, now, STALE_SECONDS) or []
    write_cache(key, sources, now)
    return sources


def source_candidates(ctx: Any) -> list[Source]:
    """The sources to offer: cached when fresh, else from the API, else stale; [] on failure."""
    try:
        return run_with_deadline(lambda: _lookup(ctx), lookup_deadline())
    except BaseException:
        return []


def destination_candidates(ctx: Any) -> list[Source]:
    """``source_candidates`` for destinations (cached under their own key)."""
    try:
        return run_with_deadline(lambda: _lookup(ctx, _fetch_destinations), lookup_deadline())
    except BaseException:
        return []


def describe(text: str) -> str:
    """Text from the API made safe for a one-line completion description."""
    text = _UNPRINTABLE.sub(" ", text).strip()
    if len(text) > MAX_DESCRIPTION:
        text = text[: MAX_DESCRIPTION - 1] + "…"
    return text


def is_plain_word(text: str) -> bool:
    return bool(_PLAIN_WORD.match(text))


def _already_given(ctx: Any) -> set[str]:
    """Sources already on the line of a command taking several (``debug tail a b``)."""
    given: set[str] = set()
    params = getattr(ctx, "params", None) or {}
    for name, value in params.items():
        if "source" in name and isinstance(value, list | tuple):
            given.update(v for v in value if isinstance(v, str))
    return given


def complete_source(ctx: Any, incomplete: str) -> list[tuple[str, str]]:
    """Source ids (described by their names), then names (described by their ids)."""
    return _complete_ids_and_names(ctx, incomplete, source_candidates(ctx))


def _complete_ids_and_names(
    ctx: Any, incomplete: str, sources: list[Source]
) -> list[tuple[str, str]]:
    skip = _already_given(ctx)
    ids = [
        (s["id"], describe(s.get("name") or ""))
        for s in sources
        if is_plain_word(s["id"]) and s["id"].startswith(incomplete) and s["id"] not in skip
    ]
    # Names with spaces or control characters would be split or mangled by the shell;
    # their ids, described by the name, still complete.
    names = [
        (s["name"], s["id"])
        for s in sources
        if s.get("name")
        and is_plain_word(s["name"])
        and s["name"].startswith(incomplete)
        and s["name"] not in skip
        and s["name"] not in {i for i, _ in ids}
    ]
    return ids + names


def complete_destination(ctx: Any, incomplete: str) -> list[tuple[str, str]]:
    """Destination ids (described by their names), then names (described by their ids)."""
    return _complete_ids_and_names(ctx, incomplete, destination_candidates(ctx))


def complete_profile(ctx: Any, incomplete: str) -> list[str]:
    try:
        from boltic_cli.settings import ConfigFile, config_file_path

        names = ConfigFile.load(config_file_path(os.environ)).known_profiles()
    except Exception:
        return []
    return [name for name in names if name.startswith(incomplete)]


def _starting_with(values: Iterable[str], incomplete: str) -> list[str]:
    return [v for v in values if v.startswith(incomplete)]


def complete_output_format(ctx: Any, incomplete: str) -> list[str]:
    from boltic_cli.context import OUTPUT_FORMATS

    return _starting_with(OUTPUT_FORMATS, incomplete.lower())


def complete_event_type(ctx: Any, incomplete: str) -> list[str]:
    return _starting_with(COMMON_EVENT_TYPES, incomplete)


def complete_destination_type(ctx: Any, incomplete: str) -> list[str]:
    return _starting_with(DESTINATION_TYPES, incomplete)


OUTPUT_OPTIONS = ("-o", "--output")


def _output_format_items(args: list[str], incomplete: str) -> list[Any] | None:
    """Formats for ``-o`` anywhere on the line (it is global, also after the command)."""
    from boltic_cli._compat import click

    if "--" in args:
        return None
    if incomplete.startswith("--output="):
        incomplete = incomplete.partition("=")[2]
    elif not args or args[-1] not in OUTPUT_OPTIONS:
        return None
    Item = click.shell_completion.CompletionItem
    return [Item(fmt) for fmt in complete_output_format(None, incomplete)]


def _one_line(text: str) -> str:
    return re.sub(r"\s", " ", _UNPRINTABLE.sub(" ", text))


def register_shells() -> None:
    """Use boltic's bash, zsh and fish completion in place of Typer's.

    They complete ``-o`` after the command, and write descriptions as plain text: Typer
    renders them with rich, which costs an import on every TAB and rewrites text from the
    API that looks like markup.
    """
    from boltic_cli._compat import add_completion_class, completion_base_classes

    BashComplete, ZshComplete, FishComplete = completion_base_classes()

    class BolticCompletion:
        def get_completions(self, args: list[str], incomplete: str) -> list[Any]:
            items = _output_format_items(args, incomplete)
            if items is not None:
                return items
            return super().get_completions(args, incomplete)  # type: ignore[misc]

    class Bash(BolticCompletion, BashComplete):
        pass

    class Zsh(BolticCompletion, ZshComplete):
        def format_completion(self, item: Any) -> str:
            def escape(s: str) -> str:
                return (
                    s.replace('"', '""')
                    .replace("'", "''")
                    .replace("$", "\\$")
                    .replace("`", "\\`")
                    .replace(":", r"\\:")
                )

            if item.help:
                return f'"{escape(item.value)}":"{escape(_one_line(item.help))}"'
            return f'"{escape(item.value)}"'

    class Fish(BolticCompletion, FishComplete):
        def format_completion(self, item: Any) -> str:
            if item.help:
                return f"{item.value}\t{_one_line(item.help)}"
            return f"{item.value}"

    for cls in (Bash, Zsh, Fish):
        add_completion_class(cls, cls.name)
