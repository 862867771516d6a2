"""Organisations and the tokens that act for them or across them."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.intake.domain.errors import NotACrossOrganisationRole, OrganisationNotFound
from shared.auth import Organisation, Role, issue_token


async def create_organisation(*, session: AsyncSession, name: str) -> dict[str, Any]:
    """A new organisation with its first operator token (shown this once)."""
    organisation = Organisation(id=uuid.uuid4(), name=name)
    session.add(organisation)
    await session.flush()
    token_id, token = await issue_token(session, role=Role.OPERATOR, organisation_id=organisation.id)
    return {
        "id": str(organisation.id),
        "name": name,
        "operator_token": token,
        "operator_token_id": str(token_id),
    }


async def create_organisation_token(*, session: AsyncSession, organisation_id: uuid.UUID) -> dict[str, Any]:
    exists = await session.scalar(select(Organisation.id).where(Organisation.id == organisation_id))
    if exists is None:
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
