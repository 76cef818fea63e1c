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

-- Revenue recognized (revenue:*) and given back (contra_revenue:refunds:*), per posting.
CREATE OR REPLACE VIEW revenue_postings AS
SELECT CASE WHEN p.account LIKE 'revenue:%' THEN split_part(p.account, ':', 2)
            ELSE split_part(p.account, ':', 3) END                                AS dimension,
       CASE WHEN p.account LIKE 'revenue:%' THEN split_part(p.account, ':', 3)
            ELSE split_part(p.account, ':', 4) END                                AS operator,
       CASE WHEN p.account LIKE 'revenue:%' THEN split_part(p.account, ':', 4)
            ELSE split_part(p.account, ':', 5) END                                AS station,
       (p.occurred_at AT TIME ZONE 'UTC')::date                                    AS day,
       p.currency::text                                                            AS currency,
       CASE WHEN p.account LIKE 'revenue:%' THEN -p.amount_minor ELSE 0 END        AS revenue,
       CASE WHEN p.account LIKE 'contra_revenue:%' THEN p.amount_minor ELSE 0 END  AS refunds
FROM postings p
WHERE p.account LIKE 'revenue:%' OR p.account LIKE 'contra_revenue:refunds:%';

CREATE OR REPLACE VIEW revenue_daily AS
SELECT day, operator, station, dimension, currency,
       sum(revenue)::bigint AS revenue, sum(refunds)::bigint AS refunds,
       sum(revenue - refunds)::bigint AS net_revenue
FROM revenue_postings
GROUP BY day, operator, station, dimension, currency;

-- Each entry's size: the sum of its debit postings (gross capture, refund, released hold, ...).
CREATE OR REPLACE VIEW entry_amounts AS
SELECT e.entry_id, e.event_id, e.event_type, e.payment_id, e.provider, e.kind, e.occurred_at,
       p.currency::text AS currency,
       sum(p.amount_minor) FILTER (WHERE p.amount_minor > 0)::bigint AS amount
FROM journal_entries e
JOIN postings p USING (entry_id)
GROUP BY e.entry_id, p.currency;

-- Captures, refunds and voids per provider (voids: those that released an open hold).
CREATE OR REPLACE VIEW provider_flows AS
SELECT provider, currency,
       count(*) FILTER (WHERE kind = 'CAPTURE')                               AS captures,
       coalesce(sum(amount) FILTER (WHERE kind = 'CAPTURE'), 0)::bigint       AS captured,
       count(*) FILTER (WHERE kind = 'REFUND')                                AS refunds,
       coalesce(sum(amount) FILTER (WHERE kind = 'REFUND'), 0)::bigint
         - coalesce(sum(amount) FILTER (WHERE kind = 'REFUND_REVERSAL'), 0)::bigint AS refunded,
       count(*) FILTER (WHERE kind = 'HOLD_RELEASED' AND event_type = 'PaymentVoided') AS voids,
       coalesce(sum(amount) FILTER (WHERE kind = 'HOLD_RELEASED'
                                      AND event_type = 'PaymentVoided'), 0)::bigint AS voided,
       coalesce(sum(amount) FILTER (WHERE kind = 'PROVIDER_FEE'), 0)::bigint  AS capture_fees
FROM entry_amounts
WHERE provider IS NOT NULL
GROUP BY provider, currency;

-- VAT per country of supply and calendar month: collected on captures, reversed by refunds.
CREATE OR REPLACE VIEW vat_by_country_month AS
SELECT split_part(account, ':', 3)                                          AS country,
       date_trunc('month', occurred_at AT TIME ZONE 'UTC')::date            AS period,
       currency::text                                                       AS currency,
       coalesce(-sum(amount_minor) FILTER (WHERE amount_minor < 0), 0)::bigint AS collected,
       coalesce(sum(amount_minor) FILTER (WHERE amount_minor > 0), 0)::bigint  AS reversed,
       (-sum(amount_minor))::bigint                                         AS payable
FROM postings
WHERE account LIKE 'liabilities:vat_payable:%'
GROUP BY 1, 2, 3;
