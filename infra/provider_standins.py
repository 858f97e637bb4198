"""Local stand-ins for the credential providers, served on loopback ports.

Each speaks the part of its provider's real protocol that validate-credentials'
live checks use, so the checks run unchanged against them:

* Google: ``POST /token``, the JWT bearer grant (RFC 7523). It verifies the
  assertion's RS256 signature against the public key of a service account key
  it created, and its ``aud``, ``iat`` and ``exp``.
* AWS: moto's server (``moto[server]``) with IAM authentication enforced, so
  STS ``GetCallerIdentity`` returns ``InvalidClientTokenId`` for an unknown key
  and accepts keys created through its IAM.
* Azure: ``POST /{tenant}/oauth2/v2.0/token``, the client credentials grant,
  responding with Microsoft Entra's AADSTS error bodies.
* OpenAI: ``GET /v1/models`` for Bearer keys it issued.

``start_provider_standins()`` starts all four and returns ``ProviderStandins``:
``settings()`` is the environment that points validate-credentials at them,
and its ``google``, ``aws``, ``azure`` and ``openai`` members create working
credentials. Run as a script, it writes one working request body per provider
to a folder, prints the settings, and serves until interrupted::

    python infra/provider_standins.py --write-requests .data/standins

Only loopback addresses are used. moto is imported only when the AWS stand-in
starts.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import json
import logging
import secrets
import signal
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

LOOPBACK = "127.0.0.1"
_ASSERTION_MAX_SECONDS = 3600
_CLOCK_SKEW_SECONDS = 300


@dataclass(frozen=True)
class Reply:
    """A stand-in's response: the status, a JSON body or text, and its media type."""

    status: int
    body: dict[str, Any] | str
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


Route = Callable[[str, str, dict[str, str], bytes], Reply]


