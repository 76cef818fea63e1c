-- The fraud processor's findings as the risk team reads them (docs/fraud.md), projected from
-- fraud.scores by the evledger-fraud-projector group (exactly once: offsets in the same
-- transaction). Scores and alerts are facts (one row per event); blocks hold each blocked
-- subject's current state, their history every change with who and why.
CREATE TABLE IF NOT EXISTS fraud_scores (
    event_id       uuid          PRIMARY KEY,
    network_id     text          NOT NULL,
    subject        text          NOT NULL,
    score          numeric(5, 4) NOT NULL,
    rules          text[]        NOT NULL,
    contributions  jsonb         NOT NULL,
    threshold      numeric(5, 4),
    input_event_id text,
    scored_at      timestamptz   NOT NULL
);
CREATE INDEX IF NOT EXISTS fraud_scores_subject ON fraud_scores (network_id, subject, scored_at DESC);

CREATE TABLE IF NOT EXISTS fraud_alerts (
    event_id       uuid          PRIMARY KEY,
    network_id     text          NOT NULL,
    subject        text          NOT NULL,
    score          numeric(5, 4) NOT NULL,
    reason         text          NOT NULL,
    action         text          NOT NULL,
    rules          text[]        NOT NULL,
    input_event_id text,
    payment_id     text,
    session_id     text,
    raised_at      timestamptz   NOT NULL,
    -- a review alert holds its payment's capture until a person clears it
    review_status  text          CHECK (review_status IN ('open', 'cleared')),
    cleared_by     text,
    cleared_reason text,
    cleared_at     timestamptz
);
CREATE INDEX IF NOT EXISTS fraud_alerts_network ON fraud_alerts (network_id, raised_at DESC);
CREATE INDEX IF NOT EXISTS fraud_alerts_review ON fraud_alerts (payment_id) WHERE review_status = 'open';

CREATE TABLE IF NOT EXISTS fraud_blocks (
    network_id     text        NOT NULL,
    subject        text        NOT NULL,
    blocked        boolean     NOT NULL,
    changed_at     timestamptz NOT NULL,
    actor          text        NOT NULL,
    reason         text        NOT NULL,
    alert_event_id uuid,
    PRIMARY KEY (network_id, subject)
);

CREATE TABLE IF NOT EXISTS fraud_block_history (
    event_id       uuid        PRIMARY KEY,
    network_id     text        NOT NULL,
    subject        text        NOT NULL,
    blocked        boolean     NOT NULL,
    at             timestamptz NOT NULL,
    actor          text        NOT NULL,
    reason         text        NOT NULL,
    alert_event_id uuid
);
