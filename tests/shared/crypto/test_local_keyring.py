import stat
import struct
from pathlib import Path

import pytest

from shared.crypto import DecryptionError, LocalKeyring

AAD = b"aad"
SECRET = b"0123456789abcdef0123456789abcdef"


def _version_of(wrapped: bytes) -> int:
    """The key version in a wrapped secret: its first 4 bytes, big-endian."""
    return int(struct.unpack_from(">I", wrapped)[0])


def test_round_trip(keyring: LocalKeyring, key_name: str) -> None:
    wrapped = keyring.encrypt(key_name, SECRET, AAD)

    assert keyring.decrypt(key_name, wrapped, AAD) == SECRET


def test_file_created_with_mode_0600(keyring: LocalKeyring, key_name: str) -> None:
    keyring.encrypt(key_name, SECRET, AAD)

    assert stat.S_IMODE(keyring.path.stat().st_mode) == 0o600


def test_file_keeps_mode_0600_after_rotate(
    keyring: LocalKeyring, key_name: str
) -> None:
    keyring.encrypt(key_name, SECRET, AAD)
    keyring.rotate(key_name)

    assert stat.S_IMODE(keyring.path.stat().st_mode) == 0o600


def test_file_holds_no_plaintext(keyring: LocalKeyring, key_name: str) -> None:
    keyring.encrypt(key_name, SECRET, AAD)

    assert SECRET not in keyring.path.read_bytes()


def test_other_aad_fails(keyring: LocalKeyring, key_name: str) -> None:
    wrapped = keyring.encrypt(key_name, SECRET, AAD)

    with pytest.raises(DecryptionError):
        keyring.decrypt(key_name, wrapped, b"other")


def test_other_key_fails(keyring: LocalKeyring, key_name: str) -> None:
    other = key_name.replace("cryptoKeys/api", "cryptoKeys/credentials")
    wrapped = keyring.encrypt(key_name, SECRET, AAD)

    with pytest.raises(DecryptionError):
        keyring.decrypt(other, wrapped, AAD)


def test_first_use_creates_version_1(keyring: LocalKeyring, key_name: str) -> None:
    wrapped = keyring.encrypt(key_name, SECRET, AAD)

    assert _version_of(wrapped) == 1


def test_rotate_makes_new_version_primary(keyring: LocalKeyring, key_name: str) -> None:
    keyring.encrypt(key_name, SECRET, AAD)

    version = keyring.rotate(key_name)

    assert version == 2
    assert keyring.primary_version(key_name) == 2
    assert keyring.versions(key_name) == [1, 2]


def test_rotate_new_ciphertexts_use_new_version(
    keyring: LocalKeyring, key_name: str
) -> None:
    keyring.encrypt(key_name, SECRET, AAD)
    keyring.rotate(key_name)

    assert _version_of(keyring.encrypt(key_name, SECRET, AAD)) == 2


def test_rotate_old_ciphertexts_still_decrypt(
    keyring: LocalKeyring, key_name: str
) -> None:
    old = keyring.encrypt(key_name, SECRET, AAD)
    keyring.rotate(key_name)

    assert keyring.decrypt(key_name, old, AAD) == SECRET


def test_restarted_process_decrypts(keyring: LocalKeyring, key_name: str) -> None:
    wrapped = keyring.encrypt(key_name, SECRET, AAD)

    assert LocalKeyring(keyring.path).decrypt(key_name, wrapped, AAD) == SECRET


def test_second_instance_decrypts_rotated_version(
    keyring: LocalKeyring, key_name: str
) -> None:
    other = LocalKeyring(keyring.path)
    other.encrypt(key_name, SECRET, AAD)
    keyring.rotate(key_name)

    wrapped = keyring.encrypt(key_name, SECRET, AAD)

    assert other.decrypt(key_name, wrapped, AAD) == SECRET


def test_second_instance_encrypts_with_rotated_version(
    keyring: LocalKeyring, key_name: str
) -> None:
    other = LocalKeyring(keyring.path)
    other.encrypt(key_name, SECRET, AAD)

    keyring.rotate(key_name)

    assert _version_of(other.encrypt(key_name, SECRET, AAD)) == 2
    assert other.primary_version(key_name) == 2


def test_unknown_version_fails(keyring: LocalKeyring, key_name: str) -> None:
    wrapped = keyring.encrypt(key_name, SECRET, AAD)
    forged = struct.pack(">I", 99) + wrapped[4:]

    with pytest.raises(DecryptionError):
        keyring.decrypt(key_name, forged, AAD)


def test_short_ciphertext_fails(keyring: LocalKeyring, key_name: str) -> None:
    with pytest.raises(DecryptionError):
        keyring.decrypt(key_name, b"\x00\x00\x00\x01short", AAD)


def test_unknown_key_name_fails(keyring: LocalKeyring, key_name: str) -> None:
    wrapped = keyring.encrypt(key_name, SECRET, AAD)
    never_used = key_name.replace("cryptoKeys/api", "cryptoKeys/unused")

    with pytest.raises(DecryptionError):
        keyring.decrypt(never_used, wrapped, AAD)


@pytest.mark.parametrize(
    "bad_name",
    [
        "api-keys",
        "",
        "projects/p/locations/l/keyRings/r",
        "projects/p/locations/l/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1",
        "projects/p q/locations/l/keyRings/r/cryptoKeys/k",
        "projects/../locations/l/keyRings/r/cryptoKeys/k",
    ],
)
@pytest.mark.parametrize("operation", ["encrypt", "decrypt", "rotate"])
def test_bad_key_name_raises(
    keyring: LocalKeyring, bad_name: str, operation: str
) -> None:
    calls = {
        "encrypt": lambda: keyring.encrypt(bad_name, SECRET, AAD),
        "decrypt": lambda: keyring.decrypt(bad_name, bytes(40), AAD),
        "rotate": lambda: keyring.rotate(bad_name),
    }

    with pytest.raises(
        ValueError, match="projects/P/locations/L/keyRings/R/cryptoKeys/K"
    ):
        calls[operation]()


def test_bad_key_name_creates_no_file(tmp_path: Path) -> None:
    keyring = LocalKeyring(tmp_path / "keyring.json")

    with pytest.raises(ValueError):
        keyring.encrypt("api-keys", SECRET, AAD)

    assert not keyring.path.exists()
