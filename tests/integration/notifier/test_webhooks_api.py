"""The Webhooks API over HTTP: operator-scoped, secrets shown once, private URLs refused.

Ops and admin read every organisation's webhooks, deliveries and flagged legs (no secret, no URL
credentials) and change nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.notifier.entrypoints.http import URL_CHECK, api
from services.notifier.service_layer.confirmations import Confirmer
from services.notifier.service_layer.notifications import Notifications
from shared.auth import Role
from shared.http import create_base_app
from shared.outbound import check_url_is_public
from shared.runtime import RUNTIME, Runtime
from shared.settings import Settings
from tests.integration.notifier.conftest import Operator, cross_organisation_headers, new_operator
from tests.integration.notifier.factories import TaskScenario
from tests.integration.notifier.test_confirmations import consume


async def _client(settings: Settings) -> TestClient[web.Request, web.Application]:
    app = create_base_app(api=api, readiness=[])
    app[RUNTIME] = Runtime.build(settings, client_id="notifier-api-test")
    app[URL_CHECK] = check_url_is_public
    client: TestClient[web.Request, web.Application] = TestClient(TestServer(app))
    await client.start_server()
    return client


@pytest.fixture
async def client(notifier_settings: Settings) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    settings = notifier_settings.model_copy(update={"webhook_allow_private_urls": False})
    client = await _client(settings)
    try:
        yield client
    finally:
        await client.close()
        await client.app[RUNTIME].engine.dispose()


@pytest.fixture
async def operator(sessionmaker: async_sessionmaker[AsyncSession]) -> Operator:
    return await new_operator(sessionmaker)


async def test_register_list_and_delete_a_webhook(
    client: TestClient[web.Request, web.Application], operator: Operator
) -> None:
    response = await client.post(
        "/v1/webhooks",
        json={"url": "https://93.184.216.34/hooks/errands", "events": ["leg.confirmed", "task.*"]},
        headers=operator.headers,
    )
    assert response.status == 201, await response.text()
    created = await response.json()
    assert created["secret"].startswith("whsec_")
    assert created["status"] == "active" and created["events"] == ["leg.confirmed", "task.*"]

    listed = await (await client.get("/v1/webhooks", headers=operator.headers)).json()
    assert [item["id"] for item in listed["items"]] == [created["id"]]
    assert "secret" not in listed["items"][0], "the secret is shown once"

    deliveries = await client.get(f"/v1/webhooks/{created['id']}/deliveries", headers=operator.headers)
    assert deliveries.status == 200 and (await deliveries.json())["items"] == []

    assert (await client.delete(f"/v1/webhooks/{created['id']}", headers=operator.headers)).status == 204
    assert (await client.delete(f"/v1/webhooks/{created['id']}", headers=operator.headers)).status == 404
    listed = await (await client.get("/v1/webhooks", headers=operator.headers)).json()
    assert listed["items"] == []


async def test_another_organisation_cannot_see_or_touch_a_webhook(
    client: TestClient[web.Request, web.Application],
    operator: Operator,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    created = await (
        await client.post(
            "/v1/webhooks", json={"url": "https://93.184.216.34/h", "events": ["*"]}, headers=operator.headers
        )
    ).json()
    stranger = await new_operator(sessionmaker)
    assert (await (await client.get("/v1/webhooks", headers=stranger.headers)).json())["items"] == []
    for method, path in [
        ("GET", f"/v1/webhooks/{created['id']}/deliveries"),
        ("DELETE", f"/v1/webhooks/{created['id']}"),
        ("POST", f"/v1/webhooks/{created['id']}/deliveries/{created['id']}/retry"),
    ]:
        response = await client.request(method, path, headers=stranger.headers)
        assert response.status == 404, (method, path)


async def test_auth_is_required(client: TestClient[web.Request, web.Application]) -> None:
    assert (await client.get("/v1/webhooks")).status == 401
    assert (await client.get("/v1/webhooks", headers={"Authorization": "Bearer nope"})).status == 401


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "http://10.0.0.5/hook",
        "http://192.168.1.10/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://[fe80::1]/hook",
        "http://[64:ff9b::a9fe:a9fe]/latest/meta-data",  # NAT64 of 169.254.169.254
        "http://[64:ff9b:1::a00:5]/hook",
        "http://[2002:a9fe:a9fe::1]/hook",  # 6to4
        "http://[::a9fe:a9fe]/hook",  # IPv4-compatible
        "http://[::ffff:a9fe:a9fe]/hook",  # IPv4-mapped
        "http://[::ffff:0:a9fe:a9fe]/hook",  # SIIT
        "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/hook",  # Teredo
        "http://[fec0::1]/hook",  # site-local
    ],
)
async def test_private_loopback_and_link_local_urls_are_refused(
    client: TestClient[web.Request, web.Application], operator: Operator, url: str
) -> None:
    response = await client.post("/v1/webhooks", json={"url": url, "events": ["*"]}, headers=operator.headers)
    assert response.status == 422
    problem = await response.json()
    assert response.content_type == "application/problem+json"
    assert problem["errors"][0]["field"] == "$.url"


async def test_private_urls_are_accepted_when_configuration_allows(
    notifier_settings: Settings, operator: Operator
) -> None:
    client = await _client(notifier_settings)  # webhook_allow_private_urls=True
    try:
        response = await client.post(
            "/v1/webhooks", json={"url": "http://127.0.0.1:9/hook", "events": ["*"]}, headers=operator.headers
        )
        assert response.status == 201
    finally:
        await client.close()
        await client.app[RUNTIME].engine.dispose()


@pytest.mark.parametrize(
    "body",
    [
        {"url": "ftp://example.org/x", "events": ["*"]},
        {"url": "https://example.org/x", "events": []},
        {"url": "https://example.org/x", "events": ["leg.eaten"]},
        {"url": "https://example.org/x", "events": ["*"], "colour": "red"},
    ],
)
async def test_bad_bodies_are_422_naming_the_field(
    client: TestClient[web.Request, web.Application], operator: Operator, body: dict[str, object]
) -> None:
    response = await client.post("/v1/webhooks", json=body, headers=operator.headers)
    assert response.status == 422
    assert (await response.json())["errors"]


async def test_the_callback_secret_is_shown_once_per_rotation(
    client: TestClient[web.Request, web.Application], operator: Operator
) -> None:
    first = await (await client.post("/v1/callback-secret", headers=operator.headers)).json()
    second = await (await client.post("/v1/callback-secret", headers=operator.headers)).json()
    assert first["secret"].startswith("whsec_") and second["secret"] != first["secret"]


async def test_openapi_documents_the_webhook_routes(client: TestClient[web.Request, web.Application]) -> None:
    document = await (await client.get("/openapi.json")).json()
    assert {"/v1/webhooks", "/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/retry"} <= document[
        "paths"
    ].keys()
    assert "WebhookIn" in document["components"]["schemas"]


async def test_operators_see_their_flagged_legs(
    client: TestClient[web.Request, web.Application],
    operator: Operator,
    notifier_settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    confirmer = Confirmer(max_failures=2)
    task = TaskScenario(notifier_settings, operator.organisation_id)
    await consume(sessionmaker, confirmer.on_task_submitted, task.submitted())
    response = await client.get("/v1/flagged-legs", headers=operator.headers)
    assert (await response.json())["items"] == []
    for wrong in ("000001", "000002"):
        await consume(sessionmaker, confirmer.on_leg_delivered, task.delivered(task.leg_ids[0], code=wrong))
    response = await client.get("/v1/flagged-legs", headers=operator.headers)
    assert (await response.json())["items"] == [
        {
            "leg_id": str(task.leg_ids[0]),
            "task_id": str(task.task_id),
            "organisation_id": str(operator.organisation_id),
            "failed_attempts": 2,
        }
    ]
    stranger = await new_operator(sessionmaker)
    assert (await (await client.get("/v1/flagged-legs", headers=stranger.headers)).json())["items"] == []


# --- ops and admin: read every organisation, write nothing ---------------------------------------

# Credentials in every part of a URL that may hold them; none may reach a reader outside the organisation.
CREDENTIALED_URL = "http://hook-user:hook-password@127.0.0.1:9/hooks/PATH-TOKEN?sig=QUERY-TOKEN"


@pytest.fixture
async def lenient_client(
    notifier_settings: Settings,
) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    """The API with private URLs allowed, so hooks point at a closed local port and never at the internet."""
    client = await _client(notifier_settings)
    try:
        yield client
    finally:
        await client.close()
        await client.app[RUNTIME].engine.dispose()


async def _register(
    client: TestClient[web.Request, web.Application], operator: Operator, url: str
) -> dict[str, str]:
    response = await client.post(
        "/v1/webhooks", json={"url": url, "events": ["leg.confirmed"]}, headers=operator.headers
    )
    assert response.status == 201, await response.text()
    created: dict[str, str] = await response.json()
    return created


async def _confirmed_leg(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], operator: Operator
) -> None:
    """A task of the operator's organisation whose leg is confirmed: one `leg.confirmed` delivery per hook."""
    notifications = Notifications(
        data_key=settings.data_key, webhook_max_attempts=settings.webhook_max_attempts, channels={}
    )
    confirmer = Confirmer(max_failures=3, notifications=notifications)
    task = TaskScenario(settings, operator.organisation_id)
    await consume(sessionmaker, confirmer.on_task_submitted, task.submitted())
    await consume(sessionmaker, confirmer.on_leg_delivered, task.delivered(task.leg_ids[0]))


