"""Tenant cloud credentials: input checks, live checks with each provider, storage.

``validation.normalise`` checks a submitted credential and returns its
canonical form, and ``validation.check`` calls the provider to test it.
``CredentialService`` stores credentials encrypted and reads them back for the
platform's pipelines. One module per provider (``gcp``, ``aws``, ``azure``,
``openai``) documents what it accepts, normalises and rejects.

Errors: ``CredentialInputError`` (malformed input; names the field and the
fix), ``CredentialRejectedError`` (the provider rejected it),
``CheckIndeterminateError`` (the check proved nothing) and
``DuplicateCredentialError``.
"""

from __future__ import annotations

from shared.credentials._fingerprint import Fingerprinter, load_fingerprint_key
from shared.credentials._live import CheckResult, ProviderEndpoints, Status
from shared.credentials._normalise import (
    PROVIDERS,
    CredentialInputError,
    NormalisedCredential,
)
from shared.credentials.service import (
    ADMIN_SCOPE,
    READ_SCOPE,
    CheckIndeterminateError,
    CredentialRejectedError,
    CredentialService,
    DuplicateCredentialError,
    Submission,
    Validation,
    build_credential_service,
)

__all__ = [
    "ADMIN_SCOPE",
    "PROVIDERS",
    "READ_SCOPE",
    "CheckIndeterminateError",
    "CheckResult",
    "CredentialInputError",
    "CredentialRejectedError",
    "CredentialService",
    "DuplicateCredentialError",
    "Fingerprinter",
    "NormalisedCredential",
    "ProviderEndpoints",
    "Status",
    "Submission",
    "Validation",
    "build_credential_service",
    "load_fingerprint_key",
]
