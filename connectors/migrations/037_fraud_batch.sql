-- The batch fraud scorer's memory (processors/fraud/batch.py, docs/fraud.md "The batch scorer"),
-- written in the same transaction as its outputs (outbox) and its offsets: exactly once.
--
-- fraud_subject_states: each subject's state (ledger.fraud.engine.SubjectState, JSON), with a
-- random `version` that changes on every write: a scorer keeps the states it wrote in memory and
-- reads a row again only when its version is not the one it wrote (another scorer of the group
-- wrote it since, or its own write rolled back).
CREATE TABLE IF NOT EXISTS fraud_subject_states (
    subject    text        PRIMARY KEY,
    version    bigint      NOT NULL,
    state      bytea       NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- What later events need: a payment's token, card and station (its refunds and disputes), a
-- session's token (its stop).
CREATE TABLE IF NOT EXISTS fraud_payment_facts (
    payment_id text  PRIMARY KEY,
    facts      jsonb NOT NULL
);
CREATE TABLE IF NOT EXISTS fraud_session_tokens (
    session_id text PRIMARY KEY,
    token_uid  text NOT NULL
);
