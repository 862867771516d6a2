"""The simulated day in Ningbo: who asks for what, when and where, and who answers. No IO here.

Everything random draws from a `random.Random` handed in, so one seed gives one day.
"""

from __future__ import annotations

import io
import math
import random
from dataclasses import dataclass, field
from typing import Any, Literal

from shared.geo import KM_PER_DEGREE_LAT
from shared.ningbo import DISTRICTS, District

Kind = Literal["errand", "meal", "supply_run"]
Vehicle = Literal["foot", "bicycle", "ebike", "car", "van"]

KINDS: tuple[Kind, ...] = ("errand", "meal", "supply_run")
# The share of a whole day's tasks each kind makes up (errands for quarantined and elderly people first).
KIND_SHARES: dict[Kind, float] = {"errand": 0.5, "meal": 0.35, "supply_run": 0.15}
VEHICLE_MIX: dict[Vehicle, float] = {"foot": 0.15, "bicycle": 0.25, "ebike": 0.33, "car": 0.19, "van": 0.08}
CAPACITY_KG: dict[str, float] = {"foot": 8.0, "bicycle": 15.0, "ebike": 25.0, "car": 300.0, "van": 800.0}
# Foreign residents: a translation team served English, Korean and Japanese speakers.
FOREIGN_LANGUAGES: tuple[str, ...] = ("en", "ko", "ja")
RECIPIENT_LANGUAGE_MIX: dict[str, float] = {"zh": 0.9, "en": 0.06, "ko": 0.02, "ja": 0.02}
VOLUNTEER_LANGUAGE_SHARE: dict[str, float] = {"en": 0.35, "ko": 0.08, "ja": 0.08}

# The order a run takes districts in: from the city core outwards, so a small run uses the urban
# districts first and every district it uses has volunteers enough.
CORE_FIRST: tuple[str, ...] = (
    "Haishu",
    "Yinzhou",
    "Jiangbei",
    "Zhenhai",
    "Beilun",
    "Fenghua",
    "Yuyao",
    "Cixi",
    "Ninghai",
    "Xiangshan",
    "Hangzhou Bay New Area",
)


def load_districts() -> list[District]:
    """Ningbo's districts, core districts first."""
    return sorted(DISTRICTS, key=lambda d: CORE_FIRST.index(d.name))


