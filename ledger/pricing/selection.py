"""Which of a connector's tariffs prices a session (OCPI 2.2.1 Tariff.type, TariffType 11.4.7).

A connector lists tariff ids (Locations module, Connector.tariff_ids). OCPI says a tariff with
``type`` is valid for the sessions that type describes, and one without ``type`` "is valid for
all sessions": AD_HOC_PAYMENT when ad-hoc payment is used at the Charge Point, PROFILE_CHEAP /
FAST / GREEN when the driver set that Charging Preference, REGULAR "when using an RFID, without
any Charging Preference, or when Charging Preference: REGULAR is set". ``start_date_time`` /
``end_date_time`` say when a tariff is active; the tariff active at the session start is the
one the driver accepted.

The spec does not rank a typed match against an untyped tariff, nor say what prices a profile
session without a tariff of that profile. evledger's reading (docs/tariffs.md): the first
active tariff of the session's type; else the first active tariff without a type; for a
Charging Preference with neither, the REGULAR tariff (a preference asks for a different price,
and when none is offered the regular one applies); an ad-hoc session never falls back to
REGULAR (that type is for RFID and contract sessions).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from ledger.pricing.tariffs import Tariff, TariffType, UnknownTariff


def session_tariff_type(*, ad_hoc: bool, profile: TariffType | None = None) -> TariffType:
    """The TariffType a session asks for: ad-hoc payment wins, then the Charging Preference
    (a PROFILE_* type or REGULAR), else REGULAR."""
    if ad_hoc:
        return TariffType.AD_HOC_PAYMENT
    if profile is None:
        return TariffType.REGULAR
    if profile is TariffType.AD_HOC_PAYMENT:
        raise ValueError("AD_HOC_PAYMENT is not a Charging Preference; pass ad_hoc=True")
    return profile


def select_tariff(
    tariffs: Sequence[Tariff],
    at: datetime,
    *,
    ad_hoc: bool = False,
    profile: TariffType | None = None,
) -> Tariff:
    """The tariff pricing a session that starts ``at`` among a connector's ``tariffs`` (in
    the connector's order). Raises UnknownTariff when none applies."""
    wanted = session_tariff_type(ad_hoc=ad_hoc, profile=profile)
    active = [t for t in tariffs if t.is_active_at(at)]
    order = [wanted, None]
    if wanted not in (TariffType.REGULAR, TariffType.AD_HOC_PAYMENT):
        order.append(TariffType.REGULAR)
    for kind in order:
        for tariff in active:
            if tariff.type is kind:
                return tariff
    raise UnknownTariff(
        "no tariff of the connector applies to this session",
        tariff_type=wanted.value,
        tariff_ids=",".join(t.id for t in tariffs),
        at=at.isoformat(),
    )
