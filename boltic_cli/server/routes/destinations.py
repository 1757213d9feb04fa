"""Stream destinations: list and create (the spec), and the extensions of design.md
"Destinations that deliver": get, update, delete, the delivery log, test and replay.

Any type is stored; only ``webhook`` destinations deliver. A webhook's config is
checked here (``url`` http/https; ``headers`` an object of strings; ``eventTypes`` and
``sourceIds`` arrays of strings; ``signingSecret`` ``whsec_`` + base64, made at
creation unless given), a 422 naming the field otherwise.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Path, Query, Request
from starlette.responses import Response

from boltic_cli import webhooks
from boltic_cli.models import (
    Delivery,
    DeliveryList,
    DeliveryTestResult,
    DestinationList,
    ReplayInput,
    ReplayResult,
    StreamDestination,
    StreamDestinationInput,
    StreamDestinationUpdate,
    format_time,
)
from boltic_cli.server.responses import Problem
from boltic_cli.server.routes import (
    ERROR_RESPONSES,
    NOT_FOUND,
    committed,
    from_ms,
    idempotency,
    json_body,
    read_model,
    runtime,
    to_ms,
)
from boltic_cli.server.store.outbox import DestinationGone

router = APIRouter(tags=["Destinations"], responses=ERROR_RESPONSES)
EXTENSION = {"x-boltic-extension": True}
WHAT = "stream destination"
TEST_EVENT_TYPE = "boltic.test"
# RFC 9110 5.6.2: a header name is a token.
HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def destination_wire(row: dict[str, Any]) -> dict[str, Any]:
    config = row["config"]
    return StreamDestination(
        id=row["id"],
        name=row["name"],
        type=row["type"],
        config=json.loads(config) if isinstance(config, str) else config,
        status=row["status"],
        created_at=from_ms(row["created_at"]),
        disabled_reason=row.get("disabled_reason"),
    ).to_wire()


def _invalid(details: str) -> Problem:
    return Problem(422, f"invalid {WHAT}", details)


def _strings(config: dict[str, Any], name: str) -> None:
    value = config.get(name)
    if value is None:
        return
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _invalid(f"config.{name}: must be an array of non-empty strings")


def check_webhook_config(
    config: dict[str, Any], previous: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The config to store for a webhook: checked (422 naming the field), with a signing
    secret (``previous``'s, or a new one, unless one is given)."""
    url = config.get("url")
    if not isinstance(url, str) or not url:
        raise _invalid("config.url: field required for webhook")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise _invalid("config.url: must be an http or https URL")
    headers = config.get("headers")
    if headers is not None:
        if not isinstance(headers, dict):
            raise _invalid("config.headers: must be an object of strings")
        for name, value in headers.items():
            if not isinstance(value, str):
                raise _invalid(f"config.headers.{name}: must be a string")
            if not HEADER_NAME.fullmatch(name):
                raise _invalid(f"config.headers.{name}: not a valid header name")
            if any(c in value for c in "\r\n\0"):
                raise _invalid(f"config.headers.{name}: may not contain line breaks")
            if name.lower() in webhooks.RESERVED_HEADERS:
                raise _invalid(f"config.headers.{name}: set by the server, may not be given")
    _strings(config, "eventTypes")
    _strings(config, "sourceIds")
    secret = config.get("signingSecret")
    if secret is None:
        secret = (previous or {}).get("signingSecret") or webhooks.new_signing_secret()
    elif not webhooks.is_signing_secret(secret):
        raise _invalid("config.signingSecret: must be whsec_ followed by base64")
    return {**config, "signingSecret": secret}


def _json(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data), status, media_type="application/json")


def _not_found(destination_id: str) -> Problem:
    return Problem(404, "destination not found", f"no destination {destination_id}")


async def _destination(request: Request, destination_id: str) -> dict[str, Any]:
    row = await runtime(request).store.get_destination(destination_id)
    if row is None:
        raise _not_found(destination_id)
    return row


