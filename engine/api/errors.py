"""SuperOffice's error JSON (``Error``, ``ErrorType``, ``ErrorMessage``, ``ErrorSource``).

Rendered as XML (root ``ErrorInfo``) when the client's ``Accept`` prefers XML.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

import asyncpg
import orjson
import structlog
from aiohttp import web

from engine.api.render import prefers_xml, to_xml

log = structlog.get_logger(__name__)

ERROR_SOURCE = "erpsync"

# Status -> the .NET-style exception name SuperOffice clients see in ErrorType.
_DEFAULT_TYPES = {
    400: "ArgumentException",
    401: "SoAuthenticationException",
    403: "SoSecurityException",
    404: "SoNotFoundException",
    405: "MethodNotAllowedException",
    406: "NotAcceptableException",
    408: "TimeoutException",
    411: "LengthRequiredException",
    413: "RequestEntityTooLargeException",
    415: "UnsupportedMediaTypeException",
    422: "UnprocessableEntityException",
    429: "TooManyRequestsException",
    500: "SoServerException",
    503: "ServiceUnavailableException",
}


class ApiError(Exception):
    """Raise from a handler to answer with the error JSON."""

    def __init__(
        self,
        status: int,
        message: str,
        error_type: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type or _DEFAULT_TYPES.get(status, "SoException")
        self.headers = dict(headers or {})


def error_response(
    status: int,
    message: str,
    error_type: str | None = None,
    headers: Mapping[str, str] | None = None,
    *,
    xml: bool = False,
) -> web.Response:
    """Build the error response (JSON, or XML when ``xml``)."""
    body = {
        "Error": True,
        "ErrorType": error_type or _DEFAULT_TYPES.get(status, "SoException"),
        "ErrorMessage": message,
        "ErrorSource": ERROR_SOURCE,
    }
    return web.Response(
        status=status,
        body=to_xml(body, "ErrorInfo") if xml else orjson.dumps(body),
        content_type="application/xml" if xml else "application/json",
        charset="utf-8",
        headers=headers,
    )


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_KEPT_HEADERS = ("allow", "retry-after", "www-authenticate")


def error_for(request: web.Request, exc: Exception) -> web.Response:
    """The error JSON/XML for what a handler raised (an HTTP exception: status >= 400 only);
    never leaks a traceback to the client. Call it in the ``except`` block: an unexpected
    failure is logged with its traceback."""
    if isinstance(exc, ApiError):
        return error_response(
            exc.status, exc.message, exc.error_type, exc.headers, xml=prefers_xml(request)
        )
    if isinstance(exc, web.HTTPException):
        headers = {k: v for k, v in exc.headers.items() if k.lower() in _KEPT_HEADERS}
        message = exc.reason
        if exc.status == 405:
            allowed = exc.headers.get("Allow", "POST")
            message = f"Method {request.method} is not allowed here; use {allowed}"
        elif exc.status == 413:
            message = "Request body is larger than the configured limit"
        return error_response(exc.status, message, headers=headers, xml=prefers_xml(request))
    if isinstance(
        exc, OSError | TimeoutError | asyncpg.PostgresConnectionError | asyncpg.InterfaceError
    ):
        # The database (or another backend) is unreachable: a retryable answer, not a crash.
        log.warning("backend unavailable", path=request.path, error=type(exc).__name__)
        return error_response(
            503,
            "A backend service is unavailable; retry later",
            headers={"Retry-After": "5"},
            xml=prefers_xml(request),
        )
    log.exception("unhandled error", path=request.path)
    return error_response(500, "Internal server error", xml=prefers_xml(request))
