-- Foundation: consumed offsets (stored with effects, for exactly-once) and rejections.
CREATE TABLE IF NOT EXISTS consumer_offsets (
    consumer_group text    NOT NULL,
    topic          text    NOT NULL,
    partition      integer NOT NULL,
    next_offset    bigint  NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, topic, partition)
);

CREATE TABLE IF NOT EXISTS rejections (
    consumer_group   text    NOT NULL,
    topic            text    NOT NULL,
    partition        integer NOT NULL,
    "offset"         bigint  NOT NULL,
    event_id         text,
    reason_code      text    NOT NULL,
    detail           text    NOT NULL,
    original_key     bytea,
    original_value   bytea,
    rejected_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, topic, partition, "offset")
);
CREATE INDEX IF NOT EXISTS rejections_reason ON rejections (reason_code);

-- Every event_id a consumer group applied: the duplicate check, in the same transaction.
CREATE TABLE IF NOT EXISTS processed_events (
    consumer_group text NOT NULL,
    event_id       text NOT NULL,
    topic          text NOT NULL,
    partition      integer NOT NULL,
    "offset"       bigint NOT NULL,
    PRIMARY KEY (consumer_group, event_id)
);
