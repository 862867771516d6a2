"""Routes: a day of meals and a supply run, one leg at a time and with routes, against VROOM's plan.

A day of meals (offline discrete-event simulation, seeded, no services):

- Three kitchens, in Haishu, Jiangbei and Yinzhou (`shared.ningbo` centre points), cook about 300
  meals a day: breakfast 07:00-08:30, a lunch peak 11:00-12:30 (60 % of the meals) and dinner
  17:00-18:30. Each kitchen hands over a batch every ten minutes of a service. A meal goes either
  to an elderly person's home (one meal, one leg) or, in a box of 4-10, to a front-line post of the
  kitchen's district (eight posts each). Every leg must be delivered within `MEAL_WINDOW_S` of its
  batch being ready.
- 60 volunteers, 60 % on bicycles and the rest on scooters (`ebike`), live around the three
  centres (weighted by population) and work one four-hour shift each (the welfare rules' cap):
  a quarter at breakfast (from 06:45), half at lunch (from 10:30), a quarter at dinner (from
  16:15). That is about the team with which one leg at a time keeps the p90 within the window.
- A leg becomes known to the online matchers when its batch is ready, unless the kitchens post
  their meals `AHEAD_S` before they are ready (as the dispatcher's `pickup.ready_at` lets them).
  Every `ROUND_S` a round looks at the legs known and the volunteers on shift:
  one-leg: the production `match_batch`, one leg per volunteer who has nothing to do (today);
  routes:  the route matcher, which may give a volunteer several legs as a route and add legs to
           a route already under way (`match_batch(..., plan=True)`, `route_round`);
  ahead:   the meals posted ahead: the dispatcher's planner (`planning.plan_ahead`, `ahead_round`)
           plans every leg known and not yet given out, and gives a volunteer their planned trip
           when it is time to set off; the route matcher takes what is still waiting later;
  vroom:   VROOM's plan of the whole day, every order known in advance (`planning.solve`).
  A volunteer rides from stop to stop at their vehicle's speed (`travel_time_s`, streets' detour
  included), waits at a pickup until the batch is ready, spends `SERVICE_S` at each stop, and
  stays at their last drop-off when the route is done. A changed route that no longer starts
  with the stop they are riding to turns them round where they are (the matcher sees their
  position, as it sees a fresh location fix). Offers are accepted at once.
- Figures: volunteer-km per delivered meal (every metre ridden from home to the last drop-off,
  the same street distance for all three), p90 time from ready to delivered (per meal), meals
  late or never delivered.

A supply run: one depot to nine checkpoints with a van (the seed's tents for nine towns'
checkpoints), several seeded instances around Ninghai: the route length of our planner, of VROOM
and of the exact optimum (Held-Karp), from the depot to the last checkpoint.

Run: `.venv/bin/python -m bench.routes [--quick]`.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from bench.dispatch_quality import CANDIDATES_K, CAPACITY_KG, ORGANISATION
from services.dispatcher.domain import planning, routing
from services.dispatcher.domain.eligibility import Leg, Policy, Volunteer
from services.dispatcher.domain.geo import haversine_m, travel_time_s
from services.dispatcher.domain.matching import AcceptedRoute, Match, Pool, match_batch
from services.dispatcher.domain.matching import route_leg as matching_route_leg
from services.dispatcher.domain.planning import Courier, Point, Shipment, path_m, street_m
from shared.ningbo import DISTRICTS

MEAL_DISTRICTS = ("Haishu", "Jiangbei", "Yinzhou")
# (first batch, last batch, share of the day's meals), seconds since midnight.
SERVICES = (
    (7 * 3600, 8 * 3600 + 1800, 0.15),
    (11 * 3600, 12 * 3600 + 1800, 0.60),
    (17 * 3600, 18 * 3600 + 1800, 0.25),
)
BATCH_EVERY_S = 600
MEAL_KG = 0.6
MEAL_WINDOW_S = 45 * 60  # a hot meal is delivered within 45 minutes of leaving the kitchen
SERVICE_S = routing.SERVICE_S  # at the kitchen and at the door, as the route planner counts it
POSTS_PER_DISTRICT = 8
POST_SHARE = 0.25  # of the orders; each a box of 4-10 meals
DROPOFF_SPREAD_KM = 2.0  # per axis, around the district centre
HOME_SPREAD_KM = 2.0
# Four-hour shifts (the welfare rules' cap): breakfast, lunch (twice the people) and dinner.
SHIFT_S = 4 * 3600
SHIFT_STARTS = (6 * 3600 + 2700, 10 * 3600 + 1800, 10 * 3600 + 1800, 16 * 3600 + 900)
ROUTE_MAX_LEGS = 6  # `max_active_legs` of the meal volunteers: a bag of lunches (the default is 3)
ROUND_S = 15
# With the meals posted ahead: how long before a batch is ready its meals are posted.
AHEAD_S = 60 * 60
EPOCH = datetime(2026, 12, 1, tzinfo=ZoneInfo("Asia/Shanghai"))  # the day's local midnight
POLICY = Policy()
TARGETS = {
    "km_vs_one_leg": 0.5,
    "km_vs_vroom": 1.2,
    "p90_within_window_s": MEAL_WINDOW_S,
    "supply_vs_vroom": 1.05,
}


def _offset(centre: Point, rng: np.random.Generator, spread_km: float) -> Point:
    north_km, east_km = rng.normal(0.0, spread_km, size=2)
    lat = centre[0] + north_km / 111.0
    return (lat, centre[1] + east_km / (111.0 * math.cos(math.radians(centre[0]))))


@dataclass(frozen=True)
class Delivery:
    """A leg as the simulations play it: picked up once ready, delivered by `due_s` (inf: no deadline)."""

    id: int
    pickup: Point
    dropoff: Point
    ready_s: float
    due_s: float
    weight_kg: float
    meals: int = 0  # meals in it (the day of meals counts per meal)
    priority: str = "routine"
    vehicle: str | None = None
    languages: frozenset[str] = frozenset({"zh"})
    vulnerable: bool = False


@dataclass(frozen=True)
class Rider:
    id: int
    vehicle: str
    home: Point
    shift_from_s: float
    shift_until_s: float
    capacity_kg: float
    languages: frozenset[str] = frozenset({"zh"})
    # Whether the welfare rules' shift clock runs from `shift_from_s` (else the volunteer is
    # treated as fresh all along, as in the stream benchmark).
    shift_clock: bool = True


@dataclass(frozen=True)
class MealDay:
    kitchens: list[Point]
    posts: list[Point]
    legs: list[Delivery]
    riders: list[Rider]

    @property
    def meals(self) -> int:
        return sum(leg.meals for leg in self.legs)


def make_meal_day(*, meals: int = 300, riders: int = 60, seed: int = 11) -> MealDay:
    """A seeded day: kitchens, posts, the legs with their ready times, the volunteers and their shifts."""
    rng = np.random.default_rng(seed)
    districts = [d for d in DISTRICTS if d.name in MEAL_DISTRICTS]
    centres = [(d.lat, d.lon) for d in districts]
    weights = np.array([d.population_10k for d in districts], dtype=float)
    weights /= weights.sum()
    kitchens = [_offset(c, rng, 0.5) for c in centres]
    posts = [_offset(c, rng, DROPOFF_SPREAD_KM) for c in centres for _ in range(POSTS_PER_DISTRICT)]
    legs: list[Delivery] = []
    for first_s, last_s, share in SERVICES:
        slots = list(range(first_s, last_s + 1, BATCH_EVERY_S))
        for k, weight in enumerate(weights):
            to_cook = round(meals * share * weight)
            while to_cook > 0:
                ready = float(slots[int(rng.integers(len(slots)))])
                if rng.random() < POST_SHARE:
                    count = min(to_cook, int(rng.integers(4, 11)))
                    where = posts[k * POSTS_PER_DISTRICT + int(rng.integers(POSTS_PER_DISTRICT))]
                else:  # an elderly person at home: one meal, and a vulnerable recipient
                    count = 1
                    where = _offset(centres[k], rng, DROPOFF_SPREAD_KM)
                legs.append(
                    Delivery(
                        len(legs),
                        kitchens[k],
                        where,
                        ready,
                        ready + MEAL_WINDOW_S,
                        count * MEAL_KG,
                        meals=count,
                        vulnerable=count == 1,
                    )
                )
                to_cook -= count
    legs.sort(key=lambda leg: (leg.ready_s, leg.id))
    legs = [dataclasses.replace(leg, id=i) for i, leg in enumerate(legs)]
    people: list[Rider] = []
    for i in range(riders):
        k = int(rng.choice(len(centres), p=weights))
        vehicle = "bicycle" if rng.random() < 0.6 else "ebike"
        start = SHIFT_STARTS[i % len(SHIFT_STARTS)]
        home = _offset(centres[k], rng, HOME_SPREAD_KM)
        people.append(Rider(i, vehicle, home, start, start + SHIFT_S, CAPACITY_KG[vehicle]))
    return MealDay(kitchens, posts, legs, people)


# --- the online simulation -------------------------------------------------------------------


@dataclass(frozen=True)
class Stop:
    leg: Delivery
    kind: str  # "pickup" | "dropoff"

    @property
    def place(self) -> Point:
        return self.leg.pickup if self.kind == "pickup" else self.leg.dropoff


@dataclass
class RiderState:
    """A volunteer during the day: where they were last, and the stops they have promised, in order.

    `at`/`since_s`: the place and time they set off for `stops[0]` (home at the start of the shift,
    else the last stop done or where they were when their route changed). `position`: where they
    are at the round being played (on the straight line to `stops[0]`, or at it once arrived).
    `on_board`: legs picked up and not yet delivered.
    """

    rider: Rider
    at: Point
    since_s: float
    stops: list[Stop] = field(default_factory=list)
    on_board: list[Delivery] = field(default_factory=list)
    legs_done: int = 0
    position: Point = (0.0, 0.0)
    service_s: float = SERVICE_S  # at each stop

    @property
    def idle(self) -> bool:
        return not self.stops

    @property
    def active_legs(self) -> set[int]:
        return {s.leg.id for s in self.stops} | {leg.id for leg in self.on_board}

    def where(self, now: float) -> tuple[Point, float]:
        """Where they are at `now`, and the share of the ride to `stops[0]` already done (1: arrived)."""
        if not self.stops:
            return self.at, 1.0
        target = self.stops[0].place
        ride = _ride_s(self.rider, self.at, target)
        done = 1.0 if ride <= 0 else min(1.0, max(0.0, (now - self.since_s) / ride))
        lat = self.at[0] + done * (target[0] - self.at[0])
        return (lat, self.at[1] + done * (target[1] - self.at[1])), done


# A round of a matcher: (now, legs waiting, the volunteers on shift, `position` set) -> the new
# stop list of each volunteer given legs this round (every stop still to do, new legs included).
RoundPolicy = Callable[[float, list[Delivery], list[RiderState]], dict[int, list[Stop]]]


def _volunteer_id(rider: Rider) -> uuid.UUID:
    return uuid.UUID(int=1_000_000 + rider.id)


def _as_volunteer(state: RiderState, now: float, *, max_legs: int) -> Volunteer:
    """The volunteer as the matcher reads them: where they are now, their legs counted as active."""
    rider = state.rider
    return Volunteer(
        id=_volunteer_id(rider),
        organisation_id=ORGANISATION,
        on_duty=True,
        insured=True,
        vehicle=rider.vehicle,
        capacity_kg=rider.capacity_kg,
        skills=frozenset(),
        languages=rider.languages,
        max_active_legs=max_legs,
        active_legs=len(state.active_legs),
        live_offers=0,
        lat=state.position[0],
        lon=state.position[1],
        location_at=EPOCH + timedelta(seconds=now),
        duty_started_at=EPOCH + timedelta(seconds=rider.shift_from_s) if rider.shift_clock else None,
        rest_until=None,
        legs_done_today=state.legs_done,
    )


def _as_leg(leg: Delivery, now: float) -> Leg:
    """The leg as the matcher reads it; a leg past half its window becomes urgent."""
    late = math.isfinite(leg.due_s) and now - leg.ready_s > (leg.due_s - leg.ready_s) / 2
    return Leg(
        id=uuid.UUID(int=leg.id),
        task_id=uuid.UUID(int=leg.id),
        organisation_id=ORGANISATION,
        priority="urgent" if late and leg.priority == "routine" else leg.priority,
        pickup_lat=leg.pickup[0],
        pickup_lon=leg.pickup[1],
        vehicle=leg.vehicle,
        weight_kg=leg.weight_kg,
        skills=frozenset(),
        languages=leg.languages,
        vulnerable=leg.vulnerable,
        waiting_s=now - leg.ready_s,
        dropoff_lat=leg.dropoff[0],
        dropoff_lon=leg.dropoff[1],
        ready_s=EPOCH.timestamp() + leg.ready_s,
        due_s=EPOCH.timestamp() + leg.due_s,
    )


def one_leg_round(now: float, waiting: list[Delivery], riders: list[RiderState]) -> dict[int, list[Stop]]:
    """Today's matcher: `match_batch` over the volunteers with nothing to do, one leg each."""
    idle = [r for r in riders if r.idle]
    if not idle or not waiting:
        return {}
    by_leg = {uuid.UUID(int=leg.id): leg for leg in waiting}
    by_volunteer = {_volunteer_id(r.rider): r.rider for r in idle}
    matches = match_batch(
        [_as_leg(leg, now) for leg in waiting],
        [_as_volunteer(r, now, max_legs=1) for r in idle],
        EPOCH + timedelta(seconds=now),
        POLICY,
        k=CANDIDATES_K,
    )
    return {
        by_volunteer[m.volunteer_id].id: [Stop(by_leg[m.leg_id], "pickup"), Stop(by_leg[m.leg_id], "dropoff")]
        for m in matches
    }


