"""The general-ledger mapping of the journal export: the most specific pattern wins, nothing is
exported under an invented number, and the shipped example covers every account family."""

from __future__ import annotations

import pytest

from connectors.journal_export import example_mapping
from ledger.accounting import accounts
from ledger.accounting.gl_mapping import GlMapping
from ledger.errors import LedgerError


def test_the_most_specific_pattern_wins() -> None:
    mapping = GlMapping.of({
        "revenue:*": "8400",
        "revenue:energy:*": "8401",
        "revenue:energy:acme:DE*EVL*E1": "8402",
        "assets:bank": "1200",
    })  # fmt: skip
    assert mapping.gl_account("revenue:energy:acme:DE*EVL*E1") == "8402"
    assert mapping.gl_account("revenue:energy:acme:other") == "8401"
    assert mapping.gl_account("revenue:parking_time:acme:x") == "8400"
    assert mapping.gl_account("assets:bank") == "1200"
    assert mapping.gl_account("assets:provider_clearing:stripe") is None


def test_unmapped_accounts_and_bad_mappings_are_refused_by_name() -> None:
    mapping = GlMapping.of({"revenue:*": "8400"})
    with pytest.raises(LedgerError) as caught:
        mapping.resolve(["revenue:energy:a:b", "assets:bank", "expenses:bad_debts"])
    assert caught.value.code == "GL_ACCOUNT_UNMAPPED"
    assert "assets:bank" in str(caught.value) and "expenses:bad_debts" in str(caught.value)
    for bad in ('"revenue:*" = 8400', '"revenue:*" = ""', "revenue = [", '"" = "1"'):
        with pytest.raises(LedgerError) as invalid:
            GlMapping.parse(bad)
        assert invalid.value.code == "GL_MAPPING_INVALID"


def test_the_example_mapping_covers_every_account_family() -> None:
    mapping = GlMapping.parse(example_mapping())
    for (root, category), family in accounts.FAMILIES.items():
        code = ":".join([root, category, *("X" for _ in family.segments)])
        assert mapping.gl_account(code) is not None, code
