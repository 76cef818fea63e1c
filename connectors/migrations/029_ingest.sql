-- HTTP ingest (connectors/ingest.py, docs/ingest.md): every event the API accepted, with the
-- fingerprint of its content, so a repeat of the same event is answered "duplicate" and the same
-- event_id with other content "rejected, EVENT_ID_CONFLICT". Written after Kafka confirmed the
-- delivery.
CREATE TABLE IF NOT EXISTS ingest_accepted (
    event_id    text        PRIMARY KEY,
    fingerprint bytea       NOT NULL,
    event_type  text        NOT NULL,
    topic       text        NOT NULL,
    network_id  text        NOT NULL,
    key_id      text        NOT NULL,
    accepted_at timestamptz NOT NULL DEFAULT now()
);
