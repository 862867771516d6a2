"""The time zone whose midnight ends the volunteers' day: a real one, or the settings refuse to load."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared.settings import Settings


def test_the_local_day_defaults_to_shanghai_and_takes_any_iana_zone() -> None:
    assert Settings().local_time_zone == "Asia/Shanghai"
    assert Settings.model_validate({"local_time_zone": "Europe/Berlin"}).local_time_zone == "Europe/Berlin"


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "../etc/passwd", ""])
def test_an_unknown_time_zone_is_refused_at_start(zone: str) -> None:
    with pytest.raises(ValidationError, match="LOCAL_TIME_ZONE"):
        Settings.model_validate({"local_time_zone": zone})
