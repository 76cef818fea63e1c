"""Posting rules: which accounts an accepted money event debits and credits.

These functions assume the event was validated (``ledger.payments`` does that against the
payment's state) and only decide the postings. Each returns the entries in a fixed order, so the
same event always yields the same entries with the same ids. Worked examples per flow are in
docs/accounting.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from ledger.accounting import accounts
from ledger.accounting.journal import EntryKind, JournalEntry, Posting
from ledger.dimensions import Dimension
from ledger.envelope import Envelope
from ledger.events import (
    CdrCredited,
    CdrIssued,
    PayoutPaid,
    ProviderDisputeUpdated,
    RevenueLine,
)
from ledger.fastpaths import slot_setters
from ledger.money import Money

NOT_POSTED: tuple[type, ...] = (CdrIssued, CdrCredited, ProviderDisputeUpdated)
"""Events the ledger records as applied with no entries. Captures and refunds recognize and
reverse revenue, so a CDR posting too would count it twice; a credit CDR moves money only through
the refund it leads to. Provider dispute webhooks reach the ledger as DisputeOpened/Resolved."""


@dataclass(frozen=True, slots=True)
class EntryContext:
    """What every entry of one event shares."""

    event_id: str
    payment_id: str | None
    network_id: str
    occurred_at: datetime

    def __init__(
        self, event_id: str, payment_id: str | None, network_id: str, occurred_at: datetime
    ) -> None:
        # Hand-written (see ledger.fastpaths.slot_setters); one context is built per event.
        _set_event_id(self, event_id)
        _set_payment_id(self, payment_id)
        _set_network_id(self, network_id)
        _set_occurred_at(self, occurred_at)

    @classmethod
    def of(cls, envelope: Envelope, payment_id: str | None, network_id: str) -> EntryContext:
        return cls(envelope.event_id, payment_id, network_id, envelope.occurred_at)

    def on(self, occurred_at: datetime) -> EntryContext:
        """The same event's context, its entries dated ``occurred_at`` (e.g. the supply date)."""
        return EntryContext(self.event_id, self.payment_id, self.network_id, occurred_at)

    def entry(self, kind: EntryKind, postings: Iterable[Posting]) -> JournalEntry:
        return JournalEntry.for_event(
            event_id=self.event_id,
            kind=kind,
            payment_id=self.payment_id,
            network_id=self.network_id,
            occurred_at=self.occurred_at,
            postings=postings,
        )


@dataclass(frozen=True, slots=True)
class RevenueShare:
    """Net revenue and VAT of one tariff dimension at one station, in one VAT country, at one
    VAT rate (``rate``: percent as a decimal string, None when the tariff gave none)."""

    dimension: Dimension
    station: str | None
    country: str | None
    net: int
    vat: int
    rate: str | None

    def __init__(
        self,
        dimension: Dimension,
        station: str | None,
        country: str | None,
        net: int,
        vat: int,
        rate: str | None = None,
    ) -> None:
        # Hand-written (ledger.fastpaths.slot_setters); captures and refunds build several shares.
        _set_dimension(self, dimension)
        _set_station(self, station)
        _set_country(self, country)
        _set_net(self, net)
        _set_vat(self, vat)
        _set_rate(self, rate)

    @property
    def gross(self) -> int:
        return self.net + self.vat

    def with_amounts(self, net: int, vat: int) -> RevenueShare:
        """The same place with other amounts (``replace(self, net=, vat=)``, without its cost)."""
        return RevenueShare(self.dimension, self.station, self.country, net, vat, self.rate)

    def same_place(self, other: RevenueShare) -> bool:
        return (self.dimension, self.station, self.country, self.rate) == (
            other.dimension,
            other.station,
            other.country,
            other.rate,
        )


_set_event_id, _set_payment_id, _set_network_id, _set_occurred_at = slot_setters(EntryContext)
_set_dimension, _set_station, _set_country, _set_net, _set_vat, _set_rate = slot_setters(
    RevenueShare
)


def shares_of(
    lines: Sequence[RevenueLine], station: str | None, country: str | None
) -> list[RevenueShare]:
    return [
        RevenueShare(
            line.dimension, station, country, line.amount_excl_vat, line.vat_amount, line.vat_rate
        )
        for line in lines
    ]


