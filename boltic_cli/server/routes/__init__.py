"""The API's routes under /v1, and what they share: body parsing, idempotency, commits."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from boltic_cli.models import Error
from boltic_cli.server.auth import header, principal
from boltic_cli.server.responses import Problem, validation_problem
from boltic_cli.server.store import (
    Idempotency,
    IdempotencyConflict,
    SourceGone,
    StoreUnavailable,
)

if TYPE_CHECKING:
    from boltic_cli.server.app import Runtime

M = TypeVar("M", bound=BaseModel)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MS = timedelta(milliseconds=1)
MAX_IDEMPOTENCY_KEY = 255


def _error(description: str) -> dict[str, Any]:
    return {"model": Error, "description": description}


# Documented on every operation: the body of each is the spec's Error.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: _error("Missing or unknown bearer token"),
    403: _error("Forbidden for this token"),
    422: _error("The request does not fit the schema"),
}
NOT_FOUND = {404: _error("Not found")}


def json_body(schema: str) -> dict[str, Any]:
    """``openapi_extra`` for a route that reads its JSON body itself (any Content-Type,
    so ``curl -d`` and ``navigator.sendBeacon`` work)."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
        }
    }


def runtime(request: Request) -> Runtime:
    return request.app.state.runtime


def to_ms(value: datetime) -> int:
    return (value - EPOCH) // MS


def from_ms(value: int) -> datetime:
    return EPOCH + value * MS


async def read_model(request: Request, model: type[M], what: str) -> tuple[M, bytes]:
    """The body parsed as ``model`` (400 if it is not JSON, 422 if it does not fit)."""
    raw = await request.body()
    if not raw.strip():
        raise Problem(422, f"invalid {what}", "body: field required")
    try:
        return model.model_validate_json(raw), raw
    except ValidationError as e:
        raise validation_problem(e.errors(include_url=False), what) from None


def idempotency(request: Request, raw: bytes) -> Idempotency | None:
    """The Idempotency-Key of this request, scoped to the caller's token.

    The request is compared as parsed JSON, not as bytes (issue 11): the same object
    sent again with other white space or key order is the same request. ``raw`` has
    already passed the model's validation, so it is JSON without NaN or lone surrogates.
    """
    key = header(request.scope, b"idempotency-key")
    if key is None:
        return None
    if not 0 < len(key) <= MAX_IDEMPOTENCY_KEY:
        raise Problem(422, "invalid Idempotency-Key", "Idempotency-Key: 1 to 255 characters")
    canonical = json.dumps(json.loads(raw), sort_keys=True, separators=(",", ":"))
    target = f"{request.method} {request.url.path}\n"
    digest = hashlib.sha256((target + canonical).encode()).hexdigest()
    return Idempotency(principal(request.scope).scope, key, digest)


async def committed(write: Awaitable[Any]) -> Any:
    """Await a store write; map store failures to answers (503, 422, 404)."""
    try:
        return await write
    except StoreUnavailable as e:
        raise Problem(503, "the store cannot write", str(e), {"Retry-After": "1"}) from None
    except IdempotencyConflict as e:
        raise Problem(422, "Idempotency-Key reused", str(e)) from None
    except SourceGone as e:
        raise Problem(404, "source not found", f"no source {e}") from None
