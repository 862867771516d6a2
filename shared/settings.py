"""One typed settings object, read once from the environment by each process's composition root."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Keys used when nothing is configured: good enough for a laptop demo, refused in production mode.
_DEV_CODE_KEY = "errands-dev-code-key-change-me"
_DEV_DATA_KEY = base64.b64encode(b"errands-dev-data-key-change-me!!").decode()

# Every key value this repository has ever shown (defaults, docker-compose.yml, deploy/k8s, docs):
# anyone can read them, so production refuses them whatever their shape.
_PUBLISHED_KEYS = frozenset(
    {
        _DEV_CODE_KEY,
        _DEV_DATA_KEY,
        "compose-dev-code-key-change-me",
        "Y29tcG9zZS1kZXYtZGF0YS1rZXktY2hhbmdlLW1lISE=",
        "CHANGE-ME-long-random-string",
        "CHANGE-ME-base64-of-32-random-bytes",
        "replace-with-a-long-random-string",
        "replace-with-output-of-openssl-rand-base64-32",
    }
)
# Words that mark a value someone meant to replace; random base64 contains them with odds below 1e-7.
_PLACEHOLDER_WORDS = ("changeme", "change-me", "change_me", "replace", "placeholder", "example", "secret")
_KEY_BYTES = 32
# 32 random bytes take at least 16 distinct values except with odds of 3e-17; fewer is a pattern.
_KEY_MIN_DISTINCT_BYTES = 16
# How much longer than the outbox the inboxes remember an event: time for resent events to be consumed.
_INBOX_MARGIN_S = 24 * 3600.0
_KEY_HOWTO = (
    "generate one with `openssl rand -base64 32` or "
    '`python -c "import secrets,base64;print(base64.b64encode(secrets.token_bytes(32)).decode())"`'
)


def _key_material(value: str) -> bytes | None:
    """The bytes a key's text encodes, hex or standard base64 (padding optional); None if neither."""
    text = value.strip()
    try:
        if re.fullmatch(r"(?:[0-9a-fA-F]{2})+", text):
            return bytes.fromhex(text)
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def _key_weakness(value: str) -> str | None:
    """Why a key is unfit for production (a placeholder, too short, a pattern), or None if it is fit."""
    if value in _PUBLISHED_KEYS:
        return "is a placeholder published with Errands"
    lowered = value.lower()
    word = next((word for word in _PLACEHOLDER_WORDS if word in lowered), None)
    if word is not None:
        return f"looks like a placeholder (it contains {word!r})"
    material = _key_material(value)
    if material is None or len(material) < _KEY_BYTES:
        return f"must be at least {_KEY_BYTES} random bytes, base64- or hex-encoded"
    if len(set(material)) < _KEY_MIN_DISTINCT_BYTES:
        return "is a repeated pattern, not random bytes"
    return None


