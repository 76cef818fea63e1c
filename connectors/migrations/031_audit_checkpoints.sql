-- Signed checkpoints of the journal's hash chains (ledger/accounting/checkpoints.py,
-- docs/audit.md): the canonical document (every chain head and the entry count), its Ed25519
-- signature and the signing key's fingerprint. An auditor keeps the public key (and copies of
-- the checkpoints) outside the database; `evledger audit verify` checks both.
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    id              bigserial   PRIMARY KEY,
    taken_at        timestamptz NOT NULL,
    entries         bigint      NOT NULL,
    document        bytea       NOT NULL,
    signature       bytea       NOT NULL,
    key_fingerprint text        NOT NULL
);
