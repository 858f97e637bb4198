"""AWS access keys: input checks and the live check.

Accepted names: ``aws_access_key_id``, ``aws_secret_access_key`` and
``aws_session_token``, as in ``~/.aws/credentials``, or ``access_key_id``,
``secret_access_key`` and ``session_token``, as older clients send them. They
are stored under the ``aws_`` names. Temporary keys (``ASIA...``) need the
session token and may carry ``expiration`` (ISO 8601 with a time zone, as
``aws sts get-session-token`` prints it), which becomes the stored expiry.

Normalised: an access key id in lower or mixed case is upper-cased. AWS issues
key ids in upper case only, and a key id is not secret.

Rejected: a key id other than ``AKIA`` or ``ASIA`` and 16 letters or digits,
and a secret other than 40 characters of ``A-Z a-z 0-9 / +``. Also rejected:
an id and a secret that look swapped, a session token with a long-term key, no
session token with a temporary key, and an ``expiration`` that has passed.

Live check: STS ``GetCallerIdentity`` at ``AWS_STS_ENDPOINT``. It needs no IAM
permission, so any working key passes, and the account id and ARN it returns
are recorded.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import Any

from shared.credentials._live import CheckResult, ProviderEndpoints, Status
from shared.credentials._normalise import (
    FieldReader,
    NormalisedCredential,
    require_printable,
    suffix_hint,
)

PROVIDER = "aws"
_KEY_ID = re.compile(r"(AKIA|ASIA)[A-Z0-9]{16}")
_SECRET = re.compile(r"[A-Za-z0-9/+]{40}")
_SESSION_TOKEN = re.compile(r"[A-Za-z0-9/+=]+")
_MAX_SESSION_TOKEN_CHARS = 4096

_REJECTIONS = {
    "InvalidClientTokenId": (
        "unknown_key",
        "aws_access_key_id: AWS does not recognise this key: it was deleted or "
        "deactivated, or the session token does not belong to it; check the key "
        "id or create a new access key",
    ),
    "UnrecognizedClientException": (
        "unknown_key",
        "aws_access_key_id: AWS does not recognise this key; check the key id or "
        "create a new access key",
    ),
    "SignatureDoesNotMatch": (
        "wrong_secret",
        "aws_secret_access_key does not match the key id; copy the secret again, "
        "or create a new access key if the secret is lost",
    ),
    "ExpiredToken": (
        "expired",
        "the temporary credentials have expired; request new ones",
    ),
    "AccessDenied": (
        "access_denied",
        "AWS denied GetCallerIdentity for this key; check the account's policies",
    ),
}
_REJECTIONS["ExpiredTokenException"] = _REJECTIONS["ExpiredToken"]


def normalise(raw: dict[str, object], *, now: datetime) -> NormalisedCredential:
    """Check an access key pair and return its canonical form."""
    reader = FieldReader(raw)
    key_id = reader.required(
        "aws_access_key_id", max_length=128, aliases=("access_key_id",)
    )
    secret = reader.required(
        "aws_secret_access_key", max_length=128, aliases=("secret_access_key",)
    )
    _reject_swapped(reader, key_id, secret)
    key_id = _key_id(reader, key_id)
    _check_secret(reader, secret)
    fields = {"aws_access_key_id": key_id, "aws_secret_access_key": secret}
    token = _session_token(reader, key_id)
    if token is not None:
        fields["aws_session_token"] = token
    expires_at = _expiration(reader, key_id, now)
    if expires_at is not None:
        fields["expiration"] = expires_at.isoformat()
    return NormalisedCredential(
        provider=PROVIDER,
        fields=fields,
        secret_fields=("aws_secret_access_key", "aws_session_token"),
        account_hint=key_id[:4] + suffix_hint(key_id),
        details={},
        normalised=tuple(reader.normalised),
        ignored_fields=reader.ignored(),
        expires_at=expires_at,
    )


def check(
    credential: NormalisedCredential, endpoints: ProviderEndpoints, *, now: datetime
) -> CheckResult:
    """Call STS GetCallerIdentity with the key and record the account it names."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectTimeoutError,
        ReadTimeoutError,
    )
    from botocore.parsers import ResponseParserError

    try:
        identity = _sts_client(credential, endpoints).get_caller_identity()
    except ClientError as exc:
        return _client_error(exc.response)
    except (ConnectTimeoutError, ReadTimeoutError):
        return CheckResult(
            Status.INDETERMINATE,
            "timeout",
            f"AWS STS did not answer within {endpoints.timeout_seconds:g} s; "
            "try again later",
        )
    except ResponseParserError:
        # Not chained or logged: its message quotes the response body.
        return _unexpected_response("an unparseable")
    except BotoCoreError as exc:
        return CheckResult(
            Status.INDETERMINATE,
            "unreachable",
            f"AWS STS could not be reached ({type(exc).__name__}); try again later",
        )
    account, arn = str(identity.get("Account", "")), str(identity.get("Arn", ""))
    return CheckResult(
        Status.VALID,
        "ok",
        f"AWS accepted the key for {arn or 'account ' + account}",
        details={"account_id": account, "arn": arn},
        expires_at=credential.expires_at,
    )


