"""What a person does to a session after its stop, as values: re-pricing a billed session with a
waiver (credit, reissue, refund) and releasing a session held for a blocking meter flag after
review. The caller loads the session and its facts, applies one of these, and stores and emits
the result in one transaction. See docs/sessions.md."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable, Sequence

from ledger.dimensions import Dimension
from ledger.envelope import Envelope, Source, utcnow
from ledger.errors import ValidationError
from ledger.events import CdrCredited, RefundRequested
from ledger.money import Money
from ledger.pricing.price import price_session
from ledger.sessions.billing import (
    Known,
    bill,
    cdr_issued,
    cdr_record,
    check_signed,
    derived_id,
    marked,
    metered_session,
    resolve_tariff,
)
from ledger.sessions.corrections import Correction, SettlementKind, correct_cdr
from ledger.sessions.holds import hold_for
from ledger.sessions.rules import (
    InvalidHold,
    NothingToReprice,
    SessionNotBilled,
    SessionNotHeld,
    SessionStatus,
)
from ledger.sessions.session import (
    Applied,
    CdrKind,
    CdrRecord,
    Rejection,
    Session,
    SessionReading,
    StateChange,
)


def reprice(
    s: Session,
    cdrs: Sequence[CdrRecord],
    readings: Iterable[SessionReading],
    states: Iterable[StateChange],
    known: Known,
    waive: frozenset[Dimension],
    reason: str,
) -> tuple[Applied, Correction]:
    """Re-price a billed session with ``waive`` added to what its current CDR waived: a
    CdrCredited of the current CDR, the new CdrIssued (replaces_cdr_id) and RefundRequested for
    the difference. Afterwards captured - refunded = the new total (or the hold, if that is less).
    Event ids derive from the current CDR's event id.

    Raises SessionNotBilled, NothingToReprice, ValidationError (re-pricing the current CDR does
    not reproduce it)."""
    if s.status != SessionStatus.BILLED or s.tariff_version is None:
        raise SessionNotBilled(f"the session is {s.status}", session_id=s.session_id)
    credited = {c.credited_cdr_id for c in cdrs if c.kind == CdrKind.CREDITED}
    current = [c for c in cdrs if c.kind == CdrKind.ISSUED and c.cdr_id not in credited][-1]
    before = frozenset(Dimension(d) for d in current.waived)
    after = before | waive
    if after == before:
        raise NothingToReprice("already priced with that waiver", session_id=s.session_id)
    (version,) = [v for v in known.versions(s.tariff_id) if v.version == s.tariff_version]
    tariff = known.parsed.get(version)
    metered = metered_session(s, readings, states, known.config)
    original = price_session(tariff, metered, waive=before)
    if original.total_incl_vat.amount_minor != current.total_incl_vat:
        raise ValidationError(
            "re-pricing the current CDR does not reproduce it",
            session_id=s.session_id,
            cdr_id=current.cdr_id,
        )
    repriced = price_session(tariff, metered, waive=after)
    captured = Money(s.captured_minor - s.refunded_minor, repriced.currency)
    correction = correct_cdr(original, repriced, captured, reason)
    cause = current.event_id
    made_at = utcnow()  # one act: the credit, the re-issue and the refund share its time

    def envelope(kind: str) -> Envelope:
        return Envelope.new(
            s.network_id,
            Source.internal,
            occurred_at=made_at,
            correlation_id=s.correlation_id,
            causation_id=cause,
            event_id=derived_id(cause, kind),
        )

    credit_id, new_id = derived_id(cause, "credit"), derived_id(cause, "reissue")
    credited_env, reissued_env = envelope("cdr-credited"), envelope("cdr-reissued")
    events: list[object] = [
        CdrCredited(
            credited_env,
            s.session_id,
            credit_id,
            current.cdr_id,
            correction.credit.total_incl_vat,
            reason,
            list(correction.credit.lines),
            s.payment_id,
        ),
        cdr_issued(reissued_env, s, new_id, version.version, repriced, current.cdr_id),
    ]
    credit = dataclasses.replace(
        current,
        cdr_id=credit_id,
        kind=CdrKind.CREDITED,
        event_id=derived_id(cause, "cdr-credited"),
        tariff_version=version.version,
        replaces_cdr_id=None,
        credited_cdr_id=current.cdr_id,
        reason=reason,
        occurred_at=credited_env.occurred_at,
    )
    reissued = cdr_record(
        new_id, s, derived_id(cause, "cdr-reissued"), version.version, repriced, current.cdr_id,
        occurred_at=reissued_env.occurred_at,
    )  # fmt: skip
    refunded = s.refunded_minor
    if correction.kind is SettlementKind.REFUND and s.payment_id is not None:
        events.append(
            RefundRequested(
                envelope("refund"),
                s.payment_id,
                derived_id(cause, "refund-id"),
                correction.refund,
                list(correction.refund_lines),
                reason,
            )
        )
        refunded += correction.refund.amount_minor
    shortfall = correction.additional_charge.amount_minor
    after_correction = dataclasses.replace(
        s,
        refunded_minor=refunded,
        shortfall_minor=shortfall,
        shortfall_status=s.shortfall_status if shortfall else None,
    )
    applied = Applied(after_correction, events=tuple(events), cdrs=(credit, reissued))
    return applied, correction


def release(
    s: Session,
    readings: Iterable[SessionReading],
    states: Iterable[StateChange],
    known: Known,
    reason: str,
) -> Applied:
    """Bill a session held for a blocking meter flag, after review, as the meter reads without
    the flagged readings (a decrease or reset, a reading outside the session or of only some
    phases delivers no energy; implausible energy is billed as measured). Emits like a stop
    would, with ids derived from the stop; the CDR carries ``reason``. When the payment has no
    hold the ledger accepts, the session stays held INVALID_HOLD (``rejection``).

    Raises SessionNotHeld, UnknownTariff."""
    if s.status != SessionStatus.HELD or s.stopped_event_id is None or s.stopped_at is None:
        raise SessionNotHeld(f"the session is {s.status}", session_id=s.session_id)
    readings = list(readings)
    found = resolve_tariff(known.versions(s.tariff_id), s.tariff_id, s.tariff_version, s.started_at)
    tariff = known.parsed.get(found)
    metered = metered_session(s, readings, states, known.config)
    priced = price_session(tariff, metered)
    cause_id = derived_id(s.stopped_event_id, "release")
    s, _ = check_signed(s, readings, priced.energy_wh, known)  # flagged, billed after review
    try:
        hold = hold_for(s, tariff, known.holds, known.config)
        billed = bill(s, found.version, priced, hold, known.config, cause_id)
    except InvalidHold as exc:
        held = marked(s, SessionStatus.HELD, exc.code, str(exc))
        return Applied(held, rejection=Rejection.of(exc))
    cdrs = tuple(dataclasses.replace(c, reason=reason) for c in billed.cdrs)
    return dataclasses.replace(billed, cdrs=cdrs)


def waivable(names: Collection[str]) -> frozenset[Dimension]:
    """Dimensions named on the command line (ENERGY, TIME, PARKING_TIME, FLAT)."""
    try:
        return frozenset(Dimension(name.upper()) for name in names)
    except ValueError:
        raise ValidationError("unknown tariff dimension", names=",".join(names)) from None
