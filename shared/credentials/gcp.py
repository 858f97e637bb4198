"""Google Cloud service account keys: input checks and the live check.

Accepted: the JSON key file created under IAM > Service accounts > Keys, sent
as an object or as a string holding the file's text. Stored fields: ``type``,
``project_id``, ``private_key_id``, ``private_key``, ``client_email``,
``token_uri`` and, when present, ``client_id`` and ``universe_domain``. The
file's ``auth_uri`` and certificate URLs are read and dropped, because signing
needs neither.

Normalised in ``private_key``: literal ``\\n`` sequences (a file that was
JSON-encoded twice) become line breaks, CR LF and CR become LF, and the PEM text
ends with one line break. The key's base64 body is never changed. A missing
``token_uri`` becomes Google's default.

Rejected, with a pointer to the right file: an OAuth client file (``installed``
or ``web``) and a user credential (``authorized_user``, from ``gcloud auth
application-default login``). Also rejected: workload identity federation and
impersonation configurations, a Google API key, and a private key that is
encrypted, is not RSA of 2048 to 4096 bits, or does not load. A
``token_uri`` outside ``GCP_TOKEN_URI_ALLOWLIST`` is rejected before anything
is signed, so a tenant cannot make this service send a signed assertion to a
host of their choosing.

Live check: an RS256 JWT signed with the key is exchanged at ``token_uri``
for an access token (the JWT bearer grant of RFC 7523).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from shared.credentials._live import (
    CheckResult,
    HttpReply,
    ProviderEndpoints,
    Status,
    send,
    unexpected_response,
)
from shared.credentials._normalise import (
    BOM,
    CredentialInputError,
    FieldReader,
    NormalisedCredential,
)

PROVIDER = "gcp"
DEFAULT_TOKEN_URI = "https://oauth2.googleapis.com/token"  # noqa: S105 - a URL
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
_ASSERTION_LIFETIME = timedelta(minutes=10)
_MAX_PRIVATE_KEY_CHARS = 8192
_MIN_RSA_BITS = 2048
_MAX_RSA_BITS = 4096
_DROPPED_FIELDS = ("auth_uri", "auth_provider_x509_cert_url", "client_x509_cert_url")

_PRIVATE_KEY_ID = re.compile(r"[0-9a-f]{40}")
# Service account ids never contain "_". Allowing it would also admit an
# address shaped like an API key, which the audit event of the check rejects.
_CLIENT_EMAIL = re.compile(
    r"[a-z0-9][a-z0-9.-]{0,99}@[a-z0-9.-]+\.gserviceaccount\.com"
)
_PROJECT_ID = re.compile(r"([a-z][a-z0-9.-]{0,62}:)?[a-z][a-z0-9-]{4,28}[a-z0-9]")
_CLIENT_ID = re.compile(r"[0-9]{1,32}")
_DOMAIN = re.compile(r"[a-z0-9.-]{1,253}")

_OTHER_KINDS = {
    "authorized_user": (
        "is a user credential (from gcloud auth application-default login), not "
        "a service account key; create a key under IAM > Service accounts > Keys"
    ),
    "external_account": (
        "is a workload identity federation configuration, which holds no key; "
        "create a service account key under IAM > Service accounts > Keys"
    ),
    "external_account_authorized_user": (
        "is a workforce identity federation credential, not a service account "
        "key; create a key under IAM > Service accounts > Keys"
    ),
    "impersonated_service_account": (
        "is an impersonation configuration, not a service account key; create "
        "a key for the target account under IAM > Service accounts > Keys"
    ),
}


def normalise(raw: object, *, token_uris: Sequence[str]) -> NormalisedCredential:
    """Check a service account key file and return its canonical form."""
    document, repairs = _document(raw)
    _reject_other_kinds(document)
    reader = FieldReader(document)
    reader.normalised.extend(repairs)
    account_type = reader.required("type", max_length=64)
    if account_type != "service_account":
        raise reader.error("type", 'must be "service_account"')

    fields = {
        "type": account_type,
        "project_id": _matching(reader, "project_id", _PROJECT_ID, "a project id"),
        "private_key_id": _matching(
            reader,
            "private_key_id",
            _PRIVATE_KEY_ID,
            "the 40 lower-case hexadecimal characters from the key file",
        ),
        "private_key": _private_key(reader),
        "client_email": _client_email(reader),
        "token_uri": _token_uri(reader, token_uris),
    }
    _optional(reader, fields, "client_id", _CLIENT_ID, "the account's numeric id")
    _optional(reader, fields, "universe_domain", _DOMAIN, "a domain name")
    reader.drop(*_DROPPED_FIELDS)

    return NormalisedCredential(
        provider=PROVIDER,
        fields=fields,
        secret_fields=("private_key",),
        account_hint=fields["client_email"],
        details={
            "client_email": fields["client_email"],
            "project_id": fields["project_id"],
            "private_key_id": fields["private_key_id"],
        },
        normalised=tuple(reader.normalised),
        ignored_fields=reader.ignored(),
    )


def check(
    credential: NormalisedCredential, endpoints: ProviderEndpoints, *, now: datetime
) -> CheckResult:
    """Exchange a JWT signed with the key for an access token at ``token_uri``."""
    token_uri = credential.fields["token_uri"]
    if token_uri not in endpoints.gcp_token_uris:
        raise ValueError("token_uri is not on GCP_TOKEN_URI_ALLOWLIST")
    reply = send(
        "POST",
        token_uri,
        provider="Google",
        timeout=endpoints.timeout_seconds,
        data={"grant_type": JWT_BEARER_GRANT, "assertion": _assertion(credential, now)},
    )
    if isinstance(reply, CheckResult):
        return reply
    if reply.status == 200 and isinstance(reply.body.get("access_token"), str):
        email = credential.fields["client_email"]
        return CheckResult(
            Status.VALID,
            "ok",
            f"Google issued an access token for {email}",
            details={"client_email": email},
        )
    return _rejection(reply)


def _document(raw: object) -> tuple[Mapping[str, object], list[str]]:
    if isinstance(raw, Mapping):
        return raw, []
    if not isinstance(raw, str):
        raise CredentialInputError(
            "credentials",
            "must be the service account key file, as a JSON object or its text",
        )
    repairs = []
    if raw.startswith(BOM):
        raw = raw[len(BOM) :]
        repairs.append("credentials: removed a leading byte-order mark")
    text = raw.strip()
    if text.startswith("AIza"):
        raise CredentialInputError(
            "credentials",
            "is a Google API key, not a service account key; create a key under "
            "IAM > Service accounts > Keys and send the JSON file",
        )
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        raise CredentialInputError(
            "credentials",
            "is not JSON; send the service account key file's content unchanged",
        ) from None
    if not isinstance(document, dict):
        raise CredentialInputError("credentials", "must be the key file's JSON object")
    return document, repairs


def _reject_other_kinds(document: Mapping[str, object]) -> None:
    if "installed" in document or "web" in document:
        raise CredentialInputError(
            "credentials",
            "is an OAuth client file (client_secret_*.json), not a service account "
            "key; create a key under IAM > Service accounts > Keys",
        )
    kind = document.get("type")
    if isinstance(kind, str) and kind in _OTHER_KINDS:
        raise CredentialInputError("credentials.type", _OTHER_KINDS[kind])


def _matching(
    reader: FieldReader, name: str, pattern: re.Pattern[str], description: str
) -> str:
    value = reader.required(name, max_length=256)
    if not pattern.fullmatch(value):
        raise reader.error(name, f"must be {description}, as in the key file")
    return value


def _optional(
    reader: FieldReader,
    fields: dict[str, str],
    name: str,
    pattern: re.Pattern[str],
    description: str,
) -> None:
    value = reader.string(name, max_length=256, required=False)
    if value is None:
        return
    if not pattern.fullmatch(value):
        raise reader.error(name, f"must be {description}, as in the key file")
    fields[name] = value


def _client_email(reader: FieldReader) -> str:
    value = reader.required("client_email", max_length=256)
    if not _CLIENT_EMAIL.fullmatch(value):
        raise reader.error(
            "client_email",
            "must be a service account address: lower-case letters, digits, '.' "
            "or '-' before the @, ending in .gserviceaccount.com; a user's "
            "address cannot sign in with a key file",
        )
    return value


def _token_uri(reader: FieldReader, token_uris: Sequence[str]) -> str:
    value = reader.string("token_uri", max_length=512, required=False)
    if value is None:
        reader.note("token_uri", f"set to {DEFAULT_TOKEN_URI}")
        value = DEFAULT_TOKEN_URI
    if value not in token_uris:
        raise reader.error(
            "token_uri",
            f"must be one of {list(token_uris)}; keep the value from the key file "
            "Google issued",
        )
    return value


def _private_key(reader: FieldReader) -> str:
    value = reader.required(
        "private_key", max_length=_MAX_PRIVATE_KEY_CHARS, multiline=True
    )
    if "\\n" in value:
        # PEM never contains a backslash, so each literal \n was a line break.
        value = value.replace("\\r\\n", "\n").replace("\\n", "\n")
        reader.note("private_key", "turned literal \\n sequences into line breaks")
    if "\r" in value:
        value = value.replace("\r\n", "\n").replace("\r", "\n")
        reader.note("private_key", "converted CR LF line endings to LF")
    value = value.strip() + "\n"
    _check_pem(reader, value)
    return value


def _check_pem(reader: FieldReader, pem: str) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    if "ENCRYPTED" in pem:
        raise reader.error(
            "private_key",
            "is encrypted with a password; create a new key under IAM > Service "
            "accounts > Keys, whose JSON file holds an unencrypted key",
        )
    if not pem.startswith("-----BEGIN ") or "PRIVATE KEY-----" not in pem:
        raise reader.error(
            "private_key",
            "must be a PEM private key starting with -----BEGIN PRIVATE KEY-----; "
            "copy the whole value from the key file",
        )
    if "\n" not in pem.rstrip("\n"):
        raise reader.error(
            "private_key",
            "has lost its line breaks; send the key file's JSON unchanged instead "
            "of pasting the key into a single-line field",
        )
    try:
        data = pem.encode("ascii")
        # Parsed first without checking the primes, because that check costs
        # seconds past 4096 bits; only a key of a usable size gets the check.
        key = load_pem_private_key(
            data, password=None, unsafe_skip_rsa_key_validation=True
        )
        usable = (
            isinstance(key, rsa.RSAPrivateKey)
            and _MIN_RSA_BITS <= key.key_size <= _MAX_RSA_BITS
        )
        if usable:
            load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnicodeEncodeError):
        # Not chained: the parser's error could quote bytes of the key.
        raise reader.error(
            "private_key",
            "does not load as a PEM private key; copy the whole value from the key "
            "file, including the BEGIN and END lines",
        ) from None
    if not usable:
        raise reader.error(
            "private_key",
            f"must be an RSA key of {_MIN_RSA_BITS} to {_MAX_RSA_BITS} bits; Google "
            "issues 2048-bit keys for service accounts",
        )


def _assertion(credential: NormalisedCredential, now: datetime) -> str:
    from google.auth import crypt, jwt

    fields = credential.fields
    signer = crypt.RSASigner.from_string(  # type: ignore[no-untyped-call]
        fields["private_key"], fields["private_key_id"]
    )
    issued_at = int(now.timestamp())
    payload = {
        "iss": fields["client_email"],
        "scope": _SCOPE,
        "aud": fields["token_uri"],
        "iat": issued_at,
        "exp": issued_at + int(_ASSERTION_LIFETIME.total_seconds()),
    }
    token: bytes = jwt.encode(signer, payload)  # type: ignore[no-untyped-call]
    return token.decode("ascii")


def _rejection(reply: HttpReply) -> CheckResult:
    error = reply.body.get("error")
    description = str(reply.body.get("error_description", "")).lower()
    if reply.status not in (400, 401) or not isinstance(error, str):
        return unexpected_response("Google", reply.status)
    if error == "invalid_grant":
        return _invalid_grant(description)
    if error in ("invalid_client", "unauthorized_client", "disabled_client"):
        return CheckResult(
            Status.INVALID,
            "account_disabled",
            "client_email: Google does not accept this service account: it is "
            "disabled or deleted; enable it, or create a key for another account",
        )
    return unexpected_response("Google", reply.status)


def _invalid_grant(description: str) -> CheckResult:
    if "iat" in description or "timeframe" in description:
        return CheckResult(
            Status.INDETERMINATE,
            "clock_skew",
            "Google rejected the assertion's time window, so this service's clock "
            "may be wrong; try again later",
        )
    if "account not found" in description:
        return CheckResult(
            Status.INVALID,
            "unknown_account",
            "client_email: Google has no such service account, or it is disabled; "
            "check that the account still exists in its project",
        )
    if "signature" in description:
        return CheckResult(
            Status.INVALID,
            "key_not_active",
            "private_key is not an active key of this service account: it was "
            "deleted, disabled or has expired; create a new key",
        )
    return CheckResult(
        Status.INVALID,
        "rejected",
        "Google rejected the service account key (invalid_grant); create a new key",
    )
