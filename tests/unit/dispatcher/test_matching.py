"""Batch matching: optimal over candidates, never breaking a rule, supply runs kept together, routes."""

from __future__ import annotations

import math
import uuid
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.dispatcher.domain import eligibility as e
from services.dispatcher.domain import matching, routing
from services.dispatcher.domain import welfare as w
from services.dispatcher.domain.matching import (
    AcceptedRoute,
    Pool,
    courier,
    match_batch,
    route_leg,
    unit_sphere,
)

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def time_enough_to_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    """A round's routing is time-boxed (wall clock): on a busy machine it would leave routes out.
    These tests check what is planned and that it keeps the rules, so the box is opened wide."""
    monkeypatch.setattr(matching, "ROUTING_BUDGET_S", 10.0)
    monkeypatch.setattr(routing, "PLAN_BUDGET_S", 1.0)


ORGANISATION = uuid.UUID(int=1)
POLICY = e.Policy()
VEHICLES = ("foot", "bicycle", "ebike", "car", "van")


def volunteer(lat: float, lon: float, **changes: object) -> e.Volunteer:
    base = e.Volunteer(
        id=uuid.uuid4(),
        organisation_id=ORGANISATION,
        on_duty=True,
        insured=True,
        vehicle="ebike",
        capacity_kg=30.0,
        skills=frozenset(),
        languages=frozenset({"zh"}),
        max_active_legs=3,
        active_legs=0,
        live_offers=0,
        lat=lat,
        lon=lon,
        location_at=NOW,
        duty_started_at=NOW - timedelta(hours=1),
        rest_until=None,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def leg(lat: float, lon: float, **changes: object) -> e.Leg:
    base = e.Leg(
        id=uuid.uuid4(),
        task_id=uuid.uuid4(),
        organisation_id=ORGANISATION,
        priority="routine",
        pickup_lat=lat,
        pickup_lon=lon,
        vehicle=None,
        weight_kg=2.0,
        skills=frozenset(),
        languages=frozenset({"zh"}),
        vulnerable=False,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_a_pool_built_ahead_holds_the_available_only_and_matches_as_the_list_does() -> None:
    here = (29.87, 121.55)
    ready = [volunteer(here[0] + i * 0.001, here[1]) for i in range(3)]
    resting = volunteer(*here, rest_until=NOW + timedelta(minutes=5))
    stale = volunteer(*here, location_at=NOW - POLICY.location_max_age - timedelta(seconds=1))
    full = volunteer(*here, max_active_legs=1, live_offers=1)
    everyone = [resting, *ready, stale, full]
    pool = Pool(everyone, NOW, POLICY)
    assert [v.id for v in pool.volunteers] == [v.id for v in ready]
    legs = [leg(here[0] + 0.002, here[1]), leg(*here)]
    assert match_batch(legs, pool, NOW, POLICY) == match_batch(legs, everyone, NOW, POLICY)
    assert Pool([resting], NOW, POLICY).teams == {}
    assert match_batch(legs, Pool([resting], NOW, POLICY), NOW, POLICY) == []


def test_a_pool_given_the_points_indexes_each_volunteer_where_one_working_them_out_does() -> None:
    """The roster hands the pool its points row for row (`points`): those left out (resting, stale)
    must not shift anyone else's row, in either organisation's index."""
    here = (29.87, 121.55)
    other = uuid.UUID(int=2)
    everyone = [
        volunteer(here[0] + 0.01, here[1]),
        volunteer(*here, rest_until=NOW + timedelta(minutes=5)),
        volunteer(here[0], here[1] + 0.02, organisation_id=other),
        volunteer(*here, location_at=NOW - POLICY.location_max_age - timedelta(seconds=1)),
        volunteer(here[0] - 0.03, here[1]),
        volunteer(here[0], here[1] - 0.04, organisation_id=other),
    ]
    lat, lon = np.array([(v.lat, v.lon) for v in everyone]).T
    given = Pool(everyone, NOW, POLICY, points=unit_sphere(lat, lon))
    worked_out = Pool(everyone, NOW, POLICY)
    assert [v.id for v in given.volunteers] == [v.id for v in worked_out.volunteers]
    assert given.teams.keys() == worked_out.teams.keys() == {ORGANISATION, other}
    for organisation, team in given.teams.items():
        assert team.members == worked_out.teams[organisation].members
        np.testing.assert_array_equal(team.index.data, worked_out.teams[organisation].index.data)
    legs = [leg(*here), leg(here[0] - 0.02, here[1])]
    assert match_batch(legs, given, NOW, POLICY) == match_batch(legs, worked_out, NOW, POLICY)


def test_a_pool_that_remembers_who_was_available_takes_the_same_volunteers_as_one_that_asks_all() -> None:
    """Through the edges the rules move on with time alone: the shift cap, a stale location, the
    end of a rest, insurance ending at local midnight (16:00 UTC) and the day's duty cap."""
    here = (29.87, 121.55)
    cap = POLICY.welfare_limits.shift_max_on_duty
    start = datetime(2026, 12, 1, 15, 50, tzinfo=UTC)  # 23:50 in Shanghai
    today = e.local_day(start, POLICY.local_time_zone)
    everyone = [
        volunteer(*here, location_at=start),
        volunteer(*here, location_at=start, duty_started_at=start - cap + timedelta(minutes=3)),
        volunteer(*here, location_at=start - POLICY.location_max_age + timedelta(minutes=4)),
        volunteer(*here, location_at=start + timedelta(minutes=20), rest_until=start + timedelta(minutes=5)),
        volunteer(*here, location_at=start, insured_until=today),
        volunteer(
            *here,
            location_at=start,
            duty_started_at=start - timedelta(hours=1),
            duty=w.DutyRecord(
                duty_started_at=start - timedelta(hours=1),
                duty_day=today,
                duty_today=POLICY.welfare_limits.daily_max_on_duty - timedelta(hours=1, minutes=6),
            ),
        ),
        volunteer(*here, location_at=start, on_duty=False),
    ]
    until = [-math.inf] * len(everyone)  # as the roster keeps it
    seen, asked = [], []
    for minute in range(0, 16):
        now = start + timedelta(minutes=minute, seconds=30)
        remembering = Pool(everyone, now, POLICY, known=[u > now.timestamp() for u in until])
        asking = Pool(everyone, now, POLICY)
        assert [v.id for v in remembering.volunteers] == [v.id for v in asking.volunteers], minute
        for i, found in remembering.found_until.items():
            until[i] = found
        seen.append(len(asking.volunteers))
        asked.append(len(remembering.found_until))
    assert seen[0] == 5 and seen[-1] == 1  # every edge was crossed on the way
    assert asked[0] == len(everyone) and min(asked) == 2  # the two unavailable, and those whose time was up


def test_a_leg_goes_only_to_a_volunteer_of_its_own_organisation() -> None:
    other = uuid.UUID(int=2)
    here = (29.87, 121.55)
    # Another organisation's volunteers stand right at the pickup, more of them than the
    # candidates asked for; the leg's own organisation has one, about 1 km away.
    strangers = [volunteer(*here, organisation_id=other) for _ in range(10)]
    own = volunteer(here[0] + 0.009, here[1])
    errand = leg(*here)
    assert [
        (m.leg_id, m.volunteer_id) for m in match_batch([errand], [*strangers, own], NOW, POLICY, k=4)
    ] == [(errand.id, own.id)]
    assert match_batch([errand], strangers, NOW, POLICY) == []
    # Their own legs still reach them, in the same batch.
    theirs = leg(*here, organisation_id=other)
    offered = {
        m.leg_id: m.volunteer_id for m in match_batch([errand, theirs], [*strangers, own], NOW, POLICY)
    }
    assert offered[errand.id] == own.id
    assert offered[theirs.id] in {v.id for v in strangers}


def test_batch_beats_nearest_first_when_the_nearest_is_needed_elsewhere() -> None:
    # Leg A sits between both volunteers; leg B is only reachable by the one nearest to A.
    # Nearest-first gives A that volunteer and strands B; the batch serves both.
    a = leg(29.870, 121.550)
    b = leg(29.870, 121.530)
    near_both = volunteer(29.870, 121.545, vehicle="foot")
    other = volunteer(29.870, 121.565, vehicle="foot")
    matches = {m.leg_id: m.volunteer_id for m in match_batch([a, b], [near_both, other], NOW, POLICY)}
    assert matches == {a.id: other.id, b.id: near_both.id}


def test_critical_leg_wins_the_only_volunteer() -> None:
    routine = leg(29.870, 121.550)
    critical = leg(29.880, 121.560, priority="critical")
    only = volunteer(29.871, 121.551)
    assert [m.leg_id for m in match_batch([routine, critical], [only], NOW, POLICY)] == [critical.id]


def test_urgent_leg_wins_the_only_volunteer_over_a_nearer_routine_one() -> None:
    routine = leg(29.870, 121.550)
    urgent = leg(29.880, 121.560, priority="urgent")
    only = volunteer(29.871, 121.551)
    assert [m.leg_id for m in match_batch([routine, urgent], [only], NOW, POLICY)] == [urgent.id]


def test_vulnerable_recipient_wins_the_only_volunteer_among_legs_of_equal_priority() -> None:
    nearer = leg(29.870, 121.550, priority="urgent")
    vulnerable = leg(29.875, 121.555, priority="urgent", vulnerable=True)
    only = volunteer(29.871, 121.551)
    assert [m.leg_id for m in match_batch([nearer, vulnerable], [only], NOW, POLICY)] == [vulnerable.id]


def test_supply_run_legs_go_to_one_volunteer_who_can_carry_them_all() -> None:
    task = uuid.uuid4()
    legs = [leg(29.870, 121.550, task_id=task, kind="supply_run", weight_kg=8.0) for _ in range(3)]
    small = volunteer(29.8701, 121.5501, capacity_kg=10.0)  # nearest, but cannot carry 24 kg
    big = volunteer(29.875, 121.555, vehicle="car", capacity_kg=50.0)
    matches = match_batch(legs, [small, big], NOW, POLICY)
    assert {m.leg_id for m in matches} == {lg.id for lg in legs}
    assert {m.volunteer_id for m in matches} == {big.id}


def test_supply_run_legs_split_when_nobody_can_carry_them_all() -> None:
    task = uuid.uuid4()
    legs = [leg(29.870, 121.550, task_id=task, kind="supply_run", weight_kg=8.0) for _ in range(2)]
    a = volunteer(29.8701, 121.5501, capacity_kg=10.0)
    b = volunteer(29.8702, 121.5502, capacity_kg=10.0)
    matches = match_batch(legs, [a, b], NOW, POLICY)
    assert len(matches) == 2 and {m.volunteer_id for m in matches} == {a.id, b.id}


def test_an_urgent_supply_run_nobody_can_carry_whole_takes_a_volunteer_before_a_routine_leg() -> None:
    # Two urgent supply runs, and one carrier who can take either whole: one run goes to them. The
    # other's legs may still go one by one, and the van nearby with one slot free takes one of them,
    # not the routine leg next to it (a round takes urgent legs before routine ones).
    first, second = uuid.uuid4(), uuid.uuid4()
    runs = [
        leg(29.870, 121.550, task_id=task, kind="supply_run", priority="urgent", vehicle="car")
        for task in (first, first, second, second)
    ]
    routine = leg(29.8705, 121.5505)
    carrier = volunteer(29.875, 121.555, vehicle="car", capacity_kg=200.0, max_active_legs=8)
    van = volunteer(29.8702, 121.5502, vehicle="van", capacity_kg=200.0, max_active_legs=1)
    matches = match_batch([*runs, routine], [carrier, van], NOW, POLICY)
    given_to = {m.leg_id: m.volunteer_id for m in matches}
    assert routine.id not in given_to
    assert Counter(given_to.values()) == {carrier.id: 2, van.id: 1}


@pytest.mark.parametrize("plan", [False, True], ids=["supply-run", "routes"])
def test_a_critical_leg_is_not_left_waiting_for_a_volunteer_to_carry_two_urgent_ones(plan: bool) -> None:
    # One volunteer with two slots: the two urgent legs (one supply run, close pickups) would place
    # more legs, but a round takes critical legs first.
    critical = leg(29.8702, 121.5502, priority="critical")
    task = uuid.uuid4()
    urgent = [leg(29.870, 121.550, priority="urgent", kind="supply_run", task_id=task) for _ in "ab"]
    only = volunteer(29.870, 121.5505, max_active_legs=2)
    matches = match_batch([critical, *urgent], [only], NOW, POLICY, plan=plan)
    assert [m.leg_id for m in matches] == [critical.id]
    if plan:  # offered with a route of its own
        assert matches[0].route is not None and matches[0].route.leg_ids == (critical.id,)


def test_a_route_nobody_took_takes_back_a_van_its_leg_alone_could_have_from_a_routine_leg() -> None:
    # Planning routes, the carrier takes the three-leg run (more legs placed); the two-leg run's legs
    # were offered only as a route, so the van with one slot went to the routine leg nearby. One
    # urgent leg alone fits the van: it takes the van, the routine leg waits for the next round.
    two, three = uuid.uuid4(), uuid.uuid4()
    pair = [
        leg(29.870, 121.550, task_id=two, kind="supply_run", priority="urgent", vehicle="car") for _ in "ab"
    ]
    trio = [
        leg(29.880, 121.550, task_id=three, kind="supply_run", priority="urgent", vehicle="car")
        for _ in "abc"
    ]
    routine = leg(29.870, 121.5565)  # more than BUNDLE_PICKUP_M from the pair's pickup
    carrier = volunteer(29.877, 121.550, vehicle="car", capacity_kg=200.0, max_active_legs=3)
    van = volunteer(29.870, 121.553, vehicle="van", capacity_kg=200.0, max_active_legs=1)
    matches = match_batch([*pair, *trio, routine], [carrier, van], NOW, POLICY, plan=True)
    given_to = {m.leg_id: m for m in matches}
    assert {lg.id for lg in trio} <= given_to.keys() and routine.id not in given_to
    (taken,) = [given_to[lg.id] for lg in pair if lg.id in given_to]
    assert taken.volunteer_id == van.id
    # Offered with its own route, from where the van is.
    assert taken.route is not None and taken.route.leg_ids == (taken.leg_id,) and taken.route_id is None


def test_a_round_never_gives_a_lower_priority_leg_a_volunteer_a_waiting_higher_one_could_have() -> None:
    # Each critical leg can go only to the volunteer the urgent leg also wants, and so on down: the
    # highest priority wins each volunteer, however many lower legs that leaves waiting.
    critical = leg(29.870, 121.550, priority="critical")
    urgent = [leg(29.870, 121.551, priority="urgent"), leg(29.870, 121.5512, priority="urgent")]
    routine = [leg(29.870, 121.552 + i * 0.0002) for i in range(3)]
    near = volunteer(29.8701, 121.5511, vehicle="foot")
    other = volunteer(29.8701, 121.5521, vehicle="foot")
    matches = match_batch([*routine, *urgent, critical], [near, other], NOW, POLICY)
    priorities = {lg.id: lg.priority for lg in (critical, *urgent, *routine)}
    assert sorted(priorities[m.leg_id] for m in matches) == ["critical", "urgent"]


# --- property: whatever the snapshot, no produced assignment breaks a rule -------------------------

coords = st.tuples(st.floats(29.80, 29.95), st.floats(121.45, 121.65))
# Volunteers and tasks of several organisations side by side: a pairing across them breaks a rule.
ORGANISATIONS = (ORGANISATION, uuid.UUID(int=2), uuid.UUID(int=3))


@st.composite
def volunteers_st(draw: st.DrawFn) -> e.Volunteer:
    lat, lon = draw(coords)
    max_active = draw(st.integers(1, 3))
    active = draw(st.integers(0, max_active))
    return volunteer(
        lat,
        lon,
        organisation_id=draw(st.sampled_from(ORGANISATIONS)),
        on_duty=draw(st.booleans()),
        insured=draw(st.sampled_from([True, True, False])),
        vehicle=draw(st.sampled_from(VEHICLES)),
        capacity_kg=draw(st.sampled_from([5.0, 15.0, 60.0])),
        skills=frozenset(draw(st.sets(st.sampled_from(["first_aid", "lifting"])))),
        languages=frozenset(draw(st.sets(st.sampled_from(["zh", "en", "fr"]), min_size=1))),
        max_active_legs=max_active,
        active_legs=active,
        live_offers=draw(st.integers(0, max_active - active)),
        location_at=NOW - timedelta(minutes=draw(st.sampled_from([0, 5, 20]))),
        duty_started_at=NOW - timedelta(hours=draw(st.sampled_from([1, 3, 5]))),
        rest_until=draw(st.sampled_from([None, NOW + timedelta(minutes=10), NOW - timedelta(minutes=1)])),
    )


@st.composite
def legs_st(draw: st.DrawFn, tasks: list[tuple[uuid.UUID, uuid.UUID]]) -> e.Leg:
    lat, lon = draw(coords)
    task, organisation = draw(st.sampled_from(tasks))
    return leg(
        lat,
        lon,
        task_id=task,
        organisation_id=organisation,
        kind=draw(st.sampled_from(["errand", "supply_run"])),
        priority=draw(st.sampled_from(["routine", "urgent", "critical"])),
        vehicle=draw(st.sampled_from([None, *VEHICLES])),
        weight_kg=draw(st.sampled_from([1.0, 6.0, 20.0])),
        skills=frozenset(draw(st.sets(st.sampled_from(["first_aid", "lifting"]), max_size=1))),
        languages=frozenset(draw(st.sets(st.sampled_from(["zh", "en"]), min_size=1, max_size=1))),
        vulnerable=draw(st.booleans()),
        waiting_s=draw(st.sampled_from([0.0, 90.0, 400.0])),
    )


@st.composite
def snapshots(draw: st.DrawFn) -> tuple[list[e.Leg], list[e.Volunteer]]:
    vols = draw(st.lists(volunteers_st(), min_size=0, max_size=25))
    tasks = [(uuid.uuid4(), draw(st.sampled_from(ORGANISATIONS))) for _ in range(draw(st.integers(1, 6)))]
    legs = draw(st.lists(legs_st(tasks), min_size=0, max_size=25))
    # Some volunteers declined some legs.
    if vols and legs:
        for _ in range(draw(st.integers(0, 5))):
            li = draw(st.integers(0, len(legs) - 1))
            vi = draw(st.integers(0, len(vols) - 1))
            legs[li] = replace(legs[li], rejected_by=legs[li].rejected_by | {vols[vi].id})
    return legs, vols


@settings(max_examples=150, deadline=None)
@given(snapshots())
def test_no_assignment_the_matcher_produces_breaks_a_rule(
    snapshot: tuple[list[e.Leg], list[e.Volunteer]],
) -> None:
    legs, vols = snapshot
    by_leg = {lg.id: lg for lg in legs}
    by_volunteer = {v.id: v for v in vols}
    matches = match_batch(legs, vols, NOW, POLICY, k=4)
    assert len({m.leg_id for m in matches}) == len(matches), "a leg is offered at most once per batch"
    offered: Counter[uuid.UUID] = Counter()
    load: dict[uuid.UUID, float] = {}
    for m in matches:
        v = by_volunteer[m.volunteer_id]
        # Offers made earlier in this batch count against the volunteer's slots like live offers do.
        state = replace(v, live_offers=v.live_offers + offered[v.id])
        assert e.broken_rules(state, by_leg[m.leg_id], NOW, POLICY) == []
        offered[v.id] += 1
        load[v.id] = load.get(v.id, 0.0) + by_leg[m.leg_id].weight_kg
    for volunteer_id, count in offered.items():
        v = by_volunteer[volunteer_id]
        assert v.active_legs + v.live_offers + count <= v.max_active_legs
        if count > 1:  # only a supply run's legs are carried together, and they must fit at once
            assert load[volunteer_id] <= v.capacity_kg
            assert len({by_leg[m.leg_id].task_id for m in matches if m.volunteer_id == volunteer_id}) == 1


# --- routes: several legs to one volunteer, within every rule -------------------------------------


def test_ten_lunches_from_one_kitchen_go_to_one_volunteer_as_a_route() -> None:
    kitchen = (29.870, 121.550)
    lunches = [
        leg(
            *kitchen,
            weight_kg=0.5,
            dropoff_lat=29.870 + 0.003 * (i % 5),
            dropoff_lon=121.552 + 0.002 * (i // 5),
        )
        for i in range(10)
    ]
    riders = [volunteer(29.8705 + 0.001 * i, 121.5505, max_active_legs=10) for i in range(10)]
    matches = match_batch(lunches, riders, NOW, POLICY, plan=True)
    assert {m.leg_id for m in matches} == {lg.id for lg in lunches}
    assert len({m.volunteer_id for m in matches}) == 1
    route = matches[0].route
    assert route is not None and all(m.route is route for m in matches)
    assert set(route.leg_ids) == {lg.id for lg in lunches}
    (carrier,) = {m.volunteer_id for m in matches}
    v = next(r for r in riders if r.id == carrier)
    assert routing.broken_rule(courier(v, NOW, POLICY, max_legs=10), route.stops) is None


def test_one_leg_is_a_route_of_one_leg() -> None:
    errand = leg(29.870, 121.550, dropoff_lat=29.875, dropoff_lon=121.555)
    (m,) = match_batch([errand], [volunteer(29.871, 121.551)], NOW, POLICY, plan=True)
    assert m.route is not None and m.route_id is None
    assert [(s.leg_id, s.kind) for s in m.route.stops] == [(errand.id, "pickup"), (errand.id, "dropoff")]


def test_a_volunteer_near_the_end_of_their_shift_gets_no_leg_that_runs_past_it() -> None:
    errand = leg(29.870, 121.550, dropoff_lat=29.95, dropoff_lon=121.65)  # over 10 km
    tired = volunteer(29.871, 121.551, duty_started_at=NOW - timedelta(hours=3, minutes=55))
    assert match_batch([errand], [tired], NOW, POLICY, plan=True) == []
    assert len(match_batch([errand], [replace(tired, duty_started_at=NOW)], NOW, POLICY, plan=True)) == 1


def test_a_leg_is_inserted_into_an_accepted_route_only_where_no_accepted_stop_misses_its_window() -> None:
    busy = volunteer(29.870, 121.550, active_legs=1)
    accepted_leg = leg(29.870, 121.550, dropoff_lat=29.880, dropoff_lon=121.550)
    accepted = routing.plan_route(
        courier(busy, NOW, POLICY, max_legs=3),
        [
            replace(
                route_leg(accepted_leg),
                dropoff=replace(route_leg(accepted_leg).dropoff, latest_s=NOW.timestamp() + 900),
            )
        ],
    )
    assert accepted is not None
    routes = {busy.id: AcceptedRoute(uuid.uuid4(), accepted.stops)}
    on_the_way = leg(29.872, 121.550, dropoff_lat=29.878, dropoff_lon=121.550)
    (m,) = match_batch([on_the_way], [busy], NOW, POLICY, plan=True, routes=routes)
    assert m.route_id == routes[busy.id].id and m.route is not None
    assert set(m.route.leg_ids) == {accepted_leg.id, on_the_way.id}
    assert [s for s in m.route.stops if s.leg_id == accepted_leg.id] == list(accepted.stops)
    # The other way, and due soon: before the accepted drop-off it makes that late, after it is late itself.
    away = leg(29.860, 121.550, dropoff_lat=29.850, dropoff_lon=121.550, due_s=NOW.timestamp() + 1000)
    assert match_batch([away], [busy], NOW, POLICY, plan=True, routes=routes) == []


def test_a_route_under_way_near_the_kitchen_takes_the_batchs_legs_together() -> None:
    kitchen = (29.870, 121.550)
    # Riding to the kitchen for a lunch due north; two more lunches north come out of the kitchen.
    busy = volunteer(29.8702, 121.5502, max_active_legs=4, active_legs=1)
    held = leg(*kitchen, dropoff_lat=29.880, dropoff_lon=121.550, due_s=NOW.timestamp() + 2700)
    accepted = routing.plan_route(courier(busy, NOW, POLICY, max_legs=4), [route_leg(held)])
    assert accepted is not None
    routes = {busy.id: AcceptedRoute(uuid.uuid4(), accepted.stops)}
    lunches = [
        leg(*kitchen, dropoff_lat=29.877, dropoff_lon=121.5505, due_s=NOW.timestamp() + 2700),
        leg(*kitchen, dropoff_lat=29.882, dropoff_lon=121.5495, due_s=NOW.timestamp() + 2700),
    ]
    far = volunteer(29.850, 121.530)  # free, but 3 km away
    matches = match_batch(lunches, [busy, far], NOW, POLICY, plan=True, routes=routes)
    assert {m.leg_id for m in matches} == {lg.id for lg in lunches}
    assert {m.volunteer_id for m in matches} == {busy.id}
    assert {m.route_id for m in matches} == {routes[busy.id].id}
    route = matches[0].route
    assert route is not None and all(m.route is route for m in matches)
    assert set(route.leg_ids) == {held.id, *(lg.id for lg in lunches)}
    assert [s for s in route.stops if s.leg_id == held.id] == list(accepted.stops)
    assert routing.broken_rule(courier(busy, NOW, POLICY, max_legs=4), route.stops) is None


@settings(max_examples=150, deadline=None)
@given(
    snapshots(), st.lists(st.tuples(st.floats(-0.02, 0.02), st.floats(-0.02, 0.02)), min_size=25, max_size=25)
)
def test_no_route_the_matcher_offers_breaks_a_rule(
    snapshot: tuple[list[e.Leg], list[e.Volunteer]], offsets: list[tuple[float, float]]
) -> None:
    legs, vols = snapshot
    legs = [
        replace(lg, dropoff_lat=lg.pickup_lat + d_lat, dropoff_lon=lg.pickup_lon + d_lon)
        for lg, (d_lat, d_lon) in zip(legs, offsets, strict=False)
    ]
    by_leg = {lg.id: lg for lg in legs}
    by_volunteer = {v.id: v for v in vols}
    matches = match_batch(legs, vols, NOW, POLICY, k=4, plan=True)
    assert len({m.leg_id for m in matches}) == len(matches), "a leg is offered at most once per batch"
    by_carrier: dict[uuid.UUID, list[uuid.UUID]] = {}
    for m in matches:
        v = by_volunteer[m.volunteer_id]
        assert e.suits(v, by_leg[m.leg_id], NOW, POLICY) and e.is_available(v, NOW, POLICY)
        by_carrier.setdefault(v.id, []).append(m.leg_id)
    for volunteer_id, leg_ids in by_carrier.items():
        v = by_volunteer[volunteer_id]
        routes = {id(m.route) for m in matches if m.volunteer_id == volunteer_id}
        assert len(routes) == 1, "one route per volunteer per round"
        route = next(m.route for m in matches if m.volunteer_id == volunteer_id)
        assert route is not None and set(route.leg_ids) == set(leg_ids)
        assert v.active_legs + v.live_offers + len(leg_ids) <= v.max_active_legs
        if len(leg_ids) > 1:
            assert routing.broken_rule(courier(v, NOW, POLICY, max_legs=len(leg_ids)), route.stops) is None


@st.composite
def kitchens_st(draw: st.DrawFn) -> tuple[list[e.Leg], list[e.Volunteer], dict[uuid.UUID, AcceptedRoute]]:
    """Lunches from a few kitchens close together, volunteers around them, some carrying a route."""
    base = (29.87, 121.55)
    kitchens = [
        (base[0] + draw(st.floats(-0.004, 0.004)), base[1] + draw(st.floats(-0.004, 0.004)))
        for _ in range(draw(st.integers(1, 3)))
    ]
    legs = []
    for _ in range(draw(st.integers(1, 14))):
        k = draw(st.sampled_from(kitchens))
        due = draw(st.one_of(st.just(math.inf), st.integers(15, 120).map(lambda m: NOW.timestamp() + 60 * m)))
        legs.append(
            leg(
                k[0],
                k[1],
                priority=draw(st.sampled_from(["routine", "routine", "urgent", "critical"])),
                weight_kg=draw(st.sampled_from([0.5, 2.0, 8.0])),
                dropoff_lat=k[0] + draw(st.floats(-0.02, 0.02)),
                dropoff_lon=k[1] + draw(st.floats(-0.02, 0.02)),
                due_s=due,
            )
        )
    vols, routes = [], {}
    for _ in range(draw(st.integers(1, 8))):
        max_active = draw(st.integers(1, 6))
        active = draw(st.integers(0, min(2, max_active)))
        lat, lon = base[0] + draw(st.floats(-0.01, 0.01)), base[1] + draw(st.floats(-0.01, 0.01))
        v = volunteer(
            lat,
            lon,
            vehicle=draw(st.sampled_from(VEHICLES)),
            capacity_kg=draw(st.sampled_from([5.0, 15.0, 40.0])),
            max_active_legs=max_active,
            active_legs=active,
            duty_started_at=NOW - timedelta(minutes=draw(st.sampled_from([10, 120, 225, 235]))),
        )
        vols.append(v)
        if active and draw(st.booleans()):
            due = NOW.timestamp() + 60 * draw(st.integers(10, 90))
            held = route_leg(leg(lat + 0.002, lon, dropoff_lat=lat + 0.01, dropoff_lon=lon, due_s=due))
            routes[v.id] = AcceptedRoute(uuid.uuid4(), (held.pickup, held.dropoff))
    return legs, vols, routes


@settings(max_examples=200, deadline=None)
@given(kitchens_st())
def test_no_route_or_insertion_the_matcher_offers_breaks_a_rule(
    case: tuple[list[e.Leg], list[e.Volunteer], dict[uuid.UUID, AcceptedRoute]],
) -> None:
    legs, vols, routes = case
    by_leg = {lg.id: lg for lg in legs}
    by_volunteer = {v.id: v for v in vols}
    matches = match_batch(legs, vols, NOW, POLICY, k=4, plan=True, routes=routes)
    assert len({m.leg_id for m in matches}) == len(matches), "a leg is offered at most once per batch"
    by_carrier: dict[uuid.UUID, list[uuid.UUID]] = {}
    for m in matches:
        v = by_volunteer[m.volunteer_id]
        assert e.suits(v, by_leg[m.leg_id], NOW, POLICY) and e.is_available(v, NOW, POLICY)
        by_carrier.setdefault(v.id, []).append(m.leg_id)
    for volunteer_id, leg_ids in by_carrier.items():
        v = by_volunteer[volunteer_id]
        (route,) = {id(m.route): m.route for m in matches if m.volunteer_id == volunteer_id}.values()
        (route_id,) = {m.route_id for m in matches if m.volunteer_id == volunteer_id}
        assert route is not None
        assert v.active_legs + v.live_offers + len(leg_ids) <= v.max_active_legs
        accepted = routes.get(volunteer_id)
        if accepted is None:
            assert route_id is None and set(route.leg_ids) == set(leg_ids)
            if len(leg_ids) > 1:  # a route keeps every rule
                assert (
                    routing.broken_rule(courier(v, NOW, POLICY, max_legs=len(leg_ids)), route.stops) is None
                )
            else:  # a lone leg keeps to the end of the shift (its deadline is not the volunteer's to keep)
                assert route.end_s <= courier(v, NOW, POLICY, max_legs=1).shift_end_s + 1e-6
        else:  # one leg or several inserted, the accepted stops kept in their order
            assert route_id == accepted.id
            assert set(route.leg_ids) == {s.leg_id for s in accepted.stops} | set(leg_ids)
            assert [s for s in route.stops if s.leg_id not in leg_ids] == list(accepted.stops)
            held = len({s.leg_id for s in accepted.stops})
            c = courier(v, NOW, POLICY, max_legs=held + e.free_slots(v))
            assert routing.broken_rule(c, route.stops) is None
