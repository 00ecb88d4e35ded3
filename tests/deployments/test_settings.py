"""Settings by layer, composed where the app is assembled, and the docs' table of them."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from actors.settings import ActorSettings
from deployments.cli import build_parser
from deployments.cli.stack import cmd_config
from deployments.settings import Settings, StackSettings, StackSettingsForTests, settings_table
from gateway.settings import GatewaySettings
from ranking.settings import RankingSettings
from storage.settings import LayeredSettings, StorageSettings

OPERATIONS_DOC = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def test_each_layer_extends_the_one_below() -> None:
    assert issubclass(RankingSettings, StorageSettings)
    assert issubclass(ActorSettings, RankingSettings)
    assert issubclass(GatewaySettings, ActorSettings)
    assert issubclass(Settings, GatewaySettings)
    assert issubclass(Settings, StackSettings)


def test_every_field_is_declared_once_with_its_meaning() -> None:
    layers: list[type[LayeredSettings]] = [
        StorageSettings,
        RankingSettings,
        ActorSettings,
        GatewaySettings,
        Settings,
        StackSettings,
    ]
    declared = [field.name for layer in layers for field in layer.own_fields()]
    assert sorted(declared) == sorted(f.name for f in dataclasses.fields(Settings))
    assert len(declared) == len(set(declared))
    for field in dataclasses.fields(Settings):
        assert field.metadata.get("doc"), f"{field.name} has no meaning for the docs"


def test_a_layer_reads_only_its_own_and_lower_variables() -> None:
    env = {"NOVA_RELAY_BATCH_SIZE": "7", "NOVA_GATEWAY_REPLICAS": "3"}
    storage = StorageSettings.from_env(env)
    assert storage.relay_batch_size == 7
    assert not hasattr(storage, "gateway_replicas")
    assert Settings.from_env(env).gateway_replicas == 3


def test_rules_between_fields_of_every_layer_still_hold_in_the_composition() -> None:
    with pytest.raises(ValueError, match="KAFKA_HEARTBEAT_INTERVAL_MS"):
        Settings.from_env({"NOVA_KAFKA_HEARTBEAT_INTERVAL_MS": "7000"})
    with pytest.raises(ValueError, match="NOVA_PORT_BASE must be >= 1024"):
        Settings.from_env({"NOVA_PORT_BASE": "80"})


def test_the_test_stack_reads_its_own_prefix_with_its_own_defaults() -> None:
    stack = StackSettingsForTests.from_env({"NOVA_TEST_PORT_BASE": "22000"}, prefix="NOVA_TEST_")
    assert (stack.port_base, stack.http_port) == (22_000, 21_800)
    assert StackSettings.from_env({"NOVA_TEST_PORT_BASE": "22000"}).port_base == 20_000


def test_config_prints_every_variable() -> None:
    table = settings_table()
    variables = re.findall(r"^\| `(NOVA_[A-Z0-9_]+)` \|", table, re.M)
    assert sorted(variables) == sorted(
        "NOVA_" + field.name.upper() for field in dataclasses.fields(Settings)
    )
    assert "| `NOVA_RELAY_COUNT` | `2` | outbox relay actors; all of them publish (> 0) |" in table


def test_the_docs_carry_the_current_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert cmd_config(build_parser().parse_args(["config"])) == 0
    printed = capsys.readouterr().out
    assert printed.strip() in OPERATIONS_DOC.read_text(), (
        "docs/operations.md's configuration table differs from the settings: paste the "
        "output of `nova config` into it"
    )
