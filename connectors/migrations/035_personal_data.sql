-- Personal data (docs/security.md, "Personal data"): one key per data subject, wrapped by a
-- master key, and the drivers' profiles with their personal fields sealed under those keys.

-- A subject's data key, AES-KW wrapped by the master key named in master_key_id. Erasure
-- (crypto-shredding) sets wrapped_key to NULL: every sealed value of the subject, on Kafka
-- and here, can no longer be opened. A row with erased_at set is never given a key again.
CREATE TABLE IF NOT EXISTS data_subject_keys (
    network_id    text        NOT NULL,
    subject_id    text        NOT NULL,
    wrapped_key   bytea,
    master_key_id text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    rewrapped_at  timestamptz,
    erased_at     timestamptz,
    erased_by     text,
    erased_reason text,
    PRIMARY KEY (network_id, subject_id),
    CHECK ((erased_at IS NULL) = (wrapped_key IS NOT NULL)),
    CHECK ((wrapped_key IS NULL) = (master_key_id IS NULL))
);
CREATE INDEX IF NOT EXISTS data_subject_keys_master ON data_subject_keys (master_key_id)
    WHERE wrapped_key IS NOT NULL;

-- The drivers projection (drivers.events): the personal fields exactly as sealed on the log.
CREATE TABLE IF NOT EXISTS driver_profiles (
    network_id      text        NOT NULL,
    subject_id      text        NOT NULL,
    email           text,
    full_name       text,
    billing_address text,
    token_uids      text[]      NOT NULL DEFAULT '{}',
    updated_at      timestamptz NOT NULL,
    event_id        text        NOT NULL,
    PRIMARY KEY (network_id, subject_id)
);
CREATE INDEX IF NOT EXISTS driver_profiles_tokens ON driver_profiles USING gin (token_uids);
