"""The store's side of webhook delivery: destinations beyond create/list, the delivery
rows written with each event (the outbox), claims with a lease, attempts.

``DeliveryStore`` is the part of the ``Store`` interface the destination routes and
the delivery worker (``server/delivery.py``) use; ``Store`` inherits it. What each
method promises is written in docs/internals.md ("Delivery store"). A delivery is
one event for one destination: ``dlv_`` + the event id's ULID + the destination's
row number in hex, so it sorts as the event was received.

Times are integer milliseconds since the epoch (UTC).
"""

from __future__ import annotations

import abc
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

DELIVERY_STATUSES = ("pending", "succeeded", "failed")


class DestinationGone(LookupError):
    """The destination does not exist (any more): HTTP 404."""


@dataclass(frozen=True)
class Claim:
    """A delivery the caller may attempt until the lease ends: what to send and where.

    ``body`` is the Event's wire JSON text exactly as the API returns it;
    ``round_attempts`` counts the attempts since it was (re)queued (the retry schedule
    goes by it); ``config`` is the destination's parsed config (url, headers,
    signingSecret) at claim time: the worker reads it again (``delivery_targets``)
    before each attempt and sends with that."""

    delivery_id: str
    destination_id: str
    event_id: str
    body: str
    round_attempts: int
    config: Mapping[str, Any]


@dataclass(frozen=True)
class AttemptRecord:
    """The outcome of one attempt, to be recorded.

    ``outcome`` is a ``webhooks.Outcome`` value. ``next_attempt_ms`` set: the delivery
    stays pending until then; None: it is final (``succeeded`` on success, else
    ``failed``). ``disable_reason`` set: the destination is set inactive with it
    (a 410). ``response_body`` is the first 2 KiB of the answer as text."""

    delivery_id: str
    destination_id: str
    at_ms: int
    duration_ms: int
    outcome: str
    response_status: int | None = None
    error: str | None = None
    response_body: str | None = None
    next_attempt_ms: int | None = None
    disable_reason: str | None = None


class DeliveryStore(abc.ABC):
    """Destinations and their deliveries (see the module docstring)."""

    # destinations

    @abc.abstractmethod
    async def get_destination(self, destination_id: str) -> dict[str, Any] | None:
        """One destination as in ``list_destinations`` (plus ``disabled_reason`` when
        set), or None."""

    @abc.abstractmethod
    async def update_destination(
        self, destination_id: str, changes: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Set any of ``name``, ``config`` (JSON text), ``status``; setting ``status``
        clears ``disabled_reason`` and the failing streak. Returns the destination as
        ``get_destination``. Raises DestinationGone, StoreUnavailable."""

    @abc.abstractmethod
    async def delete_destination(self, destination_id: str) -> None:
        """Delete the destination with its deliveries and attempts. Raises
        DestinationGone, StoreUnavailable."""

    # deliveries: the worker

    @abc.abstractmethod
    async def claim_deliveries(
        self, now_ms: int, lease_ms: int, per_destination: int, skip: Collection[str] = ()
    ) -> list[Claim]:
        """Due pending deliveries (``next_attempt_at <= now_ms``) of active webhook
        destinations not in ``skip``, at most ``per_destination`` each, oldest due first;
        each is leased: not due again before ``now_ms + lease_ms``, so a process that
        dies holding it leaves it to be claimed again then. Two callers never get the
        same delivery within a lease (PostgreSQL: ``FOR UPDATE SKIP LOCKED``)."""

    @abc.abstractmethod
    async def record_attempts(self, records: Sequence[AttemptRecord], auto_disable_ms: int) -> None:
        """Store each attempt (in the delivery's history, and as its last attempt) and
        the delivery's new status and next attempt time. Per destination: a success ends
        its failing streak; a failure starts one if none runs, and a destination whose
        streak is ``auto_disable_ms`` old is set inactive with a ``disabled_reason``; a
        record with ``disable_reason`` sets it inactive at once. Deliveries deleted
        meanwhile (event pruned, source or destination deleted) are skipped."""

    @abc.abstractmethod
    async def delivery_targets(self, destination_ids: Collection[str]) -> dict[str, dict[str, Any]]:
        """Where an attempt starting now goes: for each of ``destination_ids`` that is an
        active webhook destination as committed when the read starts, its parsed config
        (url, headers, signingSecret), by id; one statement for all of them. An id
        missing from the answer is deleted, inactive or not a webhook: its claimed
        deliveries must not be sent (the worker gives them back with
        ``release_deliveries``). Raises StoreUnavailable."""

    @abc.abstractmethod
    async def release_deliveries(
        self, delivery_ids: Collection[tuple[str, str]], now_ms: int
    ) -> None:
        """Give back claimed deliveries not attempted (shutdown), given as (destination
        id, delivery id): due at ``now_ms``."""

    # deliveries: the routes

    @abc.abstractmethod
    async def list_deliveries(
        self,
        destination_id: str,
        *,
        status: str | None = None,
        event_id: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """The destination's deliveries, newest first (by id), as dicts: id,
        destination_id, event_id, status, attempts, created_at, last_attempt_at,
        next_attempt_at (pending only), response_status, duration_ms, error,
        response_body (None where there is none)."""

    @abc.abstractmethod
    async def get_delivery(self, destination_id: str, delivery_id: str) -> dict[str, Any] | None:
        """One delivery as in ``list_deliveries`` plus ``history``: every attempt in
        order (n, at, outcome, response_status, duration_ms, error, response_body)."""

    @abc.abstractmethod
    async def replay_deliveries(
        self, destination_id: str, status: str, since_ms: int | None, now_ms: int
    ) -> int:
        """Queue again (pending, due now, a fresh retry schedule) the destination's
        deliveries in ``status`` created at or after ``since_ms``; returns how many."""


def delivery_status(r: AttemptRecord) -> str:
    """The status a delivery takes after the attempt ``r``: ``succeeded``, ``pending``
    (another attempt is scheduled) or ``failed`` (the schedule is spent). Both stores."""
    if r.outcome == "success":
        return "succeeded"
    return "pending" if r.next_attempt_ms is not None else "failed"


def period_text(ms: int) -> str:
    """A period in milliseconds as the largest whole unit (``5d``, ``36h``, ``90s``), else
    fractional seconds: the auto-disable reason both stores write."""
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms >= size and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms / 1000:g}s"


def delivery_row(r: Sequence[Any]) -> dict[str, Any]:
    """A delivery as the routes render it, from the 12 columns both stores select in
    the same order (id, destination, event, status, attempts, created, last attempt, next
    attempt, response status, duration, error, response body); ``next_attempt_at`` only
    while pending."""
    return {
        "id": r[0],
        "destination_id": r[1],
        "event_id": r[2],
        "status": r[3],
        "attempts": r[4],
        "created_at": r[5],
        "last_attempt_at": r[6],
        "next_attempt_at": r[7] if r[3] == "pending" else None,
        "response_status": r[8],
        "duration_ms": r[9],
        "error": r[10],
        "response_body": r[11],
    }
