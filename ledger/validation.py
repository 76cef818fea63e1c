"""Input rules every event obeys at every edge: bounded, printable strings; signed amounts by rule;
plausible times (docs/input-rules.md is the reader's version of this module).

``check(event, latest)`` raises an ``InvalidInput`` subclass naming the field, the offending value
(masked when sensitive) and the event's ids. The SDK calls it before publishing (``latest`` = now +
the allowed clock skew) and every processor again on consuming (``latest`` = the record's log
time + the skew, so a replay decides as the first run did).

The checks run on every consumed event, so each event class gets one generated function (built
on first use) that reads each field once; no per-event reflection.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NoReturn

from ledger import events as ev
from ledger import personal
from ledger.accounting.accounts import UNASSIGNED, rate_segment
from ledger.card_numbers import contains_card_number, mask_card_numbers
from ledger.errors import ValidationError
from ledger.money import Money

ID_MAX = 255
"""Identifiers (payment, session, station, provider references...): 1..255 printable characters,
no whitespace. They become keys, account segments and index entries."""
TEXT_MAX = 2000
"""Free text (reasons, details, provider status): 0..2000 characters, no control (except tab and
line breaks) or bidirectional-formatting characters."""
DOCUMENT_MAX = 1_000_000
"""Documents carried whole (``TariffPublished.ocpi_tariff_json``): up to 1,000,000 characters."""
AMOUNT_MAX = 10**12
"""Largest amount in minor units on one event (EUR 10 billion): far beyond any charging payment,
far below where sums over a ledger could overflow a 64-bit balance."""
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
"""No event of a charging network happened before this; earlier means a reset device clock."""
DEFAULT_FUTURE_SKEW_SECONDS = 300

BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
"""Unicode bidirectional formatting characters: they make text display in another order than it
is stored (CVE-2021-42574, "Trojan Source"), so an id could look like another."""

SENSITIVE = frozenset({"payment_token"})
"""Fields whose value never appears in a reason, only its length and first characters."""


class InvalidInput(ValidationError):
    """A field breaks an input rule. ``field`` is the dotted path (``lines[2].vat_amount``)."""


class FieldTooLong(InvalidInput):
    code = "FIELD_TOO_LONG"


class EmptyField(InvalidInput):
    code = "EMPTY_FIELD"


class InvalidCharacters(InvalidInput):
    code = "INVALID_CHARACTERS"


class InvalidCountry(InvalidInput):
    code = "INVALID_COUNTRY"


class InvalidVatRate(InvalidInput):
    code = "INVALID_VAT_RATE"


class AmountSignNotAllowed(InvalidInput):
    code = "INVALID_AMOUNT"


class AmountOutOfRange(InvalidInput):
    code = "AMOUNT_OUT_OF_RANGE"


class NegativeQuantity(InvalidInput):
    code = "NEGATIVE_QUANTITY"


class FutureTimestamp(InvalidInput):
    code = "FUTURE_TIMESTAMP"


class TimestampTooOld(InvalidInput):
    code = "TIMESTAMP_TOO_OLD"


class NaiveTimestamp(InvalidInput):
    code = "NAIVE_TIMESTAMP"


class InvalidCoordinate(InvalidInput):
    code = "INVALID_COORDINATE"


class InvalidPower(InvalidInput):
    code = "INVALID_POWER"


class InvalidChoice(InvalidInput):
    code = "INVALID_CHOICE"


class PersonalDataNotSealed(InvalidInput):
    """A personal field in plain text: it must be sealed before it is published
    (ledger.personal)."""

    code = "PERSONAL_DATA_NOT_SEALED"


class CardNumberInField(InvalidInput):
    """A card number (PAN) in a field: card data never enters evledger (docs/input-rules.md)."""

    code = "CARD_NUMBER"


# -- the rules per field ----------------------------------------------------------------------
POSITIVE, NON_NEGATIVE, ANY_SIGN = "> 0", ">= 0", "any sign"

AMOUNT_RULES: dict[tuple[type, str], str] = {
    (ev.PaymentAuthorized, "amount"): POSITIVE,
    (ev.AuthorizationIncremented, "amount"): POSITIVE,
    (ev.AuthorizationFailed, "amount"): NON_NEGATIVE,
    (ev.PaymentCaptured, "amount"): NON_NEGATIVE,
    (ev.PaymentCaptured, "fee"): NON_NEGATIVE,
    (ev.CaptureFailed, "amount"): NON_NEGATIVE,
    (ev.PaymentRefunded, "amount"): POSITIVE,
    (ev.RefundFailed, "amount"): POSITIVE,
    (ev.DisputeOpened, "amount"): POSITIVE,
    (ev.DisputeResolved, "amount"): POSITIVE,
    (ev.CdrIssued, "total_excl_vat"): NON_NEGATIVE,
    (ev.CdrIssued, "total_incl_vat"): NON_NEGATIVE,
    (ev.CdrCredited, "total_incl_vat"): NON_NEGATIVE,
    (ev.AuthorizeRequested, "amount"): POSITIVE,
    (ev.CaptureRequested, "amount"): POSITIVE,
    (ev.CaptureRequested, "shortfall"): NON_NEGATIVE,
    (ev.RefundRequested, "amount"): POSITIVE,
    (ev.PayoutPaid, "amount"): ANY_SIGN,  # a negative payout debits the bank account
    (ev.PayoutPaid, "fees"): NON_NEGATIVE,
    (ev.ProviderDisputeUpdated, "amount"): NON_NEGATIVE,
    (ev.ExternalRefundReported, "amount"): POSITIVE,
    (ev.ReceivableCollected, "amount"): POSITIVE,
    (ev.ReceivableWrittenOff, "amount"): POSITIVE,
}
"""The sign an amount may have, per event and field: docs/input-rules.md, "Amounts"."""

TEXT_FIELDS = frozenset({"reason", "detail", "status", "signals", "name", "actor"})
DOCUMENT_FIELDS = frozenset({"ocpi_tariff_json", "ocpi_location_json", "evidence"})
SIGNED_FIELDS = frozenset({"value", "signed_meter_data", "public_key", "signed_data"})
"""Signed meter data (OCMF records, keys, OCPI signed_data): text of at most SIGNED_MAX; a
sampled value's ``value`` is one when its format is SignedData."""
SIGNED_MAX = 16_000
COUNTRY_FIELDS = frozenset({"country"})
VAT_RATE_FIELDS = frozenset({"vat_rate"})
"""A VAT rate in percent: a decimal from 0 to 100 (it names the revenue and VAT accounts)."""
UNCHECKED_TIMES = frozenset({"expires_at"})
"""Times that are in the future by nature (a hold's expiry)."""
COUNTS = frozenset(
    {"seq_no", "total_energy_wh", "total_time_s", "total_parking_time_s", "meter_start_wh",
     "meter_stop_wh", "amount_excl_vat", "vat_amount", "attempt", "version", "tariff_version",
     "max_electric_power_w"}
)  # fmt: skip
"""Integer fields that count something and cannot be negative."""
COORDINATE_FIELDS = {"latitude": 90, "longitude": 180}
"""WGS 84 degrees as OCPI GeoLocation sends them: decimal text (``52.520008``), within +-limit."""
COORDINATE = re.compile(r"-?[0-9]{1,3}(\.[0-9]{1,10})?")
POWER_FIELDS = frozenset({"max_electric_power_w"})
POWER_MAX_W = 4_000_000
"""The most an EVSE may deliver, in W: above today's megawatt chargers (MCS: 3.75 MW)."""
CHOICES = {"power_type": frozenset({"AC_1_PHASE", "AC_3_PHASE", "DC"})}
"""Fields that hold one of a few values (OCPI enumerations)."""
NOT_CHECKED: frozenset[type] = frozenset({ev.EventRejected})
"""Written by evledger itself around someone else's bytes; its fields are kept as they came."""


