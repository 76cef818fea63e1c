-- Sessions processor hardening (docs/sessions.md): holds validated by the ledger's rules, the
-- phases behind each energy reading, and the history of why a session is held.

-- A hold is 'authorized' (billable) or 'rejected' (its PaymentAuthorized broke a ledger rule:
-- sessions of that payment are held INVALID_HOLD, never billed against it).
ALTER TABLE session_payment_holds
    ADD COLUMN IF NOT EXISTS status        text NOT NULL DEFAULT 'authorized',
    ADD COLUMN IF NOT EXISTS reason_code   text,
    ADD COLUMN IF NOT EXISTS detail        text,
    ADD COLUMN IF NOT EXISTS network_id    text,
    ADD COLUMN IF NOT EXISTS authorized_at timestamptz,
    ADD COLUMN IF NOT EXISTS event_id      text;
-- Rows written before this migration summed every amount, the ledger's rejected ones included.
UPDATE session_payment_holds
   SET status = 'rejected', reason_code = 'INVALID_AMOUNT',
       detail = 'held_minor=' || held_minor || ': a hold must be positive (recorded before migration 021)'
 WHERE held_minor <= 0 AND status = 'authorized';

-- The phases summed into register_wh when the station sent no phase-less total ('{}' = total).
ALTER TABLE session_meter_values
    ADD COLUMN IF NOT EXISTS energy_phases text[] NOT NULL DEFAULT '{}';

-- The current reason of a held / awaiting_tariff / rejected session, in words a person acts on.
ALTER TABLE charging_sessions
    ADD COLUMN IF NOT EXISTS reason_detail text,
    ADD COLUMN IF NOT EXISTS reason_action text;

-- Every reason a session was held for, oldest first; the row with cleared_at NULL is current.
CREATE TABLE IF NOT EXISTS session_held_reasons (
    id          bigserial   PRIMARY KEY,
    session_id  text        NOT NULL,
    status      text        NOT NULL,  -- held | awaiting_tariff | rejected
    reason_code text        NOT NULL,
    detail      text        NOT NULL,
    action      text        NOT NULL,  -- what releases it
    since       timestamptz NOT NULL DEFAULT now(),
    cleared_at  timestamptz,
    cleared_by  text                   -- the status the session moved to
);
CREATE UNIQUE INDEX IF NOT EXISTS session_held_reasons_current
    ON session_held_reasons (session_id) WHERE cleared_at IS NULL;
CREATE INDEX IF NOT EXISTS session_held_reasons_session ON session_held_reasons (session_id, id);

-- Sessions already waiting before this migration become visible with what is known of them.
INSERT INTO session_held_reasons (session_id, status, reason_code, detail, action, since)
SELECT session_id, status, reason_code, 'recorded before migration 021; see the rejections table',
       'see docs/sessions.md, "Held sessions", for ' || reason_code, updated_at
  FROM charging_sessions
 WHERE status IN ('held', 'awaiting_tariff', 'rejected') AND reason_code IS NOT NULL
ON CONFLICT DO NOTHING;
