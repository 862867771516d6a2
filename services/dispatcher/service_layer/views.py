"""What the volunteer's app reads: its offers and legs, as plain JSON-ready data (the read side).

The HTTP edge checks each against its `*Out` model (entrypoints/schemas.py) before sending it.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.dispatcher.adapters import repository
from services.dispatcher.adapters.tables import LegRow
from services.dispatcher.domain.leg import LegStatus
from services.dispatcher.service_layer import routes
from shared import crypto


def leg_view(leg: LegRow, *, assigned: bool, data_key: bytes) -> dict[str, Any]:
    """A leg as the volunteer's app shows it; the recipient's name and phone, the task's notes and the
    drop-off's notes only once it is theirs (an offer shows none of them)."""
    details = leg.details
    hidden = {"recipient_sealed"} if assigned else {"recipient_sealed", "notes"}
    dropoff = {k: v for k, v in details["dropoff"].items() if k not in hidden}
    if assigned and details["dropoff"].get("recipient_sealed"):
        recipient = crypto.unseal(data_key, details["dropoff"]["recipient_sealed"])
        dropoff["recipient_name"] = recipient.get("name")
        dropoff["recipient_phone"] = recipient.get("phone")
    return {
        "id": str(leg.id),
        "task_id": str(leg.task_id),
        "status": str(leg.status),
        "kind": details.get("kind"),
        "priority": leg.priority,
        "deliver_by": details.get("deliver_by"),
        "pickup": details["pickup"],
        "dropoff": dropoff,
        "items": details["items"],
        "flagged": leg.flagged_at is not None,
        "notes": details.get("notes") if assigned else None,
        **(_estimates(leg) if assigned else {}),
    }


def _estimates(leg: LegRow) -> dict[str, Any]:
    """The leg's latest estimates while it is under way (`service_layer/eta.py`)."""
    if leg.status not in (LegStatus.ASSIGNED, LegStatus.PICKED_UP) or leg.dropoff_eta is None:
        return {}
    return {
        "pickup_eta": leg.pickup_eta.isoformat() if leg.pickup_eta else None,
        "dropoff_eta": leg.dropoff_eta.isoformat(),
        "eta_late": leg.eta_late,
    }


async def assignments(session: AsyncSession, *, volunteer_id: uuid.UUID, data_key: bytes) -> dict[str, Any]:
    """What a volunteer's app shows: open offers, and legs in hand until confirmed, each with its route.

    Only legs of the volunteer's own organisation, whatever offer or assignment points elsewhere.
    """
    offers = await repository.open_offers(session, volunteer_id=volunteer_id)
    legs = await repository.legs_in_hand(session, volunteer_id=volunteer_id)
    known = [leg for _, leg in offers] + legs
    accepted = await repository.routes_by_id(session, {leg.route_id for leg in legs if leg.route_id})
    return {
        "offers": [
            {
                "id": str(offer.id),
                "expires_at": offer.expires_at.isoformat(),
                "distance_m": round(offer.distance_m, 1),
                "leg": leg_view(leg, assigned=False, data_key=data_key),
                "route": route_view(offer.route_id, offer.route_stops, known),
            }
            for offer, leg in offers
        ],
        "legs": [
            {
                **leg_view(leg, assigned=True, data_key=data_key),
                "route": route_view(
                    leg.route_id, accepted[leg.route_id].stops if leg.route_id in accepted else None, known
                ),
            }
            for leg in legs
        ],
    }


def route_view(
    route_id: uuid.UUID | None, stops: list[dict[str, Any]] | None, legs: list[LegRow]
) -> dict[str, Any] | None:
    """A route as the volunteer's app shows it: the stops still to do, in order, of legs offered to
    them or in their hands (`legs`), each with its place and ETA."""
    if route_id is None or stops is None:
        return None
    by_id = {leg.id: leg for leg in legs}
    shown = []
    for stop in routes.ahead(stops, {leg.id: leg.status for leg in legs}):
        leg = by_id[uuid.UUID(stop["leg_id"])]
        place = leg.details.get(stop["kind"]) or {}
        shown.append(
            {
                "leg_id": stop["leg_id"],
                "kind": stop["kind"],
                "place": {"lat": stop["lat"], "lon": stop["lon"], "address": place.get("address")},
                "eta": stop["eta"],
            }
        )
    return {"id": str(route_id), "stops": shown}