DestinationId = Annotated[str, Path(alias="id", description="Destination id (dst_...)")]


@router.get(
    "/streams/destinations",
    operation_id="listStreamDestinations",
    summary="Boltic List stream destinations",
    response_model=DestinationList,
)
async def list_stream_destinations(request: Request) -> Response:
    rows = await runtime(request).store.list_destinations()
    return _json({"data": [destination_wire(r) for r in rows]})


@router.post(
    "/streams/destinations",
    operation_id="createStreamDestination",
    summary="Boltic Create a stream destination",
    description="Configure a destination for delivering stream events.",
    status_code=201,
    response_model=StreamDestination,
    openapi_extra=json_body("StreamDestinationInput"),
)
async def create_stream_destination(request: Request) -> Response:
    body, raw = await read_model(request, StreamDestinationInput, WHAT)
    config = check_webhook_config(body.config) if body.type == "webhook" else body.config
    rt = runtime(request)
    row = {
        "id": rt.ids.new("dst_"),
        "name": body.name,
        "type": body.type,
        "config": json.dumps(config),
        "status": "active",
        "created_at": rt.store.now_ms(),
    }
    stored = await committed(
        rt.store.create_destination(
            row, lambda r: json.dumps(destination_wire(r)), idempotency(request, raw)
        )
    )
    return Response(stored.body, stored.status, media_type="application/json")


@router.get(
    "/streams/destinations/{id}",
    operation_id="getStreamDestination",
    summary="Get a stream destination",
    response_model=StreamDestination,
    responses=NOT_FOUND,
    openapi_extra=EXTENSION,
)
async def get_stream_destination(request: Request, destination_id: DestinationId) -> Response:
    return _json(destination_wire(await _destination(request, destination_id)))


@router.patch(
    "/streams/destinations/{id}",
    operation_id="updateStreamDestination",
    summary="Update a stream destination",
    description="Change any of name, config (replaced whole) and status. Setting the status "
    "clears disabledReason; an inactive destination's pending deliveries wait.",
    response_model=StreamDestination,
    responses=NOT_FOUND,
    openapi_extra={**json_body("StreamDestinationUpdate"), **EXTENSION},
)
async def update_stream_destination(request: Request, destination_id: DestinationId) -> Response:
    body, _ = await read_model(request, StreamDestinationUpdate, WHAT)
    row = await _destination(request, destination_id)
    changes: dict[str, Any] = body.model_dump(exclude_none=True)
    if "config" in changes:
        config = changes["config"]
        if row["type"] == "webhook":
            config = check_webhook_config(config, row["config"])
        changes["config"] = json.dumps(config)
    try:
        store = runtime(request).store
        updated = await committed(store.update_destination(destination_id, changes))
    except DestinationGone:
        raise _not_found(destination_id) from None
    return _json(destination_wire(updated))


@router.delete(
    "/streams/destinations/{id}",
    operation_id="deleteStreamDestination",
    summary="Delete a stream destination",
    description="Deletes the destination with its deliveries.",
    status_code=204,
    responses=NOT_FOUND,
    openapi_extra=EXTENSION,
)
async def delete_stream_destination(request: Request, destination_id: DestinationId) -> Response:
    try:
        await committed(runtime(request).store.delete_destination(destination_id))
    except DestinationGone:
        raise _not_found(destination_id) from None
    return Response(status_code=204)


def delivery_wire(row: dict[str, Any]) -> dict[str, Any]:
    times = ("created_at", "last_attempt_at", "next_attempt_at")
    fields = {k: (from_ms(v) if k in times and v is not None else v) for k, v in row.items()}
    if "history" in row:
        fields["history"] = [{**a, "at": from_ms(a["at"])} for a in row["history"]]
    return Delivery.model_validate(fields).to_wire()


