"""The simulation's actors, talking to the running services over their public HTTP APIs only.

The operator desk submits tasks and, while the run drains, assigns by hand what nobody took; each
volunteer app registers, goes on and off duty, long-polls, answers offers, travels and delivers.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp

from errands.simulation import model
from services.dispatcher.domain.geo import vehicle_satisfies
from shared.geo import haversine_m, travel_time_s

TERMINAL_LEG = frozenset({"confirmed", "failed", "cancelled"})
TERMINAL_TASK = frozenset({"completed", "cancelled", "failed", "partially_completed"})
# Handed back after pickup: not lost, but waiting for the operator desk's decision.
AWAITING_DECISION = "needs_decision"
_RETRY_STATUSES = frozenset({409, 429, 502, 503, 504})
# Real seconds a leg may wait in a volunteer's hands before it is their next stop, however far: the
# nearest-stop route alone starves a far drop-off while nearer legs keep coming, and such a leg
# stayed picked up until the drain ran out (counted lost, though no service lost it).
ROUTE_PATIENCE_S = 20.0


class ApiError(Exception):
    """A request that did not get a usable answer, after retries."""


# Refusals of the volunteer chosen (not of the leg): the desk tries the next candidate.
_VOLUNTEER_REFUSALS = ("volunteer-off-duty", "insurance-lapsed", "rest-owed", "daily-cap-reached")


def _volunteer_refused(body: Any) -> bool:
    """The hand assignment was refused for the volunteer: their limit, duty, insurance or welfare."""
    kind = str(body.get("type", "")) if isinstance(body, dict) else ""
    return "carries" in str(body) or kind.endswith(_VOLUNTEER_REFUSALS)


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any
    headers: Mapping[str, str]


async def call(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    token: str,
    json: Any = None,
    data: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    attempts: int = 6,
    retry_on: frozenset[int] = frozenset({429, 502, 503, 504}),
    timeout_s: float = 30.0,
) -> Answer:
    """One request with a bearer token; throttling, a busy service and a dropped connection are retried."""
    all_headers = {"Authorization": f"Bearer {token}", **(headers or {})}
    delay = 0.2
    for attempt in range(1, attempts + 1):
        try:
            async with http.request(
                method,
                url,
                json=json,
                data=data,
                headers=all_headers,
                timeout=aiohttp.ClientTimeout(total=timeout_s),
            ) as response:
                body: Any = None
                if response.status != 304 and response.content_type.endswith("json"):
                    body = await response.json(content_type=None)
                if response.status in retry_on and attempt < attempts:
                    retry_after = response.headers.get("Retry-After")
                    wait = float(retry_after) if retry_after and retry_after.isdigit() else delay
                    await asyncio.sleep(min(wait, 5.0))
                    delay = min(delay * 2, 5.0)
                    continue
                return Answer(response.status, body, response.headers)
        except (aiohttp.ClientConnectionError, TimeoutError) as exc:
            if attempt == attempts:
                raise ApiError(f"{method} {url}: {exc!r}") from exc
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
    raise ApiError(f"{method} {url}: gave up")  # pragma: no cover - the loop always returns or raises


@dataclass
class LegRecord:
    id: str
    task_id: str
    index: int
    code: str
    dropoff: model.Dropoff


@dataclass
class TaskRecord:
    id: str
    plan: model.TaskPlan
    submitted_at: float  # real seconds since the start
    hour: float
    legs: list[LegRecord]
    latest: dict[str, Any] | None = None

    def finished(self) -> bool:
        if self.latest is None:
            return False
        return self.latest["status"] in TERMINAL_TASK and all(
            leg["status"] in TERMINAL_LEG for leg in self.latest["legs"]
        )


@dataclass
class Ledger:
    """What the simulation saw and did, for the report."""

    started: float = field(default_factory=time.monotonic)
    tasks: dict[str, TaskRecord] = field(default_factory=dict)
    legs: dict[str, LegRecord] = field(default_factory=dict)
    rejected_submissions: Counter[str] = field(default_factory=Counter)
    replayed_submissions: int = 0
    volunteers: dict[str, VolunteerApp] = field(default_factory=dict)
    pickup_distance_m: list[float] = field(default_factory=list)
    answers: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    hand_assigned: set[str] = field(default_factory=set)
    decided: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)

    def now(self) -> float:
        return time.monotonic() - self.started

    def note_error(self, message: str) -> None:
        if len(self.errors) < 50:
            self.errors.append(message)


@dataclass(frozen=True)
class Endpoints:
    intake_url: str
    dispatcher_url: str
    operator_token: str


class OperatorDesk:
    """The operators of a volunteer centre: they submit tasks, and in the end place what is left by hand."""

    def __init__(
        self, *, http: aiohttp.ClientSession, endpoints: Endpoints, ledger: Ledger, run_id: str
    ) -> None:
        self._http = http
        self._endpoints = endpoints
        self._ledger = ledger
        self._run_id = run_id

    async def submit(self, number: int, plan: model.TaskPlan, *, hour: float) -> TaskRecord | None:
        """`POST /v1/tasks` with an Idempotency-Key; a retry after a lost answer sends the same key."""
        key = f"sim-{self._run_id}-{number}"
        body = plan.body()
        body["external_ref"] = key
        submitted_at = self._ledger.now()
        try:
            answer = await call(
                self._http,
                "POST",
                f"{self._endpoints.intake_url}/v1/tasks",
                token=self._endpoints.operator_token,
                json=body,
                headers={"Idempotency-Key": key},
                retry_on=_RETRY_STATUSES,
            )
        except ApiError as exc:
            self._ledger.rejected_submissions["unreachable"] += 1
            self._ledger.note_error(str(exc))
            return None
        if answer.status != 201:
            self._ledger.rejected_submissions[str(answer.status)] += 1
            self._ledger.note_error(f"submit {key}: {answer.status} {answer.body}")
            return None
        task = answer.body
        legs = [
            LegRecord(
                id=leg["id"],
                task_id=task["id"],
                index=leg["index"],
                code=leg["confirmation_code"],
                dropoff=plan.dropoffs[leg["index"]],
            )
            for leg in task["legs"]
        ]
        record = TaskRecord(id=task["id"], plan=plan, submitted_at=submitted_at, hour=hour, legs=legs)
        self._ledger.tasks[record.id] = record
        for leg in legs:
            self._ledger.legs[leg.id] = leg
        return record

    async def refresh(self, record: TaskRecord) -> None:
        """`GET /v1/tasks/{id}`: the task's legs, their transitions and the timeline."""
        try:
            answer = await call(
                self._http,
                "GET",
                f"{self._endpoints.intake_url}/v1/tasks/{record.id}",
                token=self._endpoints.operator_token,
            )
        except ApiError as exc:
            self._ledger.note_error(str(exc))
            return
        if answer.status == 200:
            record.latest = answer.body

    async def refresh_all(self, records: list[TaskRecord], *, per_second: float) -> None:
        """Read many tasks, paced so the operator token stays inside its rate limit."""
        gap = 1 / per_second
        pending: list[asyncio.Task[None]] = []
        try:
            for record in records:
                pending.append(asyncio.create_task(self.refresh(record)))
                await asyncio.sleep(gap)
            await asyncio.gather(*pending)
        finally:
            for task in pending:
                task.cancel()

    async def assign_by_hand(self, leg_id: str, candidates: list[VolunteerApp]) -> bool:
        """`POST /v1/legs/{id}/assign` to the nearest suitable volunteer who has room."""
        leg = self._ledger.legs[leg_id]
        record = self._ledger.tasks[leg.task_id]
        needed = record.plan.vehicle
        suitable = [
            app
            for app in candidates
            if app.volunteer_id is not None
            and leg.dropoff.language in app.profile.languages
            and vehicle_satisfies(app.profile.vehicle, needed)
            and app.in_hand() < app.profile.max_active_legs
        ]
        pickup = (record.plan.pickup["lat"], record.plan.pickup["lon"])
        suitable.sort(key=lambda app: haversine_m(*app.position, *pickup))
        for app in suitable[:3]:
            answer = await call(
                self._http,
                "POST",
                f"{self._endpoints.dispatcher_url}/v1/legs/{leg_id}/assign",
                token=self._endpoints.operator_token,
                json={"volunteer_id": app.volunteer_id},
            )
            if answer.status == 200:
                self._ledger.hand_assigned.add(leg_id)
                app.wake()
                return True
            if answer.status == 409 and not _volunteer_refused(answer.body):
                return False  # somebody took it meanwhile
        return False

    async def decide(self, leg_id: str) -> bool:
        """`POST /v1/legs/{id}/decision` for a leg handed back after pickup: the volunteer brings the
        goods back to the pickup, and the leg is dispatched from there again."""
        answer = await call(
            self._http,
            "POST",
            f"{self._endpoints.dispatcher_url}/v1/legs/{leg_id}/decision",
            token=self._endpoints.operator_token,
            json={"action": "return_to_pickup", "note": "the volunteer brings the goods back"},
        )
        if answer.status == 200:
            self._ledger.decided["return_to_pickup"] += 1
            return True
        if answer.status != 409:  # 409: decided already (our earlier answer was lost)
            self._ledger.note_error(f"decision {leg_id}: {answer.status} {answer.body}")
        return False


