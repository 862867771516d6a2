"""The export's cells: the formula guard, the district and distance, volunteers by role."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from services.intake.domain.daily_report import percentile
from services.intake.domain.export import COLUMNS, ExportLeg, csv_line, district_of, row, safe_cell


@pytest.mark.parametrize("value", ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"])
def test_cells_a_spreadsheet_would_run_are_prefixed(value: str) -> None:
    assert safe_cell(value) == "'" + value


def test_other_cells_are_left_alone() -> None:
    assert safe_cell("Li W.") == "Li W."
    assert safe_cell("") == ""


def test_the_district_is_the_nearest_centre() -> None:
    assert district_of(29.87, 121.50) == "Haishu"
    assert district_of(30.17, 121.27) == "Cixi"
    assert district_of(None, 121.5) == ""


def _leg(**overrides: object) -> ExportLeg:
    values: dict[str, object] = {
        "task_id": uuid.uuid4(),
        "organisation_id": uuid.uuid4(),
        "kind": "meal",
        "priority": "urgent",
        "task_status": "completed",
        "created_at": datetime(2026, 12, 6, 9, 0, tzinfo=UTC),
        "leg_id": uuid.uuid4(),
        "leg_index": 0,
        "leg_status": "confirmed",
        "leg_transitions": {"assigned": "2026-12-06T09:01:00+00:00"},
        "pickup_lat": 29.87,
        "pickup_lon": 121.50,
        "dropoff_lat": 29.88,
        "dropoff_lon": 121.50,
        "volunteer_id": uuid.uuid4(),
        "volunteer_name": "-Wang",
    }
    values.update(overrides)
    return ExportLeg(**values)  # type: ignore[arg-type]


def test_a_row_has_every_column_and_the_volunteer_by_role() -> None:
    leg = _leg()
    cells = dict(zip(COLUMNS, row(leg, volunteer_names=True), strict=True))
    assert cells["distance_km"] == "1.11"
    assert cells["district"] == "Haishu"
    assert cells["assigned_at"] == "2026-12-06T09:01:00+00:00" and cells["offered_at"] == ""
    assert cells["volunteer"] == "'-Wang"
    assert dict(zip(COLUMNS, row(leg, volunteer_names=False), strict=True))["volunteer"] == str(
        leg.volunteer_id
    )
    assert (
        dict(zip(COLUMNS, row(_leg(dropoff_lat=None), volunteer_names=True), strict=True))["distance_km"]
        == ""
    )


def test_a_line_quotes_what_csv_must() -> None:
    assert csv_line(["a,b", 'say "hi"', "x"]) == '"a,b","say ""hi""",x\r\n'


def test_percentiles_are_nearest_rank() -> None:
    assert percentile([], 50) is None
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 90) == 4.0