class LoopbackServer:
    """A threaded HTTP server on a free loopback port that calls one route function.

    ``requests`` counts the requests served, so tests can show that none came.
    """

    def __init__(self, route: Route) -> None:
        self.requests = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

            def _serve(self, method: str) -> None:
                server.requests += 1
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                headers = {key.lower(): value for key, value in self.headers.items()}
                reply = route(method, self.path, headers, body)
                if isinstance(reply.body, str):
                    payload = reply.body.encode()
                else:
                    payload = json.dumps(reply.body).encode()
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.content_type)
                self.send_header("Content-Length", str(len(payload)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                """Keep request lines off stderr."""

        self._httpd = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()


def _form(body: bytes) -> dict[str, str]:
    return {
        key: values[0]
        for key, values in parse_qs(body.decode("utf-8", "replace")).items()
    }


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# Google


class GoogleStandin:
    """Google's OAuth 2.0 token endpoint, for service account keys it created."""

    def __init__(self) -> None:
        self._accounts: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._server = LoopbackServer(self._route)

    @property
    def token_uri(self) -> str:
        return f"{self._server.url}/token"

    @property
    def server(self) -> LoopbackServer:
        return self._server

    def create_key(
        self, project_id: str = "standin-project", account: str | None = None
    ) -> dict[str, str]:
        """Create a service account key and return its key file, as Google does."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        account = account or f"pipeline-{secrets.token_hex(3)}"
        email = f"{account}@{project_id}.iam.gserviceaccount.com"
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        key_id = secrets.token_hex(20)
        with self._lock:
            self._accounts.setdefault(email, {})[key_id] = key.public_key()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode("ascii")
        return {
            "type": "service_account",
            "project_id": project_id,
            "private_key_id": key_id,
            "private_key": pem,
            "client_email": email,
            "client_id": str(secrets.randbelow(10**20) + 10**20),
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": self.token_uri,
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "client_x509_cert_url": "https://www.googleapis.com/robot/v1/metadata/x509/"
            + email.replace("@", "%40"),
            "universe_domain": "googleapis.com",
        }

    def delete_key(self, client_email: str, private_key_id: str) -> None:
        with self._lock:
            self._accounts.get(client_email, {}).pop(private_key_id, None)

    def delete_account(self, client_email: str) -> None:
        with self._lock:
            self._accounts.pop(client_email, None)

    def stop(self) -> None:
        self._server.stop()

    def _route(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> Reply:
        if method != "POST" or urlsplit(path).path != "/token":
            return Reply(404, {"error": "not_found"})
        form = _form(body)
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return _oauth_error("unsupported_grant_type", "Invalid grant_type.")
        return self._exchange(form.get("assertion", ""))

    def _exchange(self, assertion: str) -> Reply:
        try:
            header_b64, payload_b64, signature_b64 = assertion.split(".")
            header = json.loads(_b64url(header_b64))
            claims = json.loads(_b64url(payload_b64))
            signature = _b64url(signature_b64)
        except (ValueError, binascii.Error):
            return _oauth_error("invalid_grant", "Invalid JWT: malformed.")
        if header.get("alg") != "RS256":
            return _oauth_error("invalid_grant", "Invalid JWT Signature.")
        with self._lock:
            keys = self._accounts.get(str(claims.get("iss")))
            public_key = (keys or {}).get(str(header.get("kid")))
        if keys is None:
            return _oauth_error("invalid_grant", "Invalid grant: account not found")
        signed = f"{header_b64}.{payload_b64}".encode("ascii")
        if public_key is None or not _rs256_valid(public_key, signature, signed):
            return _oauth_error("invalid_grant", "Invalid JWT Signature.")
        if claims.get("aud") != self.token_uri:
            return _oauth_error(
                "invalid_grant",
                "Invalid JWT: Failed audience check. The right audience is "
                + self.token_uri,
            )
        if not _times_valid(claims):
            return _oauth_error(
                "invalid_grant",
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in "
                "a reasonable timeframe. Check your iat and exp values in the JWT "
                "claim.",
            )
        return Reply(
            200,
            {
                "access_token": "ya29.standin-" + secrets.token_urlsafe(24),
                "expires_in": 3599,
                "token_type": "Bearer",
            },
        )


def _rs256_valid(public_key: Any, signature: bytes, signed: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    try:
        public_key.verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def _times_valid(claims: dict[str, Any]) -> bool:
    now = time.time()
    issued_at, expires_at = claims.get("iat"), claims.get("exp")
    if not isinstance(issued_at, int) or not isinstance(expires_at, int):
        return False
    return (
        abs(issued_at - now) <= _CLOCK_SKEW_SECONDS
        and expires_at > now
        and expires_at - issued_at <= _ASSERTION_MAX_SECONDS
    )


def _oauth_error(error: str, description: str, status: int = 400) -> Reply:
    return Reply(status, {"error": error, "error_description": description})


# Azure


class AzureStandin:
    """Microsoft Entra's v2.0 token endpoint, for applications it registered."""

    def __init__(self) -> None:
        # tenant id -> client id -> [(secret, expires_at)]
        self._tenants: dict[str, dict[str, list[tuple[str, datetime]]]] = {}
        self._lock = threading.Lock()
        self._server = LoopbackServer(self._route)

    @property
    def authority_host(self) -> str:
        return self._server.url

    @property
    def server(self) -> LoopbackServer:
        return self._server

    def create_application(
        self,
        tenant_id: str | None = None,
        *,
        secret_expires_at: datetime | None = None,
    ) -> dict[str, str]:
        """Register an application with one client secret; return the principal."""
        tenant_id = tenant_id or str(uuid.uuid4())
        client_id = str(uuid.uuid4())
        secret = secrets.token_urlsafe(3)[:3] + "8Q~" + secrets.token_urlsafe(26)[:34]
        expires_at = secret_expires_at or datetime(2099, 1, 1, tzinfo=UTC)
        with self._lock:
            applications = self._tenants.setdefault(tenant_id, {})
            applications[client_id] = [(secret, expires_at)]
        return {"tenant_id": tenant_id, "client_id": client_id, "client_secret": secret}

    def stop(self) -> None:
        self._server.stop()

    def _route(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> Reply:
        parts = urlsplit(path).path.strip("/").split("/")
        if method != "POST" or parts[1:] != ["oauth2", "v2.0", "token"]:
            return Reply(404, {"error": "not_found"})
        tenant_id, form = parts[0], _form(body)
        with self._lock:
            applications = self._tenants.get(tenant_id)
            secrets_of_client = (applications or {}).get(form.get("client_id", ""))
        if applications is None:
            return _aadsts(
                400, "invalid_request", 90002, f"Tenant '{tenant_id}' not found."
            )
        if form.get("grant_type") != "client_credentials":
            return _aadsts(
                400, "unsupported_grant_type", 70003, "The grant type is unsupported."
            )
        if not form.get("scope", "").endswith("/.default"):
            return _aadsts(400, "invalid_scope", 1002012, "The scope is not valid.")
        if secrets_of_client is None:
            return _aadsts(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{form.get('client_id')}' was not "
                f"found in the directory '{tenant_id}'.",
            )
        return self._authenticate(form, secrets_of_client)

    def _authenticate(
        self, form: dict[str, str], client_secrets: list[tuple[str, datetime]]
    ) -> Reply:
        presented = form.get("client_secret", "")
        for secret, expires_at in client_secrets:
            if secrets.compare_digest(secret.encode(), presented.encode()):
                if expires_at <= datetime.now(UTC):
                    return _aadsts(
                        401,
                        "invalid_client",
                        7000222,
                        "The provided client secret keys for app "
                        f"'{form.get('client_id')}' are expired.",
                    )
                return Reply(
                    200,
                    {
                        "token_type": "Bearer",
                        "expires_in": 3599,
                        "ext_expires_in": 3599,
                        "access_token": "eyJ0eXAiOiJKV1Qi.standin."
                        + secrets.token_urlsafe(24),
                    },
                )
        return _aadsts(
            401,
            "invalid_client",
            7000215,
            "Invalid client secret provided. Ensure the secret being sent in the "
            "request is the client secret value, not the client secret ID.",
        )


def _aadsts(status: int, error: str, code: int, description: str) -> Reply:
    trace_id = str(uuid.uuid4())
    return Reply(
        status,
        {
            "error": error,
            "error_description": f"AADSTS{code}: {description} Trace ID: {trace_id}",
            "error_codes": [code],
            "timestamp": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ"),
            "trace_id": trace_id,
            "correlation_id": str(uuid.uuid4()),
        },
    )


# OpenAI


class OpenAIStandin:
    """OpenAI's model listing, for API keys it issued."""

    def __init__(self) -> None:
        self._keys: dict[str, tuple[str | None, str | None]] = {}
        self._lock = threading.Lock()
        self._server = LoopbackServer(self._route)

    @property
    def api_base(self) -> str:
        return f"{self._server.url}/v1"

    @property
    def server(self) -> LoopbackServer:
        return self._server

    def create_key(
        self, *, organization: str | None = None, project: str | None = None
    ) -> dict[str, str]:
        """Issue a project key; return the fields a tenant would submit."""
        key = "sk-proj-" + secrets.token_urlsafe(60)
        with self._lock:
            self._keys[key] = (organization, project)
        fields = {"api_key": key}
        if organization:
            fields["organization"] = organization
        if project:
            fields["project"] = project
        return fields

    def stop(self) -> None:
        self._server.stop()

    def _route(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> Reply:
        if method != "GET" or urlsplit(path).path != "/v1/models":
            return Reply(404, _openai_error("not_found", "Unknown request URL."))
        presented = headers.get("authorization", "").removeprefix("Bearer ")
        with self._lock:
            owner = self._keys.get(presented)
        if owner is None:
            # As OpenAI does, the message shows the key's last four characters.
            return Reply(
                401,
                _openai_error(
                    "invalid_api_key",
                    f"Incorrect API key provided: sk-...{presented[-4:]}.",
                ),
            )
        organization, project = owner
        if headers.get("openai-organization", organization) != organization:
            return Reply(
                401,
                _openai_error(
                    "mismatched_organization",
                    "OpenAI-Organization header should match organization for API key",
                ),
            )
        if headers.get("openai-project", project) != project:
            return Reply(
                401,
                _openai_error(
                    "mismatched_project",
                    "OpenAI-Project header should match project for API key",
                ),
            )
        model = {"id": "gpt-standin", "object": "model", "created": 0}
        return Reply(200, {"object": "list", "data": [model]})


def _openai_error(code: str, message: str) -> dict[str, Any]:
    return {
        "error": {
            "message": message,
            "type": "invalid_request_error",
            "param": None,
            "code": code,
        }
    }


# AWS


class AwsStandin:
    """moto's server with IAM authentication enforced, and an admin key to seed it.

    moto keeps its accounts in process-wide state, so every name created here
    is unique and a second stand-in in the same process still works.
    """

    region = "us-east-1"

    def __init__(self) -> None:
        from moto.moto_server.threaded_moto_server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address=LOOPBACK, port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        # werkzeug, which serves moto, logs every request line at INFO, and
        # moto's DEBUG records print request headers with session tokens. Both
        # are the stand-in's logs, not the service's, so they stay quiet.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        logging.getLogger("moto").setLevel(logging.INFO)
        self._set_authentication(enforced=False)
        seed = {"aws_access_key_id": "AKIAADMIN0SEED000000"}
        self._admin = self._create_user_key(
            {"Effect": "Allow", "Action": "*", "Resource": "*"}, credentials=seed
        )
        self._admin_arn = self._client("sts", self._admin).get_caller_identity()["Arn"]
        self._set_authentication(enforced=True)

    def create_access_key(self) -> dict[str, str]:
        """Create a user with a long-term access key; return the key pair."""
        return self._create_user_key(None, credentials=self._admin)

    def create_temporary_credentials(self) -> dict[str, str]:
        """Assume a new role and return the temporary key and session token."""
        iam = self._client("iam", self._admin)
        role_name = f"standin-role-{uuid.uuid4().hex[:12]}"
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": self._admin_arn},
                    "Action": "sts:AssumeRole",
                }
            ],
        }
        role = iam.create_role(
            RoleName=role_name, AssumeRolePolicyDocument=json.dumps(trust)
        )["Role"]
        sts = self._client("sts", self._admin)
        assumed = sts.assume_role(RoleArn=role["Arn"], RoleSessionName="pipeline")
        credentials = assumed["Credentials"]
        return {
            "aws_access_key_id": credentials["AccessKeyId"],
            "aws_secret_access_key": credentials["SecretAccessKey"],
            "aws_session_token": credentials["SessionToken"],
        }

    def stop(self) -> None:
        self._server.stop()

    def _create_user_key(
        self, policy: dict[str, Any] | None, *, credentials: dict[str, str]
    ) -> dict[str, str]:
        iam = self._client("iam", credentials)
        user_name = f"standin-user-{uuid.uuid4().hex[:12]}"
        iam.create_user(UserName=user_name)
        if policy is not None:
            iam.put_user_policy(
                UserName=user_name,
                PolicyName="standin",
                PolicyDocument=json.dumps(
                    {"Version": "2012-10-17", "Statement": [policy]}
                ),
            )
        key = iam.create_access_key(UserName=user_name)["AccessKey"]
        return {
            "aws_access_key_id": key["AccessKeyId"],
            "aws_secret_access_key": key["SecretAccessKey"],
        }

    def _client(self, service: str, credentials: dict[str, str]) -> Any:
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=self.region,
            aws_access_key_id=credentials["aws_access_key_id"],
            aws_secret_access_key=credentials.get(
                "aws_secret_access_key", "seed-secret-unused-while-auth-is-off"
            ),
        )

    def _set_authentication(self, *, enforced: bool) -> None:
        # moto's documented switch: the number of requests it serves before it
        # starts checking signatures and IAM policies ("inf" means never).
        import requests

        response = requests.post(
            f"{self.endpoint}/moto-api/reset-auth",
            data=b"0" if enforced else b"inf",
            timeout=10,
        )
        response.raise_for_status()


