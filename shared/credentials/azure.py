"""Azure service principals (client secret): input checks and the live check.

Accepted: ``tenant_id``, ``client_id``, ``client_secret`` and an optional
``cloud``; also the names ``az ad sp create-for-rbac`` prints (``tenant``,
``appId``, ``password``; its ``displayName`` is dropped). ``cloud`` is
``public`` (the default), ``usgov`` or ``china``, or an SDK name such as
``AzureUSGovernment``, or an authority URL of one of those clouds given as
``authority`` or ``authority_host``. Only the cloud's name is stored; the host
a check calls always comes from the settings (``AZURE_AUTHORITY_HOST`` and its
``_USGOV`` and ``_CHINA`` variants).

Normalised: GUIDs are lower-cased and lose surrounding braces; a tenant domain
name is lower-cased. Neither is secret and Azure compares both without case.

Rejected: a client id that is not a GUID, and a tenant that is neither a GUID
nor a domain name or that is a multi-tenant alias (``common``,
``organizations``, ``consumers``). A client secret shaped like a GUID is
rejected too, because it is the secret's ID column in the portal, not its value.

Live check: the OAuth 2.0 client credentials grant at
``{authority}/{tenant_id}/oauth2/v2.0/token`` for the cloud's Resource Manager
scope. Azure issues that token without checking any role assignment.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from urllib.parse import urlsplit

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
)

PROVIDER = "azure"
_GUID = re.compile(r"\{?([0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12})\}?")
_DOMAIN = re.compile(r"[a-z0-9-]{1,63}(\.[a-z0-9-]{1,63})+")
_MULTI_TENANT_ALIASES = ("common", "organizations", "consumers")
_AADSTS = re.compile(r"AADSTS(\d+)")

_CLOUD_NAMES = {
    "public": "public",
    "azurecloud": "public",
    "azurepubliccloud": "public",
    "usgov": "usgov",
    "azureusgovernment": "usgov",
    "azureusgovernmentcloud": "usgov",
    "china": "china",
    "azurechinacloud": "china",
}
_AUTHORITY_HOSTS = {
    "login.microsoftonline.com": "public",
    "login.microsoftonline.us": "usgov",
    "login.chinacloudapi.cn": "china",
    "login.partner.microsoftonline.cn": "china",
}
_SCOPES = {
    "public": "https://management.azure.com/.default",
    "usgov": "https://management.usgovcloudapi.net/.default",
    "china": "https://management.chinacloudapi.cn/.default",
}

# Microsoft Entra error codes (AADSTS numbers) that reject the credential.
_REJECTIONS = {
    90002: (
        "unknown_tenant",
        "tenant_id: Azure has no such tenant; copy Directory (tenant) ID from the "
        "app registration's Overview page",
    ),
    900023: (
        "unknown_tenant",
        "tenant_id: Azure does not accept this tenant identifier; copy Directory "
        "(tenant) ID from the app registration's Overview page",
    ),
    700016: (
        "unknown_client",
        "client_id: the tenant has no application with this id; copy Application "
        "(client) ID from the app registration, and check that the app is "
        "registered in this tenant",
    ),
    7000215: (
        "wrong_secret",
        "client_secret is wrong; copy the secret's Value (not its Secret ID) "
        "under Certificates & secrets, or create a new secret",
    ),
    7000222: (
        "secret_expired",
        "client_secret has expired; create a new secret under Certificates & secrets",
    ),
    7000112: (
        "application_disabled",
        "client_id: the application is disabled in this tenant; enable it",
    ),
    53003: (
        "blocked_by_policy",
        "a Conditional Access policy of the tenant blocks this service principal",
    ),
}


def normalise(
    raw: dict[str, object], *, authority_hosts: Mapping[str, str]
) -> NormalisedCredential:
    """Check a service principal and return its canonical form.

    ``authority_hosts`` maps each cloud name to its configured authority URL,
    so an ``authority`` naming a configured host maps to that cloud too.
    """
    reader = FieldReader(raw)
    tenant_id = _tenant_id(reader)
    client_id = _guid(
        reader,
        "client_id",
        reader.required("client_id", max_length=64, aliases=("appId",)),
        "must be the Application (client) ID: a GUID such as "
        "00000000-0000-0000-0000-000000000000",
    )
    secret = reader.required("client_secret", max_length=256, aliases=("password",))
    _check_secret(reader, secret)
    reader.drop("displayName")
    fields = {
        "tenant_id": tenant_id,
        "client_id": client_id,
        "client_secret": secret,
        "cloud": _cloud(reader, authority_hosts),
    }
    return NormalisedCredential(
        provider=PROVIDER,
        fields=fields,
        secret_fields=("client_secret",),
        account_hint=f"{client_id}@{tenant_id}",
        details={
            "tenant_id": tenant_id,
            "client_id": client_id,
            "cloud": fields["cloud"],
        },
        normalised=tuple(reader.normalised),
        ignored_fields=reader.ignored(),
    )


def check(
    credential: NormalisedCredential, endpoints: ProviderEndpoints, *, now: datetime
) -> CheckResult:
    """Request a token with the client credentials grant."""
    fields = credential.fields
    cloud = fields["cloud"]
    host = endpoints.azure_authority_hosts[cloud]
    reply = send(
        "POST",
        f"{host}/{fields['tenant_id']}/oauth2/v2.0/token",
        provider="Azure",
        timeout=endpoints.timeout_seconds,
        data={
            "grant_type": "client_credentials",
            "client_id": fields["client_id"],
            "client_secret": fields["client_secret"],
            "scope": _SCOPES[cloud],
        },
    )
    if isinstance(reply, CheckResult):
        return reply
    if reply.status == 200 and isinstance(reply.body.get("access_token"), str):
        return CheckResult(
            Status.VALID,
            "ok",
            f"Azure issued a token for application {fields['client_id']}",
            details={
                "tenant_id": fields["tenant_id"],
                "client_id": fields["client_id"],
            },
        )
    return _rejection(reply)


def _tenant_id(reader: FieldReader) -> str:
    value = reader.required("tenant_id", max_length=256, aliases=("tenant",))
    if _GUID.fullmatch(value):
        return _guid(reader, "tenant_id", value, "")
    if value.lower() in _MULTI_TENANT_ALIASES:
        raise reader.error(
            "tenant_id",
            "must be your directory's own tenant id, not a multi-tenant alias; "
            "copy Directory (tenant) ID from the app registration's Overview page",
        )
    if not _DOMAIN.fullmatch(value.lower()):
        raise reader.error(
            "tenant_id",
            "must be the Directory (tenant) ID, a GUID, or a verified domain such "
            "as contoso.onmicrosoft.com",
        )
    if value != value.lower():
        reader.note("tenant_id", "converted to lower case")
    return value.lower()


def _guid(reader: FieldReader, name: str, value: str, message: str) -> str:
    match = _GUID.fullmatch(value)
    if match is None:
        raise reader.error(name, message)
    guid = match[1].lower()
    if guid != value:
        reader.note(name, "converted to a lower-case GUID without braces")
    return guid


def _check_secret(reader: FieldReader, secret: str) -> None:
    if _GUID.fullmatch(secret):
        raise reader.error(
            "client_secret",
            "is shaped like a GUID, so it is probably the secret's Secret ID; copy "
            "the Value column instead, which the portal shows only right after the "
            "secret is created (create a new secret if it is hidden)",
        )
    require_printable(reader, "client_secret", secret)


def _cloud(reader: FieldReader, authority_hosts: Mapping[str, str]) -> str:
    value = reader.string(
        "cloud", max_length=256, aliases=("authority", "authority_host"), required=False
    )
    if value is None:
        return "public"
    if "://" not in value:
        cloud = _CLOUD_NAMES.get(value.lower().replace("_", ""))
    else:
        cloud = _cloud_of_url(value, authority_hosts)
    if cloud is None:
        raise reader.error(
            "cloud",
            "must be public, usgov or china (or AzureCloud, AzureUSGovernment, "
            "AzureChinaCloud, or one of their authority URLs)",
        )
    if cloud != value:
        reader.note("cloud", f"stored as {cloud}")
    return cloud


def _cloud_of_url(url: str, authority_hosts: Mapping[str, str]) -> str | None:
    host = (urlsplit(url).hostname or "").lower()
    configured = {
        (urlsplit(configured_url).hostname or ""): cloud
        for cloud, configured_url in authority_hosts.items()
    }
    return configured.get(host) or _AUTHORITY_HOSTS.get(host)


def _rejection(reply: HttpReply) -> CheckResult:
    if reply.status not in (400, 401) or not isinstance(reply.body.get("error"), str):
        return unexpected_response("Azure", reply.status)
    code = _error_code(reply.body)
    if code in _REJECTIONS:
        reason, message = _REJECTIONS[code]
        return CheckResult(
            Status.INVALID, reason, message, details={"aadsts": str(code)}
        )
    label = f"AADSTS{code}" if code is not None else str(reply.body["error"])
    return CheckResult(
        Status.INVALID,
        "rejected",
        f"Azure rejected the service principal ({label}); look the code up in "
        "Microsoft Entra's error reference",
        details={"aadsts": str(code)} if code is not None else {},
    )


def _error_code(body: Mapping[str, object]) -> int | None:
    codes = body.get("error_codes")
    if isinstance(codes, list) and codes and isinstance(codes[0], int):
        return codes[0]
    match = _AADSTS.search(str(body.get("error_description", "")))
    return int(match[1]) if match else None
