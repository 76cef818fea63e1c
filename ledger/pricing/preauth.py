"""Pre-authorization sizing: how much to hold on the customer's payment method at session start.

OCPI 2.2.1 tariffs carry no pre-authorization amount (2.3.0 adds ``preauthorize_amount``); an
evledger extension field on the tariff JSON, ``evledger_preauthorize_amount`` (major units, VAT
included), is used when present. Otherwise the hold is the price, VAT included, of charging at
``max_power_kw`` for ``max_duration`` from the start, under the tariff. Either way the result is
capped at ``cap``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from ledger.errors import ValidationError
from ledger.money import Money
from ledger.pricing.price import price_session
from ledger.pricing.tariffs import Tariff
from ledger.sessions.metering import MeteredInterval, MeteredSession

DEFAULT_MAX_POWER_KW = Decimal(22)
DEFAULT_MAX_DURATION = timedelta(hours=4)


def preauthorization_amount(
    tariff: Tariff,
    *,
    starts_at: datetime,
    time_zone: str,
    max_power_kw: Decimal = DEFAULT_MAX_POWER_KW,
    max_duration: timedelta = DEFAULT_MAX_DURATION,
    cap: Money | None = None,
) -> Money:
    """The amount to hold (incl. VAT) in the tariff currency.

    Raises ValidationError for a negative power or duration or a cap in another currency.
    """
    if max_power_kw < 0 or max_duration < timedelta(0):
        raise ValidationError(
            "max power and duration must not be negative",
            tariff_id=tariff.id,
            max_power_kw=str(max_power_kw),
        )
    if cap is not None and cap.currency != tariff.currency:
        raise ValidationError(
            "pre-authorization cap is in another currency",
            tariff_id=tariff.id,
            cap_currency=cap.currency,
            tariff_currency=tariff.currency,
        )
    if tariff.preauthorize_amount is not None:
        # The extension may carry more decimals than the currency: round once, half-up.
        amount = Money.round_half_up(tariff.preauthorize_amount, tariff.currency)
    else:
        amount = estimate_session_price(tariff, starts_at, time_zone, max_power_kw, max_duration)
    return amount if cap is None else amount.min(cap)


def estimate_session_price(
    tariff: Tariff,
    starts_at: datetime,
    time_zone: str,
    max_power_kw: Decimal,
    max_duration: timedelta,
) -> Money:
    """Price incl. VAT of one interval charging at ``max_power_kw`` for ``max_duration``."""
    stops_at = starts_at + max_duration
    energy_wh = max_power_kw * 1000 * Decimal(max_duration.total_seconds()) / 3600
    session = MeteredSession(
        session_id="preauth-estimate",
        started_at=starts_at,
        stopped_at=stops_at,
        time_zone=time_zone,
        intervals=(MeteredInterval(starts_at, stops_at, energy_wh, True, max_power_kw),),
    )
    return price_session(tariff, session).total_incl_vat
