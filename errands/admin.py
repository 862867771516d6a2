"""`errands admin ...`: organisations, people and tokens, straight against the database.

The audit trail names the command line as their actor (`cli`).
"""

from __future__ import annotations

import dataclasses
import secrets
import uuid
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.intake.adapters import staff as staff_repository
from services.intake.domain.staff import normal_email
from services.intake.entrypoints.schemas import ErasureIn
from services.intake.service_layer import staff
from services.intake.service_layer.admin import (
    create_organisation,
    create_organisation_token,
    create_role_token,
)
from services.intake.service_layer.personal_data import Erasure, erase_person
from services.intake.service_layer.register import RegisterKeys
from shared.auth import ApiToken, Organisation, Role, hash_token, revoke_token
from shared.db import create_engine, create_sessionmaker
from shared.errors import Invalid
from shared.events import current_actor
from shared.settings import Settings


async def _in_transaction(settings: Settings, action: Any) -> Any:
    engine = create_engine(settings, pool_size=1)
    current_actor.set("cli")
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


async def new_operator_token(
    settings: Settings,
    organisation_id: uuid.UUID,
    *,
    person_id: uuid.UUID | None = None,
    service: str | None = None,
) -> dict[str, Any]:
    result: dict[str, Any] = await _in_transaction(
        settings,
        lambda s: create_organisation_token(
            session=s, organisation_id=organisation_id, person_id=person_id, service=service
        ),
    )
    return result


async def new_role_token(
    settings: Settings, role: Role, *, person_id: uuid.UUID | None = None, service: str | None = None
) -> dict[str, Any]:
    result: dict[str, Any] = await _in_transaction(
        settings, lambda s: create_role_token(session=s, role=role, person_id=person_id, service=service)
    )
    return result


async def new_person(
    settings: Settings, organisation_id: uuid.UUID, *, email: str, role: str
) -> dict[str, Any]:
    """A member of staff and their one-time set-password link (in `setup.url`)."""
    result: dict[str, Any] = await _in_transaction(
        settings,
        lambda s: staff.create_person(
            session=s,
            organisation_id=organisation_id,
            email=email,
            role=role,
            setup_url=settings.password_setup_url,
            setup_ttl_s=settings.password_setup_ttl_s,
        ),
    )
    return result


async def new_password_link(settings: Settings, person_id: uuid.UUID) -> dict[str, Any]:
    result: dict[str, Any] = await _in_transaction(
        settings,
        lambda s: staff.new_setup_link(
            session=s,
            person_id=person_id,
            organisation_id=None,
            setup_url=settings.password_setup_url,
            setup_ttl_s=settings.password_setup_ttl_s,
        ),
    )
    return result


async def revoke(settings: Settings, token_id: uuid.UUID) -> bool:
    revoked: bool = await _in_transaction(settings, lambda s: revoke_token(s, token_id=token_id))
    return revoked


async def erase(
    settings: Settings, *, phone: str | None, email: str | None, organisation_id: uuid.UUID | None
) -> dict[str, Any]:
    """`errands admin erase`: what `POST /v1/erasures` does, with the same checks on its input."""
    try:
        body = ErasureIn(phone=phone, email=email, organisation_id=organisation_id)
    except ValidationError as exc:
        raise Invalid("; ".join(error["msg"] for error in exc.errors())) from None
    erasure: Erasure = await _in_transaction(
        settings,
        lambda s: erase_person(
            s,
            phone=body.phone,
            email=body.email,
            keys=RegisterKeys.from_data_key(settings.data_key),
            organisation_id=body.organisation_id,
        ),
    )
    return dataclasses.asdict(erasure)


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


DEMO_KEYS = ("organisation_id", "operator_token", "ops_token", "admin_token")