@router.get(
    "/streams/destinations/{id}/deliveries",
    operation_id="listDestinationDeliveries",
    summary="List a destination's deliveries",
    description="Newest first. Each delivery is one event for this destination, with its "
    "last attempt.",
    response_model=DeliveryList,
    responses=NOT_FOUND,
    openapi_extra=EXTENSION,
)
async def list_destination_deliveries(
    request: Request,
    destination_id: DestinationId,
    status: Annotated[str | None, Query(pattern="^(pending|succeeded|failed)$")] = None,
    event_id: Annotated[str | None, Query(alias="eventId")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> Response:
    await _destination(request, destination_id)
    rows = await runtime(request).store.list_deliveries(
        destination_id, status=status, event_id=event_id, limit=limit
    )
    return _json({"data": [delivery_wire(r) for r in rows]})


@router.get(
    "/streams/destinations/{id}/deliveries/{deliveryId}",
    operation_id="getDestinationDelivery",
    summary="Get one delivery with every attempt",
    response_model=Delivery,
    responses=NOT_FOUND,
    openapi_extra=EXTENSION,
)
async def get_destination_delivery(
    request: Request,
    destination_id: DestinationId,
    delivery_id: Annotated[str, Path(alias="deliveryId", description="Delivery id (dlv_...)")],
) -> Response:
    row = await runtime(request).store.get_delivery(destination_id, delivery_id)
    if row is None:
        await _destination(request, destination_id)
        raise Problem(404, "delivery not found", f"no delivery {delivery_id}")
    return _json(delivery_wire(row))


def _webhook(row: dict[str, Any]) -> None:
    if row["type"] != "webhook":
        raise Problem(422, f"invalid {WHAT}", "type: only webhook destinations deliver")


@router.post(
    "/streams/destinations/{id}/test",
    operation_id="testStreamDestination",
    summary="Send a test event to a destination now",
    description=f"Delivers a synthetic `{TEST_EVENT_TYPE}` event once, signed like every "
    "delivery, and answers with the attempt. Stores no event and no delivery.",
    response_model=DeliveryTestResult,
    responses=NOT_FOUND,
    openapi_extra=EXTENSION,
)
async def test_stream_destination(request: Request, destination_id: DestinationId) -> Response:
    row = await _destination(request, destination_id)
    _webhook(row)
    rt = runtime(request)
    now = format_time(from_ms(rt.store.now_ms()))
    event = {
        "id": rt.ids.new("evt_"),
        "sourceId": "src_test",
        "type": TEST_EVENT_TYPE,
        "properties": {"destinationId": destination_id, "message": "a test from boltic"},
        "timestamp": now,
        "receivedAt": now,
    }
    webhook_id = rt.ids.new("dlv_")
    body = json.dumps(event, separators=(",", ":")).encode()
    result = await rt.delivery.send_test(row["config"], webhook_id, body)
    return _json({**result.to_wire(), "webhookId": webhook_id, "eventId": event["id"]})


@router.post(
    "/streams/destinations/{id}/replay",
    operation_id="replayDestinationDeliveries",
    summary="Queue a destination's deliveries again",
    description="Deliveries in `status` (default failed) created at or after `since` are "
    "pending again, due now, with a fresh retry schedule. Answers how many.",
    response_model=ReplayResult,
    responses=NOT_FOUND,
    openapi_extra={**json_body("ReplayInput"), **EXTENSION},
)
async def replay_destination_deliveries(
    request: Request, destination_id: DestinationId
) -> Response:
    body = ReplayInput()
    if (await request.body()).strip():
        body, _ = await read_model(request, ReplayInput, "replay")
    row = await _destination(request, destination_id)
    _webhook(row)
    rt = runtime(request)
    since = None if body.since is None else to_ms(body.since)
    count = await committed(
        rt.store.replay_deliveries(destination_id, body.status, since, rt.store.now_ms())
    )
    return _json({"queued": count})
