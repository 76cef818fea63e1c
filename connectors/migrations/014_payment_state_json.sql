-- A payment's state is written and read whole by the ledger projector (PaymentState.to_dict /
-- from_dict) and never queried by key, so it is stored as json (the text, checked) rather than
-- jsonb (parsed into a binary tree on every write): measured 9 -> 4.5 us per payment row on COPY.
ALTER TABLE payments ALTER COLUMN state TYPE json USING state::json;