def _as_team(
    riders: list[RiderState], waiting: list[Delivery], now: float, max_legs: int
) -> tuple[
    list[Volunteer], dict[uuid.UUID, AcceptedRoute], dict[uuid.UUID, Rider], dict[uuid.UUID, Delivery]
]:
    """The volunteers with a slot free as the matcher reads them, their accepted routes, and who and
    which leg each id is."""
    by_leg = {uuid.UUID(int=leg.id): leg for leg in waiting}
    volunteers, accepted, by_volunteer = [], {}, {}
    for r in riders:
        if len(r.active_legs) >= max_legs:
            continue
        v = _as_volunteer(r, now, max_legs=max_legs)
        volunteers.append(v)
        by_volunteer[v.id] = r.rider
        for stop in r.stops:
            by_leg[uuid.UUID(int=stop.leg.id)] = stop.leg
        if r.stops:
            accepted[v.id] = AcceptedRoute(v.id, tuple(_route_stop(stop) for stop in r.stops))
    return volunteers, accepted, by_volunteer, by_leg


def _plans(
    matches: list[Match], by_volunteer: dict[uuid.UUID, Rider], by_leg: dict[uuid.UUID, Delivery]
) -> dict[int, list[Stop]]:
    """Each volunteer's stops as the matches' routes have them."""
    plans: dict[int, list[Stop]] = {}
    for m in matches:
        assert m.route is not None
        rider = by_volunteer[m.volunteer_id]
        plans[rider.id] = [Stop(by_leg[stop.leg_id], stop.kind) for stop in m.route.stops]  # type: ignore[index]
    return plans


