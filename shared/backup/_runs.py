"""Backup runs: running one for a slot, listing them, and deleting old ones.

A run is complete once its manifest exists and every file it lists is in the
bucket unchanged (same size, CRC32C and generation). ``BackupRunner.run``:

1. returns at once if the slot's run is already complete, and raises
   ``DamagedRunError`` if its manifest lists a file that is missing or changed;
2. claims the slot by creating ``claims/<run>.json`` write-once. A claim
   younger than ``claim_seconds`` belongs to an attempt that may still be
   running, so ``RunInProgressError`` (transient) is raised and the trigger
   is retried later. An older claim is taken over, guarded by its generation;
3. exports the tables, then writes the manifest, write-once and last.

Retention (``apply_retention``) deletes a run when its day is more than
``retention_days`` old and a younger complete run exists that the current KMS
keys can open: every key version its manifest lists is still in the local
keyring. Runs are full copies and never need each other's files; what a
younger run can lack is its key versions. So the newest run that the current
keys can open is kept, however old, and with it every run younger than it.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from shared.backup._export import Exporter, KeyVersions, new_attempt
from shared.backup._layout import (
    CLAIM_FOLDER,
    MANIFEST_FOLDER,
    TABLE_FOLDERS,
    claim_object,
    manifest_object,
    run_name,
    run_of_object,
    slot_of,
)
from shared.backup._manifest import KmsKeyEntry, Manifest, ManifestError, Source
from shared.backup._storage import (
    Bucket,
    ObjectExistsError,
    ObjectInfo,
    StorageError,
    TransientStorageError,
)

_log = logging.getLogger(__name__)

RunStatus = Literal["complete", "incomplete", "running", "damaged"]


class BackupError(Exception):
    """A backup run failed; retrying the same run will not help by itself."""


class DamagedRunError(BackupError):
    """A complete run's manifest lists a file that is missing or changed."""


class RunInProgressError(TransientStorageError):
    """Another attempt has the slot's claim; retry once it has finished."""


@dataclass(frozen=True)
class RunResult:
    run: str
    status: Literal["completed", "already_complete"]
    manifest: Manifest
    deleted_runs: tuple[str, ...] = ()


@dataclass
class RunInfo:
    """A run as found in the bucket."""

    run: str
    slot: date
    status: RunStatus
    manifest: Manifest | None = None
    objects: list[ObjectInfo] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    claimed_until: datetime | None = None

    @property
    def size(self) -> int:
        return sum(info.size for info in self.objects)


# Returns whether the current KMS keys contain every version a key entry lists.
KeyCheck = Callable[[KmsKeyEntry], bool]


@dataclass(frozen=True)
class RetentionResult:
    deleted: tuple[str, ...]
    kept_for_keys: str | None
    failed: tuple[str, ...] = ()


