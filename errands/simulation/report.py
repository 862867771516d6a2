"""What a simulated day showed: figures from the tasks as intake reports them, a Markdown page, charts."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from errands.simulation import model
from errands.simulation.agents import AWAITING_DECISION, TERMINAL_LEG, Ledger

PRIORITIES = ("critical", "urgent", "routine")
STAGES = ("offer", "assign", "confirm")


@dataclass
class LegOutcome:
    id: str
    task_id: str
    kind: str
    priority: str
    status: str
    language: str
    offers: int
    to_offer_s: float | None
    to_assign_s: float | None
    to_confirm_s: float | None
    volunteer_id: str | None
    hand_assigned: bool
    seen_by_dispatcher: bool


@dataclass
class Summary:
    """The figures of one run."""

    run_id: str
    seed: int
    volunteers: int
    districts: list[str]
    duration_s: float
    time_compression: float
    start_hour: float
    end_hour: float
    interrupted: bool
    tasks_submitted: int
    tasks_by_kind: dict[str, int]
    tasks_by_priority: dict[str, int]
    arrivals_by_hour: dict[int, dict[str, int]]
    rejected_submissions: dict[str, int]
    legs: list[LegOutcome]
    lost: list[LegOutcome]
    escalated_tasks: int
    pickup_distance_m: list[float]
    answers: dict[str, int]
    outcomes: dict[str, int]
    duty_hours: dict[str, tuple[float, float]]  # volunteer name -> (on duty, resting), simulated hours
    duty_timeline: list[tuple[float, int]]  # (simulated hour, volunteers on duty)
    language_needed: int
    language_matched: int
    language_checked: int
    language_matched_all: int
    errors: list[str] = field(default_factory=list)
    points: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    # Handed back after pickup and still waiting for an operator's decision after the drain: known
    # to the operators (escalated), so not lost; the desk decides them, so this stays empty.
    awaiting_decision: list[LegOutcome] = field(default_factory=list)
    decisions: dict[str, int] = field(default_factory=dict)

    def stage_times(self, stage: str, priority: str | None = None, kind: str | None = None) -> list[float]:
        attribute = f"to_{stage}_s"
        return [
            value
            for leg in self.legs
            if (priority is None or leg.priority == priority)
            and (kind is None or leg.kind == kind)
            and (value := getattr(leg, attribute)) is not None
        ]

    @property
    def confirmed(self) -> int:
        return sum(1 for leg in self.legs if leg.status == "confirmed")

    @property
    def offered(self) -> int:
        return sum(1 for leg in self.legs if leg.offers > 0)

    @property
    def assigned(self) -> int:
        return sum(1 for leg in self.legs if leg.to_assign_s is not None)


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return max(0.0, (end - start).total_seconds())


def leg_outcomes(task: dict[str, Any], *, kind: str, hand_assigned: set[str]) -> list[LegOutcome]:
    """Each leg's times to first offer, final assignment and confirmation, from `GET /v1/tasks/{id}`."""
    by_leg: dict[str, dict[str, list[datetime]]] = defaultdict(lambda: defaultdict(list))
    task_events: set[str] = set()
    for event in task.get("timeline", []):
        moment = _time(event["time"])
        task_events.add(event["type"])
        if event.get("leg_id") and moment is not None:
            by_leg[event["leg_id"]][event["type"]].append(moment)
    outcomes = []
    for leg in task["legs"]:
        transitions = leg.get("transitions") or {}
        events = by_leg[leg["id"]]
        start = _time(transitions.get("pending")) or _time(task.get("created_at"))
        offered = min(events["leg.offered"], default=None) or _time(transitions.get("offered"))
        assigned = max(events["leg.assigned"], default=None) or _time(transitions.get("assigned"))
        confirmed = min(events["leg.confirmed"], default=None) or _time(transitions.get("confirmed"))
        volunteer = leg.get("volunteer") or {}
        outcomes.append(
            LegOutcome(
                id=leg["id"],
                task_id=task["id"],
                kind=kind,
                priority=task["priority"],
                status=leg["status"],
                language=(leg.get("dropoff") or {}).get("language", "zh"),
                offers=len(events["leg.offered"]),
                to_offer_s=_seconds(start, offered),
                to_assign_s=_seconds(start, assigned),
                to_confirm_s=_seconds(start, confirmed),
                volunteer_id=volunteer.get("id"),
                hand_assigned=leg["id"] in hand_assigned,
                seen_by_dispatcher=bool(events)
                or "task.escalated" in task_events
                or leg["status"] != "pending",
            )
        )
    return outcomes


