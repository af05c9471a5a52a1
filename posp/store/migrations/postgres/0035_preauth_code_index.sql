-- The auth-code index serves one lookup, the open pre-authorization of a
-- pre-auth void or completion (find_preauth: F38 with merchant, card and date).
-- Over every approved entry it took one more B-tree entry in each purchase's
-- outcome write, and as issuers hand out auth codes in no order, that entry
-- lands on a leaf page of its own: one more page written to the WAL and read
-- again per purchase (SQLite), one more index insertion per outcome update
-- (PostgreSQL).  It now holds the pre-authorizations only, and find_preauth
-- names their type as a literal so that the planner can use it.
DROP INDEX journal_auth_code;
CREATE INDEX journal_preauth_code ON journal (merchant_id, auth_code)
    WHERE txn_type = 'preauth' AND auth_code IS NOT NULL;
