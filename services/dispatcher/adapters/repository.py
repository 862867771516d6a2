"""The dispatcher's reads and writes of legs, offers and volunteers, with the locks each one needs.

Every function runs in the caller's session and transaction. Writers lock legs before offers before
volunteers (and legs by id), so two writers never wait on each other crosswise.
"""

from __future__ import annotations

import hashlib
import json
import uuid
import zlib
from collections.abc import AsyncIterator, Collection, Sequence
from datetime import date, datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Table,
    and_,
    case,
    delete,
    func,
    literal,
    literal_column,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.dispatcher.adapters.tables import (
    PRIORITY_RANK_SQL,
    EnrolmentLinkRow,
    EscalationRow,
    InviteCodeRow,
    LegEscalationRow,
    LegRow,
    OfferRow,
    PhotoRow,
    RejectionRow,
    RouteRow,
    VettingRecordRow,
    VolunteerRequestRow,
    VolunteerRow,
)
from services.dispatcher.domain.leg import ENDED, IN_HAND, WAITING, LegStatus
from services.dispatcher.domain.offer import OfferStatus
from shared import audit
from shared.auth import ApiToken
from shared.db import snapshot_xmin

# The PostgreSQL channel a volunteer's id is sent on when their offers or legs change.
VOLUNTEER_CHANNEL = "dispatch_volunteer"
# Notified when an urgent or critical leg is taken in: every replica's matcher starts a round.
PRESSING_CHANNEL = "dispatch_pressing_leg"
# How many legs a take-in added (the payload): a full batch starts a round before its window ends.
LEGS_CHANNEL = "dispatch_legs_taken_in"


# --- legs


_LEGS = cast(Table, LegRow.__table__)