# -- the entry point --------------------------------------------------------------------------
Checker = Callable[[Any, datetime], None]
_CHECKERS: dict[type, Checker] = {}


def check(event: Any, latest: datetime) -> None:
    """Raise an InvalidInput subclass if ``event`` breaks an input rule; ``latest`` is the
    latest plausible time (log or wall-clock time plus the allowed skew)."""
    checker = _CHECKERS.get(type(event))
    if checker is None:
        checker = _CHECKERS[type(event)] = _build(type(event))
    checker(event, latest)


def require_zones(**times: datetime | None) -> None:
    """Raise ValidationError naming the first of ``times`` (a query's points in time) given
    without a time zone: a naive time would be read in whatever zone the server runs in."""
    for name, at in times.items():
        if at is not None and at.tzinfo is None:
            raise ValidationError(f"{name} needs a time zone (e.g. 2026-11-20T00:00:00Z)")


def is_identifier(value: str) -> bool:
    """Whether ``value`` passes the identifier rule (for callers that take ids from outside)."""
    return 0 < len(value) <= ID_MAX and value.isprintable() and " " not in value


# -- failures: each names the field, the value and the ids ------------------------------------
def _ids(event: Any) -> dict[str, Any]:
    ids: dict[str, Any] = {"event": type(event).__name__}
    envelope = getattr(event, "envelope", None)
    if envelope is not None:
        ids["event_id"] = _shown("event_id", envelope.event_id)
    for name in ("payment_id", "session_id", "payout_id", "tariff_id", "provider_reference"):
        value = getattr(event, name, None)
        if isinstance(value, str):
            ids[name] = _shown(name, value)
    return ids


