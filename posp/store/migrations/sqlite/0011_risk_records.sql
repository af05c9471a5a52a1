-- The risk step's record of each evaluated request (posp.pipeline.risk,
-- posp.store.risk_records): its decisions and, for a counted request, the hold
-- it added to the velocity counters, kept with the journal entry so a void, a
-- reversal or the in-doubt sweeper releases exactly that hold on any instance,
-- after any restart.  released_at is set once (the release is a compare-and-set).
CREATE TABLE risk_records (
    entry_id        INTEGER PRIMARY KEY,
    rrn             TEXT,
    terminal_id     TEXT NOT NULL,
    local_day       TEXT NOT NULL,
    ruleset_version TEXT NOT NULL,
    outcome         TEXT NOT NULL,
    flagged         INTEGER NOT NULL DEFAULT 0,
    decisions       TEXT NOT NULL,
    hold            TEXT,
    released_at     TEXT,
    created_at      TEXT NOT NULL
);
CREATE INDEX risk_records_rrn ON risk_records (rrn);
CREATE INDEX risk_records_flagged ON risk_records (local_day, flagged);

-- Terminal lifecycle (posp.risk.lifecycle): dormancy and the bound device.
CREATE TABLE risk_terminals (
    terminal_id    TEXT PRIMARY KEY,
    registered_on  TEXT NOT NULL,
    bound_serial   TEXT NOT NULL DEFAULT '',
    bound_iccid    TEXT NOT NULL DEFAULT '',
    last_active_on TEXT,
    dormant        INTEGER NOT NULL DEFAULT 0,
    frozen_reason  TEXT NOT NULL DEFAULT ''
);
CREATE INDEX risk_terminals_iccid ON risk_terminals (bound_iccid);

CREATE TABLE risk_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    terminal_id TEXT NOT NULL,
    event       TEXT NOT NULL,
    detail      TEXT NOT NULL DEFAULT '',
    created_at  TEXT NOT NULL
);
