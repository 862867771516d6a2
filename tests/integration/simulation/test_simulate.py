"""A short seeded day in Ningbo against the running services: tasks flow to confirmation, none is lost."""

from __future__ import annotations

from pathlib import Path

import pytest

from errands import admin
from errands.launcher import ServiceProcesses
from errands.simulation import SimulationConfig, simulate
from errands.simulation.model import Behaviour
from tests.conftest import Stack

pytestmark = pytest.mark.e2e


async def test_short_seeded_day_confirms_legs_and_loses_none(
    stack: Stack, system: ServiceProcesses, tmp_path: Path
) -> None:
    tokens = await admin.bootstrap_demo(stack.settings())
    report = tmp_path / "day.md"
    config = SimulationConfig(
        volunteers=8,
        tasks_per_minute=20,
        duration_s=20,
        seed=7,
        time_compression=1500,
        report=report,
        intake_url=system.url("intake"),
        dispatcher_url=system.url("dispatcher"),
        operator_token=tokens["operator_token"],
        # Offers left to expire take the service's real 60 s; this short run only declines.
        behaviour=Behaviour(accept=0.85, decline=0.15, wrong_code=0.2, problem=0.02),
        drain_s=30,
        hand_assign_after_s=8,
        poll_wait_s=5,
        quiet=True,
    )

    result = await simulate(config)

    summary = result.summary
    assert summary.tasks_submitted > 0
    assert sum(summary.rejected_submissions.values()) == 0
    assert summary.offered > 0
    assert summary.assigned > 0
    assert summary.confirmed > 0
    assert summary.stage_times("confirm"), "times to confirmation come from intake's task view"
    assert result.lost_legs == 0, [(leg.id, leg.status) for leg in summary.lost]
    assert not result.interrupted
    assert report.is_file()
    text = report.read_text()
    assert "Lost legs: 0" in text
    charts = [path for path in result.report_files if path.suffix == ".png"]
    assert len(charts) >= 5
    assert all(path.is_file() and path.stat().st_size > 1000 for path in charts)
    assert all(f"]({path.name})" in text for path in charts)


async def test_legs_handed_back_after_pickup_are_decided_by_the_desk_and_none_is_lost(
    stack: Stack, system: ServiceProcesses
) -> None:
    tokens = await admin.bootstrap_demo(stack.settings())
    config = SimulationConfig(
        volunteers=8,
        tasks_per_minute=40,
        duration_s=30,
        seed=11,
        time_compression=1500,
        report=None,
        intake_url=system.url("intake"),
        dispatcher_url=system.url("dispatcher"),
        operator_token=tokens["operator_token"],
        # Problems at pickups, and many with the goods aboard: those wait for the desk's decision.
        behaviour=Behaviour(accept=0.9, decline=0.1, wrong_code=0.0, problem=0.2, problem_aboard=0.8),
        drain_s=45,
        hand_assign_after_s=8,
        poll_wait_s=5,
        quiet=True,
    )

    result = await simulate(config)

    summary = result.summary
    handed_back = summary.outcomes.get("problem reported after pickup (operator decides)", 0)
    assert handed_back > 0, summary.outcomes
    assert summary.decisions.get("return_to_pickup", 0) > 0, summary.decisions
    assert summary.awaiting_decision == []
    assert result.lost_legs == 0, [(leg.id, leg.status) for leg in summary.lost]
    assert not result.interrupted
