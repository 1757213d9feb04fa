"""What a server instance is configured with, and where its admin token comes from."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from boltic_cli.webhooks import ATTEMPT_TIMEOUT, DEFAULT_SCHEDULE

MAX_BODY_BYTES = 32 * 1024
# POST /streams/events/batch's own body limit (design.md "Batch ingest").
MAX_BATCH_BODY_BYTES = 512 * 1024


@dataclass
class ServerSettings:
    db_path: Path
    admin_token: str
    max_body_bytes: int = MAX_BODY_BYTES
    max_batch_body_bytes: int = MAX_BATCH_BODY_BYTES
    retention: timedelta | None = None
    # Test-only: sleep before each commit (inside the transaction, or before the
    # autocommitted INSERT of an event batch), so a kill can land between receiving
    # an event and committing it.
    commit_delay: float = 0.0
    # Benchmark-only: adds POST /v1/_bench/noop, a constant 202 behind the same middleware.
    bench_noop: bool = False
    # How often retention pruning and idempotency-key expiry run.
    maintenance_interval: float = 60.0
    # Log every accepted request too (refused ones are always logged): `--access-log`.
    access_log: bool = False
    # Webhook delivery (design.md, "Destinations that deliver"; boltic_cli.webhooks):
    # the pauses after each failed attempt (seconds), how long a claim is leased, how
    # long a destination may fail without a success before it is set inactive, the
    # per-attempt timeout, and how often an idle worker looks for due deliveries (a new
    # event wakes it at once: DeliveryWorker.nudge).
    delivery_schedule: tuple[float, ...] = DEFAULT_SCHEDULE
    delivery_lease: float = 60.0
    delivery_auto_disable: float = 5 * 86400.0
    delivery_timeout: float = ATTEMPT_TIMEOUT
    delivery_poll_interval: float = 0.5
    # False: no worker (deliveries are still written; they wait).
    delivery: bool = True
    # Benchmark-only: run the worker on the serving loop instead of in its own thread
    # and event loop (bench_delivery.py compares the two).
    delivery_in_loop: bool = False
    # `boltic --debug server`: library log records keep their tracebacks
    # (runner.log_config); without it they are one line each.
    debug: bool = False

    # PostgreSQL instead of the SQLite file (``--db postgresql://...`` or
    # BOLTIC_DATABASE_URL): the URL, the most connections one process holds, and the
    # connect and statement timeouts in seconds (BOLTIC_PG_POOL_SIZE,
    # BOLTIC_PG_CONNECT_TIMEOUT, BOLTIC_PG_STATEMENT_TIMEOUT).
    database_url: str | None = None
    pg_pool_size: int = 10
    pg_connect_timeout: float = 5.0
    pg_statement_timeout: float = 30.0

    def database(self) -> str:
        """The database for messages: the file, or the URL without its password."""
        if self.database_url is None:
            return str(self.db_path)
        return redact_url(self.database_url)


DATABASE_URL_ENV = "BOLTIC_DATABASE_URL"
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_database_url(text: str) -> bool:
    """A PostgreSQL URL (``postgresql://...``), as opposed to a SQLite file path."""
    return text.lower().startswith(POSTGRES_SCHEMES)


_URL_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def database_url(db: str | None, option: str = "--db") -> str | None:
    """What ``--db`` (or BOLTIC_DATABASE_URL) names: the PostgreSQL URL, or None for a
    SQLite file path (``db`` itself, or the default file when ``db`` is None).

    Anything else that looks like a URL (``scheme://``, e.g. ``mysql://`` or a mistyped
    ``postgresq://``) is a UsageError naming the scheme and what is accepted, never
    taken as a file path; the message quotes only the scheme (no password)."""
    if db is None or is_database_url(db):
        return db
    match = _URL_SCHEME.match(db)
    if match is None:
        return None
    from boltic_cli.errors import UsageError

    raise UsageError(
        f"{option}: unsupported database URL scheme {match[1] + '://'!r}",
        hint="accepted: postgresql://, postgres://, or a SQLite file path",
    )


def redact_url(url: str) -> str:
    """``url`` with the password (if any) replaced by ``***``: safe to log."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def postgres_options(environ: Mapping[str, str]) -> dict[str, float | int]:
    """Pool size and timeouts from BOLTIC_PG_* (unset: the defaults). Raises UsageError."""
    from boltic_cli.errors import UsageError

    options: dict[str, float | int] = {}
    for name, field, kind in (
        ("BOLTIC_PG_POOL_SIZE", "pg_pool_size", int),
        ("BOLTIC_PG_CONNECT_TIMEOUT", "pg_connect_timeout", float),
        ("BOLTIC_PG_STATEMENT_TIMEOUT", "pg_statement_timeout", float),
    ):
        text = environ.get(name)
        if not text:
            continue
        try:
            value = kind(text)
        except ValueError:
            value = 0
        if value <= 0:
            raise UsageError(f"{name} must be a positive number, got {text!r}")
        options[field] = value
    return options


def resolve_admin_token(environ: Mapping[str, str], token: str | None = None) -> tuple[str, str]:
    """The admin token and a description of where it is kept (never the token itself).

    An explicit token wins; otherwise the local token file's one owner
    (``settings.ensure_local_admin_token``) reads or creates it. Raises ``UsageError``
    when the file cannot be read or written.
    """
    from boltic_cli.settings import ensure_local_admin_token

    if token:
        return token, "given with --token or BOLTIC_SERVER_TOKEN"
    return ensure_local_admin_token(environ)
