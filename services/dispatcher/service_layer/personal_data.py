"""Erasing the personal data the dispatcher holds of legs: after the retention, or when intake says so.

A leg's details lose their contacts and notes; its proof-of-delivery photos (a person's door) go,
from whichever store holds them.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.dispatcher.adapters import repository
from services.dispatcher.adapters.photo_store import PhotoStores
from services.dispatcher.adapters.tables import LegRow
from services.dispatcher.domain.personal_data import erase_details
from shared.events import CloudEvent, TaskPersonalDataErased, parse_data


async def _erase(session: AsyncSession, legs: list[LegRow], photos: PhotoStores) -> int:
    for leg in legs:
        await repository.erase_leg(session, leg.id, details=erase_details(leg.details))
    for photo in await repository.take_leg_photos(session, [leg.id for leg in legs]):
        store = photos.named(photo.store)
        if store is not None:
            await store.delete(session, str(photo.id))
    return len(legs)


async def erase_ended_legs(
    session: AsyncSession, *, retention_s: float, batch: int, photos: PhotoStores
) -> int:
    """One batch of the retention job; answers how many legs it erased."""
    return await _erase(
        session, await repository.lock_legs_to_erase(session, retention_s=retention_s, limit=batch), photos
    )


async def erase_task(session: AsyncSession, event: CloudEvent, *, photos: PhotoStores) -> None:
    """`task.personal_data_erased`: an admin erased a person named in the task; its legs lose it too."""
    data = parse_data(event)
    assert isinstance(data, TaskPersonalDataErased)
    legs = await repository.lock_task_legs(
        session, task_id=data.task_id, organisation_id=data.organisation_id
    )
    await _erase(session, legs, photos)
