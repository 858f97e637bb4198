"""Route a submission to its provider module: input checks, then the live check.

``normalise`` runs every input check and makes no network call; ``check`` runs
the provider's live check on a credential ``normalise`` returned. The provider
modules import boto3 and google-auth only inside their checks, so importing
this module costs other functions nothing at cold start.
"""

from __future__ import annotations

from datetime import datetime

from shared.credentials import aws, azure, gcp, openai
from shared.credentials._live import CheckResult, ProviderEndpoints
from shared.credentials._normalise import (
    PROVIDERS,
    CredentialInputError,
    NormalisedCredential,
)

__all__ = ["check", "normalise"]


def normalise(
    provider: object,
    raw: object,
    *,
    endpoints: ProviderEndpoints,
    now: datetime,
) -> NormalisedCredential:
    """Check ``raw`` as a ``provider`` credential and return its canonical form.

    Raises CredentialInputError naming the field and the fix.
    """
    if not isinstance(provider, str) or provider not in PROVIDERS:
        raise CredentialInputError("provider", f"must be one of {list(PROVIDERS)}")
    if provider == "gcp":
        return gcp.normalise(raw, token_uris=endpoints.gcp_token_uris)
    if not isinstance(raw, dict):
        raise CredentialInputError(
            "credentials", f"must be a JSON object with the {provider} fields"
        )
    if provider == "aws":
        return aws.normalise(raw, now=now)
    if provider == "azure":
        return azure.normalise(raw, authority_hosts=endpoints.azure_authority_hosts)
    return openai.normalise(raw)


def check(
    credential: NormalisedCredential, endpoints: ProviderEndpoints, *, now: datetime
) -> CheckResult:
    """Run the live check of the credential's provider."""
    checks = {
        "aws": aws.check,
        "azure": azure.check,
        "gcp": gcp.check,
        "openai": openai.check,
    }
    return checks[credential.provider](credential, endpoints, now=now)
