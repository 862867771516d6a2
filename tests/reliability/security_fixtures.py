"""A small world for the security matrix: two organisations, their volunteers, a live offer, a webhook,
staff people logged in with session cookies, and A's register (a recipient, a place, a schedule).

Everything here is built over the services' public HTTP APIs, as a client would, so the matrix
tests the same paths real callers take.
"""

from __future__ import annotations

import random
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

import aiohttp

from errands import admin
from errands.launcher import ServiceProcesses
from tests import photo_samples
from tests.client import bearer, until
from tests.conftest import Stack
from tests.reliability.public_api import (
    DEAD_HOOK_URL,
    expect,
    first_offer,
    go_on_duty,
    new_organisation,
    new_volunteer,
    submit_task,
)


@dataclass
class World:
    """Ids and tokens the matrix fills its paths and roles from; "A" owns every object named here."""

    intake: str
    dispatcher: str
    notifier: str
    tokens: dict[str, str | None]  # role name -> bearer token (None: no Authorization header)
    organisation_a: str
    task_a: str
    task_to_cancel: str
    leg_to_assign: str
    volunteer_a: str  # the matrix's own volunteer (off duty); also the one operators read and patch
    offerer_token: str  # another volunteer of A, who holds `offer_a` and then `leg_a`
    offerer_at: tuple[float, float]  # where the offerer is on duty: a task there is offered to them
    offer_a: str
    leg_a: str
    webhook_a: str
    webhook_to_delete: str
    delivery_a: str
    token_to_revoke: str
    # Volunteers of A kept for the routes that take their access away, one each, so the matrix's own
    # volunteer keeps its token.
    volunteer_to_rekey: str
    volunteer_with_token: str
    volunteer_token_to_revoke: str
    volunteer_to_deactivate: str
    # Staff: a session cookie and its CSRF token per role (operators of A and B, ops, admin), and the
    # credentials anyone may log in with.
    sessions: dict[str, tuple[str, str]]
    login_email: str
    login_password: str
    person_to_patch: str
    person_to_disable: str
    person_to_reset: str
    new_person_email: str
    # A's register and a volunteer's enrolment link, a device and a proof photo.
    recipient_a: str
    recipient_to_delete: str
    place_a: str
    place_to_delete: str
    schedule_a: str
    schedule_to_end: str
    volunteer_to_enrol: str
    enrolment_token: str
    device_a: str  # a device (token) of the offerer, not the matrix's volunteer
    photo_a: str  # on `leg_to_assign`, uploaded by the matrix's volunteer who holds it
    unknown_secret: str  # shaped like a link's token or an invite code, but nobody's


PASSWORD = "matrix correct horse"
SESSION_COOKIE = "errands_session"


def task_body(lat: float, lon: float) -> dict[str, Any]:
    return {
        "kind": "errand",
        "priority": "urgent",
        "pickup": {"lat": lat, "lon": lon, "address": "Matrix depot"},
        "dropoffs": [
            {
                "lat": lat + 0.004,
                "lon": lon + 0.004,
                "address": "Matrix drop-off",
                "recipient_name": "Li Na",
                "recipient_phone": "+8613900001111",
            }
        ],
        "items": [{"name": "rice", "quantity": 1, "weight_kg": 1.0}],
    }


