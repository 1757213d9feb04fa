"""Events: send (group-committed) and query (with a summary of every match)."""

from __future__ import annotations

import json
from collections.abc import Awaitable
from dataclasses import dataclass, replace
from datetime import datetime
from json.encoder import encode_basestring_ascii as _text
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Query, Request
from pydantic import Field
from starlette.responses import Response

from boltic_cli.models import (
    MAX_BATCH_ITEMS,
    Error,
    EventAccepted,
    EventBatchInput,
    EventBatchResult,
    EventInput,
    EventQueryResult,
    UtcTime,
    format_time,
)
from boltic_cli.server.auth import Principal, header, principal
from boltic_cli.server.responses import (
    UNKNOWN_TOKEN,
    Problem,
    describe_validation_errors,
    unauthorized,
    validation_problem,
)
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
from boltic_cli.server.store import (
    EventRecord,
    SourceGone,
    SourceInfo,
    Store,
    StoredResponse,
    StoreError,
)

T = TypeVar("T")
router = APIRouter(tags=["Events"], responses=ERROR_RESPONSES)
# One encoder for every event: json.dumps with options builds a new one per call.
# NaN and Infinity are not JSON (an out-of-range number parses as Infinity): refused.
COMPACT_JSON = json.JSONEncoder(separators=(",", ":"), allow_nan=False)
# Sizes an item as a sender encodes it (UTF-8, not \u escapes).
_SIZING_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
NOT_FINITE = "numbers must be finite (NaN and Infinity are not JSON)"


class ItemRefused(Exception):
    """One event refused, with the spec's Error fields (a batch item, or a whole POST)."""

    def __init__(self, status: int, message: str, details: str) -> None:
        super().__init__(message)
        self.status, self.message, self.details = status, message, details

    def problem(self) -> Problem:
        return Problem(self.status, self.message, self.details)

    def error_json(self) -> str:
        return json.dumps({"code": self.status, "message": self.message, "details": self.details})


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
    rt = runtime(request)
    try:
        await _check_source(rt.store, principal(request.scope), body.source_id, {})
        record = _record(body, rt.ids.new("evt_"), _receipt(request, rt.store.now_ms()))
    except ItemRefused as e:
        raise e.problem() from None
    caller = principal(request.scope)
    write = rt.store.insert_event(record, idempotency(request, raw))
    try:
        stored = await committed(_rechecked(rt.store, caller, write))
    except ItemRefused as e:
        raise e.problem() from None
    rt.delivery.nudge()
    return Response(stored.body, stored.status, media_type="application/json")


@router.post(
    "/streams/events/batch",
    operation_id="sendEventBatch",
    summary="Send up to 500 events at once (extension)",
    description="Each item is accepted or rejected on its own; the answer lists every "
    "item in order and is sent after every accepted item is committed. Not in the "
    "Streams spec: an extension of this server.",
    status_code=200,
    response_model=EventBatchResult,
    responses={413: {"model": Error, "description": "Body over 512 KiB"}},
    openapi_extra={**json_body("EventBatchInput"), "x-boltic-extension": True},
)
async def send_event_batch(request: Request) -> Response:
    raw = await request.body()
    items = _parse_batch(raw)
    rt = runtime(request)
    store = rt.store
    caller = principal(request.scope)
    receipt = _receipt(request, store.now_ms())
    ids = iter(rt.ids.new_many("evt_", sum(isinstance(i, EventInput) for i in items)))
    # Items are sized only when the whole body could hold one over the item limit.
    check_size = len(raw) > MAX_ITEM_BYTES
    refused: dict[int, ItemRefused] = {}
    records: list[EventRecord] = []
    positions: list[int] = []
    sources: dict[str, SourceInfo | None] = {}
    for index, item in enumerate(items):
        try:
            if isinstance(item, ItemRefused):
                raise item
            await _check_source(store, caller, item.source_id, sources)
            record = _record(item, next(ids), receipt)
            if check_size and len(record.body) > MAX_ITEM_BYTES:
                _check_item_size(item)
        except ItemRefused as e:
            refused[index] = e
            continue
        records.append(record)
        positions.append(index)

    def render(outcomes: list[str | StoreError]) -> str:
        if caller.source is not None and any(isinstance(o, SourceGone) for o in outcomes):
            # The key's source, no longer active since the gate's check: the request
            # is answered as the key now is (_rechecked), and nothing is recorded.
            raise SourceGone(caller.source.id)
        return _render_batch(len(items), refused, positions, outcomes)

    if not records and caller.source is not None:
        # Nothing reaches the inserting statement, which is what checks a key the gate
        # may have passed from this process's earlier view: ask now.
        await _key_now(store, caller.source)
    write = store.insert_batch(records, render, idempotency(request, raw))
    try:
        stored = await committed(_rechecked(store, caller, write))
    except ItemRefused as e:  # each of the key's items, as _check_source refuses them
        refused.update(dict.fromkeys(positions, e))
        stored = StoredResponse(200, _render_batch(len(items), refused, [], []))
    rt.delivery.nudge()
    return Response(stored.body, stored.status, media_type="application/json")


