"""Live checks: their three outcomes, the endpoints, and the HTTPS call they share.

A live check sends the provider one request that authenticates with the
credential. Its result is ``valid`` (the provider accepted it), ``invalid`` (the
provider rejected it) or ``indeterminate``. Indeterminate means a response that
proves neither: a timeout, a refused connection, HTTP 429 or 5xx, a redirect,
or a body that is not the provider's JSON, such as an HTML 403 page from a
proxy.

Requests never follow redirects, so an allowed endpoint cannot forward a signed
assertion or a secret to another host. Endpoints come from the settings only;
the one URL a credential names itself, a Google ``token_uri``, must be on
``GCP_TOKEN_URI_ALLOWLIST``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shared.config import Settings

# A provider's token or error JSON is well under 16 KiB; more is not its API.
_MAX_RESPONSE_BYTES = 64 * 1024
_USER_AGENT = "convergence-credential-check/1"


class Status(StrEnum):
    """The outcome of a live check."""

    VALID = "valid"
    INVALID = "invalid"
    INDETERMINATE = "indeterminate"


@dataclass(frozen=True)
class CheckResult:
    """A live check's outcome, a stable ``reason`` code and a plain message.

    ``details`` contains non-secret facts the provider confirmed (account id,
    ARN). ``expires_at`` is set when the credential's expiry is known.
    """

    status: Status
    reason: str
    message: str
    details: dict[str, str] = field(default_factory=dict)
    expires_at: datetime | None = None


@dataclass(frozen=True)
class ProviderEndpoints:
    """The endpoints of the live checks, and the timeout of each connect and read."""

    aws_sts_endpoint: str
    aws_sts_region: str
    azure_authority_hosts: Mapping[str, str]
    openai_api_base: str
    gcp_token_uris: tuple[str, ...]
    timeout_seconds: float = 5.0

    @classmethod
    def from_settings(cls, settings: Settings) -> ProviderEndpoints:
        return cls(
            aws_sts_endpoint=settings.aws_sts_endpoint,
            aws_sts_region=settings.aws_sts_region,
            azure_authority_hosts={
                "public": settings.azure_authority_host,
                "usgov": settings.azure_authority_host_usgov,
                "china": settings.azure_authority_host_china,
            },
            openai_api_base=settings.openai_api_base,
            gcp_token_uris=tuple(settings.gcp_token_uri_allowlist),
            timeout_seconds=settings.credentials_check_timeout_seconds,
        )


@dataclass(frozen=True)
class HttpReply:
    """A provider's response: the status and its JSON object body."""

    status: int
    body: dict[str, Any]


def send(
    method: str,
    url: str,
    *,
    provider: str,
    timeout: float,
    data: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> HttpReply | CheckResult:
    """Send one request; return the JSON reply, or an indeterminate result.

    A 2xx or 4xx response whose body is a JSON object is returned as an
    ``HttpReply`` for the provider module to judge. Every other outcome is
    indeterminate.
    """
    import requests

    try:
        response = requests.request(
            method,
            url,
            data=data,
            headers={"User-Agent": _USER_AGENT, **(headers or {})},
            timeout=(timeout, timeout),
            allow_redirects=False,
            stream=True,
        )
    except requests.Timeout:
        return _indeterminate(
            provider,
            "timeout",
            f"{provider} did not answer within {timeout:g} s; try again later",
        )
    except requests.RequestException as exc:
        return _indeterminate(
            provider,
            "unreachable",
            f"{provider} could not be reached ({type(exc).__name__}); try again later",
        )
    with response:
        return _reply(provider, response.status_code, _read_body(response))


def _read_body(response: Any) -> bytes:
    body = b""
    for chunk in response.iter_content(chunk_size=8192):
        body += chunk
        if len(body) > _MAX_RESPONSE_BYTES:
            break
    return body


def _reply(provider: str, status: int, raw: bytes) -> HttpReply | CheckResult:
    if 300 <= status < 400:
        return _indeterminate(
            provider,
            "unexpected_redirect",
            f"{provider} answered with a redirect, which is not followed; "
            "check the endpoint setting",
        )
    if status == 429 or status >= 500:
        return _indeterminate(
            provider,
            "provider_unavailable",
            f"{provider} answered HTTP {status}; try again later",
        )
    body = _json_object(raw)
    if body is None:
        return unexpected_response(provider, status)
    return HttpReply(status, body)


def _json_object(raw: bytes) -> dict[str, Any] | None:
    if len(raw) > _MAX_RESPONSE_BYTES:
        return None
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) else None


def unexpected_response(provider: str, status: int) -> CheckResult:
    """Return the indeterminate result for a response the provider's API never sends."""
    return _indeterminate(
        provider,
        "unexpected_response",
        f"{provider} answered HTTP {status} with a body that is not its API's, "
        "for example a proxy or firewall page, which proves nothing about the "
        "credential; try again later",
    )


def _indeterminate(provider: str, reason: str, message: str) -> CheckResult:
    return CheckResult(Status.INDETERMINATE, reason, message)
