"""`make run` gives its services keys of their own, made once per state directory and kept there."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest

from errands.local import local_keys
from shared.settings import Settings

NO_KEYS: dict[str, str] = {}


def test_first_run_makes_random_keys_readable_by_the_owner_only(tmp_path: Path) -> None:
    keys = local_keys(tmp_path / ".errands", environ=NO_KEYS)

    path = tmp_path / ".errands" / "keys.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == keys
    assert keys["ERRANDS_CODE_KEY"] != keys["ERRANDS_DATA_KEY"]
    for key in keys.values():
        assert len(base64.b64decode(key, validate=True)) == 32
    # Strong enough for production, let alone a laptop.
    settings = Settings.model_validate(
        {"errands_production": "true", **{k.lower(): v for k, v in keys.items()}}
    )
    assert settings.code_key == keys["ERRANDS_CODE_KEY"].encode()


def test_the_next_run_with_the_same_state_directory_reuses_its_keys(tmp_path: Path) -> None:
    first = local_keys(tmp_path, environ=NO_KEYS)
    written = (tmp_path / "keys.json").read_text()

    assert local_keys(tmp_path, environ=NO_KEYS) == first
    assert (tmp_path / "keys.json").read_text() == written


def test_each_state_directory_has_its_own_keys(tmp_path: Path) -> None:
    one = local_keys(tmp_path / "one", environ=NO_KEYS)
    other = local_keys(tmp_path / "other", environ=NO_KEYS)
    assert set(one.values()).isdisjoint(other.values())


def test_keys_set_in_the_environment_win(tmp_path: Path) -> None:
    stored = local_keys(tmp_path, environ=NO_KEYS)
    given = {"ERRANDS_CODE_KEY": "code-key-from-the-environment", "ERRANDS_DATA_KEY": "data-key-from-it"}

    assert local_keys(tmp_path, environ=given) == given
    only_code = {"ERRANDS_CODE_KEY": given["ERRANDS_CODE_KEY"]}
    assert local_keys(tmp_path, environ=only_code) == {
        "ERRANDS_CODE_KEY": given["ERRANDS_CODE_KEY"],
        "ERRANDS_DATA_KEY": stored["ERRANDS_DATA_KEY"],
    }
    assert json.loads((tmp_path / "keys.json").read_text()) == stored, "the kept keys stay as they were"


def test_a_damaged_keys_file_is_an_error_not_replaced(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    path.write_text('{"ERRANDS_CODE_KEY": "only one"}')

    with pytest.raises(ValueError, match="ERRANDS_DATA_KEY"):
        local_keys(tmp_path, environ=NO_KEYS)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="delete it to make new keys"):
        local_keys(tmp_path, environ=NO_KEYS)
    assert path.read_text() == "{not json"