@pytest.mark.parametrize("role", [Role.OPS, Role.ADMIN])
async def test_ops_and_admin_read_every_organisations_webhooks_and_deliveries_without_secrets(
    lenient_client: TestClient[web.Request, web.Application],
    notifier_settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    role: Role,
) -> None:
    client = lenient_client
    a, b = await new_operator(sessionmaker), await new_operator(sessionmaker)
    hook_a = await _register(client, a, CREDENTIALED_URL)
    hook_b = await _register(client, b, "http://127.0.0.1:9/b")
    for operator in (a, b):
        await _confirmed_leg(notifier_settings, sessionmaker, operator)
    reader = await cross_organisation_headers(sessionmaker, role)
    try:
        response = await client.get("/v1/webhooks", headers=reader)
        assert response.status == 200
        text = await response.text()
        listed = {item["id"]: item for item in (await response.json())["items"]}
        assert {hook_a["id"], hook_b["id"]} <= listed.keys(), "both organisations' hooks"
        assert listed[hook_a["id"]]["organisation_id"] == str(a.organisation_id)
        assert listed[hook_b["id"]]["organisation_id"] == str(b.organisation_id)
        assert listed[hook_a["id"]]["url"] == "http://***@127.0.0.1:9/***"
        assert all("secret" not in item for item in listed.values())
        for secret in (hook_a["secret"], hook_b["secret"], "hook-password", "PATH-TOKEN", "QUERY-TOKEN"):
            assert secret not in text

        for hook, owner in ((hook_a, a), (hook_b, b)):
            response = await client.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=reader)
            assert response.status == 200
            text = await response.text()
            [delivery] = (await response.json())["items"]
            assert delivery["event_type"] == "leg.confirmed" and delivery["status"] == "pending"
            assert hook["secret"] not in text and "hook-password" not in text
            # Exactly what the owner sees.
            owners = await client.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=owner.headers)
            assert (await owners.json())["items"] == [delivery]

        # The owner still sees its own URL whole (and still no secret).
        own = (await (await client.get("/v1/webhooks", headers=a.headers)).json())["items"]
        assert [(item["url"], "secret" in item) for item in own] == [(CREDENTIALED_URL, False)]
        # Unknown ids are 404 for cross-organisation readers too.
        missing = await client.get(f"/v1/webhooks/{uuid.uuid4()}/deliveries", headers=reader)
        assert missing.status == 404
    finally:
        for hook, owner in ((hook_a, a), (hook_b, b)):  # cancels their pending deliveries
            await client.delete(f"/v1/webhooks/{hook['id']}", headers=owner.headers)
    gone = await client.get(f"/v1/webhooks/{hook_a['id']}/deliveries", headers=reader)
    assert gone.status == 404, "a deleted hook is gone for every reader"


