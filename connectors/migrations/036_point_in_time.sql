-- Payment states and session bills at a point in time (docs/finance-queries.md, "As of, and as
-- known at").
--
-- payment_history: one row per payment event the ledger applied (`step`: its place among the
-- payment's applied events), with the payment's status and
-- totals after it; `occurred_at` is the event's business time, `recorded_at` the processing time
-- (the ledger's transaction, as on the journal entries it booked with it). A payment "as known
-- at" a processing time is its last step recorded by then; "as of" a business time, its last row
-- for an event dated by then. Payments booked before this migration get one row: their state
-- at the time of the migration (event_id NULL), so no earlier point in time is known for them.
CREATE TABLE IF NOT EXISTS payment_history (
    payment_id  text        NOT NULL,
    step        integer     NOT NULL,  -- how many events the payment had applied, this one included
    event_id    text,
    event_type  text,
    occurred_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    status      text        NOT NULL,
    authorized  bigint      NOT NULL,
    captured    bigint      NOT NULL,
    refunded    bigint      NOT NULL,
    hold        bigint      NOT NULL,
    PRIMARY KEY (payment_id, step)
);

INSERT INTO payment_history (payment_id, step, event_id, event_type, occurred_at, recorded_at,
                             status, authorized, captured, refunded, hold)
SELECT payment_id, json_array_length((state -> 'applied_event_ids')::json), NULL, NULL, last_event_at,
       updated_at, status, authorized, captured, refunded, hold
FROM payments
WHERE NOT EXISTS (SELECT 1 FROM payment_history);

-- session_cdrs.occurred_at: the business time of the CDR's event (an issued bill: the session's
-- stop; a credit and its re-issue: when the correction was made). Rows written before this
-- migration take the time they were written.
ALTER TABLE session_cdrs ADD COLUMN IF NOT EXISTS occurred_at timestamptz;
UPDATE session_cdrs SET occurred_at = created_at WHERE occurred_at IS NULL;
ALTER TABLE session_cdrs ALTER COLUMN occurred_at SET NOT NULL;