# All four


@dataclass
class ProviderStandins:
    """The four running stand-ins."""

    google: GoogleStandin
    aws: AwsStandin
    azure: AzureStandin
    openai: OpenAIStandin

    def settings(self) -> dict[str, str]:
        """Return the environment that points validate-credentials at the stand-ins."""
        return {
            "AWS_STS_ENDPOINT": self.aws.endpoint,
            "AWS_STS_REGION": self.aws.region,
            "AZURE_AUTHORITY_HOST": self.azure.authority_host,
            # A tenant may name any cloud; each must stay on loopback.
            "AZURE_AUTHORITY_HOST_USGOV": self.azure.authority_host,
            "AZURE_AUTHORITY_HOST_CHINA": self.azure.authority_host,
            "OPENAI_API_BASE": self.openai.api_base,
            "GCP_TOKEN_URI_ALLOWLIST": self.google.token_uri,
        }

    def write_requests(self, folder: Path) -> dict[str, Path]:
        """Write one working request body per provider as ``<provider>.json``."""
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        credentials = {
            "gcp": self.google.create_key(),
            "aws": self.aws.create_access_key(),
            "azure": self.azure.create_application(),
            "openai": self.openai.create_key(),
        }
        paths = {}
        for provider, fields in credentials.items():
            path = folder / f"{provider}.json"
            body = {
                "provider": provider,
                "name": f"local {provider} stand-in",
                "credentials": fields,
            }
            path.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
            path.chmod(0o600)
            paths[provider] = path
        return paths

    def stop(self) -> None:
        for standin in (self.google, self.aws, self.azure, self.openai):
            standin.stop()


def start_provider_standins() -> ProviderStandins:
    """Start the four stand-ins on free loopback ports."""
    return ProviderStandins(
        google=GoogleStandin(),
        aws=AwsStandin(),
        azure=AzureStandin(),
        openai=OpenAIStandin(),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--write-requests",
        type=Path,
        metavar="FOLDER",
        help="write one working request body per provider to FOLDER",
    )
    arguments = parser.parse_args()
    standins = start_provider_standins()
    if arguments.write_requests:
        for path in standins.write_requests(arguments.write_requests).values():
            print(f"wrote {path}")
    for name, value in standins.settings().items():
        print(f"{name}={value}")
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    with contextlib.suppress(KeyboardInterrupt):
        stopped.wait()
    standins.stop()


if __name__ == "__main__":
    main()
