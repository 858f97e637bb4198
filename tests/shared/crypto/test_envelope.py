import traceback

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.crypto import (
    DecryptionError,
    EnvelopeCipher,
    LocalKeyring,
    RecordContext,
    parse_ciphertext,
)

CONTEXT = RecordContext("acme", "api_key", "key_1")
PLAINTEXT = b"acme_api_0123456789ABCDEFGHIJKLMNOPQRS"
DATA_KEY_SECONDS = 300.0


class CountingKms:
    """Passes calls to a real keyring and counts them."""

    def __init__(self, inner: LocalKeyring) -> None:
        self.inner = inner
        self.encrypts = 0
        self.decrypts = 0

    def encrypt(self, key_name: str, plaintext: bytes, aad: bytes) -> bytes:
        self.encrypts += 1
        return self.inner.encrypt(key_name, plaintext, aad)

    def decrypt(self, key_name: str, ciphertext: bytes, aad: bytes) -> bytes:
        self.decrypts += 1
        return self.inner.decrypt(key_name, ciphertext, aad)


class ManualTimer:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def kms(keyring: LocalKeyring) -> CountingKms:
    return CountingKms(keyring)


@pytest.fixture
def timer() -> ManualTimer:
    return ManualTimer()


@pytest.fixture
def cipher(kms: CountingKms, key_name: str, timer: ManualTimer) -> EnvelopeCipher:
    return EnvelopeCipher(kms, key_name, data_key_seconds=DATA_KEY_SECONDS, clock=timer)


def _cold_cipher(kms: CountingKms, key_name: str, timer: ManualTimer) -> EnvelopeCipher:
    """A cipher with empty caches, as in another function instance."""
    return EnvelopeCipher(kms, key_name, data_key_seconds=DATA_KEY_SECONDS, clock=timer)


def _regions(data: bytes) -> dict[str, slice]:
    """Locate each field by the layout in the module docstring."""
    context_end = 3 + int.from_bytes(data[1:3], "big")
    wrapped_start = context_end + 2
    wrapped_end = wrapped_start + int.from_bytes(data[context_end:wrapped_start], "big")
    nonce_end = wrapped_end + 12
    return {
        "version": slice(0, 1),
        "context_length": slice(1, 3),
        "context": slice(3, context_end),
        "wrapped_length": slice(context_end, wrapped_start),
        "wrapped_key": slice(wrapped_start, wrapped_end),
        "nonce": slice(wrapped_end, nonce_end),
        "ciphertext": slice(nonce_end, len(data) - 16),
        "tag": slice(len(data) - 16, len(data)),
    }


def _flip_middle_byte(data: bytes, region: slice) -> bytes:
    index = (region.start + region.stop) // 2
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


def _assert_opaque(error: DecryptionError) -> None:
    assert str(error) == "decryption failed"
    assert error.__cause__ is None
    assert error.__context__ is None or error.__suppress_context__
    rendered = "".join(traceback.format_exception(error))
    assert "During handling" not in rendered


# Round trip


@pytest.mark.parametrize("plaintext", [b"", b"x", PLAINTEXT, bytes(range(256)) * 64])
def test_round_trip(cipher: EnvelopeCipher, plaintext: bytes) -> None:
    data = cipher.encrypt(plaintext, CONTEXT)

    assert cipher.decrypt(data, CONTEXT) == plaintext


def test_round_trip_without_expected_context(cipher: EnvelopeCipher) -> None:
    data = cipher.encrypt(PLAINTEXT, CONTEXT)

    assert cipher.decrypt(data, None) == PLAINTEXT


def test_round_trip_in_cold_cipher(
    cipher: EnvelopeCipher, kms: CountingKms, key_name: str, timer: ManualTimer
) -> None:
    data = cipher.encrypt(PLAINTEXT, CONTEXT)

    assert _cold_cipher(kms, key_name, timer).decrypt(data, CONTEXT) == PLAINTEXT


def test_ciphertexts_of_same_plaintext_differ(cipher: EnvelopeCipher) -> None:
    first = cipher.encrypt(PLAINTEXT, CONTEXT)
    second = cipher.encrypt(PLAINTEXT, CONTEXT)

    assert first != second


def test_parse_ciphertext_returns_context(cipher: EnvelopeCipher) -> None:
    data = cipher.encrypt(PLAINTEXT, CONTEXT)

    assert parse_ciphertext(data).context == CONTEXT


# Format


def test_format_matches_documented_layout(
    cipher: EnvelopeCipher, keyring: LocalKeyring, key_name: str
) -> None:
    data = cipher.encrypt(PLAINTEXT, CONTEXT)

    # Parsed by hand, byte by byte, without parse_ciphertext.
    assert data[0] == 0x01
    context_length = int.from_bytes(data[1:3], "big")
    context = data[3 : 3 + context_length]
    assert context == b"acme\x1fapi_key\x1fkey_1"
    offset = 3 + context_length
    wrapped_length = int.from_bytes(data[offset : offset + 2], "big")
    offset += 2
    wrapped_key = data[offset : offset + wrapped_length]
    offset += wrapped_length
    nonce = data[offset : offset + 12]
    sealed = data[offset + 12 :]
    assert len(nonce) == 12
    assert len(sealed) == len(PLAINTEXT) + 16

    # The data key is wrapped with the tenant as KMS additional data, and the
    # record is sealed with every byte before the nonce as associated data.
    data_key = keyring.decrypt(key_name, wrapped_key, b"convergence.dek.v1\x1facme")
    header = data[:offset]
    assert AESGCM(data_key).decrypt(nonce, sealed, header) == PLAINTEXT