def route_round(max_legs: int) -> RoundPolicy:
    """The route matcher (`match_batch(..., plan=True)`): new routes, and legs inserted into routes under way.

    Each volunteer's stops still to do are their accepted route (a leg already picked up has only
    its drop-off left); every volunteer on shift may carry up to `max_legs` legs.
    """

    def round_(now: float, waiting: list[Delivery], riders: list[RiderState]) -> dict[int, list[Stop]]:
        if not waiting:
            return {}
        volunteers, accepted, by_volunteer, by_leg = _as_team(riders, waiting, now, max_legs)
        if not volunteers:
            return {}
        matches = match_batch(
            [_as_leg(leg, now) for leg in waiting],
            volunteers,
            EPOCH + timedelta(seconds=now),
            POLICY,
            k=CANDIDATES_K,
            plan=True,
            routes=accepted,
        )
        return _plans(matches, by_volunteer, by_leg)

    return round_


def ahead_round(max_legs: int, solve_s: list[float], *, hold_s: float = planning.PLAN_HOLD_S) -> RoundPolicy:
    """The dispatcher with legs posted ahead: the planner (`planning.plan_ahead`) plans every leg
    known and not yet given out, until `hold_s` after it is ready, for the volunteers on shift,
    and gives a volunteer their first planned trip once it is time to set off for it; a leg still
    waiting after that goes to the round (`route_round`), as in the dispatcher. Each plan's
    seconds go to `solve_s`."""
    rounds = route_round(max_legs)

    def round_(now: float, waiting: list[Delivery], riders: list[RiderState]) -> dict[int, list[Stop]]:
        ahead = [leg for leg in waiting if leg.ready_s > now - hold_s]
        plans: dict[int, list[Stop]] = {}
        if ahead:
            volunteers, accepted, by_volunteer, by_leg = _as_team(riders, ahead, now, max_legs)
            started = time.perf_counter()
            matches = planning.plan_ahead(
                [_as_leg(leg, now) for leg in ahead],
                Pool(volunteers, EPOCH + timedelta(seconds=now), POLICY),
                EPOCH + timedelta(seconds=now),
                POLICY,
                accepted,
            )
            solve_s.append(time.perf_counter() - started)
            plans = _plans(matches, by_volunteer, by_leg)
        rest = [leg for leg in waiting if leg.ready_s <= now - hold_s]
        if rest:
            plans |= rounds(now, rest, [r for r in riders if r.rider.id not in plans])
        return plans

    return round_


