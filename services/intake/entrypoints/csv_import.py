"""`errands import FILE.csv`: submit a hotline spreadsheet through the intake API, exactly once per task.

One row per drop-off; rows sharing a value in the `task` column form one task, and the task-level
columns (kind, priority, pickup, deliver_by, ...) are read from the group's first row. Cells go to
the API as written, so the API's validation is the only one and its JSON paths are mapped back to
rows and columns. The idempotency key of a task is a hash of the body its rows make, so a second
run of the same file creates nothing new.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import aiohttp

TASK_COLUMN = "task"
# Task-level column → path in the request body.
TASK_FIELDS: dict[str, tuple[str, ...]] = {
    "kind": ("kind",),
    "priority": ("priority",),
    "pickup_lat": ("pickup", "lat"),
    "pickup_lon": ("pickup", "lon"),
    "pickup_address": ("pickup", "address"),
    "pickup_contact_name": ("pickup", "contact_name"),
    "pickup_contact_phone": ("pickup", "contact_phone"),
    "pickup_ready_at": ("pickup", "ready_at"),
    "deliver_by": ("deliver_by",),
    "vehicle": ("requirements", "vehicle"),
    "notes": ("notes",),
    "callback_url": ("callback_url",),
    "external_ref": ("external_ref",),
}
LIST_FIELDS: dict[str, tuple[str, ...]] = {
    "skills": ("requirements", "skills"),
    "languages": ("requirements", "languages"),
}
# Drop-off column → field of that row's drop-off.
DROPOFF_FIELDS: dict[str, str] = {
    "dropoff_lat": "lat",
    "dropoff_lon": "lon",
    "dropoff_address": "address",
    "recipient_name": "recipient_name",
    "recipient_phone": "recipient_phone",
    "recipient_email": "recipient_email",
    "language": "language",
    "no_contact": "no_contact",
    "vulnerable": "vulnerable",
    "dropoff_notes": "notes",
}
ITEMS_COLUMN = "items"  # "masks:500:5.0; gloves:20" → name:quantity[:weight_kg], on the group's first row
_COLUMN_OF_PATH = {
    ".".join(path): column
    for column, path in {**TASK_FIELDS, **LIST_FIELDS, ITEMS_COLUMN: ("items",)}.items()
}
_COLUMN_OF_DROPOFF_FIELD = {name: column for column, name in DROPOFF_FIELDS.items()}
_DROPOFF_PATH = re.compile(r"^\$\.dropoffs\[(\d+)\](?:\.(\w+))?")

Outcome = Literal["created", "existing", "rejected"]


@dataclass
class RowProblem:
    column: str | None
    message: str


@dataclass
class RowResult:
    """What became of one spreadsheet row (line numbers count the header as line 1)."""

    line: int
    task: str
    outcome: Outcome
    task_id: str | None = None
    leg_id: str | None = None
    confirmation_code: str | None = None
    problems: list[RowProblem] = field(default_factory=list)


@dataclass
class ImportReport:
    rows: list[RowResult]

    @property
    def created(self) -> int:
        return sum(row.outcome == "created" for row in self.rows)

    @property
    def existing(self) -> int:
        return sum(row.outcome == "existing" for row in self.rows)

    @property
    def rejected(self) -> int:
        return sum(row.outcome == "rejected" for row in self.rows)

    def to_dict(self) -> dict[str, Any]:
        return {
            "created": self.created,
            "existing": self.existing,
            "rejected": self.rejected,
            "rows": [asdict(row) for row in self.rows],
        }


@dataclass
class _Group:
    name: str
    lines: list[int]
    rows: list[dict[str, str]]


# Columns whose cells are numbers or yes/no in the body. The API takes JSON types strictly, so the
# import converts what it can; a cell it cannot convert goes as written, and the API's answer names it.
NUMBER_COLUMNS = frozenset({"pickup_lat", "pickup_lon", "dropoff_lat", "dropoff_lon"})
FLAG_COLUMNS = frozenset({"no_contact", "vulnerable"})
_FLAGS = {"true": True, "yes": True, "y": True, "1": True}
_FLAGS |= {"false": False, "no": False, "n": False, "0": False}


def _number(text: str) -> Any:
    try:
        number = float(text)
    except ValueError:
        return text
    return int(number) if number.is_integer() and "." not in text and "e" not in text.lower() else number


def _cell(row: dict[str, str], column: str) -> Any:
    value = (row.get(column) or "").strip()
    if not value:
        return None
    if column in NUMBER_COLUMNS:
        return _number(value)
    if column in FLAG_COLUMNS:
        return _FLAGS.get(value.lower(), value)
    return value


def _put(body: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for part in path[:-1]:
        body = body.setdefault(part, {})
    body[path[-1]] = value


def _items(cell: str) -> list[dict[str, Any]]:
    items = []
    for entry in filter(None, (part.strip() for part in cell.split(";"))):
        name, _, rest = entry.partition(":")
        quantity, _, weight = rest.partition(":")
        item: dict[str, Any] = {"name": name.strip(), "quantity": _number(quantity.strip() or "1")}
        if weight.strip():
            item["weight_kg"] = _number(weight.strip())
        items.append(item)
    return items


def task_body(rows: list[dict[str, str]]) -> dict[str, Any]:
    """The `POST /v1/tasks` body a group of rows stands for (values as written; the API validates)."""
    first = rows[0]
    body: dict[str, Any] = {}
    for column, path in TASK_FIELDS.items():
        value = _cell(first, column)
        if value is not None:
            _put(body, path, value)
    for column, path in LIST_FIELDS.items():
        value = _cell(first, column)
        if value is not None:
            _put(body, path, [part.strip() for part in value.split(",") if part.strip()])
    items = _cell(first, ITEMS_COLUMN)
    if items is not None:
        body["items"] = _items(items)
    body["dropoffs"] = [
        {name: value for column, name in DROPOFF_FIELDS.items() if (value := _cell(row, column)) is not None}
        for row in rows
    ]
    return body


def idempotency_key(organisation_hint: str, body: dict[str, Any]) -> str:
    """A key derived from the rows' content: the same rows give the same key, any change a new one."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "csv-" + hashlib.sha256(f"{organisation_hint}\n{canonical}".encode()).hexdigest()


