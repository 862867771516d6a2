"""The daily report page from figures: every code named in the reader's language, numbers and dates
written for it, charts with text alternatives, and a policy that lets only its own style in."""

from __future__ import annotations

import base64
import hashlib
import re
import uuid
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from pydantic import ValidationError

from services.intake.domain.daily_report import figures, summarise
from services.intake.entrypoints import pages
from services.intake.entrypoints.schemas import DailyReportQuery
from shared.web.pages import setup_pages

DAY = date(2026, 12, 6)
CREATED = datetime(2026, 12, 6, 1, 30, tzinfo=UTC)  # 09:30 in Shanghai


def _leg(**overrides: Any) -> Any:
    fields: dict[str, Any] = {
        "task_id": uuid.uuid4(),
        "kind": "supply_run",
        "priority": "urgent",
        "task_status": "in_progress",
        "created_at": CREATED,
        "transitions": {
            "assigned": (CREATED + timedelta(minutes=4)).isoformat(),
            "delivered": (CREATED + timedelta(minutes=34)).isoformat(),
        },
        "volunteer_id": uuid.uuid4(),
        "volunteer_name": "Li W.",
        "escalated_at": CREATED,
        "escalation_reason": "waited_too_long_pending",
        "language": "ko",
        "speaks_dropoff_language": "true",
    }
    return SimpleNamespace(**(fields | overrides))


def _page(query: str, rows: list[Any]) -> tuple[web.Response, str]:
    app = web.Application()
    setup_pages(app, "services.intake.entrypoints")
    report = figures(summarise(rows, day=DAY, time_zone="Asia/Shanghai", volunteer_names=True))
    request = make_mocked_request("GET", f"/v1/reports/daily?date=2026-12-06{query}", app=app)
    response = pages.daily_report_page(request, report)
    assert response.text is not None
    return response, response.text


ROWS = [
    _leg(),
    _leg(kind="meal", priority="critical", task_status="completed", escalated_at=None, language="zh"),
    _leg(volunteer_id=None, volunteer_name=None, transitions={}, escalation_reason="something_new"),
]


def test_the_page_is_chinese_by_default_with_no_code_left_raw() -> None:
    response, page = _page("", ROWS)
    assert '<html lang="zh">' in page and response.headers["Content-Language"] == "zh"
    assert "每日报告：2026年12月6日（星期日）" in page
    named = ("物资运送", "送餐", "紧急", "危急", "进行中", "已完成", "等待志愿者过久", "韩语", "志愿者会说")
    for text in named:
        assert text in page, text
    assert "其他原因（something_new）" in page  # a reason this page has no words for yet, said so
    text = re.sub(r"<[^>]+>", " ", page)
    for code in ("supply_run", "in_progress", "waited_too_long_pending", "not_assigned", "critical"):
        assert code not in text, code
    assert "34.0 分钟" in page and "0.50" in page and "09:00" in page


@pytest.mark.parametrize(
    ("lang", "title", "kind"),
    [
        ("en", "Daily report: Sunday 6 December 2026", "Supply run"),
        ("ko", "일일 보고서: 2026년 12월 6일 (일요일)", "물자 운송"),
        ("ja", "日次レポート：2026年12月6日（日曜日）", "物資の運搬"),
    ],
)
def test_each_language_names_the_day_and_the_kinds(lang: str, title: str, kind: str) -> None:
    response, page = _page(f"&lang={lang}", ROWS)
    assert f'<html lang="{lang}">' in page and title in page and kind in page
    assert response.cookies["lang"].value == lang  # remembered for the next page


def test_charts_have_text_alternatives_and_tables_scroll_in_their_own_box() -> None:
    _, page = _page("&lang=en", ROWS)
    for svg in re.findall(r"<svg.*?</svg>", page, flags=re.DOTALL):
        labelled = re.search(r'aria-labelledby="([^"]+)"', svg)
        assert labelled and 'role="img"' in svg
        for id_ in labelled.group(1).split():
            assert f'id="{id_}"' in svg
        assert "<title" in svg and "<desc" in svg
    assert page.count("<svg") == 4
    assert ">1 task</text>" in page and ">2 tasks</text>" in page  # one meal, two supply runs
    assert page.count('class="scroll" role="region"') == 5 and 'tabindex="0"' in page
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    assert all(f'hreflang="{lang}"' in page for lang in ("zh", "en", "ko", "ja"))
    assert 'aria-current="page">English<' in page


def test_the_policy_allows_the_pages_own_style_and_no_script() -> None:
    response, page = _page("", [])
    policy = response.headers["Content-Security-Policy"]
    style = re.search(r"<style>(.*?)</style>", page, flags=re.DOTALL)
    assert style is not None
    digest = base64.b64encode(hashlib.sha256(style.group(1).encode()).digest()).decode()
    assert f"style-src 'sha256-{digest}'" in policy
    assert "script-src" not in policy and "default-src 'none'" in policy and "unsafe-inline" not in policy
    assert "<script" not in page and " style=" not in page
    assert "无。" in page and "没有可画的数据" in page


def test_names_are_escaped() -> None:
    _, page = _page("", [_leg(volunteer_name="<script>alert(1)</script>")])
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


@pytest.mark.parametrize("day", ["0001-01-01", "1999-12-31", "2101-01-01", "9999-12-31"])
def test_a_day_outside_the_years_served_is_refused_naming_it(day: str) -> None:
    # Year 1's midnight in Asia/Shanghai is year 0 in UTC; 9999-12-31 has no next midnight.
    with pytest.raises(ValidationError) as caught:
        DailyReportQuery.model_validate({"date": day})
    assert [error["loc"] for error in caught.value.errors()] == [("date",)]
    assert DailyReportQuery.model_validate({"date": "2100-12-31"}).date == date(2100, 12, 31)
