"""The planner of legs posted ahead (`planning.plan_ahead`): trips offered when it is time to set off,
batches of one kitchen carried together, accepted routes kept, and no rule broken."""

from __future__ import annotations

import math
import uuid
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from services.dispatcher.domain import eligibility as e
from services.dispatcher.domain import routing
from services.dispatcher.domain.geo import haversine_m, travel_time_s
from services.dispatcher.domain.matching import AcceptedRoute, Pool, courier, route_leg
from services.dispatcher.domain.planning import SET_OFF_WITHIN_S, plan_ahead

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
ORGANISATION = uuid.UUID(int=1)
OTHER = uuid.UUID(int=2)
POLICY = e.Policy()
KITCHEN = (29.87, 121.55)
WINDOW = timedelta(minutes=45)


def east(km: float, origin: tuple[float, float] = KITCHEN) -> tuple[float, float]:
    return origin[0], origin[1] + km / (111.0 * math.cos(math.radians(origin[0])))


def volunteer(place: tuple[float, float], **changes: object) -> e.Volunteer:
    base = e.Volunteer(
        id=uuid.uuid4(),
        organisation_id=ORGANISATION,
        on_duty=True,
        insured=True,
        vehicle="ebike",
        capacity_kg=20.0,
        skills=frozenset(),
        languages=frozenset({"zh"}),
        max_active_legs=6,
        active_legs=0,
        live_offers=0,
        lat=place[0],
        lon=place[1],
        location_at=NOW,
        duty_started_at=NOW - timedelta(minutes=30),
        rest_until=None,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def lunch(ready: datetime, dropoff: tuple[float, float], **changes: object) -> e.Leg:
    """A lunch from the kitchen, ready at `ready`, delivered within the window."""
    base = e.Leg(
        id=uuid.uuid4(),
        task_id=uuid.uuid4(),
        organisation_id=ORGANISATION,
        priority="routine",
        pickup_lat=KITCHEN[0],
        pickup_lon=KITCHEN[1],
        vehicle=None,
        weight_kg=0.6,
        skills=frozenset(),
        languages=frozenset({"zh"}),
        vulnerable=False,
        dropoff_lat=dropoff[0],
        dropoff_lon=dropoff[1],
        ready_s=ready.timestamp(),
        due_s=(ready + WINDOW).timestamp(),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def plan(
    legs: list[e.Leg],
    volunteers: list[e.Volunteer],
    now: datetime = NOW,
    routes: dict[uuid.UUID, AcceptedRoute] | None = None,
    **kw: float,
) -> list:  # type: ignore[type-arg]
    """The planner at `now`, everyone's location fresh then."""
    fresh = [replace(v, location_at=now) for v in volunteers]
    return plan_ahead(legs, Pool(fresh, now, POLICY), now, POLICY, routes or {}, **kw)  # type: ignore[arg-type]


def test_a_trip_is_offered_once_it_is_time_to_set_off_and_picks_up_when_ready() -> None:
    ready = NOW + timedelta(minutes=30)
    legs = [lunch(ready, east(2.0))]
    rider = volunteer(east(-2.0))
    assert plan(legs, [rider]) == []  # known half an hour ahead: nobody sets off yet
    ride_s = travel_time_s(haversine_m(*east(-2.0), *KITCHEN), "ebike")
    set_off = ready - timedelta(seconds=ride_s)
    assert plan(legs, [rider], set_off - timedelta(seconds=2 * SET_OFF_WITHIN_S)) == []
    (match,) = plan(legs, [rider], set_off)
    assert match.volunteer_id == rider.id and match.route_id is None
    pickup, dropoff = match.route.stops
    assert (pickup.kind, dropoff.kind) == ("pickup", "dropoff")
    assert match.route.etas[0] >= ready.timestamp()
    assert match.route.etas[1] <= legs[0].due_s


def test_two_batches_of_one_kitchen_posted_ahead_go_in_one_trip() -> None:
    first, second = NOW + timedelta(minutes=20), NOW + timedelta(minutes=30)
    legs = [
        lunch(first, east(2.0)),
        lunch(first, east(2.4)),
        lunch(second, east(2.2)),
        lunch(second, east(2.8)),
    ]
    rider = volunteer(east(-1.0))
    at = NOW
    while not (matches := plan(legs, [rider], at)):
        at += timedelta(seconds=SET_OFF_WITHIN_S)
        assert at < second, "offered by the time the second batch is ready"
    assert {m.leg_id for m in matches} == {leg.id for leg in legs}
    (route,) = {id(m.route): m.route for m in matches}.values()
    assert routing.broken_rule(courier(rider, at, POLICY, max_legs=6), route.stops) is None
    # Every lunch picked up before any is dropped off: one ride out, not two.
    kinds = [stop.kind for stop in route.stops]
    assert kinds == ["pickup"] * 4 + ["dropoff"] * 4


def test_a_volunteer_carrying_a_route_is_planned_from_its_end() -> None:
    ready = NOW + timedelta(minutes=20)
    near_end = east(0.3)
    held = lunch(NOW - timedelta(minutes=5), near_end)
    accepted = AcceptedRoute(uuid.uuid4(), (route_leg(held).dropoff,))
    carrying = volunteer(KITCHEN, active_legs=1)
    farther = volunteer(east(-3.0))
    legs = [lunch(ready, east(1.0))]
    routes = {carrying.id: accepted}
    # When the farther volunteer would have to set off, the lunch is kept for the one whose route
    # ends near the kitchen, and nobody is offered it while that route is under way.
    ride_s = travel_time_s(haversine_m(*east(-3.0), *KITCHEN), "ebike")
    assert plan(legs, [carrying, farther], ready - timedelta(seconds=ride_s), routes) == []
    # Through their route, they are offered it when it is time to set off from its end.
    done = replace(carrying, lat=near_end[0], lon=near_end[1], active_legs=0)
    at = ready - timedelta(seconds=ride_s)
    while not (matches := plan(legs, [done, farther], at)):
        at += timedelta(seconds=SET_OFF_WITHIN_S)
        assert at < ready
    assert [m.volunteer_id for m in matches] == [carrying.id]


def test_a_trip_after_an_accepted_route_is_offered_as_part_of_it() -> None:
    ready = NOW + timedelta(minutes=3)
    held = lunch(NOW - timedelta(minutes=5), KITCHEN)  # its drop-off is at the kitchen itself
    accepted = AcceptedRoute(uuid.uuid4(), (replace(route_leg(held).dropoff, service_s=0.0),))
    rider = volunteer(KITCHEN, active_legs=1)
    legs = [lunch(ready, east(1.5))]
    (match,) = plan(legs, [rider], routes={rider.id: accepted}, set_off_within_s=600)
    assert match.route_id == accepted.id
    assert match.route.stops[0] == accepted.stops[0]  # the accepted stop first, as it was
    assert [s.leg_id for s in match.route.stops[1:]] == [legs[0].id, legs[0].id]


def test_a_leg_goes_only_to_a_volunteer_of_its_own_organisation_who_suits_it() -> None:
    ready = NOW + timedelta(minutes=5)
    legs = [lunch(ready, east(1.0), languages=frozenset({"en"}))]
    others = volunteer(KITCHEN, organisation_id=OTHER, languages=frozenset({"en"}))
    no_english = volunteer(KITCHEN)
    far_but_suits = volunteer(east(-1.0), languages=frozenset({"en", "zh"}))
    matches = plan(legs, [others, no_english, far_but_suits], set_off_within_s=3600)
    assert [m.volunteer_id for m in matches] == [far_but_suits.id]


# --- no plan breaks a rule ----------------------------------------------------------------------

VEHICLES = ("foot", "bicycle", "ebike", "car")


@st.composite
def snapshots(draw: st.DrawFn) -> tuple[list[e.Leg], list[e.Volunteer]]:
    def place() -> tuple[float, float]:
        return east(draw(st.floats(-3.0, 3.0)), (KITCHEN[0] + draw(st.floats(-0.02, 0.02)), KITCHEN[1]))

    volunteers = []
    for _ in range(draw(st.integers(0, 8))):
        most = draw(st.integers(1, 4))
        active = draw(st.integers(0, most))
        volunteers.append(
            volunteer(
                place(),
                organisation_id=draw(st.sampled_from([ORGANISATION, OTHER])),
                vehicle=draw(st.sampled_from(VEHICLES)),
                capacity_kg=draw(st.sampled_from([2.0, 8.0, 20.0])),
                languages=frozenset(draw(st.sets(st.sampled_from(["zh", "en"]), min_size=1))),
                max_active_legs=most,
                active_legs=active,
                live_offers=draw(st.integers(0, most - active)),
                duty_started_at=NOW - timedelta(minutes=draw(st.sampled_from([10, 200, 235]))),
            )
        )
    legs = [
        lunch(
            NOW + timedelta(minutes=draw(st.integers(-10, 60))),
            place(),
            organisation_id=draw(st.sampled_from([ORGANISATION, OTHER])),
            weight_kg=draw(st.sampled_from([0.6, 3.0, 9.0])),
            vehicle=draw(st.sampled_from([None, "ebike", "car"])),
            languages=frozenset({draw(st.sampled_from(["zh", "en"]))}),
            # Most within the window; some due any minute, some overdue.
            due_s=NOW.timestamp() + 60 * draw(st.sampled_from([75, 90, 110, 5, 1, -5])),
        )
        for _ in range(draw(st.integers(0, 12)))
    ]
    return legs, volunteers


@settings(max_examples=60, deadline=None)
@given(snapshots())
def test_no_trip_the_planner_offers_breaks_a_rule(snapshot: tuple[list[e.Leg], list[e.Volunteer]]) -> None:
    legs, volunteers = snapshot
    by_leg = {leg.id: leg for leg in legs}
    by_volunteer = {v.id: v for v in volunteers}
    # Every planned trip offered now, however far ahead: what the planner would offer at some point.
    matches = plan(legs, volunteers, set_off_within_s=24 * 3600, timeout_s=5.0)
    assert len({m.leg_id for m in matches}) == len(matches), "a leg is offered at most once"
    per_volunteer = Counter(m.volunteer_id for m in matches)
    for m in matches:
        v, leg = by_volunteer[m.volunteer_id], by_leg[m.leg_id]
        assert e.broken_rules(v, leg, NOW, POLICY) == []  # organisation, vehicle, languages, welfare
        assert per_volunteer[v.id] <= e.free_slots(v)
        assert m.route is not None and all(
            other.route is m.route for other in matches if other.volunteer_id == v.id
        )
        assert (
            routing.broken_rule(courier(v, NOW, POLICY, max_legs=per_volunteer[v.id]), m.route.stops) is None
        )
        etas = dict(zip(((s.leg_id, s.kind) for s in m.route.stops), m.route.etas, strict=True))
        assert etas[(leg.id, "pickup")] >= leg.ready_s
        assert etas[(leg.id, "dropoff")] <= leg.due_s