def summarise(
    ledger: Ledger,
    *,
    run_id: str,
    seed: int,
    districts: list[str],
    duration_s: float,
    clock: model.SimClock,
    elapsed_s: float,
    interrupted: bool,
) -> Summary:
    """The run's figures from the ledger and the tasks' last state as intake tells it."""
    legs: list[LegOutcome] = []
    escalated = 0
    arrivals: dict[int, dict[str, int]] = defaultdict(lambda: dict.fromkeys(model.KINDS, 0))
    for record in ledger.tasks.values():
        arrivals[int(record.hour)][record.plan.kind] += 1
        if record.latest is None:
            # Acknowledged, never readable back: every leg counts as lost.
            legs += [
                LegOutcome(
                    leg.id,
                    record.id,
                    record.plan.kind,
                    record.plan.priority,
                    "unknown",
                    leg.dropoff.language,
                    0,
                    None,
                    None,
                    None,
                    None,
                    False,
                    False,
                )
                for leg in record.legs
            ]
            continue
        legs += leg_outcomes(record.latest, kind=record.plan.kind, hand_assigned=ledger.hand_assigned)
        if "escalated" in (record.latest.get("transitions") or {}) or any(
            event["type"] == "task.escalated" for event in record.latest.get("timeline", [])
        ):
            escalated += 1
    languages = {app.volunteer_id: app.profile.languages for app in ledger.volunteers.values()}
    served = [leg for leg in legs if leg.volunteer_id in languages]
    foreign = [leg for leg in served if leg.language != "zh"]
    end_hour = clock.hour(elapsed_s)
    duty: dict[str, tuple[float, float]] = {}
    changes: list[tuple[float, int]] = []
    for app in ledger.volunteers.values():
        duty[app.profile.name] = model.duty_totals(app.shift.log, end_hour=end_hour)
        previous = False
        for hour, on in app.shift.log:
            if on != previous:
                changes.append((hour, 1 if on else -1))
            previous = on
    timeline, on_duty = [], 0
    for hour, delta in sorted(changes):
        on_duty += delta
        timeline.append((hour, on_duty))
    points: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for record in ledger.tasks.values():
        points[record.plan.kind] += [(d.lat, d.lon) for d in record.plan.dropoffs]
    points["volunteers"] = [app.profile.home for app in ledger.volunteers.values()]
    return Summary(
        run_id=run_id,
        seed=seed,
        volunteers=len(ledger.volunteers),
        districts=districts,
        duration_s=duration_s,
        time_compression=clock.compression,
        start_hour=clock.start_hour,
        end_hour=end_hour,
        interrupted=interrupted,
        tasks_submitted=len(ledger.tasks),
        tasks_by_kind=dict(Counter(r.plan.kind for r in ledger.tasks.values())),
        tasks_by_priority=dict(Counter(r.plan.priority for r in ledger.tasks.values())),
        arrivals_by_hour=dict(arrivals),
        rejected_submissions=dict(ledger.rejected_submissions),
        legs=legs,
        lost=[leg for leg in legs if leg.status not in TERMINAL_LEG and leg.status != AWAITING_DECISION],
        awaiting_decision=[leg for leg in legs if leg.status == AWAITING_DECISION],
        decisions=dict(ledger.decided),
        escalated_tasks=escalated,
        pickup_distance_m=list(ledger.pickup_distance_m),
        answers=dict(ledger.answers),
        outcomes=dict(ledger.outcomes),
        duty_hours=duty,
        duty_timeline=timeline,
        language_needed=len(foreign),
        language_matched=sum(1 for leg in foreign if leg.language in languages[leg.volunteer_id]),
        language_checked=len(served),
        language_matched_all=sum(1 for leg in served if leg.language in languages[leg.volunteer_id]),
        errors=list(ledger.errors),
        points=dict(points),
    )


# --- Markdown -----------------------------------------------------------------------------------------


def _fmt(value: float | None, unit: str = "s") -> str:
    if value is None:
        return "–"
    return f"{value:.1f} {unit}" if value < 100 else f"{value:.0f} {unit}"


def _clock(hour: float) -> str:
    day, rest = divmod(hour, 24)
    text = f"{int(rest):02d}:{int(rest % 1 * 60):02d}"
    return text if day == 0 else f"{text} (+{int(day)}d)"


def _rate(part: int, whole: int) -> str:
    return f"{part}/{whole} ({100 * part / whole:.1f}%)" if whole else "–"


