"""A notifier process in the running system: a task's whole life reaches webhooks, callback and recipient.

The notifier under test is a process of its own (own database, own consumer group) with SMTP, an
SMS gateway and short retries configured, so the shared services stay as they are. One delivery is
left scheduled across a `kill -9`; at the end the notifier's log is searched for secrets.
"""

from __future__ import annotations

import asyncio
import json
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from errands import admin
from errands.launcher import ServiceProcesses
from shared.auth import Organisation, Role, issue_token
from shared.settings import Settings
from tests.client import bearer, until
from tests.conftest import Stack
from tests.integration.notifier.conftest import Receiver
from tests.integration.notifier.process import running_notifier, start_notifier
from tests.integration.notifier.test_recipient_messages import Mailbox, _free_port


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    mailbox = Mailbox()
    port = _free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield mailbox, port
    finally:
        controller.stop()


@pytest.fixture
async def notifier(
    notifier_settings: Settings,
    receiver: Receiver,
    mailbox: tuple[Mailbox, int],
    tmp_path: Path,
) -> AsyncIterator[ServiceProcesses]:
    async with running_notifier(
        notifier_settings,
        tmp_path,
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=str(mailbox[1]),
        SMS_GATEWAY_URL=receiver.url("/sms"),
        SMS_GATEWAY_TOKEN="gateway-secret-token",
    ) as processes:
        yield processes


async def _same_organisation_here(
    sessionmaker: async_sessionmaker[AsyncSession], organisation_id: uuid.UUID
) -> str:
    """The notifier under test has its own database: give the intake's organisation a token there."""
    async with sessionmaker() as session, session.begin():
        session.add(Organisation(id=organisation_id, name="Yinzhou"))
        await session.flush()
        _, token = await issue_token(session, role=Role.OPERATOR, organisation_id=organisation_id)
    return token


