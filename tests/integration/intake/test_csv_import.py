"""`errands import FILE.csv`: tasks from a hotline spreadsheet through the API, exactly once."""

from __future__ import annotations

import csv
from pathlib import Path

import aiohttp

from services.intake.entrypoints.csv_import import RowProblem, import_csv
from tests.integration.intake.conftest import Operator

COLUMNS = [
    "task", "kind", "priority", "pickup_lat", "pickup_lon", "pickup_address", "items", "skills",
    "dropoff_lat", "dropoff_lon", "dropoff_address", "recipient_name", "recipient_phone", "vulnerable",
]  # fmt: skip


def write_sheet(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8-sig") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        writer.writerows(rows)
    return path


SHEET = [
    # line 2, 3: one meal run to two households
    ["A-1", "meal", "urgent", "-45.87", "170.5", "Kitchen", "meals:2:1.5; water:6", "", "-45.88", "170.51", "Flat 1", "Mere", "+6421000222", "yes"],  # noqa: E501
    ["A-1", "", "", "", "", "", "", "", "-45.881", "170.512", "Flat 2", "Tane", "", "no"],
    # line 4: a typo in the latitude and a phone number that is not one
    ["B-2", "errand", "", "-45.87", "170.5", "", "", "", "north", "170.51", "", "Rua", "call me", ""],
    # lines 5, 6: the second drop-off is off the map
    ["C-3", "supply_run", "", "-45.87", "170.5", "", "masks:100", "forklift", "-45.88", "170.51", "", "", "", ""],  # noqa: E501
    ["C-3", "", "", "", "", "", "", "", "95", "170.51", "", "", "", ""],
    # line 7: an unknown kind
    ["D-4", "taxi", "", "-45.87", "170.5", "", "", "", "-45.88", "170.51", "", "", "", ""],
    # line 8: no task column
    ["", "meal", "", "-45.87", "170.5", "", "", "", "-45.88", "170.51", "", "", "", ""],
]  # fmt: skip


async def test_import_creates_valid_tasks_once_and_explains_every_rejected_row(
    tmp_path: Path, intake: str, operator: Operator, http: aiohttp.ClientSession
) -> None:
    sheet = write_sheet(tmp_path / "hotline.csv", SHEET)

    first = await import_csv(sheet, intake_url=intake, token=operator.token)
    by_line = {row.line: row for row in first.rows}
    assert sorted(by_line) == [2, 3, 4, 5, 6, 7, 8]
    assert (first.created, first.existing, first.rejected) == (2, 0, 5)
    assert by_line[2].outcome == by_line[3].outcome == "created"
    assert by_line[2].task_id == by_line[3].task_id
    assert by_line[2].leg_id != by_line[3].leg_id
    assert {
        row.confirmation_code is not None and len(row.confirmation_code) == 6
        for row in (by_line[2], by_line[3])
    } == {True}
    assert {p.column for p in by_line[4].problems} == {"dropoff_lat", "recipient_phone"}
    assert [p.column for p in by_line[6].problems] == ["dropoff_lat"]
    assert by_line[5].outcome == "rejected" and by_line[5].problems[0].column is None
    assert [p.column for p in by_line[7].problems] == ["kind"]
    assert by_line[8].problems == [RowProblem("task", "no task given")]

    second = await import_csv(sheet, intake_url=intake, token=operator.token)
    assert (second.created, second.existing, second.rejected) == (0, 2, 5)
    again = {row.line: row for row in second.rows}
    assert (again[2].task_id, again[2].confirmation_code) == (
        by_line[2].task_id,
        by_line[2].confirmation_code,
    )

    async with http.get(f"{intake}/v1/tasks/{by_line[2].task_id}", headers=operator.headers) as response:
        task = await response.json()
    assert (task["kind"], task["priority"], len(task["legs"])) == ("meal", "urgent", 2)
    assert task["items"][0] == {"name": "meals", "quantity": 2, "weight_kg": 1.5}
    assert task["legs"][0]["dropoff"]["vulnerable"] is True

    # A corrected row makes a new task; the untouched ones still create nothing.
    fixed = [row[:] for row in SHEET]
    fixed[2][8], fixed[2][12] = "-45.882", "+6421000333"
    third = await import_csv(
        write_sheet(tmp_path / "fixed.csv", fixed), intake_url=intake, token=operator.token
    )
    assert {row.line: row.outcome for row in third.rows if row.outcome != "rejected"} == {
        2: "existing",
        3: "existing",
        4: "created",
    }
    assert third.to_dict()["created"] == 1
