"""Validating, storing, listing, deleting and reading back tenant cloud credentials.

``CredentialService`` is what the validate-credentials function calls. The
tenant always comes from the authenticated ``Principal``. Keys with the
``admin`` scope validate, store, list, delete and restore. Only keys with the
``credentials:read`` scope read a secret back, and only the operator can issue
such keys. Every read is audited as ``credentials.accessed``.

Storing runs the input checks, refuses a duplicate (same fingerprint as an
active credential of the tenant), runs the live check, and stores only a
``valid`` credential, or an ``indeterminate`` one when the caller asks for it.
The canonical JSON is sealed under the credentials KMS key, bound to the
tenant, ``credentials:<provider>`` and the credential id, as
``CredentialsManager`` seals it. Deletion keeps the row restorable for the
recovery window; the tenant's next store, list or delete erases rows whose
window has passed.

Audit events: ``credentials.validated`` (valid), ``credentials.validation_failed``
(input error, invalid or indeterminate), ``credentials.stored``,
``credentials.deleted``, ``credentials.restored``, ``credentials.erased`` and
``credentials.accessed``. Their details carry the provider, credential id,
account hint, status and reason codes, never a secret.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared.credentials import validation
from shared.credentials._fingerprint import Fingerprinter, load_fingerprint_key
from shared.credentials._live import CheckResult, ProviderEndpoints, Status
from shared.credentials._normalise import (
    PROVIDERS,
    CredentialInputError,
    NormalisedCredential,
)
from shared.crypto import DecryptionError, EnvelopeCipher, RecordContext, build_kms
from shared.crypto.managers import CREDENTIALS_KIND
from shared.events import AuditEvent, AuditSink, new_event
from shared.keyservice import NotFoundError, Principal, RequestInfo
from shared.store import CredentialRecord, Store

if TYPE_CHECKING:
    from shared.config import Settings

_log = logging.getLogger(__name__)

ADMIN_SCOPE = "admin"
READ_SCOPE = "credentials:read"
_MAX_NAME_CHARS = 200
_NO_REQUEST_INFO = RequestInfo()


@dataclass(frozen=True)
class Submission:
    """A credential as the caller sent it: nothing here is checked yet."""

    provider: object
    credentials: object
    name: object = None


@dataclass(frozen=True)
class Validation:
    """The canonical credential and the outcome of its live check."""

    credential: NormalisedCredential
    result: CheckResult
    checked_at: datetime


class CredentialRejectedError(Exception):
    """The provider rejected the credential; ``validation`` contains the reason."""

    def __init__(self, validation: Validation) -> None:
        super().__init__(validation.result.message)
        self.validation = validation


class CheckIndeterminateError(Exception):
    """The live check proved nothing, and the caller did not ask to store anyway."""

    def __init__(self, validation: Validation) -> None:
        super().__init__(validation.result.message)
        self.validation = validation


class DuplicateCredentialError(Exception):
    """The tenant already stores this credential as ``existing``."""

    def __init__(self, existing: CredentialRecord) -> None:
        super().__init__(f"already stored as {existing.credential_id}")
        self.existing = existing


class CredentialService:
    """Tenant credential operations over a store, a cipher and an audit sink."""

    def __init__(
        self,
        store: Store,
        cipher: EnvelopeCipher,
        audit: AuditSink,
        endpoints: ProviderEndpoints,
        fingerprinter: Fingerprinter,
        *,
        recovery_window: timedelta = timedelta(days=7),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._cipher = cipher
        self._audit = audit
        self._endpoints = endpoints
        self._fingerprinter = fingerprinter
        self._recovery_window = recovery_window
        self._clock = clock

    def validate(
        self,
        principal: Principal,
        submission: Submission,
        request: RequestInfo = _NO_REQUEST_INFO,
    ) -> Validation:
        """Run the input checks and the live check; store nothing."""
        tenant_id = _tenant_of(principal, ADMIN_SCOPE)
        credential = self._normalise(principal, tenant_id, submission, request)
        return self._check(principal, tenant_id, credential, request)

    def store(
        self,
        principal: Principal,
        submission: Submission,
        *,
        store_if_indeterminate: bool = False,
        request: RequestInfo = _NO_REQUEST_INFO,
    ) -> tuple[CredentialRecord, Validation]:
        """Validate a credential and store it encrypted if the check allows.

        Raises CredentialInputError, DuplicateCredentialError,
        CredentialRejectedError or CheckIndeterminateError, in that order.
        """
        tenant_id = _tenant_of(principal, ADMIN_SCOPE)
        name = _name(submission.name)
        credential = self._normalise(principal, tenant_id, submission, request)
        fingerprint = self._fingerprinter.fingerprint(tenant_id, credential)
        self._erase_due(tenant_id, request)
        for existing in self._store.list_credentials(tenant_id):
            if existing.is_active and existing.fingerprint == fingerprint:
                raise DuplicateCredentialError(existing)
        outcome = self._check(principal, tenant_id, credential, request)
        status = outcome.result.status
        if status is Status.INVALID:
            raise CredentialRejectedError(outcome)
        if status is Status.INDETERMINATE and not store_if_indeterminate:
            raise CheckIndeterminateError(outcome)
        record = self._new_record(principal, tenant_id, name, outcome, fingerprint)
        self._store.insert_credential(record)
        self._emit("credentials.stored", principal, request, record)
        return record, outcome

    def list(self, principal: Principal) -> list[CredentialRecord]:
        """Return the tenant's credentials, deleted ones included, oldest first."""
        tenant_id = _tenant_of(principal, ADMIN_SCOPE)
        self._erase_due(tenant_id, _NO_REQUEST_INFO)
        return self._store.list_credentials(tenant_id)

    def get(self, principal: Principal, credential_id: str) -> CredentialRecord:
        tenant_id = _tenant_of(principal, ADMIN_SCOPE)
        record = self._store.get_credential(tenant_id, credential_id)
        if record is None:
            raise NotFoundError(credential_id)
        return record

    def delete(
        self,
        principal: Principal,
        credential_id: str,
        request: RequestInfo = _NO_REQUEST_INFO,
    ) -> CredentialRecord:
        """Delete a credential; it stays restorable for the recovery window."""
        tenant_id = _tenant_of(principal, ADMIN_SCOPE)
        now = self._clock()
        erase_after = now + self._recovery_window
        if not self._store.delete_credential(
            tenant_id, credential_id, now, principal.actor_id, erase_after
        ):
            raise NotFoundError(credential_id)
        record = self._store.get_credential(tenant_id, credential_id)
        assert record is not None
        self._emit(
            "credentials.deleted",
            principal,
            request,
            record,
            erase_after=erase_after.isoformat(),
        )
        self._erase_due(tenant_id, request)
        return record

    def restore(
        self,
        principal: Principal,
        credential_id: str,
        request: RequestInfo = _NO_REQUEST_INFO,
    ) -> CredentialRecord:
        """Undo a deletion while its recovery window is open."""
        tenant_id = _tenant_of(principal, ADMIN_SCOPE)
        if not self._store.restore_credential(tenant_id, credential_id, self._clock()):
            raise NotFoundError(credential_id)
        record = self._store.get_credential(tenant_id, credential_id)
        assert record is not None
        self._emit("credentials.restored", principal, request, record)
        return record

    def read(
        self,
        principal: Principal,
        credential_id: str,
        request: RequestInfo = _NO_REQUEST_INFO,
    ) -> tuple[CredentialRecord, dict[str, Any]]:
        """Return an active credential's canonical fields, auditing the access."""
        tenant_id = _tenant_of(principal, READ_SCOPE)
        record = self._store.get_credential(tenant_id, credential_id)
        if record is None or not record.is_active:
            raise NotFoundError(credential_id)
        context = RecordContext(tenant_id, _kind(record.provider), credential_id)
        plaintext = self._cipher.decrypt(record.encrypted_credentials, context)
        try:
            fields = json.loads(plaintext)
        except ValueError:
            raise DecryptionError() from None
        self._emit("credentials.accessed", principal, request, record)
        return record, fields

    # Steps

    def _normalise(
        self,
        principal: Principal,
        tenant_id: str,
        submission: Submission,
        request: RequestInfo,
    ) -> NormalisedCredential:
        try:
            return validation.normalise(
                submission.provider,
                submission.credentials,
                endpoints=self._endpoints,
                now=self._clock(),
            )
        except CredentialInputError as exc:
            provider = submission.provider
            details = {
                "provider": provider if provider in PROVIDERS else None,
                "status": "rejected_input",
                "reason": "input_invalid",
                "field": exc.field,
            }
            self._audit.emit(
                self._event(
                    "credentials.validation_failed",
                    principal,
                    request,
                    tenant_id,
                    {key: value for key, value in details.items() if value},
                )
            )
            raise

    def _check(
        self,
        principal: Principal,
        tenant_id: str,
        credential: NormalisedCredential,
        request: RequestInfo,
    ) -> Validation:
        now = self._clock()
        result = validation.check(credential, self._endpoints, now=now)
        labels = {
            "tenant_id": tenant_id,
            "provider": credential.provider,
            "status": result.status.value,
            "reason": result.reason,
        }
        _log.info("credential checked", extra={"labels": labels})
        event_type = (
            "credentials.validated"
            if result.status is Status.VALID
            else "credentials.validation_failed"
        )
        details = {
            "provider": credential.provider,
            "account_hint": credential.account_hint,
            "status": result.status.value,
            "reason": result.reason,
        }
        self._audit.emit(
            self._event(event_type, principal, request, tenant_id, details)
        )
        return Validation(credential, result, now)

    def _new_record(
        self,
        principal: Principal,
        tenant_id: str,
        name: str | None,
        outcome: Validation,
        fingerprint: str,
    ) -> CredentialRecord:
        credential, result = outcome.credential, outcome.result
        credential_id = f"cred_{uuid.uuid4().hex}"
        context = RecordContext(tenant_id, _kind(credential.provider), credential_id)
        now = self._clock()
        return CredentialRecord(
            credential_id=credential_id,
            tenant_id=tenant_id,
            provider=credential.provider,
            name=name,
            encrypted_credentials=self._cipher.encrypt(
                credential.canonical_json(), context
            ),
            kms_key_name=self._cipher.key_name,
            account_hint=credential.account_hint,
            fingerprint=fingerprint,
            validation_status=result.status.value,
            validated_at=outcome.checked_at,
            expires_at=result.expires_at or credential.expires_at,
            details={**credential.details, **result.details},
            is_active=True,
            created_at=now,
            created_by_user_id=principal.actor_id,
        )

    def _erase_due(self, tenant_id: str, request: RequestInfo) -> None:
        for credential_id in self._store.erase_credentials(tenant_id, self._clock()):
            self._audit.emit(
                new_event(
                    "credentials.erased",
                    tenant_id=tenant_id,
                    ip_address=request.ip_address,
                    user_agent=request.user_agent,
                    details={"credential_id": credential_id},
                    now=self._clock(),
                )
            )

    def _emit(
        self,
        event_type: str,
        principal: Principal,
        request: RequestInfo,
        record: CredentialRecord,
        **extra: str,
    ) -> None:
        details = {
            "credential_id": record.credential_id,
            "provider": record.provider,
            "account_hint": record.account_hint,
            "validation_status": record.validation_status,
            **extra,
        }
        self._audit.emit(
            self._event(event_type, principal, request, record.tenant_id, details)
        )

    def _event(
        self,
        event_type: str,
        principal: Principal,
        request: RequestInfo,
        tenant_id: str,
        details: dict[str, Any],
    ) -> AuditEvent:
        return new_event(
            event_type,
            tenant_id=tenant_id,
            user_id=principal.user_id,
            actor_id=principal.actor_id,
            ip_address=request.ip_address,
            user_agent=request.user_agent,
            details=details,
            now=self._clock(),
        )


