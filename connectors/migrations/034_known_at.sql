-- Balances in two times (docs/finance-queries.md, "As of, and as known at"): business time (an
-- entry's occurred_at: when the money moved) and processing time (its recorded_at: when this
-- database booked it). `known_at` answers "what did the books say at that moment", late events
-- and corrections booked afterwards left out; NULL means now.
CREATE OR REPLACE FUNCTION balances_known(p_network text, as_of timestamptz, known_at timestamptz)
RETURNS TABLE (account text, currency text, debit bigint, credit bigint, balance bigint)
LANGUAGE sql STABLE AS $$
    SELECT p.account, p.currency::text,
           coalesce(sum(p.amount_minor) FILTER (WHERE p.amount_minor > 0), 0)::bigint,
           coalesce(-sum(p.amount_minor) FILTER (WHERE p.amount_minor < 0), 0)::bigint,
           sum(p.amount_minor)::bigint
    FROM journal_entries e
    CROSS JOIN LATERAL unnest(e.accounts, e.currencies, e.amounts)
        AS p(account, currency, amount_minor)
    WHERE (p_network IS NULL OR e.network_id = p_network)
      AND (as_of IS NULL OR e.occurred_at <= as_of)
      AND (known_at IS NULL OR e.recorded_at <= known_at)
    GROUP BY p.account, p.currency
$$;

-- Entries are appended in recorded_at order: a BRIN index answers "known at" cheaply.
CREATE INDEX IF NOT EXISTS journal_entries_recorded_brin ON journal_entries USING brin (recorded_at);
