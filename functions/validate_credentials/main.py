"""validate-credentials: an HTTP Cloud Function for tenants' cloud credentials.

Endpoints:

    POST   /credentials/validate          admin key: check a credential, store nothing
    POST   /credentials                   admin key: check a credential and store it
    GET    /credentials                   admin key: list the tenant's credentials
    GET    /credentials/{id}              admin key: one credential's metadata
    DELETE /credentials/{id}              admin key: delete (restorable for a while)
    POST   /credentials/{id}/restore      admin key: undo a deletion
    GET    /credentials/{id}/secret       credentials:read key: the stored fields
    GET    /healthz                       liveness

A body is ``{"provider": "gcp" | "aws" | "azure" | "openai", "credentials":
{...}, "name": "...", "store_if_indeterminate": false}``; shared.credentials
documents each provider's fields. Only a credential the provider accepted is
stored, unless ``store_if_indeterminate`` is true and the check proved nothing.
No response, log line or audit event carries a secret, except the secret
endpoint's response.
"""

from __future__ import annotations

import functools
import json
import logging
from datetime import UTC, datetime
from typing import Any

import flask
import functions_framework

from shared.config import Settings, get_settings
from shared.credentials import (
    ADMIN_SCOPE,
    READ_SCOPE,
    CheckIndeterminateError,
    CredentialInputError,
    CredentialRejectedError,
    CredentialService,
    DuplicateCredentialError,
    Submission,
    Validation,
    build_credential_service,
)
from shared.http import (
    Handler,
    HttpError,
    Router,
    client_info,
    json_response,
    presented_credential,
)
from shared.keyservice import (
    AuthenticationError,
    KeyService,
    NotFoundError,
    Principal,
    RequestInfo,
)
from shared.logs import configure_logging
from shared.runtime import build_audit_sink, build_key_service
from shared.store import CredentialRecord, Store, build_store

_log = logging.getLogger("validate_credentials")
configure_logging(get_settings().log_level)

_BOM = b"\xef\xbb\xbf"


@functions_framework.http
def validate_credentials(request: flask.Request) -> flask.Response:
    """Entry point: route the request to one of the handlers below."""
    return _router().dispatch(request)


# Handlers


def _validate(request: flask.Request) -> flask.Response:
    principal = _authenticate(request)
    submission, _ = _submission(request)
    outcome = _service().validate(principal, submission, _request_info(request))
    return json_response(_validation(outcome))


def _store(request: flask.Request) -> flask.Response:
    principal = _authenticate(request)
    submission, store_if_indeterminate = _submission(request)
    record, outcome = _service().store(
        principal,
        submission,
        store_if_indeterminate=store_if_indeterminate,
        request=_request_info(request),
    )
    _log.info(
        "credential stored",
        extra={
            "labels": {
                "tenant_id": record.tenant_id,
                "credential_id": record.credential_id,
            }
        },
    )
    return json_response(
        {"credential": _public(record), "validation": _validation(outcome)}, 201
    )


def _list(request: flask.Request) -> flask.Response:
    records = _service().list(_authenticate(request))
    return json_response({"credentials": [_public(record) for record in records]})


def _get(request: flask.Request, credential_id: str) -> flask.Response:
    record = _service().get(_authenticate(request), credential_id)
    return json_response(_public(record))


def _delete(request: flask.Request, credential_id: str) -> flask.Response:
    principal = _authenticate(request)
    record = _service().delete(principal, credential_id, _request_info(request))
    return json_response(_public(record))


def _restore(request: flask.Request, credential_id: str) -> flask.Response:
    principal = _authenticate(request)
    record = _service().restore(principal, credential_id, _request_info(request))
    return json_response(_public(record))


def _secret(request: flask.Request, credential_id: str) -> flask.Response:
    principal = _authenticate(request, READ_SCOPE)
    record, fields = _service().read(principal, credential_id, _request_info(request))
    return json_response(
        {
            "credential_id": record.credential_id,
            "provider": record.provider,
            "credentials": fields,
        }
    )


def _health(request: flask.Request) -> flask.Response:
    return json_response({"status": "ok"})


# Authentication and parsing


def _authenticate(request: flask.Request, scope: str = ADMIN_SCOPE) -> Principal:
    """Return the key's principal; 401 without a valid key, 403 without ``scope``."""
    try:
        principal = _keys().verify(
            presented_credential(request.headers), _request_info(request)
        )
    except AuthenticationError:
        raise HttpError(
            401,
            "unauthenticated",
            "send a valid, unexpired API key as "
            "'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
        ) from None
    if scope not in principal.scopes:
        raise HttpError(403, "forbidden", f"this API key lacks the {scope} scope")
    return principal


def _request_info(request: flask.Request) -> RequestInfo:
    ip, agent = client_info(request, _settings().trusted_proxy_hops)
    return RequestInfo(ip_address=ip, user_agent=agent)


