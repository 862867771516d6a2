"""Staff accounts against the live services: set-password links, logins, session cookies with CSRF,
throttled wrong passwords, disabling a person, organisation scoping, and the audit trail."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from errands import admin
from errands.launcher import ServiceProcesses
from services.intake.service_layer import staff as staff_service
from shared.auth import PasswordSetup, StaffSession
from shared.events import TASKS_TOPIC, CloudEvent
from tests.client import bearer
from tests.conftest import Stack
from tests.integration.intake.conftest import Operator, submit, task_body

PASSWORD = "correct horse battery"
COOKIE = "errands_session"

# The replica the throttling tests talk to: behind a "proxy" (it trusts X-Forwarded-*), with low limits.
THROTTLED_ENV = {
    "TRUSTED_PROXY": "true",
    "LOGIN_SLOW_AFTER": "2",
    "LOGIN_LOCK_AFTER": "4",
    "LOGIN_ADDRESS_SLOW_AFTER": "3",
    "LOGIN_ADDRESS_LOCK_AFTER": "5",
    "LOGIN_DELAY_BASE_S": "2",
    "LOGIN_LOCK_S": "600",
}


@dataclass
class Staff:
    person_id: str
    email: str
    organisation_id: str


@dataclass
class Browser:
    """A logged-in browser: its cookie (sent by hand: the test client keeps none for IP hosts)."""

    secret: str
    csrf: str
    person: dict[str, Any]

    def headers(self, *, csrf: bool = True) -> dict[str, str]:
        headers = {"Cookie": f"{COOKIE}={self.secret}"}
        if csrf:
            headers["X-CSRF-Token"] = self.csrf
        return headers


@pytest.fixture(scope="module")
def throttled_intake(system: ServiceProcesses) -> Iterator[str]:
    system.start("intake-staff", service="intake", extra_env=THROTTLED_ENV)
    try:
        system.wait_ready(services=("intake-staff",), timeout_s=90)
        yield system.url("intake-staff")
    finally:
        system.stop("intake-staff")


@pytest.fixture
async def admin_headers(demo_tokens: dict[str, str]) -> dict[str, str]:
    return bearer(demo_tokens["admin_token"])


async def _json(response: aiohttp.ClientResponse) -> Any:
    return await response.json(content_type=None)


async def new_person(
    http: aiohttp.ClientSession,
    intake: str,
    admin_headers: dict[str, str],
    organisation_id: uuid.UUID | str,
    *,
    role: str = "operator",
    password: str | None = PASSWORD,
) -> Staff:
    email = f"p-{uuid.uuid4().hex[:10]}@example.org"
    async with http.post(
        f"{intake}/v1/people",
        json={"email": email, "role": role, "organisation_id": str(organisation_id)},
        headers=admin_headers,
    ) as response:
        created = await _json(response)
        assert response.status == 201, created
    assert created["setup"]["url"].endswith("#token=" + created["setup"]["token"])
    assert created["password_set"] is False
    if password is not None:
        async with http.post(
            f"{intake}/v1/password-setup", json={"token": created["setup"]["token"], "password": password}
        ) as response:
            assert response.status == 204, await response.text()
    return Staff(created["id"], email, str(organisation_id))


async def log_in(
    http: aiohttp.ClientSession, intake: str, email: str, password: str = PASSWORD, **headers: str
) -> tuple[int, Any, aiohttp.ClientResponse]:
    async with http.post(
        f"{intake}/v1/sessions", json={"email": email, "password": password}, headers=headers
    ) as response:
        return response.status, await _json(response), response


async def browser(http: aiohttp.ClientSession, intake: str, staff: Staff) -> Browser:
    status, body, response = await log_in(http, intake, staff.email)
    assert status == 201, body
    return Browser(response.cookies[COOKIE].value, body["csrf_token"], body["person"])


async def test_a_person_sets_a_password_by_link_and_logs_in_with_a_strict_http_only_cookie(
    http: aiohttp.ClientSession, intake: str, admin_headers: dict[str, str], operator: Operator
) -> None:
    staff = await new_person(http, intake, admin_headers, operator.organisation_id)
    status, body, response = await log_in(http, intake, staff.email.upper())  # e-mails match in any case
    assert status == 201, body
    cookie = response.cookies[COOKIE]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Strict"
    assert not cookie["secure"]  # served over plain HTTP here
    assert body["person"]["id"] == staff.person_id and body["person"]["role"] == "operator"
    session = Browser(cookie.value, body["csrf_token"], body["person"])

    async with http.get(f"{intake}/v1/sessions/current", headers=session.headers(csrf=False)) as current:
        who = await _json(current)
    assert current.status == 200
    assert who["person"]["email"] == staff.email and who["csrf_token"] == session.csrf
    async with http.get(f"{intake}/v1/tasks", headers=session.headers(csrf=False)) as listed:
        assert listed.status == 200


async def test_the_cookie_is_secure_when_a_trusted_proxy_says_the_client_used_https(
    http: aiohttp.ClientSession,
    intake: str,
    throttled_intake: str,
    admin_headers: dict[str, str],
    operator: Operator,
) -> None:
    staff = await new_person(http, intake, admin_headers, operator.organisation_id)
    status, _, response = await log_in(
        http,
        throttled_intake,
        staff.email,
        **{"X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.7"},
    )
    assert status == 201
    assert response.cookies[COOKIE]["secure"] is True
    # The service that does not trust a proxy ignores the header.
    status, _, response = await log_in(http, intake, staff.email, **{"X-Forwarded-Proto": "https"})
    assert status == 201
    assert not response.cookies[COOKIE]["secure"]


async def test_a_set_password_link_works_once_and_not_after_it_expires(
    http: aiohttp.ClientSession,
    intake: str,
    admin_headers: dict[str, str],
    operator: Operator,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    email = f"p-{uuid.uuid4().hex[:10]}@example.org"
    async with http.post(
        f"{intake}/v1/people",
        json={"email": email, "role": "operator", "organisation_id": str(operator.organisation_id)},
        headers=admin_headers,
    ) as response:
        created = await _json(response)
    token = created["setup"]["token"]

    async with http.post(f"{intake}/v1/password-setup", json={"token": token, "password": "short"}) as short:
        problem = await _json(short)
    assert short.status == 422
    assert [error["field"] for error in problem["errors"]] == ["$.password"]

    async with http.post(f"{intake}/v1/password-setup", json={"token": token, "password": PASSWORD}) as first:
        assert first.status == 204
    async with http.post(
        f"{intake}/v1/password-setup", json={"token": token, "password": "another long password"}
    ) as second:
        refused = await _json(second)
    assert second.status == 422
    assert refused["errors"][0]["field"] == "$.token"
    assert (await log_in(http, intake, email))[0] == 201
    assert (await log_in(http, intake, email, "another long password"))[0] == 401

    # A new link; time passes beyond its expiry (moved back in the database), and it is refused.
    async with http.post(
        f"{intake}/v1/people/{created['id']}/password-setup", headers=admin_headers
    ) as again:
        late = (await _json(again))["setup"]["token"]
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(PasswordSetup)
            .where(PasswordSetup.person_id == uuid.UUID(created["id"]), PasswordSetup.used_at.is_(None))
            .values(expires_at=func.now() - func.make_interval(0, 0, 0, 0, 0, 0, 1))
        )
    async with http.post(
        f"{intake}/v1/password-setup", json={"token": late, "password": "a third long password"}
    ) as expired:
        assert expired.status == 422
    assert (await log_in(http, intake, email))[0] == 201


async def test_a_cookie_authenticated_change_needs_the_csrf_token_and_bearer_tokens_need_none(
    http: aiohttp.ClientSession, intake: str, admin_headers: dict[str, str], operator: Operator
) -> None:
    staff = await new_person(http, intake, admin_headers, operator.organisation_id)
    session = await browser(http, intake, staff)
    key = {"Idempotency-Key": str(uuid.uuid4())}

    async with http.post(
        f"{intake}/v1/tasks", json=task_body(), headers={**session.headers(csrf=False), **key}
    ) as without:
        problem = await _json(without)
    assert without.status == 403
    assert problem["errors"][0]["field"] == "header:X-CSRF-Token"
    async with http.post(
        f"{intake}/v1/tasks",
        json=task_body(),
        headers={**session.headers(csrf=False), **key, "X-CSRF-Token": "0" * 64},
    ) as wrong:
        assert wrong.status == 403
    async with http.post(f"{intake}/v1/tasks", json=task_body(), headers={**session.headers(), **key}) as ok:
        created = await _json(ok)
    assert ok.status == 201, created

    # Another session's token is not this one's.
    other = await browser(http, intake, staff)
    async with http.post(
        f"{intake}/v1/tasks/{created['id']}/cancel",
        headers={**session.headers(csrf=False), "X-CSRF-Token": other.csrf},
    ) as crossed:
        assert crossed.status == 403

    # Machines send bearer tokens and no CSRF token, as before; with a bearer token, a cookie sent
    # along (a browser extension, a shared client) is not what authenticates, so no CSRF token either.
    status, _, _ = await submit(http, intake, operator)
    assert status == 201
    async with http.post(
        f"{intake}/v1/tasks",
        json=task_body(),
        headers={**session.headers(csrf=False), **operator.headers, "Idempotency-Key": str(uuid.uuid4())},
    ) as both:
        assert both.status == 201


async def test_logging_out_ends_the_session_and_the_copied_cookie_is_refused(
    http: aiohttp.ClientSession, intake: str, admin_headers: dict[str, str], operator: Operator
) -> None:
    staff = await new_person(http, intake, admin_headers, operator.organisation_id)
    session = await browser(http, intake, staff)
    async with http.delete(f"{intake}/v1/sessions/current", headers=session.headers(csrf=False)) as no_csrf:
        assert no_csrf.status == 403
    async with http.delete(f"{intake}/v1/sessions/current", headers=session.headers()) as logout:
        assert logout.status == 204
    for url in (f"{intake}/v1/sessions/current", f"{intake}/v1/tasks"):
        async with http.get(url, headers=session.headers(csrf=False)) as replayed:
            assert replayed.status == 401


async def test_disabling_a_person_ends_all_their_sessions_and_tokens_in_every_service(
    http: aiohttp.ClientSession,
    intake: str,
    system: ServiceProcesses,
    admin_headers: dict[str, str],
    operator: Operator,
) -> None:
    staff = await new_person(http, intake, admin_headers, operator.organisation_id)
    laptop, phone = await browser(http, intake, staff), await browser(http, intake, staff)
    async with http.post(
        f"{intake}/v1/organisations/{operator.organisation_id}/tokens",
        json={"person_id": staff.person_id},
        headers=admin_headers,
    ) as minted:
        own_token = (await _json(minted))["token"]
    dispatcher = system.url("dispatcher")
    # The cookie is accepted by the dispatcher too (every service reads the same sessions).
    async with http.get(f"{dispatcher}/v1/volunteers", headers=laptop.headers(csrf=False)) as before:
        assert before.status == 200

    async with http.post(f"{intake}/v1/people/{staff.person_id}/disable", headers=admin_headers) as disabled:
        body = await _json(disabled)
    assert disabled.status == 200 and body["disabled_at"] is not None

    for session in (laptop, phone):
        for url in (f"{intake}/v1/tasks", f"{dispatcher}/v1/volunteers"):
            async with http.get(url, headers=session.headers(csrf=False)) as refused:
                assert refused.status == 401
    async with http.get(f"{intake}/v1/tasks", headers=bearer(own_token)) as token_refused:
        assert token_refused.status == 401
    assert (await log_in(http, intake, staff.email))[0] == 401


async def test_a_session_has_its_persons_role_and_organisation(
    http: aiohttp.ClientSession, intake: str, admin_headers: dict[str, str], stack: Stack
) -> None:
    org_a = await admin.new_organisation(stack.settings(), f"org-{uuid.uuid4().hex[:8]}")
    org_b = await admin.new_organisation(stack.settings(), f"org-{uuid.uuid4().hex[:8]}")
    a_operator = Operator(uuid.UUID(org_a["id"]), org_a["operator_token"])
    b_operator = Operator(uuid.UUID(org_b["id"]), org_b["operator_token"])
    _, b_task, _ = await submit(http, intake, b_operator)
    staff = await new_person(http, intake, admin_headers, a_operator.organisation_id)
    session = await browser(http, intake, staff)

    async with http.get(f"{intake}/v1/tasks/{b_task['id']}", headers=session.headers(csrf=False)) as other:
        assert other.status == 404
    async with http.get(f"{intake}/v1/tasks", headers=session.headers(csrf=False)) as listed:
        assert (await _json(listed))["items"] == []
    async with http.get(f"{intake}/v1/people", headers=session.headers(csrf=False)) as people:
        assert people.status == 403  # an operator is not an admin

    # A role change holds from the person's next request: ops may read but not submit.
    async with http.patch(
        f"{intake}/v1/people/{staff.person_id}", json={"role": "ops"}, headers=admin_headers
    ) as changed:
        assert (await _json(changed))["role"] == "ops"
    async with http.post(
        f"{intake}/v1/tasks",
        json=task_body(),
        headers={**session.headers(), "Idempotency-Key": str(uuid.uuid4())},
    ) as refused:
        assert refused.status == 403

    # An organisation's admin manages only its people.
    boss = await new_person(http, intake, admin_headers, a_operator.organisation_id, role="admin")
    boss_session = await browser(http, intake, boss)
    async with http.get(f"{intake}/v1/people", headers=boss_session.headers(csrf=False)) as mine:
        emails = {person["email"] for person in (await _json(mine))["items"]}
    assert emails == {staff.email, boss.email}
    b_staff = await new_person(http, intake, admin_headers, b_operator.organisation_id)
    async with http.post(
        f"{intake}/v1/people/{b_staff.person_id}/disable", headers=boss_session.headers()
    ) as foreign:
        assert foreign.status == 404
    async with http.post(
        "/".join((intake, "v1/people")),
        json={
            "email": f"x-{uuid.uuid4().hex[:6]}@example.org",
            "role": "ops",
            "organisation_id": org_b["id"],
        },
        headers=boss_session.headers(),
    ) as elsewhere:
        assert elsewhere.status == 404


async def test_wrong_passwords_on_an_account_slow_down_then_lock_it_in_every_replica(
    http: aiohttp.ClientSession,
    intake: str,
    throttled_intake: str,
    admin_headers: dict[str, str],
    operator: Operator,
) -> None:
    staff = await new_person(http, intake, admin_headers, operator.organisation_id)

    async def attempt(
        n: int,
        password: str = "wrong password!",  # noqa: S107
    ) -> tuple[int, aiohttp.ClientResponse]:
        # Each try from its own address, so only the account's count matters here.
        status, _, response = await log_in(
            http, throttled_intake, staff.email, password, **{"X-Forwarded-For": f"203.0.113.{n}"}
        )
        return status, response

    assert (await attempt(1))[0] == 401
    assert (await attempt(2))[0] == 401
    status, slowed = await attempt(3)  # two failures: the next try must wait
    assert status == 429
    assert 1 <= int(slowed.headers["Retry-After"]) <= 2
    await asyncio.sleep(2.1)
    assert (await attempt(4))[0] == 401  # the third failure: four seconds to wait
    status, slower = await attempt(5)
    assert status == 429 and 3 <= int(slower.headers["Retry-After"]) <= 4
    await asyncio.sleep(4.1)
    assert (await attempt(6))[0] == 401  # the fourth: locked
    status, locked = await attempt(7, PASSWORD)  # even the right password is refused now
    assert status == 429
    assert 590 <= int(locked.headers["Retry-After"]) <= 600
    # The other replica reads the same state from the database.
    status, _, other = await log_in(http, intake, staff.email)
    assert status == 429 and int(other.headers["Retry-After"]) > 500


async def test_wrong_passwords_sent_at_once_are_counted_one_after_another(
    http: aiohttp.ClientSession,
    intake: str,
    throttled_intake: str,
    admin_headers: dict[str, str],
    operator: Operator,
) -> None:
    staff = await new_person(http, intake, admin_headers, operator.organisation_id)

    async def attempt(n: int) -> int:
        replica = throttled_intake if n % 2 else intake  # both replicas, one database
        forwarded = {"X-Forwarded-For": f"203.0.114.{n}"}
        return (await log_in(http, replica, staff.email, "wrong password!", **forwarded))[0]

    statuses = await asyncio.gather(*(attempt(n) for n in range(1, 9)))
    # The main service allows three failures before slowing down, the throttled replica two: at
    # most three tries are checked before the account must wait, whatever arrives at the same time.
    assert 2 <= statuses.count(401) <= 3, statuses
    assert statuses.count(429) == 8 - statuses.count(401), statuses


async def test_wrong_passwords_from_one_address_slow_down_then_lock_that_address(
    http: aiohttp.ClientSession,
    intake: str,
    throttled_intake: str,
    admin_headers: dict[str, str],
    operator: Operator,
) -> None:
    staff = await new_person(http, intake, admin_headers, operator.organisation_id)
    address = f"192.0.2.{uuid.uuid4().int % 250 + 1}"
    here = {"X-Forwarded-For": f"10.9.9.9, {address}"}  # the proxy's own entry, appended last, counts

    async def guess() -> tuple[int, aiohttp.ClientResponse]:
        status, _, response = await log_in(
            http, throttled_intake, f"nobody-{uuid.uuid4().hex[:8]}@example.org", "guess guess", **here
        )
        return status, response

    for _ in range(3):
        assert (await guess())[0] == 401
    status, slowed = await guess()
    assert status == 429 and 1 <= int(slowed.headers["Retry-After"]) <= 2
    await asyncio.sleep(2.1)
    assert (await guess())[0] == 401
    await asyncio.sleep(4.1)
    assert (await guess())[0] == 401  # the fifth failure from the address: locked
    status, _, locked = await log_in(http, throttled_intake, staff.email, **here)
    assert status == 429 and int(locked.headers["Retry-After"]) > 500
    # The same person from elsewhere gets in.
    status, _, _ = await log_in(http, throttled_intake, staff.email, **{"X-Forwarded-For": "198.51.100.99"})
    assert status == 201


async def test_the_audit_trail_lists_submissions_and_cancellations_by_actor_with_ids_only(
    http: aiohttp.ClientSession,
    intake: str,
    admin_headers: dict[str, str],
    demo_tokens: dict[str, str],
    operator: Operator,
    stack: Stack,
) -> None:
    staff = await new_person(http, intake, admin_headers, operator.organisation_id)
    session = await browser(http, intake, staff)
    async with http.get(f"{intake}/v1/audit", params={"limit": "1"}, headers=admin_headers) as before:
        started = (await _json(before))["items"][0]["at"]
    body = task_body()
    async with http.post(
        f"{intake}/v1/tasks", json=body, headers={**session.headers(), "Idempotency-Key": str(uuid.uuid4())}
    ) as submitted:
        task = await _json(submitted)
    async with http.post(
        f"{intake}/v1/tasks/{task['id']}/cancel",
        json={"reason": "Aroha moved away"},
        headers=session.headers(),
    ) as cancelled:
        assert cancelled.status == 200
    _, machine_task, _ = await submit(http, intake, operator)

    async with http.get(
        f"{intake}/v1/audit", params={"task_id": task["id"]}, headers=bearer(demo_tokens["ops_token"])
    ) as listed:
        raw = await listed.text()
    assert listed.status == 200, raw
    entries = json.loads(raw)["items"]
    assert [entry["action"] for entry in entries] == ["task.cancelled", "task.submitted"]
    for entry in entries:
        assert entry["actor"] == {"kind": "person", "id": staff.person_id}
        assert entry["task_id"] == task["id"]
        assert entry["organisation_id"] == str(operator.organisation_id)
    assert entries[1]["detail"] == {"kind": "supply_run", "priority": "routine", "legs": 2}
    # No names, phones, e-mails or free text: only ids and non-personal facts.
    for personal in ("Aroha", "+6421000111", "ben@example.org", "+64 3 477 0000", "moved away", staff.email):
        assert personal not in raw

    async with http.get(
        f"{intake}/v1/audit", params={"person_id": staff.person_id}, headers=admin_headers
    ) as by_person:
        actions = [entry["action"] for entry in (await _json(by_person))["items"]]
    assert actions == [
        "task.cancelled",
        "task.submitted",
        "session.started",
        "person.password_set",
        "person.created",
    ]
    async with http.get(
        f"{intake}/v1/audit", params={"task_id": machine_task["id"]}, headers=admin_headers
    ) as by_token:
        (entry,) = (await _json(by_token))["items"]
    assert entry["actor"]["kind"] == "token"
    async with http.get(
        f"{intake}/v1/audit",
        params={"person_id": staff.person_id, "since": started, "until": entries[0]["at"]},
        headers=admin_headers,
    ) as by_time:
        window = [entry["action"] for entry in (await _json(by_time))["items"]]
    assert "task.cancelled" not in window and "task.submitted" in window
    async with http.get(f"{intake}/v1/audit", params={"task_id": "not-a-uuid"}, headers=admin_headers) as bad:
        assert bad.status == 400
        assert (await _json(bad))["errors"][0]["field"] == "task_id"
    async with http.get(f"{intake}/v1/audit", headers=session.headers(csrf=False)) as operator_asks:
        assert operator_asks.status == 403

    # The events the person caused carry them as their actor, on the topic.
    actors = await _actors_on_tasks_topic(stack.kafka_bootstrap, task["id"], want=2)
    assert actors == {
        "task.submitted": f"person:{staff.person_id}",
        "task.cancelled": f"person:{staff.person_id}",
    }


async def _actors_on_tasks_topic(bootstrap: str, task_id: str, *, want: int) -> dict[str, str | None]:
    consumer = AIOKafkaConsumer(
        TASKS_TOPIC,
        bootstrap_servers=bootstrap,
        group_id=f"reader-{uuid.uuid4()}",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    found: dict[str, str | None] = {}
    try:
        deadline = asyncio.get_running_loop().time() + 30
        while len(found) < want and asyncio.get_running_loop().time() < deadline:
            for batch in (await consumer.getmany(timeout_ms=300)).values():
                for record in batch:
                    event = CloudEvent.from_bytes(record.value)
                    if event.subject == task_id:
                        found[event.type] = event.actor
    finally:
        await consumer.stop()
    return found


def test_the_command_line_creates_a_person_and_prints_the_set_password_link(
    stack: Stack, operator: Operator
) -> None:
    email = f"cli-{uuid.uuid4().hex[:8]}@example.org"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "errands",
            "admin",
            "create-person",
            str(operator.organisation_id),
            email,
            "--role",
            "ops",
        ],
        env={
            **os.environ,
            "DATABASE_URL": stack.database_url,
            "KAFKA_BOOTSTRAP_SERVERS": stack.kafka_bootstrap,
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert printed["email"] == email and printed["role"] == "ops"
    assert "#token=erp_" in printed["setup"]["url"]


async def test_sessions_and_links_long_over_are_purged_and_live_ones_kept(
    http: aiohttp.ClientSession,
    intake: str,
    admin_headers: dict[str, str],
    operator: Operator,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    staff = await new_person(http, intake, admin_headers, operator.organisation_id)
    ended, live = await browser(http, intake, staff), await browser(http, intake, staff)
    async with http.delete(f"{intake}/v1/sessions/current", headers=ended.headers()) as logout:
        assert logout.status == 204
    person_id = uuid.UUID(staff.person_id)
    async with sessionmaker() as session, session.begin():
        # The logout happened two days ago (moved back in the database).
        await session.execute(
            update(StaffSession)
            .where(StaffSession.person_id == person_id, StaffSession.ended_at.is_not(None))
            .values(ended_at=func.now() - func.make_interval(0, 0, 0, 2))
        )
        await staff_service.purge_spent(session=session, window_s=3600)
    async with sessionmaker() as session:
        left = (
            await session.execute(select(StaffSession.ended_at).where(StaffSession.person_id == person_id))
        ).scalars()
        assert list(left) == [None]  # only the live session is kept
    async with http.get(f"{intake}/v1/sessions/current", headers=live.headers(csrf=False)) as current:
        assert current.status == 200
