"""The PostgreSQL store (``boltic server --db postgresql://...``): ``schema`` (tables,
counting triggers, migrations under an advisory lock) and ``store`` (``PostgresStore``,
the ``Store`` interface on asyncpg). Imported only when a PostgreSQL URL is given, so
the SQLite path never loads the driver."""

from __future__ import annotations

from boltic_cli.server.store.postgres.schema import MIGRATIONS, SCHEMA_VERSION, migrate, prepare
from boltic_cli.server.store.postgres.store import PostgresStore

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "PostgresStore", "migrate", "prepare"]
