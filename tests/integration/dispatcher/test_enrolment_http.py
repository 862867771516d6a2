"""Volunteer enrolment and vetting over HTTP against the running services: one-time links and their
QR codes, devices, invite-code sign-ups kept pending (no offers) until an operator approves them."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from errands import admin
from errands.launcher import ServiceProcesses
from services.dispatcher.adapters.tables import EnrolmentLinkRow
from shared.auth import AuditEntry, hash_token
from tests.conftest import Stack
from tests.integration.dispatcher.api_client import Client, somewhere

pytestmark = pytest.mark.e2e

Maker = async_sessionmaker[AsyncSession]


@pytest.fixture
async def client(stack: Stack, system: ServiceProcesses) -> AsyncIterator[Client]:
    tokens = await admin.bootstrap_demo(stack.settings())
    async with aiohttp.ClientSession() as http:
        yield Client(http, system, tokens["admin_token"])


async def registered(client: Client, operator: str) -> str:
    status, created = await client.call(
        "POST", f"{client.dispatcher}/v1/volunteers", operator, json={"name": "Han Mei", "insured": True}
    )
    assert status == 201
    return str(created["id"])


def secret_of(link: str) -> str:
    return link.split("#token=", 1)[1]


async def test_an_enrolment_link_works_once_and_its_device_can_be_revoked(
    client: Client, sessionmaker: Maker
) -> None:
    operator = await client.organisation()
    volunteer_id = await registered(client, operator)
    status, enrolment = await client.call(
        "POST", f"{client.dispatcher}/v1/volunteers/{volunteer_id}/enrolment", operator
    )
    assert status == 201, enrolment
    secret = secret_of(enrolment["link"])
    assert datetime.fromisoformat(enrolment["expires_at"]) > datetime.now(UTC)
    async with sessionmaker() as session:  # only the hash is kept
        stored = (
            await session.execute(
                select(EnrolmentLinkRow).where(EnrolmentLinkRow.token_hash == hash_token(secret))
            )
        ).scalar_one()
        assert secret not in str(stored.__dict__)

    status, device = await client.call("POST", f"{client.dispatcher}/v1/enrolments/{secret}", "")
    assert status == 201, device
    assert device["volunteer_id"] == volunteer_id
    assert (await client.poll(device["volunteer_token"]))[0] == 200

    status, again = await client.call("POST", f"{client.dispatcher}/v1/enrolments/{secret}", "")
    assert status == 410, again
    assert "used already" in again["detail"]
    assert (await client.call("POST", f"{client.dispatcher}/v1/enrolments/erk_enrol_nothing", ""))[0] == 404

    # The registration's token and the enrolled phone: two devices, each revoked on its own.
    status, devices = await client.call(
        "GET", f"{client.dispatcher}/v1/me/devices", device["volunteer_token"]
    )
    assert status == 200 and len(devices["items"]) == 2
    other = next(d["id"] for d in devices["items"] if d["id"] != device["device_id"])
    token = device["volunteer_token"]
    assert (await client.call("DELETE", f"{client.dispatcher}/v1/me/devices/{other}", token))[0] == 204
    assert (await client.call("DELETE", f"{client.dispatcher}/v1/me/devices/{uuid.uuid4()}", token))[0] == 404
    assert (await client.poll(token))[0] == 200
    async with sessionmaker() as session:
        actions = (
            await session.execute(
                select(AuditEntry.action, AuditEntry.actor_kind).where(
                    AuditEntry.volunteer_id == uuid.UUID(volunteer_id)
                )
            )
        ).all()
    assert ("volunteer.enrolment_issued", "token") in actions
    assert "volunteer.enrolment_used" in [a for a, _ in actions]
    assert ("volunteer.device_revoked", "volunteer") in actions


async def test_an_expired_enrolment_link_is_refused(client: Client, sessionmaker: Maker) -> None:
    operator = await client.organisation()
    volunteer_id = await registered(client, operator)
    _, enrolment = await client.call(
        "POST", f"{client.dispatcher}/v1/volunteers/{volunteer_id}/enrolment", operator
    )
    secret = secret_of(enrolment["link"])
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(EnrolmentLinkRow)
            .where(EnrolmentLinkRow.token_hash == hash_token(secret))
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    status, problem = await client.call("POST", f"{client.dispatcher}/v1/enrolments/{secret}", "")
    assert status == 410 and "expired" in problem["detail"]
    qr = f"{client.dispatcher}/v1/volunteers/{volunteer_id}/enrolment/{secret}/qr.png"
    assert (await client.call("GET", qr, operator))[0] == 410


async def test_the_enrolment_qr_code_comes_as_png_and_svg_to_its_organisation_only(client: Client) -> None:
    operator, stranger = await client.organisation(), await client.organisation()
    volunteer_id = await registered(client, operator)
    _, enrolment = await client.call(
        "POST", f"{client.dispatcher}/v1/volunteers/{volunteer_id}/enrolment", operator
    )
    async with client.http.get(
        f"{client.dispatcher}{enrolment['qr_png_url']}", headers={"Authorization": f"Bearer {operator}"}
    ) as r:
        assert r.status == 200 and r.content_type == "image/png"
        assert (await r.read()).startswith(b"\x89PNG\r\n\x1a\n")
    async with client.http.get(
        f"{client.dispatcher}{enrolment['qr_svg_url']}", headers={"Authorization": f"Bearer {operator}"}
    ) as r:
        assert r.status == 200 and r.content_type == "image/svg+xml"
        assert b"<svg" in await r.read()
    assert (await client.call("GET", f"{client.dispatcher}{enrolment['qr_png_url']}", stranger))[0] == 404
    enrol_there = f"{client.dispatcher}/v1/volunteers/{volunteer_id}/enrolment"
    assert (await client.call("POST", enrol_there, stranger))[0] == 404
    vetting = f"{client.dispatcher}/v1/volunteers/{volunteer_id}/vetting"
    body = {"identity_checked": True, "training_done": True, "decision": "reject"}
    assert (await client.call("POST", vetting, stranger, json=body))[0] == 404
    assert (await client.call("GET", vetting, stranger))[0] == 404


async def no_offer_for(client: Client, token: str, leg_id: str, seconds: float) -> bool:
    """Whether the volunteer's app is offered nothing for the leg during `seconds`."""
    deadline = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < deadline:
        status, body, _ = await client.poll(token)
        assert status == 200
        if any(o["leg"]["id"] == leg_id for o in body.get("offers", [])):
            return False
        await asyncio.sleep(0.5)
    return True


