"""What can go wrong in dispatch, in its own words; the HTTP edge maps each class to an answer."""

from __future__ import annotations

from shared.errors import Conflict, DomainError, Invalid, NotFound


class LegNotFound(NotFound):
    """No such leg, or not one the caller may see (another volunteer's or organisation's)."""


class OfferNotFound(NotFound):
    """No such offer for this volunteer, or one for a leg of another organisation."""


class VolunteerNotFound(NotFound):
    """No such volunteer in the operator's organisation."""


class TokenNotFound(NotFound):
    """The volunteer holds no live token with this id."""


class OfferClosed(Conflict):
    """The offer expired, was declined, accepted or withdrawn: it can no longer be taken."""


class TransitionRefused(Conflict):
    """The leg's status does not allow what was asked (see `domain.leg.TRANSITIONS`)."""


class LegFlagged(Conflict):
    """Too many wrong confirmation codes: the leg takes no report until an operator looks into it."""


class VolunteerAtLimit(Conflict):
    """The volunteer already carries as many legs as their limit allows."""


class VolunteerDeactivated(Conflict):
    """The volunteer was withdrawn by an operator: no new legs, no new tokens."""


class LimitBelowLoad(Conflict):
    """A volunteer's limit may not drop below the legs they carry now."""


class NoPhoneOnRecord(Conflict):
    """An SMS was asked for, but the centre has no phone number for the volunteer."""


class TokenNoLongerValid(DomainError):
    """The volunteer acting was deactivated after their token was checked: as if the token were gone."""


class RestOwed(Conflict):
    """The volunteer reached the shift cap and has not rested long enough to go on duty again."""


class DailyCapReached(Conflict):
    """The volunteer reached today's cap on duty hours or legs; they may go on duty after local midnight."""


class VolunteerOffDuty(Conflict):
    """An operator chose a volunteer who is off duty (an override with a reason lifts this)."""


class InsuranceLapsed(Conflict):
    """An operator chose a volunteer whose insurance is not in force (an override lifts this)."""


class PhotoNotFound(NotFound):
    """No such photo of this leg, or not one the caller may see (another organisation's)."""


class TooManyPhotos(Conflict):
    """The leg already has as many photos as one leg may have."""


class ProofNotFound(Invalid):
    """A delivery report names a photo that was never uploaded for this leg."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(
            f"{field.removeprefix('$.')} {message}.", errors=[{"field": field, "message": message}]
        )


class VolunteerNotVetted(Conflict):
    """An operator chose a volunteer still pending vetting, or rejected (no override lifts this)."""


class EnrolmentLinkNotFound(NotFound):
    """No enrolment link, or an invite code, with this secret."""


class EnrolmentLinkSpent(DomainError):
    """The enrolment link was used already, or has expired: ask the operator for a new one."""
