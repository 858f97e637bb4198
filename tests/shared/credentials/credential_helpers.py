"""Helpers shared by the credential tests: principals, clocks, a faulty provider."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

from infra.provider_standins import LoopbackServer, ProviderStandins, Reply
from shared.credentials import ProviderEndpoints
from shared.keyservice import Principal

KEY_PATH = "projects/p/locations/l/keyRings/r/cryptoKeys/credentials-encryption"
ADMIN = Principal("key_admin_acme", "acme", "usr_acme", ("admin", "api"))
READER = Principal("key_reader_acme", "acme", None, ("credentials:read",))
OTHER_ADMIN = Principal("key_admin_globex", "globex", "usr_globex", ("admin",))
OTHER_READER = Principal("key_reader_globex", "globex", None, ("credentials:read",))
# The indeterminate cases use this read timeout; the slow server outlasts it.
SHORT_TIMEOUT = 0.5


def endpoints_for(
    standins: ProviderStandins, timeout: float = 5.0
) -> ProviderEndpoints:
    return ProviderEndpoints(
        aws_sts_endpoint=standins.aws.endpoint,
        aws_sts_region=standins.aws.region,
        azure_authority_hosts={
            "public": standins.azure.authority_host,
            "usgov": "https://login.microsoftonline.us",
            "china": "https://login.chinacloudapi.cn",
        },
        openai_api_base=standins.openai.api_base,
        gcp_token_uris=(standins.google.token_uri,),
        timeout_seconds=timeout,
    )


class FaultyProvider:
    """A provider endpoint that responds to every request the way ``mode`` names.

    ``500`` and ``html403`` send HTML error pages, ``redirect`` a 307 to
    ``redirect_to``, ``garbage`` a 200 whose body is not the API's, and ``slow``
    responds only after the client's timeout.
    """

    def __init__(self) -> None:
        self.mode = "500"
        self.redirect_to = "http://127.0.0.1:9/"
        self._release = threading.Event()
        self.server = LoopbackServer(self._route)

    @property
    def url(self) -> str:
        return self.server.url

    def endpoints(self) -> ProviderEndpoints:
        return ProviderEndpoints(
            aws_sts_endpoint=self.url,
            aws_sts_region="us-east-1",
            azure_authority_hosts={
                "public": self.url,
                "usgov": self.url,
                "china": self.url,
            },
            openai_api_base=f"{self.url}/v1",
            gcp_token_uris=(f"{self.url}/token",),
            timeout_seconds=SHORT_TIMEOUT,
        )

    def stop(self) -> None:
        self._release.set()
        self.server.stop()

    def _route(self, method: str, path: str, headers: Any, body: bytes) -> Reply:
        if self.mode == "slow":
            # Responds only after the client timed out, or when the test ends.
            self._release.wait(timeout=30)
            return Reply(200, {"access_token": "late", "data": []})
        if self.mode == "html403":
            page = "<html><body><h1>403 Forbidden</h1>Request blocked.</body></html>"
            return Reply(403, page, "text/html")
        if self.mode == "redirect":
            return Reply(307, "", "text/plain", {"Location": self.redirect_to})
        if self.mode == "garbage":
            return Reply(200, "this is not the provider's API", "text/plain")
        page = "<html><body><h1>500 Internal Server Error</h1></body></html>"
        return Reply(500, page, "text/html")


class Clock:
    """A settable clock for recovery windows."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now
