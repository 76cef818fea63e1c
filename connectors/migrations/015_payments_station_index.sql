-- No query looks payments up by station: revenue by station comes from the journal's revenue
-- accounts (revenue:<dimension>:<operator>:<station>), and station_id on a payment is only shown.
-- The index cost the projector a b-tree insertion per new payment.
DROP INDEX IF EXISTS payments_station;
