"""Batch matching: optimal over candidates, never breaking a rule, supply runs kept together."""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from services.dispatcher.domain import eligibility as e
from services.dispatcher.domain.matching import Pool, match_batch

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
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
