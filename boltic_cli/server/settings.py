"""What a server instance is configured with, and where its admin token comes from."""

from __future__ import annotations

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