class Settings(BaseSettings):
    """Every knob of every Errands process; environment names are the field names in upper case."""

    # Errors name the setting, never echo its value: several are secrets and end up in logs.
    model_config = SettingsConfigDict(
        env_prefix="", case_sensitive=False, extra="ignore", hide_input_in_errors=True
    )

    database_url: str = Field(
        default="postgresql://postgres@127.0.0.1:5432/errands",
        description="PostgreSQL URL (postgresql:// or postgresql+asyncpg://).",
    )
    database_pool_size: int = Field(default=20, ge=1, le=500, description="Connections per process.")
    kafka_bootstrap_servers: str = Field(default="127.0.0.1:9092", description="Comma-separated brokers.")
    kafka_topic_partitions: int = Field(default=6, ge=1, le=1024)
    kafka_replication_factor: int = Field(default=1, ge=1, le=7)
    # How long the broker keeps events (`retention.ms` of the topics Errands creates). Events hold
    # personal data sealed and masked, so this must not exceed PERSONAL_DATA_RETENTION_S.
    kafka_topic_retention_ms: int = Field(default=7 * 86_400_000, ge=3_600_000)

    intake_host: str = "127.0.0.1"
    intake_port: int = Field(default=8080, ge=0, le=65535)
    dispatcher_host: str = "127.0.0.1"
    dispatcher_port: int = Field(default=8081, ge=0, le=65535)
    notifier_host: str = "127.0.0.1"
    notifier_port: int = Field(default=8082, ge=0, le=65535)

    log_level: str = "INFO"
    log_format: Literal["auto", "json", "console"] = "auto"

    # Secrets shared by the services: confirmation codes are stored and published only as
    # HMAC(code_key, ...); personal data on Kafka is sealed with AES-GCM under data_key.
    # The defaults are public: production refuses them, and any key weaker than 32 random bytes.
    errands_code_key: str = Field(
        default=_DEV_CODE_KEY,
        description="HMAC key for confirmation codes; in production base64 or hex of 32+ random bytes.",
    )
    errands_data_key: str = Field(
        default=_DEV_DATA_KEY,
        description="AES-256-GCM key sealing personal data on Kafka: base64 of 32 bytes.",
    )
    errands_production: bool = Field(default=False, description="Refuse published, short or patterned keys.")

    # Per-token request budget: a steady rate with a burst on top; beyond it, 429 with Retry-After.
    rate_limit_per_s: float = Field(default=50.0, gt=0)
    rate_limit_burst: int = Field(default=200, ge=1)

    # Staff accounts (docs/api.md, "Staff accounts and sessions").
    # Browser sessions last this long from login, then the person logs in again.
    session_ttl_s: float = Field(default=12 * 3600.0, gt=0)
    # A set-password link works once, until this long after it was made.
    password_setup_ttl_s: float = Field(default=72 * 3600.0, gt=0)
    # Where the one-time link points: the page that asks for the new password; `#token=...` is appended.
    password_setup_url: str = "http://127.0.0.1:8080/password-setup"  # noqa: S105 (a page, not a secret)
    # Operator console (intake): where the intake reaches the dispatcher for the actions it owns
    # (assign, move, decide, leg photos), forwarding the person's own session; empty: the dispatcher
    # on this host at `dispatcher_port`.
    dispatcher_url: str = Field(default="", max_length=2048)
    dispatcher_timeout_s: float = Field(default=10.0, gt=0, le=120)
    # How long a volunteer's one-time enrolment link (and its QR code) stays valid.
    enrolment_link_ttl_s: float = Field(default=24 * 3600.0, gt=0)
    # Where the enrolment link points: the app's page that exchanges it; `#token=...` is appended.
    enrolment_url: str = "http://127.0.0.1:8080/enrol"
    # Behind a proxy we run (it sets X-Forwarded-For / X-Forwarded-Proto): trust those headers for
    # the client's address and whether it came over HTTPS. Never set it when clients reach us directly.
    trusted_proxy: bool = False
    # Wrong passwords: counted per account and per client address, forgotten after a quiet window.
    # From `login_slow_after` failures on, each next try must wait longer (base doubling, up to max);
    # from `login_lock_after` on, the account (or address) is refused for `login_lock_s`.
    login_failure_window_s: float = Field(default=3600.0, gt=0)
    login_slow_after: int = Field(default=3, ge=1)
    login_lock_after: int = Field(default=10, ge=1)
    login_address_slow_after: int = Field(default=10, ge=1)
    login_address_lock_after: int = Field(default=50, ge=1)
    login_delay_base_s: float = Field(default=1.0, gt=0)
    login_delay_max_s: float = Field(default=60.0, gt=0)
    login_lock_s: float = Field(default=900.0, gt=0)

    # Consumer and relay behaviour.
    # Event ids a consumer has applied are remembered this long (longer than topic retention).
    inbox_retention_s: float = Field(default=14 * 24 * 3600.0, ge=3600)
    # Published events stay in the outbox this long, to be sent again to a broker that lost its log
    # (`make run`'s in-memory one sets it); 0 deletes them once published, for a broker that keeps its own.
    outbox_retention_s: float = Field(default=0.0, ge=0)
    # How long the broker waits for a silent group member before handing its partitions on.
    consumer_session_timeout_ms: int = Field(default=30_000, ge=1_000, le=300_000)
    consumer_heartbeat_interval_ms: int = Field(default=3_000, ge=100, le=60_000)
    # The longest the broker holds a fetch open when nothing is there: an idle consumer asks this
    # often; some brokers answer a fetch no sooner than this even when a record has just arrived.
    consumer_fetch_max_wait_ms: int = Field(default=50, ge=1, le=10_000)
    consumer_max_attempts: int = Field(default=5, ge=1, le=100)
    consumer_retry_backoff_s: float = Field(default=0.2, ge=0)
    relay_batch_size: int = Field(default=500, ge=1, le=10_000)
    relay_idle_poll_s: float = Field(default=1.0, gt=0)

    # Dispatch.
    dispatch_batch_window_ms: int = Field(default=500, ge=10, le=60_000)
    # A round starts before its window ends once this many legs have been taken in since the last
    # one started (`matcher.RoundClock`): under load legs wait less. 0: every window only.
    dispatch_batch_full_legs: int = Field(default=50, ge=0, le=20_000)
    offer_ttl_s: float = Field(default=60.0, gt=0)
    location_max_age_s: float = Field(default=900.0, gt=0)
    shift_max_on_duty_s: float = Field(default=4 * 3600.0, gt=0)
    shift_rest_s: float = Field(default=30 * 60.0, ge=0)
    daily_max_on_duty_s: float = Field(
        default=10 * 3600.0, gt=0, description="Duty a volunteer may do in one local day."
    )
    daily_max_legs: int = Field(
        default=30, ge=1, description="Legs a volunteer may deliver in one local day."
    )
    # The IANA time zone the organisations' calendar days are counted in: a volunteer's day and its
    # caps end at local midnight here, and one insured until a date is covered to the end of it.
    local_time_zone: str = "Asia/Shanghai"
    # The maps apps the volunteer app's "Navigate" offers, in order (comma-separated): `geo` (Android's
    # geo: URI), `apple` (Apple Maps, on Apple's phones), `amap` (Amap) and `baidu` (Baidu Maps).
    app_map_apps: str = Field(
        default="geo,apple",
        pattern=r"^(geo|apple|amap|baidu)(,(geo|apple|amap|baidu))*$",
        description="e.g. geo,apple,amap,baidu",
    )
    long_poll_max_wait_s: float = Field(default=60.0, gt=0, le=300)
    # How long ago a volunteer's picked-up, delivered or problem may say it happened (`occurred_at`:
    # an app that was offline sends it later), and how far ahead a phone's clock may run.
    volunteer_action_max_age_s: float = Field(default=24 * 3600.0, gt=0)
    volunteer_action_max_skew_s: float = Field(default=300.0, ge=0, le=3600)
    # Dispatch, issue 4: candidates per leg, radius widening while a leg waits, escalation.
    dispatch_candidates_k: int = Field(default=16, ge=1, le=200)
    # Pending legs one matching round considers; more wait for the next window.
    dispatch_batch_max_legs: int = Field(default=2000, ge=1, le=20_000)
    # Offers are routes: several legs to one volunteer, or a leg inserted into the route they carry
    # (`domain/routing.py`). Off: one leg at a time (only a supply run's legs go together).
    dispatch_routes: bool = True
    # Legs posted ahead (a pickup `ready_at` later than the task's submission) whose pickup is ready
    # within this many seconds are planned together every `dispatch_plan_every_s`, VROOM choosing
    # who carries which in what order, and a volunteer is offered their planned trip when it is
    # time to set off for it (`domain/planning.py`); such a leg is the round's once it has been
    # ready for `dispatch_plan_hold_s`. 0: no planning ahead, every leg waits for a round once ready.
    dispatch_plan_ahead_s: float = Field(default=7200.0, ge=0, le=7 * 24 * 3600)
    dispatch_plan_every_s: float = Field(default=15.0, gt=0, le=3600)
    dispatch_plan_hold_s: float = Field(default=1800.0, ge=0, le=24 * 3600)
    # Priorities across rounds: routine legs leave this share of an organisation's cars and of its
    # vans on duty idle for urgent and critical legs still to come, until they have waited
    # `dispatch_reserve_wait_s`; 0 turns the reserve off. An urgent or critical leg taken in starts a
    # round at once (no sooner than a fifth of a window after the last), not at the next window.
    dispatch_reserve_share: float = Field(default=0.1, ge=0, le=0.5)
    dispatch_reserve_wait_s: float = Field(default=600.0, ge=0)
    radius_widen_step_s: float = Field(
        default=60.0, gt=0, description="Every this many seconds a leg waits..."
    )
    radius_widen_factor: float = Field(default=0.5, ge=0, description="...its radius grows by this share.")
    radius_widen_max: float = Field(default=3.0, ge=1, description="Never beyond this multiple.")
    escalation_wait_s: float = Field(
        default=600.0, gt=0, description="Escalate a leg still unplaced after this."
    )
    escalation_deadline_margin_s: float = Field(
        default=900.0, ge=0, description="Escalate a leg still unplaced this close to its deadline."
    )

    # ETAs and delays: a leg in hand gets estimated pickup and drop-off times from the volunteer's
    # last fix (straight line times `eta_road_factor`, at the vehicle's speed; a locked-down city's
    # empty streets make cars slow only at checkpoints). A refresh is published only when an estimate
    # moves by `eta_publish_min_change_s` or more, or the leg turns late or on time again.
    eta_speed_foot_kmh: float = Field(default=4.5, gt=0, le=200)
    eta_speed_bicycle_kmh: float = Field(default=12.0, gt=0, le=200)
    eta_speed_ebike_kmh: float = Field(default=18.0, gt=0, le=200)
    eta_speed_car_kmh: float = Field(default=25.0, gt=0, le=200)
    eta_speed_van_kmh: float = Field(default=25.0, gt=0, le=200)
    eta_road_factor: float = Field(default=1.3, ge=1, le=5, description="Road distance over straight line.")
    eta_publish_min_change_s: float = Field(default=120.0, ge=0)
    # A leg that waits longer than this in one status escalates again (`waited_too_long_<status>`),
    # as does one whose drop-off estimate is past its `deliver_by` (`will_miss_deliver_by`); the same
    # leg and reason escalate at most once per `leg_escalation_repeat_s`.
    leg_wait_limit_pending_s: float = Field(default=1800.0, gt=0)
    leg_wait_limit_offered_s: float = Field(default=900.0, gt=0)
    leg_wait_limit_assigned_s: float = Field(default=2700.0, gt=0)
    leg_wait_limit_picked_up_s: float = Field(default=3600.0, gt=0)
    leg_escalation_repeat_s: float = Field(default=1800.0, gt=0)

    # Location reports (issue 4 point 3): buffered per volunteer, written and published in one
    # transaction every interval; a kill -9 loses at most about one interval of reports.
    location_flush_interval_ms: int = Field(default=50, ge=5, le=1000)
    location_buffer_max_volunteers: int = Field(
        default=200_000, ge=1, description="Volunteers with an unwritten fix; beyond, new reports get 503."
    )

    # Proof of delivery: photos a volunteer uploads for a no-contact drop-off. Each is decoded,
    # stripped of its metadata (EXIF carries the phone's GPS position), turned upright, scaled down
    # to `photo_max_side` on its longest side and re-encoded; only those bytes are stored.
    photo_max_bytes: int = Field(
        default=10 * 1024 * 1024, ge=1024, le=100 * 1024 * 1024, description="Larger uploads get 413."
    )
    photo_max_side: int = Field(default=1600, ge=64, le=10_000, description="Longest side stored, in px.")
    photo_max_pixels: int = Field(
        default=50_000_000,
        ge=10_000,
        le=200_000_000,
        description="An image claiming more pixels is refused from its header, before it is decoded.",
    )
    photo_max_per_leg: int = Field(default=10, ge=1, le=100, description="Further uploads get 409.")
    # Photos decoded at once per process (each may take up to 3 bytes per pixel while it is decoded);
    # further uploads wait their turn.
    photo_decode_concurrency: int = Field(default=2, ge=1, le=64)
    # Where the stored bytes live: "postgres" (a table of its own, nothing more to run) or "s3", an
    # S3-compatible object store (MinIO in docker-compose.yml) at photo_s3_endpoint_url.
    photo_store: Literal["postgres", "s3"] = "postgres"
    photo_s3_endpoint_url: str = Field(default="", description="e.g. http://minio:9000; empty: AWS's own.")
    photo_s3_bucket: str = "errands-photos"
    photo_s3_region: str = "us-east-1"
    photo_s3_access_key_id: str = ""
    photo_s3_secret_access_key: str = ""

    # Notifier.
    confirmation_max_failures: int = Field(default=3, ge=1, le=100)
    webhook_allow_private_urls: bool = False
    notifier_consumer_group: str = "notifier"
    webhook_timeout_s: float = Field(default=10.0, gt=0, le=120)
    webhook_response_max_bytes: int = Field(
        default=64 * 1024, ge=0, description="Of a webhook's or callback's answer, read this much at most."
    )
    webhook_max_attempts: int = Field(default=12, ge=1, le=50)
    webhook_backoff_base_s: float = Field(default=30.0, ge=0)
    webhook_backoff_max_s: float = Field(default=6 * 3600.0, ge=0)
    delivery_poll_s: float = Field(default=1.0, gt=0)
    delivery_batch_size: int = Field(default=50, ge=1, le=1000)
    notification_max_attempts: int = Field(default=5, ge=1, le=50)
    # A volunteer who asked for an SMS on a new offer gets at most one per offer, and none sooner
    # than this after the last one (a round of several offers is one SMS).
    offer_sms_min_interval_s: float = Field(default=300.0, ge=0)
    # Recipient channels: a channel with no address configured is off.
    smtp_host: str = ""
    smtp_port: int = Field(default=25, ge=0, le=65535)
    smtp_from: str = "errands@localhost"
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_starttls: bool = False
    smtp_timeout_s: float = Field(default=10.0, gt=0, le=120)
    sms_gateway_url: str = ""
    sms_gateway_token: str = ""
    sms_timeout_s: float = Field(default=10.0, gt=0, le=120)

    # Intake, issue 3: idempotency records are kept at least 24 h, then purged periodically.
    idempotency_retention_s: float = Field(default=24 * 3600.0, ge=24 * 3600.0)
    idempotency_purge_interval_s: float = Field(default=3600.0, gt=0)

    # Personal data: names, phones, e-mails, free-text notes, addresses and photos of a task are
    # erased this long after the task ended (30 days; shorter is allowed), by a job in each service
    # that holds a copy, in batches of `personal_data_erase_batch`.
    personal_data_retention_s: float = Field(default=30 * 86400.0, ge=0)
    personal_data_erase_interval_s: float = Field(default=600.0, gt=0)
    personal_data_erase_batch: int = Field(default=200, ge=1, le=10_000)

    # Intake, issue 17: the register of people served and saved places.
    # A recipient with no task and no renewal for this long is erased, by a loop in batches.
    recipient_retention_days: int = Field(default=365, ge=1, le=36500)
    recipient_erasure_interval_s: float = Field(default=3600.0, gt=0)
    recipient_erasure_batch: int = Field(default=500, ge=1, le=10_000)
    # A Nominatim-compatible geocoder (`GET {url}/search?q=...&format=jsonv2&limit=1`), asked when a
    # task, a recipient or a place gives an address without coordinates; empty: off, and such an
    # address is refused (422). Operator-configured, so the public-address guard does not apply.
    geocoder_url: str = ""
    geocoder_timeout_s: float = Field(default=5.0, gt=0, le=60)
    # Found coordinates are kept this long per normalised address (by keyed hash, never in clear).
    geocoder_cache_ttl_s: float = Field(default=30 * 24 * 3600.0, ge=0)
    # Nominatim's usage policy asks every client to identify itself.
    geocoder_user_agent: str = "Errands/1.0 (volunteer dispatch)"

    # Intake, issue 17: recurring deliveries. Each occurrence of a schedule becomes a task this long
    # before it is due, by a loop every `schedule_interval_s` that takes `schedule_batch` schedules at
    # a time (replicas skip the ones another holds).
    schedule_lead_time_s: float = Field(default=3600.0, ge=0, le=7 * 86400.0)
    schedule_interval_s: float = Field(default=30.0, gt=0)
    schedule_batch: int = Field(default=50, ge=1, le=1000)

    # Intake, the operator console's dispatch board: the map's tile layer, `{z}/{x}/{y}` in Leaflet's
    # form (OpenStreetMap's `https://tile.openstreetmap.org/{z}/{x}/{y}.png` in production, with its
    # attribution); empty: no tiles, and the board draws its points on a plain background.
    console_tile_url: str = Field(default="", pattern=r"^(https?://\S+)?$")
    console_tile_attribution: str = ""

    # Local run.
    errands_demo: bool = True
    errands_state_dir: str = ".errands"

    @field_validator("local_time_zone")
    @classmethod
    def _time_zone_is_known(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"LOCAL_TIME_ZONE must be an IANA time zone such as Asia/Shanghai, not {value!r}"
            ) from exc
        return value

    @model_validator(mode="after")
    def _copies_forget_personal_data_in_time(self) -> Self:
        """Retained and published events hold a task's (sealed) personal data: neither may outlive
        the retention."""
        if self.outbox_retention_s > self.personal_data_retention_s:
            raise ValueError(
                "OUTBOX_RETENTION_S must not exceed PERSONAL_DATA_RETENTION_S: retained events hold "
                "personal data"
            )
        if self.kafka_topic_retention_ms / 1000 > max(self.personal_data_retention_s, 3600):
            raise ValueError(
                "KAFKA_TOPIC_RETENTION_MS must not exceed PERSONAL_DATA_RETENTION_S: events on the "
                "topics hold personal data"
            )
        return self

    @model_validator(mode="after")
    def _inbox_outlives_outbox(self) -> Self:
        """A resent event is recognised only while its id is still in the consumers' inboxes."""
        if self.outbox_retention_s > 0 and self.inbox_retention_s < self.outbox_retention_s + _INBOX_MARGIN_S:
            raise ValueError(
                "INBOX_RETENTION_S must exceed OUTBOX_RETENTION_S by at least a day, "
                "or events resent to a fresh broker could be applied twice"
            )
        return self

    @model_validator(mode="after")
    def _keys_are_usable(self) -> Self:
        """The one check of both keys: the data key's shape always, their strength in production."""
        try:
            data_key = base64.b64decode(self.errands_data_key, validate=True)
        except binascii.Error:
            data_key = b""
        if len(data_key) != _KEY_BYTES:
            raise ValueError(f"ERRANDS_DATA_KEY must be {_KEY_BYTES} bytes, base64-encoded; {_KEY_HOWTO}")
        if self.errands_production:
            for name, value in (
                ("ERRANDS_CODE_KEY", self.errands_code_key),
                ("ERRANDS_DATA_KEY", self.errands_data_key),
            ):
                weakness = _key_weakness(value)
                if weakness is not None:
                    raise ValueError(f"{name} {weakness}; {_KEY_HOWTO}")
        return self

    @property
    def dispatcher_base_url(self) -> str:
        """The dispatcher's address for the intake's server-to-server calls, without a trailing slash."""
        return (self.dispatcher_url or f"http://127.0.0.1:{self.dispatcher_port}").rstrip("/")

    @property
    def sqlalchemy_url(self) -> str:
        """The database URL with the asyncpg driver, whichever form was configured."""
        url = self.database_url
        for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
            if url.startswith(prefix):
                return "postgresql+asyncpg://" + url[len(prefix) :]
        return url

    @property
    def asyncpg_dsn(self) -> str:
        """The database URL as asyncpg itself accepts it (for LISTEN connections)."""
        return self.sqlalchemy_url.replace("postgresql+asyncpg://", "postgresql://", 1)

    @property
    def data_key(self) -> bytes:
        return base64.b64decode(self.errands_data_key)

    @property
    def code_key(self) -> bytes:
        return self.errands_code_key.encode()
