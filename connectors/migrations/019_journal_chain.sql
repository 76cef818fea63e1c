-- The journal's hash chain (ledger/accounting/chain.py, docs/audit.md): one chain per Kafka
-- partition the entries' events came from; each link holds the entry's hash over the previous
-- one. The head of each chain is kept for the next batch; only the projector instance that owns
-- the partition writes it.
CREATE TABLE IF NOT EXISTS journal_chain (
    topic     text    NOT NULL,
    partition integer NOT NULL,
    seq       bigint  NOT NULL,
    entry_id  uuid    NOT NULL UNIQUE,
    hash      text    NOT NULL,
    PRIMARY KEY (topic, partition, seq)
);

CREATE TABLE IF NOT EXISTS journal_chain_heads (
    topic     text    NOT NULL,
    partition integer NOT NULL,
    seq       bigint  NOT NULL,
    hash      text    NOT NULL,
    PRIMARY KEY (topic, partition)
);