def _read_groups(handle: Iterable[str], source: str) -> tuple[list[_Group], list[RowResult]]:
    groups: dict[str, _Group] = {}
    rejected: list[RowResult] = []
    reader = csv.DictReader(handle)
    if reader.fieldnames is None or TASK_COLUMN not in reader.fieldnames:
        raise ValueError(f"{source}: the header must have a '{TASK_COLUMN}' column")
    for row in reader:
        line = reader.line_num
        if None in row:  # more cells than header columns
            rejected.append(
                RowResult(line, "", "rejected", problems=[RowProblem(None, "more cells than columns")])
            )
            continue
        name = _cell(row, TASK_COLUMN)
        if name is None:
            if any(_cell(row, column) for column in row):
                rejected.append(
                    RowResult(line, "", "rejected", problems=[RowProblem(TASK_COLUMN, "no task given")])
                )
            continue
        group = groups.setdefault(name, _Group(name, [], []))
        group.lines.append(line)
        group.rows.append(row)
    return list(groups.values()), rejected


def _read_file(path: Path) -> tuple[list[_Group], list[RowResult]]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        return _read_groups(handle, str(path))


def _problems_per_row(group: _Group, problem: dict[str, Any]) -> dict[int, list[RowProblem]]:
    """Map the API's problem (fields named by JSON path) onto the rows and columns they came from."""
    per_row: dict[int, list[RowProblem]] = {line: [] for line in group.lines}
    errors = problem.get("errors") or [{"field": None, "message": problem.get("detail") or "rejected"}]
    for error in errors:
        path = str(error.get("field") or "")
        message = str(error.get("message") or "invalid")
        match = _DROPOFF_PATH.match(path)
        if match and int(match.group(1)) < len(group.lines):
            column = _COLUMN_OF_DROPOFF_FIELD.get(match.group(2) or "")
            per_row[group.lines[int(match.group(1))]].append(RowProblem(column, message))
            continue
        # "$.requirements.skills[2]" → "requirements.skills", "$.items[0].quantity" → "items".
        column = _COLUMN_OF_PATH.get(re.sub(r"\[\d+\].*$", "", path.removeprefix("$.")))
        for line in group.lines:
            per_row[line].append(
                RowProblem(column, f"{path or 'task'}: {message}" if column is None else message)
            )
    return per_row


