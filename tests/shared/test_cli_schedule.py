"""``convergence schedule``: list the topology's schedules and fire one now."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result
from pubsub_emulator import PROJECT, PubSubEmulator, emulator_available, shared_emulator

from shared.cli import EXIT_CONFIG, EXIT_FAILED, EXIT_UNAVAILABLE, cli
from shared.scheduler import current_slot, format_slot
from shared.topology import DEFAULT_TOPOLOGY_PATH, load_topology


@pytest.fixture
def runner(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> CliRunner:
    return CliRunner(env={"DATA_DIR": str(tmp_path / "data")})


def run(runner: CliRunner, *args: str, **env: str) -> Result:
    return runner.invoke(cli, list(args), env=env or None, catch_exceptions=False)


def test_list_shows_topology_schedules(runner: CliRunner) -> None:
    result = run(runner, "--json", "schedule", "list")
    entries = {entry["name"]: entry for entry in json.loads(result.stdout)["schedules"]}
    hourly = entries["hourly-alert-check"]

    assert result.exit_code == 0
    assert hourly["topic"] == "alert-checks"
    assert hourly["schedule"] == "0 * * * *"
    assert hourly["current_slot"].endswith(":00:00Z")


def test_list_text_table(runner: CliRunner) -> None:
    result = run(runner, "schedule", "list")

    assert result.stdout.startswith("NAME")
    assert "hourly-alert-check" in result.stdout


def test_bad_topology_is_config_error(runner: CliRunner, tmp_path: Path) -> None:
    data = yaml.safe_load(DEFAULT_TOPOLOGY_PATH.read_text())
    data["schedules"] = [
        {"name": "x", "topic": "alert-checks", "schedule": "61 * * * *"}
    ]
    path = tmp_path / "topology.yaml"
    path.write_text(yaml.safe_dump(data))

    result = run(runner, "schedule", "list", "--topology", str(path))

    assert result.exit_code == EXIT_CONFIG
    assert "schedules[0] (x).schedule" in result.stderr


def test_run_needs_emulator(runner: CliRunner) -> None:
    result = run(runner, "schedule", "run", "hourly-alert-check")

    assert result.exit_code == EXIT_CONFIG
    assert "PUBSUB_EMULATOR_HOST is not set" in result.stderr


@pytest.fixture(scope="module")
def pubsub(tmp_path_factory: pytest.TempPathFactory) -> PubSubEmulator:
    if not emulator_available():
        pytest.skip("the Pub/Sub emulator needs gcloud and java on PATH")
    return shared_emulator(tmp_path_factory.mktemp("pubsub"))


@pytest.fixture
def topology(tmp_path: Path, pubsub: PubSubEmulator) -> Path:
    """The repository's topology with hourly-alert-check on a fresh topic."""
    topic = f"alert-checks-{uuid.uuid4().hex[:8]}"
    pubsub.topic(topic)
    data = yaml.safe_load(DEFAULT_TOPOLOGY_PATH.read_text())
    data["topics"].append({"name": topic})
    for entry in data["schedules"]:
        if entry["name"] == "hourly-alert-check":
            entry["topic"] = topic
    path = tmp_path / "topology.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_run_publishes_current_slot(
    runner: CliRunner, pubsub: PubSubEmulator, topology: Path
) -> None:
    entry = load_topology(topology).schedule("hourly-alert-check")
    before = format_slot(current_slot(entry, datetime.now(UTC)))

    result = run(
        runner,
        "--json",
        "schedule",
        "run",
        "hourly-alert-check",
        "--topology",
        str(topology),
        PUBSUB_EMULATOR_HOST=pubsub.host,
        PUBSUB_PROJECT_ID=PROJECT,
    )
    document = json.loads(result.stdout)
    (message,) = pubsub.pull(entry.topic)

    assert result.exit_code == 0, result.stderr
    # The hour can turn between the two readings of the clock.
    assert document["scheduled_for"] in {
        before,
        format_slot(current_slot(entry, datetime.now(UTC))),
    }
    assert message.attributes["scheduled_for"] == document["scheduled_for"]
    assert message.attributes["schedule"] == "hourly-alert-check"
    assert message.message_id == document["message_id"]


def test_run_unknown_schedule(runner: CliRunner, pubsub: PubSubEmulator) -> None:
    result = run(runner, "schedule", "run", "weekly", PUBSUB_EMULATOR_HOST=pubsub.host)

    assert result.exit_code == EXIT_FAILED
    assert "no schedule named weekly" in result.stderr


def test_run_missing_topic_unavailable(
    runner: CliRunner, pubsub: PubSubEmulator
) -> None:
    # The emulator responds, but the topic exists only once the stack made it.
    result = run(
        runner,
        "schedule",
        "run",
        "hourly-alert-check",
        PUBSUB_EMULATOR_HOST=pubsub.host,
        PUBSUB_PROJECT_ID=f"p-{uuid.uuid4().hex[:8]}",
    )

    assert result.exit_code == EXIT_UNAVAILABLE
    assert "is up and PUBSUB_EMULATOR_HOST matches its banner" in result.stderr
