"""``Alert``: one notification's content, the same on every channel."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

WARNING = "warning"
CRITICAL = "critical"


@dataclass(frozen=True)
class Alert:
    """An alert's text, its recipients, and the ids that name it.

    ``key`` identifies the alert across runs (rule, subject and threshold or
    time bucket): the notification ledger sends each key once per channel.
    ``facts`` are ids and UTC times for machines (the Pub/Sub message and the
    audit event); ``summary`` is the subject line; ``body`` the paragraphs that
    describe what happened, to which key or credential, and when; ``action`` what
    to do. None of them ever carries a secret.
    """

    key: str
    rule: str
    severity: str
    tenant_id: str | None
    summary: str
    body: tuple[str, ...]
    action: str
    facts: dict[str, str] = field(default_factory=dict)
    # Email addresses; empty when no one is to be emailed.
    recipients: tuple[str, ...] = ()

    def text(self) -> str:
        """Return the plain-text message: the body, then what to do."""
        return "\n\n".join([*self.body, f"What to do: {self.action}"])

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Alert:
        """Rebuild an alert that ``to_json`` wrote; ValueError if it is not one."""
        data: Any = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("an alert is a JSON object")
        try:
            return cls(
                key=str(data["key"]),
                rule=str(data["rule"]),
                severity=str(data["severity"]),
                tenant_id=data["tenant_id"],
                summary=str(data["summary"]),
                body=tuple(str(line) for line in data["body"]),
                action=str(data["action"]),
                facts={str(k): str(v) for k, v in data["facts"].items()},
                recipients=tuple(str(r) for r in data["recipients"]),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"invalid alert JSON: {type(exc).__name__}") from None