def _reject_swapped(reader: FieldReader, key_id: str, secret: str) -> None:
    if _KEY_ID.fullmatch(secret.upper()) and len(key_id) == 40:
        raise reader.error(
            "aws_access_key_id",
            "and aws_secret_access_key look swapped: the key id is the 20-character "
            "value starting with AKIA or ASIA",
        )


def _key_id(reader: FieldReader, key_id: str) -> str:
    if not _KEY_ID.fullmatch(key_id) and _KEY_ID.fullmatch(key_id.upper()):
        key_id = key_id.upper()
        reader.note("aws_access_key_id", "converted to upper case")
    if not _KEY_ID.fullmatch(key_id):
        raise reader.error(
            "aws_access_key_id",
            "must be 20 characters: AKIA (a long-term key) or ASIA (a temporary "
            "key) and 16 upper-case letters or digits",
        )
    return key_id


def _check_secret(reader: FieldReader, secret: str) -> None:
    require_printable(reader, "aws_secret_access_key", secret)
    if not _SECRET.fullmatch(secret):
        raise reader.error(
            "aws_secret_access_key",
            "must be the 40-character secret (letters, digits, / and +) shown "
            "once when the access key was created",
        )


def _session_token(reader: FieldReader, key_id: str) -> str | None:
    token = reader.string(
        "aws_session_token",
        max_length=_MAX_SESSION_TOKEN_CHARS,
        aliases=("session_token",),
        required=False,
    )
    temporary = key_id.startswith("ASIA")
    if token is None and temporary:
        raise reader.error(
            "aws_session_token",
            "is required with a temporary key (ASIA...); send the session token "
            "that came with it",
        )
    if token is not None and not temporary:
        raise reader.error(
            "aws_session_token",
            "belongs to temporary keys (ASIA...) only; omit it for this long-term "
            "key (AKIA...)",
        )
    if token is not None:
        require_printable(reader, "aws_session_token", token)
        if not _SESSION_TOKEN.fullmatch(token):
            raise reader.error(
                "aws_session_token",
                "must be the base64 session token exactly as STS returned it",
            )
    return token


def _expiration(reader: FieldReader, key_id: str, now: datetime) -> datetime | None:
    text = reader.string("expiration", max_length=64, required=False)
    if text is None:
        return None
    if not key_id.startswith("ASIA"):
        raise reader.error(
            "expiration", "belongs to temporary keys (ASIA...) only; omit it"
        )
    try:
        expires_at = datetime.fromisoformat(text)
    except ValueError:
        expires_at = None
    if expires_at is None or expires_at.tzinfo is None:
        raise reader.error(
            "expiration",
            "must be an ISO 8601 time with a time zone, e.g. 2030-01-31T12:00:00Z",
        )
    try:
        # Kept in UTC, as stored; a local time late on 9999-12-31 does not fit.
        expires_at = expires_at.astimezone(UTC)
    except OverflowError:
        raise reader.error(
            "expiration", "is after the year 9999; send the time STS returned"
        ) from None
    if expires_at <= now:
        raise reader.error(
            "expiration", "has passed; request new temporary credentials"
        )
    return expires_at


def _sts_client(credential: NormalisedCredential, endpoints: ProviderEndpoints) -> Any:
    import boto3
    from botocore.config import Config

    # botocore's DEBUG records print request headers, X-Amz-Security-Token
    # among them, so its logger stays at INFO or above even with LOG_LEVEL=DEBUG.
    botocore_log = logging.getLogger("botocore")
    if botocore_log.getEffectiveLevel() < logging.INFO:
        botocore_log.setLevel(logging.INFO)
    fields = credential.fields
    session = boto3.session.Session(
        aws_access_key_id=fields["aws_access_key_id"],
        aws_secret_access_key=fields["aws_secret_access_key"],
        aws_session_token=fields.get("aws_session_token"),
        region_name=endpoints.aws_sts_region,
    )
    config = Config(
        connect_timeout=endpoints.timeout_seconds,
        read_timeout=endpoints.timeout_seconds,
        retries={"total_max_attempts": 1},
    )
    return session.client("sts", endpoint_url=endpoints.aws_sts_endpoint, config=config)


def _client_error(response: dict[str, Any]) -> CheckResult:
    code = str(response.get("Error", {}).get("Code", ""))
    status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
    if code in _REJECTIONS:
        reason, message = _REJECTIONS[code]
        return CheckResult(Status.INVALID, reason, message)
    if status == 429 or status >= 500 or code in ("Throttling", "InternalFailure"):
        return CheckResult(
            Status.INDETERMINATE,
            "provider_unavailable",
            f"AWS STS answered HTTP {status}; try again later",
        )
    return _unexpected_response(f"an HTTP {status}")


def _unexpected_response(answer: str) -> CheckResult:
    return CheckResult(
        Status.INDETERMINATE,
        "unexpected_response",
        f"AWS STS gave {answer} answer that is not STS's, for example a proxy or "
        "firewall page, which proves nothing about the key; try again later",
    )
