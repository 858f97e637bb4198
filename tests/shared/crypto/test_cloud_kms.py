import pytest
from fake_cloud_kms import FakeKmsTransport, crc32c
from google.api_core import exceptions

from shared.crypto import (
    CloudKms,
    DecryptionError,
    EnvelopeCipher,
    KmsError,
    KmsIntegrityError,
    KmsKeyDisabledError,
    KmsKeyNotFoundError,
    KmsPermissionError,
    KmsUnavailableError,
    RecordContext,
    parse_ciphertext,
)

AAD = b"convergence.dek.v1\x1facme"
SECRET = b"0123456789abcdef0123456789abcdef"
CONTEXT = RecordContext("acme", "api_key", "key_1")


# Through the envelope


def test_envelope_round_trip(cloud_kms: CloudKms, key_name: str) -> None:
    data = EnvelopeCipher(cloud_kms, key_name).encrypt(b"record", CONTEXT)

    assert EnvelopeCipher(cloud_kms, key_name).decrypt(data, CONTEXT) == b"record"


def test_envelope_calls_kms_once_each_way(
    cloud_kms: CloudKms, fake_kms: FakeKmsTransport, key_name: str
) -> None:
    cipher = EnvelopeCipher(cloud_kms, key_name)
    sealed = [cipher.encrypt(b"record", CONTEXT) for _ in range(5)]
    cold = EnvelopeCipher(cloud_kms, key_name)

    for data in sealed:
        cold.decrypt(data, CONTEXT)

    assert fake_kms.calls == {"encrypt": 1, "decrypt": 1}


def test_envelope_tampered_wrapped_key_fails(
    cloud_kms: CloudKms, key_name: str
) -> None:
    data = EnvelopeCipher(cloud_kms, key_name).encrypt(b"record", CONTEXT)
    index = data.index(parse_ciphertext(data).wrapped_key) + 20
    tampered = data[:index] + bytes([data[index] ^ 1]) + data[index + 1 :]

    with pytest.raises(DecryptionError) as excinfo:
        EnvelopeCipher(cloud_kms, key_name).decrypt(tampered, CONTEXT)

    assert excinfo.value.__cause__ is None


# Requests and integrity checks


def test_encrypt_request_carries_checksums(
    cloud_kms: CloudKms, fake_kms: FakeKmsTransport, key_name: str
) -> None:
    cloud_kms.encrypt(key_name, SECRET, AAD)

    request = fake_kms.requests[-1]
    assert request.name == key_name
    assert request.plaintext_crc32c == crc32c(SECRET)
    assert request.additional_authenticated_data_crc32c == crc32c(AAD)


def test_decrypt_request_carries_checksums(
    cloud_kms: CloudKms, fake_kms: FakeKmsTransport, key_name: str
) -> None:
    wrapped = cloud_kms.encrypt(key_name, SECRET, AAD)

    cloud_kms.decrypt(key_name, wrapped, AAD)

    request = fake_kms.requests[-1]
    assert request.ciphertext_crc32c == crc32c(wrapped)
    assert request.additional_authenticated_data_crc32c == crc32c(AAD)


@pytest.mark.parametrize(
    "fields",
    [
        {"verified_plaintext_crc32c": False},
        {"verified_additional_authenticated_data_crc32c": False},
        {"ciphertext_crc32c": 12345},
    ],
    ids=["plaintext-unverified", "aad-unverified", "ciphertext-crc"],
)
def test_encrypt_integrity_failure_retried(
    cloud_kms: CloudKms,
    fake_kms: FakeKmsTransport,
    key_name: str,
    fields: dict[str, object],
) -> None:
    fake_kms.tamper_next("encrypt", **fields)

    wrapped = cloud_kms.encrypt(key_name, SECRET, AAD)

    assert fake_kms.calls["encrypt"] == 2
    assert cloud_kms.decrypt(key_name, wrapped, AAD) == SECRET


@pytest.mark.parametrize(
    "fields",
    [{"verified_plaintext_crc32c": False}, {"ciphertext_crc32c": 12345}],
    ids=["plaintext-unverified", "ciphertext-crc"],
)
def test_encrypt_persistent_integrity_failure_raises(
    cloud_kms: CloudKms,
    fake_kms: FakeKmsTransport,
    key_name: str,
    fields: dict[str, object],
) -> None:
    fake_kms.tamper_next("encrypt", times=10, **fields)

    with pytest.raises(KmsIntegrityError):
        cloud_kms.encrypt(key_name, SECRET, AAD)

    assert fake_kms.calls["encrypt"] == 3


def test_decrypt_wrong_plaintext_crc_retried(
    cloud_kms: CloudKms, fake_kms: FakeKmsTransport, key_name: str
) -> None:
    wrapped = cloud_kms.encrypt(key_name, SECRET, AAD)
    fake_kms.tamper_next("decrypt", plaintext_crc32c=12345)

    assert cloud_kms.decrypt(key_name, wrapped, AAD) == SECRET
    assert fake_kms.calls["decrypt"] == 2


