"""An audit pack of a projected book: it verifies offline with the public key alone; one changed
byte in any file, a pack signed with another key, or a chain line altered are each named; the
journal re-read with pyarrow alone sums per account to the book's postings for the range."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import psycopg
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from connectors import audit_pack
from connectors import signing as cp
from entrypoints.cli import app as cli
from tests.integration.test_audit_chain import book  # noqa: F401  (the projected book fixture)

SINCE, UNTIL = date(2026, 11, 1), date(2026, 11, 30)


@pytest.fixture
def pack(book: str, tmp_path: Path) -> tuple[Path, cp.Ed25519PublicKey]:  # noqa: F811
    key = cp.generate_key()
    with psycopg.connect(book, autocommit=True) as conn:
        written = audit_pack.export(conn, tmp_path / "pack", SINCE, UNTIL, key)
    assert written.entries >= 24 and written.postings > written.entries
    return written.directory, key.public_key()


def test_a_pack_verifies_offline_and_sums_to_the_book(
    book: str,  # noqa: F811
    pack: tuple[Path, cp.Ed25519PublicKey],
) -> None:
    directory, key = pack
    assert audit_pack.verify(directory, key) == []
    names = {p.name for p in directory.iterdir()}
    for table in ("journal", "journal_chain", "balances", "cdrs", "settlements", "rejections"):
        assert {f"{table}.csv", f"{table}.parquet"} <= names
    journal = pq.read_table(directory / "journal.parquet").to_pylist()
    sums: dict[tuple[str, str], int] = {}
    for row in journal:
        key_ = (row["account"], row["currency"])
        sums[key_] = sums.get(key_, 0) + row["amount_minor"]
    with psycopg.connect(book) as conn:
        expected = dict(
            ((a, c), int(s)) for a, c, s in conn.execute(
                "SELECT account, currency::text, sum(amount_minor) FROM postings"
                " WHERE occurred_at >= '2026-11-01' AND occurred_at < '2026-12-01' GROUP BY 1, 2"
            )
        )  # fmt: skip
    assert sums == expected
    per_currency: dict[str, int] = {}
    for (_, currency), amount in sums.items():
        per_currency[currency] = per_currency.get(currency, 0) + amount
    assert all(v == 0 for v in per_currency.values())  # the journal balances


@pytest.mark.parametrize("name", ["journal.csv", "journal.parquet", "balances.csv", "cdrs.csv"])
def test_one_changed_byte_in_any_file_is_named(
    pack: tuple[Path, cp.Ed25519PublicKey], name: str
) -> None:
    directory, key = pack
    path = directory / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    problems = audit_pack.verify(directory, key)
    assert len(problems) == 1 and problems[0].startswith(f"{name}: its SHA-256")


def test_another_key_and_an_altered_chain_are_caught(
    pack: tuple[Path, cp.Ed25519PublicKey], tmp_path: Path
) -> None:
    directory, _ = pack
    problems = audit_pack.verify(directory, cp.generate_key().public_key())
    assert any("signature does not hold" in p for p in problems)
    # A chain line altered (as by someone who would also re-sign a manifest with their own
    # key): the link recomputed from the line no longer gives the hash.
    chain = directory / "journal_chain.csv"
    text = chain.read_text()
    chain.write_text(text.replace("CAPTURE", "CAPTURX", 1))
    problems = audit_pack._chain_problems(chain)
    assert problems and "its hash is not SHA-256" in problems[0]


def test_the_cli_exports_and_verifies(book: str, tmp_path: Path) -> None:  # noqa: F811
    key_file = tmp_path / "k.pem"
    env = {"EVLEDGER_DATABASE_URL": book, "EVLEDGER_AUDIT_SIGNING_KEY_FILE": str(key_file),
           "COLUMNS": "300"}  # fmt: skip
    runner = CliRunner()
    public = runner.invoke(cli, ["audit", "keygen", "--out", str(key_file)], env=env).output
    (tmp_path / "k.pub").write_text(public[: public.index("-----END PUBLIC KEY-----") + 25])
    out = tmp_path / "pack"
    made = runner.invoke(cli, ["audit", "export", "--from", "2026-11-01", "--to", "2026-11-30",
                               "--out", str(out)], env=env)  # fmt: skip
    assert made.exit_code == 0, made.output
    ok = runner.invoke(cli, ["audit", "verify-pack", str(out), "--public-key",
                             str(tmp_path / "k.pub")], env=env)  # fmt: skip
    assert ok.exit_code == 0 and "verifies" in ok.output, ok.output
    again = runner.invoke(cli, ["audit", "export", "--from", "2026-11-01", "--to", "2026-11-30",
                                "--out", str(out)], env=env)  # fmt: skip
    assert again.exit_code == 2 and "not empty" in again.output
