"""Terraform's module inputs take every field of the topology entries.

Terraform converts the decoded YAML to each module's variable type and drops
attributes the type does not list, so a field added to shared/topology.py
without the matching Terraform attribute would be ignored in the cloud.
"""

import re

import pytest
import yaml
from pydantic import BaseModel
from terraform_config import MODULES, variables

from shared.topology import (
    DEFAULT_TOPOLOGY_PATH,
    DeadLetterPolicy,
    RetryPolicy,
    Schedule,
    Subscription,
    TopologyError,
    parse_topology,
)


def _attributes(type_expression: str) -> set[str]:
    return set(re.findall(r"(\w+)\s*=", type_expression))


def _fields(*models: type[BaseModel]) -> set[str]:
    return {name for model in models for name in model.model_fields}


def test_subscription_fields_reach_terraform() -> None:
    declared = variables(MODULES / "pubsub" / "variables.tf")["subscriptions"]["type"]

    assert _attributes(declared) == _fields(Subscription, RetryPolicy, DeadLetterPolicy)


def test_schedule_fields_reach_terraform() -> None:
    declared = variables(MODULES / "scheduler" / "variables.tf")["jobs"]["type"]

    assert _attributes(declared) == _fields(Schedule)


def _with_schedule(**entry: object) -> str:
    data = yaml.safe_load(DEFAULT_TOPOLOGY_PATH.read_text())
    data["schedules"] = [entry]
    return yaml.safe_dump(data)


def test_schedule_defaults() -> None:
    topology = parse_topology(
        _with_schedule(name="nightly", topic="audit-events", schedule="0 3 * * *")
    )

    assert topology.schedules[0].time_zone == "Etc/UTC"
    assert topology.schedules[0].payload == {}


def test_schedule_unknown_topic_rejected() -> None:
    text = _with_schedule(name="nightly", topic="missing", schedule="0 3 * * *")

    with pytest.raises(TopologyError, match=r"schedules\[0\] \(nightly\): topic"):
        parse_topology(text)


def test_schedule_short_cron_rejected() -> None:
    text = _with_schedule(name="nightly", topic="audit-events", schedule="0 3 * *")

    with pytest.raises(TopologyError, match=r"schedules\[0\]"):
        parse_topology(text)
