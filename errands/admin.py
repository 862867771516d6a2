"""`errands admin ...`: organisations and tokens, straight against the database."""

from __future__ import annotations

import uuid
from typing import Any

from services.intake.service_layer.admin import (
    create_organisation,
    create_organisation_token,
    create_role_token,
)
from shared.auth import Role, revoke_token
from shared.db import create_engine, create_sessionmaker
from shared.settings import Settings


async def _in_transaction(settings: Settings, action: Any) -> Any:
    engine = create_engine(settings, pool_size=1)
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            return await action(session)
    finally:
        await engine.dispose()


async def new_organisation(settings: Settings, name: str) -> dict[str, Any]:
    result: dict[str, Any] = await _in_transaction(
        settings, lambda s: create_organisation(session=s, name=name)
    )
    return result


async def new_operator_token(settings: Settings, organisation_id: uuid.UUID) -> dict[str, Any]:
    result: dict[str, Any] = await _in_transaction(
        settings, lambda s: create_organisation_token(session=s, organisation_id=organisation_id)
    )
    return result


async def new_role_token(settings: Settings, role: Role) -> dict[str, Any]:
    result: dict[str, Any] = await _in_transaction(
        settings, lambda s: create_role_token(session=s, role=role)
    )
    return result


async def revoke(settings: Settings, token_id: uuid.UUID) -> bool:
    revoked: bool = await _in_transaction(settings, lambda s: revoke_token(s, token_id=token_id))
    return revoked


async def bootstrap_demo(settings: Settings) -> dict[str, str]:
    """A demo organisation with an operator token, plus ops and admin tokens, for a local run."""
    organisation = await new_organisation(settings, "Ningbo volunteer centre (demo)")
    ops = await new_role_token(settings, Role.OPS)
    admin = await new_role_token(settings, Role.ADMIN)
    return {
        "organisation_id": organisation["id"],
        "operator_token": organisation["operator_token"],
        "ops_token": ops["token"],
        "admin_token": admin["token"],
    }
