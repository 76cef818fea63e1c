-- Sessions processor (consumer group evledger-sessions): tariff versions, session state, raw
-- meter readings deduplicated by their OCPP key, charging states, payment holds and CDRs.

-- Every published tariff version; immutable (a second publication with other content is refused).
CREATE TABLE IF NOT EXISTS tariff_versions (
    tariff_id    text        NOT NULL,
    version      integer     NOT NULL,
    currency     text        NOT NULL,
    ocpi_json    text        NOT NULL,  -- the OCPI 2.2.1 Tariff object as published (Decimal-exact)
    published_at timestamptz NOT NULL,  -- envelope.occurred_at: decides "latest at session start"
    event_id     text        NOT NULL,
    PRIMARY KEY (tariff_id, version)
);

CREATE TABLE IF NOT EXISTS charging_sessions (
    session_id        text        PRIMARY KEY,
    network_id        text        NOT NULL,
    started_event_id  text        NOT NULL,
    correlation_id    text,
    station_id        text        NOT NULL,
    evse_id           text        NOT NULL,
    connector_id      text        NOT NULL,
    transaction_id    text        NOT NULL,
    country           text        NOT NULL,
    time_zone         text        NOT NULL,
    tariff_id         text        NOT NULL,
    tariff_version    integer,              -- as requested at start; the priced one once billed
    payment_id        text,
    meter_start_wh    bigint,
    started_at        timestamptz NOT NULL,
    -- open | billed | voided | held (blocking meter flag) | awaiting_tariff | rejected
    status            text        NOT NULL DEFAULT 'open',
    reason_code       text,                 -- why held / rejected
    stopped_event_id  text,
    stopped_at        timestamptz,
    meter_stop_wh     bigint,
    flags             jsonb       NOT NULL DEFAULT '[]',
    currency          text,
    hold_minor        bigint,
    hold_source       text,                 -- authorized (payments.events) | assumed (pre-auth sizing)
    captured_minor    bigint      NOT NULL DEFAULT 0,  -- capture requested
    refunded_minor    bigint      NOT NULL DEFAULT 0,  -- refunds requested by corrections
    shortfall_minor   bigint      NOT NULL DEFAULT 0,  -- priced total above the hold
    shortfall_status  text,                 -- written_off | to_collect
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS charging_sessions_status ON charging_sessions (status);

-- One row per OCPP reading, deduplicated by (station, transaction, seq_no) within the session:
-- stations that reuse transaction ids after a reboot cannot mix two sessions' readings.
CREATE TABLE IF NOT EXISTS session_meter_values (
    station_id     text        NOT NULL,
    transaction_id text        NOT NULL,
    seq_no         bigint      NOT NULL,
    session_id     text        NOT NULL,
    sampled_at     timestamptz NOT NULL,
    register_wh    numeric,
    power_kw       numeric,
    current_a      numeric,
    event_id       text        NOT NULL,
    PRIMARY KEY (session_id, station_id, transaction_id, seq_no)
);

CREATE TABLE IF NOT EXISTS session_charging_states (
    session_id text        NOT NULL,
    changed_at timestamptz NOT NULL,
    state      text        NOT NULL,
    PRIMARY KEY (session_id, changed_at, state)
);

-- Holds seen on payments.events (PaymentAuthorized + AuthorizationIncremented), nothing else.
CREATE TABLE IF NOT EXISTS session_payment_holds (
    payment_id  text        PRIMARY KEY,
    currency    text        NOT NULL,
    held_minor  bigint      NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- CDRs issued and credited by this processor (the events themselves are on billing.events).
CREATE TABLE IF NOT EXISTS session_cdrs (
    cdr_id          text        PRIMARY KEY,
    session_id      text        NOT NULL,
    kind            text        NOT NULL,  -- issued | credited
    event_id        text        NOT NULL,
    tariff_id       text        NOT NULL,
    tariff_version  integer     NOT NULL,
    waived          text[]      NOT NULL DEFAULT '{}',
    currency        text        NOT NULL,
    total_excl_vat  bigint      NOT NULL,
    total_incl_vat  bigint      NOT NULL,
    lines           jsonb       NOT NULL,
    replaces_cdr_id text,
    credited_cdr_id text,
    reason          text,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS session_cdrs_session ON session_cdrs (session_id, created_at);
