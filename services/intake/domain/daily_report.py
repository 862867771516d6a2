"""The daily report: what happened to the tasks created in one local day, as an HTML page with
inline SVG bar charts (no external resources), tables with headers, and words beside every colour."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from html import escape
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
    name: str
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
            key = (row.volunteer_name or "(unnamed)") if volunteer_names else str(row.volunteer_id)
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
        return "not assigned"
    return {"true": "volunteer speaks it", "false": "volunteer does not speak it"}.get(
        row.speaks_dropoff_language, "not recorded"
    )


def _minutes(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds / 60:.1f} min"


def _bars(title: str, items: Sequence[tuple[str, float]], unit: str) -> str:
    """A horizontal bar chart as inline SVG; each bar carries its label and value as text."""
    if not items:
        return f'<p class="empty">{escape(title)}: nothing to draw.</p>'
    top = max(value for _, value in items) or 1.0
    row_h, label_w, bar_w = 22, 220, 300
    height = row_h * len(items) + 10
    parts = [
        f'<svg role="img" aria-label="{escape(title)}" viewBox="0 0 {label_w + bar_w + 120} {height}"'
        f' width="100%" style="max-width:{label_w + bar_w + 120}px"'
        f' xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>'
    ]
    for i, (label, value) in enumerate(items):
        y = 5 + i * row_h
        width = bar_w * value / top
        parts.append(
            f'<text x="0" y="{y + 15}" font-size="13">{escape(label)}</text>'
            f'<rect x="{label_w}" y="{y + 3}" width="{width:.1f}" height="{row_h - 8}" fill="#3a6ea5"/>'
            f'<text x="{label_w + width + 5:.1f}" y="{y + 15}" font-size="13">{value:g} {escape(unit)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _table(caption: str, headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    head = "".join(f'<th scope="col">{escape(h)}</th>' for h in headers)
    body = "".join(
        "<tr>"
        + f'<th scope="row">{escape(str(cells[0]))}</th>'
        + "".join(f"<td>{escape(str(c))}</td>" for c in cells[1:])
        + "</tr>"
        for cells in rows
    )
    if not body:
        body = f'<tr><td colspan="{len(headers)}">None.</td></tr>'
    # A wide table scrolls inside its own box on a phone; the page itself never scrolls sideways.
    return (
        f'<div class="table"><table><caption>{escape(caption)}</caption>'
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"
    )


STYLE = (
    "body{font-family:system-ui,sans-serif;margin:1rem;max-width:70rem}"
    ".table{overflow-x:auto}"
    "table{border-collapse:collapse;margin:1rem 0}"
    "th,td{border:1px solid #999;padding:.3rem .6rem;text-align:left}"
    "caption{font-weight:bold;text-align:left;padding:.3rem 0}"
)


def render(report: DailyReport) -> str:
    kinds = Counter[str]()
    for (kind, _), n in report.tasks_by_kind_status.items():
        kinds[kind] += n
    sections = [
        '<section id="tasks"><h2>Tasks by kind and outcome</h2>',
        _table(
            "Tasks created this day, by kind and status",
            ("Kind", "Status", "Tasks"),
            [(k, s, n) for (k, s), n in sorted(report.tasks_by_kind_status.items())],
        ),
        _bars("Tasks by kind", sorted(kinds.items()), "tasks"),
        _bars(
            "Tasks by hour of the day (local time)",
            [(f"{hour:02d}:00", n) for hour, n in sorted(report.tasks_by_hour.items())],
            "tasks",
        ),
        "</section>",
        '<section id="timings"><h2>Time to assign and to deliver, by priority</h2>',
        _table(
            "Minutes from submission (median and 90th percentile)",
            (
                "Priority",
                "Assigned: legs",
                "Assigned: median",
                "Assigned: p90",
                "Delivered: legs",
                "Delivered: median",
                "Delivered: p90",
            ),
            [
                (
                    p,
                    len(report.to_assign_s[p]),
                    _minutes(percentile(report.to_assign_s[p], 50)),
                    _minutes(percentile(report.to_assign_s[p], 90)),
                    len(report.to_deliver_s[p]),
                    _minutes(percentile(report.to_deliver_s[p], 50)),
                    _minutes(percentile(report.to_deliver_s[p], 90)),
                )
                for p in PRIORITIES
            ],
        ),
        _bars(
            "Median minutes to deliver, by priority",
            [
                (p, round((percentile(report.to_deliver_s[p], 50) or 0) / 60, 1))
                for p in PRIORITIES
                if report.to_deliver_s[p]
            ],
            "min",
        ),
        "</section>",
        '<section id="volunteers"><h2>Volunteers\' hours and rest</h2>',
        _table(
            "Per volunteer: legs, hours carrying errands, and rest between the first and the last",
            ("Volunteer", "Legs", "Busy hours", "Rest hours"),
            [
                (v.name, v.legs, f"{v.busy_s / 3600:.2f}", f"{v.rest_s / 3600:.2f}")
                for v in sorted(report.volunteers.values(), key=lambda v: -v.busy_s)
            ],
        ),
        _bars(
            "Hours carrying legs, busiest volunteers first",
            [
                (v.name, round(v.busy_s / 3600, 2))
                for v in sorted(report.volunteers.values(), key=lambda v: -v.busy_s)[:20]
            ],
            "h",
        ),
        "</section>",
        '<section id="escalations"><h2>Escalations</h2>',
        _table("Legs escalated, by reason", ("Reason", "Legs"), sorted(report.escalations.items())),
        "</section>",
        '<section id="languages"><h2>Language matches</h2>',
        "<p>Each leg by its drop-off's language, and whether the volunteer who carries it speaks that"
        " language (as the dispatcher said when it assigned the leg).</p>",
        _table(
            "Legs by the drop-off's language",
            ("Language", "Outcome", "Legs"),
            [(lang, outcome, n) for (lang, outcome), n in sorted(report.languages.items())],
        ),
        "</section>",
    ]
    title = f"Daily report, {report.day.isoformat()}"
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>{escape(title)}</h1><p>Tasks created on {report.day.isoformat()} ({escape(report.time_zone)}),"
        f" {sum(report.tasks_by_kind_status.values())} tasks, {report.legs} legs.</p>"
        + "".join(sections)
        + "</body></html>"
    )
