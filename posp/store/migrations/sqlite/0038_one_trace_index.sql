-- PostgreSQL's 0038 merges the journal's dedupe and trace indexes into one.
-- SQLite keeps both: the change was measured on PostgreSQL only, where each
-- index entry costs the server's CPU and WAL.  The version is recorded so that
-- both stores stay at the same schema version.
SELECT 1;
