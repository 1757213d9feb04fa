"""The spec's ``Error`` body on every non-2xx answer, and the handlers that produce it."""

from __future__ import annotations

import json
import logging
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from starlette.exceptions import HTTPException
from starlette.responses import Response

if TYPE_CHECKING:
    from fastapi import FastAPI, Request

log = logging.getLogger("boltic.server")

JSON = "application/json"


class Problem(HTTPException):
    """An answer with the spec's Error body: raise it anywhere in a request."""

    def __init__(
        self,
        status: int,
        message: str,
        details: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status_code=status, detail=message, headers=headers)
        self.message = message
        self.details = details


def error_body(status: int, message: str, details: str | None = None) -> bytes:
    body: dict[str, Any] = {"code": status, "message": message}
    if details:
        body["details"] = details
    return json.dumps(body).encode()


def error_response(
    status: int, message: str, details: str | None = None, headers: dict[str, str] | None = None
) -> Response:
    return Response(error_body(status, message, details), status, headers, media_type=JSON)


# What a write key no longer (or never) known is answered: 401 with this detail.
UNKNOWN_TOKEN = "unknown token"


def unauthorized(details: str) -> Problem:
    return Problem(401, "not authenticated", details, {"WWW-Authenticate": "Bearer"})


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower()
    except ValueError:
        return "error"


def describe_validation_errors(errors: list[dict[str, Any]], prefix: str = "") -> str:
    """``type: field required; limit: must be at least 1`` from pydantic errors: each
    offending field by its wire name and what it allows (``models.problem_phrase``),
    never a model name or pydantic's own wording."""
    from boltic_cli.models import problem_field, problem_phrase

    parts = []
    for error in errors:
        name = problem_field(error, prefix or "body")
        phrase = problem_phrase(error)
        parts.append(f"{name}: {'field required' if phrase == 'is required' else phrase}")
    return "; ".join(parts)


def validation_problem(errors: list[dict[str, Any]], what: str = "request") -> Problem:
    """400 for JSON that does not parse, 422 for JSON that does not fit the schema."""
    broken = [e for e in errors if e.get("type") == "json_invalid"]
    if broken:
        error = (broken[0].get("ctx") or {}).get("error") or broken[0].get("msg")
        return Problem(400, "malformed JSON body", str(error))
    return Problem(422, f"invalid {what}", describe_validation_errors(errors))


async def _on_http_exception(request: Request, exc: HTTPException) -> Response:
    if isinstance(exc, Problem):
        return error_response(exc.status_code, exc.message, exc.details, exc.headers)
    message = _phrase(exc.status_code)
    details = exc.detail if isinstance(exc.detail, str) and exc.detail.lower() != message else None
    if exc.status_code == 404:
        details = f"no route {request.method} {request.url.path}"
    elif exc.status_code == 405:
        details = f"{request.method} is not allowed on {request.url.path}"
    return error_response(exc.status_code, message, details, exc.headers)


async def _on_validation_error(request: Request, exc: Exception) -> Response:
    problem = validation_problem(list(exc.errors()), "request")  # type: ignore[attr-defined]
    return error_response(problem.status_code, problem.message, problem.details)


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return error_response(500, "internal server error", type(exc).__name__)


# How long a client should wait before retrying when the database cannot be reached.
RETRY_AFTER_SECONDS = "1"


def store_unavailable(reason: str) -> Problem:
    """503 with Retry-After: the database cannot be reached or written."""
    return Problem(503, "the store is unavailable", reason, {"Retry-After": RETRY_AFTER_SECONDS})


async def store_read(read: Any) -> Any:
    """Await a store read where no exception handler applies (the request gate): a
    StoreUnavailable becomes the 503 Problem."""
    from boltic_cli.server.store import StoreUnavailable

    try:
        return await read
    except StoreUnavailable as e:
        raise store_unavailable(str(e)) from None


async def _on_store_unavailable(request: Request, exc: Exception) -> Response:
    problem = store_unavailable(str(exc))
    return error_response(problem.status_code, problem.message, problem.details, problem.headers)


def install_error_handlers(app: FastAPI) -> None:
    from fastapi.exceptions import RequestValidationError

    from boltic_cli.server.store import StoreUnavailable

    # A read (or a source lookup) that cannot reach the database: 503, never a 500.
    app.add_exception_handler(StoreUnavailable, _on_store_unavailable)
    app.add_exception_handler(HTTPException, _on_http_exception)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(Exception, _on_unexpected)