MAX_ITEM_BYTES = 32 * 1024


def _parse_batch(raw: bytes) -> list[EventInput | ItemRefused]:
    """The batch's items, each validated (or refused on its own); the whole body is
    refused (400 not JSON, 422 not an object, ``batch`` missing, empty or too long).

    One pydantic call validates a good batch. It stops at the first bad item (so a
    512 KiB body of 100,000 bad items costs milliseconds, not a second of the event
    loop); then the items are validated one by one, each with its own errors."""
    from pydantic import ValidationError
    from pydantic_core import from_json

    if not raw.strip():
        raise Problem(422, "invalid event batch", "body: field required")
    try:
        return list(_FailFastBatch.model_validate_json(raw).batch)
    except ValidationError as e:
        errors = e.errors(include_url=False)
    whole = [e for e in errors if not _is_item_error(e)]
    if whole:
        raise validation_problem(whole, "event batch")
    data = from_json(raw)["batch"]
    if len(data) > MAX_BATCH_ITEMS:  # not reached by the pass that stopped early
        raise Problem(
            422,
            "invalid event batch",
            f"batch: list should have at most {MAX_BATCH_ITEMS} items, not {len(data)}",
        )
    out: list[EventInput | ItemRefused] = []
    for item in data:
        try:
            out.append(EventInput.model_validate(item))
        except ValidationError as e:
            details = describe_validation_errors(e.errors(include_url=False), "item")
            out.append(ItemRefused(422, "invalid event", details))
    return out


class _FailFastBatch(EventBatchInput):
    batch: list[EventInput] = Field(min_length=1, max_length=MAX_BATCH_ITEMS, fail_fast=True)


def _is_item_error(error: dict[str, Any]) -> bool:
    loc = error.get("loc", ())
    return len(loc) >= 2 and loc[0] == "batch" and isinstance(loc[1], int)


def _check_item_size(item: EventInput) -> None:
    """Refuse an item over MAX_ITEM_BYTES as its sender encoded it (compact UTF-8)."""
    size = len(_SIZING_JSON.encode(item.to_wire()).encode())
    if size > MAX_ITEM_BYTES:
        raise ItemRefused(
            413, "event too large", f"an item is at most {MAX_ITEM_BYTES} bytes, got {size}"
        )


async def _check_source(
    store: Store, caller: Principal, source_id: str, cache: dict[str, SourceInfo | None]
) -> None:
    """Refuse an event the caller may not send (403 another source's write key,
    404 no such source, 403 inactive source)."""
    if caller.source_id is not None and caller.source_id != source_id:
        raise ItemRefused(403, "forbidden", "this write key may only send to its own source")
    if caller.source is not None:  # as this request's gate read it: not read twice
        source = caller.source
    elif source_id in cache:
        source = cache[source_id]
    else:
        source = cache[source_id] = await store.source(source_id)
    if source is None:
        raise ItemRefused(404, "source not found", f"no source {source_id}")
    if source.status != "active":
        raise ItemRefused(403, "forbidden", f"source {source_id} is {source.status}")


async def _rechecked(store: Store, caller: Principal, write: Awaitable[T]) -> T:
    """``write``'s result; if it refused a write key's events because their source is no
    longer active (SourceGone), the key is looked up again and the request refused as
    the gate and ``_check_source`` now would: Problem 401 for a deleted source's key,
    ItemRefused 403 for a paused one (the whole send, or each item of a batch). The
    gate may have passed the key from this process's earlier view (Store.source_for_key,
    ``recheck_on_insert``); this is where that view is checked. Raises the SourceGone
    (404) if the source is active again."""
    try:
        return await write
    except SourceGone:
        if caller.source is None:
            raise
        now = await _key_now(store, caller.source)
        await _check_source(store, replace(caller, source=now), now.id, {})
        raise


