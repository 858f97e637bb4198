"""Alert channels: email over SMTP, a Slack incoming webhook, a Pub/Sub topic.

Each channel's ``send`` delivers one alert or raises ``DeliveryError``. Its
message names the failure without a secret. It never contains the SMTP
password or the webhook URL, which contains the webhook's token. Nor does it
contain a library error's text, which can quote either.
"""

from __future__ import annotations

import email.policy
import json
import smtplib
import ssl
from collections.abc import Callable
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any, Protocol

import requests

from shared.alerts._model import CRITICAL, Alert

__all__ = [
    "Channel",
    "DeliveryError",
    "EmailChannel",
    "PubSubChannel",
    "SlackChannel",
]


class DeliveryError(Exception):
    """A channel did not deliver an alert; the message contains no secret."""


class Channel(Protocol):
    name: str

    def accepts(self, alert: Alert) -> bool:
        """Return whether this channel has somewhere to send ``alert``."""

    def send(self, alert: Alert) -> None:
        """Deliver ``alert`` or raise DeliveryError."""


# Lines up to RFC 5322's hard limit of 998 characters: with the default 78,
# Python folds a long Subject right after "Subject:" and sends paragraphs as
# quoted-printable.
_EMAIL_POLICY = email.policy.SMTP.clone(max_line_length=998)


class EmailChannel:
    """Sends each alert as one plain-text email to its recipients."""

    name = "email"

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        *,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = True,
        timeout_seconds: float = 10.0,
    ) -> None:
        self._host = host
        self._port = port
        self._sender = sender
        self._username = username
        self._password = password
        self._starttls = starttls
        self._timeout = timeout_seconds

    def accepts(self, alert: Alert) -> bool:
        return bool(alert.recipients)

    def send(self, alert: Alert) -> None:
        message = self.message(alert)
        try:
            with smtplib.SMTP(self._host, self._port, timeout=self._timeout) as smtp:
                if self._starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self._username is not None:
                    smtp.login(self._username, self._password or "")
                smtp.send_message(message)
        except smtplib.SMTPResponseException as exc:
            raise DeliveryError(
                f"SMTP server {self._host}:{self._port} returned {exc.smtp_code} "
                f"({type(exc).__name__})"
            ) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(
                f"SMTP to {self._host}:{self._port} failed ({type(exc).__name__})"
            ) from None

    def message(self, alert: Alert) -> EmailMessage:
        """Return the email for ``alert``."""
        message = EmailMessage(policy=_EMAIL_POLICY)
        message["Subject"] = f"{alert.severity.capitalize()}: {alert.summary}"
        message["From"] = self._sender
        message["To"] = ", ".join(alert.recipients)
        message["Date"] = formatdate(usegmt=True)
        message["Message-ID"] = make_msgid(domain=self._sender.rpartition("@")[2])
        message["X-Convergence-Alert"] = alert.key
        message.set_content(alert.text() + "\n")
        return message


class SlackChannel:
    """Posts each alert to a Slack incoming webhook."""

    name = "slack"

    def __init__(self, webhook_url: str, *, timeout_seconds: float = 10.0) -> None:
        self._url = webhook_url
        self._timeout = timeout_seconds
        self._session = requests.Session()

    def accepts(self, alert: Alert) -> bool:
        return True

    def send(self, alert: Alert) -> None:
        try:
            response = self._session.post(
                self._url,
                json=self.payload(alert),
                timeout=self._timeout,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise DeliveryError(
                f"the Slack webhook request failed ({type(exc).__name__})"
            ) from None
        if not 200 <= response.status_code < 300:
            raise DeliveryError(
                f"the Slack webhook returned HTTP {response.status_code}"
            )

    @staticmethod
    def payload(alert: Alert) -> dict[str, str]:
        """Return the webhook body: the alert as Slack mrkdwn text."""
        marker = ":rotating_light:" if alert.severity == CRITICAL else ":warning:"
        lines = [f"{marker} *{_slack_escape(alert.summary)}*"]
        lines += [_slack_escape(paragraph) for paragraph in alert.body]
        lines.append(f"*What to do:* {_slack_escape(alert.action)}")
        return {"text": "\n".join(lines)}


def _slack_escape(text: str) -> str:
    # Slack reads &, < and > as markup, so they are sent as entities.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class PubSubChannel:
    """Publishes each alert as JSON to a Pub/Sub topic."""

    name = "pubsub"

    def __init__(
        self,
        project_id: str,
        topic: str,
        *,
        timeout_seconds: float = 10.0,
        client_factory: Callable[[], Any] | None = None,
    ) -> None:
        self._topic_path = f"projects/{project_id}/topics/{topic}"
        self._timeout = timeout_seconds
        self._client_factory = client_factory or _publisher_client
        self._client: Any = None

    def accepts(self, alert: Alert) -> bool:
        return True

    def send(self, alert: Alert) -> None:
        from google.api_core import retry

        attributes = {"rule": alert.rule, "severity": alert.severity}
        if alert.tenant_id:
            attributes["tenant_id"] = alert.tenant_id
        try:
            if self._client is None:
                self._client = self._client_factory()
            future = self._client.publish(
                self._topic_path,
                self.message(alert),
                retry=retry.Retry(initial=0.1, maximum=1.0, timeout=self._timeout),
                timeout=self._timeout,
                **attributes,
            )
            future.result(timeout=self._timeout)
        except Exception as exc:  # noqa: BLE001 - any failure is retried next run
            raise DeliveryError(
                f"publishing to {self._topic_path} failed ({type(exc).__name__})"
            ) from None

    @staticmethod
    def message(alert: Alert) -> bytes:
        """Return the message data: the alert without its email recipients."""
        document = {
            "alert_key": alert.key,
            "rule": alert.rule,
            "severity": alert.severity,
            "tenant_id": alert.tenant_id,
            "summary": alert.summary,
            "text": alert.text(),
            "facts": alert.facts,
        }
        return json.dumps(document, sort_keys=True).encode("utf-8")


def _publisher_client() -> Any:
    from google.cloud import pubsub_v1  # type: ignore[attr-defined]

    return pubsub_v1.PublisherClient()