def _shown(field: str, value: Any) -> str:
    """``value`` as a reason may show it: escaped, at most 40 characters, masked if sensitive."""
    if not isinstance(value, str):
        return repr(value)
    name = field.rsplit(".", 1)[-1]
    if name in SENSITIVE:
        return f"<{len(value)} characters, starting {value[:4]!a}>"
    if len(value) > 40:
        return f"{value[:40]!a}... ({len(value)} characters)"
    return ascii(value)


def _fail(error: type[InvalidInput], event: Any, field: str, value: Any, rule: str) -> NoReturn:
    name = type(event).__name__
    ids = {k: v for k, v in _ids(event).items() if k != field}
    raise error(f"{name}.{field} = {_shown(field, value)}: {rule}", field=field, **ids) from None


def _bad_string(event: Any, field: str, value: Any, limit: int, kind: str) -> NoReturn:
    if not isinstance(value, str):
        _fail(InvalidCharacters, event, field, value, f"must be a string ({kind})")
    if len(value) > limit:
        _fail(FieldTooLong, event, field, value, f"at most {limit} characters ({kind})")
    if kind == "identifier" and not value:
        _fail(EmptyField, event, field, value, "an identifier cannot be empty")
    for position, char in enumerate(value):
        if _forbidden(char, kind):
            what = f"U+{ord(char):04X} at position {position}"
            _fail(InvalidCharacters, event, field, value, f"{what} is not allowed in {kind}")
    raise AssertionError("unreachable: the string passed every rule")  # pragma: no cover


def _forbidden(char: str, kind: str) -> bool:
    if char in BIDI_CONTROLS:
        return True
    if kind == "identifier":
        return char == " " or not char.isprintable()
    return not char.isprintable() and char not in "\t\n\r" and char != " "


def _text_ok(value: str) -> bool:
    return not any(_forbidden(c, "text") for c in value)


def _bad_amount(event: Any, field: str, money: Any, rule: str) -> NoReturn:
    if not isinstance(money, Money):
        _fail(AmountSignNotAllowed, event, field, money, "must be Money (integer minor units)")
    if abs(money.amount_minor) > AMOUNT_MAX:
        _fail(AmountOutOfRange, event, field, money.amount_minor, f"|amount| <= {AMOUNT_MAX}")
    _fail(AmountSignNotAllowed, event, field, money.amount_minor, f"must be {rule} here")


def _bad_time(event: Any, field: str, value: Any, latest: datetime) -> NoReturn:
    if not isinstance(value, datetime) or value.tzinfo is None:
        _fail(NaiveTimestamp, event, field, value, "must be a UTC timestamp with a time zone")
    if value > latest:
        _fail(FutureTimestamp, event, field, value.isoformat(),
              f"later than {latest.isoformat()} (log time + allowed clock skew)")  # fmt: skip
    _fail(TimestampTooOld, event, field, value.isoformat(), f"before {EARLIEST.date()}")


def _bad_card(event: Any, field: str, value: str) -> NoReturn:
    rule = "holds a card number; card data never enters evledger (send a token instead)"
    _fail(CardNumberInField, event, field, mask_card_numbers(value), rule)


def _bad_country(event: Any, field: str, value: Any) -> NoReturn:
    _fail(InvalidCountry, event, field, value, "an ISO 3166-1 alpha-2 code (two capitals)")


