"""What can go wrong in intake, in its own words; the HTTP edge and the command line say it their way."""

from __future__ import annotations

from shared.errors import Invalid, NotFound


class OrganisationNotFound(NotFound):
    """No organisation has this id."""


class NotACrossOrganisationRole(Invalid):
    """Only ops and admin tokens act across organisations."""
