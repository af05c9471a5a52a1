-- A risk record is written with every risk-checked request that holds counters
-- or fires a rule, most in the pending journal entry's transaction, so each of
-- its index entries is one more B-tree page in that commit.  Two go:
-- * risk_records_rrn: posp risk explain finds the records by RRN through the
--   journal's own RRN index (a record's RRN is its entry's, posp.store.risk_records.BY_RRN);
-- * risk_records_flagged held every record; only the flagged ones are listed
--   (posp risk flagged), so it now holds those alone.
DROP INDEX risk_records_rrn;
DROP INDEX risk_records_flagged;
CREATE INDEX risk_records_flagged ON risk_records (local_day) WHERE flagged = 1;
