"""Legs that wait for an operator, through the three running services over HTTP and Kafka.

A leg handed back after pickup (the goods in the volunteer's hands) waits in `needs_decision`,
escalated at once and shown so in the task's read model, until an operator returns it to the pickup,
hands it over where the goods are, or fails it. A delivery flagged for too many wrong codes is
confirmed by other proof or failed. Notes reach the volunteer who carries a leg, and the note sent
with a delivery reaches the notifier's record of it.
"""

from __future__ import annotations

import random
import uuid
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select, text

from errands import admin
from errands.launcher import ServiceProcesses
from services.dispatcher.adapters.tables import LegRow as DispatchLegRow
from services.notifier.adapters.tables import DeliveryReportRow
from shared.db import create_engine, create_sessionmaker
from tests.client import bearer, until
from tests.conftest import Stack

pytestmark = pytest.mark.e2e
# The desk's volunteers stay off duty, so no offer reaches them; giving them a leg takes an override.
OFF_DUTY = {"reason": "kept off duty so that only the desk gives them legs"}


class Desk:
    """One organisation's operator and volunteers, talking to the running services."""

    def __init__(self, http: aiohttp.ClientSession, system: ServiceProcesses, operator: str) -> None:
        self.http, self.operator = http, operator
        self.intake, self.dispatcher = system.url("intake"), system.url("dispatcher")

    async def call(
        self, method: str, url: str, token: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        async with self.http.request(
            method, url, json=body, headers={**bearer(token), **(headers or {})}
        ) as response:
            return response.status, await response.json(content_type=None)

    async def volunteer(self, name: str, *, at: tuple[float, float] | None, max_active_legs: int = 3) -> str:
        """A registered volunteer's token; off duty (no offers), last seen `at`."""
        status, body = await self.call(
            "POST",
            f"{self.dispatcher}/v1/volunteers",
            self.operator,
            {
                "name": name,
                "languages": ["zh", "en"],
                "vehicle": "car",
                "capacity_kg": 50,
                "insured": True,
                "max_active_legs": max_active_legs,
            },
        )
        assert status == 201, body
        token: str = body["token"]
        if at is not None:
            status, _ = await self.call(
                "POST", f"{self.dispatcher}/v1/me/location", token, {"lat": at[0], "lon": at[1]}
            )
            assert status == 202

            async def located() -> bool:
                status, me = await self.call(
                    "GET", f"{self.dispatcher}/v1/volunteers/{body['id']}", self.operator
                )
                return status == 200 and me["location"] is not None

            await until(located, what="the location stored", timeout_s=20)
        return token

    async def submit(self, pickup: tuple[float, float], dropoffs: int, **extra: Any) -> dict[str, Any]:
        body = {
            "kind": "supply_run" if dropoffs > 1 else "errand",
            "pickup": {"lat": pickup[0], "lon": pickup[1], "address": "Depot"},
            "dropoffs": [
                {"lat": pickup[0] + 0.01 * (i + 1), "lon": pickup[1] + 0.01, "language": "en"}
                for i in range(dropoffs)
            ],
            "items": [{"name": "rice", "quantity": 1, "weight_kg": 1}],
            **extra,
        }
        status, task = await self.call(
            "POST",
            f"{self.intake}/v1/tasks",
            self.operator,
            body,
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
        assert status == 201, task
        return dict(task)

    async def legs_known(self, task: dict[str, Any]) -> None:
        """Wait until the dispatcher took the task's legs in (assigning by hand needs them)."""

        async def known() -> bool:
            status, _ = await self.call(
                "POST",
                f"{self.dispatcher}/v1/legs/{task['legs'][0]['id']}/decision",
                self.operator,
                {"action": "fail"},
            )
            return status == 409  # the leg exists (and waits for no decision)

        await until(known, what="the legs taken in", timeout_s=30)

    async def assign(self, leg_id: str, volunteer_token: str) -> None:
        volunteer_id = await self.volunteer_id(volunteer_token)
        status, body = await self.call(
            "POST",
            f"{self.dispatcher}/v1/legs/{leg_id}/assign",
            self.operator,
            {"volunteer_id": volunteer_id, "override": OFF_DUTY},
        )
        assert status == 200, body

    async def volunteer_id(self, token: str) -> str:
        status, body = await self.call("PUT", f"{self.dispatcher}/v1/me/duty", token, {"on_duty": False})
        assert status == 200, body
        return str(body["id"])

    async def me(self, token: str, action: str, leg_id: str, body: Any = None) -> tuple[int, Any]:
        return await self.call("POST", f"{self.dispatcher}/v1/me/legs/{leg_id}/{action}", token, body)

    async def decide(self, leg_id: str, body: dict[str, Any], token: str | None = None) -> tuple[int, Any]:
        return await self.call(
            "POST", f"{self.dispatcher}/v1/legs/{leg_id}/decision", token or self.operator, body
        )

    async def task(self, task_id: str) -> dict[str, Any]:
        status, body = await self.call("GET", f"{self.intake}/v1/tasks/{task_id}", self.operator)
        assert status == 200, body
        return dict(body)

    async def task_shows(self, task_id: str, *, task: str | None = None, legs: list[str]) -> dict[str, Any]:
        async def shown() -> dict[str, Any] | str | None:
            body = await self.task(task_id)
            now = [leg["status"] for leg in sorted(body["legs"], key=lambda leg: leg["index"])]
            if now == legs and (task is None or body["status"] == task):
                return body
            return f"{body['status']} {now}"

        found = await until(shown, what=f"task {task} with legs {legs}", timeout_s=30)
        assert isinstance(found, dict)
        return found

    async def legs_in_hand(self, token: str) -> dict[str, dict[str, Any]]:
        status, body = await self.call("GET", f"{self.dispatcher}/v1/me/assignments", token)
        assert status == 200, body
        return {leg["id"]: leg for leg in body["legs"]}


async def organisation(stack: Stack, http: aiohttp.ClientSession, system: ServiceProcesses, name: str) -> str:
    tokens = await admin.bootstrap_demo(stack.settings())
    async with http.post(
        f"{system.url('intake')}/v1/organisations", json={"name": name}, headers=bearer(tokens["admin_token"])
    ) as response:
        assert response.status == 201
        return str((await response.json())["operator_token"])


def far_place() -> tuple[float, float]:
    """A spot no other test uses, so no other volunteer is offered these legs."""
    rng = random.Random()
    return rng.uniform(-40, -20), rng.uniform(-60, -30)


async def test_a_leg_handed_back_after_pickup_waits_for_an_operators_decision(
    stack: Stack, system: ServiceProcesses
) -> None:
    pickup = far_place()
    where_a = (pickup[0] + 0.02, pickup[1] - 0.02)
    async with aiohttp.ClientSession() as http:
        desk = Desk(http, system, await organisation(stack, http, system, "Decisions"))
        other = Desk(http, system, await organisation(stack, http, system, "Elsewhere"))
        a = await desk.volunteer("Carrier A", at=where_a)
        b = await desk.volunteer("Carrier B", at=None)
        task = await desk.submit(pickup, dropoffs=4)
        legs = [leg["id"] for leg in sorted(task["legs"], key=lambda leg: leg["index"])]
        await desk.legs_known(task)
        for leg_id in legs[:3]:
            await desk.assign(leg_id, a)
            assert (await desk.me(a, "picked-up", leg_id))[0] == 200
        await desk.assign(legs[3], b)

        # Handed back with the goods in hand: it waits for a decision, it is not re-dispatched.
        for leg_id in legs[:3]:
            status, body = await desk.me(a, "problem", leg_id, {"reason": "bike broke down"})
            assert (status, body["status"]) == (200, "needs_decision")
        # Handed back before pickup: pending again, as before.
        status, body = await desk.me(b, "problem", legs[3], {"reason": "flat tyre"})
        assert (status, body["status"]) == (200, "pending")
        assert await desk.legs_in_hand(a) == {}, "the legs left the volunteer's list"

        shown = await desk.task_shows(task["id"], task="escalated", legs=["needs_decision"] * 3 + ["pending"])
        escalated = [e for e in shown["timeline"] if e["type"] == "task.escalated"]
        assert escalated, shown["timeline"]

        # Another organisation's operator sees no such leg; a bad decision names its field.
        assert (await desk.decide(legs[0], {"action": "fail"}, token=other.operator))[0] == 404
        status, problem = await desk.decide(legs[0], {"action": "shrug"})
        assert status == 422 and "action" in str(problem["errors"]), problem
        status, problem = await desk.decide(legs[0], {"action": "fail", "volunteer_id": str(uuid.uuid4())})
        assert status == 422 and "volunteer_id" in str(problem["errors"]), problem
        # Not assigned by hand as if nothing happened.
        status, problem = await desk.call(
            "POST",
            f"{desk.dispatcher}/v1/legs/{legs[0]}/assign",
            desk.operator,
            {"volunteer_id": await desk.volunteer_id(b), "override": OFF_DUTY},
        )
        assert status == 409 and "decision" in problem["detail"], problem

        # Back to the pickup: pending from the depot again.
        status, body = await desk.decide(legs[0], {"action": "return_to_pickup", "note": "bring it back"})
        assert status == 200, body
        assert (body["status"], body["volunteer_id"]) == ("pending", None)
        assert (body["pickup"]["lat"], body["pickup"]["lon"]) == pytest.approx(pickup)
        engine = create_engine(stack.settings(), pool_size=1)
        try:
            async with create_sessionmaker(engine)() as session:
                audited = await session.execute(
                    text("SELECT action, detail ->> 'action' FROM auth.audit WHERE leg_id = :leg"),
                    {"leg": uuid.UUID(legs[0])},
                )
                assert ("leg.decided", "return_to_pickup") in [tuple(row) for row in audited]
        finally:
            await engine.dispose()

        # Handed over where the goods are now: picked up from volunteer A's last known place, by B.
        b_id = await desk.volunteer_id(b)
        status, body = await desk.decide(legs[1], {"action": "hand_over", "volunteer_id": b_id})
        assert status == 200, body
        assert (body["status"], body["volunteer_id"]) == ("assigned", b_id)
        assert (body["pickup"]["lat"], body["pickup"]["lon"]) == pytest.approx(where_a)
        b_legs = await desk.legs_in_hand(b)
        assert (b_legs[legs[1]]["pickup"]["lat"], b_legs[legs[1]]["pickup"]["lon"]) == pytest.approx(where_a)
        assert (await desk.me(b, "picked-up", legs[1]))[0] == 200

        # Failed: it ends, and cannot be decided again.
        status, body = await desk.decide(legs[2], {"action": "fail", "note": "goods damaged"})
        assert (status, body["status"]) == (200, "failed")
        assert (await desk.decide(legs[2], {"action": "return_to_pickup"}))[0] == 409

        await desk.task_shows(task["id"], legs=["pending", "picked_up", "failed", "pending"])


async def test_a_flagged_delivery_is_resolved_by_an_operator_and_the_task_ends_accordingly(
    stack: Stack, system: ServiceProcesses
) -> None:
    pickup = far_place()
    async with aiohttp.ClientSession() as http:
        desk = Desk(http, system, await organisation(stack, http, system, "Flags"))
        other = Desk(http, system, await organisation(stack, http, system, "Not flags"))
        carrier = await desk.volunteer("Carrier", at=None)
        task = await desk.submit(pickup, dropoffs=2)
        legs = sorted(task["legs"], key=lambda leg: leg["index"])
        codes = [leg["confirmation_code"] for leg in legs]
        await desk.legs_known(task)
        for leg in legs:
            await desk.assign(leg["id"], carrier)
            assert (await desk.me(carrier, "picked-up", leg["id"]))[0] == 200
        # Neither is confirmed before an operator decides: no decision on a delivery not flagged.
        assert (await desk.me(carrier, "delivered", legs[0]["id"], {"confirmation_code": "0000"}))[0] == 202
        assert (await desk.decide(legs[0]["id"], {"action": "confirm", "note": "seen"}))[0] == 409

        for leg, code in zip(legs, codes, strict=True):
            wrong = f"{(int(code) + 1) % 10 ** len(code):0{len(code)}d}"

            async def flagged(leg_id: str = leg["id"], wrong: str = wrong) -> bool:
                status, body = await desk.me(carrier, "delivered", leg_id, {"confirmation_code": wrong})
                return status == 409 and "wrong confirmation codes" in body["detail"]

            await until(flagged, what="the leg flagged", timeout_s=30, every_s=0.5)
            # Flagged: even the right code is refused now.
            status, _ = await desk.me(carrier, "delivered", leg["id"], {"confirmation_code": code})
            assert status == 409
            assert (await desk.legs_in_hand(carrier))[leg["id"]]["flagged"]

        assert (await desk.decide(legs[0]["id"], {"action": "confirm", "note": "x"}, other.operator))[
            0
        ] == 404
        status, problem = await desk.decide(legs[0]["id"], {"action": "confirm"})
        assert status == 422 and "note" in str(problem["errors"]), problem
        status, body = await desk.decide(
            legs[0]["id"], {"action": "confirm", "note": "Recipient confirmed by phone"}
        )
        assert (status, body["status"]) == (200, "confirmed")
        status, body = await desk.decide(legs[1]["id"], {"action": "fail", "note": "recipient not found"})
        assert (status, body["status"]) == (200, "failed")
        assert await desk.legs_in_hand(carrier) == {}, "resolved legs leave the volunteer's list"

        await desk.task_shows(task["id"], task="partially_completed", legs=["confirmed", "failed"])


async def test_notes_reach_the_carrier_and_a_delivered_leg_leaves_the_list_when_its_task_is_cancelled(
    stack: Stack, system: ServiceProcesses
) -> None:
    pickup = far_place()
    async with aiohttp.ClientSession() as http:
        desk = Desk(http, system, await organisation(stack, http, system, "Notes"))
        carrier = await desk.volunteer("Carrier", at=None)
        task = await desk.submit(pickup, dropoffs=1, notes="Ring twice; the lift is broken.")
        leg_id = task["legs"][0]["id"]
        await desk.legs_known(task)
        await desk.assign(leg_id, carrier)
        leg = (await desk.legs_in_hand(carrier))[leg_id]
        assert leg["notes"] == "Ring twice; the lift is broken."

        assert (await desk.me(carrier, "picked-up", leg_id))[0] == 200
        status, _ = await desk.me(
            carrier, "delivered", leg_id, {"confirmation_code": "000000", "note": "Handed to the neighbour"}
        )
        assert status == 202
        assert leg_id in await desk.legs_in_hand(carrier), "delivered, not yet confirmed: still listed"

        engine = create_engine(stack.settings(), pool_size=1)
        try:

            async def recorded() -> tuple[str | None] | None:
                async with create_sessionmaker(engine)() as session:
                    notes = await session.scalars(
                        select(DeliveryReportRow.note).where(DeliveryReportRow.leg_id == uuid.UUID(leg_id))
                    )
                    found = list(notes)
                    return (found[0],) if found else None

            assert await until(recorded, what="the delivery report", timeout_s=30) == (
                "Handed to the neighbour",
            )
        finally:
            await engine.dispose()

        status, _ = await desk.call("POST", f"{desk.intake}/v1/tasks/{task['id']}/cancel", desk.operator, {})
        assert status == 200

        async def released() -> bool:
            return leg_id not in await desk.legs_in_hand(carrier)

        await until(released, what="the delivered leg leaving the list", timeout_s=30)


async def test_a_leg_waiting_for_a_decision_when_its_task_is_cancelled_goes_nowhere(
    stack: Stack, system: ServiceProcesses
) -> None:
    pickup = far_place()
    async with aiohttp.ClientSession() as http:
        desk = Desk(http, system, await organisation(stack, http, system, "Cancelled"))
        carrier = await desk.volunteer("Carrier", at=(pickup[0] + 0.01, pickup[1]))
        task = await desk.submit(pickup, dropoffs=1)
        leg_id = task["legs"][0]["id"]
        await desk.legs_known(task)
        await desk.assign(leg_id, carrier)
        assert (await desk.me(carrier, "picked-up", leg_id))[0] == 200
        assert (await desk.me(carrier, "problem", leg_id, {"reason": "ill"}))[1]["status"] == "needs_decision"
        await desk.task_shows(task["id"], legs=["needs_decision"])

        status, _ = await desk.call("POST", f"{desk.intake}/v1/tasks/{task['id']}/cancel", desk.operator, {})
        assert status == 200
        # Still waiting: the goods are with the volunteer whatever became of the task.
        await desk.task_shows(task["id"], task="cancelled", legs=["needs_decision"])

        # The dispatcher hears of the cancellation through Kafka: wait until it has.
        engine = create_engine(stack.settings(), pool_size=1)
        try:

            async def heard() -> bool:
                async with create_sessionmaker(engine)() as session:
                    at = await session.scalar(
                        select(DispatchLegRow.released_at).where(DispatchLegRow.id == uuid.UUID(leg_id))
                    )
                    return at is not None

            await until(heard, what="the dispatcher hearing of the cancellation", timeout_s=30)
        finally:
            await engine.dispose()
        status, body = await desk.decide(leg_id, {"action": "return_to_pickup"})
        assert (status, body["status"], body["volunteer_id"]) == (200, "cancelled", None)
        await desk.task_shows(task["id"], task="cancelled", legs=["cancelled"])
