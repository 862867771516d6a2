"""A small async load driver: operators submitting tasks, volunteers' apps taking them to the door.

Submissions retry with the *same* Idempotency-Key on connection errors, 5xx and 409 (the first
request with that key still in flight), so a task counts as acknowledged only once a 201 came back,
and a retry can never create a second task. Volunteers' apps are the long-polling loop a phone runs:
accept (or now and then decline) each offer, report the pickup, report the delivery with the code.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from tests.client import bearer

# What a client does when the service is away: none of these is an answer about the request itself.
RETRYABLE = (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError)
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=30, sock_connect=5)


@dataclass(frozen=True)
class Acknowledged:
    """A task the operator saw a 201 for."""

    key: str
    task_id: str
    leg_ids: tuple[str, ...]
    codes: dict[str, str]


@dataclass
class Tally:
    """What the clients saw along the way, for the report and for the assertions."""

    statuses: Counter[int] = field(default_factory=Counter)
    connection_errors: int = 0
    retried_keys: int = 0

    def server_errors(self) -> dict[int, int]:
        """5xx answers other than 503 (the documented "database away for a moment, try again")."""
        return {status: n for status, n in self.statuses.items() if status >= 500 and status != 503}

    def __str__(self) -> str:
        return (
            f"statuses={dict(sorted(self.statuses.items()))} connection_errors={self.connection_errors} "
            f"retried_keys={self.retried_keys}"
        )


URLs = Callable[[], Sequence[str]]


def fixed(url: str) -> URLs:
    return lambda: (url,)


class Operators:
    """Submits tasks around one place on behalf of one organisation."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        intake: URLs,
        token: str,
        centre: tuple[float, float],
        *,
        seed: int = 0,
        give_up_after_s: float = 300.0,
    ) -> None:
        self.http = http
        self.intake = intake
        self.token = token
        self.centre = centre
        self.rng = random.Random(seed)
        self.give_up_after_s = give_up_after_s
        self.acknowledged: list[Acknowledged] = []
        self.codes: dict[str, str] = {}
        self.tally = Tally()

    def body(self) -> dict[str, Any]:
        lat, lon = self.centre
        rng = self.rng
        pickup_lat, pickup_lon = lat + rng.uniform(-0.01, 0.01), lon + rng.uniform(-0.01, 0.01)
        stops = rng.choice((1, 1, 1, 1, 2, 3))
        return {
            "kind": rng.choice(("errand", "meal", "supply_run")),
            "priority": rng.choice(("routine", "routine", "urgent", "critical")),
            "pickup": {"lat": pickup_lat, "lon": pickup_lon, "address": "depot"},
            "dropoffs": [
                {
                    "lat": pickup_lat + rng.uniform(-0.01, 0.01),
                    "lon": pickup_lon + rng.uniform(-0.01, 0.01),
                    "address": f"door {i}",
                    "vulnerable": rng.random() < 0.1,
                }
                for i in range(stops)
            ],
            "items": [{"name": "rice", "quantity": 1, "weight_kg": round(rng.uniform(0.5, 4.0), 1)}],
        }

    async def submit(self, key: str | None = None) -> Acknowledged:
        """POST one task, retrying with the same key until a 201 (or a 4xx, which is a test failure)."""
        key = key or str(uuid.uuid4())
        body = self.body()
        deadline = time.monotonic() + self.give_up_after_s
        attempts = 0
        while True:
            attempts += 1
            if attempts == 2:
                self.tally.retried_keys += 1
            url = random.choice(self.intake())
            try:
                async with self.http.post(
                    f"{url}/v1/tasks",
                    json=body,
                    headers={**bearer(self.token), "Idempotency-Key": key},
                    timeout=REQUEST_TIMEOUT,
                ) as response:
                    self.tally.statuses[response.status] += 1
                    if response.status == 201:
                        task = await response.json()
                        break
                    text = await response.text()
                    if response.status < 500 and response.status != 409:
                        raise AssertionError(f"submit answered {response.status}: {text}")
            except RETRYABLE:
                self.tally.connection_errors += 1
            if time.monotonic() > deadline:
                raise AssertionError(f"task with key {key} never acknowledged ({self.tally})")
            await asyncio.sleep(0.2)
        codes = {leg["id"]: leg["confirmation_code"] for leg in task["legs"]}
        self.codes.update(codes)
        ack = Acknowledged(key, task["id"], tuple(leg["id"] for leg in task["legs"]), codes)
        self.acknowledged.append(ack)
        return ack

    async def submit_many(self, count: int, *, concurrency: int = 16, per_s: float | None = None) -> None:
        """Submit `count` tasks with at most `concurrency` in flight, paced at `per_s` when given."""
        gate = asyncio.Semaphore(concurrency)
        started = time.monotonic()

        async def one(i: int) -> None:
            if per_s is not None:
                await asyncio.sleep(max(0.0, started + i / per_s - time.monotonic()))
            async with gate:
                await self.submit()

        await asyncio.gather(*(one(i) for i in range(count)))

    @property
    def leg_ids(self) -> list[str]:
        return [leg_id for ack in self.acknowledged for leg_id in ack.leg_ids]

    @property
    def task_ids(self) -> list[str]:
        return [ack.task_id for ack in self.acknowledged]


@dataclass
class Volunteer:
    id: str
    token: str
    place: tuple[float, float]
    # A phone left in a pocket: on duty and located, but never polls, so every offer to it expires.
    silent: bool = False


