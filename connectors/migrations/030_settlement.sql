-- Settlement connector: the provider-attempt journal, webhook replay ids, reconciliation results.

-- One row per instruction (its idempotency key), written and committed BEFORE the provider call.
-- pending: the call may be under way (or the process died during it);
-- succeeded / failed: a definite answer, kept in result / reason_code;
-- in_doubt: retries ran out without a definite answer; the resolver re-asks later (same key).
CREATE TABLE IF NOT EXISTS provider_attempts (
    idempotency_key    text PRIMARY KEY,
    command_event_id   text NOT NULL,
    payment_id         text NOT NULL,
    provider           text NOT NULL,
    action             text NOT NULL CHECK (action IN ('authorize', 'capture', 'void', 'refund')),
    request            jsonb NOT NULL,
    status             text NOT NULL DEFAULT 'pending'
                       CHECK (status IN ('pending', 'succeeded', 'failed', 'in_doubt')),
    result             jsonb,
    reason_code        text,
    detail             text,
    routing            jsonb NOT NULL DEFAULT '[]'::jsonb,
    tries              integer NOT NULL DEFAULT 0,
    history            jsonb NOT NULL DEFAULT '[]'::jsonb,
    provider_reference text,   -- the authorization's reference at the provider
    outcome_reference  text,   -- capture / refund reference: what settlement reports name
    amount_minor       bigint,
    currency           text,
    fee_minor          bigint,
    emitted_at         timestamptz,  -- outcome events written to the outbox
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS provider_attempts_payment ON provider_attempts (payment_id, action);
CREATE INDEX IF NOT EXISTS provider_attempts_unresolved ON provider_attempts (updated_at)
    WHERE status IN ('pending', 'in_doubt');
CREATE INDEX IF NOT EXISTS provider_attempts_outcome
    ON provider_attempts (provider, outcome_reference) WHERE status = 'succeeded';

-- Webhook deliveries already processed (Stripe event id, SHA-256 of a Braintree payload).
-- Kept at least braintree_max_age (3 days): Braintree signs no timestamp.
CREATE TABLE IF NOT EXISTS webhook_events (
    provider    text NOT NULL,
    webhook_id  text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, webhook_id)
);
CREATE INDEX IF NOT EXISTS webhook_events_age ON webhook_events (received_at);

CREATE TABLE IF NOT EXISTS reconciliation_runs (
    id                  bigserial PRIMARY KEY,
    provider            text NOT NULL,
    source              text NOT NULL,      -- report file path, or 'api'
    ledger_source       text NOT NULL,      -- journal_entries or provider_attempts
    since               timestamptz,
    until               timestamptz,
    matched             integer NOT NULL,
    amount_mismatch     integer NOT NULL,
    missing_in_ledger   integer NOT NULL,
    missing_at_provider integer NOT NULL,
    ran_at              timestamptz NOT NULL DEFAULT now()
);

-- One row per line that did not match. A later run that sees the same key again resolves the
-- earlier open row (matched now) or supersedes it (its own row is the open one).
CREATE TABLE IF NOT EXISTS reconciliation_exceptions (
    id                 bigserial PRIMARY KEY,
    run_id             bigint NOT NULL REFERENCES reconciliation_runs (id),
    provider           text NOT NULL,
    category           text NOT NULL
                       CHECK (category IN ('amount_mismatch', 'missing_in_ledger',
                                           'missing_at_provider')),
    line_type          text NOT NULL,
    provider_reference text NOT NULL,
    payment_id         text,
    field              text,               -- amount_mismatch: amount or fee
    provider_amount    text,               -- Money as text ("EUR 12.34"), null when absent
    ledger_amount      text,
    status             text NOT NULL DEFAULT 'open'
                       CHECK (status IN ('open', 'resolved', 'superseded')),
    created_at         timestamptz NOT NULL DEFAULT now(),
    closed_at          timestamptz
);
CREATE INDEX IF NOT EXISTS reconciliation_exceptions_open
    ON reconciliation_exceptions (provider, line_type, provider_reference) WHERE status = 'open';
