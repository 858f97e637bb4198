"""issue-key: an HTTP Cloud Function that issues and manages tenant API keys.

Endpoints (see docs/openapi.yaml):

    POST   /tenants               operator: create a tenant and its first admin key
    POST   /keys                  admin key: issue a key in the caller's tenant
    GET    /keys                  admin key: list the caller's tenant's keys
    POST   /keys/{id}/rotate      admin key: replace a key, keeping the old one briefly
    DELETE /keys/{id}             admin key: revoke a key
    GET    /verify, POST /verify  any key: check the presented key
    GET    /healthz               liveness
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import flask
import functions_framework
import pydantic

from shared.config import Settings, get_settings
from shared.http import (
    Handler,
    HttpError,
    Router,
    client_info,
    json_response,
    presented_credential,
    read_json,
)
from shared.keyservice import (
    AuthenticationError,
    IssuedKey,
    KeyService,
    NotFoundError,
    Principal,
    RequestInfo,
)
from shared.logs import configure_logging
from shared.runtime import build_key_service
from shared.store import AlreadyExistsError, ApiKeyRecord

_log = logging.getLogger("issue_key")
configure_logging(get_settings().log_level)


@functions_framework.http
def issue_key(request: flask.Request) -> flask.Response:
    """Entry point: route the request to one of the handlers below."""
    return _router().dispatch(request)


# Handlers


def _create_tenant(request: flask.Request) -> flask.Response:
    principal = _authenticate(request, allow_operator=True)
    body = read_json(request, _settings().max_request_bytes)
    tenant_id = _required_string(body, "tenant_id")
    try:
        tenant, issued = _service().create_tenant(
            principal,
            tenant_id,
            name=_string(body, "name") or tenant_id,
            contact_email=_string(body, "contact_email"),
            request=_request_info(request),
        )
    except AlreadyExistsError:
        raise HttpError(
            409, "tenant_exists", f"tenant {tenant_id} already exists"
        ) from None
    _log.info("tenant created", extra={"labels": {"tenant_id": tenant.tenant_id}})
    return json_response(
        {"tenant_id": tenant.tenant_id, "admin_key": _issued(issued)}, 201
    )


def _issue(request: flask.Request) -> flask.Response:
    principal = _authenticate(request, allow_operator=True)
    body = read_json(request, _settings().max_request_bytes)
    issued = _service().issue_key(
        principal,
        tenant_id=_string(body, "tenant_id") if principal.is_operator else None,
        name=_string(body, "name"),
        scopes=_scopes(body),
        ttl=_days(body, "expires_in_days"),
        request=_request_info(request),
    )
    return json_response(_issued(issued), 201)


def _list(request: flask.Request) -> flask.Response:
    principal = _authenticate(request, allow_operator=True)
    tenant_id = request.args.get("tenant_id") if principal.is_operator else None
    keys = _service().list_keys(principal, tenant_id=tenant_id)
    return json_response({"keys": [_public(record) for record in keys]})


def _rotate(request: flask.Request, api_key_id: str) -> flask.Response:
    principal = _authenticate(request, allow_operator=True)
    body = read_json(request, _settings().max_request_bytes)
    grace_hours = _number(
        body,
        "grace_period_hours",
        default=24,
        maximum=_settings().rotation_max_grace_hours,
    )
    issued, old = _service().rotate_key(
        principal,
        api_key_id,
        grace=timedelta(hours=grace_hours),
        tenant_id=_string(body, "tenant_id") if principal.is_operator else None,
        request=_request_info(request),
    )
    return json_response({"new_key": _issued(issued), "old_key": _public(old)}, 201)


def _revoke(request: flask.Request, api_key_id: str) -> flask.Response:
    principal = _authenticate(request, allow_operator=True)
    tenant_id = request.args.get("tenant_id") if principal.is_operator else None
    record = _service().revoke_key(
        principal, api_key_id, tenant_id=tenant_id, request=_request_info(request)
    )
    return json_response(_public(record))


def _verify(request: flask.Request) -> flask.Response:
    principal = _authenticate(request, allow_operator=False)
    return json_response(
        {
            "valid": True,
            "tenant_id": principal.tenant_id,
            "api_key_id": principal.actor_id,
            "user_id": principal.user_id,
            "scopes": list(principal.scopes),
        }
    )


def _health(request: flask.Request) -> flask.Response:
    return json_response({"status": "ok"})


# Authentication and parsing


def _authenticate(request: flask.Request, *, allow_operator: bool) -> Principal:
    presented = presented_credential(request.headers)
    token_hash = _settings().operator_token_sha256
    if allow_operator and presented and token_hash:
        digest = hashlib.sha256(
            presented.encode("utf-8", "surrogateescape")
        ).hexdigest()
        if hmac.compare_digest(digest, token_hash):
            return Principal.operator()
    try:
        return _service().verify(presented, _request_info(request))
    except AuthenticationError:
        raise HttpError(
            401,
            "unauthenticated",
            "send a valid, unexpired API key as "
            "'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
        ) from None


def _request_info(request: flask.Request) -> RequestInfo:
    ip, agent = client_info(request, _settings().trusted_proxy_hops)
    return RequestInfo(ip_address=ip, user_agent=agent)


def _string(body: dict[str, Any], field: str, *, required: bool = False) -> str | None:
    value = body.get(field)
    if value is None:
        if required:
            raise HttpError(400, "missing_field", f"{field} is required")
        return None
    if not isinstance(value, str) or not 0 < len(value) <= 200:
        raise HttpError(
            400, "invalid_field", f"{field} must be a string of 1 to 200 characters"
        )
    if not value.isascii() and _has_lone_surrogate(value):
        raise HttpError(
            400,
            "invalid_field",
            f"{field} contains a lone UTF-16 surrogate escape (\\ud800 to "
            "\\udfff); send valid Unicode text",
        )
    return value


def _has_lone_surrogate(value: str) -> bool:
    # json.loads accepts such escapes, but the store cannot encode them as UTF-8.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _required_string(body: dict[str, Any], field: str) -> str:
    value = _string(body, field, required=True)
    assert value is not None
    return value


def _number(
    body: dict[str, Any],
    field: str,
    *,
    default: float,
    maximum: float,
    minimum: float = 0,
) -> float:
    value = body.get(field, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise HttpError(400, "invalid_field", f"{field} must be a number")
    # Also rejects NaN and infinity (json.loads accepts them), which would
    # otherwise fail in timedelta with an error that names no field.
    if not minimum <= value <= maximum:
        raise HttpError(
            400,
            "invalid_field",
            f"{field} must be between {minimum:g} and {maximum:g}",
        )
    return float(value)


def _days(body: dict[str, Any], field: str) -> timedelta | None:
    if field not in body:
        return None
    maximum = _settings().api_key_max_ttl_days
    days = _number(body, field, default=1, minimum=1, maximum=maximum)
    return timedelta(days=days)


def _scopes(body: dict[str, Any]) -> tuple[str, ...]:
    value = body.get("scopes", ["api"])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise HttpError(
            400, "invalid_field", 'scopes must be a list of strings, e.g. ["api"]'
        )
    return tuple(value)


def _issued(issued: IssuedKey) -> dict[str, Any]:
    return {"api_key": issued.api_key, **_public(issued.record)}


def _public(record: ApiKeyRecord) -> dict[str, Any]:
    return {
        "api_key_id": record.api_key_id,
        "tenant_id": record.tenant_id,
        "user_id": record.user_id,
        "key_prefix": record.key_prefix,
        "name": record.name,
        "scopes": list(record.scopes),
        "status": record.status(datetime.now(UTC)),
        "expires_at": record.expires_at.isoformat(),
        "created_at": record.created_at.isoformat(),
        "revoked_at": record.revoked_at.isoformat() if record.revoked_at else None,
        "rotated_from_key_id": record.rotated_from_key_id,
        "last_used_at": record.last_used_at.isoformat()
        if record.last_used_at
        else None,
    }


# Process-wide state, built at cold start


@functools.cache
def _settings() -> Settings:
    return get_settings()


@functools.cache
def _service() -> KeyService:
    return build_key_service(_settings())


def _translate(handler: Handler) -> Handler:
    """Turn the service's errors into HTTP errors that name the fix."""

    @functools.wraps(handler)
    def wrapper(request: flask.Request, **kwargs: str) -> flask.Response:
        try:
            response: flask.Response = handler(request, **kwargs)
            return response
        except NotFoundError:
            raise HttpError(
                404, "not_found", "no such active key or tenant for this caller"
            ) from None
        except pydantic.ValidationError as exc:
            # Not str(exc): pydantic's message quotes the rejected input.
            fields = sorted({".".join(map(str, e["loc"])) for e in exc.errors()})
            raise HttpError(
                400, "invalid_request", f"invalid values for: {', '.join(fields)}"
            ) from None
        except ValueError as exc:
            raise HttpError(400, "invalid_request", str(exc)) from None

    return wrapper


@functools.cache
def _router() -> Router:
    router = Router(_settings().cors_allowed_origins)
    router.add("GET", "/healthz", _health)
    router.add("POST", "/tenants", _translate(_create_tenant))
    router.add("POST", "/keys", _translate(_issue))
    router.add("GET", "/keys", _translate(_list))
    router.add("POST", "/keys/{api_key_id}/rotate", _translate(_rotate))
    router.add("DELETE", "/keys/{api_key_id}", _translate(_revoke))
    router.add("GET", "/verify", _translate(_verify))
    router.add("POST", "/verify", _translate(_verify))
    return router
