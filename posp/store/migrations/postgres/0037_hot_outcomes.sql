-- A purchase's outcome write as a HOT update (issue 19).
-- PostgreSQL writes an UPDATE in place on the row's page, adding no index
-- entry ("heap-only tuple"), only when no column that any index names — as a
-- key or in its WHERE — changes value and the page has room.  The outcome
-- (state, auth code, ...) changed two such columns, so each purchase wrote a
-- second entry into every index of the journal: a third of its WAL, and of
-- the server's CPU for the journal's statements alone (8.5 % of the server's
-- CPU per purchase on the full path).  After this migration no index of the
-- journal names a column an outcome changes:
-- * The in-doubt sweeper's pending entries (the index journal_pending, on
--   state) are listed in journal_open instead: each statement of the store
--   that inserts journal entries lists the pending ones (queries.
--   LIST_PENDING_PG; a trigger did it at twice the cost); the sweeper finds
--   those still pending there and deletes the others (PostgresStore.
--   in_doubt_entries).  No write moves an entry back to pending.  An entry
--   inserted by hand, outside the store, is not listed: never swept.
-- * Reservations stranded on ended refunds and voids (0032) and the open
--   pre-authorizations' codes (0035) are indexed through generated columns
--   that stay NULL or false for a purchase whatever its outcome.
-- * New journal pages are filled to half: the other half takes the outcome's
--   version of each row (a purchase's row is about 350 bytes; at 70 % one
--   outcome in five found no room and was not HOT), and earlier versions are
--   pruned from the page without VACUUM.  Before, each row also left a dead
--   version elsewhere until VACUUM: the journal takes about the room it took.
-- The generated columns rewrite the journal once (2.9 s for 500,000 entries on
-- the development VM; the table is locked meanwhile, from the first statement so that no
-- older switch journals a pending entry the listing below would miss; the
-- store allows a migration migrate_timeout_s): upgrade in a quiet hour.
-- journal_open is never truncated by VACUUM: every journal insert writes it,
-- and truncation takes an exclusive lock.
LOCK TABLE journal IN ACCESS EXCLUSIVE MODE;
CREATE TABLE journal_open (
    id         BIGINT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
) WITH (vacuum_truncate = false);
INSERT INTO journal_open (id, created_at) SELECT id, created_at FROM journal WHERE state = 'pending';
DROP INDEX journal_pending;
DROP INDEX journal_stranded_reservations;
DROP INDEX journal_preauth_code;
ALTER TABLE journal
    ADD COLUMN reservation_stranded BOOLEAN GENERATED ALWAYS AS
        (reserved_minor > 0 AND state IN ('declined', 'timed_out', 'reversed')) STORED,
    ADD COLUMN preauth_code TEXT GENERATED ALWAYS AS
        (CASE WHEN txn_type = 'preauth' THEN auth_code END) STORED;
CREATE INDEX journal_stranded_reservations ON journal (created_at, id) WHERE reservation_stranded;
CREATE INDEX journal_preauth_code ON journal (merchant_id, preauth_code) WHERE preauth_code IS NOT NULL;
ALTER TABLE journal SET (fillfactor = 50);