def _bad_rate(event: Any, field: str, value: Any) -> NoReturn:
    _fail(InvalidVatRate, event, field, value, "a percentage from 0 to 100 as a decimal (19, 5.5)")


def _bad_count(event: Any, field: str, value: Any) -> NoReturn:
    _fail(NegativeQuantity, event, field, value, "cannot be negative")


def _bad_degrees(value: Any, limit: int) -> bool:
    """Whether ``value`` is not decimal text of degrees within +-``limit``."""
    if not isinstance(value, str) or COORDINATE.fullmatch(value) is None:
        return True
    return abs(float(value)) > limit


def _bad_coordinate(event: Any, field: str, value: Any, limit: int) -> NoReturn:
    rule = f"WGS 84 degrees as decimal text, from -{limit} to {limit} (52.520008)"
    _fail(InvalidCoordinate, event, field, value, rule)


def _bad_power(event: Any, field: str, value: Any) -> NoReturn:
    _fail(InvalidPower, event, field, value, f"watts, more than 0 and at most {POWER_MAX_W:,}")


def _bad_personal(event: Any, field: str, value: Any) -> NoReturn:
    shown = f"<{len(value)} characters, not shown>" if isinstance(value, str) else value
    rule = (
        "personal data travels sealed (pd1:..., encrypted under the data subject's key): "
        "publish through the SDK's personal-data vault or HTTP ingest, which seal it"
    )
    _fail(PersonalDataNotSealed, event, field, shown, rule)


def _bad_choice(event: Any, field: str, value: Any) -> NoReturn:
    choices = CHOICES[field.rsplit(".", 1)[-1].split("[")[0]]
    _fail(InvalidChoice, event, field, value, f"one of {', '.join(sorted(choices))}")


# -- one generated function per event class ---------------------------------------------------
def _build(cls: type) -> Checker:
    """Compile the checks for ``cls`` into one function (see the module docstring)."""
    if cls in NOT_CHECKED or not dataclasses.is_dataclass(cls):
        return lambda event, latest: None
    lines: list[str] = []
    _emit_fields(cls, "event", "", lines, depth=0, owner=cls)
    body = "\n".join("    " + line for line in lines) or "    pass"
    source = f"def check(event, latest):\n{body}\n"
    scope: dict[str, Any] = {
        "ID_MAX": ID_MAX, "TEXT_MAX": TEXT_MAX, "DOCUMENT_MAX": DOCUMENT_MAX,
        "SIGNED_MAX": SIGNED_MAX,
        "AMOUNT_MAX": AMOUNT_MAX, "EARLIEST": EARLIEST, "Money": Money, "str": str,
        "datetime": datetime, "_bad_string": _bad_string, "_bad_amount": _bad_amount,
        "_bad_time": _bad_time, "_bad_country": _bad_country, "_bad_rate": _bad_rate,
        "_rate_segment": rate_segment, "UNASSIGNED": UNASSIGNED, "_bad_count": _bad_count,
        "_text_ok": _text_ok, "enumerate": enumerate, "_bad_card": _bad_card,
        "_has_card": contains_card_number, "_bad_degrees": _bad_degrees,
        "_bad_coordinate": _bad_coordinate, "POWER_MAX_W": POWER_MAX_W, "_bad_power": _bad_power,
        "CHOICES": CHOICES, "_bad_choice": _bad_choice, "_is_sealed": personal.is_sealed,
        "_bad_personal": _bad_personal,
    }  # fmt: skip
    exec(compile(source, f"<input rules for {cls.__name__}>", "exec"), scope)  # nosec B102  # code generated from our own dataclasses, no outside input
    checker: Checker = scope["check"]
    return checker


def _emit_fields(
    cls: type, expr: str, path: str, lines: list[str], depth: int, owner: type
) -> None:
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        optional = typing.get_origin(tp) in (typing.Union, types.UnionType)
        base = next(a for a in typing.get_args(tp) if a is not type(None)) if optional else tp
        read, field = f"{expr}.{f.name}", f"{path}{f.name}"
        _emit_field(f.name, base, optional, read, field, lines, depth, owner)