def _route_stop(stop: Stop) -> routing.Stop:
    """One stop of an accepted route, as the matcher builds it for the leg (`matching.route_leg`)."""
    leg = matching_route_leg(_as_leg(stop.leg, stop.leg.ready_s))
    return leg.pickup if stop.kind == "pickup" else leg.dropoff


@dataclass
class Outcome:
    km: float = 0.0
    empty_km: float = 0.0  # of which ridden with nothing on board (to a pickup)
    delivered_s: dict[int, float] = field(default_factory=dict)  # leg id -> drop-off service start
    assigned_s: dict[int, float] = field(default_factory=dict)  # leg id -> the round that gave it out
    pickup_m: dict[int, float] = field(default_factory=dict)  # leg id -> volunteer to pickup, then
    trips: int = 0  # times a volunteer with nothing to do was given legs
    matcher_s: float = 0.0
    rounds: int = 0


def _ride_s(rider: Rider, a: Point, b: Point) -> float:
    return travel_time_s(haversine_m(a[0], a[1], b[0], b[1]), rider.vehicle)


def _next_done_s(state: RiderState) -> float:
    """When the service at the volunteer's next stop ends (inf: nothing to do)."""
    if not state.stops:
        return math.inf
    stop = state.stops[0]
    begin = state.since_s + _ride_s(state.rider, state.at, stop.place)
    if stop.kind == "pickup":
        begin = max(begin, stop.leg.ready_s)
    return begin + state.service_s


def _ride(state: RiderState, outcome: Outcome, km: float) -> None:
    outcome.km += km
    if not state.on_board:
        outcome.empty_km += km


