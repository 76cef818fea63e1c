"""Pricing a reservation under an OCPI 2.2.1 tariff (TariffRestrictions.reservation, 11.4.3).

Elements with ``reservation: RESERVATION`` describe what a reservation costs: FLAT (a
reservation fee) and TIME (the time reserved, from when the reservation was made until the
driver starts charging or it expires). Elements with ``RESERVATION_EXPIRES`` describe the cost
of a reservation that expires without a charging session; where both carry the same dimension,
the RESERVATION_EXPIRES one prices an expired reservation (the spec's note on 11.4.3). All other
restrictions of those elements (time of day, day of week, date, duration) hold as for a session.

The reservation is priced on its own, as a bill of RESERVATION lines (OCPI CDR
``total_reservation_cost``), one per VAT rate; the charging session that follows is priced by
``price_session`` with the other elements. min_price/max_price bound the charging session and
are not applied to the reservation (see docs/tariffs.md).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from ledger.dimensions import Dimension
from ledger.errors import ValidationError
from ledger.money import Money
from ledger.pricing._limits import allocate_vat
from ledger.pricing.price import PricedLine, PricedSession, price_session
from ledger.pricing.tariffs import ReservationRestriction, Tariff, TariffElement
from ledger.sessions.metering import MeteredInterval, MeteredSession


@dataclass(frozen=True, slots=True)
class Reservation:
    """A reservation (OCPI ReserveNow) as pricing needs it: when it was made and when it ended,
    by the driver starting to charge (``expired`` False) or by expiring (``expired`` True)."""

    reservation_id: str
    reserved_at: datetime
    ended_at: datetime
    expired: bool


def reservation_elements(tariff: Tariff, expired: bool) -> tuple[TariffElement, ...]:
    """The elements pricing a reservation, in the order first-match applies: for an expired
    one the RESERVATION_EXPIRES elements first, then the RESERVATION ones. Their reservation
    restriction is dropped (it selected them); the other restrictions stay."""
    kinds = [ReservationRestriction.RESERVATION]
    if expired:
        kinds.insert(0, ReservationRestriction.RESERVATION_EXPIRES)
    return tuple(
        TariffElement(
            e.price_components,
            dataclasses.replace(e.restrictions, reservation=None),
        )
        for kind in kinds
        for e in tariff.elements
        if e.restrictions is not None and e.restrictions.reservation is kind
    )


def _view(tariff: Tariff, expired: bool) -> Tariff | None:
    """The tariff's reservation elements as a tariff of their own (cached on ``tariff``)."""
    key = f"reservation:{expired}"
    cached = tariff._plans.get(key)
    if cached is None:
        elements = reservation_elements(tariff, expired)
        cached = (
            Tariff(id=tariff.id, currency=tariff.currency, elements=elements) if elements else False
        )
        tariff._plans[key] = cached
    return cached if isinstance(cached, Tariff) else None


def price_reservation(tariff: Tariff, reservation: Reservation, time_zone: str) -> PricedSession:
    """The reservation's cost: RESERVATION lines (fee and reserved time), one per VAT rate, with
    the VAT per rate rounded once. No reservation elements: an empty bill (free).

    Raises ValidationError when the reservation ends before it starts, UnknownTimeZone."""
    start, end = reservation.reserved_at, reservation.ended_at
    if end < start:
        raise ValidationError(
            "a reservation ends before it was made", reservation_id=reservation.reservation_id
        )
    currency = tariff.currency
    zero = Money(0, currency)
    hours = Decimal((end - start).total_seconds()) / 3600
    view = _view(tariff, reservation.expired)
    priced_lines: tuple[PricedLine, ...] = ()
    if view is not None:
        timed = MeteredSession(
            reservation.reservation_id,
            start,
            end,
            time_zone,
            (MeteredInterval(start, end, 0, True),) if end > start else (),
        )
        priced_lines = price_session(view, timed).lines
    nets: dict[Decimal | None, int] = {}
    for line in priced_lines:
        nets[line.vat_rate] = nets.get(line.vat_rate, 0) + line.net.amount_minor
    rates = list(nets)
    vats = allocate_vat([nets[r] for r in rates], rates)
    quantity = hours.quantize(Decimal("0.000001")).normalize()
    lines = tuple(
        PricedLine(
            Dimension.RESERVATION,
            rate,
            quantity,
            Money(nets[rate], currency),
            Money(vat, currency),
            zero,
        )
        for rate, vat in zip(rates, vats, strict=True)
    )
    net = sum(nets.values())
    vat = sum(vats)
    return PricedSession(
        session_id=reservation.reservation_id,
        tariff_id=tariff.id,
        currency=currency,
        lines=lines,
        total_excl_vat=Money(net, currency),
        total_vat=Money(vat, currency),
        total_incl_vat=Money(net + vat, currency),
        energy_wh=Decimal(0),
        duration_s=Decimal((end - start).total_seconds()),
        charging_s=Decimal(0),
        parking_s=Decimal(0),
    )
