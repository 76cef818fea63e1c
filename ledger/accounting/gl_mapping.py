"""The customer's general-ledger numbers for evledger's accounts, for the journal export.

A mapping is a table of account patterns (``fnmatch`` wildcards over the whole code, e.g.
``revenue:energy:*``) and the general-ledger account each maps to; the most specific pattern
that matches wins (the most literal characters), an exact code before any pattern. Read from
TOML (``"pattern" = "GL number"``); docs/finance-close.md has an example.
"""

from __future__ import annotations

import fnmatch
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ledger.errors import ValidationError


class InvalidMapping(ValidationError):
    code = "GL_MAPPING_INVALID"


class UnmappedAccounts(ValidationError):
    """Accounts the mapping does not cover: an export must not invent general-ledger numbers."""

    code = "GL_ACCOUNT_UNMAPPED"


@dataclass(frozen=True)
class GlMapping:
    patterns: tuple[tuple[str, str], ...]
    """(pattern, GL account), most specific first."""

    @classmethod
    def of(cls, table: Mapping[str, object]) -> GlMapping:
        """From ``{pattern: gl_account}``. Raises InvalidMapping for an empty pattern or a GL
        account that is not a non-empty string."""
        rows: list[tuple[str, str]] = []
        for pattern, target in table.items():
            if not pattern or not isinstance(target, str) or not target.strip():
                raise InvalidMapping(
                    "every entry maps an account pattern to a general-ledger account, as text",
                    pattern=pattern,
                    gl_account=repr(target),
                )
            rows.append((pattern, target.strip()))
        rows.sort(key=lambda r: (_wild(r[0]), -len(r[0].replace("*", ""))))
        return cls(tuple(rows))

    @classmethod
    def parse(cls, text: str) -> GlMapping:
        """From TOML text. Raises InvalidMapping (with the TOML error) when it does not parse."""
        try:
            return cls.of(tomllib.loads(text))
        except tomllib.TOMLDecodeError as exc:
            raise InvalidMapping(f"the mapping is not valid TOML: {exc}") from None

    def gl_account(self, code: str) -> str | None:
        """The GL account of ``code``, None when no pattern matches. An exact code wins over
        any pattern (station ids contain ``*``: DE*EVL*E1)."""
        for pattern, target in self.patterns:
            if pattern == code:
                return target
        for pattern, target in self.patterns:
            if fnmatch.fnmatchcase(code, pattern):
                return target
        return None

    def resolve(self, codes: Iterable[str]) -> dict[str, str]:
        """The GL account of every code. Raises UnmappedAccounts naming each one not covered."""
        found = {code: self.gl_account(code) for code in set(codes)}
        missing = sorted(code for code, target in found.items() if target is None)
        if missing:
            shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
            raise UnmappedAccounts(
                f"{len(missing)} accounts have no general-ledger account in the mapping: {shown};"
                " add a pattern for each (or export with --unmapped keep)",
            )
        return {code: target for code, target in found.items() if target is not None}


def _wild(pattern: str) -> int:
    return sum(pattern.count(c) for c in "*?[")
