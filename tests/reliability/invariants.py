"""What must hold after any crash, cut or restart, read straight from the services' tables."""

from __future__ import annotations

import uuid

from tests.client import until
from tests.reliability.load import Operators, Tally, Volunteers
from tests.reliability.rig import Rig

TAKEN = ("assigned", "picked_up", "delivered", "confirmed")


def _uuids(ids: list[str]) -> list[uuid.UUID]:
    return [uuid.UUID(i) for i in ids]


async def legs_reached_an_offer(rig: Rig, leg_ids: list[str]) -> int:
    """How many of these legs the dispatcher holds and has offered at least once (or moved on)."""
    count: int = await rig.value(
        """
        SELECT count(*) FROM dispatch.legs l
        WHERE l.id = ANY($1::uuid[])
          AND (l.status <> 'pending' OR EXISTS (SELECT 1 FROM dispatch.offers o WHERE o.leg_id = l.id))
        """,
        _uuids(leg_ids),
    )
    return count


async def wait_until_every_leg_offered(
    rig: Rig, operators: Operators, volunteers: Volunteers, *, timeout_s: float
) -> None:
    wanted = operators.leg_ids

    async def reached() -> bool | str:
        volunteers.check()
        got = await legs_reached_an_offer(rig, wanted)
        return got == len(wanted) or f"{got}/{len(wanted)} legs offered"

    try:
        await until(reached, what="every acknowledged leg reached an offer", timeout_s=timeout_s, every_s=1.0)
    except AssertionError as failed:
        raise AssertionError(f"{failed}\n{await why_not_offered(rig, wanted)}") from None


async def why_not_offered(rig: Rig, leg_ids: list[str]) -> str:
    """Where the legs that never reached an offer are, and what their organisation's volunteers are doing."""
    legs = await rig.fetch(
        """
        SELECT w.id, l.status, l.route_id, l.organisation_id, l.submitted_at, l.updated_at,
               l.pickup_lat, l.pickup_lon, l.considered_at, l.ready_at
        FROM unnest($1::uuid[]) AS w(id) LEFT JOIN dispatch.legs l ON l.id = w.id
        WHERE l.id IS NULL
           OR (l.status = 'pending' AND NOT EXISTS (SELECT 1 FROM dispatch.offers o WHERE o.leg_id = l.id))
        """,
        _uuids(leg_ids),
    )
    lines = [f"{len(legs)} legs never offered (None: not taken in by the dispatcher):"]
    lines += [str(dict(row)) for row in legs[:10]]
    missing = [row["id"] for row in legs]
    # Their tasks' organisations (from intake: a leg the dispatcher never took in has none there),
    # and how many of those tasks' events intake has not yet published.
    organisations = [
        row["organisation_id"]
        for row in await rig.fetch(
            "SELECT DISTINCT t.organisation_id FROM intake.legs l JOIN intake.tasks t ON t.id = l.task_id "
            "WHERE l.id = ANY($1::uuid[])",
            missing,
        )
    ]
    unpublished = await rig.fetch(
        "SELECT count(*) AS events FROM intake.outbox WHERE key IN "
        "(SELECT task_id::text FROM intake.legs WHERE id = ANY($1::uuid[]))",
        missing,
    )
    lines.append(f"their tasks' events still in intake's outbox: {unpublished[0]['events']}")
    for row in await rig.fetch(
        """
        SELECT v.id, v.on_duty, v.insured, v.active_legs, v.max_active_legs, v.lat, v.lon,
               v.rest_until, v.vetting_status,
               v.location_at,
               (SELECT count(*) FROM dispatch.offers o WHERE o.volunteer_id = v.id AND o.status = 'live')
                 AS live_offers,
               (SELECT array_agg(r.status) FROM dispatch.routes r
                 WHERE r.volunteer_id = v.id AND r.status IN ('active', 'offered')) AS routes
        FROM dispatch.volunteers v WHERE v.organisation_id = ANY($1::uuid[])
        """,
        organisations,
    ):
        lines.append(str(dict(row)))
    return "\n".join(lines)


async def outboxes_empty(rig: Rig) -> bool | str:
    counts: list[int] = [
        await rig.value(f"SELECT count(*) FROM {schema}.outbox")  # noqa: S608
        for schema in ("intake", "dispatch", "notify")
    ]
    return sum(counts) == 0 or f"{sum(counts)} events still in the outboxes"


