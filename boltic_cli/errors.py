"""Errors and the exit codes they end in.

Every failure stays an exception until ``app.main()`` turns it into one line on
stderr and an exit code. The tree::

    BolticError                      1  anything that ends a command with an error
    ├── UsageError                   2  bad flags, bad input, bad files (before any request)
    ├── ConfigError                  2  unreadable or invalid config, unknown profile
    ├── CredentialsError             4  no token, no keyring backend, unusable token store
    ├── NetworkError                 5  connection refused, reset, DNS, TLS
    │   └── RequestTimeout           5  connect or read slower than the timeout
    ├── UnexpectedResponse           1  a body that is not the JSON the spec promises
    ├── APIError                     1  a non-2xx answer (``status`` holds the HTTP status)
    │   ├── BadRequest               2  400, 413, 422: the server refused the input
    │   ├── AuthenticationFailed     4  401
    │   ├── PermissionDenied         4  403
    │   ├── NotFound                 3  404
    │   ├── RateLimited              1  429 after the retries
    │   ├── ServerError              1  5xx
    │   └── ExtensionUnavailable     1  404/405 on an extension route: this server
    │                                   does not offer it (design.md "Extensions")
    ├── WaitTimedOut                 1  ``debug wait`` saw no matching event in time
    ├── PartialFailure               1  some items of a batch failed (already reported)
    └── Declined                     1  the user answered no at a prompt (not an error
                                        message: printed as is, without "Error:")

Ctrl-C (130) and SIGTERM (143) are not in this tree: ``app`` raises them as
``BaseException`` subclasses so that no ``except Exception`` swallows them.
"""

from __future__ import annotations

from enum import IntEnum


class ExitStatus(IntEnum):
    OK = 0
    ERROR = 1
    USAGE = 2
    NOT_FOUND = 3
    AUTH = 4
    NETWORK = 5
    INTERRUPTED = 130
    TERMINATED = 143


class BolticError(Exception):
    exit_status: ExitStatus = ExitStatus.ERROR
    #: The HTTP status behind the error, when there is one (``APIError``,
    #: ``UnexpectedResponse``).
    status: int | None = None

    def __init__(self, message: str, *, details: str | None = None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.details = details
        self.hint = hint

    @property
    def code(self) -> int | None:
        """The HTTP status behind the error, when there is one (``status``)."""
        return self.status

    #: Printed with an "Error: " prefix; ``Declined`` is the user's own choice.
    prefix = "Error: "

    def to_dict(self) -> dict:
        """The ``{"error": ...}`` object printed on stderr in JSON modes: ``message`` and
        ``exitCode`` always, ``code`` and ``details`` only when known (design.md: absent,
        never null)."""
        error: dict = {"message": self.message, "exitCode": int(self.exit_status)}
        if self.code is not None:
            error["code"] = self.code
        if self.details is not None:
            error["details"] = self.details
        return {"error": error}


class UsageError(BolticError):
    exit_status = ExitStatus.USAGE


class ConfigError(BolticError):
    exit_status = ExitStatus.USAGE


class CredentialsError(BolticError):
    exit_status = ExitStatus.AUTH


class NetworkError(BolticError):
    exit_status = ExitStatus.NETWORK


class RequestTimeout(NetworkError):
    pass


class UnexpectedResponse(BolticError):
    def __init__(self, message: str, *, status: int | None = None, **kwargs):
        super().__init__(message, **kwargs)
        self.status = status


class APIError(BolticError):
    status: int

    def __init__(self, status: int, message: str, **kwargs):
        super().__init__(message, **kwargs)
        self.status = status


class BadRequest(APIError):
    exit_status = ExitStatus.USAGE


class AuthenticationFailed(APIError):
    exit_status = ExitStatus.AUTH


class PermissionDenied(APIError):
    exit_status = ExitStatus.AUTH


class NotFound(APIError):
    exit_status = ExitStatus.NOT_FOUND


class RateLimited(APIError):
    pass


class ServerError(APIError):
    pass


class ExtensionUnavailable(APIError):
    """The server answered an extension route (design.md "Extensions beyond the spec")
    with 404 or 405: it implements the spec only. Core commands catch it and fall back
    to the spec's operations; a command that exists only for the extension ends with it."""


class WaitTimedOut(BolticError):
    pass


class PartialFailure(BolticError):
    pass


class Declined(BolticError):
    """The user said no to a confirmation prompt: nothing was done (exit 1)."""

    prefix = ""


def error_for_status(status: int, message: str, details: str | None = None) -> APIError:
    """The APIError subclass for an HTTP status."""
    if status in (400, 413, 422):
        cls: type[APIError] = BadRequest
    elif status == 401:
        cls = AuthenticationFailed
    elif status == 403:
        cls = PermissionDenied
    elif status == 404:
        cls = NotFound
    elif status == 429:
        cls = RateLimited
    elif status >= 500:
        cls = ServerError
    else:
        cls = APIError
    return cls(status, message, details=details)
