-- The analytics dashboard's hourly rollups (docs/observability.md, "Analytics dashboard").
-- Each is built from the views the CLI and the finance API read (revenue_postings, vat_postings,
-- the current CDR of each session, the settlement connector's authorize attempts), summed per
-- network, station and UTC hour, so a figure on the dashboard adds up to the same query's
-- answer. They are materialized: a page view reads a few thousand summed rows instead of every
-- posting. `evledger api` refreshes them in the background (REFRESH ... CONCURRENTLY, readers
-- never wait; at most one API process at a time, under an advisory lock) and the dashboard
-- shows when they were last refreshed. Live figures (open holds, settlement in doubt, fraud
-- alerts, rejections, processing counts) are read straight from their tables.

-- revenue_postings gains the posting's time (new columns go last), for the hourly rollup.
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
            ELSE split_part(p.account, ':', 5) END                                AS vat_rate,
       p.occurred_at                                                               AS occurred_at
FROM postings p
WHERE p.account LIKE 'revenue:%' OR p.account LIKE 'contra_revenue:refunds:%';

-- Revenue recognized, refunds and VAT payable per network, station, currency and UTC hour.
CREATE MATERIALIZED VIEW IF NOT EXISTS dashboard_revenue_hourly AS
WITH revenue AS (
    SELECT operator AS network_id, station, date_trunc('hour', occurred_at, 'UTC') AS hour,
           currency, sum(revenue)::bigint AS revenue, sum(refunds)::bigint AS refunds
    FROM revenue_postings GROUP BY 1, 2, 3, 4
), tax AS (
    SELECT operator AS network_id, station, date_trunc('hour', occurred_at, 'UTC') AS hour,
           currency, (-sum(amount_minor))::bigint AS vat
    FROM vat_postings GROUP BY 1, 2, 3, 4
)
SELECT network_id, station, hour, currency,
       coalesce(revenue.revenue, 0) AS revenue, coalesce(revenue.refunds, 0) AS refunds,
       coalesce(tax.vat, 0) AS vat
FROM revenue FULL JOIN tax USING (network_id, station, hour, currency);
CREATE UNIQUE INDEX IF NOT EXISTS dashboard_revenue_hourly_key
    ON dashboard_revenue_hourly (network_id, hour, station, currency);

-- Billed sessions per network, station, currency and UTC hour of their stop: the value of
-- each session's current CDR (issued and not credited), incl. VAT, and the metered energy.
CREATE MATERIALIZED VIEW IF NOT EXISTS dashboard_sessions_hourly AS
WITH current_cdrs AS (
    SELECT c.session_id, c.currency, c.total_incl_vat
    FROM session_cdrs c
    WHERE c.kind = 'issued'
      AND NOT EXISTS (SELECT 1 FROM session_cdrs x WHERE x.credited_cdr_id = c.cdr_id)
)
SELECT s.network_id, s.station_id AS station, date_trunc('hour', s.stopped_at, 'UTC') AS hour,
       c.currency, count(*)::bigint AS sessions, sum(c.total_incl_vat)::bigint AS value_incl_vat,
       sum(greatest(coalesce(s.meter_stop_wh - s.meter_start_wh, 0), 0))::bigint AS energy_wh
FROM charging_sessions s
JOIN current_cdrs c USING (session_id)
WHERE s.stopped_at IS NOT NULL
GROUP BY 1, 2, 3, 4;
CREATE UNIQUE INDEX IF NOT EXISTS dashboard_sessions_hourly_key
    ON dashboard_sessions_hourly (network_id, hour, station, currency);

-- Authorizations the settlement connector finished, per network, station, provider, payment
-- method and UTC hour of the instruction: succeeded (a hold placed) or failed (declined, or no
-- provider could place it). Attempts still pending or in doubt are not counted here.
CREATE MATERIALIZED VIEW IF NOT EXISTS dashboard_authorizations_hourly AS
SELECT coalesce(request -> 'envelope' ->> 'network_id', 'unknown') AS network_id,
       coalesce(request ->> 'station_id', 'unassigned') AS station,
       provider,
       coalesce(request ->> 'payment_method', 'unknown') AS payment_method,
       date_trunc('hour', (request -> 'envelope' ->> 'occurred_at')::timestamptz, 'UTC') AS hour,
       count(*) FILTER (WHERE status = 'succeeded')::bigint AS succeeded,
       count(*) FILTER (WHERE status = 'failed')::bigint AS failed
FROM provider_attempts
WHERE action = 'authorize' AND status IN ('succeeded', 'failed')
GROUP BY 1, 2, 3, 4, 5;
CREATE UNIQUE INDEX IF NOT EXISTS dashboard_authorizations_hourly_key
    ON dashboard_authorizations_hourly (network_id, hour, station, provider, payment_method);

-- The same per UTC day, from the hourly rollups (refreshed after them): ranges over 7 days read
-- these, a few thousand rows for a quarter instead of a hundred thousand.
CREATE MATERIALIZED VIEW IF NOT EXISTS dashboard_revenue_daily AS
SELECT network_id, station, date_trunc('day', hour, 'UTC') AS day, currency,
       sum(revenue)::bigint AS revenue, sum(refunds)::bigint AS refunds, sum(vat)::bigint AS vat
FROM dashboard_revenue_hourly GROUP BY 1, 2, 3, 4;
CREATE UNIQUE INDEX IF NOT EXISTS dashboard_revenue_daily_key
    ON dashboard_revenue_daily (network_id, day, station, currency);

CREATE MATERIALIZED VIEW IF NOT EXISTS dashboard_sessions_daily AS
SELECT network_id, station, date_trunc('day', hour, 'UTC') AS day, currency,
       sum(sessions)::bigint AS sessions, sum(value_incl_vat)::bigint AS value_incl_vat,
       sum(energy_wh)::bigint AS energy_wh
FROM dashboard_sessions_hourly GROUP BY 1, 2, 3, 4;
CREATE UNIQUE INDEX IF NOT EXISTS dashboard_sessions_daily_key
    ON dashboard_sessions_daily (network_id, day, station, currency);

CREATE MATERIALIZED VIEW IF NOT EXISTS dashboard_authorizations_daily AS
SELECT network_id, station, provider, payment_method, date_trunc('day', hour, 'UTC') AS day,
       sum(succeeded)::bigint AS succeeded, sum(failed)::bigint AS failed
FROM dashboard_authorizations_hourly GROUP BY 1, 2, 3, 4, 5;
CREATE UNIQUE INDEX IF NOT EXISTS dashboard_authorizations_daily_key
    ON dashboard_authorizations_daily (network_id, day, station, provider, payment_method);

-- Every network's stations, for the dashboard's station filter.
CREATE MATERIALIZED VIEW IF NOT EXISTS dashboard_stations AS
SELECT DISTINCT network_id, station FROM dashboard_revenue_daily
UNION SELECT DISTINCT network_id, station FROM dashboard_sessions_daily;
CREATE UNIQUE INDEX IF NOT EXISTS dashboard_stations_key ON dashboard_stations (network_id, station);

-- When the rollups were last refreshed and how long it took (one row).
CREATE TABLE IF NOT EXISTS dashboard_rollups (
    only_row     boolean     PRIMARY KEY DEFAULT true CHECK (only_row),
    refreshed_at timestamptz NOT NULL,
    took_ms      integer     NOT NULL
);