def test_decrypt_persistent_wrong_plaintext_crc_raises(
    cloud_kms: CloudKms, fake_kms: FakeKmsTransport, key_name: str
) -> None:
    wrapped = cloud_kms.encrypt(key_name, SECRET, AAD)
    fake_kms.tamper_next("decrypt", times=10, plaintext_crc32c=12345)

    with pytest.raises(KmsIntegrityError):
        cloud_kms.decrypt(key_name, wrapped, AAD)

    assert fake_kms.calls["decrypt"] == 3


# Transient errors


@pytest.mark.parametrize(
    "error",
    [
        exceptions.ServiceUnavailable("unavailable"),
        exceptions.DeadlineExceeded("deadline"),
        exceptions.InternalServerError("internal"),
        exceptions.TooManyRequests("quota"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_transient_error_retried(
    cloud_kms: CloudKms,
    fake_kms: FakeKmsTransport,
    key_name: str,
    error: Exception,
) -> None:
    fake_kms.fail_next("encrypt", error)

    wrapped = cloud_kms.encrypt(key_name, SECRET, AAD)

    assert fake_kms.calls["encrypt"] == 2
    assert cloud_kms.decrypt(key_name, wrapped, AAD) == SECRET


def test_decrypt_transient_error_retried(
    cloud_kms: CloudKms, fake_kms: FakeKmsTransport, key_name: str
) -> None:
    wrapped = cloud_kms.encrypt(key_name, SECRET, AAD)
    fake_kms.fail_next("decrypt", exceptions.ServiceUnavailable("unavailable"))

    assert cloud_kms.decrypt(key_name, wrapped, AAD) == SECRET
    assert fake_kms.calls["decrypt"] == 2


def test_persistent_unavailability_raises(
    cloud_kms: CloudKms, fake_kms: FakeKmsTransport, key_name: str
) -> None:
    fake_kms.fail_next(
        "encrypt", exceptions.ServiceUnavailable("unavailable"), times=1000
    )

    with pytest.raises(KmsUnavailableError) as excinfo:
        cloud_kms.encrypt(key_name, SECRET, AAD)

    assert excinfo.value.__cause__ is None
    assert fake_kms.calls["encrypt"] > 1


# Permanent errors


def test_permission_denied_raises(
    cloud_kms: CloudKms, fake_kms: FakeKmsTransport, key_name: str
) -> None:
    fake_kms.denied.add(key_name)

    with pytest.raises(KmsPermissionError) as excinfo:
        cloud_kms.encrypt(key_name, SECRET, AAD)

    assert "roles/cloudkms.cryptoKeyEncrypterDecrypter" in str(excinfo.value)
    assert key_name in str(excinfo.value)
    assert fake_kms.calls["encrypt"] == 1


def test_unauthenticated_raises_permission_error(
    cloud_kms: CloudKms, fake_kms: FakeKmsTransport, key_name: str
) -> None:
    fake_kms.fail_next("encrypt", exceptions.Unauthenticated("no credentials"))

    with pytest.raises(KmsPermissionError):
        cloud_kms.encrypt(key_name, SECRET, AAD)


def test_disabled_key_raises(
    cloud_kms: CloudKms, fake_kms: FakeKmsTransport, key_name: str
) -> None:
    wrapped = cloud_kms.encrypt(key_name, SECRET, AAD)
    fake_kms.disabled.add(key_name)

    with pytest.raises(KmsKeyDisabledError) as excinfo:
        cloud_kms.decrypt(key_name, wrapped, AAD)

    assert key_name in str(excinfo.value)


def test_unknown_key_raises(cloud_kms: CloudKms, key_name: str) -> None:
    missing = key_name.replace("cryptoKeys/api", "cryptoKeys/missing")

    with pytest.raises(KmsKeyNotFoundError) as excinfo:
        cloud_kms.encrypt(missing, SECRET, AAD)

    assert missing in str(excinfo.value)


def test_tampered_ciphertext_raises_decryption_error(
    cloud_kms: CloudKms, fake_kms: FakeKmsTransport, key_name: str
) -> None:
    wrapped = bytearray(cloud_kms.encrypt(key_name, SECRET, AAD))
    wrapped[-1] ^= 1

    with pytest.raises(DecryptionError) as excinfo:
        cloud_kms.decrypt(key_name, bytes(wrapped), AAD)

    assert str(excinfo.value) == "decryption failed"
    assert excinfo.value.__cause__ is None
    assert fake_kms.calls["decrypt"] == 1


def test_other_aad_raises_decryption_error(cloud_kms: CloudKms, key_name: str) -> None:
    wrapped = cloud_kms.encrypt(key_name, SECRET, AAD)

    with pytest.raises(DecryptionError):
        cloud_kms.decrypt(key_name, wrapped, b"convergence.dek.v1\x1fglobex")


def test_encrypt_invalid_argument_raises_kms_error(
    cloud_kms: CloudKms, fake_kms: FakeKmsTransport, key_name: str
) -> None:
    fake_kms.fail_next("encrypt", exceptions.InvalidArgument("bad request"))

    with pytest.raises(KmsError) as excinfo:
        cloud_kms.encrypt(key_name, SECRET, AAD)

    assert not isinstance(excinfo.value, DecryptionError)
