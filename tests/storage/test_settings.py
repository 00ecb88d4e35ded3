"""Settings: parsed once from the environment, and bad values refused with their name."""

from __future__ import annotations

import pytest

from storage.settings import StorageSettings as Settings
from storage.settings import env_name


def test_defaults_are_valid() -> None:
    settings = Settings.from_env({})
    assert settings.relay_batch_size == 500
    assert settings.outbox_retention_s == 7 * 24 * 3600


def test_values_are_cast_by_field_type() -> None:
    settings = Settings.from_env(
        {
            "NOVA_RELAY_BATCH_SIZE": "3",
            "NOVA_KAFKA_IDEMPOTENCE": "false",
            "NOVA_REDIS_TIMEOUT_S": "0.5",
            "NOVA_KAFKA_BOOTSTRAP": "127.0.0.1:9092",
        }
    )
    assert settings.relay_batch_size == 3
    assert settings.kafka_idempotence is False
    assert settings.redis_timeout_s == 0.5
    assert settings.kafka_bootstrap == "127.0.0.1:9092"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("NOVA_RELAY_BATCH_SIZE", "two", "expected a int"),
        ("NOVA_RELAY_BATCH_SIZE", "0", "must be > 0"),
        ("NOVA_PG_POOL_MIN_SIZE", "-1", "must be >= 0"),
        ("NOVA_REDIS_TIMEOUT_S", "inf", "finite"),
        ("NOVA_KAFKA_IDEMPOTENCE", "maybe", "expected one of"),
        ("NOVA_DATABASE_URL", "mysql://x", "postgresql://"),
        ("NOVA_REDIS_URL", "http://x", "redis://"),
        ("NOVA_LOG_LEVEL", "LOUD", "DEBUG, INFO"),
        ("NOVA_KAFKA_BOOTSTRAP", "  ", "set but empty"),
    ],
)
def test_bad_values_are_refused_naming_the_variable(
    variable: str, value: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message) as raised:
        Settings.from_env({variable: value})
    assert variable in str(raised.value) or message in str(raised.value)


def test_heartbeat_must_be_below_session_timeout() -> None:
    with pytest.raises(ValueError, match="KAFKA_HEARTBEAT_INTERVAL_MS"):
        Settings.from_env({"NOVA_KAFKA_HEARTBEAT_INTERVAL_MS": "7000"})


def test_busy_fetch_wait_must_not_exceed_the_idle_one() -> None:
    with pytest.raises(ValueError, match="KAFKA_FETCH_BUSY_WAIT_MS"):
        Settings.from_env(
            {"NOVA_KAFKA_FETCH_MAX_WAIT_MS": "100", "NOVA_KAFKA_FETCH_BUSY_WAIT_MS": "101"}
        )
    with pytest.raises(ValueError, match="KAFKA_FETCH_BUSY_WAIT_MS"):
        Settings.from_env({"NOVA_KAFKA_FETCH_BUSY_WAIT_MS": "-1"})
    settings = Settings.from_env(
        {"NOVA_KAFKA_FETCH_MAX_WAIT_MS": "100", "NOVA_KAFKA_FETCH_BUSY_WAIT_MS": "20"}
    )
    assert (settings.kafka_fetch_max_wait_ms, settings.kafka_fetch_busy_wait_ms) == (100, 20)
    assert settings.kafka_fetch_busy_wait == 20
    assert Settings.from_env({"NOVA_KAFKA_FETCH_MAX_WAIT_MS": "100"}).kafka_fetch_busy_wait == 100


def test_env_name_is_prefixed_and_upper_case() -> None:
    assert env_name("relay_batch_size") == "NOVA_RELAY_BATCH_SIZE"