# -- allocation ---------------------------------------------------------------------------------
def split_pro_rata(total: int, weights: Sequence[int]) -> list[int]:
    """Split ``total`` in proportion to non-negative ``weights``, exactly (largest remainder).

    Each part is floor(total * w / sum); the units left over go one each to the largest
    fractional remainders, ties to the earlier weight. Parts sum to ``total`` and, when
    ``0 <= total <= sum(weights)``, no part exceeds its weight.
    """
    weight_sum = sum(weights)
    if weight_sum <= 0:
        raise ValueError("pro rata split needs a positive total weight")
    quotients = [divmod(total * w, weight_sum) for w in weights]
    parts = [q for q, _ in quotients]
    leftover = total - sum(parts)
    by_remainder = sorted(range(len(weights)), key=lambda i: (-quotients[i][1], i))
    for i in by_remainder[:leftover]:
        parts[i] += 1
    return parts


def allocate_refund(remaining: Sequence[RevenueShare], amount: int) -> list[RevenueShare]:
    """Pro rata refund of ``amount`` over the still-refundable revenue.

    Two exact largest-remainder splits: the amount over the shares by remaining gross, then each
    share's part over its remaining net and VAT. Nothing exceeds what remains refundable.
    """
    live = [s for s in remaining if s.gross > 0]
    parts = split_pro_rata(amount, [s.gross for s in live])
    out: list[RevenueShare] = []
    for share, part in zip(live, parts, strict=True):
        net, vat = split_pro_rata(part, [share.net, share.vat])
        if part:
            out.append(share.with_amounts(net, vat))
    return out


def allocate_refund_lines(
    remaining: Sequence[RevenueShare], lines: Sequence[RevenueLine]
) -> list[RevenueShare] | None:
    """Place refund lines on the remaining revenue of their dimension (pro rata over stations).

    Returns None when a line's net or VAT exceeds what remains refundable in its dimension.
    """
    out: list[RevenueShare] = []
    for line in lines:
        pool = [s for s in remaining if s.dimension is line.dimension and s.gross > 0]
        if line.amount_excl_vat > sum(s.net for s in pool) or line.vat_amount > sum(
            s.vat for s in pool
        ):
            return None
        if line.amount_excl_vat == 0 and line.vat_amount == 0:
            continue
        nets = _split_capped(line.amount_excl_vat, [s.net for s in pool])
        vats = _split_capped(line.vat_amount, [s.vat for s in pool])
        taken = [
            share.with_amounts(net, vat)
            for share, net, vat in zip(pool, nets, vats, strict=True)
            if net or vat
        ]
        remaining = subtract_shares(remaining, taken)
        out = _combine([*out, *taken])
    return out


def _split_capped(total: int, weights: Sequence[int]) -> list[int]:
    return split_pro_rata(total, weights) if total else [0] * len(weights)


def subtract_shares(
    remaining: Sequence[RevenueShare], taken: Sequence[RevenueShare]
) -> list[RevenueShare]:
    """``remaining`` less ``taken``, matched by dimension, station, country and rate."""
    out: list[RevenueShare] = []
    for share in remaining:
        net, vat = share.net, share.vat
        for t in taken:
            if share.same_place(t):
                net, vat = net - t.net, vat - t.vat
        out.append(share.with_amounts(net, vat))
    return out


def add_shares(
    remaining: Sequence[RevenueShare], added: Sequence[RevenueShare]
) -> list[RevenueShare]:
    return _combine([*remaining, *added])


def _combine(shares: Sequence[RevenueShare]) -> list[RevenueShare]:
    out: list[RevenueShare] = []
    for share in shares:
        for i, seen in enumerate(out):
            if seen.same_place(share):
                out[i] = seen.with_amounts(seen.net + share.net, seen.vat + share.vat)
                break
        else:
            out.append(share)
    return out


def revenue_and_vat(
    shares: Sequence[RevenueShare], currency: str, sign: int, contra: bool = False
) -> list[Posting]:
    """Revenue (or, ``contra``, refunds) per share, then VAT per (country, rate, station);
    ``sign`` -1 credits them, 1 debits. Each posting carries its share's station."""
    postings: list[Posting] = []
    for s in shares:
        account = (
            accounts.refunds(s.dimension, s.country, s.rate)
            if contra
            else accounts.revenue(s.dimension, s.country, s.rate)
        )
        postings.append(Posting(account, Money(sign * s.net, currency), s.station))
    postings += vat_postings(shares, currency, sign)
    return postings


