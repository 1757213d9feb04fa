"""Stream destinations: list and create. Any type is stored; webhooks need a URL."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from starlette.responses import Response

from boltic_cli.models import DestinationList, StreamDestination, StreamDestinationInput
from boltic_cli.server.responses import Problem
from boltic_cli.server.routes import (
    ERROR_RESPONSES,
    committed,
    from_ms,
    idempotency,
    json_body,
    read_model,
    runtime,
)

router = APIRouter(tags=["Destinations"], responses=ERROR_RESPONSES)


def destination_wire(row: dict[str, Any]) -> dict[str, Any]:
    config = row["config"]
    return StreamDestination(
        id=row["id"],
        name=row["name"],
        type=row["type"],
        config=json.loads(config) if isinstance(config, str) else config,
        status=row["status"],
        created_at=from_ms(row["created_at"]),
    ).to_wire()


def check_webhook(body: StreamDestinationInput) -> None:
    if body.type != "webhook":
        return
    url = body.config.get("url")
    if not isinstance(url, str) or not url:
        raise Problem(422, "invalid stream destination", "config.url: field required for webhook")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise Problem(422, "invalid stream destination", "config.url: must be an http or https URL")


@router.get(
    "/streams/destinations",
    operation_id="listStreamDestinations",
    summary="Boltic List stream destinations",
    response_model=DestinationList,
)
async def list_stream_destinations(request: Request) -> Response:
    rows = await runtime(request).store.list_destinations()
    data = {"data": [destination_wire(r) for r in rows]}
    return Response(json.dumps(data), 200, media_type="application/json")


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
    body, raw = await read_model(request, StreamDestinationInput, "stream destination")
    check_webhook(body)
    rt = runtime(request)
    row = {
        "id": rt.ids.new("dst_"),
        "name": body.name,
        "type": body.type,
        "config": json.dumps(body.config),
        "status": "active",
        "created_at": rt.store.now_ms(),
    }
    stored = await committed(
        rt.store.create_destination(
            row, lambda r: json.dumps(destination_wire(r)), idempotency(request, raw)
        )
    )
    return Response(stored.body, stored.status, media_type="application/json")
