"""What a server instance is configured with, and where its admin token comes from."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

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
