-- What the payment outcome did to a billed session's capture (ledger/sessions/settled.py):
-- captured_minor counts what the provider captured (it counted what was requested), and
-- receivable_minor what the customer still owes after a declined capture, so the sessions
-- table agrees with the ledger's captures and customer receivables.
ALTER TABLE charging_sessions ADD COLUMN IF NOT EXISTS receivable_minor bigint NOT NULL DEFAULT 0;