@dataclass
class InHand:
    leg: dict[str, Any]
    picked_up: bool = False
    missing: int = 0  # answers in a row that did not list it (one may predate our own accept)
    since: float = field(default_factory=time.monotonic)  # when the volunteer took it


class VolunteerApp:
    """One volunteer's mobile app, played by the simulation."""

    def __init__(
        self,
        *,
        profile: model.VolunteerProfile,
        http: aiohttp.ClientSession,
        endpoints: Endpoints,
        ledger: Ledger,
        clock: model.SimClock,
        behaviour: model.Behaviour,
        rng: random.Random,
        draining: asyncio.Event,
        poll_wait_s: float,
        max_leg_travel_s: float,
    ) -> None:
        self.profile = profile
        self.shift = model.Shift(profile)
        self.position: tuple[float, float] = profile.home
        self.volunteer_id: str | None = None
        self.on_duty = False
        self._token = ""
        self._http = http
        self._endpoints = endpoints
        self._ledger = ledger
        self._clock = clock
        self._behaviour = behaviour
        self._rng = rng
        self._draining = draining
        self._poll_wait_s = poll_wait_s
        self._max_leg_travel_s = max_leg_travel_s
        self._legs: dict[str, InHand] = {}
        # Legs this volunteer just delivered or handed back: a poll answered before the server saw
        # that still lists them in hand, and they must not be taken up again.
        self._left: set[str] = set()
        self._seen_offers: set[str] = set()
        self._changed = asyncio.Event()
        self._answering: set[asyncio.Task[None]] = set()

    # --- plumbing ------------------------------------------------------------------------------------

    def in_hand(self) -> int:
        return len(self._legs)

    def wake(self) -> None:
        self._changed.set()

    async def _me(self, method: str, path: str, json: Any = None, **kwargs: Any) -> Answer:
        return await call(
            self._http,
            method,
            f"{self._endpoints.dispatcher_url}/v1/me{path}",
            token=self._token,
            json=json,
            **kwargs,
        )

    def _sleep_sim(self, low_high: tuple[float, float]) -> float:
        return self._clock.real_s(self._rng.uniform(*low_high))

    # --- lifecycle -----------------------------------------------------------------------------------

    async def register(self) -> None:
        """`POST /v1/volunteers` with the operator's token; the answer holds this app's token."""
        answer = await call(
            self._http,
            "POST",
            f"{self._endpoints.dispatcher_url}/v1/volunteers",
            token=self._endpoints.operator_token,
            json=self.profile.registration(),
        )
        if answer.status != 201:
            raise ApiError(f"registering a volunteer: {answer.status} {answer.body}")
        self.volunteer_id = answer.body["id"]
        self._token = answer.body["token"]

    async def set_duty(self, on_duty: bool) -> None:
        answer = await self._me("PUT", "/duty", json={"on_duty": on_duty})
        if answer.status == 200:
            self.on_duty = on_duty
            self.shift.log.append((self._clock.hour(self._ledger.now()), on_duty))
        else:
            self._ledger.note_error(f"duty {on_duty}: {answer.status} {answer.body}")

    async def report_location(self) -> None:
        lat, lon = self.position
        answer = await self._me(
            "POST",
            "/location",
            json={"lat": lat, "lon": lon, "accuracy_m": 10, "at": datetime.now(UTC).isoformat()},
        )
        if answer.status != 202:
            self._ledger.note_error(f"location: {answer.status} {answer.body}")

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop`: poll for offers and legs in one task, work and keep shifts in another."""
        poller = asyncio.create_task(self._poll(stop))
        try:
            await self._work(stop)
        finally:
            poller.cancel()
            for task in self._answering:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller

    async def sign_off(self) -> None:
        """Off duty at the end of the run, so nobody is left on duty in the system."""
        if self.on_duty:
            with contextlib.suppress(ApiError):
                await self.set_duty(False)

    # --- the long poll -------------------------------------------------------------------------------

    async def _poll(self, stop: asyncio.Event) -> None:
        etag: str | None = None
        while not stop.is_set():
            try:
                answer = await self._me(
                    "GET",
                    f"/assignments?wait={self._poll_wait_s:g}",
                    headers={"If-None-Match": etag} if etag else None,
                    timeout_s=self._poll_wait_s + 15,
                )
            except ApiError as exc:
                self._ledger.note_error(str(exc))
                await asyncio.sleep(1)
                continue
            if answer.status == 304:
                continue
            if answer.status != 200:
                self._ledger.note_error(f"assignments: {answer.status} {answer.body}")
                await asyncio.sleep(1)
                continue
            etag = answer.headers.get("ETag")
            self._take_in(answer.body)

    def _take_in(self, body: dict[str, Any]) -> None:
        current = {leg["id"]: leg for leg in body.get("legs", [])}
        in_hand = {leg_id for leg_id, leg in current.items() if leg["status"] in ("assigned", "picked_up")}
        # Once the server shows a leg left out of hand, a later assignment of it is a new one.
        self._left &= in_hand
        for leg_id in in_hand - self._left:
            leg = current[leg_id]
            if leg_id not in self._legs:
                # Assigned by an operator, or accepted in an answer we did not see.
                self._legs[leg_id] = InHand(leg, picked_up=leg["status"] == "picked_up")
        for leg_id, held in list(self._legs.items()):
            if leg_id in current:
                held.missing = 0
                continue
            held.missing += 1
            if held.missing >= 2:
                self._legs.pop(leg_id)  # cancelled or taken back
                self._ledger.outcomes["leg withdrawn from volunteer"] += 1
        for offer in body.get("offers", []):
            if offer["id"] not in self._seen_offers:
                self._seen_offers.add(offer["id"])
                task = asyncio.create_task(self._answer(offer))
                self._answering.add(task)
                task.add_done_callback(self._answering.discard)
        self._changed.set()

    async def _answer(self, offer: dict[str, Any]) -> None:
        draining = self._draining.is_set()
        decision = model.answer_offer(self._rng, self._behaviour, draining=draining)
        if not self.on_duty:
            decision = "decline"
        self._ledger.answers[decision] += 1
        if decision == "expire":
            return
        await asyncio.sleep(0 if draining else min(self._sleep_sim(self._behaviour.reaction_s), 5.0))
        offer_id = offer["id"]
        if decision == "decline":
            answer = await self._me("POST", f"/offers/{offer_id}/decline", json={"reason": "busy"})
        else:
            answer = await self._me("POST", f"/offers/{offer_id}/accept")
            if answer.status == 200:
                pickup = answer.body["pickup"]
                self._ledger.pickup_distance_m.append(
                    haversine_m(*self.position, pickup["lat"], pickup["lon"])
                )
                self._legs.setdefault(answer.body["id"], InHand(answer.body))
                self._changed.set()
        if answer.status == 409:
            self._ledger.outcomes[f"{decision}: offer no longer open (409)"] += 1
        elif answer.status >= 400:
            self._ledger.note_error(f"{decision} {offer_id}: {answer.status} {answer.body}")

    # --- work and shifts -----------------------------------------------------------------------------

    async def _work(self, stop: asyncio.Event) -> None:
        hour = self._clock.hour(self._ledger.now())
        await self.report_location()
        if self.shift.on_duty_at(hour):
            await self.set_duty(True)
        else:
            self.shift.log.append((hour, False))
        while not stop.is_set():
            if self._legs:
                await self._next_stop()
                continue
            hour = self._clock.hour(self._ledger.now())
            wanted = self._draining.is_set() or self.shift.on_duty_at(hour)
            if wanted != self.on_duty:
                await self.set_duty(wanted)
                if wanted:
                    await self.report_location()
            self._changed.clear()
            if self._draining.is_set():
                wait = 1.0
            else:
                wait = max(0.05, min(5.0, self._clock.real_s((self.shift.next_change(hour) - hour) * 3600)))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=wait)

    async def _next_stop(self) -> None:
        """Greedy route: the nearest of the pickups still to make and the drop-offs of what is aboard;
        but a leg held longer than `ROUTE_PATIENCE_S` comes first (the longest held), so none starves."""
        stops: list[tuple[float, str, bool]] = []
        now = time.monotonic()
        overdue = [
            (held.since, leg_id) for leg_id, held in self._legs.items() if now - held.since > ROUTE_PATIENCE_S
        ]
        for leg_id, held in self._legs.items():
            point = held.leg["dropoff"] if held.picked_up else held.leg["pickup"]
            stops.append((haversine_m(*self.position, point["lat"], point["lon"]), leg_id, held.picked_up))
        if overdue:
            _, leg_id = min(overdue)
            aboard = self._legs[leg_id].picked_up
        else:
            _, leg_id, aboard = min(stops)
        held = self._legs[leg_id]
        point = held.leg["dropoff"] if aboard else held.leg["pickup"]
        await self._travel((point["lat"], point["lon"]))
        await asyncio.sleep(min(self._sleep_sim(self._behaviour.lingering_s), 2.0))
        if leg_id not in self._legs:
            return  # withdrawn on the way
        if aboard and self._rng.random() < self._behaviour.aboard_problem and not self._draining.is_set():
            await self._hand_back_in_hand(leg_id)
        elif aboard:
            await self._deliver(leg_id)
        else:
            here = [
                other
                for other, h in self._legs.items()
                if not h.picked_up
                and haversine_m(*self.position, h.leg["pickup"]["lat"], h.leg["pickup"]["lon"]) < 100
            ]
            for other in here:
                await self._pick_up(other)

    async def _travel(self, to: tuple[float, float]) -> None:
        """Move at the vehicle's speed, time-compressed, reporting the way."""
        distance = haversine_m(*self.position, *to)
        real = min(self._clock.real_s(travel_time_s(distance, self.profile.vehicle)), self._max_leg_travel_s)
        steps = max(1, min(20, int(real / 1.0)))
        for point in model.waypoints(self.position, to, steps):
            await asyncio.sleep(real / steps)
            self.position = point
            await self.report_location()

    async def _pick_up(self, leg_id: str) -> None:
        if self._rng.random() < self._behaviour.problem and not self._draining.is_set():
            self._legs.pop(leg_id, None)
            self._left.add(leg_id)
            answer = await self._me("POST", f"/legs/{leg_id}/problem", json={"reason": "bike broke down"})
            self._ledger.outcomes["problem reported (leg handed back)"] += 1
            if answer.status != 200:
                self._ledger.note_error(f"problem {leg_id}: {answer.status} {answer.body}")
            return
        answer = await self._me("POST", f"/legs/{leg_id}/picked-up")
        if answer.status == 200:
            if leg_id in self._legs:
                self._legs[leg_id].picked_up = True
        else:
            self._legs.pop(leg_id, None)
            self._ledger.outcomes[f"picked-up refused ({answer.status})"] += 1

    async def _upload_photo(self, leg_id: str) -> str | None:
        """Photograph the bag at the door and upload it; the photo's id, or None when refused."""
        answer = await self._me(
            "POST",
            f"/legs/{leg_id}/photos",
            data=model.door_photo(self._rng),
            headers={"Content-Type": "image/jpeg", "Idempotency-Key": str(uuid.uuid4())},
        )
        if answer.status != 201:
            self._ledger.outcomes[f"photo refused ({answer.status})"] += 1
            self._ledger.note_error(f"photo {leg_id}: {answer.status} {answer.body}")
            return None
        return str(answer.body["id"])

    async def _hand_back_in_hand(self, leg_id: str) -> None:
        """A problem on the way with the goods aboard: the leg waits for the operator's decision."""
        self._legs.pop(leg_id, None)
        self._left.add(leg_id)
        answer = await self._me("POST", f"/legs/{leg_id}/problem", json={"reason": "van broke down"})
        self._changed.set()
        self._ledger.outcomes["problem reported after pickup (operator decides)"] += 1
        if answer.status != 200:
            self._ledger.note_error(f"problem {leg_id}: {answer.status} {answer.body}")

    async def _deliver(self, leg_id: str) -> None:
        """Hand over: the recipient reads out the code (sometimes a wrong one first), or a photo."""
        held = self._legs.pop(leg_id)
        self._left.add(leg_id)
        self._changed.set()
        record = self._ledger.legs.get(leg_id)
        if record is None:
            self._ledger.note_error(f"leg {leg_id} is not one the simulation submitted")
            return
        if held.leg["dropoff"].get("no_contact"):
            photo_id = await self._upload_photo(leg_id)
            if photo_id is None:
                return
            bodies = [{"photo_id": photo_id, "note": "Left at the door, recipient informed."}]
            self._ledger.outcomes["no-contact photo"] += 1
        else:
            bodies = [{"confirmation_code": record.code}]
            if self._rng.random() < self._behaviour.wrong_code:
                width = len(record.code)
                wrong = f"{(int(record.code) + 1 + self._rng.randrange(8)) % 10**width:0{width}d}"
                bodies.insert(0, {"confirmation_code": wrong})
                self._ledger.outcomes["wrong code read out first"] += 1
        for body in bodies:
            answer = await self._me("POST", f"/legs/{leg_id}/delivered", json=body)
            if answer.status != 202:
                self._ledger.outcomes[f"delivered refused ({answer.status})"] += 1
                self._ledger.note_error(f"delivered {leg_id}: {answer.status} {answer.body}")
                return
