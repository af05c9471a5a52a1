-- risk_counters as a WITHOUT ROWID table: the row lives in its primary key's
-- B-tree, so a hold's upsert of a counter touches one B-tree instead of two
-- (the rowid table and the key's automatic index), and a snapshot read finds
-- the row in one lookup.  SQLite only (a PostgreSQL table is a heap anyway).
CREATE TABLE risk_counters_new (
    counter_key    TEXT PRIMARY KEY,
    amount_minor   INTEGER NOT NULL DEFAULT 0,
    txn_count      INTEGER NOT NULL DEFAULT 0,
    refunded_minor INTEGER NOT NULL DEFAULT 0,
    last_at_s      INTEGER NOT NULL DEFAULT 0,
    expires_on     TEXT NOT NULL
) WITHOUT ROWID;
INSERT INTO risk_counters_new
    (counter_key, amount_minor, txn_count, refunded_minor, last_at_s, expires_on)
    SELECT counter_key, amount_minor, txn_count, refunded_minor, last_at_s, expires_on
    FROM risk_counters;
DROP TABLE risk_counters;
ALTER TABLE risk_counters_new RENAME TO risk_counters;
CREATE INDEX risk_counters_expiry ON risk_counters (expires_on);