def _advance(state: RiderState, now: float, outcome: Outcome) -> bool:
    """Serve every stop whose service is over by `now`; whether any was."""
    served = False
    while state.stops and _next_done_s(state) <= now:
        stop = state.stops.pop(0)
        _ride(state, outcome, street_m(state.at, stop.place) / 1000.0)
        state.since_s = _next_done_s(dataclasses.replace(state, stops=[stop]))
        state.at = stop.place
        if stop.kind == "pickup":
            state.on_board.append(stop.leg)
        else:
            state.on_board = [leg for leg in state.on_board if leg.id != stop.leg.id]
            outcome.delivered_s[stop.leg.id] = state.since_s - state.service_s
            state.legs_done += 1
        served = True
    return served


def _reroute(state: RiderState, now: float, stops: list[Stop], outcome: Outcome) -> None:
    """Give the volunteer a new list of stops; a ride under way to another stop ends where they are."""
    if state.stops and stops and stops[0] == state.stops[0]:
        state.stops = list(stops)
        return
    if state.stops:  # turning off the ride under way: count the part ridden
        position, done = state.where(now)
        _ride(state, outcome, done * street_m(state.at, state.stops[0].place) / 1000.0)
        state.at = position
    state.since_s = max(state.since_s, now)
    state.stops = list(stops)


def simulate(
    legs: list[Delivery],
    riders: list[Rider],
    round_policy: RoundPolicy,
    *,
    round_s: float = ROUND_S,
    end_s: float = 23 * 3600,
    service_s: float = SERVICE_S,
    announce_s: float = 0.0,
    every_round: bool = False,
) -> Outcome:
    """Play the legs through one matcher: a round every `round_s` when something changed.

        Legs come in `announce_s` before they are ready (0: when ready); a pickup waits for `ready_s`.
    With `every_round`, a round is played every `round_s` while a leg waits (a planner that gives out
    a trip when it is time to set off needs each one).

        Something changed: a leg came in, a volunteer served a stop, a round gave legs out, or a
        leg has waited another `Policy.widen_step_s` (its search radius widens).
    """
    outcome = Outcome()
    states = [RiderState(r, r.home, r.shift_from_s, service_s=service_s) for r in riders]
    by_id = {s.rider.id: s for s in states}
    due = [_next_done_s(s) for s in states]
    waiting: list[Delivery] = []
    legs = sorted(legs, key=lambda leg: leg.ready_s)
    released = 0
    changed = False
    last_round = -math.inf
    t = math.ceil((legs[0].ready_s - announce_s) / round_s) * round_s if legs else end_s
    while t <= end_s:
        for i, state in enumerate(states):
            if due[i] <= t:
                changed |= _advance(state, t, outcome)
                due[i] = _next_done_s(state)
        while released < len(legs) and legs[released].ready_s - announce_s <= t:
            waiting.append(legs[released])
            released += 1
            changed = True
        if waiting and (every_round or t - last_round >= POLICY.widen_step_s):
            changed = True
        on_shift = [s for s in states if s.rider.shift_from_s <= t < s.rider.shift_until_s]
        if changed and waiting and on_shift:
            changed = False
            last_round = t
            for s in on_shift:
                s.position = s.where(t)[0]
            started = time.perf_counter()
            plans = round_policy(t, list(waiting), on_shift)
            outcome.matcher_s += time.perf_counter() - started
            outcome.rounds += 1
            given: set[int] = set()
            for rid, stops in plans.items():
                state = by_id[rid]
                new = [s.leg for s in stops if s.kind == "pickup" and s.leg.id not in state.active_legs]
                for leg in new:
                    outcome.assigned_s[leg.id] = t
                    outcome.pickup_m[leg.id] = haversine_m(*state.position, *leg.pickup)
                given |= {leg.id for leg in new}
                outcome.trips += state.idle and bool(stops)
                _reroute(state, t, stops, outcome)
                due[states.index(state)] = _next_done_s(state)
            if given:
                waiting = [leg for leg in waiting if leg.id not in given]
                changed = True
        if released >= len(legs) and not waiting and all(s.idle for s in states):
            break
        t += round_s
    return outcome


def simulate_day(
    day: MealDay, round_policy: RoundPolicy, *, announce_s: float = 0.0, every_round: bool = False
) -> Outcome:
    """Play the day of meals through one matcher."""
    return simulate(day.legs, day.riders, round_policy, announce_s=announce_s, every_round=every_round)


