"""Card numbers (PANs) never enter evledger (PCI DSS SAQ A scope): finding them in text, and
masking them wherever a refused value is kept.

A card number here is a Luhn-valid run of 13 to 19 digits written as card numbers are: digits
alone, or groups of four separated by one space or dash (4-4-4-4, 4-4-4-4-3, ...), or the
American Express and Diners layouts (4-6-5, 4-6-4), standing on its own (not inside a word of
letters and digits). Other groupings (a UUID's 8-4-4-4-12, a hex id, a phone number) are not
card numbers, so ids built from them stay valid.
"""

from __future__ import annotations

import re

_CANDIDATES = re.compile(
    rb"(?<![0-9A-Za-z])(?:"
    rb"[0-9]{13,19}"
    rb"|[0-9]{4}([ -])[0-9]{4}\1[0-9]{4}\1[0-9]{1,4}(?:\1[0-9]{1,3})?"
    rb"|[0-9]{4}([ -])[0-9]{6}\2[0-9]{4,5}"
    rb")(?![0-9A-Za-z])"
)
"""A run standing on its own: bounded by anything but letters and digits, so the digits inside a
hex id or a UUID's 4-4-4 middle groups never count."""
_TEXT_CANDIDATES = re.compile(_CANDIDATES.pattern.decode())


def luhn_valid(digits: str) -> bool:
    """Whether the digit string passes the Luhn check (every card number does)."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _is_card(run: str) -> bool:
    digits = run.replace(" ", "").replace("-", "")
    return 13 <= len(digits) <= 19 and luhn_valid(digits)


def contains_card_number(text: str) -> bool:
    """Whether ``text`` holds a card number. (Runs on every string of every consumed event:
    one regex search answers for the strings with no candidate run, nearly all of them.)"""
    if _TEXT_CANDIDATES.search(text) is None:
        return False
    return any(_is_card(m.group()) for m in _TEXT_CANDIDATES.finditer(text))


def mask_card_numbers(text: str) -> str:
    """``text`` with every digit of each card number but the last four replaced by ``*``."""
    return _TEXT_CANDIDATES.sub(
        lambda m: _masked(m.group()) if _is_card(m.group()) else m.group(), text
    )


def mask_card_numbers_bytes(data: bytes) -> bytes:
    """The same on raw bytes (a record's Avro value): digits become ``*`` in place, so the
    length of every field, and with it the encoding, is unchanged."""

    def replace(m: re.Match[bytes]) -> bytes:
        run = m.group().decode("ascii")
        return _masked(run).encode("ascii") if _is_card(run) else m.group()

    return _CANDIDATES.sub(replace, data)


def _masked(run: str) -> str:
    keep = 4
    out = []
    for char in reversed(run):
        if char.isdigit() and keep > 0:
            keep -= 1
            out.append(char)
        else:
            out.append("*" if char.isdigit() else char)
    return "".join(reversed(out))
