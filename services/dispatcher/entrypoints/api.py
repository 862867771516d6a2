"""The dispatcher's route registry, and who is calling: every route module registers on `api`."""

from __future__ import annotations

import uuid

from aiohttp import web

from shared.auth import Principal, Role
from shared.http import Api
from shared.runtime import authorize

api = Api(title="Errands dispatcher")


async def acting_volunteer(request: web.Request) -> uuid.UUID:
    """The volunteer whose app sent the request (401/403 for any other caller)."""
    principal = await authorize(request, Role.VOLUNTEER)
    assert principal.volunteer_id is not None
    return principal.volunteer_id


def organisation_scope(principal: Principal) -> uuid.UUID | None:
    """Operators see their own organisation only; ops and admin see all."""
    return principal.organisation_id if principal.role is Role.OPERATOR else None
