"""What recipients are told, in their language. No IO here."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, cast, get_args

Template = Literal["volunteer_on_way", "eta_on_way", "delayed", "delivery_arrived", "offer_waiting"]

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
    # Sent once per leg when it is picked up, with the drop-off estimate; `{duration}` is "N minutes".
    "eta_on_way": {
        "zh": (
            "志愿者已取货，正在路上",
            "您好！志愿者已取到您的物资，正在路上，大约{duration}后送达。请准备好您的确认码。",
        ),
        "en": (
            "Your delivery is on the way",
            "Hello! A volunteer has picked up your delivery and is on the way, arriving in about "
            "{duration}. Please have your confirmation code ready.",
        ),
        "ko": (
            "배달이 가는 중입니다",
            "안녕하세요! 자원봉사자가 물품을 받아 가는 중이며, 약 {duration} 후 도착합니다. "
            "확인 코드를 준비해 주세요.",
        ),
        "ja": (
            "お届け物が向かっています",
            "こんにちは。ボランティアがお届け物を受け取り、向かっています。約{duration}で到着します。"
            "確認コードをご用意ください。",
        ),
    },
    # Sent each time the drop-off estimate slips past the time promised, with the new estimate.
    "delayed": {
        "zh": (
            "您的物资将延迟送达",
            "很抱歉，您的物资将晚于约定时间送达，预计还需大约{duration}。志愿者仍在为您送来。",
        ),
        "en": (
            "Your delivery is delayed",
            "We are sorry: your delivery will arrive later than promised, in about {duration}. "
            "The volunteer is still on the way.",
        ),
        "ko": (
            "배달이 지연됩니다",
            "죄송합니다. 물품이 약속된 시간보다 늦게, 약 {duration} 후 도착할 예정입니다. "
            "자원봉사자는 계속 가는 중입니다.",
        ),
        "ja": (
            "お届けが遅れています",
            "申し訳ありません。お届けがお約束の時間より遅れ、約{duration}後になる見込みです。"
            "ボランティアは引き続き向かっています。",
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
    # To a volunteer who asked for it (browsers' push services do not reach mainland China): a new
    # offer waits in the app. Nothing about the leg itself: an SMS is no place for an address.
    "offer_waiting": {
        "zh": ("有新的任务邀请", "Errands：有一个新的配送任务在等您接受，请尽快打开志愿者应用查看。"),
        "en": (
            "A new offer is waiting",
            "Errands: a new delivery offer is waiting for you. Open the volunteer app soon to answer it.",
        ),
        "ko": (
            "새 배달 제안이 있습니다",
            "Errands: 새 배달 제안이 기다리고 있습니다. 곧 자원봉사자 앱을 열어 응답해 주세요.",
        ),
        "ja": (
            "新しい依頼が届いています",
            "Errands：新しい配達の依頼があなたを待っています。早めにボランティアアプリを開いて応答してください。",
        ),
    },
}

SUPPORTED_LANGUAGES = frozenset(_TEXTS["volunteer_on_way"])
TEMPLATES: frozenset[str] = frozenset(get_args(Template))


def _duration(minutes: int, language: str) -> str:
    if language == "en":
        return "1 minute" if minutes == 1 else f"{minutes} minutes"
    return {"zh": f"{minutes}分钟", "ko": f"{minutes}분", "ja": f"{minutes}分"}[language]


def minutes_away(eta: datetime, now: datetime) -> int:
    """Whole minutes until `eta`, rounded up, never below one: what a recipient is told."""
    seconds = (eta - now).total_seconds()
    return max(1, -int(-seconds // 60))


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


def render(template: Template, requested_language: str | None, *, minutes: int | None = None) -> Message:
    """The message for `template` in the recipient's language, falling back to Chinese; `minutes`
    fills the estimate of the templates that carry one."""
    language = message_language(requested_language)
    subject, body = _TEXTS[template][language]
    if "{duration}" in body:
        body = body.format(duration=_duration(max(1, minutes or 1), language))
    return Message(template=template, language=language, subject=subject, body=body)


def template_named(name: str) -> Template:
    """A stored template name as a `Template`; an unknown one (a newer writer's): the plain "on the way"."""
    return cast(Template, name) if name in TEMPLATES else "volunteer_on_way"
