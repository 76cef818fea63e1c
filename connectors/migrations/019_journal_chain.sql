-- The journal's hash chain (ledger/accounting/chain.py, docs/audit.md): one chain per Kafka
-- partition the entries' events came from; each link holds the entry's hash over the previous
-- one. A batch writes one segment per chain (its entries and their hashes, in chain order),
-- and the head of each chain for the next batch; only the projector instance that owns the
-- partition writes its chain.
CREATE TABLE IF NOT EXISTS journal_chain (
    topic     text    NOT NULL,
    partition integer NOT NULL,
    first_seq bigint  NOT NULL,
    entry_ids uuid[]  NOT NULL,
    hashes    text[]  NOT NULL CHECK (cardinality(hashes) = cardinality(entry_ids)),
    PRIMARY KEY (topic, partition, first_seq)
);

CREATE TABLE IF NOT EXISTS journal_chain_heads (
    topic     text    NOT NULL,
    partition integer NOT NULL,
    seq       bigint  NOT NULL,
    hash      text    NOT NULL,
    PRIMARY KEY (topic, partition)
);
