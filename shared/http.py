"""HTTP helpers for the functions: JSON errors, body limits, CORS and credentials.

Errors are ``{"error": {"code": ..., "message": ...}}``. A message names the
field and the fix and never quotes the request body or a header value.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import flask
from werkzeug.datastructures import Headers

from shared.crypto._kms import KmsUnavailableError
from shared.store import TransientStoreError

_log = logging.getLogger(__name__)

__all__ = [
    "Handler",
    "HttpError",
    "Router",
    "client_info",
    "error_response",
    "json_response",
    "presented_credential",
    "read_json",
]

_BEARER = re.compile(r"bearer[ \t]+(?P<token>\S+)", re.IGNORECASE)
_SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}


class HttpError(Exception):
    """An error returned as JSON with ``status``, a stable ``code`` and a message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def json_response(
    body: Mapping[str, Any] | None,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> flask.Response:
    payload = "" if body is None else json.dumps(body, default=str)
    response = flask.Response(payload, status=status, mimetype="application/json")
    response.headers.update(_SECURITY_HEADERS)
    if headers:
        response.headers.update(headers)
    return response


def error_response(error: HttpError) -> flask.Response:
    headers = (
        {"WWW-Authenticate": 'Bearer realm="convergence"'}
        if error.status == 401
        else None
    )
    return json_response(
        {"error": {"code": error.code, "message": error.message}}, error.status, headers
    )


def read_json(request: flask.Request, max_bytes: int) -> dict[str, Any]:
    """Return the JSON object body, or ``{}`` when empty; raise HttpError if invalid."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise _too_large(max_bytes)
    raw = request.stream.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise _too_large(max_bytes)
    if not raw.strip():
        return {}
    if request.mimetype != "application/json":
        raise HttpError(
            415,
            "unsupported_media_type",
            "send the body as JSON with Content-Type: application/json",
        )
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise HttpError(400, "invalid_json", "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise HttpError(400, "invalid_json", "the body must be a JSON object")
    return body


def _too_large(max_bytes: int) -> HttpError:
    return HttpError(
        413, "body_too_large", f"the body must be at most {max_bytes} bytes"
    )


def presented_credential(headers: Mapping[str, str] | Headers) -> str | None:
    """Return the key from ``Authorization: Bearer`` or ``X-API-Key``, if any.

    Header names and the scheme are case-insensitive, surrounding whitespace is
    ignored and the key itself is returned exactly as sent. A Bearer header
    wins over ``X-API-Key``. Another scheme (``Basic``, say, added by a proxy)
    does not hide an ``X-API-Key``; alone it yields ``""``, which never verifies.
    """
    if not isinstance(headers, Headers):
        headers = Headers(headers)
    authorization = headers.get("Authorization")
    if authorization is not None:
        match = _BEARER.fullmatch(authorization.strip())
        if match:
            return match["token"]
    api_key = headers.get("X-API-Key")
    if api_key is not None:
        return api_key.strip()
    return "" if authorization is not None else None


def client_info(
    request: flask.Request, trusted_proxies: int = 1
) -> tuple[str | None, str | None]:
    """Return the client IP and the user agent.

    Each proxy appends the address it received the request from to
    ``X-Forwarded-For``, and a client can put anything before that. So the
    client IP is the entry ``trusted_proxies`` places from the end, which the
    nearest trusted proxy wrote. With 0, or with fewer entries than that, it
    is the socket's peer address.
    """
    hops = [
        hop.strip()
        for hop in request.headers.get("X-Forwarded-For", "").split(",")
        if hop.strip()
    ]
    if 0 < trusted_proxies <= len(hops):
        ip: str | None = hops[-trusted_proxies]
    else:
        ip = request.remote_addr
    agent = request.headers.get("User-Agent")
    return (ip[:64] if ip else None), (agent[:512] if agent else None)


Handler = Callable[..., flask.Response]


@dataclass(frozen=True)
class _Route:
    method: str
    path: str
    pattern: re.Pattern[str]
    handler: Handler


class Router:
    """Maps method and path to a handler; path parameters become arguments.

    Errors common to every function become responses here: ``PermissionError``
    as 403, a busy store or KMS as 503, and anything unexpected as 500.
    """

    def __init__(self, allowed_origins: list[str]) -> None:
        self._routes: list[_Route] = []
        self._origins = set(allowed_origins)

    @property
    def routes(self) -> list[tuple[str, str]]:
        """The (method, path template) pairs, in the order they were added."""
        return [(route.method, route.path) for route in self._routes]

    def add(self, method: str, path: str, handler: Handler) -> None:
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[A-Za-z0-9_-]{1,128})", path)
        self._routes.append(_Route(method, path, re.compile(regex), handler))

    def dispatch(self, request: flask.Request) -> flask.Response:
        origin = request.headers.get("Origin")
        if request.method == "OPTIONS":
            return self._preflight(request, origin)
        methods = []
        for route in self._routes:
            match = route.pattern.fullmatch(request.path.rstrip("/") or "/")
            if match is None:
                continue
            methods.append(route.method)
            if route.method == request.method:
                response = self._call(route.handler, request, match.groupdict())
                return self._with_cors(response, origin)
        if methods:
            error = HttpError(
                405, "method_not_allowed", f"use one of: {', '.join(methods)}"
            )
        else:
            error = HttpError(
                404, "not_found", "no such endpoint; check the method and path"
            )
        return self._with_cors(error_response(error), origin)

    def _call(
        self, handler: Handler, request: flask.Request, args: dict[str, str]
    ) -> flask.Response:
        try:
            return handler(request, **args)
        except HttpError as error:
            return error_response(error)
        except PermissionError as exc:
            return error_response(HttpError(403, "forbidden", str(exc)))
        except (TransientStoreError, KmsUnavailableError):
            _log.warning("dependency unavailable", exc_info=True)
            return error_response(
                HttpError(503, "unavailable", "a dependency is busy; retry shortly")
            )
        except Exception:
            # Logged with the exception type only: messages of library errors
            # can quote input.
            _log.error(
                "request failed: %s %s", request.method, request.path, exc_info=True
            )
            return error_response(
                HttpError(500, "internal", "internal error; retry later")
            )

    def _preflight(self, request: flask.Request, origin: str | None) -> flask.Response:
        if origin is None or origin not in self._origins:
            return error_response(
                HttpError(403, "origin_not_allowed", "this origin is not allowed")
            )
        response = json_response(None, 204)
        response.headers.update(
            {
                "Access-Control-Allow-Methods": "GET, POST, DELETE, OPTIONS",
                "Access-Control-Allow-Headers": (
                    "Authorization, Content-Type, X-API-Key"
                ),
                "Access-Control-Max-Age": "600",
            }
        )
        return self._with_cors(response, origin)

    def _with_cors(
        self, response: flask.Response, origin: str | None
    ) -> flask.Response:
        if origin is not None and origin in self._origins:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Vary"] = "Origin"
        return response