# Tampering


@pytest.mark.parametrize(
    "region",
    [
        "version",
        "context_length",
        "context",
        "wrapped_length",
        "wrapped_key",
        "nonce",
        "ciphertext",
        "tag",
    ],
)
@pytest.mark.parametrize("expected", [CONTEXT, None], ids=["expected", "no-expected"])
def test_tampered_region_fails(
    cipher: EnvelopeCipher,
    kms: CountingKms,
    key_name: str,
    timer: ManualTimer,
    region: str,
    expected: RecordContext | None,
) -> None:
    data = cipher.encrypt(PLAINTEXT, CONTEXT)
    tampered = _flip_middle_byte(data, _regions(data)[region])

    # A cold cipher, so a cached data key cannot mask a tampered wrapped key.
    with pytest.raises(DecryptionError) as excinfo:
        _cold_cipher(kms, key_name, timer).decrypt(tampered, expected)

    _assert_opaque(excinfo.value)


def test_tampered_version_byte_fails(cipher: EnvelopeCipher) -> None:
    data = cipher.encrypt(PLAINTEXT, CONTEXT)

    with pytest.raises(DecryptionError) as excinfo:
        cipher.decrypt(b"\x02" + data[1:], CONTEXT)

    _assert_opaque(excinfo.value)


@pytest.mark.parametrize("keep", [0, 1, 2, 3, 10, -17, -16, -1])
def test_truncated_ciphertext_fails(cipher: EnvelopeCipher, keep: int) -> None:
    data = cipher.encrypt(PLAINTEXT, CONTEXT)

    with pytest.raises(DecryptionError) as excinfo:
        cipher.decrypt(data[:keep], CONTEXT)

    _assert_opaque(excinfo.value)


def test_truncated_to_header_fails(cipher: EnvelopeCipher) -> None:
    data = cipher.encrypt(PLAINTEXT, CONTEXT)
    header_end = _regions(data)["nonce"].start

    with pytest.raises(DecryptionError) as excinfo:
        cipher.decrypt(data[:header_end], CONTEXT)

    _assert_opaque(excinfo.value)


def test_appended_bytes_fail(cipher: EnvelopeCipher) -> None:
    data = cipher.encrypt(PLAINTEXT, CONTEXT)

    with pytest.raises(DecryptionError) as excinfo:
        cipher.decrypt(data + b"\x00", CONTEXT)

    _assert_opaque(excinfo.value)


@pytest.mark.parametrize(
    "other",
    [
        RecordContext("globex", "api_key", "key_1"),
        RecordContext("acme", "credentials", "key_1"),
        RecordContext("acme", "api_key", "key_2"),
    ],
    ids=["tenant", "kind", "record_id"],
)
def test_other_context_fails(cipher: EnvelopeCipher, other: RecordContext) -> None:
    data = cipher.encrypt(PLAINTEXT, CONTEXT)

    with pytest.raises(DecryptionError) as excinfo:
        cipher.decrypt(data, other)

    _assert_opaque(excinfo.value)


def test_context_rewritten_to_other_tenant_fails(
    cipher: EnvelopeCipher, kms: CountingKms, key_name: str, timer: ManualTimer
) -> None:
    # Same length, so only the tenant changes: the wrap AAD no longer matches.
    data = cipher.encrypt(PLAINTEXT, CONTEXT)
    forged = data.replace(b"acme\x1f", b"acmf\x1f", 1)
    forged_context = RecordContext("acmf", "api_key", "key_1")

    with pytest.raises(DecryptionError) as excinfo:
        _cold_cipher(kms, key_name, timer).decrypt(forged, forged_context)

    _assert_opaque(excinfo.value)


# Length caps


def test_context_over_cap_raises_value_error() -> None:
    with pytest.raises(ValueError, match="at most 1024 bytes"):
        RecordContext("acme", "api_key", "r" * 1100)


@pytest.mark.parametrize("field", ["context_length", "wrapped_length"])
def test_huge_length_field_fails(cipher: EnvelopeCipher, field: str) -> None:
    data = cipher.encrypt(PLAINTEXT, CONTEXT)
    region = _regions(data)[field]
    forged = data[: region.start] + b"\xff\xff" + data[region.stop :] + bytes(70_000)

    with pytest.raises(DecryptionError) as excinfo:
        cipher.decrypt(forged, None)

    _assert_opaque(excinfo.value)


def test_oversized_wrapped_key_raises(key_name: str) -> None:
    class OversizedKms:
        def encrypt(self, key_name: str, plaintext: bytes, aad: bytes) -> bytes:
            return bytes(2000)

        def decrypt(self, key_name: str, ciphertext: bytes, aad: bytes) -> bytes:
            raise AssertionError("not reached")

    cipher = EnvelopeCipher(OversizedKms(), key_name)

    with pytest.raises(ValueError, match="over 1024 bytes"):
        cipher.encrypt(PLAINTEXT, CONTEXT)


