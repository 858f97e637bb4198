from pathlib import Path

import pytest
from fake_cloud_kms import FakeKmsTransport, fake_kms_client

from shared.crypto import CloudKms, LocalKeyring

KEY_NAME = "projects/test-project/locations/local/keyRings/test-ring/cryptoKeys/api"


@pytest.fixture
def key_name() -> str:
    return KEY_NAME


@pytest.fixture
def keyring(tmp_path: Path) -> LocalKeyring:
    return LocalKeyring(tmp_path / "keyring.json")


@pytest.fixture
def fake_kms() -> FakeKmsTransport:
    return FakeKmsTransport(KEY_NAME)


@pytest.fixture
def cloud_kms(fake_kms: FakeKmsTransport) -> CloudKms:
    # Short retry budget: a persistent transient error gives up within 0.3 s.
    return CloudKms(fake_kms_client(fake_kms), timeout_seconds=0.3)
