"""The simulated day's pure decisions: rhythm, proportions, placement, volunteers, determinism."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from errands.simulation import model
from services.dispatcher.domain.geo import vehicle_satisfies
from shared.geo import haversine_m
from shared.ningbo import District

CLOCK = model.SimClock(start_hour=0.0, compression=3600.0)  # one real second is one simulated hour


def districts() -> list[District]:
    return model.load_districts()


def test_a_run_takes_the_core_districts_first() -> None:
    ordered = districts()
    assert len(ordered) == 11
    assert [d.name for d in ordered[:3]] == ["Haishu", "Yinzhou", "Jiangbei"]


def test_meals_peak_at_lunch_time() -> None:
    lunch, mid_morning, afternoon = (
        model.kind_rate("meal", 12),
        model.kind_rate("meal", 9.5),
        model.kind_rate("meal", 15),
    )
    assert lunch > 3 * mid_morning
    assert lunch > 3 * afternoon
    assert model.kind_mix(12)["meal"] > 0.5
    assert model.kind_mix(9.5)["meal"] < 0.25


def test_nights_are_quiet_and_the_day_averages_one() -> None:
    assert model.demand(3) < 0.1 * model.demand(12)
    mean = sum(model.demand(h / 10) for h in range(240)) / 240
    assert mean == pytest.approx(1.0, rel=0.02)


def test_a_whole_day_of_arrivals_has_the_kinds_in_their_shares() -> None:
    arrivals = model.plan_arrivals(
        random.Random(1), clock=CLOCK, duration_s=24, tasks_per_minute=20_000, max_tasks=100_000
    )
    kinds = Counter(a.kind for a in arrivals)
    total = sum(kinds.values())
    for kind, share in model.KIND_SHARES.items():
        assert kinds[kind] / total == pytest.approx(share, abs=0.02)
    assert total == pytest.approx(20_000 * 24 / 60, rel=0.05), "the mean rate is the one asked for"


def test_the_lunch_hour_brings_more_tasks_than_mid_afternoon() -> None:
    arrivals = model.plan_arrivals(
        random.Random(2), clock=CLOCK, duration_s=24, tasks_per_minute=5_000, max_tasks=100_000
    )
    by_hour = Counter(int(a.hour) for a in arrivals)
    assert by_hour[11] + by_hour[12] > 1.3 * (by_hour[15] + by_hour[16])


def test_arrivals_stay_inside_the_run_and_the_cap() -> None:
    arrivals = model.plan_arrivals(
        random.Random(3), clock=CLOCK, duration_s=10, tasks_per_minute=6_000, max_tasks=50
    )
    assert len(arrivals) == 50
    assert all(0 <= a.at_s < 10 for a in arrivals)
    assert [a.at_s for a in arrivals] == sorted(a.at_s for a in arrivals)
    assert (
        model.plan_arrivals(random.Random(3), clock=CLOCK, duration_s=0, tasks_per_minute=1, max_tasks=5)
        == []
    )


def test_points_fall_within_the_district_spread() -> None:
    rng = random.Random(4)
    for district in districts():
        points = [model.place_in(rng, district) for _ in range(300)]
        distances = [haversine_m(district.lat, district.lon, lat, lon) / 1000 for lat, lon in points]
        assert max(distances) <= district.spread_km * 1.01
        assert sum(distances) / len(distances) < district.spread_km * 0.75, "gathered around the centre"


def test_tasks_are_realistic_for_their_kind() -> None:
    rng = random.Random(5)
    served = districts()[:3]
    plans = [
        model.plan_task(rng, kind=kind, hour=12, districts=served) for kind in model.KINDS for _ in range(200)
    ]
    supply = [p for p in plans if p.kind == "supply_run"]
    assert all(len(p.dropoffs) >= 3 and p.vehicle in ("car", "van") for p in supply)
    depots = {(lat, lon) for _, lat, lon in model.depots(served)}
    assert {(p.pickup["lat"], p.pickup["lon"]) for p in supply} <= depots, "supply runs start at a depot"
    errands = [p for p in plans if p.kind == "errand"]
    medicine = [p for p in errands if p.notes == "Medicine run"]
    assert medicine and all(
        p.priority in ("urgent", "critical") and p.dropoffs[0].vulnerable for p in medicine
    )
    assert any(p.priority == "critical" for p in medicine)
    dropoffs = [d for p in plans for d in p.dropoffs]
    assert {"en", "ko", "ja"} <= {d.language for d in dropoffs}
    assert any(d.no_contact for d in dropoffs)
    assert all(p.district in {d.name for d in served} for p in plans)
    body = supply[0].body()
    assert body["requirements"] == {"vehicle": supply[0].vehicle} and len(body["dropoffs"]) == len(
        supply[0].dropoffs
    )


def test_every_district_served_has_a_van_and_speakers_of_each_language() -> None:
    served = model.active_districts(districts(), 24)
    assert [d.name for d in served] == ["Haishu", "Yinzhou", "Jiangbei", "Zhenhai"]
    volunteers = model.plan_volunteers(random.Random(6), count=24, districts=served, start_hour=7)
    for district in served:
        theirs = [v for v in volunteers if v.district == district.name]
        assert any(v.vehicle == "van" for v in theirs)
        assert {"en", "ko", "ja"} <= {x for v in theirs for x in v.languages}
    assert all(v.shift_hours <= 4 and v.rest_hours >= 0.5 for v in volunteers), "shifts respect rest"


def test_a_shift_alternates_duty_and_rest() -> None:
    volunteer = model.plan_volunteers(random.Random(7), count=1, districts=districts()[:1], start_hour=7)[0]
    shift = model.Shift(volunteer)
    start = volunteer.shift_start_hour
    assert shift.on_duty_at(start + 0.01)
    assert not shift.on_duty_at(start + volunteer.shift_hours + 0.01)
    assert shift.on_duty_at(start + volunteer.shift_hours + volunteer.rest_hours + 0.01)
    assert shift.next_change(start) == pytest.approx(start + volunteer.shift_hours)


def test_duty_totals_count_rest_only_between_shifts() -> None:
    log = [(7.0, True), (10.0, False), (11.0, True), (14.0, False)]
    assert model.duty_totals(log, end_hour=15.0) == (6.0, 1.0)
    assert model.duty_totals(log, end_hour=12.0) == (4.0, 1.0), "nothing counts after the end"


def test_offer_answers_follow_the_probabilities_and_draining_accepts() -> None:
    rng = random.Random(8)
    behaviour = model.Behaviour(accept=0.7, decline=0.2)
    answers = Counter(model.answer_offer(rng, behaviour) for _ in range(10_000))
    assert answers["accept"] / 10_000 == pytest.approx(0.7, abs=0.02)
    assert answers["decline"] / 10_000 == pytest.approx(0.2, abs=0.02)
    assert answers["expire"] / 10_000 == pytest.approx(0.1, abs=0.02)
    assert model.answer_offer(rng, model.Behaviour(accept=0, decline=1), draining=True) == "accept"
    with pytest.raises(ValueError, match="accept"):
        model.Behaviour(accept=0.9, decline=0.2)


def test_one_seed_gives_one_day() -> None:
    def day(seed: int) -> tuple[list[model.Arrival], list[model.TaskPlan], list[model.VolunteerProfile]]:
        clock = model.SimClock(start_hour=7, compression=1000)
        arrivals = model.plan_arrivals(
            random.Random(f"{seed}:a"), clock=clock, duration_s=60, tasks_per_minute=30, max_tasks=1000
        )
        rng = random.Random(f"{seed}:t")
        plans = [model.plan_task(rng, kind=a.kind, hour=a.hour, districts=districts()[:2]) for a in arrivals]
        volunteers = model.plan_volunteers(
            random.Random(f"{seed}:v"), count=10, districts=districts()[:2], start_hour=7
        )
        return arrivals, plans, volunteers

    assert day(11) == day(11)
    assert day(11) != day(12)


def test_waypoints_end_at_the_destination() -> None:
    points = model.waypoints((29.0, 121.0), (29.1, 121.2), 4)
    assert len(points) == 4 and points[-1] == (29.1, 121.2)
    assert vehicle_satisfies("van", "car") and not vehicle_satisfies("bicycle", "car")


def test_percentile_interpolates() -> None:
    assert model.percentile([], 50) is None
    assert model.percentile([1, 2, 3, 4], 50) == 2.5
    assert model.percentile([5.0], 90) == 5.0


def test_a_door_photo_is_a_small_jpeg_the_dispatcher_accepts() -> None:
    from services.dispatcher.domain.photo import normalise

    data = model.door_photo(random.Random(3))
    stored = normalise(data, media_type="image/jpeg", max_side=1600, max_pixels=50_000_000)
    assert len(data) < 10_000 and (stored.width, stored.height) == (96, 128)


def test_problems_aboard_happen_as_often_as_at_pickups_unless_told_otherwise() -> None:
    assert model.Behaviour(problem=0.3).aboard_problem == 0.3
    assert model.Behaviour(problem=0.1, problem_aboard=0.8).aboard_problem == 0.8
    with pytest.raises(ValueError, match="problem_aboard"):
        model.Behaviour(problem_aboard=1.5)