async def test_a_task_reaches_webhooks_callback_and_recipient_and_no_secret_is_logged(
    stack: Stack,
    system: ServiceProcesses,
    notifier: ServiceProcesses,
    receiver: Receiver,
    mailbox: tuple[Mailbox, int],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    tokens = await admin.bootstrap_demo(stack.settings())
    intake, dispatcher, notify = system.url("intake"), system.url("dispatcher"), notifier.url("notifier")
    phone, mail = "+8613911112222", "li.na@example.org"
    # The first webhook attempt is told to come back in 30 s, long after everything else has
    # arrived on a busy machine; the notifier is killed meanwhile, so only the retry the database
    # scheduled can deliver it.
    receiver.answers_by_path["/hook"] = [(503, {"Retry-After": "30"})]
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{intake}/v1/organisations", json={"name": "Yinzhou"}, headers=bearer(tokens["admin_token"])
        ) as response:
            organisation = await response.json()
        operator = organisation["operator_token"]
        notifier_operator = await _same_organisation_here(sessionmaker, uuid.UUID(organisation["id"]))
        async with http.post(
            f"{notify}/v1/webhooks",
            json={"url": receiver.url("/hook"), "events": ["leg.*", "task.completed"]},
            headers=bearer(notifier_operator),
        ) as response:
            assert response.status == 201, await response.text()
            webhook = await response.json()
        async with http.post(f"{notify}/v1/callback-secret", headers=bearer(notifier_operator)) as response:
            callback_secret = (await response.json())["secret"]
        # The shared system's notifier also sees this task and calls its callback_url, with its own secret.
        async with http.post(
            f"{system.url('notifier')}/v1/callback-secret", headers=bearer(operator)
        ) as response:
            assert response.status == 201
            system_callback_secret = (await response.json())["secret"]

        async with http.post(
            f"{dispatcher}/v1/volunteers",
            json={
                "name": "Zhao Lei",
                "phone": "+8613800009999",
                "languages": ["zh", "ja"],
                "vehicle": "car",
                "capacity_kg": 50,
                "insured": True,
                "max_active_legs": 1,
            },
            headers=bearer(operator),
        ) as response:
            assert response.status == 201, await response.text()
            me = bearer((await response.json())["token"])
        await http.put(f"{dispatcher}/v1/me/duty", json={"on_duty": True}, headers=me)
        await http.post(f"{dispatcher}/v1/me/location", json={"lat": 30.4001, "lon": 122.3001}, headers=me)
        async with http.post(
            f"{intake}/v1/tasks",
            json={
                "kind": "meal",
                "pickup": {"lat": 30.4002, "lon": 122.3002, "address": "Canteen"},
                "dropoffs": [
                    {
                        "lat": 30.4010,
                        "lon": 122.3010,
                        "recipient_name": "Li Na",
                        "recipient_phone": phone,
                        "recipient_email": mail,
                        "language": "ja",
                    }
                ],
                "callback_url": receiver.url("/callback"),
            },
            headers={**bearer(operator), "Idempotency-Key": str(uuid.uuid4())},
        ) as response:
            assert response.status == 201, await response.text()
            task = await response.json()
        code = task["legs"][0]["confirmation_code"]

        async def offer() -> dict[str, Any] | None:
            async with http.get(f"{dispatcher}/v1/me/assignments", headers=me) as response:
                offers = (await response.json())["offers"]
            return offers[0] if offers else None

        offered = await until(offer, what="an offer to the volunteer", timeout_s=60, every_s=0.1)
        async with http.post(f"{dispatcher}/v1/me/offers/{offered['id']}/accept", headers=me) as response:
            assert response.status == 200, await response.text()
            leg_id = (await response.json())["id"]
        await http.post(f"{dispatcher}/v1/me/legs/{leg_id}/picked-up", headers=me)
        async with http.post(
            f"{dispatcher}/v1/me/legs/{leg_id}/delivered", json={"confirmation_code": code}, headers=me
        ) as response:
            assert response.status == 202

        def on(path: str) -> list[Any]:
            return [r for r in receiver.requests if r.path == path]

        def texts_to(address: str) -> list[str]:
            # A fresh consumer group replays older tasks too; only this recipient's messages count.
            sms = [json.loads(r.body) for r in on("/sms")]
            mails = [m for m in mailbox[0].messages if m["To"] == address]
            return [s["text"] for s in sms if s["to"] == address] + [str(m["Subject"]) for m in mails]

        def types(path: str) -> set[str]:
            return {json.loads(r.body)["type"] for r in on(path)}

        async def all_arrived() -> bool:
            return (
                {"leg.assigned", "leg.picked_up", "leg.confirmed", "task.completed"} <= types("/hook")
                and {"leg.confirmed", "task.completed"} <= types("/callback")
                and len(texts_to(phone)) >= 2
                and len(texts_to(mail)) >= 2
            )

        await until(all_arrived, what="every message arrived", timeout_s=60, every_s=0.1)
        first = on("/hook")[0]
        retried_id = first.headers["webhook-id"]
        assert [r.headers["webhook-id"] for r in on("/hook")].count(retried_id) == 1, "not yet retried"
        await asyncio.to_thread(notifier.stop, "notifier", sig=signal.SIGKILL)
        # Only the delivery worker matters now; the consumer may rejoin its group at leisure.
        await start_notifier(notifier, join_group=False)

        async def retried() -> bool:
            return [r.headers["webhook-id"] for r in on("/hook")].count(retried_id) >= 2

        await until(retried, what="the webhook retried", timeout_s=120, every_s=0.1)
        async with http.get(
            f"{notify}/v1/webhooks/{webhook['id']}/deliveries", headers=bearer(notifier_operator)
        ) as response:
            deliveries = (await response.json())["items"]

    [delivery] = [d for d in deliveries if d["id"] == retried_id]
    assert delivery["status"] == "succeeded"
    statuses = [a["status_code"] for a in delivery["attempt_log"]]
    assert statuses[0] == 503 and statuses[-1] == 204

    hook_verifier = Webhook(webhook["secret"])
    callback_verifiers = (Webhook(callback_secret), Webhook(system_callback_secret))
    for request in receiver.requests:
        if request.path == "/hook":
            hook_verifier.verify(request.body, request.headers)
        elif request.path == "/callback":
            assert sum(_verifies(v, request.body, request.headers) for v in callback_verifiers) == 1
    assert all("ボランティア" in text or "お届け" in text for text in texts_to(phone)), "in Japanese"

    assert notifier.log_dir is not None
    log_file = notifier.log_dir / "notifier.log"

    async def captured() -> bool:
        # The shared system's notifier texts the same phone, so the texts above may not be this one's.
        text = log_file.read_text(errors="replace")
        return "webhook.delivered" in text and "recipient.notified" in text

    await until(captured, what="deliveries and notices logged", timeout_s=60, every_s=0.1)
    logs = log_file.read_text(errors="replace")
    for secret in (
        phone,
        phone[3:],
        mail,
        code,
        operator,
        notifier_operator,
        webhook["secret"],
        callback_secret,
        "gateway-secret-token",
    ):
        assert secret not in logs


def _verifies(verifier: Webhook, body: bytes, headers: dict[str, str]) -> bool:
    try:
        verifier.verify(body, headers)
    except WebhookVerificationError:
        return False
    return True
