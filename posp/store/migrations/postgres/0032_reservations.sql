-- A refund's or purchase void's share of its original's refunded_minor, kept on
-- its own entry so that whoever ends it not approved (the switch, a terminal
-- 0400, the in-doubt sweeper after a crash) gives it back exactly once.
ALTER TABLE journal ADD COLUMN reserved_minor BIGINT NOT NULL DEFAULT 0;
