"""The topology file: Pub/Sub topics and subscriptions, and the functions.

``infra/topology.yaml`` is the one description of these resources. The local
stack builds them on the Pub/Sub emulator and starts the functions from it.
``load_topology`` validates the structure and the references between entries
(a subscription's topic, a push subscription's function, unique names and
ports) and raises ``TopologyError`` naming the bad entry, for example
``subscriptions[0] (audit-writer).ack_deadline_seconds: ...``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

__all__ = [
    "DEFAULT_TOPOLOGY_PATH",
    "DeadLetterPolicy",
    "Function",
    "PubSub",
    "RetryPolicy",
    "Schedule",
    "Subscription",
    "Topic",
    "Topology",
    "TopologyError",
    "load_topology",
    "parse_topology",
]

DEFAULT_TOPOLOGY_PATH = Path(__file__).resolve().parents[1] / "infra" / "topology.yaml"

# Pub/Sub's rule for topic and subscription ids.
_PUBSUB_ID = r"^[A-Za-z][A-Za-z0-9._~+%-]{2,254}$"
# Google Cloud's rule for project ids.
_PROJECT_ID = r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$"
_FUNCTION_NAME = r"^[a-z][a-z0-9_]{0,62}$"
_ENV_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")


def _check_not_reserved(value: str) -> str:
    if value.startswith("goog"):
        raise ValueError("Pub/Sub reserves ids that start with 'goog'")
    return value


PubSubId = Annotated[
    str, Field(pattern=_PUBSUB_ID), AfterValidator(_check_not_reserved)
]
Port = Annotated[int, Field(ge=1, le=65535)]


class TopologyError(Exception):
    """The topology file is missing, is not YAML, or has an invalid entry."""


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PubSub(_Entry):
    project_id: str = Field(pattern=_PROJECT_ID)
    emulator_port: Port


class Topic(_Entry):
    name: PubSubId


class RetryPolicy(_Entry):
    """Backoff between redeliveries of a message that was not acknowledged."""

    minimum_backoff_seconds: int = Field(default=10, ge=0, le=600)
    maximum_backoff_seconds: int = Field(default=600, ge=0, le=600)

    @model_validator(mode="after")
    def _check_order(self) -> RetryPolicy:
        if self.minimum_backoff_seconds > self.maximum_backoff_seconds:
            raise ValueError(
                "minimum_backoff_seconds must not exceed maximum_backoff_seconds"
            )
        return self


class DeadLetterPolicy(_Entry):
    """Dead-letter topic for messages after ``max_delivery_attempts`` deliveries."""

    topic: PubSubId
    max_delivery_attempts: int = Field(ge=5, le=100)


class Subscription(_Entry):
    name: PubSubId
    topic: PubSubId
    # Function whose local URL is the push endpoint; None makes a pull subscription.
    push_function: str | None = None
    ack_deadline_seconds: int = Field(default=10, ge=10, le=600)
    retry_policy: RetryPolicy | None = None
    dead_letter_policy: DeadLetterPolicy | None = None


class Function(_Entry):
    name: str = Field(pattern=_FUNCTION_NAME)
    source: str
    entry_point: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    signature_type: Literal["http", "cloudevent"]
    port: Port
    trigger_topic: PubSubId | None = None
    # GET path that returns 200 once the function is up.
    health_path: str | None = Field(default=None, pattern=r"^/")
    # Settings of this function only, as environment variables.
    environment: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_function(self) -> Function:
        if self.source != f"functions/{self.name}":
            raise ValueError(f"source must be functions/{self.name}")
        if self.signature_type == "cloudevent" and self.trigger_topic is None:
            raise ValueError("a cloudevent function needs a trigger_topic")
        if self.signature_type == "http" and self.trigger_topic is not None:
            raise ValueError("an http function takes no trigger_topic")
        bad = sorted(name for name in self.environment if not _ENV_NAME.match(name))
        if bad:
            raise ValueError(
                f"environment names must be upper-case identifiers, not {bad}"
            )
        return self

    @property
    def main_file(self) -> PurePosixPath:
        """Path of the function's source file, relative to the repository."""
        return PurePosixPath(self.source) / "main.py"


class Schedule(_Entry):
    """A Cloud Scheduler job that publishes ``payload`` to ``topic`` on a cron.

    Locally, ``shared.scheduler`` publishes it while the stack runs.
    """

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,500}$")
    topic: PubSubId
    # Unix cron with five fields, read in time_zone, e.g. "0 3 * * *".
    schedule: str = Field(pattern=r"^\S+( \S+){4}$")
    # An IANA time zone name, e.g. "Europe/Berlin".
    time_zone: str = "Etc/UTC"
    # Published as the JSON message data.
    payload: dict[str, Any] = Field(default_factory=dict)

    @field_validator("schedule")
    @classmethod
    def _check_cron(cls, value: str) -> str:
        from croniter import croniter

        if not croniter.is_valid(value):
            raise ValueError(
                f"{value!r} is not a valid cron expression: five fields, minute "
                "hour day-of-month month day-of-week, e.g. '0 * * * *'"
            )
        return value

    @field_validator("time_zone")
    @classmethod
    def _check_time_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"{value!r} is not an IANA time zone name such as Etc/UTC or "
                "Europe/Berlin"
            ) from None
        return value


