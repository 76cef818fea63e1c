"""VAT per rate (EN 16931 BR-CO-17) from the priced session to the journal.

For any priced session, with or without a hold that caps the capture: the bill's lines add up to
the capture, each VAT rate's VAT is that rate's summed nets times the rate, rounded once, and the
VAT payable the capture posts equals the bill's VAT per rate.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.accounting import accounts, posting_rules
from ledger.dimensions import Dimension
from ledger.events import CaptureRequested, CdrIssued, RevenueLine
from ledger.money import Money
from ledger.pricing.price import price_session
from ledger.pricing.tariffs import Tariff, parse_tariff
from ledger.sessions.billing import bill
from ledger.sessions.metering import MeteredInterval, MeteredSession
from ledger.sessions.rules import SessionsConfig
from ledger.sessions.session import Session
from tests.unit.test_pricing_properties import sessions, tariffs

T0 = datetime(2026, 6, 1, 10, tzinfo=UTC)


def _vat(net: int, rate: str | None) -> int:
    if rate is None:
        return 0
    return int((net * Decimal(rate) / 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def per_rate(lines: list[RevenueLine]) -> dict[str | None, tuple[int, int]]:
    out: dict[str | None, tuple[int, int]] = {}
    for line in lines:
        net, vat = out.get(line.vat_rate, (0, 0))
        out[line.vat_rate] = (net + line.amount_excl_vat, vat + line.vat_amount)
    return out


def a_session(stopped_at: datetime) -> Session:
    return Session(
        "S-1", "net-1", "e-start", None, "ST-1", "EVSE-1", "1", "tx-1", "NL",
        "Europe/Amsterdam", "T", 1, "P-1", 0, T0, stopped_event_id="e-stop",
        stopped_at=stopped_at,
    )  # fmt: skip


def vat_posted(lines: list[RevenueLine], amount: Money) -> dict[str, int]:
    """VAT credited per VAT account's rate segment (one account per country and rate)."""
    ctx = posting_rules.EntryContext("e-capture", "P-1", "net-1", T0)
    shares = posting_rules.shares_of(lines, "ST-1", "NL")
    entries = posting_rules.captured(ctx, "stripe", amount, shares)
    posted: dict[str, int] = {}
    for p in (p for e in entries for p in e.postings):
        if p.account.code.startswith("liabilities:vat_payable:NL:"):
            rate = p.account.code.split(":")[3]
            posted[rate] = posted.get(rate, 0) - p.amount.amount_minor  # credits are negative
    return posted


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tariffs(), sessions(), st.one_of(st.none(), st.integers(1, 20_000)))
def test_bill_lines_add_up_to_the_capture_and_vat_posted_is_the_bill_vat_per_rate(
    tariff: Tariff, session: MeteredSession, held: int | None
) -> None:
    priced = price_session(tariff, session)
    for rate, (net, vat) in per_rate(priced.revenue_lines()).items():
        assert vat == _vat(net, rate)  # BR-CO-17 on the CDR
    hold = None if held is None else (Money(held, "EUR"), "authorization")
    applied = bill(a_session(session.stopped_at), 1, priced, hold, SessionsConfig(), "e-stop")
    captures = [e for e in applied.events if isinstance(e, CaptureRequested)]
    if not captures:
        return
    (capture,) = captures
    (cdr,) = [e for e in applied.events if isinstance(e, CdrIssued)]
    lines = list(capture.lines)
    assert sum(x.amount_excl_vat + x.vat_amount for x in lines) == capture.amount.amount_minor
    assert capture.amount <= cdr.total_incl_vat
    if held is not None:
        assert capture.amount.amount_minor <= held
    bill_vat = per_rate(lines)
    for rate, (net, vat) in bill_vat.items():
        assert vat == _vat(net, rate)  # BR-CO-17 on the capture
    expected: dict[str, int] = {}
    for rate, (_, vat) in bill_vat.items():
        segment = accounts.rate_segment(rate)
        expected[segment] = expected.get(segment, 0) + vat
    assert vat_posted(lines, capture.amount) == {r: v for r, v in expected.items() if v}


def test_two_lines_at_one_rate_round_vat_once_not_per_line() -> None:
    # ENERGY 10 kWh x 0.25 = 2.50 and TIME 1 h x 2.50 = 2.50, both 21%: per line 0.525 -> 0.53
    # twice (1.06); per rate 5.00 x 21% = 1.05, allocated 0.53 + 0.52 (tie to the earlier line).
    tariff = parse_tariff(
        {
            "id": "T",
            "currency": "EUR",
            "elements": [
                {
                    "price_components": [
                        {"type": "ENERGY", "price": Decimal("0.25"), "vat": Decimal(21)},
                        {"type": "TIME", "price": Decimal("2.50"), "vat": Decimal(21)},
                    ]
                }
            ],
        }
    )
    end = T0.replace(hour=11)
    priced = price_session(
        tariff,
        MeteredSession(
            "S-1", T0, end, "Europe/Amsterdam", (MeteredInterval(T0, end, 10_000, True),)
        ),
    )
    assert [(x.dimension, x.net.amount_minor, x.vat.amount_minor) for x in priced.lines] == [
        (Dimension.ENERGY, 250, 53),
        (Dimension.TIME, 250, 52),
    ]
    (subtotal,) = priced.vat_breakdown()
    assert (subtotal.rate, subtotal.taxable, subtotal.vat) == (
        Decimal(21),
        Money(500, "EUR"),
        Money(105, "EUR"),
    )
    assert priced.total_incl_vat == Money(605, "EUR")
