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


def install_error_handlers(app: FastAPI) -> None:
    from fastapi.exceptions import RequestValidationError

    app.add_exception_handler(HTTPException, _on_http_exception)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(Exception, _on_unexpected)
