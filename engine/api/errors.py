"""SuperOffice's error JSON (``Error``, ``ErrorType``, ``ErrorMessage``, ``ErrorSource``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

import orjson
import structlog
from aiohttp import web

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
) -> web.Response:
    """Build the error JSON response."""
    body = {
        "Error": True,
        "ErrorType": error_type or _DEFAULT_TYPES.get(status, "SoException"),
        "ErrorMessage": message,
        "ErrorSource": ERROR_SOURCE,
    }
    return web.Response(
        status=status,
        body=orjson.dumps(body),
        content_type="application/json",
        charset="utf-8",
        headers=headers,
    )


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every failure into the error JSON; never leak a traceback to the client."""
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.message, exc.error_type, exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
        message = exc.reason
        if exc.status == 413:
            message = "Request body is larger than the configured limit"
        return error_response(exc.status, message, headers=headers)
    except Exception:
        log.exception("unhandled error", path=request.path)
        return error_response(500, "Internal server error")