def _emit_field(
    name: str,
    tp: Any,
    optional: bool,
    read: str,
    field: str,
    lines: list[str],
    depth: int,
    owner: type,
) -> None:
    """Append the checks of one field, read by the expression ``read``, to ``lines``."""
    var = f"v{depth}"
    where = f'f"{field}"' if "{" in field else f'"{field}"'
    checks: list[str] = []
    if tp is str:
        checks = _string_checks(name, var, where)
    elif tp is Money:
        rule = AMOUNT_RULES.get((owner, name), NON_NEGATIVE)
        low = {POSITIVE: "0 <", NON_NEGATIVE: "0 <=", ANY_SIGN: "-AMOUNT_MAX <="}[rule]
        cond = f"not {low} {var}.amount_minor <= AMOUNT_MAX"
        checks = [f'if {cond}: _bad_amount(event, {where}, {var}, "{rule}")']
    elif tp is datetime and name not in UNCHECKED_TIMES:
        cond = f"{var}.tzinfo is None or {var} > latest or {var} < EARLIEST"
        checks = [f"if {cond}: _bad_time(event, {where}, {var}, latest)"]
    elif tp is int and name in POWER_FIELDS:
        checks = [f"if not 0 < {var} <= POWER_MAX_W: _bad_power(event, {where}, {var})"]
    elif tp is int and name in COUNTS:
        checks = [f"if {var} < 0: _bad_count(event, {where}, {var})"]
    elif typing.get_origin(tp) is list:
        (item,) = typing.get_args(tp)
        index, each = f"i{depth}", f"x{depth}"
        inner: list[str] = []
        if dataclasses.is_dataclass(item):
            _emit_fields(item, each, f"{field}[{{{index}}}].", inner, depth + 1, owner)  # type: ignore[arg-type]
        else:
            _emit_field(name, item, False, each, f"{field}[{{{index}}}]", inner, depth + 1, owner)
        if inner:
            checks = [f"for {index}, {each} in enumerate({var}):", *("    " + i for i in inner)]
    elif dataclasses.is_dataclass(tp):
        _emit_fields(tp, var, f"{field}.", checks, depth + 1, owner)  # type: ignore[arg-type]
    if not checks:
        return
    lines.append(f"{var} = {read}")
    if optional:
        lines.append(f"if {var} is not None:")
        checks = ["    " + c for c in checks]
    lines.extend(checks)


def _string_checks(name: str, var: str, where: str) -> list[str]:
    if name == "event_id":
        return []  # the processor checks it is a UUID before anything else
    if name in VAT_RATE_FIELDS:
        return [f"if _rate_segment({var}) == UNASSIGNED: _bad_rate(event, {where}, {var})"]
    if name in COORDINATE_FIELDS:
        degrees = COORDINATE_FIELDS[name]
        return [
            f"if _bad_degrees({var}, {degrees}): _bad_coordinate(event, {where}, {var}, {degrees})"
        ]
    if name in CHOICES:
        return [f"if {var} not in CHOICES[{name!r}]: _bad_choice(event, {where}, {var})"]
    if name in personal.PERSONAL_FIELDS:
        cond = f"not (str is type({var}) and _is_sealed({var}))"
        return [f"if {cond}: _bad_personal(event, {where}, {var})"]
    if name in COUNTRY_FIELDS:
        cond = f"len({var}) != 2 or not ({var}.isascii() and {var}.isalpha() and {var}.isupper())"
        return [f"if {cond}: _bad_country(event, {where}, {var})"]
    if name in DOCUMENT_FIELDS or name in TEXT_FIELDS or name in SIGNED_FIELDS:
        limit = (
            "DOCUMENT_MAX"
            if name in DOCUMENT_FIELDS
            else "SIGNED_MAX"
            if name in SIGNED_FIELDS
            else "TEXT_MAX"
        )
        cond = f"len({var}) > {limit} or not ({var}.isprintable() or _text_ok({var}))"
        return [
            f"if {cond}:",
            f'    _bad_string(event, {where}, {var}, {limit}, "text")',
            *_card_check(var, where),
        ]
    # isprintable() is False for control and format (Cf) characters, bidi controls included.
    cond = f"not 0 < len({var}) <= ID_MAX or not {var}.isprintable() or ' ' in {var}"
    return [
        f"if {cond}:",
        f'    _bad_string(event, {where}, {var}, ID_MAX, "identifier")',
        *_card_check(var, where),
    ]


def _card_check(var: str, where: str) -> list[str]:
    """No card number in any string field (ledger.card_numbers), its value masked in the
    reason."""
    return [f"if _has_card({var}): _bad_card(event, {where}, {var})"]
