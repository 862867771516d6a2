"""Organisations and the tokens that act for them or across them."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.intake.adapters.repository import add_organisation, organisation_exists
from services.intake.domain.errors import NotACrossOrganisationRole, OrganisationNotFound, TokenNotFound
from shared import auth
from shared.auth import Role, issue_token


async def create_organisation(*, session: AsyncSession, name: str) -> dict[str, Any]:
    """A new organisation with its first operator token (shown this once)."""
    organisation_id = uuid.uuid4()
    await add_organisation(session, organisation_id, name=name)
    token_id, token = await issue_token(session, role=Role.OPERATOR, organisation_id=organisation_id)
    return {
        "id": str(organisation_id),
        "name": name,
        "operator_token": token,
        "operator_token_id": str(token_id),
    }


async def create_organisation_token(*, session: AsyncSession, organisation_id: uuid.UUID) -> dict[str, Any]:
    if not await organisation_exists(session, organisation_id):
        raise OrganisationNotFound(f"No organisation has the id {organisation_id}.")
    token_id, token = await issue_token(session, role=Role.OPERATOR, organisation_id=organisation_id)
    return {"id": str(token_id), "token": token}


async def create_role_token(*, session: AsyncSession, role: Role) -> dict[str, Any]:
    """A token for a role that spans organisations (ops or admin)."""
    if role not in (Role.OPS, Role.ADMIN):
        raise NotACrossOrganisationRole(
            "Only ops and admin tokens are created here.",
            errors=[{"field": "$.role", "message": "must be 'ops' or 'admin'"}],
        )
    token_id, token = await issue_token(session, role=role)
    return {"id": str(token_id), "token": token}


async def revoke_token(*, session: AsyncSession, token_id: uuid.UUID) -> None:
    """Revoke a token: it is refused from now on, wherever it is presented."""
    if not await auth.revoke_token(session, token_id=token_id):
        raise TokenNotFound()