async def _key_now(store: Store, seen: SourceInfo) -> SourceInfo:
    """The source of ``seen``'s write key as the database has it now; raises Problem
    401, as the gate answers an unknown key, when there is none."""
    now = await store.source_for_key(seen.write_key)
    if now is None:
        raise unauthorized(UNKNOWN_TOKEN)
    return now


def _render_batch(
    count: int,
    refused: dict[int, ItemRefused],
    positions: list[int],
    outcomes: list[str | StoreError],
) -> str:
    """The batch's answer: one entry per item, in order."""
    entries: list[str] = [""] * count
    for index, error in refused.items():
        entries[index] = f'{{"index":{index},"status":"rejected","error":{error.error_json()}}}'
    accepted = 0
    for index, outcome in zip(positions, outcomes, strict=True):
        if isinstance(outcome, str):
            accepted += 1
            entries[index] = f'{{"index":{index},"status":"accepted","eventId":"{outcome}"}}'
        else:  # SourceGone (an admin's batch): deleted while it waited for its commit
            error = ItemRefused(404, "source not found", f"no source {outcome}")
            entries[index] = f'{{"index":{index},"status":"rejected","error":{error.error_json()}}}'
    return (
        f'{{"accepted":{accepted},"rejected":{count - accepted},"data":[' + ",".join(entries) + "]}"
    )


@dataclass(frozen=True, slots=True)
class Receipt:
    """What one request adds to each of its events: the time it was received and the
    context the server saw (peer address, User-Agent), as JSON text made once."""

    received_ms: int
    received_at: str
    ip: str | None
    user_agent: str | None
    # ',"context":{...}' for an event that brings no context ("" if nothing was seen).
    seen_context: str


def _receipt(request: Request, received_ms: int) -> Receipt:
    client = request.scope.get("client")
    ip = client[0] if client else None
    user_agent = header(request.scope, b"user-agent")
    seen = _fill_context({}, ip, user_agent)
    return Receipt(
        received_ms,
        format_time(from_ms(received_ms)),
        ip,
        user_agent,
        ',"context":' + COMPACT_JSON.encode(seen) if seen else "",
    )


def _fill_context(context: dict[str, Any], ip: str | None, user_agent: str | None) -> dict:
    if "ip" not in context and ip:
        context["ip"] = ip
    if "userAgent" not in context and user_agent is not None:
        context["userAgent"] = user_agent
    return context


def _record(body: EventInput, event_id: str, receipt: Receipt) -> EventRecord:
    """The stored event: what the sender sent, plus id, times and the context we saw.

    The JSON text is joined from pieces (keys in the Event's order: id, sourceId, type,
    properties, userId, anonymousId, messageId, context, timestamp, receivedAt) so the
    parts a request's events share are encoded once; ``properties`` came from JSON
    and is encoded as it is. Raises ItemRefused (422) for a number JSON cannot carry."""
    parts = ['{"id":"', event_id, '","sourceId":', _text(body.source_id)]
    parts += [',"type":', _text(body.type)]
    try:
        if body.properties is not None:
            parts += [',"properties":', COMPACT_JSON.encode(body.properties)]
        if body.user_id is not None:
            parts += [',"userId":', _text(body.user_id)]
        if body.anonymous_id is not None:
            parts += [',"anonymousId":', _text(body.anonymous_id)]
        if body.message_id is not None:
            parts += [',"messageId":', _text(body.message_id)]
        if body.context is None:
            parts.append(receipt.seen_context)
        else:
            context = _fill_context(body.context.to_wire(), receipt.ip, receipt.user_agent)
            if context:
                parts += [',"context":', COMPACT_JSON.encode(context)]
    except ValueError:
        raise ItemRefused(422, "invalid event", NOT_FINITE) from None
    if body.timestamp is None:
        timestamp_ms = receipt.received_ms
        timestamp = receipt.received_at
    else:
        timestamp_ms = to_ms(body.timestamp)
        timestamp = format_time(body.timestamp)
    parts += [',"timestamp":"', timestamp, '","receivedAt":"', receipt.received_at, '"}']
    return EventRecord(
        id=event_id,
        source_id=body.source_id,
        type=body.type,
        timestamp=timestamp_ms,
        received_at=receipt.received_ms,
        body="".join(parts),
        message_id=body.message_id,
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
    from_: Annotated[UtcTime | None, Query(alias="from")] = None,
    to: Annotated[UtcTime | None, Query()] = None,
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