def vat_postings(shares: Sequence[RevenueShare], currency: str, sign: int) -> list[Posting]:
    """The VAT of ``shares``, one posting per VAT account (country and rate) and station, in
    first-seen order; zero VAT is left out (``journal.merge`` would drop it)."""
    vat: dict[tuple[accounts.Account, str | None], int] = {}
    for s in shares:
        key = (accounts.vat_payable(s.country, s.rate), s.station)
        vat[key] = vat.get(key, 0) + s.vat
    return [
        Posting(account, Money(sign * amount, currency), station)
        for (account, station), amount in vat.items()
        if amount
    ]


# -- pending (memo) ledger ----------------------------------------------------------------------
def hold_placed(ctx: EntryContext, provider: str, amount: Money) -> list[JournalEntry]:
    """Authorization: Dr memo holds, Cr memo commitments. Never touches revenue."""
    return _hold(ctx, EntryKind.HOLD_PLACED, provider, amount)


def hold_increased(ctx: EntryContext, provider: str, amount: Money) -> list[JournalEntry]:
    return _hold(ctx, EntryKind.HOLD_INCREASED, provider, amount)


def hold_released(ctx: EntryContext, provider: str, amount: Money) -> list[JournalEntry]:
    """Capture, void or expiry: the reverse of a hold."""
    return _hold(ctx, EntryKind.HOLD_RELEASED, provider, -amount)


def _hold(ctx: EntryContext, kind: EntryKind, provider: str, amount: Money) -> list[JournalEntry]:
    if amount.is_zero:
        return []
    return [
        ctx.entry(
            kind,
            [
                Posting.debit(accounts.authorization_holds(provider), amount),
                Posting.credit(accounts.hold_commitments(provider), amount),
            ],
        )
    ]


# -- posted ledger ------------------------------------------------------------------------------
def captured(
    ctx: EntryContext,
    provider: str,
    amount: Money,
    shares: Sequence[RevenueShare],
    supplied_at: datetime | None = None,
) -> list[JournalEntry]:
    """Dr provider clearing (gross); Cr revenue per dimension, country and rate; Cr VAT per
    country and rate (each with the station as the posting's dimension).

    Revenue and VAT are recognized on the date of supply. When the charge was supplied before
    the provider captured it (``supplied_at`` earlier than the capture), that takes two
    entries: on the supply date Dr settlement receivable, Cr revenue and VAT (CAPTURE); on the
    capture date Dr provider clearing, Cr settlement receivable (CAPTURE_SETTLED)."""
    if amount.is_zero:
        return []
    currency = amount.currency
    on_supply = supplied_at is not None and supplied_at < ctx.occurred_at
    debited = (
        accounts.settlement_receivable(provider)
        if on_supply
        else accounts.provider_clearing(provider)
    )
    postings = [Posting.debit(debited, amount)]
    postings += revenue_and_vat(shares, currency, sign=-1)
    if not on_supply or supplied_at is None:
        return [ctx.entry(EntryKind.CAPTURE, postings)]
    settled = [
        Posting.debit(accounts.provider_clearing(provider), amount),
        Posting.credit(debited, amount),
    ]
    return [
        ctx.on(supplied_at).entry(EntryKind.CAPTURE, postings),
        ctx.entry(EntryKind.CAPTURE_SETTLED, settled),
    ]


def receivable_booked(
    ctx: EntryContext, amount: Money, shares: Sequence[RevenueShare]
) -> list[JournalEntry]:
    """A billed supply whose capture failed (dated its supply): Dr customer receivables
    (gross); Cr revenue and VAT per dimension, country and rate (the station on the posting)."""
    currency = amount.currency
    postings = [Posting.debit(accounts.customer_receivables(), amount)]
    postings += revenue_and_vat(shares, currency, sign=-1)
    return [ctx.entry(EntryKind.RECEIVABLE, postings)]


def receivable_collected(
    ctx: EntryContext, debited: accounts.Account, amount: Money
) -> list[JournalEntry]:
    """Money for a receivable: Dr ``debited`` (provider clearing when a later capture succeeded,
    the bank when it came another way), Cr customer receivables."""
    return [
        ctx.entry(
            EntryKind.RECEIVABLE_COLLECTED,
            [
                Posting.debit(debited, amount),
                Posting.credit(accounts.customer_receivables(), amount),
            ],
        )
    ]


