-- PostgreSQL's 0038 merges the journal's dedupe and trace indexes into one.
-- SQLite keeps both (its upsert names the partial unique index), and the
-- version is recorded so that both stores stay at the same schema version.
SELECT 1;
