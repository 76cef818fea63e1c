"""Reading the journal and its hash chain back for ``evledger audit verify``
(``ledger.accounting.chain``)."""

from __future__ import annotations

from datetime import UTC
from typing import Any

import psycopg

from connectors.ledger_store import copy_line
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
        row[0]: _line(row)
        for row in conn.execute(
            "SELECT entry_id::text, event_id, event_type, payment_id, network_id, provider, kind,"
            " occurred_at, accounts, currencies, amounts FROM journal_entries"
        )
    }
    chains = len({(link.topic, link.partition) for link in links})
    return len(entries), chains, verify(links, entries, (link.entry_id for link in links))


def _line(row: Any) -> bytes:
    """A stored journal row's canonical content: its COPY text line, the date in UTC."""
    entry_id, event_id, event_type, payment_id, network_id, provider, kind, at, *arrays = row
    accounts, currencies, amounts = arrays
    line = copy_line(entry_id, event_id, event_type, payment_id, network_id, provider, kind,
                     at.astimezone(UTC), accounts, currencies, amounts)  # fmt: skip
    return line.encode()
