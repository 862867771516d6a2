"""Accepting and declining offers, run against an in-memory repository: the rules, without SQL.

The integration tests (tests/integration/dispatcher) prove the statements and their locks.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from services.dispatcher.adapters.tables import LegRow, OfferRow, VolunteerRow
from services.dispatcher.domain.errors import OfferClosed, OfferNotFound, VolunteerAtLimit
from services.dispatcher.domain.leg import LegStatus
from services.dispatcher.domain.offer import OfferStatus
from services.dispatcher.service_layer import changes, offers

ORGANISATION = uuid.uuid4()
# The handlers hand their session to the repository only; the fake one needs none.
NO_SESSION = cast(AsyncSession, object())


class FakeRepository:
    """The few repository functions the offer handlers call, over dictionaries."""

    def __init__(self) -> None:
        self.legs: dict[uuid.UUID, LegRow] = {}
        self.offers: dict[uuid.UUID, OfferRow] = {}
        self.volunteers: dict[uuid.UUID, VolunteerRow] = {}
        self.rejections: set[tuple[uuid.UUID, uuid.UUID]] = set()
        self.woken: set[uuid.UUID] = set()
        self.audited: list[tuple[str, uuid.UUID | None]] = []

    async def lock_volunteers_offer(
        self, _: object, *, offer_id: uuid.UUID, volunteer_id: uuid.UUID
    ) -> tuple[OfferRow, LegRow] | None:
        offer = self.offers.get(offer_id)
        if offer is None or offer.volunteer_id != volunteer_id:
            return None
        return offer, self.legs[offer.leg_id]

    async def proposed_route(
        self, _: object, *, offer_id: uuid.UUID, volunteer_id: uuid.UUID
    ) -> uuid.UUID | None:
        return None  # offers of one leg each here

    async def lock_volunteer(self, _: object, volunteer_id: uuid.UUID) -> VolunteerRow:
        return self.volunteers[volunteer_id]

    async def decide_offer(
        self, _: object, *, offer_id: uuid.UUID, status: OfferStatus, now: datetime
    ) -> None:
        self.offers[offer_id].status, self.offers[offer_id].decided_at = status, now

    async def hand_leg(
        self, _: object, leg_id: uuid.UUID, *, to: LegStatus, holder: uuid.UUID | None, now: datetime
    ) -> None:
        self.legs[leg_id].status, self.legs[leg_id].volunteer_id = to, holder

    async def return_offered_legs(self, _: object, leg_ids: Sequence[uuid.UUID], *, now: datetime) -> None:
        for leg_id in leg_ids:
            if self.legs[leg_id].status == LegStatus.OFFERED:
                self.legs[leg_id].status, self.legs[leg_id].route_id = LegStatus.PENDING, None

    async def change_load(self, _: object, volunteer_id: uuid.UUID, *, active: int, done: int = 0) -> None:
        self.volunteers[volunteer_id].active_legs += active

    async def remember_rejection(self, _: object, *, leg_id: uuid.UUID, volunteer_id: uuid.UUID) -> None:
        self.rejections.add((leg_id, volunteer_id))

    async def notify_volunteers(self, _: object, volunteer_ids: set[uuid.UUID]) -> None:
        self.woken |= volunteer_ids

    async def add_audit(
        self, _: object, action: str, *, leg_id: uuid.UUID | None = None, **__: object
    ) -> None:
        self.audited.append((action, leg_id))

    def offer_a_leg(self, *, active_legs: int = 0, expires_in: timedelta = timedelta(seconds=60)) -> OfferRow:
        volunteer = VolunteerRow(
            id=uuid.uuid4(),
            organisation_id=ORGANISATION,
            name="Lin Wei",
            active_legs=active_legs,
            max_active_legs=2,
            deactivated_at=None,
            languages=["zh", "en"],
        )
        leg = LegRow(
            id=uuid.uuid4(),
            task_id=uuid.uuid4(),
            organisation_id=ORGANISATION,
            status=LegStatus.OFFERED,
            volunteer_id=None,
            details={"dropoff": {"language": "ko"}},
        )
        offer = OfferRow(
            id=uuid.uuid4(),
            leg_id=leg.id,
            volunteer_id=volunteer.id,
            status=OfferStatus.LIVE,
            expires_at=datetime.now(UTC) + expires_in,
        )
        self.volunteers[volunteer.id], self.legs[leg.id], self.offers[offer.id] = volunteer, leg, offer
        return offer


@pytest.fixture
def repo(monkeypatch: pytest.MonkeyPatch) -> tuple[FakeRepository, list[Any]]:
    fake = FakeRepository()
    published: list[Any] = []

    async def add_events(_: object, __: object, events: list[Any]) -> None:
        published.extend(event for _, event in events)

    monkeypatch.setattr(offers, "repository", fake)
    monkeypatch.setattr(changes, "repository", fake)
    monkeypatch.setattr(changes, "add_events", add_events)
    return fake, published


async def test_accepting_an_open_offer_assigns_the_leg_and_announces_it(
    repo: tuple[FakeRepository, list[Any]],
) -> None:
    fake, published = repo
    offer = fake.offer_a_leg()
    leg = await offers.accept_offer(NO_SESSION, offer_id=offer.id, volunteer_id=offer.volunteer_id)
    assert (leg.status, leg.volunteer_id) == (LegStatus.ASSIGNED, offer.volunteer_id)
    assert offer.status == OfferStatus.ACCEPTED
    assert fake.volunteers[offer.volunteer_id].active_legs == 1
    assert [event.type for event in published] == ["leg.assigned"]
    assert published[0].data["speaks_dropoff_language"] is False  # a Korean drop-off, zh/en speaker
    assert fake.woken == {offer.volunteer_id}
    assert fake.audited == [("offer.accepted", leg.id)]


async def test_accepting_an_expired_offer_is_refused_and_changes_nothing(
    repo: tuple[FakeRepository, list[Any]],
) -> None:
    fake, published = repo
    offer = fake.offer_a_leg(expires_in=-timedelta(seconds=1))
    with pytest.raises(OfferClosed, match=r"\(expired\)"):
        await offers.accept_offer(NO_SESSION, offer_id=offer.id, volunteer_id=offer.volunteer_id)
    assert fake.legs[offer.leg_id].status == LegStatus.OFFERED
    assert fake.volunteers[offer.volunteer_id].active_legs == 0
    assert published == []


async def test_a_volunteer_at_their_limit_cannot_accept(repo: tuple[FakeRepository, list[Any]]) -> None:
    fake, published = repo
    offer = fake.offer_a_leg(active_legs=2)
    with pytest.raises(VolunteerAtLimit):
        await offers.accept_offer(NO_SESSION, offer_id=offer.id, volunteer_id=offer.volunteer_id)
    assert offer.status == OfferStatus.LIVE and published == []


async def test_another_volunteers_offer_is_not_found(repo: tuple[FakeRepository, list[Any]]) -> None:
    fake, _ = repo
    offer = fake.offer_a_leg()
    with pytest.raises(OfferNotFound):
        await offers.accept_offer(NO_SESSION, offer_id=offer.id, volunteer_id=uuid.uuid4())


async def test_a_declined_offer_sends_the_leg_back_to_pending_without_that_volunteer(
    repo: tuple[FakeRepository, list[Any]],
) -> None:
    fake, published = repo
    offer = fake.offer_a_leg()
    await offers.decline_offer(
        NO_SESSION, offer_id=offer.id, volunteer_id=offer.volunteer_id, reason="too far"
    )
    assert fake.legs[offer.leg_id].status == LegStatus.PENDING
    assert (offer.leg_id, offer.volunteer_id) in fake.rejections
    assert offer.status == OfferStatus.DECLINED
    assert [event.type for event in published] == ["leg.offer_declined"]
    with pytest.raises(OfferClosed, match=r"\(declined\)"):
        await offers.accept_offer(NO_SESSION, offer_id=offer.id, volunteer_id=offer.volunteer_id)
