"""Dynamic shell completion: source ids and names, profile names.

Completion runs on every TAB, often with no server up: a short timeout, a small
on-disk cache, and silence on any failure (a completer that prints breaks the shell).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

CACHE_SECONDS = 30.0
COMPLETION_TIMEOUT = 0.5


def _root_params(ctx: Any) -> dict[str, Any]:
    root = ctx.find_root() if ctx is not None else None
    return dict(root.params) if root is not None else {}


def _settings(ctx: Any):
    from boltic_cli.settings import Settings

    params = _root_params(ctx)
    return Settings.load(os.environ, profile=params.get("profile"), api_url=params.get("api_url"))


def _cache_file() -> Path:
    from boltic_cli.paths import cache_dir

    return cache_dir(os.environ) / "completion-sources.json"


def _read_cache(api_url: str, now: float) -> list[dict[str, str]] | None:
    try:
        entry = json.loads(_cache_file().read_text(encoding="utf-8")).get(api_url)
    except (OSError, ValueError, AttributeError):
        return None
    if not entry or now - float(entry.get("at", 0)) > CACHE_SECONDS:
        return None
    return entry.get("sources")


def _write_cache(api_url: str, sources: list[dict[str, str]], now: float) -> None:
    from boltic_cli.paths import write_private

    try:
        try:
            cache = json.loads(_cache_file().read_text(encoding="utf-8"))
        except (OSError, ValueError):
            cache = {}
        cache[api_url] = {"at": now, "sources": sources}
        write_private(_cache_file(), json.dumps(cache))
    except OSError:
        pass


def _fetch_sources(settings) -> list[dict[str, str]]:
    from boltic_cli.client import BolticClient

    # The read timeout also bounds the connect phase, so a dead server costs at most this.
    with BolticClient(
        settings.api_url,
        settings.token(),
        timeout=COMPLETION_TIMEOUT,
        retries=1,
    ) as client:
        return [
            {"id": s.id or "", "name": s.name or ""} for s in client.list_stream_sources() if s.id
        ]


def source_candidates(ctx: Any) -> list[dict[str, str]]:
    """The sources to offer: from the cache when fresh, else from the API; [] on failure."""
    try:
        settings = _settings(ctx)
        now = time.time()
        cached = _read_cache(settings.api_url, now)
        if cached is not None:
            return cached
        sources = _fetch_sources(settings)
        _write_cache(settings.api_url, sources, now)
        return sources
    except Exception:
        return []


def complete_source(ctx: Any, incomplete: str) -> list[tuple[str, str]]:
    """Source ids (described by their names) and names (described by their ids)."""
    out: list[tuple[str, str]] = []
    for source in source_candidates(ctx):
        if source["id"].startswith(incomplete):
            out.append((source["id"], source["name"]))
    for source in source_candidates(ctx):
        if source["name"] and source["name"].startswith(incomplete):
            out.append((source["name"], source["id"]))
    return out


def complete_profile(ctx: Any, incomplete: str) -> list[str]:
    try:
        from boltic_cli.settings import Settings

        names = Settings.load(os.environ).profile_names()
    except Exception:
        return []
    return [name for name in names if name.startswith(incomplete)]
