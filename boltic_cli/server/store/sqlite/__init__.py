"""The embedded SQLite store: ``schema`` (tables, triggers, migrations, connections),
``writer`` (the one writer thread with group commit), ``queries`` (the SQL), and
``store`` (``SQLiteStore``, the ``Store`` interface assembled from them)."""

from __future__ import annotations

from boltic_cli.server.store.sqlite.queries import insert_events
from boltic_cli.server.store.sqlite.schema import (
    MIGRATIONS,
    SCHEMA_VERSION,
    connect,
    migrate,
    prepare,
)
from boltic_cli.server.store.sqlite.store import SQLiteStore
from boltic_cli.server.store.sqlite.writer import MAX_BATCH

__all__ = [
    "MAX_BATCH",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "SQLiteStore",
    "connect",
    "insert_events",
    "migrate",
    "prepare",
]
