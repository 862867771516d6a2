"""The keys behind confirmation codes and sealed personal data: what production accepts."""

from __future__ import annotations

import base64
import secrets

import pytest
from pydantic import ValidationError

from shared.settings import Settings


def random_key(size: int = 32) -> str:
    return base64.b64encode(secrets.token_bytes(size)).decode()


def production(**keys: str) -> Settings:
    values = {"errands_code_key": random_key(), "errands_data_key": random_key()} | keys
    return Settings.model_validate({"errands_production": "true", **values})


def test_production_accepts_random_32_byte_keys() -> None:
    code_key, data_key = random_key(), random_key()
    settings = production(errands_code_key=code_key, errands_data_key=data_key)
    assert settings.code_key == code_key.encode()
    assert settings.data_key == base64.b64decode(data_key)


@pytest.mark.parametrize(
    "code_key",
    [
        secrets.token_hex(32),  # openssl rand -hex 32
        random_key(48),  # openssl rand -base64 48
        random_key().rstrip("="),  # base64 without its padding
    ],
    ids=["hex", "base64 of 48 bytes", "unpadded base64"],
)
def test_production_accepts_other_encodings_of_enough_random_bytes_as_code_key(code_key: str) -> None:
    assert production(errands_code_key=code_key).code_key == code_key.encode()


@pytest.mark.parametrize(
    "code_key",
    [
        pytest.param(Settings.model_fields["errands_code_key"].default, id="the in-code default"),
        pytest.param("compose-dev-code-key-change-me", id="the old docker-compose.yml default"),
        pytest.param("CHANGE-ME-long-random-string", id="deploy/k8s/secret.example.yaml"),
        pytest.param("replace-with-a-long-random-string", id="the old docs/deploy.md example"),
        pytest.param("changeme", id="changeme"),
        pytest.param("secret", id="secret"),
        pytest.param("MySecretKeyForErrandsInProductionPleaseKeepIt", id="a long sentence with 'secret'"),
        pytest.param("errands production code key for the city of Ningbo", id="a long passphrase"),
        pytest.param(random_key(16), id="16 random bytes"),
        pytest.param(secrets.token_hex(16), id="16 random bytes in hex"),
        pytest.param(base64.b64encode(bytes(32)).decode(), id="32 zero bytes"),
        pytest.param(base64.b64encode(b"\xa5" * 48).decode(), id="48 equal bytes"),
        pytest.param(b"0123456789".hex() * 4, id="a counting pattern in hex"),
    ],
)
def test_production_refuses_a_placeholder_or_weak_code_key(code_key: str) -> None:
    with pytest.raises(ValidationError, match="ERRANDS_CODE_KEY") as refused:
        production(errands_code_key=code_key)
    assert "openssl rand -base64 32" in str(refused.value), "the error says how to make a key"
    assert "secrets.token_bytes(32)" in str(refused.value)


@pytest.mark.parametrize(
    "data_key",
    [
        pytest.param(Settings.model_fields["errands_data_key"].default, id="the in-code default"),
        pytest.param("Y29tcG9zZS1kZXYtZGF0YS1rZXktY2hhbmdlLW1lISE=", id="the old docker-compose.yml default"),
        pytest.param("CHANGE-ME-base64-of-32-random-bytes", id="deploy/k8s/secret.example.yaml"),
        pytest.param("replace-with-output-of-openssl-rand-base64-32", id="the old docs/deploy.md example"),
        pytest.param(base64.b64encode(bytes(32)).decode(), id="32 zero bytes"),
        pytest.param(base64.b64encode(b"0123456789abcde" * 2 + b"f").decode(), id="a counting pattern"),
        pytest.param(random_key(16), id="16 random bytes"),
    ],
)
def test_production_refuses_a_placeholder_or_weak_data_key(data_key: str) -> None:
    with pytest.raises(ValidationError, match="ERRANDS_DATA_KEY") as refused:
        production(errands_data_key=data_key)
    assert "openssl rand -base64 32" in str(refused.value)


def test_production_refuses_the_defaults_when_no_key_is_given() -> None:
    with pytest.raises(ValidationError, match="ERRANDS_CODE_KEY"):
        Settings.model_validate({"errands_production": "true", "errands_data_key": random_key()})
    with pytest.raises(ValidationError, match="ERRANDS_DATA_KEY"):
        Settings.model_validate({"errands_production": "true", "errands_code_key": random_key()})


def test_outside_production_the_defaults_still_run_a_laptop_demo() -> None:
    settings = Settings.model_validate({})
    assert len(settings.data_key) == 32
    assert settings.code_key


def test_a_data_key_that_is_not_32_bytes_is_refused_in_any_mode() -> None:
    for size in (16, 31, 33, 64):
        with pytest.raises(ValidationError, match="ERRANDS_DATA_KEY must be 32 bytes"):
            Settings.model_validate({"errands_data_key": random_key(size)})
    with pytest.raises(ValidationError, match="ERRANDS_DATA_KEY must be 32 bytes"):
        Settings.model_validate({"errands_data_key": "not base64 at all!"})


def test_a_refused_key_is_not_repeated_in_the_error() -> None:
    """Start-up errors reach the logs; a weak key in them would still be a key."""
    weak = random_key(16)
    values = {"errands_production": "true", "errands_data_key": random_key(), "errands_code_key": weak}
    with pytest.raises(ValidationError, match="ERRANDS_CODE_KEY") as refused:
        Settings.model_validate(values)
    assert weak not in str(refused.value)
    assert f"'errands_code_key': '{weak[:3]}" not in str(refused.value), "not even a shortened repr"
    assert "input_value" not in str(refused.value)
