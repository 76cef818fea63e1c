"""Reading the journal and its hash chain back for ``evledger audit verify``
(``ledger.accounting.chain``)."""

from __future__ import annotations

from typing import Any

import psycopg

from connectors.ledger_store import STORED_ROW, stored_line
from ledger.accounting.chain import Break, ChainLink, verify

Conn = psycopg.Connection[Any]


def verify_journal(conn: Conn) -> tuple[int, int, list[Break]]:
    """(entries checked, chains, breaks): every chain recomputed over the journal as stored."""
    links = [
        ChainLink(topic, partition, seq, entry_id, digest)
        for topic, partition, seq, entry_id, digest in conn.execute(
            "SELECT c.topic, c.partition, c.first_seq + l.n - 1, l.entry_id::text, l.hash"
            " FROM journal_chain c"
            " CROSS JOIN LATERAL unnest(c.entry_ids, c.hashes) WITH ORDINALITY"
            "   AS l(entry_id, hash, n)"
            " ORDER BY 1, 2, 3"
        )
    ]
    entries = {
        row[0]: stored_line(row)
        for row in conn.execute(f"SELECT {STORED_ROW} FROM journal_entries")  # nosec B608  # SQL built from module constants; values are bound parameters
    }
    chains = len({(link.topic, link.partition) for link in links})
    return len(entries), chains, verify(links, entries, (link.entry_id for link in links))