async def test_a_signed_up_volunteer_stays_pending_without_offers_until_approved(client: Client) -> None:
    operator = await client.organisation()
    status, invite = await client.call(
        "POST", f"{client.dispatcher}/v1/invite-codes", operator, json={"valid_for_s": 3600}
    )
    assert status == 201, invite
    place = somewhere()
    signup = {"invite_code": invite["code"], "name": "Wang Fang", "vehicle": "bicycle", "capacity_kg": 20}
    assert (
        await client.call(
            "POST",
            f"{client.dispatcher}/v1/signups",
            "",
            json={**signup, "invite_code": "erk_inv_wrongwrong"},
        )
    )[0] == 404
    status, signed = await client.call("POST", f"{client.dispatcher}/v1/signups", "", json=signup)
    assert status == 201, signed
    assert signed["vetting_status"] == "pending"
    volunteer_id, token = signed["volunteer_id"], signed["volunteer_token"]
    status, me = await client.call("GET", f"{client.dispatcher}/v1/me", token)
    assert status == 200 and me["vetting_status"] == "pending"

    # Insured, on duty and right at the pickup: still no offer while pending.
    volunteer = f"{client.dispatcher}/v1/volunteers/{volunteer_id}"
    assert (await client.call("PATCH", volunteer, operator, json={"insured": True}))[0] == 200
    assert (await client.call("PUT", f"{client.dispatcher}/v1/me/duty", token, json={"on_duty": True}))[
        0
    ] == 200
    lat, lon = place
    fix = {"lat": lat, "lon": lon}
    assert (await client.call("POST", f"{client.dispatcher}/v1/me/location", token, json=fix))[0] == 202
    task = await client.task(operator, place)
    leg = task["legs"][0]
    assert await no_offer_for(client, token, leg["id"], seconds=4)
    status, problem = await client.call(
        "POST",
        f"{client.dispatcher}/v1/legs/{leg['id']}/assign",
        operator,
        json={"volunteer_id": volunteer_id, "override": {"reason": "trust me"}},
    )
    assert status == 409 and problem["title"] == "Volunteer not vetted", problem

    body = {
        "identity_checked": True,
        "insured_until": (datetime.now(UTC) + timedelta(days=200)).date().isoformat(),
        "training_done": True,
        "decision": "approve",
        "note": "ID card, policy and first-aid course seen",
    }
    status, vetting = await client.call("POST", f"{volunteer}/vetting", operator, json=body)
    assert status == 200, vetting
    assert vetting["vetting_status"] == "approved"
    [record] = vetting["records"]
    assert record["checked_by"].startswith("token:") or record["checked_by"].startswith("person:")
    assert record["identity_checked"] and record["training_done"]
    assert record["insured_until"] == body["insured_until"]
    assert datetime.fromisoformat(record["at"]) <= datetime.now(UTC)
    status, listed = await client.call("GET", f"{volunteer}/vetting", operator)
    assert status == 200 and listed == vetting
    offer = await asyncio.wait_for(client.until_offered(token, leg["id"]), timeout=30)
    assert offer["leg"]["id"] == leg["id"]


async def test_a_rejected_sign_up_stays_out(client: Client) -> None:
    operator = await client.organisation()
    _, invite = await client.call("POST", f"{client.dispatcher}/v1/invite-codes", operator, json={})
    signup = {"invite_code": invite["code"], "name": "Zhao Lei"}
    _, signed = await client.call("POST", f"{client.dispatcher}/v1/signups", "", json=signup)
    volunteer = f"{client.dispatcher}/v1/volunteers/{signed['volunteer_id']}"
    body = {"identity_checked": False, "training_done": False, "decision": "reject", "note": "no ID"}
    status, vetting = await client.call("POST", f"{volunteer}/vetting", operator, json=body)
    assert status == 200 and vetting["vetting_status"] == "rejected"
    status, me = await client.call("GET", f"{client.dispatcher}/v1/me", signed["volunteer_token"])
    assert me["vetting_status"] == "rejected"
    bad = {**body, "decision": "maybe"}
    status, problem = await client.call("POST", f"{volunteer}/vetting", operator, json=bad)
    assert status in (400, 422) and "decision" in str(problem)
