"""Notifier's HTTP API: operators' webhooks (health, readiness, metrics and OpenAPI come with every app).

Operators read and write their own organisation's webhooks; ops and admin read every organisation's
(URLs redacted, secrets never shown) and write nothing here.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

from aiohttp import web
from pydantic import BaseModel

from services.notifier.domain.errors import DeliveryNotFound, UrlNotPublic, WebhookDisabled, WebhookNotFound
from services.notifier.entrypoints.schemas import (
    CallbackSecretOut,
    DeliveriesQuery,
    DeliveryOut,
    DeliveryPageOut,
    FlaggedLegsOut,
    LimitQuery,
    WebhookIn,
    WebhookOut,
    WebhookPageOut,
    delivery_out,
    delivery_page_out,
    flagged_legs_out,
    webhook_out,
)
from services.notifier.service_layer import webhooks
from shared.auth import Role
from shared.errors import COMMON_STATUSES, Answer, DomainError
from shared.http import Api, json_response, parse_body, parse_query, path_uuid
from shared.runtime import RUNTIME, authorize

UrlCheck = Callable[[str], Awaitable[None]]
URL_CHECK: web.AppKey[UrlCheck] = web.AppKey("url_check")

api = Api(title="Errands notifier")

# How each of the notifier's refusals is answered over HTTP: the one table, handed to create_base_app.
ERROR_STATUSES: dict[type[DomainError], Answer] = {
    **COMMON_STATUSES,
    WebhookNotFound: Answer(404, "Not found"),
    DeliveryNotFound: Answer(404, "Not found"),
    WebhookDisabled: Answer(409, "Conflict"),
    UrlNotPublic: Answer(422, "Validation failed"),
}


def _answer(body: BaseModel, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """Send an answer built (and so validated) as its `*Out` model; fields never set are left out."""
    return json_response(body.model_dump(mode="json", exclude_unset=True), status=status, headers=headers)


# Who may read: an operator its own organisation, ops and admin every organisation.
READERS = ("operator", "ops", "admin")


async def _organisation(request: web.Request) -> uuid.UUID:
    """The organisation of the operator making a change; nobody else writes here."""
    principal = await authorize(request, Role.OPERATOR)
    assert principal.organisation_id is not None
    return principal.organisation_id


async def _read_scope(request: web.Request) -> uuid.UUID | None:
    """The organisation a reader is confined to; None for ops and admin, who read every organisation."""
    principal = await authorize(request, Role.OPERATOR, Role.OPS, Role.ADMIN)
    if principal.role is Role.OPERATOR:
        assert principal.organisation_id is not None  # an operator's scope is never "everyone"
        return principal.organisation_id
    return None


@api.route(
    "POST",
    "/v1/webhooks",
    summary="Register a webhook endpoint (its secret is shown once)",
    body=WebhookIn,
    response=WebhookOut,
    status=201,
    roles=("operator",),
)
async def post_webhook(request: web.Request) -> web.Response:
    organisation_id = await _organisation(request)
    body = await parse_body(request, WebhookIn)
    runtime = request.app[RUNTIME]
    check = None if runtime.settings.webhook_allow_private_urls else request.app[URL_CHECK]
    async with runtime.sessionmaker() as session, session.begin():
        created = await webhooks.create_endpoint(
            session=session,
            organisation_id=organisation_id,
            url=str(body.url),
            events=body.events,
            description=body.description,
            data_key=runtime.settings.data_key,
            check_url=check,
        )
    return _answer(webhook_out(created), status=201, headers={"Location": f"/v1/webhooks/{created.id}"})


@api.route(
    "GET",
    "/v1/webhooks",
    summary="Webhook endpoints: an operator's organisation's, or every organisation's for ops and admin",
    response=WebhookPageOut,
    roles=READERS,
)
async def get_webhooks(request: web.Request) -> web.Response:
    scope = await _read_scope(request)
    async with request.app[RUNTIME].sessionmaker() as session:
        endpoints = await webhooks.list_endpoints(session=session, organisation_id=scope)
    return _answer(WebhookPageOut(items=[webhook_out(e) for e in endpoints]))


@api.route(
    "DELETE",
    "/v1/webhooks/{webhook_id}",
    summary="Delete a webhook endpoint",
    status=204,
    roles=("operator",),
)
async def delete_webhook(request: web.Request) -> web.Response:
    organisation_id = await _organisation(request)
    endpoint_id = path_uuid(request, "webhook_id", "webhook")
    async with request.app[RUNTIME].sessionmaker() as session, session.begin():
        await webhooks.delete_endpoint(
            session=session, organisation_id=organisation_id, endpoint_id=endpoint_id
        )
    return web.Response(status=204)


@api.route(
    "GET",
    "/v1/webhooks/{webhook_id}/deliveries",
    summary="An endpoint's deliveries with every attempt, newest first",
    response=DeliveryPageOut,
    roles=READERS,
    query=DeliveriesQuery,
)
async def get_deliveries(request: web.Request) -> web.Response:
    scope = await _read_scope(request)
    endpoint_id = path_uuid(request, "webhook_id", "webhook")
    query = parse_query(request, DeliveriesQuery)
    async with request.app[RUNTIME].sessionmaker() as session:
        page = await webhooks.list_deliveries(
            session=session,
            organisation_id=scope,
            endpoint_id=endpoint_id,
            status=query.status,
            limit=query.limit,
            before=query.cursor,
        )
    return _answer(delivery_page_out(page))


@api.route(
    "POST",
    "/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/retry",
    summary="Send a delivery again now (same webhook-id)",
    response=DeliveryOut,
    status=202,
    roles=("operator",),
    errors=(409,),
)
async def post_retry(request: web.Request) -> web.Response:
    organisation_id = await _organisation(request)
    endpoint_id = path_uuid(request, "webhook_id", "webhook")
    delivery_id = path_uuid(request, "delivery_id", "delivery")
    async with request.app[RUNTIME].sessionmaker() as session, session.begin():
        delivery = await webhooks.retry_delivery(
            session=session, organisation_id=organisation_id, endpoint_id=endpoint_id, delivery_id=delivery_id
        )
    return _answer(delivery_out(delivery), status=202)


@api.route(
    "POST",
    "/v1/callback-secret",
    summary="Rotate the secret that signs callback_url deliveries (shown once)",
    response=CallbackSecretOut,
    status=201,
    roles=("operator",),
)
async def post_callback_secret(request: web.Request) -> web.Response:
    organisation_id = await _organisation(request)
    runtime = request.app[RUNTIME]
    async with runtime.sessionmaker() as session, session.begin():
        secret = await webhooks.rotate_callback_secret(
            session=session, organisation_id=organisation_id, data_key=runtime.settings.data_key
        )
    return _answer(CallbackSecretOut(secret=secret), status=201)


@api.route(
    "GET",
    "/v1/flagged-legs",
    summary="Legs whose confirmation failed too often (an operator should step in)",
    response=FlaggedLegsOut,
    roles=READERS,
    query=LimitQuery,
)
async def get_flagged_legs(request: web.Request) -> web.Response:
    scope = await _read_scope(request)
    limit = parse_query(request, LimitQuery).limit
    async with request.app[RUNTIME].sessionmaker() as session:
        legs = await webhooks.flagged_legs(session=session, organisation_id=scope, limit=limit)
    return _answer(flagged_legs_out(legs))
