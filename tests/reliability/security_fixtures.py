"""A small world for the security matrix: two organisations, their volunteers, a live offer, a webhook.

Everything here is built over the services' public HTTP APIs, as a client would, so the matrix
tests the same paths real callers take.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import aiohttp

from errands import admin
from errands.launcher import ServiceProcesses
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


def _task_body(lat: float, lon: float) -> dict[str, Any]:
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

        task_a = await submit(_task_body(lat, lon))
        # Far from any volunteer: stays pending, so an operator's manual assignment is possible.
        far = await submit(_task_body(-40.0 + random.uniform(0, 5), 170.0 + random.uniform(0, 5)))
        to_cancel = await submit(_task_body(-45.0, 175.0))

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
    )
