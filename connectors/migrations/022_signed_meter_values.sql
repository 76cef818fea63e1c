-- Signed meter values (OCMF; docs/sessions.md "Signed meter values"): the records a reading
-- carried, each session's verification and OCPI signed_data, the CDR's copy with its digest,
-- and the meter keys registered per station (evledger stations register-key).
ALTER TABLE session_meter_values ADD COLUMN IF NOT EXISTS signed jsonb NOT NULL DEFAULT '[]';
ALTER TABLE charging_sessions ADD COLUMN IF NOT EXISTS signed_status text;
ALTER TABLE charging_sessions ADD COLUMN IF NOT EXISTS signed_data text;
ALTER TABLE session_cdrs ADD COLUMN IF NOT EXISTS signed_data text;
ALTER TABLE session_cdrs ADD COLUMN IF NOT EXISTS signed_status text;
ALTER TABLE session_cdrs ADD COLUMN IF NOT EXISTS signed_data_sha256 text;

CREATE TABLE IF NOT EXISTS station_meter_keys (
    station_id    text NOT NULL,
    public_key    text NOT NULL,  -- lowercase hex DER (SubjectPublicKeyInfo)
    registered_at timestamptz NOT NULL DEFAULT now(),
    note          text,
    PRIMARY KEY (station_id, public_key)
);
