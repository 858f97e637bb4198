"""Well-formed sample credentials for the input checks; none works anywhere."""

from __future__ import annotations

import copy
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from shared.credentials import ProviderEndpoints

TOKEN_URI = "https://oauth2.googleapis.com/token"
ENDPOINTS = ProviderEndpoints(
    aws_sts_endpoint="https://sts.amazonaws.com",
    aws_sts_region="us-east-1",
    azure_authority_hosts={
        "public": "https://login.microsoftonline.com",
        "usgov": "https://login.microsoftonline.us",
        "china": "https://login.chinacloudapi.cn",
    },
    openai_api_base="https://api.openai.com/v1",
    gcp_token_uris=(TOKEN_URI,),
)


def _pem(key: Any, encryption: Any = None) -> str:
    text: str = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        encryption or serialization.NoEncryption(),
    ).decode("ascii")
    return text


_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_PEM = _pem(_RSA_KEY)
ENCRYPTED_PEM = _pem(
    _RSA_KEY, serialization.BestAvailableEncryption(b"correct horse battery")
)
EC_PEM = _pem(ec.generate_private_key(ec.SECP256R1()))

_GCP = {
    "type": "service_account",
    "project_id": "tenant-project-42",
    "private_key_id": "0123456789abcdef0123456789abcdef01234567",
    "private_key": RSA_PEM,
    "client_email": "pipeline@tenant-project-42.iam.gserviceaccount.com",
    "client_id": "112233445566778899001",
    "auth_uri": "https://accounts.google.com/o/oauth2/auth",
    "token_uri": TOKEN_URI,
    "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
    "client_x509_cert_url": "https://www.googleapis.com/robot/v1/metadata/x509/x",
    "universe_domain": "googleapis.com",
}
_AWS = {
    "aws_access_key_id": "AKIAZ7EXAMPLE0KEYID1",
    "aws_secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLE+1",
}
_AWS_TEMPORARY = {
    "aws_access_key_id": "ASIAZ7EXAMPLE0KEYID2",
    "aws_secret_access_key": "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbzEXAMPLE+2",
    "aws_session_token": "IQoJb3JpZ2luX2VjEXAMPLEtokenAAAA/+bbbb==",
}
_AZURE = {
    "tenant_id": "0d5f3a4e-1b2c-4d3e-8f90-a1b2c3d4e5f6",
    "client_id": "6e1c9d2a-7b3f-4a5e-9c8d-0f1e2d3c4b5a",
    "client_secret": "Xy78Q~examplesecretvalueNOTREAL.abcdefgh",
}
_OPENAI = {"api_key": "sk-proj-EXAMPLEexampleEXAMPLEexample0123456789"}


def gcp() -> dict[str, Any]:
    return copy.deepcopy(_GCP)


def aws() -> dict[str, Any]:
    return dict(_AWS)


def aws_temporary() -> dict[str, Any]:
    return dict(_AWS_TEMPORARY)


def azure() -> dict[str, Any]:
    return dict(_AZURE)


def openai() -> dict[str, Any]:
    return dict(_OPENAI)


def sample(provider: str) -> dict[str, Any]:
    return {"gcp": gcp, "aws": aws, "azure": azure, "openai": openai}[provider]()
