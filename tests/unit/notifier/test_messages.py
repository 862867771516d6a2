"""Recipient messages speak the recipient's language, or Chinese."""

from __future__ import annotations

import pytest

from services.notifier.domain.messages import render


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
