-- Finance views over the ledger projection (docs/finance-queries.md shows each with sample output).
-- Amounts are integer minor units of `currency`. Dates are UTC calendar dates of occurred_at
-- (business time), so a late event lands on the day it happened, not the day it arrived.

-- Normal-balance sign of an account family: +1 debit-normal, -1 credit-normal (docs/accounting.md).
CREATE OR REPLACE FUNCTION account_normal_sign(account text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN account LIKE 'liabilities:%' OR account LIKE 'equity:%' OR account LIKE 'revenue:%'
             OR account LIKE 'memo:hold_commitments:%' THEN -1
        ELSE 1
    END
$$;

CREATE OR REPLACE VIEW account_balances AS
SELECT account,
       split_part(account, ':', 1)                     AS root,
       currency,
       debit,
       credit,
       balance,                                         -- debit positive
       balance * account_normal_sign(account)          AS normal_balance,
       CASE WHEN is_memo THEN 'PENDING' ELSE 'POSTED' END AS view,
       postings,
       updated_at
FROM balances;

-- Posted accounts with a non-zero balance, in the debit or the credit column.
CREATE OR REPLACE VIEW trial_balance AS
SELECT account, currency,
       greatest(balance, 0)  AS debit_balance,
       greatest(-balance, 0) AS credit_balance
FROM balances
WHERE NOT is_memo AND balance <> 0;

-- Balances as they stood at `as_of` (business time), recomputed from the journal.
CREATE OR REPLACE FUNCTION balances_as_of(as_of timestamptz)
RETURNS TABLE (account text, currency text, debit bigint, credit bigint, balance bigint)
LANGUAGE sql STABLE AS $$
    SELECT p.account, p.currency::text,
           coalesce(sum(p.amount_minor) FILTER (WHERE p.amount_minor > 0), 0)::bigint,
           coalesce(-sum(p.amount_minor) FILTER (WHERE p.amount_minor < 0), 0)::bigint,
           sum(p.amount_minor)::bigint
    FROM postings p
    WHERE p.occurred_at <= as_of
    GROUP BY p.account, p.currency
$$;

CREATE OR REPLACE VIEW open_authorizations AS
SELECT payment_id, network_id, provider, currency, authorized, captured, hold, station_id,
       created_at, now() - created_at AS age
FROM payments
WHERE status = 'AUTHORIZED' AND hold > 0;

-- The views that read postings (revenue, provider flows, VAT) are in 013_journal_postings_inline.sql,
-- which turned the postings table into a view of the journal.
