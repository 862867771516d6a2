"""Recipient messages speak the recipient's language, or Chinese."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.notifier.domain.messages import minutes_away, render, template_named


@pytest.mark.parametrize(
    ("language", "fragment"),
    [("zh", "志愿者"), ("en", "volunteer"), ("ko", "자원봉사자"), ("ja", "ボランティア")],
)
def test_volunteer_on_the_way_in_each_language(language: str, fragment: str) -> None:
    message = render("volunteer_on_way", language)
    assert message.language == language
    assert fragment in message.body


@pytest.mark.parametrize("language", ["fr", "", None, "xx-YY"])
def test_unknown_languages_fall_back_to_chinese(language: str | None) -> None:
    message = render("delivery_arrived", language)
    assert message.language == "zh"
    assert message.subject == "物资已送达"


def test_regional_variants_use_their_language() -> None:
    assert render("delivery_arrived", "en-GB").language == "en"
    assert render("delivery_arrived", "zh_TW").language == "zh"


def test_the_two_messages_differ() -> None:
    assert render("volunteer_on_way", "en").body != render("delivery_arrived", "en").body


@pytest.mark.parametrize(
    ("language", "about_12_minutes"),
    [("zh", "大约12分钟"), ("en", "in about 12 minutes"), ("ko", "약 12분"), ("ja", "約12分")],
)
def test_on_the_way_with_an_estimate_in_each_language(language: str, about_12_minutes: str) -> None:
    message = render("eta_on_way", language, minutes=12)
    assert message.language == language
    assert about_12_minutes in message.body
    assert "{" not in message.body


@pytest.mark.parametrize(
    ("language", "delayed"),
    [("zh", "延迟"), ("en", "delayed"), ("ko", "지연"), ("ja", "遅れ")],
)
def test_delayed_in_each_language_with_the_new_estimate(language: str, delayed: str) -> None:
    message = render("delayed", language, minutes=45)
    assert delayed in message.subject
    assert "45" in message.body


def test_one_minute_is_singular_in_english() -> None:
    assert "about 1 minute." in render("eta_on_way", "en", minutes=1).body


def test_minutes_away_round_up_and_never_say_zero() -> None:
    now = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    assert minutes_away(now + timedelta(seconds=61), now) == 2
    assert minutes_away(now + timedelta(seconds=60), now) == 1
    assert minutes_away(now - timedelta(minutes=5), now) == 1


def test_a_stored_template_name_is_read_back_and_an_unknown_one_is_the_plain_on_the_way() -> None:
    assert template_named("delayed") == "delayed"
    assert template_named("from_the_future") == "volunteer_on_way"
