-- Transactional outbox: events a processor emits are written in the same transaction as its
-- effects and offsets, then relayed to Kafka (at least once; consumers dedupe by event_id).
CREATE TABLE IF NOT EXISTS outbox (
    id           bigserial PRIMARY KEY,
    topic        text  NOT NULL,
    key          bytea,
    value        bytea NOT NULL,
    event_id     text  NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX IF NOT EXISTS outbox_unpublished ON outbox (id) WHERE published_at IS NULL;

-- Running totals per consumer group: applied + duplicate + rejected = records consumed.
CREATE TABLE IF NOT EXISTS processing_counts (
    consumer_group text PRIMARY KEY,
    applied        bigint NOT NULL DEFAULT 0,
    duplicates     bigint NOT NULL DEFAULT 0,
    rejected       bigint NOT NULL DEFAULT 0,
    updated_at     timestamptz NOT NULL DEFAULT now()
);