def vroom_day(day: MealDay, *, timeout_s: float | None = None) -> tuple[Outcome, planning.Plan]:
    """VROOM's plan of the whole day, every leg known in advance, the same volunteers and rules."""
    shipments = [
        Shipment(
            leg.id, leg.pickup, leg.dropoff, leg.weight_kg, int(leg.ready_s), int(leg.due_s), int(SERVICE_S)
        )
        for leg in day.legs
    ]
    couriers = [
        Courier(
            r.id, r.vehicle, r.home, int(r.shift_from_s), int(r.shift_until_s), r.capacity_kg, ROUTE_MAX_LEGS
        )
        for r in day.riders
    ]
    plan = planning.solve(shipments, couriers, timeout_s=timeout_s)
    outcome = Outcome(km=plan.total_m / 1000.0, matcher_s=plan.solve_s)
    homes = {r.id: r.home for r in day.riders}
    for rid, visits in plan.routes.items():
        here, on_board = homes[rid], 0
        for visit in visits:
            if on_board == 0:
                outcome.empty_km += street_m(here, visit.place) / 1000.0
                outcome.trips += 1
            on_board += 1 if visit.kind == "pickup" else -1
            here = visit.place
            if visit.kind == "dropoff":
                outcome.delivered_s[visit.shipment_id] = float(visit.at_s)
    return outcome, plan


def _day_summary(day: MealDay, outcome: Outcome) -> dict[str, Any]:
    per_meal: list[float] = []
    late = 0
    for leg in day.legs:
        delivered = outcome.delivered_s.get(leg.id)
        if delivered is None:
            continue
        per_meal += [delivered - leg.ready_s] * leg.meals
        late += leg.meals if delivered > leg.due_s + 1e-6 else 0
    delivered_meals = len(per_meal)
    per_meal.sort()
    return {
        "meals_delivered": delivered_meals,
        "meals_not_delivered": day.meals - delivered_meals,
        "meals_late": late,
        "volunteer_km": round(outcome.km, 2),
        "km_per_meal": round(outcome.km / max(delivered_meals, 1), 4),
        "empty_km_share": round(outcome.empty_km / outcome.km, 3) if outcome.km else None,
        "p90_ready_to_delivered_s": round(per_meal[int(0.9 * (len(per_meal) - 1))], 1) if per_meal else None,
        "mean_ready_to_delivered_s": round(statistics.fmean(per_meal), 1) if per_meal else None,
        "legs_per_trip": round(len(outcome.delivered_s) / outcome.trips, 2) if outcome.trips else None,
        "matcher_cpu_s": round(outcome.matcher_s, 3),
    }


