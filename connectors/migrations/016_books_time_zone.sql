-- Period boundaries in the books' time zone (EVLEDGER_BOOKS_TIME_ZONE, default UTC): a
-- session supplied at 23:30 UTC on 30 November belongs to 1 December in Berlin. The zone is a
-- session setting (evledger.books_time_zone) that evledger's connections set; any other client
-- gets UTC unless it sets it too: SET evledger.books_time_zone = 'Europe/Berlin'.
CREATE OR REPLACE FUNCTION books_time_zone() RETURNS text LANGUAGE sql STABLE AS $$
    SELECT coalesce(nullif(current_setting('evledger.books_time_zone', true), ''), 'UTC')
$$;

CREATE OR REPLACE VIEW revenue_postings AS
SELECT CASE WHEN p.account LIKE 'revenue:%' THEN split_part(p.account, ':', 2)
            ELSE split_part(p.account, ':', 3) END                                AS dimension,
       CASE WHEN p.account LIKE 'revenue:%' THEN split_part(p.account, ':', 3)
            ELSE split_part(p.account, ':', 4) END                                AS operator,
       CASE WHEN p.account LIKE 'revenue:%' THEN split_part(p.account, ':', 4)
            ELSE split_part(p.account, ':', 5) END                                AS station,
       (p.occurred_at AT TIME ZONE books_time_zone())::date                        AS day,
       p.currency::text                                                            AS currency,
       CASE WHEN p.account LIKE 'revenue:%' THEN -p.amount_minor ELSE 0 END        AS revenue,
       CASE WHEN p.account LIKE 'contra_revenue:%' THEN p.amount_minor ELSE 0 END  AS refunds
FROM postings p
WHERE p.account LIKE 'revenue:%' OR p.account LIKE 'contra_revenue:refunds:%';

CREATE OR REPLACE VIEW vat_by_country_month AS
SELECT split_part(account, ':', 3)                                          AS country,
       date_trunc('month', occurred_at AT TIME ZONE books_time_zone())::date AS period,
       currency::text                                                       AS currency,
       coalesce(-sum(amount_minor) FILTER (WHERE amount_minor < 0), 0)::bigint AS collected,
       coalesce(sum(amount_minor) FILTER (WHERE amount_minor > 0), 0)::bigint  AS reversed,
       (-sum(amount_minor))::bigint                                         AS payable
FROM postings
WHERE account LIKE 'liabilities:vat_payable:%'
GROUP BY 1, 2, 3;
