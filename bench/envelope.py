"""Envelope encryption: cached data keys against one KMS call per record.

Both sides run ``EnvelopeCipher`` over the local keyring behind a wrapper that
counts KMS calls. The baseline's data keys expire after every use, so it makes
one KMS call per record, to wrap on encryption and to unwrap on decryption.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from bench import _report as report
from bench._dataset import API_KEY_KMS_PATH, tenant_id
from bench._report import Row, SuiteResult
from bench._scale import Scale
from shared import apikeys
from shared.crypto import EnvelopeCipher, KmsClient, LocalKeyring, RecordContext
from shared.crypto.managers import API_KEY_KIND

TARGET = 20.0

METHOD = """
Both sides run `EnvelopeCipher` over the local keyring (`LocalKeyring`)
wrapped by a counter of KMS calls. The figure uses the shipped settings
(data keys reused for 300 s). The baseline is the same class with a clock
that moves 2 s on every read and data keys that last 1 s, so each record gets
its own data key, wrapped by one KMS call, and each decryption unwraps its
own. Records are API keys spread over the tenants round robin. Decryption
runs on a new cipher with an empty cache, as another instance would, and
checks each record's context.
"""


class CountingKms:
    """Passes calls to a KMS backend and counts them."""

    def __init__(self, inner: KmsClient) -> None:
        self._inner = inner
        self.calls = 0

    def encrypt(self, key_name: str, plaintext: bytes, aad: bytes) -> bytes:
        self.calls += 1
        return self._inner.encrypt(key_name, plaintext, aad)

    def decrypt(self, key_name: str, ciphertext: bytes, aad: bytes) -> bytes:
        self.calls += 1
        return self._inner.decrypt(key_name, ciphertext, aad)


class _SteppingClock:
    """A clock that moves 2 s at every read, so cached data keys always expire."""

    def __init__(self) -> None:
        self._now = 0.0

    def __call__(self) -> float:
        self._now += 2.0
        return self._now


def run(scale: Scale, work_dir: Path) -> SuiteResult:
    keyring = LocalKeyring(work_dir / "keyring.json")
    records = [
        (
            apikeys.generate_api_key(tenant_id(n % scale.envelope_tenants)).encode(),
            RecordContext(tenant_id(n % scale.envelope_tenants), API_KEY_KIND, f"k{n}"),
        )
        for n in range(scale.envelope_records)
    ]
    cached = _measure(
        records, keyring, lambda kms: EnvelopeCipher(kms, API_KEY_KMS_PATH)
    )
    per_record = _measure(
        records,
        keyring,
        lambda kms: EnvelopeCipher(
            kms, API_KEY_KMS_PATH, data_key_seconds=1.0, clock=_SteppingClock()
        ),
    )
    result = SuiteResult("Envelope encryption", method=METHOD)
    for operation in ("encrypt", "decrypt"):
        result.rows.append(_row(operation, cached[operation], per_record[operation]))
    result.notes.append(
        f"{len(records):,} records over {scale.envelope_tenants} tenants. The "
        "local keyring's call is a file stat and an AES-GCM operation in process; "
        "a Cloud KMS call is a network round trip, so with the cloud backend the "
        "time saved per call is larger than measured here."
    )
    return result


def _measure(
    records: list[tuple[bytes, RecordContext]],
    keyring: LocalKeyring,
    make: Callable[[KmsClient], EnvelopeCipher],
) -> dict[str, tuple[float, float]]:
    """Return records per second and KMS calls per record, by operation."""
    count = len(records)
    kms = CountingKms(keyring)
    cipher = make(kms)
    start = time.perf_counter()
    sealed = [cipher.encrypt(plaintext, context) for plaintext, context in records]
    encrypted = (count / (time.perf_counter() - start), kms.calls / count)

    kms = CountingKms(keyring)
    cipher = make(kms)
    start = time.perf_counter()
    for ciphertext, (plaintext, context) in zip(sealed, records, strict=True):
        if cipher.decrypt(ciphertext, context) != plaintext:
            raise AssertionError("a record did not decrypt to its plaintext")
    decrypted = (count / (time.perf_counter() - start), kms.calls / count)
    return {"encrypt": encrypted, "decrypt": decrypted}


def _row(
    operation: str,
    cached: tuple[float, float],
    per_record: tuple[float, float],
) -> Row:
    rate, calls = cached
    base_rate, base_calls = per_record
    fewer = base_calls / calls if calls else float("inf")
    return Row(
        path=f"envelope encryption, {operation}",
        figure=f"{report.count(rate)} {operation}ions/s; "
        f"{calls:.4f} KMS calls per record",
        baseline=f"one KMS call per record: {report.count(base_rate)}/s; "
        f"{base_calls:.2f} calls per record",
        ratio=f"{report.ratio(fewer)} fewer KMS calls; "
        f"{report.ratio(rate / base_rate)} the rate",
        target=f"{TARGET:g}x fewer KMS calls",
        result=report.verdict(fewer >= TARGET, f"{report.ratio(fewer)} fewer calls"),
    )
