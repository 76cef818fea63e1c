"""Signed checkpoints on a projected book: they hold while the journal is intact; a journal
rewritten after a checkpoint with every hash recomputed (which the chain alone cannot see) is
caught by the checkpoint, naming the chain and the place; another key's signature fails."""

from __future__ import annotations

from pathlib import Path

import psycopg
from typer.testing import CliRunner

from connectors import audit
from connectors import signing as cp
from connectors.ledger_store import STORED_ROW, stored_line
from entrypoints.cli import app as cli
from ledger.accounting.chain import GENESIS, link
from tests.integration.test_audit_chain import book  # noqa: F401  (the projected book fixture)


def rewrite_consistently(conn: psycopg.Connection) -> tuple[str, int]:  # type: ignore[type-arg]
    """Double the first CAPTURE's amounts and recompute its chain from the start, heads
    included: what someone who can write every table would do. Returns the chain."""
    topic, partition, entry_id = conn.execute(
        "SELECT c.topic, c.partition, l.entry_id::text FROM journal_chain c"
        " CROSS JOIN LATERAL unnest(c.entry_ids) WITH ORDINALITY AS l(entry_id, n)"
        " JOIN journal_entries e ON e.entry_id = l.entry_id WHERE e.kind = 'CAPTURE'"
        " ORDER BY 1, 2, c.first_seq, l.n LIMIT 1"
    ).fetchone()  # type: ignore[misc]
    conn.execute(
        "UPDATE journal_entries SET amounts = array(SELECT a * 2 FROM unnest(amounts) a)"
        " WHERE entry_id = %s",
        (entry_id,),
    )
    rows = {r[0]: stored_line(r) for r in conn.execute(f"SELECT {STORED_ROW} FROM journal_entries")}
    previous = GENESIS
    for first_seq, ids in conn.execute(
        "SELECT first_seq, entry_ids::text[] FROM journal_chain WHERE topic = %s AND partition = %s"
        " ORDER BY first_seq",
        (topic, partition),
    ).fetchall():
        hashes = []
        for entry in ids:
            previous = link(previous, rows[entry])
            hashes.append(previous)
        conn.execute(
            "UPDATE journal_chain SET hashes = %s WHERE topic = %s AND partition = %s"
            " AND first_seq = %s",
            (hashes, topic, partition, first_seq),
        )
    conn.execute(
        "UPDATE journal_chain_heads SET hash = %s WHERE topic = %s AND partition = %s",
        (previous, topic, partition),
    )
    return topic, partition


def test_checkpoints_catch_a_consistent_rewrite_and_a_foreign_signature(
    book: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    key, other = cp.generate_key(), cp.generate_key()
    with psycopg.connect(book, autocommit=True) as conn:
        stored = audit.take_checkpoint(conn, key)
        assert stored.checkpoint.entries >= 36 and stored.checkpoint.heads
        assert audit.verify_checkpoints(conn, key.public_key()) == (1, [])
        count, problems = audit.verify_checkpoints(conn, other.public_key())
        assert count == 1 and "signature does not hold" in problems[0]

    with psycopg.connect(book) as conn:  # rolled back at the end
        topic, partition = rewrite_consistently(conn)
        _, _, breaks = audit.verify_journal(conn)
        assert breaks == []  # the chain alone cannot see it
        _, problems = audit.verify_checkpoints(conn, key.public_key())
        assert problems and f"{topic}[{partition}]" in problems[0] and "rewritten" in problems[0]
        conn.rollback()

    # Through the CLI: a key file, a checkpoint, verify with the public key.
    key_file, pub_file = tmp_path / "signing.pem", tmp_path / "signing.pub"
    env = {
        "EVLEDGER_DATABASE_URL": book,
        "EVLEDGER_AUDIT_SIGNING_KEY_FILE": str(key_file),
        "COLUMNS": "300",
    }
    runner = CliRunner()
    made = runner.invoke(cli, ["audit", "keygen", "--out", str(key_file)], env=env)
    assert made.exit_code == 0 and "BEGIN PUBLIC KEY" in made.output, made.output
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert runner.invoke(cli, ["audit", "keygen", "--out", str(key_file)], env=env).exit_code != 0
    public, _, fingerprint = runner.invoke(cli, ["audit", "public-key"], env=env).output.partition(
        "fingerprint "
    )
    pub_file.write_text(public)
    taken = runner.invoke(cli, ["audit", "checkpoint"], env=env)
    assert taken.exit_code == 0, taken.output
    checked = runner.invoke(cli, ["audit", "verify", "--public-key", str(pub_file)], env=env)
    # The first checkpoint above was signed by another key: named, exit 1.
    assert checked.exit_code == 1 and "signature does not hold" in checked.output
    listed = runner.invoke(cli, ["audit", "checkpoints"], env=env)
    assert listed.exit_code == 0
    assert stored.signed.key_fingerprint[:16] in listed.output  # the first, by the other key
    assert fingerprint.strip()[:16] in listed.output  # the CLI's, by the configured key
