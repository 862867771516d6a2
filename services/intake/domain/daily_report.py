"""The daily report's figures: what happened to the tasks created in one local day.

`summarise` counts the day's legs; `figures` turns the counts into what the page shows (tables of
codes and numbers, and bar charts measured out), leaving words, languages and drawing to the template
(`entrypoints/templates/report/daily.html`)."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

PRIORITIES = ("critical", "urgent", "routine")


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def percentile(values: Sequence[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


@dataclass
class VolunteerDay:
    name: str  # a masked name for operators ("" when none is known), the volunteer's id for ops
    legs: int = 0
    busy_s: float = 0.0
    first: datetime | None = None
    last: datetime | None = None

    @property
    def span_s(self) -> float:
        return (self.last - self.first).total_seconds() if self.first and self.last else 0.0

    @property
    def rest_s(self) -> float:
        return max(0.0, self.span_s - self.busy_s)


@dataclass
class DailyReport:
    day: date
    time_zone: str
    tasks_by_kind_status: Counter[tuple[str, str]] = field(default_factory=Counter)
    to_assign_s: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    to_deliver_s: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    volunteers: dict[str, VolunteerDay] = field(default_factory=dict)
    escalations: Counter[str] = field(default_factory=Counter)
    languages: Counter[tuple[str, str]] = field(default_factory=Counter)
    tasks_by_hour: Counter[int] = field(default_factory=Counter)
    legs: int = 0


def summarise(rows: Iterable[Any], *, day: date, time_zone: str, volunteer_names: bool) -> DailyReport:
    """Figures from the legs of the day's tasks (see adapters/report_queries.day_legs)."""
    report = DailyReport(day, time_zone)
    zone = ZoneInfo(time_zone)
    seen: set[Any] = set()
    for row in rows:
        report.legs += 1
        if row.task_id not in seen:
            seen.add(row.task_id)
            report.tasks_by_kind_status[(row.kind, row.task_status)] += 1
            report.tasks_by_hour[row.created_at.astimezone(zone).hour] += 1
        times = row.transitions or {}
        assigned, delivered = _time(times.get("assigned")), _time(times.get("delivered"))
        if assigned:
            report.to_assign_s[row.priority].append((assigned - row.created_at).total_seconds())
        if delivered:
            report.to_deliver_s[row.priority].append((delivered - row.created_at).total_seconds())
        if row.volunteer_id is not None:
            key = (row.volunteer_name or "") if volunteer_names else str(row.volunteer_id)
            person = report.volunteers.setdefault(str(row.volunteer_id), VolunteerDay(key))
            person.legs += 1
            end = delivered or _time(times.get("confirmed"))
            if assigned and end:
                person.busy_s += max(0.0, (end - assigned).total_seconds())
            for moment in (assigned, end):
                if moment:
                    person.first = moment if person.first is None else min(person.first, moment)
                    person.last = moment if person.last is None else max(person.last, moment)
        if row.escalated_at is not None:
            report.escalations[row.escalation_reason or "unspecified"] += 1
        report.languages[(row.language or "zh", _language_outcome(row))] += 1
    return report


def _language_outcome(row: Any) -> str:
    """Whether the volunteer who carries a leg speaks its drop-off's language, as `leg.assigned` said."""
    if row.volunteer_id is None:
        return "not_assigned"
    return {"true": "speaks", "false": "does_not_speak"}.get(row.speaks_dropoff_language, "not_recorded")


@dataclass(frozen=True)
class Bar:
    label: str  # a code the template names in the page's language, or a name or an hour as it is
    value: float
    length: float  # in the chart's units, the longest bar `Chart.BAR_LENGTH`


@dataclass(frozen=True)
class Chart:
    BAR_LENGTH = 100.0
    bars: tuple[Bar, ...]

    @classmethod
    def of(cls, items: Iterable[tuple[str, float]]) -> Chart:
        pairs = list(items)
        top = max((value for _, value in pairs), default=0.0) or 1.0
        return cls(tuple(Bar(label, value, cls.BAR_LENGTH * value / top) for label, value in pairs))


@dataclass(frozen=True)
class Timing:
    priority: str
    assigned: int
    assigned_median_min: float | None
    assigned_p90_min: float | None
    delivered: int
    delivered_median_min: float | None
    delivered_p90_min: float | None


@dataclass(frozen=True)
class VolunteerFigures:
    name: str
    legs: int
    busy_h: float
    rest_h: float


@dataclass(frozen=True)
class DailyFigures:
    """Everything the daily report page shows, as codes and numbers."""

    day: date
    time_zone: str
    tasks: int
    legs: int
    by_kind_status: tuple[tuple[str, str, int], ...]
    by_kind: Chart
    by_hour: Chart
    timings: tuple[Timing, ...]
    median_delivery: Chart
    volunteers: tuple[VolunteerFigures, ...]
    busiest: Chart
    escalations: tuple[tuple[str, int], ...]
    languages: tuple[tuple[str, str, int], ...]


def _minutes(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds / 60, 1)


BUSIEST_SHOWN = 20


def figures(report: DailyReport) -> DailyFigures:
    kinds = Counter[str]()
    for (kind, _), n in report.tasks_by_kind_status.items():
        kinds[kind] += n
    timings = tuple(
        Timing(
            priority=p,
            assigned=len(report.to_assign_s[p]),
            assigned_median_min=_minutes(percentile(report.to_assign_s[p], 50)),
            assigned_p90_min=_minutes(percentile(report.to_assign_s[p], 90)),
            delivered=len(report.to_deliver_s[p]),
            delivered_median_min=_minutes(percentile(report.to_deliver_s[p], 50)),
            delivered_p90_min=_minutes(percentile(report.to_deliver_s[p], 90)),
        )
        for p in PRIORITIES
    )
    volunteers = tuple(
        VolunteerFigures(v.name, v.legs, round(v.busy_s / 3600, 2), round(v.rest_s / 3600, 2))
        for v in sorted(report.volunteers.values(), key=lambda v: (-v.busy_s, v.name))
    )
    return DailyFigures(
        day=report.day,
        time_zone=report.time_zone,
        tasks=sum(report.tasks_by_kind_status.values()),
        legs=report.legs,
        by_kind_status=tuple((k, s, n) for (k, s), n in sorted(report.tasks_by_kind_status.items())),
        by_kind=Chart.of(sorted(kinds.items())),
        by_hour=Chart.of((f"{hour:02d}:00", n) for hour, n in sorted(report.tasks_by_hour.items())),
        timings=timings,
        median_delivery=Chart.of(
            (t.priority, t.delivered_median_min) for t in timings if t.delivered_median_min is not None
        ),
        volunteers=volunteers,
        busiest=Chart.of((v.name, v.busy_h) for v in volunteers[:BUSIEST_SHOWN]),
        escalations=tuple(sorted(report.escalations.items())),
        languages=tuple((lang, outcome, n) for (lang, outcome), n in sorted(report.languages.items())),
    )