def _submission(request: flask.Request) -> tuple[Submission, bool]:
    body = _read_body(request, _settings().credentials_max_request_bytes)
    store_if_indeterminate = body.get("store_if_indeterminate", False)
    if not isinstance(store_if_indeterminate, bool):
        raise HttpError(
            400, "invalid_field", "store_if_indeterminate must be true or false"
        )
    if "credentials" not in body:
        raise HttpError(400, "missing_field", "credentials is required")
    submission = Submission(
        provider=body.get("provider"),
        credentials=body["credentials"],
        name=body.get("name"),
    )
    return submission, store_if_indeterminate


def _read_body(request: flask.Request, max_bytes: int) -> dict[str, Any]:
    """Return the JSON object body, dropping a leading UTF-8 byte-order mark.

    A body over ``max_bytes`` is rejected before it is parsed. A credential is
    a few KB, so this limit is far below the general request limit.
    """
    too_large = HttpError(
        413,
        "body_too_large",
        f"the body must be at most {max_bytes} bytes; a credential is a few KB, "
        "so send only the credential's own fields",
    )
    if request.content_length is not None and request.content_length > max_bytes:
        raise too_large
    raw = request.stream.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise too_large
    if not raw.strip():
        return {}
    if request.mimetype != "application/json":
        raise HttpError(
            415,
            "unsupported_media_type",
            "send the body as JSON with Content-Type: application/json",
        )
    try:
        body = json.loads(raw.removeprefix(_BOM))
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise HttpError(400, "invalid_json", "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise HttpError(400, "invalid_json", "the body must be a JSON object")
    return body


def _validation(outcome: Validation) -> dict[str, Any]:
    credential, result = outcome.credential, outcome.result
    expires_at = result.expires_at or credential.expires_at
    return {
        "provider": credential.provider,
        "status": result.status.value,
        "reason": result.reason,
        "message": result.message,
        "account_hint": credential.account_hint,
        "details": {**credential.details, **result.details},
        "expires_at": expires_at.isoformat() if expires_at else None,
        "checked_at": outcome.checked_at.isoformat(),
        "normalised": list(credential.normalised),
        "ignored_fields": list(credential.ignored_fields),
    }


def _public(record: CredentialRecord) -> dict[str, Any]:
    def time(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    return {
        "credential_id": record.credential_id,
        "provider": record.provider,
        "name": record.name,
        "account_hint": record.account_hint,
        "details": record.details,
        "status": record.status(datetime.now(UTC)),
        "validation_status": record.validation_status,
        "validated_at": time(record.validated_at),
        "expires_at": time(record.expires_at),
        "created_at": time(record.created_at),
        "deleted_at": time(record.deleted_at),
        "erase_after": time(record.erase_after),
    }


# Process-wide state, built at cold start


@functools.cache
def _settings() -> Settings:
    return get_settings()


@functools.cache
def _shared_store() -> Store:
    return build_store(_settings())


@functools.cache
def _keys() -> KeyService:
    return build_key_service(_settings(), _shared_store())


@functools.cache
def _service() -> CredentialService:
    store = _shared_store()
    audit = build_audit_sink(_settings(), store)
    return build_credential_service(_settings(), store, audit)


def _check_failed(
    status: int, code: str, message: str, outcome: Validation
) -> flask.Response:
    body = {
        "error": {"code": code, "message": message},
        "validation": _validation(outcome),
    }
    return json_response(body, status)


def _translate(handler: Handler) -> Handler:
    """Turn the services' errors into HTTP errors that name the fix."""

    @functools.wraps(handler)
    def wrapper(request: flask.Request, **kwargs: str) -> flask.Response:
        try:
            response: flask.Response = handler(request, **kwargs)
            return response
        except CredentialInputError as exc:
            raise HttpError(400, "invalid_credentials", exc.message) from None
        except CredentialRejectedError as exc:
            message = exc.validation.result.message
            return _check_failed(422, "credentials_invalid", message, exc.validation)
        except CheckIndeterminateError as exc:
            message = (
                f"{exc.validation.result.message}. Nothing was stored; to store "
                "it unverified, send store_if_indeterminate: true"
            )
            return _check_failed(
                503, "validation_indeterminate", message, exc.validation
            )
        except DuplicateCredentialError as exc:
            raise HttpError(
                409,
                "credential_exists",
                f"this credential is already stored as {exc.existing.credential_id}; "
                "delete that one first to store it again",
            ) from None
        except NotFoundError:
            raise HttpError(
                404, "not_found", "no such credential in this API key's tenant"
            ) from None

    return wrapper


@functools.cache
def _router() -> Router:
    router = Router(_settings().cors_allowed_origins)
    router.add("GET", "/healthz", _health)
    router.add("POST", "/credentials/validate", _translate(_validate))
    router.add("POST", "/credentials", _translate(_store))
    router.add("GET", "/credentials", _translate(_list))
    router.add("GET", "/credentials/{credential_id}", _translate(_get))
    router.add("DELETE", "/credentials/{credential_id}", _translate(_delete))
    router.add("POST", "/credentials/{credential_id}/restore", _translate(_restore))
    router.add("GET", "/credentials/{credential_id}/secret", _translate(_secret))
    return router