class Volunteers:
    """Volunteers near `centre`, each with an app that polls and works through its offers and legs."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        dispatcher: URLs,
        operator_token: str,
        codes: dict[str, str],
        centre: tuple[float, float],
        *,
        seed: int = 0,
        accept_share: float = 0.85,
        decline_share: float = 0.1,
        max_active_legs: tuple[int, ...] = (1, 2, 3),
        poll_wait_s: int = 10,
    ) -> None:
        self.http = http
        self.dispatcher = dispatcher
        self.operator_token = operator_token
        self.codes = codes
        self.centre = centre
        self.rng = random.Random(seed)
        # The rest of the offers are left to expire, as a phone left in a pocket does.
        self.accept_share = accept_share
        self.decline_share = decline_share
        self.max_active_legs = max_active_legs
        self.poll_wait_s = poll_wait_s
        self.crew: list[Volunteer] = []
        self.tally = Tally()
        self._stop = asyncio.Event()
        self._apps: list[asyncio.Task[None]] = []

    async def _call(self, method: str, path: str, token: str, **kwargs: Any) -> tuple[int, Any, str]:
        """One request to any live dispatcher; (0, None, "") when none answered."""
        try:
            async with self.http.request(
                method,
                f"{random.choice(self.dispatcher())}{path}",
                headers={**bearer(token), **kwargs.pop("headers", {})},
                timeout=REQUEST_TIMEOUT,
                **kwargs,
            ) as response:
                self.tally.statuses[response.status] += 1
                body = await response.json() if response.content_type.endswith("json") else None
                return response.status, body, response.headers.get("ETag", "")
        except RETRYABLE:
            self.tally.connection_errors += 1
            return 0, None, ""

    async def _until_ok(self, method: str, path: str, token: str, ok: int, **kwargs: Any) -> Any:
        for _ in range(600):
            status, body, _ = await self._call(method, path, token, **dict(kwargs))
            if status == ok:
                return body
            if 400 <= status < 500:
                raise AssertionError(f"{method} {path} answered {status}: {body}")
            await asyncio.sleep(0.2)
        raise AssertionError(f"{method} {path} never answered {ok}")

    async def register(self, count: int, *, silent: int = 0, silent_max_active_legs: int = 10) -> None:
        """`count` volunteers whose apps answer, and `silent` ones whose offers all expire.

        Silent volunteers are cheap to simulate and keep every leg moving to an offer; the answering
        ones make the assignments (and the load on the volunteers' API) the invariants are about.
        """
        lat, lon = self.centre
        for i in range(count + silent):
            quiet = i >= count
            created = await self._until_ok(
                "POST",
                "/v1/volunteers",
                self.operator_token,
                201,
                json={
                    "name": "Zhang Wei",
                    "vehicle": "car",
                    "capacity_kg": 100,
                    "insured": True,
                    "languages": ["zh", "en"],
                    "max_active_legs": silent_max_active_legs
                    if quiet
                    else self.rng.choice(self.max_active_legs),
                },
            )
            place = (lat + self.rng.uniform(-0.01, 0.01), lon + self.rng.uniform(-0.01, 0.01))
            volunteer = Volunteer(created["id"], created["token"], place, silent=quiet)
            await self._until_ok("PUT", "/v1/me/duty", volunteer.token, 200, json={"on_duty": True})
            await self._until_ok(
                "POST", "/v1/me/location", volunteer.token, 202, json={"lat": place[0], "lon": place[1]}
            )
            self.crew.append(volunteer)

    def start(self) -> None:
        self._stop.clear()
        self._apps = [
            asyncio.create_task(self._app(volunteer, random.Random(self.rng.random())))
            for volunteer in self.crew
            if not volunteer.silent
        ]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._apps)
        self._apps = []

    def check(self) -> None:
        """Raise the error an app died of: a dead app would only show as a drain that never ends."""
        for app in self._apps:
            if app.done() and not app.cancelled() and app.exception() is not None:
                raise AssertionError("a volunteer's app died") from app.exception()

    async def _app(self, volunteer: Volunteer, rng: random.Random) -> None:
        etag = ""
        token = volunteer.token
        decided: set[str] = set()
        while not self._stop.is_set():
            headers = {"If-None-Match": etag} if etag else {}
            status, body, new_etag = await self._call(
                "GET", f"/v1/me/assignments?wait={self.poll_wait_s}", token, headers=headers
            )
            if status == 304:
                continue
            if status != 200:
                etag = ""
                await asyncio.sleep(0.2)
                continue
            etag = new_etag
            acted = False
            for offer in body["offers"]:
                if offer["id"] in decided:
                    continue
                decided.add(offer["id"])
                draw = rng.random()
                if draw >= self.accept_share + self.decline_share:
                    continue
                acted = True
                action = "accept" if draw < self.accept_share else "decline"
                # 409 (expired or withdrawn meanwhile) and errors are fine: the next poll tells the truth.
                await self._call("POST", f"/v1/me/offers/{offer['id']}/{action}", token)
            for leg in body["legs"]:
                if leg["status"] == "assigned":
                    acted = True
                    await self._call("POST", f"/v1/me/legs/{leg['id']}/picked-up", token)
                elif leg["status"] == "picked_up" and leg["id"] in self.codes:
                    acted = True
                    await self._call(
                        "POST",
                        f"/v1/me/legs/{leg['id']}/delivered",
                        token,
                        json={"confirmation_code": self.codes[leg["id"]]},
                    )
            if acted:
                # Something was done: look again at once rather than wait for the next change.
                etag = ""
