"""Input checks shared by the provider modules, and the normalised result.

A submission is checked field by field before any network or KMS call. Each
failure raises ``CredentialInputError`` naming the field (``credentials.<name>``)
and the fix. No message quotes a submitted value, secret or not.

What is normalised, and reported back in ``normalised`` by field name:

* a leading UTF-8 byte-order mark (U+FEFF) on a string field is removed;
* spaces, tabs and line endings around a string field are removed;
* provider-specific repairs that cannot change what a secret authenticates
  (listed in each provider module: PEM line endings, the letter case of AWS key
  ids and Azure GUIDs).

What is rejected: anything else that would have to change a secret's
characters to work, such as whitespace inside a secret. Fields outside a
provider's documented set are dropped from the stored copy and listed back in
``ignored_fields``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

PROVIDERS = ("aws", "azure", "gcp", "openai")
BOM = "\ufeff"
_SURROUNDING_WHITESPACE = " \t\r\n"


class CredentialInputError(ValueError):
    """A submitted credential is malformed; ``field`` names it, the message the fix."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = f"{field_name}: {message}"


@dataclass(frozen=True)
class NormalisedCredential:
    """A credential that passed the input checks, in its canonical form.

    ``fields`` is what gets encrypted and later returned to pipelines.
    ``secret_fields`` names the entries of ``fields`` that are secret.
    ``details`` contains non-secret facts safe for listings, logs and audit events.
    ``expires_at`` is the expiry the submission states, if any.
    """

    provider: str
    fields: dict[str, str] = field(repr=False)
    secret_fields: tuple[str, ...]
    account_hint: str
    details: dict[str, str]
    normalised: tuple[str, ...] = ()
    ignored_fields: tuple[str, ...] = ()
    expires_at: datetime | None = None

    def canonical_json(self) -> bytes:
        """Return the fields as sorted, compact JSON: the bytes that are stored."""
        text = json.dumps(self.fields, sort_keys=True, separators=(",", ":"))
        return text.encode("utf-8")

    def secrets(self) -> list[str]:
        """Return the secret values, for tests that search output for leaks."""
        return [self.fields[name] for name in self.secret_fields if name in self.fields]


class FieldReader:
    """Reads string fields from a submitted object and records each repair."""

    def __init__(self, raw: Mapping[str, object], prefix: str = "credentials") -> None:
        self._raw = raw
        self._prefix = prefix
        self._read: set[str] = set()
        self.normalised: list[str] = []

    def name(self, field_name: str) -> str:
        """Return the field's name as error messages show it."""
        return f"{self._prefix}.{field_name}"

    def error(self, field_name: str, message: str) -> CredentialInputError:
        return CredentialInputError(self.name(field_name), message)

    def note(self, field_name: str, repair: str) -> None:
        """Record that ``field_name`` was repaired, without its value."""
        self.normalised.append(f"{self.name(field_name)}: {repair}")

    def has(self, field_name: str) -> bool:
        return self._raw.get(field_name) is not None

    def drop(self, *field_names: str) -> None:
        """Mark documented fields that are not stored as read, so none is reported."""
        self._read.update(field_names)

    def string(
        self,
        field_name: str,
        *,
        max_length: int,
        aliases: Iterable[str] = (),
        required: bool = True,
        multiline: bool = False,
    ) -> str | None:
        """Return the field, trimmed, or None when optional and absent.

        ``aliases`` are other names the same field may arrive under; sending two
        of them with different values is an error. With ``multiline`` (a PEM
        block) the final line break is expected and removed without a note.
        """
        present = self._present(field_name, aliases)
        if not present:
            if required:
                raise self.error(field_name, "is required")
            return None
        values = {self._clean(name, max_length, multiline) for name in present}
        if len(values) > 1:
            names = " and ".join(self.name(name) for name in present)
            raise CredentialInputError(
                names, "carry different values; send the field once"
            )
        return values.pop()

    def required(
        self,
        field_name: str,
        *,
        max_length: int,
        aliases: Iterable[str] = (),
        multiline: bool = False,
    ) -> str:
        value = self.string(
            field_name, max_length=max_length, aliases=aliases, multiline=multiline
        )
        assert value is not None
        return value

    def ignored(self) -> tuple[str, ...]:
        """Return the names of submitted fields that no check read, sorted."""
        return tuple(
            sorted(self.name(key) for key in self._raw if key not in self._read)
        )

    def _present(self, field_name: str, aliases: Iterable[str]) -> list[str]:
        present = []
        for name in (field_name, *aliases):
            self._read.add(name)
            if self._raw.get(name) is not None:
                present.append(name)
        return present

    def _clean(self, field_name: str, max_length: int, multiline: bool) -> str:
        value = self._raw[field_name]
        if not isinstance(value, str):
            raise self.error(field_name, "must be a string")
        if value.startswith(BOM):
            value = value[len(BOM) :]
            self.note(field_name, "removed a leading byte-order mark")
        if multiline and value.endswith("\n"):
            value = value.removesuffix("\n")
        stripped = value.strip(_SURROUNDING_WHITESPACE)
        if stripped != value:
            self.note(field_name, "removed surrounding whitespace")
        if not stripped:
            raise self.error(field_name, "must not be empty")
        if len(stripped) > max_length:
            raise self.error(field_name, f"must be at most {max_length} characters")
        return stripped


def require_printable(reader: FieldReader, field_name: str, value: str) -> None:
    """Raise unless ``value`` is printable ASCII without spaces, as secrets are."""
    if any(character.isspace() for character in value):
        raise reader.error(
            field_name,
            "contains whitespace or a line break inside it; copy the value again "
            "in one piece",
        )
    if not value.isascii() or not value.isprintable():
        raise reader.error(
            field_name,
            "contains characters outside printable ASCII; copy the value again "
            "from the provider's console",
        )


def suffix_hint(value: str, length: int = 4) -> str:
    """Return ``...`` and the last ``length`` characters, for listings."""
    return "..." + value[-length:]
