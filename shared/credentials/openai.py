"""OpenAI API keys: input checks and the live check.

Accepted: ``api_key`` and optional ``organization`` (``org-...``) and
``project`` (``proj_...``), sent with each request as the ``OpenAI-Organization``
and ``OpenAI-Project`` headers. Nothing beyond the common trimming is
normalised.

Rejected: a key that does not start with ``sk-``, a key pasted with its
``Bearer`` prefix, whitespace inside the key, and organization or project ids of
the wrong shape.

Live check: ``GET {OPENAI_API_BASE}/models``, an authenticated read that costs
no tokens.
"""

from __future__ import annotations

import re
from datetime import datetime

from shared.credentials._live import (
    CheckResult,
    HttpReply,
    ProviderEndpoints,
    Status,
    send,
    unexpected_response,
)
from shared.credentials._normalise import (
    FieldReader,
    NormalisedCredential,
    require_printable,
    suffix_hint,
)

PROVIDER = "openai"
_API_KEY = re.compile(r"sk-[A-Za-z0-9_-]{20,500}")
_ORGANIZATION = re.compile(r"org-[A-Za-z0-9]{1,64}")
_PROJECT = re.compile(r"proj_[A-Za-z0-9]{1,64}")

_REJECTIONS = {
    "invalid_api_key": (
        "unknown_key",
        "api_key is incorrect, revoked or deleted; create a new key on the "
        "platform's API keys page",
    ),
    "invalid_organization": (
        "wrong_organization",
        "organization does not exist or the key is not a member of it; copy the "
        "organization id from the organization's settings, or omit it",
    ),
    "mismatched_organization": (
        "wrong_organization",
        "organization does not match the key's organization; copy the id from "
        "the organization's settings, or omit it",
    ),
    "mismatched_project": (
        "wrong_project",
        "project does not match the key's project; copy the project id from the "
        "project's settings, or omit it",
    ),
}


def normalise(raw: dict[str, object]) -> NormalisedCredential:
    """Check an API key and return its canonical form."""
    reader = FieldReader(raw)
    api_key = reader.required("api_key", max_length=512)
    if api_key.lower().startswith("bearer"):
        raise reader.error(
            "api_key", "starts with 'Bearer'; send the key alone, starting with sk-"
        )
    require_printable(reader, "api_key", api_key)
    if not _API_KEY.fullmatch(api_key):
        raise reader.error(
            "api_key",
            "must be an OpenAI secret key: sk- followed by letters, digits, - or _",
        )
    fields = {"api_key": api_key}
    details = {}
    for name, pattern, example in (
        ("organization", _ORGANIZATION, "org-..."),
        ("project", _PROJECT, "proj_..."),
    ):
        value = reader.string(name, max_length=128, required=False)
        if value is None:
            continue
        if not pattern.fullmatch(value):
            raise reader.error(name, f"must be an id of the form {example}")
        fields[name] = details[name] = value
    return NormalisedCredential(
        provider=PROVIDER,
        fields=fields,
        secret_fields=("api_key",),
        account_hint=_key_hint(api_key),
        details=details,
        normalised=tuple(reader.normalised),
        ignored_fields=reader.ignored(),
    )


def check(
    credential: NormalisedCredential, endpoints: ProviderEndpoints, *, now: datetime
) -> CheckResult:
    """List the models the key can see."""
    fields = credential.fields
    headers = {"Authorization": f"Bearer {fields['api_key']}"}
    if "organization" in fields:
        headers["OpenAI-Organization"] = fields["organization"]
    if "project" in fields:
        headers["OpenAI-Project"] = fields["project"]
    reply = send(
        "GET",
        f"{endpoints.openai_api_base}/models",
        provider="OpenAI",
        timeout=endpoints.timeout_seconds,
        headers=headers,
    )
    if isinstance(reply, CheckResult):
        return reply
    if reply.status == 200 and isinstance(reply.body.get("data"), list):
        return CheckResult(
            Status.VALID,
            "ok",
            f"OpenAI accepted the key {credential.account_hint}",
            details=dict(credential.details),
        )
    return _rejection(reply)


def _key_hint(api_key: str) -> str:
    prefix = api_key.split("-", 2)[1] if api_key.count("-") >= 2 else ""
    kind = f"sk-{prefix}-" if prefix in ("proj", "svcacct", "admin") else "sk-"
    return kind + suffix_hint(api_key)


def _rejection(reply: HttpReply) -> CheckResult:
    error = reply.body.get("error")
    if reply.status != 401 or not isinstance(error, dict):
        # A 403 means a region or network block, which proves nothing about the key.
        return unexpected_response("OpenAI", reply.status)
    code = error.get("code")
    reason, message = _REJECTIONS.get(
        str(code),
        ("rejected", "OpenAI rejected the api_key; check it or create a new key"),
    )
    return CheckResult(Status.INVALID, reason, message)
