"""Zone partitioning and border overlap for the geography-partitioned dispatch simulation (bench.zones)."""

from __future__ import annotations

import dataclasses
import uuid
from collections import Counter

from bench.dispatch_quality import NOW, POLICY, make_snapshot
from bench.zones import (
    KM_PER_DEG_LAT,
    KM_PER_DEG_LON,
    ORIGIN_LAT,
    ORIGIN_LON,
    DistrictZones,
    GridZones,
    OneZone,
    partition,
    resolve_conflicts,
    to_km,
    visible_zones,
    zoned_assignment,
)
from services.dispatcher.domain.matching import Match, match_batch


def at_km(east: float, north: float) -> tuple[float, float]:
    """(lat, lon) of a point `east`, `north` km from the projection's origin."""
    return ORIGIN_LAT + north / KM_PER_DEG_LAT, ORIGIN_LON + east / KM_PER_DEG_LON


def test_projection_puts_the_origin_at_zero_and_a_degree_north_at_111_km() -> None:
    assert to_km(ORIGIN_LAT, ORIGIN_LON) == (0.0, 0.0)
    east, north = to_km(ORIGIN_LAT + 1, ORIGIN_LON)
    assert (round(east, 6), round(north, 6)) == (0.0, 111.0)


def test_grid_cell_is_the_square_the_point_stands_in() -> None:
    grid = GridZones(10.0)
    assert grid.home(*at_km(5, 5)) == "0,0"
    assert grid.home(*at_km(-0.5, 12)) == "-1,1"


def test_volunteer_near_a_grid_border_is_visible_to_both_cells_only_within_the_overlap() -> None:
    grid = GridZones(10.0)
    near_east_edge = at_km(9.0, 5.0)  # 1 km from cell 1,0
    assert visible_zones(grid, *near_east_edge, overlap_km=0.0) == {"0,0"}
    assert visible_zones(grid, *near_east_edge, overlap_km=0.5) == {"0,0"}
    assert visible_zones(grid, *near_east_edge, overlap_km=1.5) == {"0,0", "1,0"}


def test_volunteer_near_a_grid_corner_is_visible_to_the_diagonal_cell_by_euclidean_distance() -> None:
    grid = GridZones(10.0)
    corner = at_km(9.0, 9.0)  # 1 km from two edges, sqrt(2) km from the diagonal cell
    assert visible_zones(grid, *corner, overlap_km=1.2) == {"0,0", "1,0", "0,1"}
    assert visible_zones(grid, *corner, overlap_km=1.5) == {"0,0", "1,0", "0,1", "1,1"}


def test_district_zone_is_the_nearest_centre_and_the_midpoint_is_on_the_border() -> None:
    zones = DistrictZones(centres=(("West", *at_km(-10, 0)), ("East", *at_km(10, 0))))
    assert zones.home(*at_km(-3, 4)) == "West"
    assert zones.home(*at_km(2, -4)) == "East"
    assert round(zones.neighbours(*at_km(-3, 0))["East"], 6) == 3.0
    assert visible_zones(zones, *at_km(-3, 0), overlap_km=2.0) == {"West"}
    assert visible_zones(zones, *at_km(-3, 0), overlap_km=3.5) == {"West", "East"}


def test_partition_puts_each_leg_in_one_zone_and_border_volunteers_in_every_zone_that_sees_them() -> None:
    snapshot = make_snapshot(200, 2, seed=7)
    grid = GridZones(10.0)
    plain = partition(snapshot.legs, snapshot.volunteers, grid)
    overlapped = partition(snapshot.legs, snapshot.volunteers, grid, overlap_km=2.0)
    for zones in (plain, overlapped):
        legs = Counter(leg.id for zone in zones.values() for leg in zone.legs)
        assert set(legs.values()) == {1} and len(legs) == len(snapshot.legs)
    assert sum(len(z.volunteers) for z in plain.values()) == len(snapshot.volunteers)
    seen = Counter(v.id for zone in overlapped.values() for v in zone.volunteers)
    assert len(seen) == len(snapshot.volunteers) and max(seen.values()) > 1
    for zone_name, zone in overlapped.items():
        for volunteer in zone.volunteers:
            assert volunteer.lat is not None and volunteer.lon is not None
            assert zone_name in visible_zones(grid, volunteer.lat, volunteer.lon, 2.0)


def test_conflicting_claims_on_one_volunteer_go_to_the_cheapest_and_the_other_leg_waits() -> None:
    shared, other = uuid.uuid4(), uuid.uuid4()
    cheap = Match(uuid.uuid4(), shared, 100.0, 50.0)
    dear = Match(uuid.uuid4(), shared, 900.0, 400.0)
    alone = Match(uuid.uuid4(), other, 500.0, 300.0)
    winners, lost = resolve_conflicts([dear, alone, cheap])
    assert sorted(winners, key=lambda m: m.cost) == [cheap, alone] and lost == 1


def test_zoned_dispatch_with_overlap_never_gives_a_volunteer_two_legs() -> None:
    snapshot = make_snapshot(300, 1, seed=11)
    outcome = zoned_assignment(snapshot, GridZones(5.0), overlap_km=3.0)
    assert outcome.conflicts > 0, "the overlap must actually produce contested volunteers here"
    volunteers = Counter(outcome.assignment.values())
    assert volunteers and max(volunteers.values()) == 1
    assert outcome.first_window_placed <= len(outcome.assignment) <= len(snapshot.legs)


def test_one_zone_is_the_global_batch() -> None:
    snapshot = make_snapshot(150, 2, seed=5)
    global_batch = {
        m.leg_id: m.volunteer_id for m in match_batch(snapshot.legs, snapshot.volunteers, NOW, POLICY)
    }
    outcome = zoned_assignment(snapshot, OneZone())
    assert outcome.zones == 1 and outcome.conflicts == 0
    assert {k: outcome.assignment[k] for k in global_batch} == global_batch


def test_a_volunteer_standing_in_another_zone_is_out_of_reach_without_overlap() -> None:
    snapshot = make_snapshot(1, 1, seed=3)
    leg_place, volunteer_place = at_km(9.5, 5.0), at_km(10.5, 5.0)  # 1 km apart, across a border
    leg = dataclasses.replace(
        snapshot.legs[0], pickup_lat=leg_place[0], pickup_lon=leg_place[1], vehicle=None
    )
    volunteer = dataclasses.replace(
        snapshot.volunteers[0], lat=volunteer_place[0], lon=volunteer_place[1], vehicle="car", capacity_kg=200
    )
    leg = dataclasses.replace(leg, weight_kg=1.0, languages=frozenset({"zh"}))
    volunteer = dataclasses.replace(volunteer, languages=frozenset({"zh"}))
    alone = dataclasses.replace(snapshot, legs=[leg], volunteers=[volunteer])
    assert zoned_assignment(alone, GridZones(10.0)).assignment == {}
    assert zoned_assignment(alone, GridZones(10.0), overlap_km=1.0).assignment == {leg.id: volunteer.id}


def test_home_first_overlap_places_at_least_what_plain_zones_place_in_the_first_window() -> None:
    snapshot = make_snapshot(300, 1, seed=13)
    plain = zoned_assignment(snapshot, GridZones(5.0))
    home_first = zoned_assignment(snapshot, GridZones(5.0), overlap_km=2.0, home_first=True)
    assert home_first.first_window_placed > plain.first_window_placed
    assert max(Counter(home_first.assignment.values()).values()) == 1
