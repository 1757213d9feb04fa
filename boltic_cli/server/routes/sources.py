"""Stream sources: list, create, get, delete, debug."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from starlette.responses import Response

from boltic_cli.models import (
    DebugResult,
    SourceList,
    StreamSource,
    StreamSourceInput,
    StreamSourceUpdate,
)
from boltic_cli.server.ids import new_write_key
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
)

router = APIRouter(tags=["Stream Sources"], responses=ERROR_RESPONSES)

CONNECTED_WINDOW_MS = 5 * 60 * 1000


def source_wire(row: dict[str, Any]) -> dict[str, Any]:
    return StreamSource(
        id=row["id"],
        name=row["name"],
        type=row["type"],
        write_key=row["write_key"],
        status=row["status"],
        events_today=row["events_today"],
        created_at=from_ms(row["created_at"]),
    ).to_wire()


def _json(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data), status, media_type="application/json")


def _not_found(source_id: str) -> Problem:
    return Problem(404, "source not found", f"no source {source_id}")


@router.get(
    "/streams/sources",
    operation_id="listStreamSources",
    summary="Boltic List all stream sources",
    description="Retrieve a list of all configured stream sources.",
    response_model=SourceList,
)
async def list_stream_sources(request: Request) -> Response:
    rows = await runtime(request).store.list_sources()
    return _json({"data": [source_wire(r) for r in rows]})


@router.post(
    "/streams/sources",
    operation_id="createStreamSource",
    summary="Boltic Create a new stream source",
    description="Create a new source for ingesting events into the stream.",
    status_code=201,
    response_model=StreamSource,
    openapi_extra=json_body("StreamSourceInput"),
)
async def create_stream_source(request: Request) -> Response:
    body, raw = await read_model(request, StreamSourceInput, "stream source")
    rt = runtime(request)
    row = {
        "id": rt.ids.new("src_"),
        "name": body.name,
        "type": body.type,
        "write_key": new_write_key(),
        "status": "active",
        "created_at": rt.store.now_ms(),
    }
    stored = await committed(
        rt.store.create_source(row, lambda r: json.dumps(source_wire(r)), idempotency(request, raw))
    )
    return Response(stored.body, stored.status, media_type="application/json")


@router.get(
    "/streams/sources/{sourceId}",
    operation_id="getStreamSource",
    summary="Boltic Get a stream source by ID",
    response_model=StreamSource,
    responses=NOT_FOUND,
)
async def get_stream_source(
    request: Request, source_id: Annotated[str, Path(alias="sourceId")]
) -> Response:
    row = await runtime(request).store.get_source(source_id)
    if row is None:
        raise _not_found(source_id)
    return _json(source_wire(row))


@router.patch(
    "/streams/sources/{sourceId}",
    operation_id="updateStreamSource",
    summary="Boltic Update a stream source (extension)",
    description="Rename a source and/or set its status. An inactive source refuses events "
    "(403); setting it active again restores its write key. Not in the Streams API spec.",
    response_model=StreamSource,
    responses=NOT_FOUND,
    openapi_extra={**json_body("StreamSourceUpdate"), "x-boltic-extension": True},
)
async def update_stream_source(
    request: Request, source_id: Annotated[str, Path(alias="sourceId")]
) -> Response:
    body, _ = await read_model(request, StreamSourceUpdate, "stream source update")
    store = runtime(request).store
    await committed(store.update_source(source_id, name=body.name, status=body.status))
    row = await store.get_source(source_id)
    if row is None:  # deleted between the update and the read
        raise _not_found(source_id)
    return _json(source_wire(row))


@router.delete(
    "/streams/sources/{sourceId}",
    operation_id="deleteStreamSource",
    summary="Boltic Delete a stream source",
    status_code=204,
    response_class=Response,
    responses={**NOT_FOUND, 204: {"description": "Stream source deleted"}},
)
async def delete_stream_source(
    request: Request, source_id: Annotated[str, Path(alias="sourceId")]
) -> Response:
    await committed(runtime(request).store.delete_source(source_id))
    return Response(status_code=204)


@router.get(
    "/streams/sources/{sourceId}/debug",
    operation_id="debugStreamSource",
    summary="Boltic Debug a stream source",
    description="Access the source debugger to confirm that API calls from your website, "
    "mobile app, or servers are arriving at the stream source.",
    response_model=DebugResult,
    responses=NOT_FOUND,
)
async def debug_stream_source(
    request: Request,
    source_id: Annotated[str, Path(alias="sourceId")],
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> Response:
    store = runtime(request).store
    if await store.source(source_id) is None:
        raise _not_found(source_id)
    bodies, last_received = await store.debug_events(source_id, limit)
    connected = last_received is not None and (
        store.now_ms() - last_received <= CONNECTED_WINDOW_MS
    )
    head = '{"data":[' + ",".join(bodies) + '],"connected":' + ("true" if connected else "false")
    if last_received is not None:
        head += ',"lastEventAt":' + json.dumps(_format(last_received))
    return Response(head + "}", 200, media_type="application/json")


def _format(ms: int) -> str:
    from boltic_cli.models import format_time

    return format_time(from_ms(ms))