# Misuse


def test_encrypt_str_plaintext_raises(cipher: EnvelopeCipher) -> None:
    with pytest.raises(TypeError, match="plaintext must be bytes"):
        cipher.encrypt("text", CONTEXT)  # type: ignore[arg-type]


def test_encrypt_tuple_context_raises(cipher: EnvelopeCipher) -> None:
    with pytest.raises(TypeError, match="context must be a RecordContext"):
        cipher.encrypt(PLAINTEXT, ("acme", "api_key", "key_1"))  # type: ignore[arg-type]


def test_decrypt_str_ciphertext_raises(cipher: EnvelopeCipher) -> None:
    with pytest.raises(TypeError, match="ciphertext must be bytes"):
        cipher.decrypt("text", CONTEXT)  # type: ignore[arg-type]


def test_decrypt_str_expected_raises(cipher: EnvelopeCipher) -> None:
    data = cipher.encrypt(PLAINTEXT, CONTEXT)

    with pytest.raises(TypeError, match="expected must be a RecordContext"):
        cipher.decrypt(data, "acme")  # type: ignore[arg-type]


def test_decrypt_accepts_bytearray(cipher: EnvelopeCipher) -> None:
    data = cipher.encrypt(PLAINTEXT, CONTEXT)

    assert cipher.decrypt(bytearray(data), CONTEXT) == PLAINTEXT


def test_record_context_non_str_raises() -> None:
    with pytest.raises(TypeError, match="RecordContext.tenant_id must be a str"):
        RecordContext(1, "api_key", "key_1")  # type: ignore[arg-type]


def test_record_context_separator_raises() -> None:
    with pytest.raises(ValueError, match="record_id must not contain U\\+001F"):
        RecordContext("acme", "api_key", "a\x1fb")


def test_record_context_empty_kind_raises() -> None:
    with pytest.raises(ValueError, match="kind must not be empty"):
        RecordContext("acme", "", "key_1")


# KMS calls


def test_one_tenant_costs_one_kms_encrypt(
    cipher: EnvelopeCipher, kms: CountingKms
) -> None:
    for index in range(50):
        cipher.encrypt(PLAINTEXT, RecordContext("acme", "api_key", f"key_{index}"))

    assert kms.encrypts == 1


def test_second_tenant_costs_one_more_kms_encrypt(
    cipher: EnvelopeCipher, kms: CountingKms
) -> None:
    for tenant in ("acme", "globex") * 10:
        cipher.encrypt(PLAINTEXT, RecordContext(tenant, "api_key", "key_1"))

    assert kms.encrypts == 2


def test_data_key_renewed_after_interval(
    cipher: EnvelopeCipher, kms: CountingKms, timer: ManualTimer
) -> None:
    first = cipher.encrypt(PLAINTEXT, CONTEXT)
    timer.now += DATA_KEY_SECONDS - 1
    cipher.encrypt(PLAINTEXT, CONTEXT)
    assert kms.encrypts == 1

    timer.now += 2
    second = cipher.encrypt(PLAINTEXT, CONTEXT)

    assert kms.encrypts == 2
    assert (
        first[_regions(first)["wrapped_key"]] != second[_regions(second)["wrapped_key"]]
    )


def test_old_data_key_still_decrypts(
    cipher: EnvelopeCipher, timer: ManualTimer
) -> None:
    old = cipher.encrypt(PLAINTEXT, CONTEXT)
    timer.now += DATA_KEY_SECONDS * 3
    cipher.encrypt(PLAINTEXT, CONTEXT)

    assert cipher.decrypt(old, CONTEXT) == PLAINTEXT


def test_decrypt_after_encrypt_costs_no_kms_call(
    cipher: EnvelopeCipher, kms: CountingKms
) -> None:
    sealed = [cipher.encrypt(PLAINTEXT, CONTEXT) for _ in range(10)]

    for data in sealed:
        cipher.decrypt(data, CONTEXT)

    assert kms.decrypts == 0


def test_cold_decrypts_share_one_kms_call(
    cipher: EnvelopeCipher, kms: CountingKms, key_name: str, timer: ManualTimer
) -> None:
    sealed = [cipher.encrypt(PLAINTEXT, CONTEXT) for _ in range(20)]
    cold = _cold_cipher(kms, key_name, timer)

    for data in sealed:
        cold.decrypt(data, CONTEXT)

    assert kms.decrypts == 1


def test_cached_unwrapped_key_expires(
    cipher: EnvelopeCipher, kms: CountingKms, key_name: str, timer: ManualTimer
) -> None:
    data = cipher.encrypt(PLAINTEXT, CONTEXT)
    cold = _cold_cipher(kms, key_name, timer)
    cold.decrypt(data, CONTEXT)

    timer.now += DATA_KEY_SECONDS + 1
    cold.decrypt(data, CONTEXT)

    assert kms.decrypts == 2
