"""The server's storage: one async interface (``Store``), chosen by the database URL.

Routes and background tasks use only what ``base`` defines; ``open_store(settings)``
picks the implementation: a file path is the embedded SQLite store
(``store.sqlite``); ``settings.database_url`` (``postgresql://...``) is PostgreSQL
(``store.postgres``, imported only then: the SQLite path never loads its driver).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from boltic_cli.server.store.base import (
    DAY_MS,
    IDEMPOTENCY_TTL_MS,
    MESSAGE_ID_TTL_MS,
    PRUNE_CHUNK,
    EventRecord,
    Idempotency,
    IdempotencyConflict,
    QueryResult,
    SchemaTooNew,
    SourceGone,
    SourceInfo,
    Store,
    StoredResponse,
    StoreError,
    StoreNotAvailable,
    StoreUnavailable,
    accepted,
)

if TYPE_CHECKING:
    from boltic_cli.server.settings import ServerSettings

__all__ = [
    "DAY_MS",
    "IDEMPOTENCY_TTL_MS",
    "MESSAGE_ID_TTL_MS",
    "PRUNE_CHUNK",
    "EventRecord",
    "Idempotency",
    "IdempotencyConflict",
    "QueryResult",
    "SchemaTooNew",
    "SourceGone",
    "SourceInfo",
    "Store",
    "StoreError",
    "StoreNotAvailable",
    "StoreUnavailable",
    "StoredResponse",
    "accepted",
    "make_store",
    "open_store",
    "prepare_store",
]

POSTGRES_SCHEMES = ("postgresql:", "postgres:")


def _target(settings: ServerSettings) -> str:
    return settings.database_url or str(settings.db_path)


def _refuse_unsupported(target: str) -> None:
    # A PostgreSQL URL that reached the SQLite file path (ServerSettings.db_path instead
    # of database_url): never a file named like it. The commands resolve --db with
    # settings.database_url, so this is a caller's mistake; the text names no password.
    if target.lower().startswith(POSTGRES_SCHEMES):
        raise StoreNotAvailable(
            "a PostgreSQL URL was given as the SQLite file path; "
            "give it with --db postgresql://... (or BOLTIC_DATABASE_URL)"
        )


def make_store(settings: ServerSettings) -> Store:
    """The store ``settings`` name, not yet opened. Raises StoreNotAvailable."""
    if settings.database_url is not None:
        from boltic_cli.server.store.postgres import PostgresStore

        return PostgresStore(
            settings.database_url,
            pool_size=settings.pg_pool_size,
            connect_timeout=settings.pg_connect_timeout,
            statement_timeout=settings.pg_statement_timeout,
            commit_delay=settings.commit_delay,
        )
    _refuse_unsupported(_target(settings))
    from boltic_cli.server.store.sqlite import SQLiteStore

    return SQLiteStore(settings.db_path, commit_delay=settings.commit_delay)


async def open_store(settings: ServerSettings) -> Store:
    """The store ``settings`` name, opened (schema created or migrated). Raises
    StoreNotAvailable, SchemaTooNew, StoreUnavailable."""
    store = make_store(settings)
    await store.open()
    return store


def prepare_store(settings: ServerSettings) -> None:
    """Check before serving that the database opens and its schema is current (creating
    or migrating it), so a bad path is one clear error. Raises StoreError, OSError and
    the driver's errors."""
    if settings.database_url is not None:
        from boltic_cli.server.store.postgres import prepare as prepare_postgres

        prepare_postgres(settings.database_url, settings.pg_connect_timeout)
        return
    _refuse_unsupported(_target(settings))
    from boltic_cli.server.store.sqlite import prepare

    prepare(settings.db_path)
