"""Events: send (group-committed) and query (with a summary of every match)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from boltic_cli.models import Error, EventAccepted, EventInput, EventQueryResult, format_time
from boltic_cli.server.auth import header, principal
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
from boltic_cli.server.store import EventRecord

router = APIRouter(tags=["Events"], responses=ERROR_RESPONSES)
# One encoder for every event: json.dumps with options builds a new one per call.
COMPACT_JSON = json.JSONEncoder(separators=(",", ":"))


@router.post(
    "/streams/events",
    operation_id="sendEvent",
    summary="Boltic Send an event",
    description="Send a custom event to a stream source for processing.",
    status_code=202,
    response_model=EventAccepted,
    responses={**NOT_FOUND, 413: {"model": Error, "description": "Body over 32 KiB"}},
    openapi_extra=json_body("EventInput"),
)
async def send_event(request: Request) -> Response:
    body, raw = await read_model(request, EventInput, "event")
    caller = principal(request.scope)
    if caller.source_id is not None and caller.source_id != body.source_id:
        raise Problem(403, "forbidden", "this write key may only send to its own source")
    rt = runtime(request)
    source = await rt.store.source(body.source_id)
    if source is None:
        raise Problem(404, "source not found", f"no source {body.source_id}")
    if source.status != "active":
        raise Problem(403, "forbidden", f"source {body.source_id} is {source.status}")
    record = _record(request, body, rt.ids.new("evt_"), rt.store.now_ms())
    stored = await committed(rt.store.insert_event(record, idempotency(request, raw)))
    return Response(stored.body, stored.status, media_type="application/json")


def _record(request: Request, body: EventInput, event_id: str, received_ms: int) -> EventRecord:
    """The stored event: what the sender sent, plus id, times and the context we saw."""
    sent = body.to_wire()
    received_at = format_time(from_ms(received_ms))
    context: dict[str, Any] = sent.get("context") or {}
    client = request.scope.get("client")
    if "ip" not in context and client:
        context["ip"] = client[0]
    if "userAgent" not in context:
        user_agent = header(request.scope, b"user-agent")
        if user_agent is not None:
            context["userAgent"] = user_agent
    wire: dict[str, Any] = {"id": event_id, "sourceId": body.source_id, "type": body.type}
    for name in ("properties", "userId", "anonymousId"):
        if name in sent:
            wire[name] = sent[name]
    if context:
        wire["context"] = context
    if body.timestamp is None:
        timestamp_ms = received_ms
        wire["timestamp"] = received_at
    else:
        timestamp_ms = to_ms(body.timestamp)
        wire["timestamp"] = format_time(body.timestamp)
    wire["receivedAt"] = received_at
    return EventRecord(
        id=event_id,
        source_id=body.source_id,
        type=body.type,
        timestamp=timestamp_ms,
        received_at=received_ms,
        body=COMPACT_JSON.encode(wire),
    )


@router.get(
    "/streams/events",
    operation_id="queryEvents",
    summary="Boltic Query events",
    description="Query and analyze events using the event analysis dashboard for "
    "monitoring event flows.",
    response_model=EventQueryResult,
)
async def query_events(
    request: Request,
    source_id: Annotated[str | None, Query(alias="sourceId")] = None,
    event_type: Annotated[str | None, Query(alias="eventType")] = None,
    from_: Annotated[datetime | None, Query(alias="from")] = None,
    to: Annotated[datetime | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    result = await runtime(request).store.query_events(
        source_id=source_id,
        event_type=event_type,
        from_ms=None if from_ is None else to_ms(_utc(from_)),
        to_ms=None if to is None else to_ms(_utc(to)),
        limit=limit,
    )
    summary: dict[str, Any] = {
        "totalEvents": result.total,
        "uniqueEventTypes": result.unique_types,
    }
    if result.earliest is not None and result.latest is not None:
        summary["timeRange"] = {
            "from": format_time(from_ms(result.earliest)),
            "to": format_time(from_ms(result.latest)),
        }
    text = '{"data":[' + ",".join(result.bodies) + '],"summary":' + json.dumps(summary) + "}"
    return Response(text, 200, media_type="application/json")


def _utc(value: datetime) -> datetime:
    from boltic_cli.models import to_utc

    return to_utc(value)