async def add_legs(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """New legs; one already taken in (a replayed event) is left as it is.

    Through the table, not the ORM's bulk insert: legs are taken in one statement per task, 200 a
    second under load, and the ORM's per-statement work cost a tenth of the dispatcher's time."""
    await session.execute(insert(_LEGS).on_conflict_do_nothing(), rows)


def _waiting(now: datetime, planned_for: timedelta = timedelta(0)) -> ColumnElement[bool]:
    """Legs a round at `now` may offer: pending, and ready for pickup; one posted ahead (ready after
    it was submitted) only once it has been ready for `planned_for` (until then it is the planner's,
    `planned_legs`)."""
    ready: ColumnElement[bool] = (LegRow.ready_at.is_(None)) | (LegRow.ready_at <= now)
    if planned_for > timedelta(0):
        ready = or_(
            LegRow.ready_at.is_(None),
            and_(LegRow.ready_at <= LegRow.submitted_at, LegRow.ready_at <= now),
            LegRow.ready_at <= now - planned_for,
        )
    return and_(LegRow.status == LegStatus.PENDING, ready)


async def planned_legs(
    session: AsyncSession, *, now: datetime, ahead: timedelta, planned_for: timedelta, limit: int
) -> list[tuple[LegRow, list[uuid.UUID] | None]]:
    """Lock the legs the planner plans at `now`: pending, posted ahead (ready after they were
    submitted), ready within `ahead` and not ready for `planned_for` yet; soonest ready first, at
    most `limit`, with who turned each down. Legs another transaction holds are skipped."""
    rejected_by = (
        select(func.array_agg(RejectionRow.volunteer_id))
        .where(RejectionRow.leg_id == LegRow.id)
        .scalar_subquery()
    )
    rows = await session.execute(
        select(LegRow, rejected_by)
        .where(
            LegRow.status == LegStatus.PENDING,
            LegRow.ready_at > LegRow.submitted_at,
            LegRow.ready_at <= now + ahead,
            LegRow.ready_at > now - planned_for,
        )
        .order_by(LegRow.ready_at, LegRow.submitted_at)
        .limit(limit)
        .with_for_update(of=LegRow, skip_locked=True)
    )
    return [(leg, ids) for leg, ids in rows.all()]


# One replica plans the legs posted ahead at a time (`offers.plan_batch`).
PLANNER_LOCK_KEY = zlib.crc32(b"errands-dispatcher:planner")


async def try_lock_planner(session: AsyncSession) -> bool:
    """Whether this transaction now holds the planner's lock (it ends with the transaction)."""
    return bool(await session.scalar(select(func.pg_try_advisory_xact_lock(PLANNER_LOCK_KEY))))


async def waiting_pickups(
    session: AsyncSession, *, now: datetime, planned_for: timedelta = timedelta(0)
) -> tuple[tuple[float, float, float, float], list[uuid.UUID]] | None:
    """The box around the pickups of the legs waiting now (lat_min, lat_max, lon_min, lon_max), and
    their organisations; None while no leg waits."""
    lat_min, lat_max, lon_min, lon_max, organisations = (
        await session.execute(
            select(
                func.min(LegRow.pickup_lat),
                func.max(LegRow.pickup_lat),
                func.min(LegRow.pickup_lon),
                func.max(LegRow.pickup_lon),
                func.array_agg(LegRow.organisation_id.distinct()),
            ).where(_waiting(now, planned_for))
        )
    ).one()
    if lat_min is None:
        return None
    return (lat_min, lat_max, lon_min, lon_max), list(organisations)


async def take_waiting_legs(
    session: AsyncSession, *, now: datetime, limit: int, planned_for: timedelta = timedelta(0)
) -> list[tuple[LegRow, list[uuid.UUID] | None]]:
    """Lock up to `limit` waiting legs for a round, stamped as considered now, with who turned each down.

    Critical legs before urgent before routine, and vulnerable recipients first among equals, however
    many wait and whenever they came; then the least recently considered, so a leg nobody could take
    does not keep newer ones of its rank out of a full batch; then the oldest. Legs another round
    holds are skipped. The order is `ix_legs_pending_priority`'s, so the round reads no more rows
    than it takes. Returned in order of submission.
    """
    picked = (
        select(LegRow.id)
        .where(_waiting(now, planned_for))
        .order_by(
            literal_column(PRIORITY_RANK_SQL),
            LegRow.vulnerable.desc(),
            LegRow.considered_at.asc().nulls_first(),
            LegRow.submitted_at,
        )
        .limit(limit)
        .with_for_update(skip_locked=True)
        .cte("picked")
    )
    rejected_by = (
        select(func.array_agg(RejectionRow.volunteer_id))
        .where(RejectionRow.leg_id == LegRow.id)
        .scalar_subquery()
    )
    rows = (
        await session.execute(
            update(LegRow)
            .where(LegRow.id.in_(select(picked.c.id)))
            .values(considered_at=now)
            .returning(LegRow, rejected_by),
            execution_options={"synchronize_session": False},
        )
    ).all()
    return sorted(((leg, ids) for leg, ids in rows), key=lambda row: row[0].submitted_at)


async def lock_leg(session: AsyncSession, leg_id: uuid.UUID) -> LegRow | None:
    return (
        await session.execute(select(LegRow).where(LegRow.id == leg_id).with_for_update())
    ).scalar_one_or_none()


async def lock_volunteers_leg(
    session: AsyncSession, *, leg_id: uuid.UUID, volunteer_id: uuid.UUID
) -> LegRow | None:
    """The leg, locked, if this volunteer holds it."""
    return (
        await session.execute(
            select(LegRow).where(LegRow.id == leg_id, LegRow.volunteer_id == volunteer_id).with_for_update()
        )
    ).scalar_one_or_none()


async def lock_organisations_leg(
    session: AsyncSession, *, leg_id: uuid.UUID, organisation_id: uuid.UUID
) -> LegRow | None:
    """The leg, locked, if it belongs to this organisation."""
    return (
        await session.execute(
            select(LegRow)
            .where(LegRow.id == leg_id, LegRow.organisation_id == organisation_id)
            .with_for_update()
        )
    ).scalar_one_or_none()


async def lock_task_legs(
    session: AsyncSession, *, task_id: uuid.UUID, organisation_id: uuid.UUID
) -> list[LegRow]:
    """A task's legs, locked in id order."""
    return list(
        (
            await session.execute(
                select(LegRow)
                .where(LegRow.task_id == task_id, LegRow.organisation_id == organisation_id)
                .order_by(LegRow.id)
                .with_for_update()
            )
        ).scalars()
    )


async def lock_assigned_leg_ids(session: AsyncSession, *, volunteer_id: uuid.UUID) -> list[uuid.UUID]:
    """The legs assigned to the volunteer and not yet picked up, locked in id order."""
    return list(
        (
            await session.execute(
                select(LegRow.id)
                .where(LegRow.volunteer_id == volunteer_id, LegRow.status == LegStatus.ASSIGNED)
                .order_by(LegRow.id)
                .with_for_update()
            )
        ).scalars()
    )


async def lock_volunteers_legs(
    session: AsyncSession,
    *,
    volunteer_id: uuid.UUID,
    organisation_id: uuid.UUID,
    statuses: Sequence[LegStatus],
) -> list[LegRow]:
    """The volunteer's legs in these statuses, of this organisation only, locked in id order."""
    return list(
        (
            await session.execute(
                select(LegRow)
                .where(
                    LegRow.volunteer_id == volunteer_id,
                    LegRow.organisation_id == organisation_id,
                    LegRow.status.in_([str(status) for status in statuses]),
                )
                .order_by(LegRow.id)
                .with_for_update()
            )
        ).scalars()
    )


async def move_legs(
    session: AsyncSession,
    leg_ids: Sequence[uuid.UUID],
    to: LegStatus,
    *,
    now: datetime | None = None,
    only_from: LegStatus | None = None,
) -> None:
    """Move these legs to `to`, stamped `now` (else the transaction's time); with `only_from`, only
    those still in that status. Who holds them does not change."""
    statement = update(LegRow).where(LegRow.id.in_(list(leg_ids)))
    if only_from is not None:
        statement = statement.where(LegRow.status == only_from)
    await session.execute(statement.values(status=to, updated_at=func.now() if now is None else now))


async def record_leg_times(
    session: AsyncSession,
    leg_id: uuid.UUID,
    *,
    picked_up_at: datetime | None = None,
    delivered_at: datetime | None = None,
) -> None:
    """Keep when the volunteer said they picked the leg up or delivered it."""
    values = {name: at for name, at in (("picked_up_at", picked_up_at), ("delivered_at", delivered_at)) if at}
    if values:
        await session.execute(update(LegRow).where(LegRow.id == leg_id).values(**values))


async def hand_leg(
    session: AsyncSession, leg_id: uuid.UUID, *, to: LegStatus, holder: uuid.UUID | None, now: datetime
) -> None:
    """Move the leg to `to` and give it to `holder` (None: nobody holds it); the last holder's
    estimates go with them."""
    await session.execute(
        update(LegRow)
        .where(LegRow.id == leg_id)
        .values(
            status=to,
            volunteer_id=holder,
            updated_at=now,
            pickup_eta=None,
            dropoff_eta=None,
            eta_at=None,
            eta_late=False,
        )
    )


async def move_pickup(
    session: AsyncSession, leg_id: uuid.UUID, *, lat: float, lon: float, details: dict[str, Any]
) -> None:
    """The leg is picked up at (lat, lon) from now on, as `details` describe it to the volunteer; it
    is ready there at once."""
    await session.execute(
        update(LegRow)
        .where(LegRow.id == leg_id)
        .values(pickup_lat=lat, pickup_lon=lon, ready_at=None, details=details)
    )


async def release_delivered_legs(
    session: AsyncSession, leg_ids: Sequence[uuid.UUID], *, at: datetime
) -> None:
    """These delivered legs leave their volunteer's list without a confirmation (their task was
    cancelled): the volunteer has nothing more to do for them."""
    if leg_ids:
        await session.execute(
            update(LegRow)
            .where(LegRow.id.in_(list(leg_ids)), LegRow.status == LegStatus.DELIVERED)
            .values(released_at=at, updated_at=at)
        )


async def mark_task_cancelled(session: AsyncSession, leg_ids: Sequence[uuid.UUID], *, at: datetime) -> None:
    """These legs, waiting for an operator's decision, belong to a task cancelled at `at`."""
    if leg_ids:
        await session.execute(update(LegRow).where(LegRow.id.in_(list(leg_ids))).values(released_at=at))


async def flag_leg(session: AsyncSession, *, leg_id: uuid.UUID, at: datetime) -> None:
    """Stamp the leg flagged at `at`, unless it is already."""
    await session.execute(
        update(LegRow)
        .where(LegRow.id == leg_id, LegRow.flagged_at.is_(None))
        .values(flagged_at=at, updated_at=func.now())
    )


async def unescalated_waiting_legs(
    session: AsyncSession, *, now: datetime, limit: int
) -> list[tuple[uuid.UUID, uuid.UUID, datetime, datetime | None]]:
    """Legs ready and still waiting for a volunteer whose task has not been escalated, oldest first:
    id, task id, since when it has waited (its submission, or when it became ready if later: a leg
    posted ahead waits from then) and deadline."""
    rows = (
        await session.execute(
            select(
                LegRow.id,
                LegRow.task_id,
                func.greatest(LegRow.submitted_at, func.coalesce(LegRow.ready_at, LegRow.submitted_at)),
                LegRow.deliver_by,
            )
            .where(
                LegRow.status.in_(sorted(WAITING)),
                (LegRow.ready_at.is_(None)) | (LegRow.ready_at <= now),
                ~select(EscalationRow.task_id).where(EscalationRow.task_id == LegRow.task_id).exists(),
            )
            .order_by(LegRow.submitted_at)
            .limit(limit)
        )
    ).all()
    return [(leg_id, task_id, since, deliver_by) for leg_id, task_id, since, deliver_by in rows]


async def record_escalation(session: AsyncSession, *, task_id: uuid.UUID, reason: str, at: datetime) -> bool:
    """Whether this transaction escalated the task: the primary key lets only one replica do so."""
    inserted = await session.scalar(
        insert(EscalationRow)
        .values(task_id=task_id, reason=reason, escalated_at=at)
        .on_conflict_do_nothing()
        .returning(EscalationRow.task_id)
    )
    return inserted is not None


# --- estimates and escalations of single legs

_EN_ROUTE = (LegStatus.ASSIGNED.value, LegStatus.PICKED_UP.value)


async def lock_legs_en_route(
    session: AsyncSession, *, volunteer_ids: Sequence[uuid.UUID]
) -> list[tuple[LegRow, float | None, float | None, str]]:
    """The assigned and picked-up legs these volunteers hold, in their own organisation, with each
    holder's last position and vehicle; legs another transaction holds are skipped (the next fix
    refreshes them), so a refresh never waits on an accept or a delivery."""
    if not volunteer_ids:
        return []
    rows = (
        await session.execute(
            select(LegRow, VolunteerRow.lat, VolunteerRow.lon, VolunteerRow.vehicle)
            .join(VolunteerRow, VolunteerRow.id == LegRow.volunteer_id)
            .where(
                LegRow.volunteer_id.in_(list(volunteer_ids)),
                LegRow.status.in_(_EN_ROUTE),
                LegRow.organisation_id == VolunteerRow.organisation_id,
            )
            .order_by(LegRow.id)
            .with_for_update(of=LegRow, skip_locked=True)
        )
    ).all()
    return [(leg, lat, lon, vehicle) for leg, lat, lon, vehicle in rows]


async def volunteer_whereabouts(
    session: AsyncSession, volunteer_id: uuid.UUID
) -> tuple[float | None, float | None, str] | None:
    """A volunteer's last position and vehicle, unlocked."""
    row = (
        await session.execute(
            select(VolunteerRow.lat, VolunteerRow.lon, VolunteerRow.vehicle).where(
                VolunteerRow.id == volunteer_id
            )
        )
    ).first()
    return None if row is None else (row.lat, row.lon, row.vehicle)


async def record_eta(
    session: AsyncSession,
    leg_id: uuid.UUID,
    *,
    pickup_eta: datetime | None,
    dropoff_eta: datetime,
    at: datetime,
    late: bool,
    slips: int,
) -> None:
    """Keep the estimates just published; not a change of status, so `updated_at` stays."""
    await session.execute(
        update(LegRow)
        .where(LegRow.id == leg_id)
        .values(pickup_eta=pickup_eta, dropoff_eta=dropoff_eta, eta_at=at, eta_late=late, eta_slips=slips)
    )


def status_since() -> ColumnElement[datetime]:
    """When a leg entered its status: its last change, never before submission, and a pending leg
    not before it is ready for pickup."""
    return func.greatest(
        LegRow.submitted_at,
        LegRow.updated_at,
        case((LegRow.status == LegStatus.PENDING, LegRow.ready_at), else_=None),
    )


async def overdue_legs(
    session: AsyncSession,
    *,
    now: datetime,
    wait_limits_s: dict[str, float],
    will_miss_reason: str,
    repeat_s: float,
    limit: int,
) -> list[tuple[LegRow, datetime]]:
    """Legs that may be due an escalation of their own, with when they entered their status: too
    long in their status, or with a deadline their estimate (or now) is past, and not escalated for
    that reason within `repeat_s`. The domain decides; this only narrows the search."""
    since = status_since()
    limit_of_status = case(
        *((LegRow.status == status, literal(limit_s)) for status, limit_s in wait_limits_s.items()),
        else_=None,
    )
    recent = now - timedelta(seconds=repeat_s)

    def not_recently(reason: ColumnElement[str]) -> ColumnElement[bool]:
        return ~(
            select(LegEscalationRow.leg_id)
            .where(
                LegEscalationRow.leg_id == LegRow.id,
                LegEscalationRow.reason == reason,
                LegEscalationRow.escalated_at > recent,
            )
            .exists()
        )

    waited = and_(
        since < literal(now) - limit_of_status * literal_column("interval '1 second'"),
        not_recently(literal("waited_too_long_") + LegRow.status),
    )
    will_miss = and_(
        LegRow.deliver_by < func.greatest(LegRow.dropoff_eta, now),
        not_recently(literal(will_miss_reason)),
    )
    rows = (
        await session.execute(
            select(LegRow, since)
            .where(LegRow.status.in_(list(wait_limits_s)), waited | will_miss)
            .order_by(since)
            .limit(limit)
        )
    ).all()
    return [(leg, entered) for leg, entered in rows]


async def record_leg_escalation(
    session: AsyncSession, *, leg_id: uuid.UUID, reason: str, at: datetime, repeat_s: float
) -> bool:
    """Whether this transaction escalates the leg for `reason`: the key and the repeat interval let
    one replica, once per interval, do so."""
    statement = insert(LegEscalationRow).values(leg_id=leg_id, reason=reason, escalated_at=at)
    inserted = await session.scalar(
        statement.on_conflict_do_update(
            index_elements=[LegEscalationRow.leg_id, LegEscalationRow.reason],
            set_={"escalated_at": statement.excluded.escalated_at},
            where=LegEscalationRow.escalated_at <= at - timedelta(seconds=repeat_s),
        ).returning(LegEscalationRow.leg_id)
    )
    return inserted is not None


def _own_organisation(volunteer_id: uuid.UUID) -> ColumnElement[bool]:
    return LegRow.organisation_id == (
        select(VolunteerRow.organisation_id).where(VolunteerRow.id == volunteer_id).scalar_subquery()
    )


async def legs_in_hand(session: AsyncSession, *, volunteer_id: uuid.UUID) -> list[LegRow]:
    """The legs a volunteer holds until confirmed, of their own organisation only, oldest change first."""
    return list(
        (
            await session.execute(
                select(LegRow)
                .where(
                    LegRow.volunteer_id == volunteer_id,
                    LegRow.status.in_([s.value for s in LegStatus if s in IN_HAND]),
                    LegRow.released_at.is_(None),
                    _own_organisation(volunteer_id),
                )
                .order_by(LegRow.updated_at)
            )
        ).scalars()
    )


# --- offers and rejections


# A round's writes in one statement: each data-modifying part sees none of the others' rows, but the
# foreign keys (a leg's route) are checked when the whole statement is done.
_OFFER_ROUND_SQL = text(
    "WITH new_routes AS ("
    " INSERT INTO dispatch.routes (id, organisation_id, volunteer_id, status, stops)"
    " SELECT r.id, r.organisation_id, r.volunteer_id, :route_status, CAST(r.stops AS jsonb)"
    " FROM unnest(CAST(:route_ids AS uuid[]), CAST(:route_organisations AS uuid[]),"
    " CAST(:route_volunteers AS uuid[]), CAST(:route_stops AS text[]))"
    " AS r(id, organisation_id, volunteer_id, stops)"
    "), new_offers AS ("
    " INSERT INTO dispatch.offers"
    " (id, leg_id, volunteer_id, status, distance_m, created_at, expires_at, route_id, route_stops)"
    " SELECT o.id, o.leg_id, o.volunteer_id, :offer_status, o.distance_m, :now, :expires_at, o.route_id,"
    " CAST(o.stops AS jsonb)"
    " FROM unnest(CAST(:offer_ids AS uuid[]), CAST(:leg_ids AS uuid[]), CAST(:offer_volunteers AS uuid[]),"
    " CAST(:distances AS float8[]), CAST(:offer_routes AS uuid[]), CAST(:offer_stops AS text[]))"
    " AS o(id, leg_id, volunteer_id, distance_m, route_id, stops)"
    ") "
    "UPDATE dispatch.legs AS l SET status = :leg_status, route_id = v.route_id, updated_at = :now "
    "FROM unnest(CAST(:leg_ids AS uuid[]), CAST(:offer_routes AS uuid[])) AS v(id, route_id) "
    "WHERE l.id = v.id"
)


async def add_round_offers(
    session: AsyncSession,
    *,
    routes: Sequence[dict[str, Any]],
    offers: Sequence[dict[str, Any]],
    now: datetime,
    expires_at: datetime,
) -> None:
    """A matching round's writes, in one statement: its new routes (`id`, `organisation_id`,
    `volunteer_id`, `stops`; offered), its live offers (`id`, `leg_id`, `volunteer_id`,
    `distance_m`, `route_id`, `route_stops`; made `now`, lapsing at `expires_at`), and their legs
    offered, each in its offer's route.

    One round trip where there were three (routes, offers, legs): every leg of the round waits for
    these writes before its offer goes out. Stops are stored as the ORM stores them (JSON, `None`
    as JSON null).
    """
    if not offers:
        return
    await session.execute(
        _OFFER_ROUND_SQL,
        {
            "route_status": "offered",
            "route_ids": [route["id"] for route in routes],
            "route_organisations": [route["organisation_id"] for route in routes],
            "route_volunteers": [route["volunteer_id"] for route in routes],
            "route_stops": [json.dumps(route["stops"]) for route in routes],
            "offer_status": str(OfferStatus.LIVE),
            "now": now,
            "expires_at": expires_at,
            "offer_ids": [offer["id"] for offer in offers],
            "leg_ids": [offer["leg_id"] for offer in offers],
            "offer_volunteers": [offer["volunteer_id"] for offer in offers],
            "distances": [float(offer["distance_m"]) for offer in offers],
            "offer_routes": [offer["route_id"] for offer in offers],
            "offer_stops": [json.dumps(offer["route_stops"]) for offer in offers],
            "leg_status": str(LegStatus.OFFERED),
        },
    )


async def lock_lapsed_offers(
    session: AsyncSession, *, now: datetime, limit: int = 1000
) -> list[tuple[OfferRow, uuid.UUID]]:
    """Live offers past their time (`domain.offer.has_lapsed`), with their task ids, offer and leg locked.

    Skips pairs an accept or decline holds: they lock leg and offer together, and expiring an offer
    whose leg they hold would deadlock with them.
    """
    rows = (
        await session.execute(
            select(OfferRow, LegRow.task_id)
            .join(LegRow, LegRow.id == OfferRow.leg_id)
            .where(OfferRow.status == OfferStatus.LIVE, OfferRow.expires_at <= now)
            .limit(limit)
            .with_for_update(of=(OfferRow, LegRow), skip_locked=True)
        )
    ).all()
    return [(offer, task_id) for offer, task_id in rows]


async def lock_volunteers_offer(
    session: AsyncSession, *, offer_id: uuid.UUID, volunteer_id: uuid.UUID
) -> tuple[OfferRow, LegRow] | None:
    """The volunteer's offer and its leg, both locked; None when the offer is not theirs."""
    row = (
        await session.execute(
            select(OfferRow, LegRow)
            .join(LegRow, LegRow.id == OfferRow.leg_id)
            .where(OfferRow.id == offer_id, OfferRow.volunteer_id == volunteer_id)
            .with_for_update(of=(LegRow, OfferRow))
        )
    ).one_or_none()
    return None if row is None else (row[0], row[1])


async def decide_offer(
    session: AsyncSession, *, offer_id: uuid.UUID, status: OfferStatus, now: datetime
) -> None:
    """Close an offer: accepted, declined or expired."""
    await session.execute(
        update(OfferRow).where(OfferRow.id == offer_id).values(status=status, decided_at=now)
    )


async def withdraw_live_offers(
    session: AsyncSession, *, leg_ids: list[uuid.UUID], now: datetime
) -> set[uuid.UUID]:
    """Withdraw the live offers of these legs; returns the volunteers who held them."""
    if not leg_ids:
        return set()
    held = await session.execute(
        update(OfferRow)
        .where(OfferRow.leg_id.in_(leg_ids), OfferRow.status == OfferStatus.LIVE)
        .values(status=OfferStatus.WITHDRAWN, decided_at=now)
        .returning(OfferRow.volunteer_id)
    )
    return set(held.scalars())


async def remember_rejection(session: AsyncSession, *, leg_id: uuid.UUID, volunteer_id: uuid.UUID) -> None:
    """The leg is not offered to this volunteer again."""
    await session.execute(
        insert(RejectionRow).values(leg_id=leg_id, volunteer_id=volunteer_id).on_conflict_do_nothing()
    )


async def open_offers(session: AsyncSession, *, volunteer_id: uuid.UUID) -> list[tuple[OfferRow, LegRow]]:
    """The volunteer's live offers with their legs, of their own organisation only, oldest first."""
    rows = (
        await session.execute(
            select(OfferRow, LegRow)
            .join(LegRow, LegRow.id == OfferRow.leg_id)
            .where(
                OfferRow.volunteer_id == volunteer_id,
                OfferRow.status == OfferStatus.LIVE,
                _own_organisation(volunteer_id),
            )
            .order_by(OfferRow.created_at)
        )
    ).all()
    return [(offer, leg) for offer, leg in rows]


async def live_offer_counts(
    session: AsyncSession, volunteer_ids: Collection[uuid.UUID] | None = None
) -> dict[uuid.UUID, int]:
    """How many live offers each volunteer holding one holds (of `volunteer_ids`, when given)."""
    query = select(OfferRow.volunteer_id, func.count()).where(OfferRow.status == OfferStatus.LIVE)
    if volunteer_ids is not None:
        if not volunteer_ids:
            return {}
        query = query.where(OfferRow.volunteer_id.in_(volunteer_ids))
    rows = await session.execute(query.group_by(OfferRow.volunteer_id))
    return {volunteer_id: count for volunteer_id, count in rows.all()}


# --- routes


async def add_routes(session: AsyncSession, routes: list[dict[str, Any]]) -> None:
    if routes:
        await session.execute(insert(RouteRow), routes)


async def return_offered_legs(session: AsyncSession, leg_ids: Sequence[uuid.UUID], *, now: datetime) -> None:
    """These legs, if still offered, are pending again and out of the route they were offered in."""
    await session.execute(
        update(LegRow)
        .where(LegRow.id.in_(list(leg_ids)), LegRow.status == LegStatus.OFFERED)
        .values(status=LegStatus.PENDING, route_id=None, updated_at=now)
    )


async def lock_route(session: AsyncSession, route_id: uuid.UUID) -> RouteRow | None:
    return (
        await session.execute(
            select(RouteRow)
            .where(RouteRow.id == route_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).scalar_one_or_none()


async def lock_routes(session: AsyncSession, route_ids: Collection[uuid.UUID | None]) -> None:
    """Lock these routes, in id order. Writers take legs, then routes, then volunteers: one that
    will change a leg's route and a volunteer's count takes the route first."""
    wanted = sorted({route_id for route_id in route_ids if route_id is not None})
    if wanted:
        await session.execute(
            select(RouteRow.id).where(RouteRow.id.in_(wanted)).order_by(RouteRow.id).with_for_update()
        )


async def hold_free_routes(session: AsyncSession, route_ids: Collection[uuid.UUID]) -> set[uuid.UUID]:
    """Of these routes, those no other transaction is changing, held against such a change until
    commit (FOR KEY SHARE, what an offer referring to the route takes anyway); the rest skipped."""
    rows = await session.execute(
        select(RouteRow.id)
        .where(RouteRow.id.in_(route_ids))
        .with_for_update(key_share=True, skip_locked=True)
    )
    return set(rows.scalars())


async def lock_active_route(session: AsyncSession, volunteer_id: uuid.UUID) -> RouteRow | None:
    """The volunteer's accepted route, locked, if they have one."""
    return (
        await session.execute(
            select(RouteRow)
            .where(RouteRow.volunteer_id == volunteer_id, RouteRow.status == "active")
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).scalar_one_or_none()


async def routes_by_id(session: AsyncSession, route_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, RouteRow]:
    if not route_ids:
        return {}
    rows = await session.execute(select(RouteRow).where(RouteRow.id.in_(list(route_ids))))
    return {row.id: row for row in rows.scalars()}


async def active_routes(
    session: AsyncSession, volunteer_ids: Collection[uuid.UUID]
) -> list[tuple[RouteRow, dict[uuid.UUID, str]]]:
    """The accepted routes of these volunteers, unlocked, each with the status of every leg still on it."""
    if not volunteer_ids:
        return []
    routes = list(
        (
            await session.execute(
                select(RouteRow).where(
                    RouteRow.volunteer_id.in_(list(volunteer_ids)), RouteRow.status == "active"
                )
            )
        ).scalars()
    )
    statuses = await route_leg_statuses(session, [route.id for route in routes])
    return [(route, statuses.get(route.id, {})) for route in routes]


async def route_leg_statuses(
    session: AsyncSession, route_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, dict[uuid.UUID, str]]:
    """By route: the status of each leg on it."""
    found: dict[uuid.UUID, dict[uuid.UUID, str]] = {}
    if route_ids:
        rows = await session.execute(
            select(LegRow.route_id, LegRow.id, LegRow.status).where(LegRow.route_id.in_(list(route_ids)))
        )
        for route_id, leg_id, status in rows.all():
            if route_id is not None:
                found.setdefault(route_id, {})[leg_id] = status
    return found


async def set_route(
    session: AsyncSession, route_id: uuid.UUID, *, stops: list[dict[str, Any]], status: str, now: datetime
) -> None:
    """The route's stops as planned now, and its status; while it is only offered, its live offers
    show the new stops too (an offer to insert a leg into an accepted route keeps its own)."""
    await session.execute(
        update(RouteRow).where(RouteRow.id == route_id).values(stops=stops, status=status, updated_at=now)
    )
    if status != "offered":
        return
    await session.execute(
        update(OfferRow)
        .where(OfferRow.route_id == route_id, OfferRow.status == OfferStatus.LIVE)
        .values(route_stops=stops)
    )


async def put_legs_on_route(
    session: AsyncSession, leg_ids: Sequence[uuid.UUID], route_id: uuid.UUID | None
) -> None:
    if leg_ids:
        await session.execute(update(LegRow).where(LegRow.id.in_(list(leg_ids))).values(route_id=route_id))


async def end_unoffered_routes(
    session: AsyncSession, route_ids: Collection[uuid.UUID], *, now: datetime
) -> None:
    """Routes still only offered whose offers are all closed now (declined, expired, withdrawn) end."""
    if route_ids:
        await session.execute(
            update(RouteRow)
            .where(
                RouteRow.id.in_(list(route_ids)),
                RouteRow.status == "offered",
                ~select(OfferRow.id)
                .where(OfferRow.route_id == RouteRow.id, OfferRow.status == OfferStatus.LIVE)
                .exists(),
            )
            .values(status="ended", updated_at=now)
        )


async def proposed_route(
    session: AsyncSession, *, offer_id: uuid.UUID, volunteer_id: uuid.UUID
) -> uuid.UUID | None:
    """The new route the volunteer's offer proposes, unlocked; None when it proposes none (a leg to
    insert into a route already accepted is offered on its own), or is no offer of theirs."""
    return (
        await session.execute(
            select(OfferRow.route_id)
            .join(RouteRow, RouteRow.id == OfferRow.route_id)
            .where(
                OfferRow.id == offer_id, OfferRow.volunteer_id == volunteer_id, RouteRow.status == "offered"
            )
        )
    ).scalar_one_or_none()


async def lock_route_offers(
    session: AsyncSession, *, route_id: uuid.UUID, volunteer_id: uuid.UUID
) -> list[tuple[OfferRow, LegRow]]:
    """The volunteer's live offers in this route with their legs, locked in leg id order."""
    rows = (
        await session.execute(
            select(OfferRow, LegRow)
            .join(LegRow, LegRow.id == OfferRow.leg_id)
            .where(
                OfferRow.route_id == route_id,
                OfferRow.volunteer_id == volunteer_id,
                OfferRow.status == OfferStatus.LIVE,
            )
            .order_by(LegRow.id)
            .with_for_update(of=(LegRow, OfferRow))
        )
    ).all()
    return [(offer, leg) for offer, leg in rows]


# --- volunteers

# Only what eligibility and matching read: whole ORM entities (identity map, instance state) for
# every volunteer on duty would cost far more memory and CPU.
MATCHING_COLUMNS = (
    VolunteerRow.id,
    VolunteerRow.organisation_id,
    VolunteerRow.on_duty,
    VolunteerRow.insured,
    VolunteerRow.insured_until,
    VolunteerRow.vetting_status,
    VolunteerRow.vehicle,
    VolunteerRow.capacity_kg,
    VolunteerRow.skills,
    VolunteerRow.languages,
    VolunteerRow.max_active_legs,
    VolunteerRow.active_legs,
    VolunteerRow.lat,
    VolunteerRow.lon,
    VolunteerRow.location_at,
    VolunteerRow.duty_started_at,
    VolunteerRow.rest_until,
    VolunteerRow.legs_done_today,
    VolunteerRow.shift_duty_s,
    VolunteerRow.off_duty_at,
    VolunteerRow.duty_day,
    VolunteerRow.duty_today_s,
    VolunteerRow.legs_day,
)


# Rows of `matchable_volunteers` held at once: the first read takes everyone on duty.
MATCHABLE_BATCH = 2000


async def matchable_volunteers(
    session: AsyncSession, *, changed_since: int | None
) -> AsyncIterator[Sequence[Any]]:
    """The `MATCHING_COLUMNS` of the rows changed since transaction `changed_since` (None: all on duty
    and insured), each with `since`: the oldest transaction running when they were read.

    Every older transaction had committed or aborted, so its writes are in this read; younger ones
    are read next time. In batches of `MATCHABLE_BATCH` from one server-side cursor (one statement,
    one snapshot): the first read of 100,000 on duty held every row at once, and the heap kept the
    peak (70 MB of the dispatcher's resident memory after the read, measured).
    """
    query = select(*MATCHING_COLUMNS, snapshot_xmin().label("since"))
    if changed_since is None:
        query = query.where(VolunteerRow.on_duty.is_(True), VolunteerRow.insured.is_(True))
    else:
        query = query.where(VolunteerRow.changed_xid >= changed_since)
    result = await session.stream(query.execution_options(yield_per=MATCHABLE_BATCH))
    async for rows in result.partitions():
        yield rows


async def lock_volunteer(session: AsyncSession, volunteer_id: uuid.UUID) -> VolunteerRow:
    """The volunteer, locked; they must exist."""
    return (
        await session.execute(select(VolunteerRow).where(VolunteerRow.id == volunteer_id).with_for_update())
    ).scalar_one()


async def lock_organisations_volunteer(
    session: AsyncSession, *, volunteer_id: uuid.UUID, organisation_id: uuid.UUID, reread: bool = False
) -> VolunteerRow | None:
    """The volunteer, locked, if they belong to this organisation; `reread` refreshes a loaded row."""
    statement = (
        select(VolunteerRow)
        .where(VolunteerRow.id == volunteer_id, VolunteerRow.organisation_id == organisation_id)
        .with_for_update()
    )
    if reread:
        statement = statement.execution_options(populate_existing=True)
    return (await session.execute(statement)).scalar_one_or_none()


async def lock_organisations_volunteers(
    session: AsyncSession, *, volunteer_ids: Collection[uuid.UUID], organisation_id: uuid.UUID
) -> dict[uuid.UUID, VolunteerRow]:
    """Those of these volunteers who belong to this organisation, locked in id order (reread)."""
    rows = await session.execute(
        select(VolunteerRow)
        .where(VolunteerRow.id.in_(sorted(volunteer_ids)), VolunteerRow.organisation_id == organisation_id)
        .order_by(VolunteerRow.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return {row.id: row for row in rows.scalars()}


async def find_volunteer(
    session: AsyncSession, *, volunteer_id: uuid.UUID, organisation_id: uuid.UUID | None, lock: bool = False
) -> VolunteerRow | None:
    """The volunteer, if they belong to `organisation_id` (None: any organisation)."""
    statement = select(VolunteerRow).where(VolunteerRow.id == volunteer_id)
    if lock:
        statement = statement.with_for_update()
    if organisation_id is not None:
        statement = statement.where(VolunteerRow.organisation_id == organisation_id)
    return (await session.execute(statement)).scalar_one_or_none()


async def volunteers_page(
    session: AsyncSession,
    *,
    organisation_id: uuid.UUID | None,
    on_duty: bool | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
    insured_until_within: tuple[date, date] | None = None,
) -> list[VolunteerRow]:
    """Up to `limit` volunteers in registration order, after the position `after` (time and id);
    with `insured_until_within` (first, last day), only the insured whose cover ends on one of those
    days."""
    statement = select(VolunteerRow).order_by(VolunteerRow.created_at, VolunteerRow.id).limit(limit)
    if organisation_id is not None:
        statement = statement.where(VolunteerRow.organisation_id == organisation_id)
    if on_duty is not None:
        statement = statement.where(VolunteerRow.on_duty.is_(on_duty))
    if insured_until_within is not None:
        first, last = insured_until_within
        statement = statement.where(
            VolunteerRow.insured.is_(True), VolunteerRow.insured_until.between(first, last)
        )
    if after is not None:
        created_at, after_id = after
        statement = statement.where(
            tuple_(VolunteerRow.created_at, VolunteerRow.id) > tuple_(literal(created_at), literal(after_id))
        )
    return list((await session.execute(statement)).scalars())


async def lock_free_volunteers(
    session: AsyncSession, volunteer_ids: list[uuid.UUID]
) -> list[tuple[uuid.UUID, uuid.UUID, int, tuple[str, str] | None]]:
    """Of these volunteers, those on duty that no other round holds, locked: id, organisation, free
    slots, and where an SMS on a new offer goes (phone, language) if they asked for one and have a
    phone, else None. Read under the lock, in the same statement: no round trip more per round."""
    rows = await session.execute(
        select(
            VolunteerRow.id,
            VolunteerRow.organisation_id,
            VolunteerRow.max_active_legs - VolunteerRow.active_legs,
            VolunteerRow.sms_on_offer,
            VolunteerRow.phone,
            VolunteerRow.sms_language,
            VolunteerRow.languages,
        )
        .where(VolunteerRow.id.in_(volunteer_ids), VolunteerRow.on_duty.is_(True))
        .with_for_update(of=VolunteerRow, skip_locked=True)
    )
    locked = rows.all()
    # Counted after the lock, in a statement of its own: the one above read the offers as they were
    # when it began, and a round of another replica may have committed offers to one of these
    # volunteers between then and the moment its lock came free.
    offered = await live_offer_counts(session, [row[0] for row in locked])
    return [
        (
            volunteer_id,
            organisation_id,
            free - offered.get(volunteer_id, 0),
            (phone, language or (languages[0] if languages else "zh")) if sms_on_offer and phone else None,
        )
        for volunteer_id, organisation_id, free, sms_on_offer, phone, language, languages in locked
    ]


async def change_load(
    session: AsyncSession, volunteer_id: uuid.UUID, *, active: int, done: int = 0, today: date | None = None
) -> None:
    """Add to the legs the volunteer carries (`active`) and has delivered on the local day `today` (`done`).

    A count kept for an earlier day starts again from `done`. The CHECK constraint on active_legs
    has the last word even if two writers race.
    """
    values: dict[str, Any] = {"active_legs": VolunteerRow.active_legs + active}
    if done:
        assert today is not None, "legs delivered count on a local day"
        values["legs_done_today"] = case(
            (VolunteerRow.legs_day == today, VolunteerRow.legs_done_today + done), else_=done
        )
        values["legs_day"] = today
    await session.execute(update(VolunteerRow).where(VolunteerRow.id == volunteer_id).values(**values))


# One statement: the newest fixes move the volunteers whose stored fix is older (or missing), and
# exactly those moves become outbox rows, in the same transaction.
_FLUSH = text(
    """
    WITH fix AS (
        SELECT * FROM unnest(
            CAST(:ids AS uuid[]), CAST(:lats AS float8[]), CAST(:lons AS float8[]),
            CAST(:ats AS timestamptz[]), CAST(:event_ids AS uuid[]), CAST(:payloads AS bytea[])
        ) AS f(id, lat, lon, at, event_id, payload)
    ), moved AS (
        UPDATE dispatch.volunteers AS v
        SET lat = fix.lat, lon = fix.lon, location_at = fix.at
        FROM fix
        WHERE v.id = fix.id AND (v.location_at IS NULL OR v.location_at < fix.at)
        RETURNING v.id
    )
    INSERT INTO dispatch.outbox (event_id, event_type, topic, key, payload)
    SELECT fix.event_id, :event_type, :topic, fix.id::text, fix.payload
    FROM fix JOIN moved ON moved.id = fix.id
    """
)


async def record_fixes(
    session: AsyncSession,
    *,
    volunteer_ids: list[uuid.UUID],
    fixes: list[tuple[float, float, datetime]],
    event_ids: list[uuid.UUID],
    payloads: list[bytes],
    event_type: str,
    topic: str,
) -> None:
    """Move each volunteer to their fix (lat, lon, time) unless they hold a newer one; each move also
    queues its event (id and payload, by volunteer) in the outbox."""
    await session.execute(
        _FLUSH,
        {
            "ids": volunteer_ids,
            "lats": [lat for lat, _, _ in fixes],
            "lons": [lon for _, lon, _ in fixes],
            "ats": [at for _, _, at in fixes],
            "event_ids": event_ids,
            "payloads": payloads,
            "event_type": event_type,
            "topic": topic,
        },
    )


# --- wake-ups


async def notify_volunteers(session: AsyncSession, volunteer_ids: set[uuid.UUID]) -> None:
    """Wake these volunteers' long polls when the transaction commits: one statement for them all."""
    if volunteer_ids:
        await session.execute(
            text("SELECT pg_notify(:channel, id) FROM unnest(CAST(:ids AS text[])) AS id"),
            {"channel": VOLUNTEER_CHANNEL, "ids": sorted(str(v) for v in volunteer_ids)},
        )


async def notify_taken_in(session: AsyncSession, *, legs: int, pressing: bool) -> None:
    """Tell every replica's matcher, when the transaction commits, that `legs` were taken in, and
    with `pressing` that one of them is urgent or critical (`matcher.RoundClock`): one statement."""
    statement = "SELECT pg_notify(:legs_channel, :legs)" + (", pg_notify(:channel, '')" if pressing else "")
    await session.execute(
        text(statement), {"legs_channel": LEGS_CHANNEL, "legs": str(legs), "channel": PRESSING_CHANNEL}
    )


# --- volunteers' requests sent with an Idempotency-Key


async def lock_volunteer_request(session: AsyncSession, *, volunteer_id: uuid.UUID, key: str) -> bool:
    """Hold the key for this transaction; False when another request with it is still running."""
    digest = hashlib.sha256(f"volunteer-request:{volunteer_id}:{key}".encode()).digest()
    lock_id = int.from_bytes(digest[:8], "big", signed=True)
    return bool((await session.execute(select(func.pg_try_advisory_xact_lock(lock_id)))).scalar_one())


async def volunteer_request(
    session: AsyncSession, *, volunteer_id: uuid.UUID, key: str
) -> VolunteerRequestRow | None:
    return (
        await session.execute(
            select(VolunteerRequestRow).where(
                VolunteerRequestRow.volunteer_id == volunteer_id, VolunteerRequestRow.key == key
            )
        )
    ).scalar_one_or_none()


async def add_volunteer_request(
    session: AsyncSession,
    *,
    volunteer_id: uuid.UUID,
    key: str,
    request_hash: str,
    status: int,
    response: dict[str, Any],
) -> None:
    await session.execute(
        insert(VolunteerRequestRow).values(
            volunteer_id=volunteer_id, key=key, request_hash=request_hash, status=status, response=response
        )
    )


async def purge_volunteer_requests(session: AsyncSession, *, retention_s: float) -> int:
    """Delete volunteers' request records older than `retention_s` (by the database clock)."""
    result = await session.execute(
        delete(VolunteerRequestRow).where(
            VolunteerRequestRow.created_at < func.now() - func.make_interval(0, 0, 0, 0, 0, 0, retention_s)
        )
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


# --- personal data --------------------------------------------------------------------------------


async def lock_legs_to_erase(session: AsyncSession, *, retention_s: float, limit: int) -> list[LegRow]:
    """Up to `limit` ended legs, last changed longer than `retention_s` ago, not yet erased; locked,
    skipping those another replica's job holds."""
    cutoff = func.now() - func.make_interval(0, 0, 0, 0, 0, 0, retention_s)
    query = (
        select(LegRow)
        .where(LegRow.erased_at.is_(None), LegRow.status.in_(ENDED), LegRow.updated_at < cutoff)
        .order_by(LegRow.updated_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list((await session.execute(query)).scalars())


async def take_leg_photos(session: AsyncSession, leg_ids: Collection[uuid.UUID]) -> list[PhotoRow]:
    """The legs' photos, their rows deleted: the caller deletes their bytes from the store."""
    if not leg_ids:
        return []
    taken = await session.execute(delete(PhotoRow).where(PhotoRow.leg_id.in_(leg_ids)).returning(PhotoRow))
    return list(taken.scalars())


async def erase_leg(session: AsyncSession, leg_id: uuid.UUID, *, details: dict[str, Any]) -> None:
    await session.execute(
        update(LegRow).where(LegRow.id == leg_id).values(details=details, erased_at=func.now())
    )


async def add_photo(
    session: AsyncSession,
    *,
    photo_id: uuid.UUID,
    leg: LegRow,
    volunteer_id: uuid.UUID,
    sha256: str,
    content_type: str,
    size_bytes: int,
    width: int,
    height: int,
    store: str,
) -> PhotoRow:
    row = PhotoRow(
        id=photo_id,
        leg_id=leg.id,
        organisation_id=leg.organisation_id,
        volunteer_id=volunteer_id,
        sha256=sha256,
        content_type=content_type,
        size_bytes=size_bytes,
        width=width,
        height=height,
        store=store,
    )
    session.add(row)
    await session.flush()
    return row


async def leg_photo(
    session: AsyncSession, *, leg_id: uuid.UUID, photo_id: uuid.UUID | None = None, sha256: str | None = None
) -> PhotoRow | None:
    """A photo uploaded for this leg, by its id or by the hash of its stored bytes (the latest)."""
    query = select(PhotoRow).where(PhotoRow.leg_id == leg_id)
    if photo_id is not None:
        query = query.where(PhotoRow.id == photo_id)
    if sha256 is not None:
        query = query.where(PhotoRow.sha256 == sha256)
    found = await session.execute(query.order_by(PhotoRow.created_at.desc()).limit(1))
    return found.scalar_one_or_none()


async def organisations_photo(
    session: AsyncSession, *, leg_id: uuid.UUID, photo_id: uuid.UUID, organisation_id: uuid.UUID | None
) -> PhotoRow | None:
    """The photo of this leg, if it belongs to the organisation (None: any organisation, for ops)."""
    query = select(PhotoRow).where(PhotoRow.id == photo_id, PhotoRow.leg_id == leg_id)
    if organisation_id is not None:
        query = query.where(PhotoRow.organisation_id == organisation_id)
    return (await session.execute(query)).scalar_one_or_none()


async def count_leg_photos(session: AsyncSession, *, leg_id: uuid.UUID) -> int:
    found = await session.execute(select(func.count()).select_from(PhotoRow).where(PhotoRow.leg_id == leg_id))
    return int(found.scalar_one())


async def add_audit(
    session: AsyncSession,
    action: str,
    *,
    organisation_id: uuid.UUID | None,
    task_id: uuid.UUID | None = None,
    leg_id: uuid.UUID | None = None,
    volunteer_id: uuid.UUID | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """The command on the shared audit trail (`auth.audit`), by the request's actor, in this transaction."""
    await audit.record(
        session,
        action,
        organisation_id=organisation_id,
        task_id=task_id,
        leg_id=leg_id,
        volunteer_id=volunteer_id,
        detail=detail,
    )


# --- Enrolment links, invite codes, vetting ---------------------------------------------------------


async def spend_enrolment_link(
    session: AsyncSession, *, token_hash: str, now: datetime
) -> EnrolmentLinkRow | None:
    """Mark the link used, in one statement so two phones racing for it cannot both win; None when
    there is no such link, or it is used or expired."""
    result = await session.execute(
        update(EnrolmentLinkRow)
        .where(
            EnrolmentLinkRow.token_hash == token_hash,
            EnrolmentLinkRow.used_at.is_(None),
            EnrolmentLinkRow.expires_at > now,
        )
        .values(used_at=now)
        .returning(EnrolmentLinkRow)
    )
    return result.scalar_one_or_none()


async def find_enrolment_link(
    session: AsyncSession, *, token_hash: str, organisation_id: uuid.UUID | None = None
) -> EnrolmentLinkRow | None:
    statement = select(EnrolmentLinkRow).where(EnrolmentLinkRow.token_hash == token_hash)
    if organisation_id is not None:
        statement = statement.where(EnrolmentLinkRow.organisation_id == organisation_id)
    return (await session.execute(statement)).scalar_one_or_none()


async def find_invite_code(session: AsyncSession, *, code_hash: str, now: datetime) -> InviteCodeRow | None:
    """The live invite code with this hash."""
    statement = select(InviteCodeRow).where(
        InviteCodeRow.code_hash == code_hash,
        or_(InviteCodeRow.expires_at.is_(None), InviteCodeRow.expires_at > now),
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def vetting_records(session: AsyncSession, *, volunteer_id: uuid.UUID) -> Sequence[VettingRecordRow]:
    statement = (
        select(VettingRecordRow)
        .where(VettingRecordRow.volunteer_id == volunteer_id)
        .order_by(VettingRecordRow.at, VettingRecordRow.id)
    )
    return (await session.execute(statement)).scalars().all()


async def volunteer_devices(session: AsyncSession, *, volunteer_id: uuid.UUID) -> Sequence[Any]:
    """Every token a volunteer's devices held, newest first, revoked ones included."""
    statement = (
        select(ApiToken.id, ApiToken.created_at, ApiToken.revoked_at)
        .where(ApiToken.volunteer_id == volunteer_id)
        .order_by(ApiToken.created_at.desc(), ApiToken.id)
    )
    return (await session.execute(statement)).all()