def build_credential_service(
    settings: Settings, store: Store, audit: AuditSink
) -> CredentialService:
    """Build the service from settings, sharing the caller's store and audit sink."""
    cipher = EnvelopeCipher(
        build_kms(settings, audit=audit),
        settings.credentials_kms_path,
        data_key_seconds=settings.data_key_cache_seconds,
    )
    return CredentialService(
        store,
        cipher,
        audit,
        ProviderEndpoints.from_settings(settings),
        Fingerprinter(load_fingerprint_key(settings)),
        recovery_window=timedelta(days=settings.credentials_recovery_days),
    )


def _tenant_of(principal: Principal, scope: str) -> str:
    if principal.tenant_id is None or scope not in principal.scopes:
        raise PermissionError(f"this API key lacks the {scope} scope")
    return principal.tenant_id


def _kind(provider: str) -> str:
    return f"{CREDENTIALS_KIND}:{provider}"


def _name(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value.strip()) <= _MAX_NAME_CHARS:
        raise CredentialInputError(
            "name", f"must be a string of 1 to {_MAX_NAME_CHARS} characters"
        )
    try:
        # JSON admits lone surrogate escapes, which the store cannot encode.
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise CredentialInputError(
            "name", "contains a lone UTF-16 surrogate; send valid Unicode text"
        ) from None
    return value.strip()
