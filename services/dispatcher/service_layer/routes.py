"""Routes as stored: what a round offers, what accepting takes on, and what a leg leaving does.

A route's stops are kept as JSON, in order, each with its leg, kind, place, ETA and what the
planner needs to plan again (window, service time, weight). Which stops are still to do is read
from the legs themselves: a pickup while its leg is offered or assigned, a drop-off until it is
delivered. Locks come after the legs, offers and volunteers the caller holds.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.dispatcher.adapters import repository
from services.dispatcher.adapters.tables import LegRow, VolunteerRow
from services.dispatcher.domain import eligibility, routing
from services.dispatcher.domain.leg import LegStatus
from services.dispatcher.domain.matching import AcceptedRoute, route_leg

# A stop is still to do while its leg is in one of these.
PICKUP_AHEAD = frozenset({LegStatus.OFFERED, LegStatus.ASSIGNED})
DROPOFF_AHEAD = frozenset({LegStatus.OFFERED, LegStatus.ASSIGNED, LegStatus.PICKED_UP})


def _seconds(value: float) -> float | None:
    return None if math.isinf(value) else value


def stops_json(route: routing.Route) -> list[dict[str, Any]]:
    """The route's stops, as stored."""
    return [
        {
            "leg_id": str(stop.leg_id),
            "kind": stop.kind,
            "lat": stop.lat,
            "lon": stop.lon,
            "eta": datetime.fromtimestamp(eta, UTC).isoformat(),
            "earliest_s": _seconds(stop.earliest_s),
            "latest_s": _seconds(stop.latest_s),
            "service_s": stop.service_s,
            "weight_kg": stop.weight_kg,
        }
        for stop, eta in zip(route.stops, route.etas, strict=True)
    ]


def ahead(stops: Iterable[dict[str, Any]], statuses: Mapping[uuid.UUID, str]) -> list[dict[str, Any]]:
    """The stored stops still to do, given the status of each leg (a leg not listed is off the route)."""
    kept = []
    for stop in stops:
        status = statuses.get(uuid.UUID(stop["leg_id"]))
        if status in (PICKUP_AHEAD if stop["kind"] == "pickup" else DROPOFF_AHEAD):
            kept.append(stop)
    return kept


def stops_of(stops: Iterable[Mapping[str, Any]]) -> tuple[routing.Stop, ...]:
    """Stored stops as the planner reads them."""
    return tuple(
        routing.Stop(
            uuid.UUID(stop["leg_id"]),
            stop["kind"],
            stop["lat"],
            stop["lon"],
            earliest_s=-math.inf if stop["earliest_s"] is None else stop["earliest_s"],
            latest_s=math.inf if stop["latest_s"] is None else stop["latest_s"],
            service_s=stop["service_s"],
            weight_kg=stop["weight_kg"],
        )
        for stop in stops
    )


async def accepted_routes(
    session: AsyncSession, volunteer_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, AcceptedRoute]:
    """The accepted routes of these volunteers, by volunteer: the stops still to do."""
    return {
        route.volunteer_id: AcceptedRoute(route.id, stops_of(ahead(route.stops, statuses)))
        for route, statuses in await repository.active_routes(session, volunteer_ids)
    }


def _courier(volunteer: VolunteerRow, now: datetime, first: routing.Stop | None) -> routing.Courier:
    """The holder as the planner sees them when fitting legs they took: from where they last were (the
    first stop when unknown); the rules of the offer were checked when it was made."""
    lat, lon = volunteer.lat, volunteer.lon
    if lat is None or lon is None:
        lat, lon = (first.lat, first.lon) if first is not None else (0.0, 0.0)
    return routing.Courier(
        lat, lon, volunteer.vehicle, now.timestamp(), capacity_kg=volunteer.capacity_kg, max_legs=10**6
    )


def courier_now(courier: routing.Courier) -> datetime:
    return datetime.fromtimestamp(courier.start_s, UTC)


def _fit(courier: routing.Courier, stops: Sequence[routing.Stop], legs: Sequence[LegRow]) -> routing.Route:
    """`stops` with these legs added each at its best position; one that fits nowhere goes last."""
    route = routing.timeline(courier, stops)
    for leg in legs:
        rl = route_leg(matching_leg(leg, rejected_by=None, now=courier_now(courier)))
        grown = routing.insert_leg(courier, route, rl)
        route = (
            grown if grown is not None else routing.timeline(courier, (*route.stops, rl.pickup, rl.dropoff))
        )
    return route


