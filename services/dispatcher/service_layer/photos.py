"""Proof-of-delivery photos: a volunteer uploads one for a leg they hold; its organisation's operators
fetch it. The upload is normalised first (`domain.photo.normalise`, in a thread: it is CPU work)."""

from __future__ import annotations

import uuid

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from services.dispatcher.adapters import repository
from services.dispatcher.adapters.photo_store import PhotoStores
from services.dispatcher.adapters.tables import PhotoRow
from services.dispatcher.domain.errors import PhotoNotFound, TooManyPhotos
from services.dispatcher.domain.photo import Normalised
from services.dispatcher.service_layer.deliveries import own_leg

log = structlog.get_logger(__name__)


def photo_path(leg_id: uuid.UUID, photo_id: uuid.UUID) -> str:
    """Where an operator fetches the photo (the dispatcher's route)."""
    return f"/v1/legs/{leg_id}/photos/{photo_id}"


async def add_photo(
    session: AsyncSession,
    *,
    stores: PhotoStores,
    leg_id: uuid.UUID,
    volunteer_id: uuid.UUID,
    photo: Normalised,
    max_per_leg: int,
) -> PhotoRow:
    """Store a normalised photo of a leg the volunteer holds (LegNotFound for any other leg)."""
    leg = await own_leg(session, leg_id=leg_id, volunteer_id=volunteer_id)
    if await repository.count_leg_photos(session, leg_id=leg.id) >= max_per_leg:
        raise TooManyPhotos(f"A leg may have at most {max_per_leg} photos.")
    photo_id = uuid.uuid4()  # random: the fetch URL is not guessable
    store = stores.current
    row = await repository.add_photo(
        session,
        photo_id=photo_id,
        leg=leg,
        volunteer_id=volunteer_id,
        sha256=photo.sha256,
        content_type=photo.content_type,
        size_bytes=len(photo.data),
        width=photo.width,
        height=photo.height,
        store=store.name,
    )
    await store.put(session, str(photo_id), photo.data, photo.content_type)
    return row


async def read_photo(
    session: AsyncSession,
    *,
    stores: PhotoStores,
    leg_id: uuid.UUID,
    photo_id: uuid.UUID,
    organisation_id: uuid.UUID | None,
) -> tuple[PhotoRow, bytes]:
    """A photo of the organisation's leg and its bytes (`organisation_id` None: any organisation's)."""
    row = await repository.organisations_photo(
        session, leg_id=leg_id, photo_id=photo_id, organisation_id=organisation_id
    )
    if row is None:
        raise PhotoNotFound("No such photo.")
    store = stores.named(row.store)
    data = None if store is None else await store.get(session, str(row.id))
    if data is None:
        log.error("photo.bytes_missing", photo_id=str(row.id), store=row.store)
        raise PhotoNotFound("The photo's bytes are not in its store.")
    return row, data