async def _submit(
    http: aiohttp.ClientSession, url: str, auth: Mapping[str, str], key: str, body: dict[str, Any]
) -> tuple[int, dict[str, Any], bool]:
    headers = {**auth, "Idempotency-Key": key}
    for attempt in range(5):
        async with http.post(url, json=body, headers=headers) as response:
            payload: dict[str, Any] = await response.json(content_type=None)
            # 409: a previous run's request with this key is still in flight; it will finish.
            if response.status != 409 or attempt == 4:
                return response.status, payload, response.headers.get("Idempotent-Replayed") == "true"
        await asyncio.sleep(0.2 * 2**attempt)
    raise AssertionError("unreachable")


async def import_csv(
    path: str | Path,
    *,
    intake_url: str,
    token: str,
    timeout_s: float = 30.0,
) -> ImportReport:
    """Submit every task of a hotline CSV through `POST /v1/tasks`; report per row what happened."""
    groups, results = _read_file(Path(path))
    # Keys are scoped per organisation by the API; the token's hash only keeps files of different
    # organisations that happen to be identical from sharing a key in our own logs.
    token_hint = hashlib.sha256(token.encode()).hexdigest()[:16]
    return await _import(
        groups,
        results,
        intake_url=intake_url,
        auth={"Authorization": f"Bearer {token}"},
        hint=token_hint,
        timeout_s=timeout_s,
    )


async def import_csv_text(
    text: str,
    *,
    intake_url: str,
    auth: Mapping[str, str],
    hint: str,
    timeout_s: float = 30.0,
) -> ImportReport:
    """`import_csv` of a sheet already read (an upload), sent with the given credentials (e.g. a
    logged-in person's session cookie and CSRF token); `hint` keeps keys apart per organisation."""
    groups, results = _read_groups(io.StringIO(text.removeprefix("\ufeff"), newline=""), "the file")
    return await _import(groups, results, intake_url=intake_url, auth=auth, hint=hint, timeout_s=timeout_s)


async def _import(
    groups: list[_Group],
    results: list[RowResult],
    *,
    intake_url: str,
    auth: Mapping[str, str],
    hint: str,
    timeout_s: float,
) -> ImportReport:
    url = intake_url.rstrip("/") + "/v1/tasks"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as http:
        for group in groups:
            body = task_body(group.rows)
            try:
                status, payload, replayed = await _submit(http, url, auth, idempotency_key(hint, body), body)
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                for line in group.lines:
                    results.append(
                        RowResult(
                            line, group.name, "rejected", problems=[RowProblem(None, f"not sent: {exc}")]
                        )
                    )
                continue
            if status == 201:
                legs = sorted(payload["legs"], key=lambda leg: leg["index"])
                for line, leg in zip(group.lines, legs, strict=True):
                    results.append(
                        RowResult(
                            line,
                            group.name,
                            "existing" if replayed else "created",
                            task_id=payload["id"],
                            leg_id=leg["id"],
                            confirmation_code=leg["confirmation_code"],
                        )
                    )
                continue
            for line, problems in _problems_per_row(group, payload).items():
                results.append(
                    RowResult(
                        line,
                        group.name,
                        "rejected",
                        problems=problems
                        or [RowProblem(None, f"another row of task {group.name!r} is invalid")],
                    )
                )
    return ImportReport(sorted(results, key=lambda row: row.line))