def active_districts(
    districts: list[District], volunteers: int, *, per_district: int = 6, names: tuple[str, ...] = ()
) -> list[District]:
    """The districts a run serves: those named, else as many core districts as the volunteers can staff."""
    if names:
        chosen = [d for d in districts if d.name in names]
        if not chosen:
            raise ValueError(f"none of {names} is a district")
        return chosen
    return districts[: max(1, min(len(districts), volunteers // per_district))]


# --- geography ----------------------------------------------------------------------------------------


def offset(lat: float, lon: float, *, east_km: float, north_km: float) -> tuple[float, float]:
    """The point `east_km` east and `north_km` north of (lat, lon); flat-earth is fine at city scale."""
    return (
        lat + north_km / KM_PER_DEGREE_LAT,
        lon + east_km / (KM_PER_DEGREE_LAT * math.cos(math.radians(lat))),
    )


def place_near(rng: random.Random, lat: float, lon: float, *, spread_km: float) -> tuple[float, float]:
    """A point around (lat, lon): gaussian with σ = spread/2, never further than `spread_km`."""
    sigma = spread_km / 2
    for _ in range(32):
        east, north = rng.gauss(0, sigma), rng.gauss(0, sigma)
        if math.hypot(east, north) <= spread_km:
            break
    else:
        east, north = 0.0, 0.0
    point = offset(lat, lon, east_km=east, north_km=north)
    return round(point[0], 6), round(point[1], 6)


def place_in(rng: random.Random, district: District, *, scale: float = 1.0) -> tuple[float, float]:
    """A point in the district, around its centre within its spread (times `scale`)."""
    return place_near(rng, district.lat, district.lon, spread_km=district.spread_km * scale)


def waypoints(start: tuple[float, float], end: tuple[float, float], steps: int) -> list[tuple[float, float]]:
    """Evenly spaced points from just after `start` to `end` inclusive."""
    steps = max(1, steps)
    return [
        (start[0] + (end[0] - start[0]) * i / steps, start[1] + (end[1] - start[1]) * i / steps)
        for i in range(1, steps + 1)
    ]


# --- the day's rhythm ---------------------------------------------------------------------------------


def _bump(hour: float, centre: float, width: float) -> float:
    distance = min(abs(hour - centre), 24 - abs(hour - centre))
    return math.exp(-0.5 * (distance / width) ** 2)


def _raw_shape(kind: Kind, hour: float) -> float:
    hour %= 24
    night = 0.03 if hour < 6.5 or hour > 22 else 1.0
    if kind == "meal":
        # A lunch peak (charity lunches for community workers) and a smaller supper.
        shape = 0.1 + 1.6 * _bump(hour, 11.8, 0.7) + 0.8 * _bump(hour, 17.8, 0.7)
    elif kind == "errand":
        # Pharmacies and shops: a morning hump, an afternoon hump.
        shape = 0.45 + 0.5 * _bump(hour, 9.5, 1.5) + 0.35 * _bump(hour, 15.5, 1.5)
    else:
        # Depots load in the morning and early afternoon.
        shape = 0.1 + 1.0 * _bump(hour, 9.5, 1.2) + 0.6 * _bump(hour, 14.0, 1.2)
    return shape * night


def _day_mean(kind: Kind) -> float:
    samples = 24 * 12
    return sum(_raw_shape(kind, 24 * i / samples) for i in range(samples)) / samples


_DAY_MEANS = {kind: _day_mean(kind) for kind in KINDS}


def kind_rate(kind: Kind, hour: float) -> float:
    """The relative rate of `kind` at an hour of the day; over a whole day its mean is the kind's share."""
    return KIND_SHARES[kind] * _raw_shape(kind, hour) / _DAY_MEANS[kind]


def demand(hour: float) -> float:
    """All tasks' relative rate at an hour of the day (its mean over a day is 1)."""
    return sum(kind_rate(kind, hour) for kind in KINDS)


def kind_mix(hour: float) -> dict[Kind, float]:
    """Each kind's share of the tasks arriving at this hour."""
    total = demand(hour)
    return {kind: kind_rate(kind, hour) / total for kind in KINDS}


@dataclass(frozen=True)
class SimClock:
    """Maps seconds of real time since the start to the simulated time of day (hours, may pass 24)."""

    start_hour: float
    compression: float

    def hour(self, real_s: float) -> float:
        return self.start_hour + real_s * self.compression / 3600

    def real_s(self, sim_s: float) -> float:
        """Real seconds that `sim_s` simulated seconds take."""
        return sim_s / self.compression


@dataclass(frozen=True)
class Arrival:
    at_s: float  # real seconds after the start
    hour: float  # simulated hour of day
    kind: Kind


def plan_arrivals(
    rng: random.Random,
    *,
    clock: SimClock,
    duration_s: float,
    tasks_per_minute: float,
    max_tasks: int,
) -> list[Arrival]:
    """When each task arrives: an inhomogeneous Poisson process following the day's rhythm.

    The mean rate over the run is `tasks_per_minute`; the lunch peak runs above it, the night below.
    """
    if duration_s <= 0 or tasks_per_minute <= 0 or max_tasks <= 0:
        return []
    samples = 400
    span = [demand(clock.hour(duration_s * (i + 0.5) / samples)) for i in range(samples)]
    mean, peak = sum(span) / samples, max(span)
    base = tasks_per_minute / 60 / mean
    top = base * peak
    arrivals: list[Arrival] = []
    t = 0.0
    while len(arrivals) < max_tasks:
        t += rng.expovariate(top)
        if t >= duration_s:
            break
        hour = clock.hour(t)
        if rng.random() * peak <= demand(hour):
            mix = kind_mix(hour)
            kind = rng.choices(KINDS, weights=[mix[k] for k in KINDS])[0]
            arrivals.append(Arrival(at_s=t, hour=hour, kind=kind))
    return arrivals


# --- tasks --------------------------------------------------------------------------------------------

_SURNAMES = ("Wang", "Li", "Zhang", "Chen", "Liu", "Yang", "Zhao", "Huang", "Zhou", "Wu", "Xu", "Sun")
_GIVEN = ("Fang", "Wei", "Min", "Jing", "Lei", "Yan", "Jun", "Hua", "Ping", "Xin", "Lan", "Tao")
_FOREIGN_NAMES = {
    "en": ("Emily Carter", "James Walker", "Sarah Mitchell", "David Brown"),
    "ko": ("Kim Min-jun", "Park Seo-yeon", "Lee Ji-hoon", "Choi Yu-na"),
    "ja": ("Sato Haruto", "Suzuki Yui", "Takahashi Ren", "Tanaka Aoi"),
}
_STREETS = (
    "Zhongshan Road",
    "Baizhang Road",
    "Tianyi Square",
    "Liuting Street",
    "Jiefang Road",
    "Yaohang St",
)
_MEDICINES = (("insulin", 0.2), ("blood-pressure tablets", 0.1), ("inhaler", 0.1), ("heart medication", 0.1))
_GROCERIES = (("vegetables", 3.0), ("rice", 5.0), ("eggs", 1.0), ("fruit", 2.0), ("milk", 2.0))
_SUPPLIES = (
    ("masks", 500, 5.0),
    ("goggles", 100, 8.0),
    ("protective suits", 50, 15.0),
    ("disinfectant", 20, 22.0),
    ("vitamin boxes", 15, 12.0),
    ("tents", 2, 30.0),
)


@dataclass(frozen=True)
class Dropoff:
    lat: float
    lon: float
    language: str
    no_contact: bool
    vulnerable: bool
    address: str
    recipient_name: str
    recipient_phone: str
    notes: str | None = None

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "lat": self.lat,
            "lon": self.lon,
            "address": self.address,
            "recipient_name": self.recipient_name,
            "recipient_phone": self.recipient_phone,
            "language": self.language,
            "no_contact": self.no_contact,
            "vulnerable": self.vulnerable,
        }
        if self.notes:
            body["notes"] = self.notes
        return body


@dataclass(frozen=True)
class TaskPlan:
    """One task as an operator would submit it, with what the simulation needs to know about it."""

    kind: Kind
    priority: Literal["routine", "urgent", "critical"]
    district: str
    pickup: dict[str, Any]
    dropoffs: tuple[Dropoff, ...]
    items: tuple[dict[str, Any], ...]
    vehicle: Vehicle | None
    notes: str

    def body(self) -> dict[str, Any]:
        """The `POST /v1/tasks` body."""
        body: dict[str, Any] = {
            "kind": self.kind,
            "priority": self.priority,
            "pickup": self.pickup,
            "dropoffs": [d.as_json() for d in self.dropoffs],
            "items": list(self.items),
            "notes": self.notes,
        }
        if self.vehicle is not None:
            body["requirements"] = {"vehicle": self.vehicle}
        return body


def _phone(rng: random.Random) -> str:
    return f"+86138{rng.randrange(10**8):08d}"


def _address(rng: random.Random, district: District) -> str:
    return f"{district.name}, {rng.choice(_STREETS)} {rng.randint(1, 400)}"


def _recipient(
    rng: random.Random,
    lat: float,
    lon: float,
    district: District,
    *,
    language: str,
    vulnerable: bool,
    no_contact: bool,
    notes: str | None = None,
) -> Dropoff:
    if language in _FOREIGN_NAMES:
        name = rng.choice(_FOREIGN_NAMES[language])
    else:
        name = f"{rng.choice(_SURNAMES)} {rng.choice(_GIVEN)}"
    return Dropoff(
        lat=lat, lon=lon, language=language, no_contact=no_contact, vulnerable=vulnerable,
        address=_address(rng, district), recipient_name=name, recipient_phone=_phone(rng), notes=notes,
    )  # fmt: skip


def recipient_language(rng: random.Random) -> str:
    """Most recipients speak Chinese; some foreign residents need English, Korean or Japanese."""
    languages = list(RECIPIENT_LANGUAGE_MIX)
    return rng.choices(languages, weights=[RECIPIENT_LANGUAGE_MIX[x] for x in languages])[0]


def depots(districts: list[District]) -> list[tuple[District, float, float]]:
    """Donation depots: one near the centre of each of the first few districts served (at most 3)."""
    return [(d, *offset(d.lat, d.lon, east_km=0.8, north_km=-0.6)) for d in districts[:3]]


def plan_task(rng: random.Random, *, kind: Kind, hour: float, districts: list[District]) -> TaskPlan:
    """One task of `kind`, placed in one of `districts` (by weight)."""
    district = rng.choices(districts, weights=[d.population_10k for d in districts])[0]
    if kind == "errand":
        return _plan_errand(rng, district)
    if kind == "meal":
        return _plan_meal(rng, district, hour)
    return _plan_supply_run(rng, district, districts)


def _plan_errand(rng: random.Random, district: District) -> TaskPlan:
    home = place_in(rng, district)
    shop = place_near(rng, *home, spread_km=1.5)
    medicine = rng.random() < 0.45
    if medicine:
        # Medicine for elderly people living alone: urgent, sometimes critical, always vulnerable.
        name, weight = rng.choice(_MEDICINES)
        items: tuple[dict[str, Any], ...] = (
            {"name": name, "quantity": rng.randint(1, 3), "weight_kg": weight},
        )
        priority: Literal["routine", "urgent", "critical"] = "critical" if rng.random() < 0.3 else "urgent"
        dropoff = _recipient(
            rng, *home, district, language="zh", vulnerable=True, no_contact=rng.random() < 0.2,
            notes="Lives alone; knock and wait.",
        )  # fmt: skip
        notes, pickup_name = "Medicine run", "pharmacy"
    else:
        picks = rng.sample(_GROCERIES, k=rng.randint(1, 3))
        items = tuple({"name": n, "quantity": 1, "weight_kg": w} for n, w in picks)
        priority = "urgent" if rng.random() < 0.1 else "routine"
        # Households in home quarantine: hand-offs without contact.
        dropoff = _recipient(
            rng, *home, district, language=recipient_language(rng), vulnerable=rng.random() < 0.1,
            no_contact=rng.random() < 0.35,
        )  # fmt: skip
        notes, pickup_name = "Shopping for a household in quarantine", "supermarket"
    pickup = {"lat": shop[0], "lon": shop[1], "address": f"{_address(rng, district)} ({pickup_name})"}
    return TaskPlan(
        kind="errand", priority=priority, district=district.name, pickup=pickup, dropoffs=(dropoff,),
        items=items, vehicle=None, notes=notes,
    )  # fmt: skip


def _plan_meal(rng: random.Random, district: District, hour: float) -> TaskPlan:
    kitchen = place_in(rng, district, scale=0.5)
    stops = rng.choices((1, 2, 3), weights=(0.6, 0.3, 0.1))[0]
    dropoffs = tuple(
        _recipient(
            rng,
            *place_near(rng, *kitchen, spread_km=3.0),
            district,
            language=recipient_language(rng),
            vulnerable=rng.random() < 0.15,
            no_contact=rng.random() < 0.2,
        )
        for _ in range(stops)
    )
    boxes = rng.randint(1, 6)
    meal = "lunch" if hour % 24 < 15 else "supper"
    return TaskPlan(
        kind="meal",
        priority="routine",
        district=district.name,
        pickup={
            "lat": kitchen[0],
            "lon": kitchen[1],
            "address": f"{_address(rng, district)} (charity kitchen)",
        },
        dropoffs=dropoffs,
        items=({"name": f"{meal} box", "quantity": boxes, "weight_kg": round(0.5 * boxes, 1)},),
        vehicle="bicycle" if boxes > 3 else None,
        notes=f"{meal.capitalize()} for community workers",
    )


def _plan_supply_run(rng: random.Random, district: District, districts: list[District]) -> TaskPlan:
    home_district, lat, lon = rng.choice(depots(districts))
    stops = rng.randint(3, 8)
    # Checkpoints sit towards the edge of the district the run serves.
    dropoffs = tuple(
        _recipient(
            rng,
            *place_in(rng, district, scale=0.9),
            district,
            language="zh",
            vulnerable=False,
            no_contact=False,
            notes="Checkpoint: ask for the duty officer.",
        )
        for _ in range(stops)
    )
    picks = rng.sample(_SUPPLIES, k=rng.randint(1, 3))
    items = tuple({"name": n, "quantity": q, "weight_kg": w} for n, q, w in picks)
    per_stop = sum(w for _, _, w in picks) / stops
    return TaskPlan(
        kind="supply_run",
        priority="urgent" if rng.random() < 0.25 else "routine",
        district=district.name,
        pickup={"lat": lat, "lon": lon, "address": f"{home_district.name} donation depot"},
        dropoffs=dropoffs,
        items=items,
        vehicle="van" if per_stop > 60 else "car",
        notes=f"Supplies for {stops} checkpoints",
    )


# --- volunteers ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VolunteerProfile:
    index: int
    name: str
    phone: str
    district: str
    home: tuple[float, float]
    vehicle: Vehicle
    languages: tuple[str, ...]
    capacity_kg: float
    max_active_legs: int
    shift_start_hour: float  # simulated hour the first shift began (may be before the run starts)
    shift_hours: float
    rest_hours: float

    def registration(self) -> dict[str, Any]:
        """The `POST /v1/volunteers` body."""
        return {
            "name": self.name,
            "phone": self.phone,
            "languages": list(self.languages),
            "vehicle": self.vehicle,
            "capacity_kg": self.capacity_kg,
            "insured": True,
            "max_active_legs": self.max_active_legs,
            "home": {"lat": self.home[0], "lon": self.home[1]},
        }


# In each district served, the first volunteers cover what its tasks can need: a van and a car for
# supply runs, and speakers of each foreign language, so no leg waits for a volunteer who does not exist.
_COVER: tuple[tuple[Vehicle, tuple[str, ...]], ...] = (
    ("van", ("zh", "en")),
    ("ebike", ("zh", "ko", "en")),
    ("car", ("zh", "ja")),
    ("ebike", ("zh", "en")),
)


def plan_volunteers(
    rng: random.Random,
    *,
    count: int,
    districts: list[District],
    start_hour: float,
    shift_max_hours: float = 4.0,
    rest_min_hours: float = 0.5,
) -> list[VolunteerProfile]:
    """The run's volunteers, spread over `districts` by weight, each district covered first."""
    # Round-robin until each district has its covering volunteers, then by weight.
    covering = min(count, len(districts) * len(_COVER))
    assignment = [districts[i % len(districts)] for i in range(covering)]
    assignment += rng.choices(
        districts, weights=[d.population_10k for d in districts], k=count - len(assignment)
    )
    seen: dict[str, int] = {}
    vehicles = list(VEHICLE_MIX)
    profiles = []
    for index, district in enumerate(assignment):
        nth = seen.get(district.name, 0)
        seen[district.name] = nth + 1
        if nth < len(_COVER):
            vehicle, languages = _COVER[nth]
        else:
            vehicle = rng.choices(vehicles, weights=[VEHICLE_MIX[v] for v in vehicles])[0]
            languages = ("zh", *(x for x in FOREIGN_LANGUAGES if rng.random() < VOLUNTEER_LANGUAGE_SHARE[x]))
        shift_hours = round(rng.uniform(2.5, shift_max_hours), 2)
        profiles.append(
            VolunteerProfile(
                index=index,
                name=f"{rng.choice(_SURNAMES)} {rng.choice(_GIVEN)} (sim {index})",
                phone=_phone(rng),
                district=district.name,
                # Volunteers live nearer the centre than the farthest checkpoints.
                home=place_in(rng, district, scale=0.6),
                vehicle=vehicle,
                languages=languages,
                capacity_kg=CAPACITY_KG[vehicle],
                max_active_legs=8 if vehicle in ("car", "van") else rng.choice((2, 3)),
                # Staggered shifts: some are early in theirs, some about to rest.
                shift_start_hour=start_hour - rng.uniform(0, shift_hours * 0.8),
                shift_hours=shift_hours,
                rest_hours=round(rng.uniform(rest_min_hours, rest_min_hours + 1.0), 2),
            )
        )
    return profiles


@dataclass(frozen=True)
class Behaviour:
    """How volunteers answer offers and hand over; probabilities in [0, 1]."""

    accept: float = 0.85
    decline: float = 0.10  # the rest of the time the offer is left to expire
    wrong_code: float = 0.05
    problem: float = 0.01  # at the pickup: the leg goes back before anything is aboard
    # With the goods aboard, at the door: the leg waits for the operator desk. None: as `problem`.
    problem_aboard: float | None = None
    # Simulated seconds a volunteer takes to look at an offer.
    reaction_s: tuple[float, float] = (20.0, 120.0)
    lingering_s: tuple[float, float] = (60.0, 300.0)  # at a pickup or door

    def __post_init__(self) -> None:
        for name in ("accept", "decline", "wrong_code", "problem", "problem_aboard"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 1:
                raise ValueError(f"{name} must be a probability")
        if self.accept + self.decline > 1:
            raise ValueError("accept + decline must not exceed 1")

    @property
    def aboard_problem(self) -> float:
        """How often a problem comes with the goods aboard."""
        return self.problem if self.problem_aboard is None else self.problem_aboard


OfferAnswer = Literal["accept", "decline", "expire"]


def answer_offer(rng: random.Random, behaviour: Behaviour, *, draining: bool = False) -> OfferAnswer:
    """What a volunteer does with an offer; while the run drains, everyone says yes."""
    if draining:
        return "accept"
    roll = rng.random()
    if roll < behaviour.accept:
        return "accept"
    if roll < behaviour.accept + behaviour.decline:
        return "decline"
    return "expire"


@dataclass
class Shift:
    """A volunteer's duty rhythm in simulated hours: on for `shift_hours`, then rest, then on again."""

    profile: VolunteerProfile
    log: list[tuple[float, bool]] = field(default_factory=list)  # (sim hour, on duty)

    def on_duty_at(self, hour: float) -> bool:
        """Whether the plan has the volunteer on duty at this simulated hour."""
        cycle = self.profile.shift_hours + self.profile.rest_hours
        return (hour - self.profile.shift_start_hour) % cycle < self.profile.shift_hours

    def next_change(self, hour: float) -> float:
        """The simulated hour of the next change of duty after `hour`."""
        cycle = self.profile.shift_hours + self.profile.rest_hours
        into = (hour - self.profile.shift_start_hour) % cycle
        if into < self.profile.shift_hours:
            return hour + self.profile.shift_hours - into
        return hour + cycle - into


def duty_totals(log: list[tuple[float, bool]], *, end_hour: float) -> tuple[float, float]:
    """Hours on duty and hours resting between shifts, from a log of (hour, on duty) changes."""
    on = rest = 0.0
    for (hour, on_duty), (next_hour, _) in zip(log, [*log[1:], (end_hour, False)], strict=True):
        span = max(0.0, min(next_hour, end_hour) - min(hour, end_hour))
        if on_duty:
            on += span
        elif next_hour < end_hour:  # off-duty time before the run ended, followed by another shift
            rest += span
    return on, rest


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0–100) by linear interpolation, or None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def door_photo(rng: random.Random, width: int = 96, height: int = 128) -> bytes:
    """A small JPEG a volunteer's phone might take of the bag at the door: a door and a bag."""
    from PIL import Image, ImageDraw

    door = tuple(rng.randrange(60, 200) for _ in range(3))
    image = Image.new("RGB", (width, height), (door[0], door[1], door[2]))
    draw = ImageDraw.Draw(image)
    draw.rectangle((width // 3, height // 2, 2 * width // 3, height - 8), fill=(230, 220, 200))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=80)
    return out.getvalue()
