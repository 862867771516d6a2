"""What recipients are told, in their language. No IO here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Template = Literal["volunteer_on_way", "delivery_arrived"]

DEFAULT_LANGUAGE = "zh"

_TEXTS: dict[Template, dict[str, tuple[str, str]]] = {
    "volunteer_on_way": {
        "zh": ("志愿者正在路上", "您好！一位志愿者已接单，正在为您送来物资。请准备好您的确认码。"),
        "en": (
            "A volunteer is on the way",
            "Hello! A volunteer has taken your delivery and is on the way. "
            "Please have your confirmation code ready.",
        ),
        "ko": (
            "자원봉사자가 가는 중입니다",
            "안녕하세요! 자원봉사자가 배달을 맡아 가는 중입니다. 확인 코드를 준비해 주세요.",
        ),
        "ja": (
            "ボランティアが向かっています",
            "こんにちは。ボランティアがお届けを引き受け、向かっています。確認コードをご用意ください。",
        ),
    },
    "delivery_arrived": {
        "zh": ("物资已送达", "您的物资已送达并确认。感谢您的耐心，祝您安康！"),
        "en": (
            "Your delivery has arrived",
            "Your delivery has arrived and been confirmed. Thank you for your patience, and stay well!",
        ),
        "ko": (
            "배달이 완료되었습니다",
            "물품이 도착하여 확인되었습니다. 기다려 주셔서 감사합니다. 건강하세요!",
        ),
        "ja": (
            "お届けが完了しました",
            "お届け物が到着し、確認されました。お待ちいただきありがとうございました。",
        ),
    },
}

SUPPORTED_LANGUAGES = frozenset(_TEXTS["volunteer_on_way"])


@dataclass(frozen=True, slots=True)
class Message:
    template: Template
    language: str
    subject: str
    body: str


def message_language(requested: str | None) -> str:
    """The recipient's language when we speak it (`zh-TW` counts as `zh`), else Chinese."""
    base = (requested or "").strip().lower().replace("_", "-").split("-", 1)[0]
    return base if base in SUPPORTED_LANGUAGES else DEFAULT_LANGUAGE


def render(template: Template, requested_language: str | None) -> Message:
    """The message for `template` in the recipient's language, falling back to Chinese."""
    language = message_language(requested_language)
    subject, body = _TEXTS[template][language]
    return Message(template=template, language=language, subject=subject, body=body)
