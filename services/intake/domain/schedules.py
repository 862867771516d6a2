"""Recurring deliveries: when a schedule's occurrences fall, from an RFC 5545 rule in a local time zone.

A rule is read with `python-dateutil` against a local, naive start (`dtstart`): "every day at 11:30"
stays at 11:30 on the wall clock whatever the zone's offsets do. Each occurrence is then placed in
the zone and compared, stored and keyed in UTC. Pure functions: no clock, no database.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil.rrule import SECONDLY, rrule, rrulestr

# Closer occurrences than this are refused: a schedule creates errands, not a stream of them.
MIN_SPACING = timedelta(minutes=10)
# How many occurrences from the start are checked for spacing when a rule is saved.
SPACING_PROBE = 200
# Local times are compared a little before `after`, so that an offset change cannot hide one.
_ZONE_SLACK = timedelta(hours=26)

# The messages a client sees in `errors[].message` for a rule or zone no schema can check.
BAD_RULE = "not an RFC 5545 recurrence rule"
TOO_FREQUENT = "occurrences closer than 10 minutes are refused"
NO_OCCURRENCE = "the rule has no occurrence"
UNKNOWN_ZONE = "not an IANA time zone"


class RuleError(ValueError):
    """A rule or zone that cannot make a schedule; `field` names it in the request."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise RuleError("$.time_zone", UNKNOWN_ZONE) from exc


def normalised_rule(text: str) -> str:
    """The rule's parameters without an `RRULE:` prefix or surrounding blanks."""
    text = text.strip()
    if text[:6].upper() == "RRULE:":
        text = text[6:]
    return text


def parse_rule(text: str, dtstart: datetime) -> rrule:
    """The rule read against a naive local start; RuleError naming `$.rrule` when it is not one."""
    text = normalised_rule(text)
    if not text or any(ch in text for ch in "\r\n:"):
        raise RuleError("$.rrule", BAD_RULE)
    try:
        rule = rrulestr(f"RRULE:{text}", dtstart=dtstart.replace(tzinfo=None))
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise RuleError("$.rrule", BAD_RULE) from exc
    if not isinstance(rule, rrule):
        raise RuleError("$.rrule", BAD_RULE)
    return rule


@dataclass(frozen=True)
class Recurrence:
    """A schedule's timing: the rule, its local start and zone, and the local dates it skips."""

    rule: str
    dtstart: datetime
    time_zone: str
    skipped: frozenset[date] = field(default_factory=frozenset)

    def parsed(self) -> rrule:
        return parse_rule(self.rule, self.dtstart)

    def check(self) -> None:
        """Refuse a rule that is not one, is finer than every 10 minutes, or never occurs.

        A rule whose filters can never match makes dateutil search to the year 9999 (seconds of
        CPU): call this off the event loop.
        """
        tz = zone(self.time_zone)
        rule = self.parsed()
        if rule._freq == SECONDLY:
            raise RuleError("$.rrule", TOO_FREQUENT)
        first = [_utc(local, tz) for local in itertools.islice(iter(rule), SPACING_PROBE)]
        if not first:
            raise RuleError("$.rrule", NO_OCCURRENCE)
        if any(later - earlier < MIN_SPACING for earlier, later in itertools.pairwise(first)):
            raise RuleError("$.rrule", TOO_FREQUENT)

    def _after(self, after: datetime) -> Iterator[datetime]:
        """Occurrences strictly after `after` (aware), in UTC and in order, skipped dates left out."""
        tz = zone(self.time_zone)
        rule = self.parsed()
        start_local = after.astimezone(tz).replace(tzinfo=None) - _ZONE_SLACK
        for local in rule.xafter(start_local, inc=True):
            at = _utc(local, tz)
            if at <= after or local.date() in self.skipped:
                continue
            yield at

    def between(self, after: datetime, until: datetime, *, limit: int) -> list[datetime]:
        """At most `limit` occurrences in (after, until], in UTC."""
        found: list[datetime] = []
        for at in self._after(after):
            if at > until or len(found) >= limit:
                break
            found.append(at)
        return found

    def next(self, after: datetime, count: int) -> list[datetime]:
        """The next `count` occurrences strictly after `after` (fewer when the rule ends)."""
        return list(itertools.islice(self._after(after), count))

    def local(self, at: datetime) -> datetime:
        return at.astimezone(zone(self.time_zone))


def _utc(local: datetime, tz: ZoneInfo) -> datetime:
    # A wall-clock time the zone skips (spring forward) is read with the offset before the change.
    return local.replace(tzinfo=tz).astimezone(UTC)
