"""The console's forms and filters, sent what no browser form would: each answer is a page naming the
field (or ignoring a value it cannot use), never a 500."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import aiohttp
import pytest

from errands import admin
from tests.conftest import Stack

PASSWORD = "a long enough password"


@dataclass(frozen=True)
class Session:
    cookie: str
    csrf: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Cookie": f"errands_session={self.cookie}", "Accept-Language": "en"}


@pytest.fixture
async def coordinator(stack: Stack, intake: str, http: aiohttp.ClientSession) -> Session:
    settings = stack.settings()
    organisation = await admin.new_organisation(settings, f"Console org {uuid.uuid4().hex[:8]}")
    email = f"coordinator-{uuid.uuid4().hex[:8]}@example.org"
    person = await admin.new_person(settings, uuid.UUID(organisation["id"]), email=email, role="operator")
    setup = {"token": person["setup"]["token"], "password": PASSWORD}
    async with http.post(f"{intake}/v1/password-setup", json=setup) as response:
        assert response.status == 204, await response.text()
    async with http.post(f"{intake}/v1/sessions", json={"email": email, "password": PASSWORD}) as response:
        assert response.status == 201, await response.text()
        return Session(response.cookies["errands_session"].value, (await response.json())["csrf_token"])


# Digits Python's `str.isdigit` accepts but `int` refuses (superscripts), a moment that exists as a local
# time but not in UTC, and numbers that are no coordinates or weights.
ODD_DIGITS = "²"
BEFORE_UTC = "0001-01-01T00:00"


@pytest.mark.parametrize(
    "query",
    [
        {"before": ODD_DIGITS},
        {"before": "1" + ODD_DIGITS},
        {"since": BEFORE_UTC},
        {"until": BEFORE_UTC},
    ],
)
async def test_odd_task_list_filters_are_no_500(
    http: aiohttp.ClientSession, intake: str, coordinator: Session, query: dict[str, str]
) -> None:
    async with http.get(
        f"{intake}/console/tasks", params=query, headers=coordinator.headers, allow_redirects=False
    ) as response:
        text = await response.text()
        assert response.status in (200, 422), text


def _new_task(csrf: str, **fields: str) -> dict[str, str]:
    form = {
        "csrf_token": csrf,
        "idempotency_key": str(uuid.uuid4()),
        "kind": "supply_run",
        "priority": "routine",
        "pickup_source": "point",
        "pickup_lat": "29.87",
        "pickup_lon": "121.55",
        "dropoff_count": "1",
        "item_count": "1",
        "dropoffs_0_source": "typed",
        "dropoffs_0_lat": "29.88",
        "dropoffs_0_lon": "121.56",
        "dropoffs_0_recipient_name": "Wang",
        "dropoffs_0_recipient_phone": "+8613900001111",
        "items_0_name": "rice",
        "items_0_quantity": "1",
        "items_0_weight_kg": "2",
    }
    form.update(fields)
    return form


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"dropoff_count": ODD_DIGITS}, None),
        ({"item_count": ODD_DIGITS, "action": "add_item"}, None),
        ({"deliver_by": BEFORE_UTC}, "deliver_by"),
        ({"pickup_ready_at": BEFORE_UTC}, "pickup_ready_at"),
        ({"pickup_lat": "nan"}, "pickup_lat"),
        ({"items_0_weight_kg": "inf"}, "items_0_weight_kg"),
        ({"items_0_quantity": "9" * 40}, "items_0_quantity"),
    ],
)
async def test_odd_new_task_fields_are_no_500(
    http: aiohttp.ClientSession,
    intake: str,
    coordinator: Session,
    fields: dict[str, str],
    field: str | None,
) -> None:
    async with http.post(
        f"{intake}/console/tasks/new",
        data=_new_task(coordinator.csrf, **fields),
        headers=coordinator.headers,
        allow_redirects=False,
    ) as response:
        text = await response.text()
        assert response.status < 500, text
        if field is not None:
            assert response.status == 422, text
            assert 'aria-invalid="true"' in text and f'id="{field}"' in text, text


async def test_an_odd_legs_limit_for_a_new_volunteer_is_no_500(
    http: aiohttp.ClientSession, intake: str, coordinator: Session
) -> None:
    form = {"csrf_token": coordinator.csrf, "name": "Li Lei", "vehicle": "bicycle"}
    form["max_active_legs"] = ODD_DIGITS
    async with http.post(
        f"{intake}/console/volunteers", data=form, headers=coordinator.headers, allow_redirects=False
    ) as response:
        text = await response.text()
        assert response.status == 422, text


async def _place(http: aiohttp.ClientSession, intake: str, coordinator: Session) -> str:
    form = {
        "csrf_token": coordinator.csrf,
        "name": "Kitchen",
        "kind": "kitchen",
        "lat": "29.87",
        "lon": "121.55",
    }
    async with http.post(
        f"{intake}/console/places", data=form, headers=coordinator.headers, allow_redirects=False
    ) as response:
        assert response.status == 303, await response.text()
    async with http.get(f"{intake}/console/places", headers=coordinator.headers) as response:
        page = await response.text()
    return page.split('action="/console/places/', 1)[1].split("/", 1)[0]


@pytest.mark.parametrize("action", ["preview", "save"])
@pytest.mark.parametrize(("start_date", "time"), [("0001-01-01", "00:00"), ("9999-12-31", "23:59")])
async def test_schedules_at_the_ends_of_the_calendar_are_no_500(
    http: aiohttp.ClientSession, intake: str, coordinator: Session, action: str, start_date: str, time: str
) -> None:
    place = await _place(http, intake, coordinator)
    form = {
        "csrf_token": coordinator.csrf,
        "name": "Lunch",
        "days": "MO",
        "time": time,
        "start_date": start_date,
        "place_id": place,
        "recipient_id": f"place:{place}",
        "kind": "meal",
        "priority": "routine",
        "action": action,
    }
    async with http.post(
        f"{intake}/console/schedules", data=form, headers=coordinator.headers, allow_redirects=False
    ) as response:
        text = await response.text()
        assert response.status < 500, text


@pytest.mark.parametrize(("lat", "lon"), [("nan", "121.5"), ("29.8", "inf"), ("1e999", "-1e999")])
async def test_places_at_no_point_are_refused_by_field(
    http: aiohttp.ClientSession, intake: str, coordinator: Session, lat: str, lon: str
) -> None:
    form = {"csrf_token": coordinator.csrf, "name": "Nowhere", "kind": "other", "lat": lat, "lon": lon}
    async with http.post(
        f"{intake}/console/places", data=form, headers=coordinator.headers, allow_redirects=False
    ) as response:
        text = await response.text()
        assert response.status == 422, text
