-- The chart of accounts per country and VAT rate (docs/accounting.md, "Chart of accounts"):
-- revenue:<dimension>:<country>:<rate>, contra_revenue:refunds:<dimension>:<country>:<rate> and
-- liabilities:vat_payable:<country>:<rate>, instead of one revenue account per network and
-- station. The station becomes a dimension on the posting: a fourth array beside accounts,
-- currencies and amounts (NULL when no posting of the entry has one). EVSE, tariff and session
-- come from the session whose payment the entry books, the CDR from entry_references: the view
-- posting_dimensions puts them on every posting.
--
-- A book kept under the old chart is converted right after this file, in the same transaction,
-- by connectors.chart_conversion (account codes renamed, stations moved to the postings, balances
-- rebuilt, the hash chains re-linked and the rebase recorded in journal_chain_rebases); the
-- balance per dimension (network, station, tariff dimension, country) does not change.
ALTER TABLE journal_entries
    ADD COLUMN IF NOT EXISTS stations text[],
    ADD CONSTRAINT journal_entries_stations
        CHECK (stations IS NULL OR cardinality(stations) = cardinality(accounts));

CREATE TABLE IF NOT EXISTS journal_chain_rebases (
    rebased_at   timestamptz NOT NULL DEFAULT now(),
    reason       text        NOT NULL,
    entries      bigint      NOT NULL,  -- entries whose content changed
    heads_before jsonb       NOT NULL,  -- [{topic, partition, seq, hash}] before the rebase
    heads_after  jsonb       NOT NULL
);

CREATE INDEX IF NOT EXISTS charging_sessions_payment ON charging_sessions (payment_id);

-- One row per posting, in the entry's order; now with its station and the entry's network and
-- payment (new columns go last: CREATE OR REPLACE VIEW keeps the existing ones).
CREATE OR REPLACE VIEW postings AS
SELECT e.entry_id, p.ordinal::integer AS ordinal, p.account, p.currency, p.amount_minor,
       e.occurred_at, p.station, e.network_id, e.payment_id
FROM journal_entries e
CROSS JOIN LATERAL unnest(e.accounts, e.currencies, e.amounts, e.stations)
    WITH ORDINALITY AS p(account, currency, amount_minor, station, ordinal);

-- Every posting with all its dimensions: station (on the posting), and through the entry's
-- payment the session, EVSE and tariff, through entry_references the CDR.
CREATE OR REPLACE VIEW posting_dimensions AS
SELECT p.entry_id, p.ordinal, p.account, p.currency, p.amount_minor, p.occurred_at,
       p.network_id, p.payment_id, p.station, s.evse_id, s.tariff_id, s.session_id, r.cdr_id
FROM postings p
LEFT JOIN entry_references r ON r.entry_id = p.entry_id
LEFT JOIN LATERAL (SELECT cs.session_id, cs.evse_id, cs.tariff_id FROM charging_sessions cs
                   WHERE cs.payment_id = p.payment_id LIMIT 1) s ON true;

-- Revenue recognized and given back, per posting: dimension, country and rate from the account,
-- network and station from the posting (station 'unassigned' when the event named none).
CREATE OR REPLACE VIEW revenue_postings AS
SELECT CASE WHEN p.account LIKE 'revenue:%' THEN split_part(p.account, ':', 2)
            ELSE split_part(p.account, ':', 3) END                                AS dimension,
       p.network_id                                                                AS operator,
       coalesce(p.station, 'unassigned')                                           AS station,
       (p.occurred_at AT TIME ZONE books_time_zone())::date                        AS day,
       p.currency::text                                                            AS currency,
       CASE WHEN p.account LIKE 'revenue:%' THEN -p.amount_minor ELSE 0 END        AS revenue,
       CASE WHEN p.account LIKE 'contra_revenue:%' THEN p.amount_minor ELSE 0 END  AS refunds,
       CASE WHEN p.account LIKE 'revenue:%' THEN split_part(p.account, ':', 3)
            ELSE split_part(p.account, ':', 4) END                                AS country,
       CASE WHEN p.account LIKE 'revenue:%' THEN split_part(p.account, ':', 4)
            ELSE split_part(p.account, ':', 5) END                                AS vat_rate
FROM postings p
WHERE p.account LIKE 'revenue:%' OR p.account LIKE 'contra_revenue:refunds:%';

CREATE OR REPLACE VIEW revenue_daily AS
SELECT day, operator, station, dimension, currency,
       sum(revenue)::bigint AS revenue, sum(refunds)::bigint AS refunds,
       sum(revenue - refunds)::bigint AS net_revenue, country, vat_rate
FROM revenue_postings
GROUP BY day, operator, station, dimension, currency, country, vat_rate;

-- VAT per posting: country and rate from the account.
CREATE OR REPLACE VIEW vat_postings AS
SELECT split_part(p.account, ':', 3) AS country, split_part(p.account, ':', 4) AS vat_rate,
       p.network_id AS operator, coalesce(p.station, 'unassigned') AS station,
       p.occurred_at, p.currency::text AS currency, p.amount_minor, p.entry_id
FROM postings p
WHERE p.account LIKE 'liabilities:vat_payable:%';

-- The VAT return per country, rate and month in the books' time zone: the taxable base (net
-- revenue less refunds at that rate), VAT collected, reversed (refunds, bad-debt relief) and
-- payable. A rate of 'unassigned' is revenue whose tariff gave no rate: fix it before filing.
CREATE OR REPLACE VIEW vat_return AS
WITH base AS (
    SELECT country, vat_rate, date_trunc('month', day)::date AS period, currency,
           sum(revenue - refunds)::bigint AS taxable_base
    FROM revenue_postings GROUP BY 1, 2, 3, 4
), tax AS (
    SELECT country, vat_rate,
           date_trunc('month', occurred_at AT TIME ZONE books_time_zone())::date AS period,
           currency,
           coalesce(-sum(amount_minor) FILTER (WHERE amount_minor < 0), 0)::bigint AS collected,
           coalesce(sum(amount_minor) FILTER (WHERE amount_minor > 0), 0)::bigint  AS reversed,
           (-sum(amount_minor))::bigint                                            AS payable
    FROM vat_postings GROUP BY 1, 2, 3, 4
)
SELECT country, vat_rate, period, currency,
       coalesce(base.taxable_base, 0) AS taxable_base,
       coalesce(tax.collected, 0) AS collected, coalesce(tax.reversed, 0) AS reversed,
       coalesce(tax.payable, 0) AS payable
FROM base FULL JOIN tax USING (country, vat_rate, period, currency);