class Topology(_Entry):
    pubsub: PubSub
    topics: tuple[Topic, ...]
    subscriptions: tuple[Subscription, ...] = ()
    functions: tuple[Function, ...]
    # Cloud Scheduler jobs. infra/terraform creates them in the cloud, and the
    # local stack publishes them itself (shared/scheduler.py).
    schedules: tuple[Schedule, ...] = ()

    @model_validator(mode="after")
    def _check_references(self) -> Topology:
        _check_unique("topics", (topic.name for topic in self.topics))
        _check_unique("subscriptions", (sub.name for sub in self.subscriptions))
        _check_unique("functions", (function.name for function in self.functions))
        _check_unique("schedules", (schedule.name for schedule in self.schedules))
        _check_unique(
            "ports",
            [self.pubsub.emulator_port, *(f.port for f in self.functions)],
        )
        for index, subscription in enumerate(self.subscriptions):
            where = f"subscriptions[{index}] ({subscription.name})"
            self._check_subscription(where, subscription)
        for index, function in enumerate(self.functions):
            where = f"functions[{index}] ({function.name})"
            self._check_trigger(where, function)
        topics = {topic.name for topic in self.topics}
        for index, schedule in enumerate(self.schedules):
            if schedule.topic not in topics:
                raise ValueError(
                    f"schedules[{index}] ({schedule.name}): topic "
                    f"{schedule.topic!r} is not declared under topics"
                )
        return self

    def schedule(self, name: str) -> Schedule:
        """Return the schedule called ``name``; KeyError if there is none."""
        for schedule in self.schedules:
            if schedule.name == name:
                return schedule
        raise KeyError(name)

    def function(self, name: str) -> Function:
        """Return the function called ``name``; KeyError if there is none."""
        for function in self.functions:
            if function.name == name:
                return function
        raise KeyError(name)

    def _check_subscription(self, where: str, subscription: Subscription) -> None:
        topics = {topic.name for topic in self.topics}
        if subscription.topic not in topics:
            raise ValueError(
                f"{where}: topic {subscription.topic!r} is not declared under topics"
            )
        policy = subscription.dead_letter_policy
        if policy is not None and policy.topic not in topics:
            raise ValueError(
                f"{where}: dead-letter topic {policy.topic!r} is not declared "
                "under topics"
            )
        if policy is not None and policy.topic == subscription.topic:
            raise ValueError(
                f"{where}: the dead-letter topic must differ from the topic"
            )
        if subscription.push_function is None:
            return
        try:
            function = self.function(subscription.push_function)
        except KeyError:
            raise ValueError(
                f"{where}: push_function {subscription.push_function!r} is not "
                "declared under functions"
            ) from None
        if function.trigger_topic != subscription.topic:
            raise ValueError(
                f"{where}: push_function {function.name!r} must be a cloudevent "
                f"function with trigger_topic {subscription.topic!r}"
            )

    def _check_trigger(self, where: str, function: Function) -> None:
        if function.trigger_topic is None:
            return
        if not any(sub.push_function == function.name for sub in self.subscriptions):
            raise ValueError(
                f"{where}: no subscription has push_function {function.name!r}, "
                f"so nothing delivers {function.trigger_topic!r} to it"
            )


def load_topology(path: Path = DEFAULT_TOPOLOGY_PATH) -> Topology:
    """Read and validate a topology file; raise TopologyError naming the problem."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise TopologyError(f"cannot read {path}: {exc.strerror}") from None
    return parse_topology(text, source=str(path))


def parse_topology(text: str, *, source: str = "topology") -> Topology:
    """Validate topology YAML; ``source`` names the file in error messages."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise TopologyError(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise TopologyError(f"{source}: expected a mapping with topics and functions")
    try:
        return Topology.model_validate(data)
    except ValidationError as exc:
        problems = [_describe(error, data) for error in exc.errors()]
        raise TopologyError(f"{source}: " + "; ".join(problems)) from None


def _check_unique(kind: str, values: Iterable[object]) -> None:
    repeated = sorted(str(value) for value, n in Counter(values).items() if n > 1)
    if repeated:
        raise ValueError(f"{kind} must be unique, but these repeat: {repeated}")


def _describe(error: Any, data: dict[str, Any]) -> str:
    """Return ``where: message`` for a pydantic error, naming the entry."""
    parts: list[str] = []
    node: Any = data
    for part in error["loc"]:
        if isinstance(part, int):
            entry = node[part] if isinstance(node, list) else None
            name = entry.get("name") if isinstance(entry, dict) else None
            parts[-1] += f"[{part}]" + (f" ({name})" if name else "")
        else:
            parts.append(str(part))
        node = _child(node, part)
    cause = error.get("ctx", {}).get("error")
    message = str(cause) if isinstance(cause, ValueError) else error["msg"]
    return f"{'.'.join(parts)}: {message}" if parts else message


def _child(node: Any, part: str | int) -> Any:
    if isinstance(part, int) and isinstance(node, list) and part < len(node):
        return node[part]
    if isinstance(node, dict):
        return node.get(part)
    return None