async def build_world(stack: Stack, system: ServiceProcesses) -> World:
    demo = await admin.bootstrap_demo(stack.settings())
    intake, dispatcher, notifier = system.url("intake"), system.url("dispatcher"), system.url("notifier")
    admin_headers = bearer(demo["admin_token"])
    # A spot of our own, far from every other test's volunteers, so only our volunteer gets the offer.
    lat, lon = 31.0 + random.uniform(0, 0.8), 122.5 + random.uniform(0, 0.8)
    async with aiohttp.ClientSession() as http:
        org_a, org_b = [
            await new_organisation(http, intake, admin_token=demo["admin_token"], name=name)
            for name in ("Matrix A", "Matrix B")
        ]
        operator_a = bearer(org_a["operator_token"])

        async def volunteer(home_lat: float, home_lon: float) -> dict[str, Any]:
            body = {
                "name": "Zhou Min",
                "phone": "+8613800002222",
                "languages": ["zh", "en"],
                "vehicle": "car",
                "capacity_kg": 50,
                "insured": True,
                "max_active_legs": 3,
                "home": {"lat": home_lat, "lon": home_lon},
            }
            return await new_volunteer(http, dispatcher, operator=operator_a, body=body)

        matrix_volunteer = await volunteer(lat - 5, lon - 5)
        to_rekey, with_token, to_deactivate = [await volunteer(lat - 5, lon - 5) for _ in range(3)]
        offerer = await volunteer(lat, lon)
        me = bearer(offerer["token"])
        await go_on_duty(http, dispatcher, me=me, at=(lat, lon))

        webhooks = []
        for url in (DEAD_HOOK_URL, DEAD_HOOK_URL + "/gone"):
            async with http.post(
                f"{notifier}/v1/webhooks", json={"url": url, "events": ["*"]}, headers=operator_a
            ) as r:
                webhooks.append(await expect(r, 201))

        async def submit(body: dict[str, Any]) -> dict[str, Any]:
            return await submit_task(http, intake, operator=operator_a, body=body)

        task_a = await submit(task_body(lat, lon))
        # Far from any volunteer: stays pending, so an operator's manual assignment is possible.
        far = await submit(task_body(-40.0 + random.uniform(0, 5), 170.0 + random.uniform(0, 5)))
        to_cancel = await submit(task_body(-45.0, 175.0))

        live_offer = await first_offer(http, dispatcher, me=me, timeout_s=30)
        assert live_offer["leg"]["id"] == task_a["legs"][0]["id"]

        async def assigned_by_hand() -> bool:
            async with http.post(
                f"{dispatcher}/v1/legs/{far['legs'][0]['id']}/assign",
                # The matrix's volunteer stays off duty: only an override gives them a leg.
                json={"volunteer_id": matrix_volunteer["id"], "override": {"reason": "security matrix"}},
                headers=operator_a,
            ) as r:
                if r.status == 404:  # the dispatcher has not taken the task in yet
                    return False
                await expect(r, 200)
                return True

        await until(assigned_by_hand, what="the far leg assigned by hand", timeout_s=30)

        async def delivery() -> dict[str, Any] | None:
            async with http.get(
                f"{notifier}/v1/webhooks/{webhooks[0]['id']}/deliveries", headers=operator_a
            ) as r:
                items = (await expect(r, 200))["items"]
            return items[0] if items else None  # a dict, not its id: `until` reads a string as progress

        delivery_id = str((await until(delivery, what="a webhook delivery", timeout_s=30))["id"])
        async with http.post(f"{intake}/v1/tokens", json={"role": "ops"}, headers=admin_headers) as r:
            throwaway = await expect(r, 201)

        async def person(organisation_id: str, role: str, *, password: bool = True) -> dict[str, Any]:
            email = f"matrix-{uuid.uuid4().hex[:10]}@example.org"
            body = {"email": email, "role": role, "organisation_id": organisation_id}
            async with http.post(f"{intake}/v1/people", json=body, headers=admin_headers) as r:
                created: dict[str, Any] = await expect(r, 201)
            if password:
                setup = {"token": created["setup"]["token"], "password": PASSWORD}
                async with http.post(f"{intake}/v1/password-setup", json=setup) as r:
                    assert r.status == 204, await r.text()
            return {**created, "email": email}

        async def log_in(email: str) -> tuple[str, str]:
            body = {"email": email, "password": PASSWORD}
            async with http.post(f"{intake}/v1/sessions", json=body) as r:
                answer = await expect(r, 201)
                return r.cookies[SESSION_COOKIE].value, answer["csrf_token"]

        staff = {
            "operator_a": await person(org_a["id"], "operator"),
            "operator_b": await person(org_b["id"], "operator"),
            "ops": await person(org_a["id"], "ops"),
            "admin": await person(org_a["id"], "admin"),
        }
        sessions = {role: await log_in(p["email"]) for role, p in staff.items()}
        someone = await person(org_a["id"], "operator")
        to_patch, to_disable, to_reset = [
            await person(org_a["id"], "operator", password=False) for _ in range(3)
        ]

        async def register(path: str, body: dict[str, Any]) -> str:
            async with http.post(f"{intake}{path}", json=body, headers=operator_a) as r:
                return str((await expect(r, 201))["id"])

        recipient = {"name": "Wang Fang", "phone": "+8613900004444", "lat": lat + 0.01, "lon": lon + 0.01}
        recipient_a, recipient_to_delete = [await register("/v1/recipients", recipient) for _ in range(2)]
        place = {"name": "Kitchen A", "kind": "kitchen", "lat": lat, "lon": lon}
        place_a, place_to_delete = [await register("/v1/places", place) for _ in range(2)]
        # Far in the future, so no occurrence becomes a task while the matrix runs.
        schedule = {
            "name": "Lunch",
            "rrule": "FREQ=DAILY",
            "dtstart": "2036-01-01T11:30",
            "task": task_body(-45.0, 175.0),
        }
        schedule_a, schedule_to_end = [await register("/v1/schedules", schedule) for _ in range(2)]

        to_enrol = await volunteer(lat - 5, lon - 5)
        async with http.post(
            f"{dispatcher}/v1/volunteers/{to_enrol['id']}/enrolment", headers=operator_a
        ) as r:
            link = await expect(r, 201)
        enrolment_token = link["qr_png_url"].rsplit("/", 2)[-2]
        async with http.post(
            f"{dispatcher}/v1/me/legs/{far['legs'][0]['id']}/photos",
            data=photo_samples.png(),
            headers={**bearer(matrix_volunteer["token"]), "Content-Type": "image/png"},
        ) as r:
            photo = await expect(r, 201)

    return World(
        intake=intake,
        dispatcher=dispatcher,
        notifier=notifier,
        tokens={
            "none": None,
            "bad": "erk_op_" + "x" * 43,
            "operator_a": org_a["operator_token"],
            "operator_b": org_b["operator_token"],
            "volunteer": matrix_volunteer["token"],
            "ops": demo["ops_token"],
            "admin": demo["admin_token"],
        },
        organisation_a=org_a["id"],
        task_a=task_a["id"],
        task_to_cancel=to_cancel["id"],
        leg_to_assign=far["legs"][0]["id"],
        volunteer_a=matrix_volunteer["id"],
        offerer_token=offerer["token"],
        offerer_at=(lat, lon),
        offer_a=live_offer["id"],
        leg_a=live_offer["leg"]["id"],
        webhook_a=webhooks[0]["id"],
        webhook_to_delete=webhooks[1]["id"],
        delivery_a=delivery_id,
        token_to_revoke=throwaway["id"],
        volunteer_to_rekey=to_rekey["id"],
        volunteer_with_token=with_token["id"],
        volunteer_token_to_revoke=with_token["token_id"],
        volunteer_to_deactivate=to_deactivate["id"],
        sessions=sessions,
        login_email=someone["email"],
        login_password=PASSWORD,
        person_to_patch=to_patch["id"],
        person_to_disable=to_disable["id"],
        person_to_reset=to_reset["id"],
        new_person_email=f"matrix-{uuid.uuid4().hex[:10]}@example.org",
        recipient_a=recipient_a,
        recipient_to_delete=recipient_to_delete,
        place_a=place_a,
        place_to_delete=place_to_delete,
        schedule_a=schedule_a,
        schedule_to_end=schedule_to_end,
        volunteer_to_enrol=to_enrol["id"],
        enrolment_token=enrolment_token,
        device_a=offerer["token_id"],
        photo_a=str(photo["id"]),
        unknown_secret=secrets.token_urlsafe(32),
    )
