-- An event_id is an idempotency key: the same id must carry the same content. Every consumer
-- group keeps, with its dedup mark, a fingerprint of the content it saw first (BLAKE2b-128 of
-- the decoded event, connectors.fingerprint); a later record with the id and other content is
-- rejected with EVENT_ID_CONFLICT instead of being skipped as a duplicate. Marks written before
-- this migration have none: a repeat of one of those is a duplicate, as it was.
ALTER TABLE processed_events ADD COLUMN IF NOT EXISTS fingerprint bytea;
