-- Period close (docs/finance-close.md): the books are locked until period_lock.locked_until
-- (NULL: nothing closed). The ledger projector reads it FOR SHARE in every batch and books an
-- entry dated before it at it instead, keeping the original date in relocated_entries;
-- `evledger close` takes it FOR UPDATE, so a close waits for batches in flight and the batches
-- after it see the new lock.
CREATE TABLE IF NOT EXISTS period_lock (
    id           boolean     PRIMARY KEY DEFAULT true CHECK (id),
    locked_until timestamptz
);
INSERT INTO period_lock (id, locked_until) VALUES (true, NULL) ON CONFLICT DO NOTHING;

CREATE TABLE IF NOT EXISTS closed_periods (
    period     text        PRIMARY KEY,             -- YYYY-MM
    time_zone  text        NOT NULL,
    starts_at  timestamptz NOT NULL,
    ends_at    timestamptz NOT NULL,
    closed_at  timestamptz NOT NULL DEFAULT now(),
    closed_by  text        NOT NULL,
    manifest   jsonb       NOT NULL                 -- the close pack's manifest (figures, file digests)
);

CREATE TABLE IF NOT EXISTS relocated_entries (
    entry_id             uuid        PRIMARY KEY,
    original_occurred_at timestamptz NOT NULL,
    booked_at            timestamptz NOT NULL
);
