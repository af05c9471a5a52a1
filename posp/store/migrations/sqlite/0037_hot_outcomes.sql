-- PostgreSQL's 0037 makes a purchase's outcome write a HOT update (no index
-- of the journal names a column an outcome changes).  SQLite rewrites the
-- row and the index entries whose columns change, whatever the other indexes
-- name, so its journal keeps its indexes: nothing to do here.  The version is
-- recorded so that both stores stay at the same schema version.
SELECT 1;
