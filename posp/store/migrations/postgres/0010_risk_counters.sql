-- Velocity counters of the risk rules (posp.risk, posp.store.risk_counters).
-- One row per counter key (subject and window, e.g. a card's business day),
-- changed only by conditional single statements, never read-then-write.
CREATE TABLE risk_counters (
    counter_key    TEXT PRIMARY KEY,
    amount_minor   BIGINT NOT NULL DEFAULT 0,
    txn_count      BIGINT NOT NULL DEFAULT 0,
    refunded_minor BIGINT NOT NULL DEFAULT 0,
    last_at_s      BIGINT NOT NULL DEFAULT 0,
    expires_on     TEXT NOT NULL
);
CREATE INDEX risk_counters_expiry ON risk_counters (expires_on);