class BackupRunner:
    """Runs backups of one store into one bucket."""

    def __init__(
        self,
        bucket: Bucket,
        exporter: Exporter,
        *,
        tables: Sequence[str],
        read_key_versions: bool,
        primary_version: Callable[[str], int | None],
        claim_seconds: float = 900.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._bucket = bucket
        self._exporter = exporter
        self._tables = tuple(tables)
        self._read_key_versions = read_key_versions
        self._primary_version = primary_version
        self._claim = timedelta(seconds=claim_seconds)
        self._clock = clock

    @property
    def bucket(self) -> Bucket:
        return self._bucket

    def run(self, slot: date) -> RunResult:
        """Back up the tables as the run of ``slot``, unless it is complete."""
        run = run_name(slot)
        existing = load_manifest(self._bucket, run)
        if existing is not None:
            check_run_files(self._bucket, existing)
            return RunResult(run, "already_complete", existing)

        started_at = self._clock()
        attempt = self._take_claim(run, started_at)
        keys = KeyVersions(read_versions=self._read_key_versions)
        exported = self._exporter.export(run, attempt, self._tables, self._bucket, keys)
        manifest = Manifest(
            run=run,
            slot=slot,
            snapshot_at=exported.snapshot_at,
            started_at=started_at,
            completed_at=self._clock(),
            source=Source(
                backend=self._exporter.backend, dataset=self._exporter.dataset
            ),
            bucket=self._bucket.name,
            tables=tuple(exported.tables),
            kms_keys=self._key_entries(keys),
        )
        if keys.unreadable:
            _log.warning(
                "%d exported ciphertexts name no readable key version",
                keys.unreadable,
                extra={"labels": {"run": run}},
            )
        return self._write_manifest(manifest)

    def _take_claim(self, run: str, now: datetime) -> str:
        attempt = new_attempt(now)
        claim = {
            "run": run,
            "attempt": attempt,
            "started_at": now.isoformat(),
            "expires_at": (now + self._claim).isoformat(),
        }
        body = json.dumps(claim, indent=2).encode("utf-8")
        name = claim_object(run)
        try:
            self._bucket.write_once(name, io.BytesIO(body), len(body))
            return attempt
        except ObjectExistsError as exists:
            claimed = exists.existing
        until = _claim_expiry(self._bucket, claimed)
        if until is not None and until > now:
            raise RunInProgressError(
                f"run {run} is claimed by another attempt until "
                f"{until.isoformat()}; retry after that"
            )
        _log.warning(
            "taking over run %s from an attempt that did not finish",
            run,
            extra={"labels": {"run": run}},
        )
        try:
            self._bucket.replace(name, io.BytesIO(body), len(body), claimed.generation)
        except ObjectExistsError:
            raise RunInProgressError(
                f"another attempt took over run {run} first; retry later"
            ) from None
        return attempt

    def _key_entries(self, keys: KeyVersions) -> tuple[KmsKeyEntry, ...]:
        entries = []
        for key_name in sorted(keys.versions):
            versions = keys.versions[key_name]
            entries.append(
                KmsKeyEntry(
                    key_name=key_name,
                    backend="local" if self._read_key_versions else "gcp",
                    versions=tuple(sorted(versions))
                    if self._read_key_versions
                    else None,
                    primary_version=self._primary_version(key_name),
                )
            )
        return tuple(entries)

    def _write_manifest(self, manifest: Manifest) -> RunResult:
        body = manifest.to_json()
        name = manifest_object(manifest.run)
        try:
            self._bucket.write_once(name, io.BytesIO(body), len(body))
        except ObjectExistsError:
            # Another attempt finished first; its manifest describes the run.
            winner = load_manifest(self._bucket, manifest.run)
            if winner is None:
                raise BackupError(f"{name} vanished while it was written") from None
            check_run_files(self._bucket, winner)
            return RunResult(manifest.run, "already_complete", winner)
        return RunResult(manifest.run, "completed", manifest)


def load_manifest(bucket: Bucket, run: str) -> Manifest | None:
    """Return the run's manifest, None if it has none; ManifestError if invalid."""
    name = manifest_object(run)
    body = bucket.read_small(name)
    if body is None:
        return None
    manifest = Manifest.from_json(body, source=name)
    if manifest.run != run:
        raise ManifestError(f"{name} describes run {manifest.run}, not {run}")
    return manifest


def check_run_files(
    bucket: Bucket, manifest: Manifest, objects: Sequence[ObjectInfo] | None = None
) -> None:
    """Raise DamagedRunError unless every listed file is there, unchanged.

    Compares size, CRC32C and generation from the object metadata, so it reads
    no data. ``objects`` is a listing to use instead of one lookup per file.
    """
    problems = run_file_problems(bucket, manifest, objects)
    if problems:
        raise DamagedRunError(f"run {manifest.run} is damaged: {'; '.join(problems)}")


def run_file_problems(
    bucket: Bucket, manifest: Manifest, objects: Sequence[ObjectInfo] | None = None
) -> list[str]:
    found = {info.name: info for info in objects} if objects is not None else None
    problems = []
    for _, file in manifest.files():
        info = found.get(file.name) if found is not None else bucket.stat(file.name)
        if info is None:
            problems.append(f"{file.name} is missing")
        elif info.size != file.bytes or info.crc32c != file.crc32c:
            problems.append(
                f"{file.name} differs from the manifest "
                f"({info.size} bytes, expected {file.bytes})"
            )
        elif info.generation != file.generation:
            problems.append(f"{file.name} was replaced after the run")
    return problems


def list_runs(bucket: Bucket, now: datetime) -> list[RunInfo]:
    """Return every run found in the bucket, newest first."""
    objects: dict[str, list[ObjectInfo]] = {}
    for folder in (*TABLE_FOLDERS.values(), MANIFEST_FOLDER, CLAIM_FOLDER):
        for info in bucket.list(f"{folder}/backup-"):
            run = run_of_object(info.name)
            if run is not None:
                objects.setdefault(run, []).append(info)
    runs = [_describe_run(bucket, run, found, now) for run, found in objects.items()]
    return sorted(runs, key=lambda info: info.run, reverse=True)


def _describe_run(
    bucket: Bucket, run: str, objects: list[ObjectInfo], now: datetime
) -> RunInfo:
    info = RunInfo(run=run, slot=slot_of(run), status="incomplete", objects=objects)
    names = {item.name: item for item in objects}
    try:
        manifest = load_manifest(bucket, run) if manifest_object(run) in names else None
    except ManifestError as exc:
        info.status = "damaged"
        info.problems.append(str(exc))
        return info
    if manifest is None:
        claim = names.get(claim_object(run))
        info.claimed_until = _claim_expiry(bucket, claim) if claim else None
        if info.claimed_until is not None and info.claimed_until > now:
            info.status = "running"
        return info
    info.manifest = manifest
    info.problems = run_file_problems(bucket, manifest, objects)
    listed = {file.name for _, file in manifest.files()}
    extra = [
        name
        for name in names
        if name not in listed and name not in (manifest_object(run), claim_object(run))
    ]
    info.problems += [f"{name} is not in the manifest" for name in sorted(extra)]
    info.status = "damaged" if info.problems else "complete"
    return info


def _claim_expiry(bucket: Bucket, claim: ObjectInfo) -> datetime | None:
    body = bucket.read_small(claim.name, limit=4096)
    try:
        document: Any = json.loads(body or b"")
        return datetime.fromisoformat(document["expires_at"])
    except (ValueError, KeyError, TypeError):
        return None


def apply_retention(
    bucket: Bucket,
    now: datetime,
    retention_days: int,
    keys_available: KeyCheck,
) -> RetentionResult:
    """Delete runs older than ``retention_days`` (see the module docstring)."""
    runs = list_runs(bucket, now)
    cutoff = now.astimezone(UTC).date() - timedelta(days=retention_days)
    anchor = next(
        (
            run
            for run in runs
            if run.status == "complete"
            and run.manifest is not None
            and all(keys_available(entry) for entry in run.manifest.kms_keys)
        ),
        None,
    )
    if anchor is None:
        _log.warning("no complete backup run can be opened; deleting none")
        return RetentionResult(deleted=(), kept_for_keys=None)

    deleted, failed = [], []
    for run in runs:
        if run.slot >= cutoff or run.run >= anchor.run:
            continue
        try:
            delete_run(bucket, run)
        except StorageError as exc:
            _log.warning("deleting run %s failed: %s", run.run, exc)
            failed.append(run.run)
            continue
        deleted.append(run.run)
    kept = anchor.run if anchor.slot < cutoff else None
    return RetentionResult(tuple(deleted), kept, tuple(failed))


def delete_run(bucket: Bucket, run: RunInfo) -> None:
    """Delete a run's objects, the manifest first: a half-deleted run is incomplete."""
    manifest = manifest_object(run.run)
    ordered = sorted(run.objects, key=lambda info: info.name != manifest)
    for info in ordered:
        bucket.delete(info.name, info.generation)
    _log.info("deleted backup run %s", run.run, extra={"labels": {"run": run.run}})