def markdown(summary: Summary, charts: dict[str, str]) -> str:
    """The report as a Markdown page; `charts` maps a chart's name to its file name beside the page."""
    s = summary
    lines = [
        f"# Simulated day in Ningbo — run {s.run_id}",
        "",
        f"- Seed {s.seed}, {s.volunteers} volunteers in {', '.join(s.districts)}",
        f"- {s.duration_s:.0f} s of real time at {s.time_compression:g}× compression: simulated "
        f"{_clock(s.start_hour)} to {_clock(s.end_hour)}",
        f"- Tasks submitted: **{s.tasks_submitted}** "
        f"({', '.join(f'{k} {v}' for k, v in sorted(s.tasks_by_kind.items()))}); "
        f"by priority {', '.join(f'{k} {v}' for k, v in sorted(s.tasks_by_priority.items()))}",
        f"- Legs: {len(s.legs)} — offered {s.offered}, assigned {s.assigned}, confirmed {s.confirmed}",
        f"- Submissions not acknowledged: {sum(s.rejected_submissions.values())} "
        f"{s.rejected_submissions or ''}",
        f"- **Lost legs: {len(s.lost)}** (acknowledged but not confirmed, failed or cancelled after the "
        f"drain; must be 0){' — run interrupted, drain skipped' if s.interrupted else ''}",
    ]
    lines.append(
        f"- Legs handed back after pickup, decided by the operator: {s.decisions or 0}; still awaiting "
        f"a decision after the drain: {len(s.awaiting_decision)}"
    )
    if s.lost:
        by_status = Counter(leg.status for leg in s.lost)
        unseen = sum(1 for leg in s.lost if not leg.seen_by_dispatcher)
        lines.append(f"  - by status: {dict(by_status)}; never seen by the dispatcher: {unseen}")
    lines += [
        "",
        "All times are real seconds from submission, as intake's `GET /v1/tasks/{id}` reports them "
        "(first `leg.offered`, last `leg.assigned`, `leg.confirmed`).",
        "",
        "## Time to offer, assign and confirm, by priority",
        "",
        "| priority | legs | offer p50 | offer p90 | offer max | assign p50 | assign p90 | assign max "
        "| confirm p50 | confirm p90 | confirm max |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for priority in (*PRIORITIES, None):
        count = sum(1 for leg in s.legs if priority is None or leg.priority == priority)
        if not count:
            continue
        cells = []
        for stage in STAGES:
            values = s.stage_times(stage, priority)
            cells += [
                _fmt(model.percentile(values, 50)),
                _fmt(model.percentile(values, 90)),
                _fmt(max(values) if values else None),
            ]
        lines.append(f"| {priority or '**all**'} | {count} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Priorities compared within one kind of task: a supply run's legs need a car or a van and go to",
        "checkpoints far out, so a kind's mix of priorities weighs on the table above.",
        "",
        "| kind | priority | legs | offer p50 | offer p90 | assign p50 | assign p90 |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for kind in sorted({leg.kind for leg in s.legs}):
        for priority in PRIORITIES:
            count = sum(1 for leg in s.legs if leg.kind == kind and leg.priority == priority)
            if not count:
                continue
            cells = [
                _fmt(model.percentile(s.stage_times(stage, priority, kind), q))
                for stage in ("offer", "assign")
                for q in (50, 90)
            ]
            lines.append(f"| {kind} | {priority} | {count} | " + " | ".join(cells) + " |")
    offers = Counter(leg.offers for leg in s.legs)
    distances = [d / 1000 for d in s.pickup_distance_m]
    lines += [
        "",
        "## Dispatch",
        "",
        f"- Pickup distance when accepted (km): p50 {_fmt(model.percentile(distances, 50), 'km')}, "
        f"p90 {_fmt(model.percentile(distances, 90), 'km')}, max {_fmt(max(distances, default=None), 'km')} "
        f"over {len(distances)} acceptances",
        f"- Offers per leg: {', '.join(f'{n}: {c}' for n, c in sorted(offers.items()))} "
        f"(mean {sum(k * v for k, v in offers.items()) / max(1, len(s.legs)):.2f})",
        f"- Volunteers' answers: {s.answers}",
        f"- Escalated tasks: {s.escalated_tasks}",
        f"- Legs assigned by hand by the operator while draining: "
        f"{sum(1 for leg in s.legs if leg.hand_assigned)}",
        f"- Language match (the delivering volunteer speaks the drop-off's language): "
        f"{_rate(s.language_matched, s.language_needed)} of legs needing en/ko/ja; "
        f"{_rate(s.language_matched_all, s.language_checked)} of all legs with a volunteer",
        f"- Other events: {s.outcomes}",
        "",
        "## Volunteers' duty (simulated hours)",
        "",
    ]
    on = [v[0] for v in s.duty_hours.values()]
    rest = [v[1] for v in s.duty_hours.values()]
    if on:
        lines += [
            f"- On duty: total {sum(on):.1f} h, per volunteer p50 {_fmt(model.percentile(on, 50), 'h')}, "
            f"max {_fmt(max(on), 'h')}",
            f"- Resting between shifts: total {sum(rest):.1f} h, per volunteer p50 "
            f"{_fmt(model.percentile(rest, 50), 'h')}, max {_fmt(max(rest), 'h')}",
        ]
    if charts:
        lines += ["", "## Charts", ""]
        lines += [f"![{name}]({file})" for name, file in charts.items()]
    if s.errors:
        lines += ["", "## Unexpected answers (first ones)", "", *[f"- `{e[:300]}`" for e in s.errors[:20]]]
    return "\n".join(lines) + "\n"


# --- charts -------------------------------------------------------------------------------------------


def draw_charts(summary: Summary, directory: Path, stem: str) -> dict[str, str]:
    """PNG charts beside the report; {} when matplotlib is not installed."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return {}
    files: dict[str, str] = {}

    def save(figure: Figure, name: str, title: str) -> None:
        file = f"{stem}-{name}.png"
        figure.tight_layout()
        figure.savefig(directory / file, dpi=100)
        files[title] = file

    s = summary
    # Arrivals per simulated hour, by kind: the lunch-time meal peak.
    figure = Figure(figsize=(8, 4))
    ax = figure.add_subplot()
    hours = sorted(s.arrivals_by_hour)
    bottom = [0] * len(hours)
    for kind in model.KINDS:
        heights = [s.arrivals_by_hour[h][kind] for h in hours]
        ax.bar([h % 24 + 24 * (h // 24) for h in hours], heights, bottom=bottom, label=kind)
        bottom = [b + v for b, v in zip(bottom, heights, strict=True)]
    ax.set(xlabel="simulated hour of day", ylabel="tasks submitted", title="Tasks by hour and kind")
    ax.legend()
    save(figure, "arrivals", "Tasks by hour and kind")

    # Time to offer / assign / confirm by priority: p50 bars with p90 ticks.
    figure = Figure(figsize=(8, 4))
    ax = figure.add_subplot()
    width = 0.25
    for i, priority in enumerate(PRIORITIES):
        p50 = [model.percentile(s.stage_times(st, priority), 50) or 0.0 for st in STAGES]
        p90 = [model.percentile(s.stage_times(st, priority), 90) or 0.0 for st in STAGES]
        xs = [j + (i - 1) * width for j in range(len(STAGES))]
        ax.bar(xs, p50, width, label=f"{priority} p50")
        ax.scatter(xs, p90, marker="_", s=200, color="black")
    ax.set_xticks(range(len(STAGES)), [f"to {st}" for st in STAGES])
    ax.set(ylabel="seconds (real)", title="Time from submission, by priority (bar p50, tick p90)")
    ax.legend()
    save(figure, "latency", "Time to offer, assign, confirm")

    figure = Figure(figsize=(6, 4))
    ax = figure.add_subplot()
    ax.hist([d / 1000 for d in s.pickup_distance_m] or [0.0], bins=20)
    ax.set(xlabel="km to the pickup when accepted", ylabel="legs", title="Pickup distance")
    save(figure, "pickup-distance", "Pickup distance")

    figure = Figure(figsize=(6, 4))
    ax = figure.add_subplot()
    offers = Counter(leg.offers for leg in s.legs)
    ax.bar(list(offers), list(offers.values()))
    ax.set(xlabel="offers made for the leg", ylabel="legs", title="Offers per leg")
    save(figure, "offers", "Offers per leg")

    figure = Figure(figsize=(8, 3.5))
    ax = figure.add_subplot()
    if s.duty_timeline:
        ax.step([h for h, _ in s.duty_timeline], [n for _, n in s.duty_timeline], where="post")
    ax.set(xlabel="simulated hour", ylabel="volunteers on duty", title="Volunteers on duty")
    save(figure, "duty", "Volunteers on duty")

    figure = Figure(figsize=(7, 7))
    ax = figure.add_subplot()
    for name, points in s.points.items():
        if points:
            ax.scatter([p[1] for p in points], [p[0] for p in points], s=8 if name != "volunteers" else 14,
                       marker="^" if name == "volunteers" else "o", label=name, alpha=0.7)  # fmt: skip
    for district in model.load_districts():
        if district.name in s.districts:
            ax.annotate(district.name, (district.lon, district.lat), fontsize=8)
    ax.set(xlabel="longitude", ylabel="latitude", title="Drop-offs and volunteers' homes")
    ax.legend()
    save(figure, "map", "Map")
    return files


def write_report(summary: Summary, path: Path) -> list[Path]:
    """The Markdown report at `path`, PNG charts beside it; returns every file written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    charts = draw_charts(summary, path.parent, path.stem)
    path.write_text(markdown(summary, charts), encoding="utf-8")
    return [path, *(path.parent / file for file in charts.values())]
