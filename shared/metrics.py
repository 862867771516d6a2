"""Prometheus metrics every service exposes at /metrics (the default registry, one per process)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

HTTP_REQUESTS = Counter("errands_http_requests_total", "HTTP requests served.", ["route", "method", "status"])
HTTP_LATENCY = Histogram(
    "errands_http_request_duration_seconds",
    "HTTP request latency.",
    ["route", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
EVENTS_CONSUMED = Counter(
    "errands_events_consumed_total", "Events handled by a consumer.", ["group", "event_type", "outcome"]
)
HANDLER_FAILURES = Counter(
    "errands_handler_failures_total", "Failed attempts to handle an event.", ["group", "event_type"]
)
DEADLETTERED = Counter(
    "errands_deadlettered_total", "Records sent to the dead-letter topic.", ["group", "topic"]
)
OUTBOX_PUBLISHED = Counter(
    "errands_events_produced_total", "Events published from an outbox.", ["event_type", "topic"]
)
OUTBOX_BACKLOG = Gauge("errands_outbox_backlog", "Unsent outbox rows.", ["schema"])
OUTBOX_OLDEST_AGE = Gauge(
    "errands_outbox_oldest_age_seconds", "Age of the oldest unsent outbox row.", ["schema"]
)
LOCATION_FIXES_DROPPED = Counter(
    "errands_location_fixes_dropped_total", "Location fixes the database refused, dropped."
)
CONSUMER_LAG = Gauge(
    "errands_consumer_lag",
    "Records not yet consumed, per group and partition.",
    ["group", "topic", "partition"],
)

# Dispatch timings, observed by intake's read model the first time a leg reaches each status.
DISPATCH_SUBMISSION_TO_OFFER = Histogram(
    "errands_dispatch_submission_to_offer_seconds",
    "From a task's submission to its leg's first offer.",
    ["priority"],
    buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600),
)
DISPATCH_OFFER_TO_ASSIGNMENT = Histogram(
    "errands_dispatch_offer_to_assignment_seconds",
    "From a leg's (latest) offer to its first assignment.",
    ["priority"],
    buckets=(0.5, 1, 2, 5, 10, 20, 30, 45, 60, 90, 120, 300, 600),
)
DISPATCH_ASSIGNMENT_TO_CONFIRMATION = Histogram(
    "errands_dispatch_assignment_to_confirmation_seconds",
    "From a leg's (latest) assignment to its confirmed delivery.",
    ["priority"],
    buckets=(10, 30, 60, 120, 300, 600, 900, 1200, 1800, 2700, 3600, 5400, 7200, 14400),
)
DISPATCH_TIMINGS = {
    "submission_to_offer": DISPATCH_SUBMISSION_TO_OFFER,
    "offer_to_assignment": DISPATCH_OFFER_TO_ASSIGNMENT,
    "assignment_to_confirmation": DISPATCH_ASSIGNMENT_TO_CONFIRMATION,
}