def measure_meal_day(
    *,
    meals: int = 300,
    riders: int = 60,
    seed: int = 11,
    vroom_timeout_s: float | None = None,
    repeats: int = 3,
    ahead_s: float = 0.0,
) -> dict[str, Any]:
    """The day through one leg at a time, the route matcher and VROOM's offline plan; with `ahead_s`, also
    the dispatcher with the meals posted that long before they are ready (`measure_ahead`)."""
    day = make_meal_day(meals=meals, riders=riders, seed=seed)
    results: dict[str, Any] = {
        "model": {
            "meals": day.meals,
            "legs": len(day.legs),
            "volunteers": len(day.riders),
            "bicycles": sum(r.vehicle == "bicycle" for r in day.riders),
            "scooters": sum(r.vehicle == "ebike" for r in day.riders),
            "meal_window_s": MEAL_WINDOW_S,
            "round_s": ROUND_S,
            "route_max_legs": ROUTE_MAX_LEGS,
            "seed": seed,
        }
    }
    one_leg = _day_summary(day, simulate_day(day, one_leg_round))
    vroom_outcome, plan = vroom_day(day, timeout_s=vroom_timeout_s)
    vroom = _day_summary(day, vroom_outcome)
    vroom["unassigned_legs"] = len(plan.unassigned)
    results["one_leg"] = one_leg
    results["vroom"] = vroom
    results["one_leg_vs_vroom_km"] = round(one_leg["km_per_meal"] / vroom["km_per_meal"], 4)
    # The route matcher plans under wall-clock budgets, so its plans (and these figures) vary a
    # little with the machine's speed and load: the median run of `repeats` is reported, and the range.
    runs = sorted(
        (_day_summary(day, simulate_day(day, route_round(ROUTE_MAX_LEGS))) for _ in range(repeats)),
        key=lambda run: run["km_per_meal"],
    )
    routes = dict(runs[len(runs) // 2])
    routes["km_per_meal_range"] = [runs[0]["km_per_meal"], runs[-1]["km_per_meal"]]
    routes["p90_range_s"] = [
        min(run["p90_ready_to_delivered_s"] for run in runs),
        max(run["p90_ready_to_delivered_s"] for run in runs),
    ]
    routes["repeats"] = repeats
    results["routes"] = routes
    results["km_ratio_vs_one_leg"] = round(routes["km_per_meal"] / one_leg["km_per_meal"], 4)
    results["km_ratio_vs_vroom"] = round(routes["km_per_meal"] / vroom["km_per_meal"], 4)
    results["met"] = _met(routes, one_leg, vroom)
    if ahead_s:
        posted = results["ahead"] = measure_ahead(day, ahead_s)
        posted["km_ratio_vs_one_leg"] = round(posted["km_per_meal"] / one_leg["km_per_meal"], 4)
        posted["km_ratio_vs_vroom"] = round(posted["km_per_meal"] / vroom["km_per_meal"], 4)
        posted["met"] = _met(posted, one_leg, vroom)
    return results


def _met(figures: dict[str, Any], one_leg: dict[str, Any], vroom: dict[str, Any]) -> bool:
    """Whether a matcher's day meets the issue's targets for km per meal and the p90."""
    p90 = figures["p90_ready_to_delivered_s"]
    return (
        figures["km_per_meal"] <= TARGETS["km_vs_one_leg"] * one_leg["km_per_meal"]
        and figures["km_per_meal"] <= TARGETS["km_vs_vroom"] * vroom["km_per_meal"]
        and p90 is not None
        and p90 <= MEAL_WINDOW_S
    )


def measure_ahead(day: MealDay, ahead_s: float) -> dict[str, Any]:
    """The day through `ahead_round`, every meal posted `ahead_s` before it is ready: the summary,
    and how long each plan took."""
    solve_s: list[float] = []
    summary = _day_summary(
        day, simulate_day(day, ahead_round(ROUTE_MAX_LEGS, solve_s), announce_s=ahead_s, every_round=True)
    )
    solve_s.sort()
    summary["known_ahead_s"] = ahead_s
    summary["solves"] = len(solve_s)
    if solve_s:
        summary["solve_ms_p50_p95_max"] = [
            round(1000 * solve_s[len(solve_s) // 2], 1),
            round(1000 * solve_s[int(0.95 * (len(solve_s) - 1))], 1),
            round(1000 * solve_s[-1], 1),
        ]
    return summary


def sweep_known_ahead(seeds: list[int], leads_s: list[float]) -> list[dict[str, Any]]:
    """Km per meal with the meals posted ahead, against one leg at a time and VROOM, per day and per lead."""
    rows = []
    for seed in seeds:
        day = make_meal_day(seed=seed)
        one_leg = _day_summary(day, simulate_day(day, one_leg_round))["km_per_meal"]
        vroom = _day_summary(day, vroom_day(day)[0])["km_per_meal"]
        routed = _day_summary(day, simulate_day(day, route_round(ROUTE_MAX_LEGS)))["km_per_meal"]
        rows.append(
            {
                "seed": seed,
                "plan": "route matcher",
                "vs_one_leg": routed / one_leg,
                "vs_vroom": routed / vroom,
            }
        )
        for lead in leads_s:
            plan = measure_ahead(day, lead)
            rows.append(
                {
                    "seed": seed,
                    "plan": f"posted {lead / 60:.0f} min ahead",
                    "vs_one_leg": plan["km_per_meal"] / one_leg,
                    "vs_vroom": plan["km_per_meal"] / vroom,
                    "p90_s": plan["p90_ready_to_delivered_s"],
                    "late": plan["meals_late"],
                    "not_delivered": plan["meals_not_delivered"],
                    "solve_ms_p50_p95_max": plan.get("solve_ms_p50_p95_max"),
                }
            )
        print(json.dumps(rows[-len(leads_s) - 1 :]), flush=True)
    return rows


# --- the supply run ---------------------------------------------------------------------------


def make_supply_run(*, checkpoints: int = 9, seed: int = 0) -> tuple[Point, list[Point]]:
    """A depot near Ninghai's centre and `checkpoints` remote checkpoints around the county."""
    rng = np.random.default_rng(seed)
    ninghai = next(d for d in DISTRICTS if d.name == "Ninghai")
    depot = _offset((ninghai.lat, ninghai.lon), rng, 1.0)
    return depot, [
        _offset((ninghai.lat, ninghai.lon), rng, ninghai.spread_km / 2) for _ in range(checkpoints)
    ]


def optimum_open_path_m(start: Point, points: list[Point]) -> float:
    """The shortest path from `start` through every point (Held-Karp, exact; fine up to ~12 points)."""
    n = len(points)
    if n == 0:
        return 0.0
    d = [[street_m(a, b) for b in points] for a in points]
    best: dict[tuple[int, int], float] = {(1 << j, j): street_m(start, points[j]) for j in range(n)}
    for size in range(2, n + 1):
        for subset in itertools.combinations(range(n), size):
            mask = sum(1 << j for j in subset)
            for j in subset:
                prev = mask ^ (1 << j)
                best[(mask, j)] = min(best[(prev, i)] + d[i][j] for i in subset if i != j)
    full = (1 << n) - 1
    return min(best[(full, j)] for j in range(n))


VAN_KG = CAPACITY_KG["van"]
SUPPLY_KG = 20.0  # tents and masks for one checkpoint
SUPPLY_SERVICE_S = 300


# Time enough for the planner to finish (the quality measured); the round's own budget is tried too.
UNHURRIED_S = 1.0


def _supply_route(depot: Point, checkpoints: list[Point], budget_s: float) -> routing.Route:
    courier = routing.Courier(depot[0], depot[1], "van", 8 * 3600, VAN_KG, len(checkpoints), 20 * 3600)
    legs = [
        routing.route_leg(i, pickup=depot, dropoff=c, weight_kg=SUPPLY_KG, service_s=SUPPLY_SERVICE_S)
        for i, c in enumerate(checkpoints)
    ]
    route = routing.plan_route(courier, legs, budget_s=budget_s)
    assert route is not None
    return route


def planned_supply_run(
    depot: Point, checkpoints: list[Point], *, budget_s: float = UNHURRIED_S
) -> list[Point]:
    """Our planner's order (`routing.plan_route`): the checkpoints as the van visits them."""
    route = _supply_route(depot, checkpoints, budget_s)
    assert len(route.leg_ids) == len(checkpoints), route
    return [(stop.lat, stop.lon) for stop in route.stops if stop.kind == "dropoff"]


def vroom_supply_run(depot: Point, checkpoints: list[Point]) -> float:
    shipments = [
        Shipment(i, depot, c, SUPPLY_KG, 8 * 3600, 20 * 3600, SUPPLY_SERVICE_S)
        for i, c in enumerate(checkpoints)
    ]
    courier = Courier(0, "van", depot, 8 * 3600, 20 * 3600, VAN_KG, len(checkpoints))
    plan = planning.solve(shipments, [courier])
    assert not plan.unassigned, plan.unassigned
    return plan.total_m


def measure_supply_run(*, instances: int = 10, seed: int = 100) -> dict[str, Any]:
    rows = []
    checkpoints: list[Point] = []
    for i in range(instances):
        depot, checkpoints = make_supply_run(seed=seed + i)
        row: dict[str, Any] = {
            "vroom_m": round(vroom_supply_run(depot, checkpoints), 1),
            "optimum_m": round(optimum_open_path_m(depot, checkpoints), 1),
        }
        started = time.perf_counter()
        order = planned_supply_run(depot, checkpoints)
        row["ours_ms"] = round((time.perf_counter() - started) * 1000.0, 2)
        row["ours_m"] = round(path_m([depot, *order]), 1)
        # What a round gets within `routing.PLAN_BUDGET_S` on this machine: legs past it are left out.
        hurried = _supply_route(depot, checkpoints, routing.PLAN_BUDGET_S)
        row["legs_within_round_budget"] = len(hurried.leg_ids)
        rows.append(row)
    results: dict[str, Any] = {
        "instances": instances,
        "checkpoints": 9,
        "vroom_vs_optimum_mean": round(statistics.fmean(r["vroom_m"] / r["optimum_m"] for r in rows), 4),
        "mean_vroom_km": round(statistics.fmean(r["vroom_m"] for r in rows) / 1000.0, 2),
    }
    ratios = [r["ours_m"] / r["vroom_m"] for r in rows]
    results["ours_vs_vroom_mean"] = round(statistics.fmean(ratios), 4)
    results["ours_vs_vroom_max"] = round(max(ratios), 4)
    results["ours_plan_ms_max"] = max(r["ours_ms"] for r in rows)
    results["round_budget_ms"] = routing.PLAN_BUDGET_S * 1000
    results["runs_cut_by_round_budget"] = sum(r["legs_within_round_budget"] < len(checkpoints) for r in rows)
    results["met"] = results["ours_vs_vroom_max"] <= TARGETS["supply_vs_vroom"]
    results["rows"] = rows
    return results


def measure(*, quick: bool = False) -> dict[str, Any]:
    return {
        "meal_day": measure_meal_day(
            vroom_timeout_s=30.0 if quick else None, repeats=1 if quick else 3, ahead_s=AHEAD_S
        ),
        "supply_run": measure_supply_run(instances=4 if quick else 10),
        "targets": TARGETS,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a VROOM time limit and fewer supply runs")
    parser.add_argument("--meals", type=int, default=300)
    parser.add_argument("--volunteers", type=int, default=60)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument(
        "--ahead",
        action="store_true",
        help="six days (seeds 11-16) with the meals posted 10-60 minutes ahead",
    )
    args = parser.parse_args()
    if args.ahead:
        rows = sweep_known_ahead(list(range(11, 17)), [600.0, 1200.0, 2400.0, 3600.0])
        for plan in dict.fromkeys(row["plan"] for row in rows):
            mine = [row for row in rows if row["plan"] == plan]
            print(
                f"{plan}: km per meal {statistics.fmean(r['vs_one_leg'] for r in mine):.3f}x one leg, "
                f"{statistics.fmean(r['vs_vroom'] for r in mine):.3f}x VROOM "
                f"(worst day {max(r['vs_vroom'] for r in mine):.3f}x)"
            )
        return
    if args.meals != 300 or args.volunteers != 60 or args.seed != 11:
        print(
            json.dumps(measure_meal_day(meals=args.meals, riders=args.volunteers, seed=args.seed), indent=2)
        )
        return
    print(json.dumps(measure(quick=args.quick), indent=2))


if __name__ == "__main__":
    main()
