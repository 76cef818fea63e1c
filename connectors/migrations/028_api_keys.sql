-- API keys (ledger/access.py): the public key id, its network (tenant), scopes and the SHA-256 of
-- its secret; the secret itself is never stored. A revoked key stays, with when and why.
CREATE TABLE IF NOT EXISTS api_keys (
    key_id       text        PRIMARY KEY,
    network_id   text        NOT NULL,
    scopes       text[]      NOT NULL CHECK (cardinality(scopes) > 0),
    secret_hash  bytea       NOT NULL CHECK (octet_length(secret_hash) = 32),
    name         text        NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    created_by   text        NOT NULL,
    revoked_at   timestamptz,
    revoked_by   text,
    revoke_reason text,
    replaces     text        REFERENCES api_keys (key_id)
);
CREATE INDEX IF NOT EXISTS api_keys_network ON api_keys (network_id);

-- Every administrative action (keys made, revoked, rotated), append only: a trigger refuses any
-- UPDATE or DELETE, so the log cannot be edited through SQL by the roles evledger uses.
CREATE TABLE IF NOT EXISTS admin_audit (
    seq        bigserial   PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT now(),
    actor      text        NOT NULL,
    action     text        NOT NULL,
    key_id     text,
    network_id text,
    detail     jsonb       NOT NULL DEFAULT '{}'::jsonb
);

CREATE OR REPLACE FUNCTION admin_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'admin_audit is append only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;

DROP TRIGGER IF EXISTS admin_audit_append_only ON admin_audit;
CREATE TRIGGER admin_audit_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON admin_audit
    FOR EACH STATEMENT EXECUTE FUNCTION admin_audit_append_only();

-- The finance views for one network (NULL: every network), for API keys that see only theirs.
CREATE OR REPLACE FUNCTION balances_of(p_network text, as_of timestamptz)
RETURNS TABLE (account text, currency text, debit bigint, credit bigint, balance bigint)
LANGUAGE sql STABLE AS $$
    SELECT p.account, p.currency::text,
           coalesce(sum(p.amount_minor) FILTER (WHERE p.amount_minor > 0), 0)::bigint,
           coalesce(-sum(p.amount_minor) FILTER (WHERE p.amount_minor < 0), 0)::bigint,
           sum(p.amount_minor)::bigint
    FROM postings p
    WHERE (p_network IS NULL OR p.network_id = p_network)
      AND (as_of IS NULL OR p.occurred_at <= as_of)
    GROUP BY p.account, p.currency
$$;

CREATE OR REPLACE FUNCTION trial_balance_of(p_network text)
RETURNS TABLE (account text, currency text, debit_balance bigint, credit_balance bigint)
LANGUAGE sql STABLE AS $$
    SELECT account, currency, greatest(balance, 0), greatest(-balance, 0)
    FROM balances_of(p_network, NULL)
    WHERE account NOT LIKE 'memo:%' AND balance <> 0
$$;

CREATE OR REPLACE FUNCTION provider_flows_of(p_network text)
RETURNS SETOF provider_flows LANGUAGE sql STABLE AS $$
    SELECT a.provider, a.currency,
           count(*) FILTER (WHERE a.kind = 'CAPTURE'),
           coalesce(sum(a.amount) FILTER (WHERE a.kind = 'CAPTURE'), 0)::bigint,
           count(*) FILTER (WHERE a.kind = 'REFUND'),
           coalesce(sum(a.amount) FILTER (WHERE a.kind = 'REFUND'), 0)::bigint
             - coalesce(sum(a.amount) FILTER (WHERE a.kind = 'REFUND_REVERSAL'), 0)::bigint,
           count(*) FILTER (WHERE a.kind = 'HOLD_RELEASED' AND a.event_type = 'PaymentVoided'),
           coalesce(sum(a.amount) FILTER (WHERE a.kind = 'HOLD_RELEASED'
                                          AND a.event_type = 'PaymentVoided'), 0)::bigint,
           coalesce(sum(a.amount) FILTER (WHERE a.kind = 'PROVIDER_FEE'), 0)::bigint
    FROM entry_amounts a JOIN journal_entries e USING (entry_id)
    WHERE a.provider IS NOT NULL AND e.network_id = p_network
    GROUP BY a.provider, a.currency
$$;

CREATE OR REPLACE FUNCTION vat_return_of(p_network text)
RETURNS TABLE (country text, vat_rate text, period date, currency text, taxable_base bigint,
               collected bigint, reversed bigint, payable bigint)
LANGUAGE sql STABLE AS $$
    WITH base AS (
        SELECT country, vat_rate, date_trunc('month', day)::date AS period, currency,
               sum(revenue - refunds)::bigint AS taxable_base
        FROM revenue_postings WHERE operator = p_network GROUP BY 1, 2, 3, 4
    ), tax AS (
        SELECT country, vat_rate,
               date_trunc('month', occurred_at AT TIME ZONE books_time_zone())::date AS period,
               currency,
               coalesce(-sum(amount_minor) FILTER (WHERE amount_minor < 0), 0)::bigint AS collected,
               coalesce(sum(amount_minor) FILTER (WHERE amount_minor > 0), 0)::bigint  AS reversed,
               (-sum(amount_minor))::bigint                                            AS payable
        FROM vat_postings WHERE operator = p_network GROUP BY 1, 2, 3, 4
    )
    SELECT country, vat_rate, period, currency,
           coalesce(base.taxable_base, 0), coalesce(tax.collected, 0),
           coalesce(tax.reversed, 0), coalesce(tax.payable, 0)
    FROM base FULL JOIN tax USING (country, vat_rate, period, currency)
$$;
