"""Issue 7, point 12: schemathesis against each service's live OpenAPI, with a token for each role.

For every service × role (operator, volunteer, ops, admin, and no token at all), every operation of
the service's own `/openapi.json` gets generated requests: a few for roles it refuses (they must be
refused with a documented problem), more for the roles it serves, both requests the document allows
(they must be accepted: positive_data_acceptance) and requests it forbids (they must be refused:
negative_data_rejection). Every answer goes through schemathesis' default checks plus
not_a_server_error, status_code_conformance, content_type_conformance and
response_schema_conformance, and must carry a status its document lists explicitly. So: no 5xx, no
undocumented status, no schema violation, and a document exactly as strict as the service.

Runs on the session's `system`, with its own organisation and volunteer, kept far from everybody
else's tasks and off duty afterwards.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
from schemathesis import GenerationMode

from errands import admin
from errands.launcher import ServiceProcesses
from tests.client import bearer
from tests.conftest import Stack
from tests.openapi_contract import operations, run_operation
from tests.reliability.public_api import new_volunteer

SERVICES = ("intake", "dispatcher", "notifier")
ROLES = ("operator", "volunteer", "ops", "admin", "none")

# Small on purpose: the whole file stays well inside two minutes on a busy two-core machine.
SERVED_EXAMPLES = {  # a role the operation serves: generation has to reach the handler's paths
    GenerationMode.POSITIVE: 12,
    GenerationMode.NEGATIVE: 8,
}
REFUSED_EXAMPLES = 2  # a role it refuses: every request ends at the same 401/403

# Answers that show the run reached success paths, not only refusals.
EXPECTED_SUCCESS = {
    ("intake", "operator"): {"POST /v1/tasks": 201, "GET /v1/tasks": 200},
    ("intake", "ops"): {"GET /v1/tasks": 200},
    ("intake", "admin"): {"GET /v1/tasks": 200, "POST /v1/tokens": 201},
    ("dispatcher", "operator"): {"POST /v1/volunteers": 201, "GET /v1/volunteers": 200},
    ("dispatcher", "ops"): {"GET /v1/volunteers": 200},
    ("dispatcher", "volunteer"): {"GET /v1/me/assignments": 200, "PUT /v1/me/duty": 200},
    ("notifier", "operator"): {"GET /v1/webhooks": 200, "POST /v1/callback-secret": 201},
    ("notifier", "admin"): {"GET /v1/webhooks": 200, "GET /v1/flagged-legs": 200},
}


@dataclass(frozen=True)
class World:
    urls: dict[str, str]
    tokens: dict[str, str | None]  # role -> bearer token; None sends no Authorization header
    volunteer_id: str

    def headers(self, role: str) -> dict[str, str]:
        token = self.tokens[role]
        return {} if token is None else bearer(token)


@pytest.fixture(scope="module")
async def world(system: ServiceProcesses, stack: Stack) -> AsyncIterator[World]:
    tokens = await admin.bootstrap_demo(stack.settings())
    urls = {name: system.url(name) for name in SERVICES}
    operator = bearer(tokens["operator_token"])
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        volunteer = await new_volunteer(
            http,
            urls["dispatcher"],
            operator=operator,
            body={
                "name": f"schemathesis {uuid.uuid4().hex[:6]}",
                "vehicle": "foot",
                "capacity_kg": 0,
                "max_active_legs": 1,
                "home": {"lat": -77.85, "lon": 166.67},  # McMurdo: nobody else's tasks are near
            },
        )
        yield World(
            urls=urls,
            tokens={
                "operator": tokens["operator_token"],
                "volunteer": volunteer["token"],
                "ops": tokens["ops_token"],
                "admin": tokens["admin_token"],
                "none": None,
            },
            volunteer_id=volunteer["id"],
        )
        # Generated requests may have put the volunteer on duty somewhere: take it off again.
        async with http.put(
            f"{urls['dispatcher']}/v1/me/duty",
            json={"on_duty": False},
            headers=bearer(volunteer["token"]),
        ) as response:
            assert response.status == 200, await response.text()


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("service", SERVICES)
def test_the_live_api_keeps_its_openapi_contract(world: World, service: str, role: str) -> None:
    found = operations(world.urls[service])
    assert found, f"{service} documents no operations"
    statuses: dict[str, set[int]] = {label: set() for label in found}
    for label, operation in found.items():
        # An operation with no roles is public (logging in, setting a password): it serves everyone.
        roles = operation.definition.raw.get("x-roles")
        served = not roles or role in roles
        budgets = SERVED_EXAMPLES if served else {GenerationMode.POSITIVE: REFUSED_EXAMPLES}
        for mode, max_examples in budgets.items():
            run_operation(
                operation,
                base_url=world.urls[service],
                headers=world.headers(role),
                statuses=statuses[label],
                max_examples=max_examples,
                mode=mode,
            )
        if not served:
            # A refused caller learns nothing else: no token is 401, the wrong role 403.
            assert statuses[label] == ({401} if role == "none" else {403}), (label, statuses[label])
    for label, status in EXPECTED_SUCCESS.get((service, role), {}).items():
        assert status in statuses[label], (label, statuses)