def matching_leg(leg: LegRow, *, rejected_by: list[uuid.UUID] | None, now: datetime) -> eligibility.Leg:
    """A leg as matching and routing read it."""
    return eligibility.Leg(
        id=leg.id,
        task_id=leg.task_id,
        organisation_id=leg.organisation_id,
        priority=leg.priority,
        pickup_lat=leg.pickup_lat,
        pickup_lon=leg.pickup_lon,
        vehicle=leg.vehicle,
        weight_kg=leg.weight_kg,
        skills=frozenset(leg.skills),
        languages=frozenset(leg.languages),
        vulnerable=leg.vulnerable,
        waiting_s=(now - leg.submitted_at).total_seconds(),
        rejected_by=frozenset(rejected_by or ()),
        kind=leg.kind,
        dropoff_lat=leg.dropoff_lat,
        dropoff_lon=leg.dropoff_lon,
        ready_s=leg.ready_at.timestamp() if leg.ready_at is not None else -math.inf,
        due_s=leg.deliver_by.timestamp() if leg.deliver_by is not None else math.inf,
    )


async def take_on(
    session: AsyncSession,
    *,
    volunteer: VolunteerRow,
    route_id: uuid.UUID,
    legs: Sequence[LegRow],
    now: datetime,
) -> uuid.UUID:
    """The volunteer accepted these legs offered in route `route_id`; returns the route they are on now.

    A new route becomes the volunteer's accepted route, unless they already have one: then the legs
    are fitted into that one (at their best positions) and the new route ends. Legs offered for
    insertion go into the accepted route where they fit best now.
    """
    route = await repository.lock_route(session, route_id)
    active = await repository.lock_active_route(session, volunteer.id)
    leg_ids = [leg.id for leg in legs]
    if route is not None and route.status == "offered" and active is None:
        # The order offered, of the legs taken, timed again from where the volunteer is now. A leg
        # offered with them whose offer lapsed is not the volunteer's: it leaves the route (the
        # expiry pass returns it), so neither its stops nor the time they take are planned.
        on_route = (await repository.route_leg_statuses(session, [route.id])).get(route.id, {})
        taken = set(leg_ids)
        await repository.put_legs_on_route(
            session, [leg_id for leg_id in on_route if leg_id not in taken], None
        )
        offered = stops_of(ahead(route.stops, {k: v for k, v in on_route.items() if k in taken}))
        timed = routing.timeline(_courier(volunteer, now, offered[0] if offered else None), offered)
        await repository.set_route(session, route.id, stops=stops_json(timed), status="active", now=now)
        return route.id
    if active is None:
        # The route it was offered in is gone (its other legs left it): a route of its own.
        target = uuid.uuid4()
        await repository.add_routes(
            session,
            [
                {
                    "id": target,
                    "organisation_id": volunteer.organisation_id,
                    "volunteer_id": volunteer.id,
                    "status": "active",
                    "stops": [],
                }
            ],
        )
        current: tuple[routing.Stop, ...] = ()
    else:
        target = active.id
        statuses = await repository.route_leg_statuses(session, [active.id])
        taken = set(leg_ids)
        current = tuple(
            stop
            for stop in stops_of(ahead(active.stops, statuses.get(active.id, {})))
            if stop.leg_id not in taken
        )
    courier = _courier(volunteer, now, current[0] if current else None)
    fitted = _fit(courier, current, legs)
    await repository.put_legs_on_route(session, leg_ids, target)
    await repository.set_route(session, target, stops=stops_json(fitted), status="active", now=now)
    if route is not None and route.id != target and route.status == "offered":
        await repository.end_unoffered_routes(session, [route.id], now=now)
    return target


async def leave(session: AsyncSession, legs: Sequence[LegRow], *, now: datetime) -> set[uuid.UUID]:
    """These legs leave their routes (cancelled, handed back, released, moved): each route's order is
    planned again without them. Returns the volunteers whose routes changed."""
    by_route: dict[uuid.UUID, list[uuid.UUID]] = {}
    for leg in legs:
        if leg.route_id is not None:
            by_route.setdefault(leg.route_id, []).append(leg.id)
    if not by_route:
        return set()
    await repository.put_legs_on_route(session, [leg_id for ids in by_route.values() for leg_id in ids], None)
    for leg in legs:
        leg.route_id = None
    changed: set[uuid.UUID] = set()
    statuses = await repository.route_leg_statuses(session, list(by_route))
    for route_id in sorted(by_route):
        route = await repository.lock_route(session, route_id)
        if route is None or route.status == "ended":
            continue
        changed.add(route.volunteer_id)
        remaining = stops_of(ahead(route.stops, statuses.get(route_id, {})))
        volunteer = await repository.find_volunteer(
            session, volunteer_id=route.volunteer_id, organisation_id=None
        )
        assert volunteer is not None
        courier = _courier(volunteer, now, remaining[0] if remaining else None)
        planned = routing.timeline(courier, remaining)
        for leg_id in by_route[route_id]:
            planned = routing.remove_leg(courier, planned, leg_id)
        await repository.set_route(session, route_id, stops=stops_json(planned), status=route.status, now=now)
        if route.status == "offered":
            await repository.end_unoffered_routes(session, [route_id], now=now)
    return changed
