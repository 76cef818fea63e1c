-- The ledger projector writes about six rows per money event (two entries, four postings), and
-- every b-tree index on those tables costs it 2-3 us per row: more than the row itself. Keep the
-- b-trees that answer a person's look-ups (an entry by id, a payment's entries, an entry's
-- postings, one account's history) and serve the time-range scans with BRIN indexes, which cost
-- next to nothing to maintain because events arrive in roughly time order.
--
-- The entries of one event need no index of their own: their ids are uuid5(event_id, kind)
-- (ledger.journal.entry_id_for), so they are primary-key look-ups.
DROP INDEX IF EXISTS journal_entries_event;
DROP INDEX IF EXISTS journal_entries_occurred;
CREATE INDEX IF NOT EXISTS journal_entries_occurred_brin ON journal_entries USING brin (occurred_at);
DROP INDEX IF EXISTS postings_time;
CREATE INDEX IF NOT EXISTS postings_time_brin ON postings USING brin (occurred_at);
