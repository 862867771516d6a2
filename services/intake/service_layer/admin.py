"""Organisations and the tokens that act for them or across them."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.intake.adapters import staff as staff_repository
from services.intake.adapters.repository import add_organisation, organisation_exists
from services.intake.domain.errors import (
    NotACrossOrganisationRole,
    OrganisationNotFound,
    PersonNotFound,
    TokenNotFound,
)
from shared import audit, auth
from shared.auth import Role, issue_token


async def create_organisation(*, session: AsyncSession, name: str) -> dict[str, Any]:
    """A new organisation with its first operator token (shown this once)."""
    organisation_id = uuid.uuid4()
    await add_organisation(session, organisation_id, name=name)
    token_id, token = await issue_token(session, role=Role.OPERATOR, organisation_id=organisation_id)
    await audit.record(session, "organisation.created", organisation_id=organisation_id)
    return {
        "id": str(organisation_id),
        "name": name,
        "operator_token": token,
        "operator_token_id": str(token_id),
    }


async def create_organisation_token(
    *,
    session: AsyncSession,
    organisation_id: uuid.UUID,
    person_id: uuid.UUID | None = None,
    service: str | None = None,
) -> dict[str, Any]:
    """An operator token of the organisation, owned by one of its people or named for a service."""
    if not await organisation_exists(session, organisation_id):
        raise OrganisationNotFound(f"No organisation has the id {organisation_id}.")
    await _check_owner(session, person_id, organisation_id=organisation_id)
    token_id, token = await issue_token(
        session,
        role=Role.OPERATOR,
        organisation_id=organisation_id,
        person_id=person_id,
        service_name=service,
    )
    await _audit_token(session, "token.created", token_id, Role.OPERATOR, organisation_id, person_id, service)
    return {"id": str(token_id), "token": token}


async def _check_owner(
    session: AsyncSession, person_id: uuid.UUID | None, *, organisation_id: uuid.UUID | None
) -> None:
    if (
        person_id is not None
        and await staff_repository.person(session, person_id, organisation_id=organisation_id) is None
    ):
        raise PersonNotFound()


async def _audit_token(
    session: AsyncSession,
    action: str,
    token_id: uuid.UUID,
    role: Role,
    organisation_id: uuid.UUID | None,
    person_id: uuid.UUID | None,
    service: str | None,
) -> None:
    detail: dict[str, Any] = {"token_id": str(token_id), "role": role.value}
    if service is not None:
        detail["service"] = service  # a name we chose for a machine, not a person's
    await audit.record(session, action, organisation_id=organisation_id, person_id=person_id, detail=detail)


async def create_role_token(
    *, session: AsyncSession, role: Role, person_id: uuid.UUID | None = None, service: str | None = None
) -> dict[str, Any]:
    """A token for a role that spans organisations (ops or admin)."""
    if role not in (Role.OPS, Role.ADMIN):
        raise NotACrossOrganisationRole(
            "Only ops and admin tokens are created here.",
            errors=[{"field": "$.role", "message": "must be 'ops' or 'admin'"}],
        )
    await _check_owner(session, person_id, organisation_id=None)
    token_id, token = await issue_token(session, role=role, person_id=person_id, service_name=service)
    await _audit_token(session, "token.created", token_id, role, None, person_id, service)
    return {"id": str(token_id), "token": token}


async def revoke_token(
    *, session: AsyncSession, token_id: uuid.UUID, organisation_id: uuid.UUID | None = None
) -> None:
    """Revoke a token (of `organisation_id`, when one is given): it is refused from now on, everywhere."""
    if not await auth.revoke_token(session, token_id=token_id, organisation_id=organisation_id):
        raise TokenNotFound()
    await audit.record(
        session, "token.revoked", organisation_id=organisation_id, detail={"token_id": str(token_id)}
    )