async def demo_tokens(settings: Settings, saved: Mapping[str, Any] | None) -> dict[str, str]:
    """The demo organisation and tokens of an earlier run if the database still honours them all, else new.

    A restart on kept data then keeps one demo organisation, and the tokens people copied still
    work; after `--fresh`, a revocation, or against another database, a new set is made.
    """
    if saved and all(isinstance(saved.get(key), str) for key in DEMO_KEYS):
        kept = {key: str(saved[key]) for key in DEMO_KEYS}
        if await _in_transaction(settings, lambda s: _demo_still_valid(s, kept)):
            return kept
    return await bootstrap_demo(settings)


async def _demo_still_valid(session: AsyncSession, demo: Mapping[str, str]) -> bool:
    try:
        organisation_id = uuid.UUID(demo["organisation_id"])
    except ValueError:
        return False
    if await session.get(Organisation, organisation_id) is None:
        return False
    expected = {
        demo["operator_token"]: (Role.OPERATOR, organisation_id),
        demo["ops_token"]: (Role.OPS, None),
        demo["admin_token"]: (Role.ADMIN, None),
    }
    for token, (role, organisation) in expected.items():
        live = select(ApiToken).where(ApiToken.token_hash == hash_token(token), ApiToken.revoked_at.is_(None))
        row = (await session.execute(live)).scalar_one_or_none()
        if row is None or row.role != role.value or row.organisation_id != organisation:
            return False
    return True


DEMO_COORDINATOR_EMAIL = "coordinator@ningbo-demo.example"
DEMO_COORDINATOR_ROLE = Role.OPERATOR


async def demo_coordinator(
    settings: Settings, organisation_id: uuid.UUID, saved: Mapping[str, Any] | None
) -> dict[str, str]:
    """The demo organisation's coordinator: an operator who logs in to the console with a password.

    The password is made once and kept (with the demo's tokens, `saved`): a restart finds the same
    person and login, and sets the kept password again should it no longer be theirs. A kept address
    that is another organisation's now (the demo organisation was made again) or disabled is left
    alone, and a new coordinator is made under an address of their own.
    """
    saved = saved or {}
    password = saved.get("console_password")
    if not isinstance(password, str) or len(password) < 12:
        password = secrets.token_urlsafe(15)
    email = saved.get("console_email")
    email = normal_email(email) if isinstance(email, str) and email else DEMO_COORDINATOR_EMAIL
    result: dict[str, str] = await _in_transaction(
        settings, lambda s: _ensure_coordinator(s, settings, organisation_id, email, password)
    )
    return result


async def _ensure_coordinator(
    session: AsyncSession, settings: Settings, organisation_id: uuid.UUID, email: str, password: str
) -> dict[str, str]:
    person = await staff_repository.person_by_email(session, email)
    if person is not None and (person.organisation_id != organisation_id or person.disabled_at is not None):
        local_part, domain = DEMO_COORDINATOR_EMAIL.split("@")
        email, person = f"{local_part}-{secrets.token_hex(3)}@{domain}", None
    setup_url, setup_ttl_s = settings.password_setup_url, settings.password_setup_ttl_s
    if person is None:
        made = await staff.create_person(
            session=session,
            organisation_id=organisation_id,
            email=email,
            role=DEMO_COORDINATOR_ROLE.value,
            setup_url=setup_url,
            setup_ttl_s=setup_ttl_s,
        )
        person_id, setup = uuid.UUID(made["id"]), made["setup"]
    else:
        person_id, setup = person.id, None
        if person.role != DEMO_COORDINATOR_ROLE.value:
            await staff.change_role(
                session=session, person_id=person_id, organisation_id=None, role=DEMO_COORDINATOR_ROLE.value
            )
        if not await staff.password_matches(person, password):
            renewed = await staff.new_setup_link(
                session=session,
                person_id=person_id,
                organisation_id=None,
                setup_url=setup_url,
                setup_ttl_s=setup_ttl_s,
            )
            setup = renewed["setup"]
    if setup is not None:
        await staff.set_password(session=session, token=setup["token"], password=password)
    return {"coordinator_id": str(person_id), "console_email": email, "console_password": password}