@pytest.mark.parametrize("role", [Role.OPS, Role.ADMIN])
async def test_ops_and_admin_change_nothing(
    lenient_client: TestClient[web.Request, web.Application],
    notifier_settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    role: Role,
) -> None:
    client = lenient_client
    owner = await new_operator(sessionmaker)
    hook = await _register(client, owner, "http://127.0.0.1:9/owner")
    await _confirmed_leg(notifier_settings, sessionmaker, owner)
    deliveries = f"/v1/webhooks/{hook['id']}/deliveries"
    [delivery] = (await (await client.get(deliveries, headers=owner.headers)).json())["items"]
    reader = await cross_organisation_headers(sessionmaker, role)
    try:
        writes = [
            ("POST", "/v1/webhooks", {"url": "http://127.0.0.1:9/ops", "events": ["*"]}),
            ("DELETE", f"/v1/webhooks/{hook['id']}", None),
            ("POST", f"{deliveries}/{delivery['id']}/retry", None),
            ("POST", "/v1/callback-secret", None),
        ]
        for method, path, body in writes:
            response = await client.request(method, path, json=body, headers=reader)
            assert response.status == 403, (method, path, await response.text())
            assert response.content_type == "application/problem+json"
            assert "secret" not in await response.json()

        # Nothing changed: one hook, the same delivery, untouched.
        own = (await (await client.get("/v1/webhooks", headers=owner.headers)).json())["items"]
        assert [item["id"] for item in own] == [hook["id"]]
        assert (await (await client.get(deliveries, headers=owner.headers)).json())["items"] == [delivery]
    finally:
        await client.delete(f"/v1/webhooks/{hook['id']}", headers=owner.headers)


async def test_ops_see_every_organisations_flagged_legs(
    client: TestClient[web.Request, web.Application],
    notifier_settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    confirmer = Confirmer(max_failures=1)
    flagged = {}
    for _ in range(2):
        operator = await new_operator(sessionmaker)
        task = TaskScenario(notifier_settings, operator.organisation_id)
        await consume(sessionmaker, confirmer.on_task_submitted, task.submitted())
        await consume(
            sessionmaker, confirmer.on_leg_delivered, task.delivered(task.leg_ids[0], code="000001")
        )
        flagged[str(task.leg_ids[0])] = str(operator.organisation_id)
        own = (await (await client.get("/v1/flagged-legs", headers=operator.headers)).json())["items"]
        assert [item["leg_id"] for item in own] == [str(task.leg_ids[0])], "operators see only theirs"
    ops = await cross_organisation_headers(sessionmaker, Role.OPS)
    response = await client.get("/v1/flagged-legs?limit=200", headers=ops)
    assert response.status == 200
    seen = {item["leg_id"]: item["organisation_id"] for item in (await response.json())["items"]}
    assert flagged.items() <= seen.items()
