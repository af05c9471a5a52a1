-- One index for a journal entry's (terminal, batch, trace) on PostgreSQL
-- (issue 19).  journal_dedupe (unique, WHERE dedupe) and journal_batch held
-- the same leading columns: every insert wrote an entry into both.  One
-- unique index now serves both: its last key is 0 for a deduplicated entry
-- and NULL for the others, which never conflict (NULLs are distinct), so
-- exactly one deduplicated request per (terminal, batch, trace, direction)
-- remains the rule, and the trace and batch lookups use its leading columns.
-- The store's batch insert names it in ON CONFLICT by the same expression.
-- Building it reads the journal once (the table is locked meanwhile; the
-- store allows a migration migrate_timeout_s): upgrade in a quiet hour.
LOCK TABLE journal IN ACCESS EXCLUSIVE MODE;
CREATE UNIQUE INDEX journal_trace ON journal
    (terminal_id, batch, trace, direction, (CASE WHEN dedupe THEN 0 END));
DROP INDEX journal_dedupe;
DROP INDEX journal_batch;
