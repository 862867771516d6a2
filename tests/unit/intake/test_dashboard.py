"""Pure pieces of the ops dashboard: the Ningbo map frame, its projection, readable durations."""

from __future__ import annotations

import math

import pytest

from services.intake.domain.dashboard import NINGBO, MapFrame, format_duration
from shared.ningbo import DISTRICTS


def test_every_district_centre_is_drawn_inside_the_map() -> None:
    for district in DISTRICTS:
        where = NINGBO.project(district.lat, district.lon)
        assert where is not None, district.name
        x, y = where
        assert 0 <= x <= NINGBO.width and 0 <= y <= NINGBO.height


def test_north_is_up_and_east_is_right() -> None:
    cixi = NINGBO.project(30.17, 121.27)
    ninghai = NINGBO.project(29.29, 121.43)
    yuyao = NINGBO.project(30.04, 121.15)
    beilun = NINGBO.project(29.90, 121.85)
    assert cixi and ninghai and yuyao and beilun
    assert cixi[1] < ninghai[1], "Cixi (north) is drawn above Ninghai (south)"
    assert yuyao[0] < beilun[0], "Yuyao (west) is drawn left of Beilun (east)"


def test_a_kilometre_is_as_long_east_west_as_north_south() -> None:
    frame = MapFrame.around([(29.8, 121.5), (30.0, 121.7)], margin_km=5)
    origin = frame.project(29.9, 121.6)
    km_north = frame.project(29.9 + 1 / 111.32, 121.6)
    km_east = frame.project(29.9, 121.6 + 1 / (111.32 * math.cos(math.radians(29.9))))
    assert origin and km_north and km_east
    north = origin[1] - km_north[1]
    east = km_east[0] - origin[0]
    assert north == pytest.approx(frame.units_per_km, rel=0.05)
    assert east == pytest.approx(north, rel=0.05)


def test_a_place_outside_ningbo_is_not_drawn() -> None:
    assert NINGBO.project(-45.87, 170.50) is None
    assert NINGBO.project(31.23, 121.47) is None, "Shanghai is off this map"
    assert NINGBO.project(29.87, 121.55) is not None, "Ningbo's centre is on it"


def test_the_map_keeps_a_margin_around_the_outermost_districts() -> None:
    hangzhou_bay = next(d for d in DISTRICTS if d.name == "Hangzhou Bay New Area")
    _, y = NINGBO.project(hangzhou_bay.lat, hangzhou_bay.lon) or (0.0, 0.0)
    assert y >= 20 * NINGBO.units_per_km, "the northernmost centre is not drawn on the edge"


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (None, "—"),
        (float("nan"), "—"),
        (-3.0, "0 ms"),
        (0.0, "0 ms"),
        (0.8504, "850 ms"),
        (4.24, "4.2 s"),
        (9.96, "10.0 s"),
        (42.4, "42 s"),
        (59.6, "1 min 00 s"),
        (185, "3 min 05 s"),
        (3599.4, "59 min 59 s"),
        (3725, "1 h 02 min"),
        (90000, "25 h 00 min"),
    ],
)
def test_durations_read_at_a_glance(seconds: float | None, shown: str) -> None:
    assert format_duration(seconds) == shown
