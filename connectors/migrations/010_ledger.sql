-- The ledger projection: journal entries and postings (the book), balances aggregated from them,
-- and one row per payment with the state ledger.payments.apply folds events into.
-- Written only by the ledger projector (processors/ledger_projector.py), in the same transaction
-- as the consumed offsets. Sign convention: amount_minor is debit positive, credit negative.

CREATE TABLE IF NOT EXISTS journal_entries (
    entry_id    uuid        PRIMARY KEY,          -- uuid5(event_id, kind): a replay cannot insert twice
    event_id    text        NOT NULL,
    event_type  text        NOT NULL,             -- PaymentCaptured, PaymentVoided, PayoutPaid, ...
    payment_id  text,                             -- null for payouts
    network_id  text        NOT NULL,
    provider    text,
    kind        text        NOT NULL,             -- ledger.journal.EntryKind
    occurred_at timestamptz NOT NULL,             -- business time (the event's occurred_at)
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS journal_entries_event ON journal_entries (event_id);
CREATE INDEX IF NOT EXISTS journal_entries_payment ON journal_entries (payment_id);
CREATE INDEX IF NOT EXISTS journal_entries_occurred ON journal_entries (occurred_at);

CREATE TABLE IF NOT EXISTS postings (
    -- No foreign key: postings are COPYed right after their entries in the same transaction, and a
    -- per-row FK check would halve the projector's throughput. tests/integration checks the join.
    entry_id     uuid        NOT NULL,
    account      text        NOT NULL,
    currency     char(3)     NOT NULL,
    amount_minor bigint      NOT NULL CHECK (amount_minor <> 0),
    occurred_at  timestamptz NOT NULL             -- copied from the entry: as-of queries need no join
);
CREATE INDEX IF NOT EXISTS postings_entry ON postings (entry_id);
CREATE INDEX IF NOT EXISTS postings_account_time ON postings (account, occurred_at);
CREATE INDEX IF NOT EXISTS postings_time ON postings (occurred_at);

-- Running totals per (account, currency), upserted once per account per batch (hot accounts).
CREATE TABLE IF NOT EXISTS balances (
    account    text    NOT NULL,
    currency   char(3) NOT NULL,
    debit      bigint  NOT NULL DEFAULT 0,        -- sum of debit postings (>= 0)
    credit     bigint  NOT NULL DEFAULT 0,        -- sum of credit postings, positive
    balance    bigint  GENERATED ALWAYS AS (debit - credit) STORED,
    postings   bigint  NOT NULL DEFAULT 0,
    is_memo    boolean GENERATED ALWAYS AS (account LIKE 'memo:%') STORED,  -- the pending view
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account, currency)
);

CREATE TABLE IF NOT EXISTS payments (
    payment_id    text        PRIMARY KEY,
    network_id    text        NOT NULL,
    status        text        NOT NULL,           -- ledger.payment_state.PaymentStatus
    provider      text        NOT NULL,
    currency      char(3)     NOT NULL,
    authorized    bigint      NOT NULL,           -- authorized + increments
    captured      bigint      NOT NULL,
    refunded      bigint      NOT NULL,
    hold          bigint      NOT NULL,           -- open memo hold
    station_id    text,
    created_at    timestamptz NOT NULL,           -- occurred_at of the authorization
    last_event_at timestamptz NOT NULL,           -- occurred_at of the last applied event
    updated_at    timestamptz NOT NULL DEFAULT now(),
    state         jsonb       NOT NULL            -- PaymentState.to_dict()
);
CREATE INDEX IF NOT EXISTS payments_open ON payments (created_at) WHERE status = 'AUTHORIZED';
CREATE INDEX IF NOT EXISTS payments_station ON payments (station_id);

-- ExternalRefundReported names a provider reference, not a payment: find the payment here.
CREATE TABLE IF NOT EXISTS payment_references (
    provider           text NOT NULL,
    provider_reference text NOT NULL,
    payment_id         text NOT NULL,
    PRIMARY KEY (provider, provider_reference)
);
