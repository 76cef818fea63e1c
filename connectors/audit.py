"""Reading the journal and its hash chain back for ``evledger audit verify``
(``ledger.accounting.chain``)."""

from __future__ import annotations

from typing import Any

import psycopg

from ledger.accounting.chain import Break, ChainedEntry, ChainLink, verify

Conn = psycopg.Connection[Any]


def verify_journal(conn: Conn) -> tuple[int, int, list[Break]]:
    """(entries checked, chains, breaks): every chain recomputed over the journal as stored."""
    links = [
        ChainLink(topic, partition, seq, entry_id, digest)
        for topic, partition, seq, entry_id, digest in conn.execute(
            "SELECT topic, partition, seq, entry_id::text, hash FROM journal_chain"
            " ORDER BY topic, partition, seq"
        )
    ]
    entries = {
        row[0]: ChainedEntry(
            row[0],
            row[1],
            row[2],
            row[3],
            row[4],
            row[5],
            row[6],
            row[7],
            tuple(zip(row[8], row[9], row[10], strict=True)),
        )
        for row in conn.execute(
            "SELECT entry_id::text, event_id, event_type, payment_id, network_id, provider, kind,"
            " occurred_at, accounts, currencies, amounts FROM journal_entries"
        )
    }
    chains = len({(link.topic, link.partition) for link in links})
    return len(entries), chains, verify(links, entries, (link.entry_id for link in links))
