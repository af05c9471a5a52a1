-- Money under faults (issue 12).
-- * A 0420 row is never deleted: delivery is recorded (delivered_at), so the
--   UNIQUE entry_id keeps one 0420 per original for ever, not only while it waits.
-- * Pending entries are found cheaply by the in-doubt sweeper.
-- * A terminal's 0400 whose MAC could not be checked (HSM down) waits here, with
--   the TAK it was made under, until the HSM answers again.
ALTER TABLE saf ADD COLUMN delivered_at TIMESTAMPTZ;
DROP INDEX saf_due;
CREATE INDEX saf_due ON saf (next_attempt_at) WHERE delivered_at IS NULL;
CREATE INDEX journal_pending ON journal (created_at) WHERE state = 'pending';
CREATE TABLE deferred_reversals (
    entry_id        BIGINT PRIMARY KEY REFERENCES journal (id),
    body            BYTEA NOT NULL,
    tak_lmk         TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL
);
