-- The document an entry books (docs/finance-close.md, "Journal export"): the CDR a capture,
-- a failed capture (receivable) or its settlement pays. Written by the ledger projector beside
-- the entries, only for events that name one.
CREATE TABLE IF NOT EXISTS entry_references (
    entry_id uuid PRIMARY KEY,
    cdr_id   text NOT NULL
);
CREATE INDEX IF NOT EXISTS entry_references_cdr ON entry_references (cdr_id);