async def assert_every_acknowledged_task_exists_once(rig: Rig, operators: Operators) -> None:
    """Intake holds exactly the acknowledged tasks (retries with the same key made no second one)."""
    acknowledged = operators.task_ids
    assert len(set(acknowledged)) == len(acknowledged), "one key, one task"
    stored = {
        str(row["id"])
        for row in await rig.fetch(
            "SELECT id FROM intake.tasks WHERE organisation_id = "
            "(SELECT organisation_id FROM intake.tasks WHERE id = $1)",
            uuid.UUID(acknowledged[0]),
        )
    }
    missing = set(acknowledged) - stored
    assert not missing, f"{len(missing)} acknowledged tasks are missing from intake"
    assert stored == set(acknowledged), f"{len(stored - set(acknowledged))} tasks nobody was told about"


async def assert_each_task_dispatched_once(rig: Rig, operators: Operators) -> None:
    """The dispatcher holds each acknowledged task's legs, exactly those, once each."""
    rows = await rig.fetch(
        "SELECT task_id, array_agg(id) AS legs FROM dispatch.legs WHERE task_id = ANY($1::uuid[]) "
        "GROUP BY task_id",
        _uuids(operators.task_ids),
    )
    held = {str(row["task_id"]): sorted(str(leg) for leg in row["legs"]) for row in rows}
    for ack in operators.acknowledged:
        assert held.get(ack.task_id) == sorted(ack.leg_ids), (
            f"task {ack.task_id}: legs {held.get(ack.task_id)}"
        )


def assert_no_server_errors(*tallies: Tally) -> None:
    """A crash or an outage may cost a client a retry (connection refused, 503), never a 500."""
    for tally in tallies:
        assert not tally.server_errors(), f"5xx answers: {tally}"


async def assert_no_double_assignment(
    rig: Rig, operators: Operators, volunteers: Volunteers
) -> dict[str, int]:
    """No leg with two live or two accepted offers; every volunteer within limits and counted right.

    Returns a few figures for the test's printout.
    """
    leg_ids = _uuids(operators.leg_ids)
    twice = await rig.fetch(
        """
        SELECT leg_id, status, count(*) FROM dispatch.offers
        WHERE leg_id = ANY($1::uuid[]) AND status IN ('live', 'accepted')
        GROUP BY leg_id, status HAVING count(*) > 1
        """,
        leg_ids,
    )
    assert twice == [], f"legs with two live or accepted offers: {twice[:5]}"
    # An accepted offer is the leg's assignment: the leg belongs to that volunteer.
    mismatched = await rig.fetch(
        """
        SELECT o.leg_id FROM dispatch.offers o JOIN dispatch.legs l ON l.id = o.leg_id
        WHERE o.leg_id = ANY($1::uuid[]) AND o.status = 'accepted'
          AND (l.volunteer_id IS DISTINCT FROM o.volunteer_id
               OR l.status NOT IN ('assigned', 'picked_up', 'delivered', 'confirmed'))
        """,
        leg_ids,
    )
    assert mismatched == [], f"accepted offers whose leg is not that volunteer's: {mismatched[:5]}"
    crew = _uuids([v.id for v in volunteers.crew])
    # One statement, one snapshot: the counter and the legs are compared as of the same moment.
    wrong = await rig.fetch(
        """
        SELECT v.id, v.active_legs, v.max_active_legs,
               (SELECT count(*) FROM dispatch.legs l
                WHERE l.volunteer_id = v.id AND l.status IN ('assigned', 'picked_up')) AS in_hand
        FROM dispatch.volunteers v WHERE v.id = ANY($1::uuid[])
        """,
        crew,
    )
    assert len(wrong) == len(crew)
    bad = [
        dict(row)
        for row in wrong
        if row["active_legs"] > row["max_active_legs"] or row["active_legs"] != row["in_hand"]
    ]
    assert bad == [], f"volunteers over their limit or miscounted: {bad[:5]}"
    figures = await rig.fetch(
        """
        SELECT count(*) FILTER (WHERE status = 'accepted') AS accepted,
               count(*) FILTER (WHERE status = 'declined') AS declined,
               count(*) FILTER (WHERE status = 'expired') AS expired,
               count(*) AS offers
        FROM dispatch.offers WHERE leg_id = ANY($1::uuid[])
        """,
        leg_ids,
    )
    delivered = await rig.value(
        "SELECT count(*) FROM dispatch.legs WHERE id = ANY($1::uuid[]) "
        "AND status IN ('delivered', 'confirmed')",
        leg_ids,
    )
    return {**dict(figures[0]), "delivered": delivered}
