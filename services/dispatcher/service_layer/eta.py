"""Estimates for legs in hand: made at assignment and pickup, refreshed as the volunteer's fixes arrive.

A refresh publishes `leg.eta_updated` only when `domain/eta.py` says it is news (the first estimate,
a move of `eta_publish_min_change_s` or more, a slip past `deliver_by` or back within it), so a
volunteer's fixes every few seconds do not each become an event.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.dispatcher.adapters import repository
from services.dispatcher.adapters.tables import LegRow
from services.dispatcher.domain import eta as rules
from services.dispatcher.domain.leg import LegStatus
from services.dispatcher.service_layer.changes import Changes
from shared.events import LegEtaUpdated
from shared.settings import Settings


def eta_policy(settings: Settings) -> rules.EtaPolicy:
    return rules.EtaPolicy(
        speeds=rules.Speeds(
            kmh={
                "foot": settings.eta_speed_foot_kmh,
                "bicycle": settings.eta_speed_bicycle_kmh,
                "ebike": settings.eta_speed_ebike_kmh,
                "car": settings.eta_speed_car_kmh,
                "van": settings.eta_speed_van_kmh,
            },
            road_factor=settings.eta_road_factor,
        ),
        min_change_s=settings.eta_publish_min_change_s,
    )


def _position(lat: float | None, lon: float | None) -> rules.Point | None:
    return None if lat is None or lon is None else (lat, lon)


async def update_eta(
    session: AsyncSession,
    leg: LegRow,
    *,
    position: rules.Point | None,
    vehicle: str,
    now: datetime,
    policy: rules.EtaPolicy,
    changes: Changes,
) -> None:
    """Estimate the leg (locked by the caller) from `position`; store and announce it if it is news."""
    if leg.volunteer_id is None:
        return
    new = rules.estimate(
        status=leg.status,
        position=position,
        pickup=(leg.pickup_lat, leg.pickup_lon),
        dropoff=(leg.dropoff_lat, leg.dropoff_lon),
        vehicle=vehicle,
        ready_at=leg.ready_at,
        now=now,
        speeds=policy.speeds,
    )
    if new is None:
        return
    before = None if leg.dropoff_eta is None else rules.Eta(leg.pickup_eta, leg.dropoff_eta)
    if not rules.worth_publishing(
        before=before,
        after=new,
        late_before=leg.eta_late,
        deliver_by=leg.deliver_by,
        min_change_s=policy.min_change_s,
    ):
        return
    late = rules.is_late(new.dropoff_at, leg.deliver_by)
    slipped = late and not leg.eta_late
    slips = leg.eta_slips + (1 if slipped else 0)
    await repository.record_eta(
        session, leg.id, pickup_eta=new.pickup_at, dropoff_eta=new.dropoff_at, at=now, late=late, slips=slips
    )
    leg.pickup_eta, leg.dropoff_eta, leg.eta_at, leg.eta_late, leg.eta_slips = (
        new.pickup_at,
        new.dropoff_at,
        now,
        late,
        slips,
    )
    changes.add(
        LegEtaUpdated(
            task_id=leg.task_id,
            leg_id=leg.id,
            volunteer_id=leg.volunteer_id,
            leg_status=str(leg.status),
            pickup_eta=new.pickup_at,
            dropoff_eta=new.dropoff_at,
            deliver_by=leg.deliver_by,
            late=late,
            slipped=slipped,
            slip=slips,
        ),
        task_id=leg.task_id,
        volunteer_id=leg.volunteer_id,
    )


async def update_eta_of_holder(
    session: AsyncSession, leg: LegRow, *, now: datetime, policy: rules.EtaPolicy, changes: Changes
) -> None:
    """At assignment or pickup: estimate from where the holder is, or, just picked up, from the pickup."""
    if leg.volunteer_id is None:
        return
    if leg.status == LegStatus.ASSIGNED:
        # A new holder: the last one's estimates were cleared with the hand-over (`hand_leg`).
        leg.pickup_eta = leg.dropoff_eta = leg.eta_at = None
        leg.eta_late = False
    whereabouts = await repository.volunteer_whereabouts(session, leg.volunteer_id)
    if whereabouts is None:
        return
    lat, lon, vehicle = whereabouts
    position = _position(lat, lon)
    if leg.status == LegStatus.PICKED_UP:
        # Whoever reports a pickup stands at the pickup, whatever their last fix said.
        position = (leg.pickup_lat, leg.pickup_lon)
    await update_eta(
        session, leg, position=position, vehicle=vehicle, now=now, policy=policy, changes=changes
    )


async def refresh_etas(
    session: AsyncSession, *, volunteer_ids: Sequence[uuid.UUID], now: datetime, policy: rules.EtaPolicy
) -> Changes:
    """After these volunteers' fixes: re-estimate every leg they have under way."""
    changes = Changes()
    for leg, lat, lon, vehicle in await repository.lock_legs_en_route(session, volunteer_ids=volunteer_ids):
        await update_eta(
            session,
            leg,
            position=_position(lat, lon),
            vehicle=vehicle,
            now=now,
            policy=policy,
            changes=changes,
        )
    return changes
