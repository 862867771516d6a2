"""No personal data where it does not belong: a full run, then a sweep of everything it left behind.

The run submits tasks naming people, carries one through a wrong and then the right confirmation
code, sends requests that are refused because of those very fields, and erases a person. Then the
service logs, every record on every topic (keys, values and headers, read in clear), the metrics
of each service and every error answer are searched for each name, phone, e-mail and code the run
used. Codes are six digits, so they are searched as a JSON string or a `key=value`, the forms a
leak would take; names, phones and e-mails as they are, case-blind, and phones by their digits too.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer

from errands import admin
from errands.launcher import ServiceProcesses
from shared.events import ALL_TOPICS
from tests.client import bearer, until
from tests.conftest import Stack

pytestmark = pytest.mark.e2e

# A corner of the map no other test uses, so only this test's volunteer is offered its legs.
PICKUP = {"lat": 29.4812, "lon": 121.8707, "address": "Xiangshan relief depot"}
DROPOFF = {"lat": 29.4851, "lon": 121.8749}


def _unique_digits(count: int) -> str:
    return f"{uuid.uuid4().int % 10**count:0{count}d}"


class Traces:
    """Every personal value the run used, and what a leak of each would look like."""

    def __init__(self) -> None:
        self.texts: set[str] = set()
        self.codes: set[str] = set()

    def person(self) -> dict[str, str]:
        tag = uuid.uuid4().hex[:6]
        person = {
            "name": f"Qian Shulan {tag}",
            "phone": f"+86 137 {_unique_digits(4)} {_unique_digits(4)}",
            "email": f"shulan.{tag}@example.cn",
        }
        self.texts |= {person["name"], person["email"], person["phone"], re.sub(r"\D", "", person["phone"])}
        return person

    def found_in(self, text: str) -> list[str]:
        lowered = text.lower()
        found = [value for value in self.texts if value.lower() in lowered]
        found += [code for code in self.codes if re.search(rf'"{code}"|=\s*{code}\b', text)]
        return found


async def _records(bootstrap: str) -> str:
    """Every record on every topic, keys, values and headers, decoded as text."""
    consumer = AIOKafkaConsumer(
        *ALL_TOPICS,
        bootstrap_servers=bootstrap,
        group_id=f"sweep-{uuid.uuid4()}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    parts: list[str] = []
    try:
        idle = 0
        while idle < 3:
            batches = await consumer.getmany(timeout_ms=1000)
            idle = 0 if batches else idle + 1
            for records in batches.values():
                for record in records:
                    parts.append((record.key or b"").decode(errors="replace"))
                    parts.append((record.value or b"").decode(errors="replace"))
                    parts.extend(value.decode(errors="replace") for _, value in record.headers)
    finally:
        await consumer.stop()
    return "\n".join(parts)


async def test_names_phones_emails_and_codes_stay_out_of_logs_topics_metrics_and_errors(
    stack: Stack, system: ServiceProcesses
) -> None:
    traces = Traces()
    errors: list[str] = []
    tokens = await admin.bootstrap_demo(stack.settings())
    intake, dispatcher, notifier = (system.url(s) for s in ("intake", "dispatcher", "notifier"))

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:

        async def call(method: str, url: str, headers: dict[str, str], body: Any = None) -> tuple[int, Any]:
            async with http.request(method, url, json=body, headers=headers) as response:
                text = await response.text()
                if response.status >= 400:
                    errors.append(text)
                return response.status, (await response.json(content_type=None)) if text else None

        organisation = await admin.new_organisation(stack.settings(), f"sweep-{uuid.uuid4().hex[:6]}")
        operator = bearer(organisation["operator_token"])
        helper = traces.person()
        status, volunteer = await call(
            "POST",
            f"{dispatcher}/v1/volunteers",
            operator,
            {
                "name": helper["name"],
                "phone": helper["phone"],
                "languages": ["zh"],
                "vehicle": "ebike",
                "capacity_kg": 20,
                "insured": True,
                "max_active_legs": 3,
            },
        )
        assert status == 201, volunteer
        me = bearer(volunteer["token"])
        assert (await call("PUT", f"{dispatcher}/v1/me/duty", me, {"on_duty": True}))[0] == 200
        here = {"lat": DROPOFF["lat"] - 0.001, "lon": DROPOFF["lon"] - 0.001, "accuracy_m": 10}
        assert (await call("POST", f"{dispatcher}/v1/me/location", me, here))[0] == 202

        def task(recipient: dict[str, str], contact: dict[str, str], **dropoff: Any) -> dict[str, Any]:
            return {
                "kind": "errand",
                "pickup": {**PICKUP, "contact_name": contact["name"], "contact_phone": contact["phone"]},
                "dropoffs": [
                    {
                        **DROPOFF,
                        "recipient_name": recipient["name"],
                        "recipient_phone": recipient["phone"],
                        "recipient_email": recipient["email"],
                        **dropoff,
                    }
                ],
                "items": [{"name": "medicine", "quantity": 1, "weight_kg": 0.5}],
            }

        def submitting() -> dict[str, str]:
            return {**operator, "Idempotency-Key": str(uuid.uuid4())}

        # Refused for the very fields that hold personal data: the answers must not echo them.
        recipient, contact = traces.person(), traces.person()
        for broken in (
            task(recipient, contact, recipient_email=f"{recipient['name']} {recipient['email']}"),
            task(recipient, contact, recipient_phone=f"{recipient['phone']} ext. {recipient['name']}"),
            {**task(recipient, contact), "deliver_by": "2001-01-01T00:00:00Z"},
        ):
            status, _ = await call("POST", f"{intake}/v1/tasks", submitting(), broken)
            assert status == 422

        status, created = await call("POST", f"{intake}/v1/tasks", submitting(), task(recipient, contact))
        assert status == 201, created
        code = created["legs"][0]["confirmation_code"]
        wrong = f"{(int(code) + 1) % 10**6:06d}"
        traces.codes |= {code, wrong}

        async def offered() -> dict[str, Any] | None:
            _, assignments = await call("GET", f"{dispatcher}/v1/me/assignments", me)
            return dict(assignments["offers"][0]) if assignments["offers"] else None

        offer = await until(offered, timeout_s=60, what="the volunteer was offered the leg")
        status, leg = await call("POST", f"{dispatcher}/v1/me/offers/{offer['id']}/accept", me)
        assert status == 200, leg
        assert (await call("POST", f"{dispatcher}/v1/me/legs/{leg['id']}/picked-up", me))[0] == 200
        for attempt in (wrong, code):
            status, answer = await call(
                "POST", f"{dispatcher}/v1/me/legs/{leg['id']}/delivered", me, {"confirmation_code": attempt}
            )
            assert status == 202, answer
            await asyncio.sleep(1.0)

        async def completed() -> bool:
            _, body = await call("GET", f"{intake}/v1/tasks/{created['id']}", operator)
            return bool(body["status"] == "completed")

        await until(completed, timeout_s=60, what="the task was confirmed with the right code")

        # A second task still going: erasing its recipient is refused, by phone and by e-mail.
        other = traces.person()
        status, going = await call("POST", f"{intake}/v1/tasks", submitting(), task(other, contact))
        assert status == 201
        traces.codes.add(going["legs"][0]["confirmation_code"])
        admin_token = bearer(tokens["admin_token"])
        assert (await call("POST", f"{intake}/v1/erasures", admin_token, {"phone": other["phone"]}))[0] == 409
        assert (await call("POST", f"{intake}/v1/erasures", admin_token, {"email": other["email"]}))[0] == 409
        status, erased = await call(
            "POST", f"{intake}/v1/erasures", admin_token, {"email": recipient["email"]}
        )
        assert status == 200 and erased["tasks"] == 1
        # Not found and not allowed, with the person's details in the path and the query.
        await call("GET", f"{intake}/v1/tasks/{recipient['phone']}", operator)
        await call("GET", f"{intake}/v1/tasks?status={recipient['email']}", operator)
        await call("GET", f"{dispatcher}/v1/volunteers?q={helper['name']}", me)

        metrics = [
            (await (await http.get(f"{url}/metrics")).text()) for url in (intake, dispatcher, notifier)
        ]

    await asyncio.sleep(1.0)  # the services' last log lines reach their files
    assert system.log_dir is not None
    logs = "\n".join(path.read_text(errors="replace") for path in sorted(Path(system.log_dir).glob("*.log")))
    topics = await _records(stack.kafka_bootstrap)
    assert created["id"] in topics and created["id"] in logs, "the sweep reads what this run wrote"
    assert len(errors) >= 8, "the run was refused as planned"
    swept = {
        "logs": logs,
        "topics": topics,
        "metrics": "\n".join(metrics),
        "error answers": "\n".join(errors),
    }
    leaks = {place: found for place, text in swept.items() if (found := traces.found_in(text))}
    assert leaks == {}
