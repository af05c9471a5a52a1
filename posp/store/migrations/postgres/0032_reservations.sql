-- A refund's or purchase void's share of its original's refunded_minor, kept on
-- its own entry so that whoever ends it not approved (the switch, a terminal
-- 0400, the in-doubt sweeper after a crash) gives it back exactly once.
ALTER TABLE journal ADD COLUMN reserved_minor BIGINT NOT NULL DEFAULT 0;
-- Refunds approved before this column existed keep their share the same way.
UPDATE journal SET reserved_minor = amount_minor
    WHERE txn_type = 'refund' AND state = 'approved'
    AND original_id IS NOT NULL AND amount_minor IS NOT NULL;
-- Reservations still carried by entries that ended not approved (an approved
-- refund's is its share; an approved void's goes back with its original's
-- change): the sweeper gives back those a failed release left.
CREATE INDEX journal_stranded_reservations ON journal (created_at)
    WHERE reserved_minor > 0 AND state IN ('declined', 'timed_out', 'reversed');