def bad_debt(
    ctx: EntryContext, amount: Money, shares: Sequence[RevenueShare], vat_relief: bool
) -> list[JournalEntry]:
    """A receivable written off: Cr customer receivables; Dr bad debts, the gross amount, or
    with VAT relief the net and Dr VAT payable per country of supply and rate for the VAT in
    it."""
    currency = amount.currency
    if not vat_relief:
        debits = [Posting.debit(accounts.bad_debts(), amount)]
    else:
        net = sum(s.net for s in shares)
        debits = [Posting.debit(accounts.bad_debts(), Money(net, currency))] if net else []
        debits += vat_postings(shares, currency, sign=1)
    postings = [*debits, Posting.credit(accounts.customer_receivables(), amount)]
    return [ctx.entry(EntryKind.BAD_DEBT, postings)]


def provider_fee(ctx: EntryContext, provider: str, fee: Money) -> list[JournalEntry]:
    """A fee the provider keeps from a capture: Dr provider fees, Cr provider clearing."""
    if fee.is_zero:
        return []
    return [
        ctx.entry(
            EntryKind.PROVIDER_FEE,
            [
                Posting.debit(accounts.provider_fees(provider), fee),
                Posting.credit(accounts.provider_clearing(provider), fee),
            ],
        )
    ]


def refunded(
    ctx: EntryContext,
    provider: str,
    amount: Money,
    shares: Sequence[RevenueShare],
    kind: EntryKind = EntryKind.REFUND,
) -> list[JournalEntry]:
    """Dr contra-revenue refunds and VAT payable per dimension, country and rate (the station on
    the posting); Cr provider clearing.

    With ``kind=REFUND_REVERSAL`` and a negated amount and shares, it undoes a refund.
    """
    currency = amount.currency
    postings = [
        Posting.credit(accounts.provider_clearing(provider), amount),
        *revenue_and_vat(shares, currency, sign=1, contra=True),
    ]
    return [ctx.entry(kind, postings)] if not amount.is_zero else []


def negated(shares: Sequence[RevenueShare]) -> list[RevenueShare]:
    return [s.with_amounts(-s.net, -s.vat) for s in shares]


def dispute_opened(ctx: EntryContext, provider: str, amount: Money) -> list[JournalEntry]:
    """The provider withdrew the disputed amount: Dr disputes receivable, Cr clearing."""
    return _move(
        ctx,
        EntryKind.DISPUTE_OPENED,
        accounts.disputes_receivable(provider),
        accounts.provider_clearing(provider),
        amount,
    )


def dispute_won(ctx: EntryContext, provider: str, amount: Money) -> list[JournalEntry]:
    return _move(
        ctx,
        EntryKind.DISPUTE_WON,
        accounts.provider_clearing(provider),
        accounts.disputes_receivable(provider),
        amount,
    )


def dispute_lost(ctx: EntryContext, provider: str, amount: Money) -> list[JournalEntry]:
    return _move(
        ctx,
        EntryKind.DISPUTE_LOST,
        accounts.dispute_losses(provider),
        accounts.disputes_receivable(provider),
        amount,
    )


def payout(event: PayoutPaid) -> list[JournalEntry]:
    """Dr bank (net paid), Dr provider fees (deducted), Cr provider clearing (gross).

    ``fees`` must be fees the provider deducts at payout and has not reported on a capture;
    a fee reported on ``PaymentCaptured.fee`` is already expensed by ``provider_fee``. A
    negative payout (the provider debited the bank, e.g. after refunds exceeded captures) is
    booked with its sign: Cr bank, Dr provider clearing. Zero lines are left out.
    """
    ctx = EntryContext.of(event.envelope, None, event.envelope.network_id)
    gross = event.amount + event.fees
    postings = [
        Posting.debit(accounts.bank(), event.amount),
        Posting.debit(accounts.provider_fees(event.provider), event.fees),
        Posting.credit(accounts.provider_clearing(event.provider), gross),
    ]
    postings = [p for p in postings if not p.amount.is_zero]
    return [ctx.entry(EntryKind.PAYOUT, postings)] if postings else []


def write_off(
    ctx: EntryContext, account: accounts.Account, amount: Money, reason: str
) -> list[JournalEntry]:
    """Write a debit balance of ``amount`` on ``account`` off: Dr write-offs:<reason>, Cr account.

    Used for shortfalls and residuals a person decided to give up (reconciliation); a negative
    amount writes off a credit residual.
    """
    return _move(ctx, EntryKind.WRITE_OFF, accounts.write_offs(reason), account, amount)


def _move(
    ctx: EntryContext,
    kind: EntryKind,
    debit: accounts.Account,
    credit: accounts.Account,
    amount: Money,
) -> list[JournalEntry]:
    if amount.is_zero:
        return []
    return [ctx.entry(kind, [Posting.debit(debit, amount), Posting.credit(credit, amount)])]
