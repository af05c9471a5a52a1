-- posp store schema, SQLite dialect.  Times are UTC text 'YYYY-MM-DD HH:MM:SS.ffffff'
-- (fixed width, so text order is time order).  Keys are LMK-encrypted hex only;
-- PANs are masked 6+4 plus a keyed hash.

CREATE TABLE merchants (
    merchant_id   TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    category_code TEXT NOT NULL,
    status        TEXT NOT NULL DEFAULT 'active',
    created_at    TEXT NOT NULL
);

CREATE TABLE terminals (
    terminal_id       TEXT PRIMARY KEY,
    merchant_id       TEXT NOT NULL REFERENCES merchants (merchant_id),
    status            TEXT NOT NULL DEFAULT 'active',
    tmk_lmk           TEXT,
    tmk_kcv           TEXT,
    tpk_lmk           TEXT,
    tak_lmk           TEXT,
    tdk_lmk           TEXT,
    keys_generated_at TEXT,
    batch             TEXT NOT NULL DEFAULT '000001',
    device_serial     TEXT,
    created_at        TEXT NOT NULL
);
CREATE INDEX terminals_merchant ON terminals (merchant_id);
CREATE INDEX terminals_keys_generated ON terminals (keys_generated_at);

-- No foreign key to terminals: a request from an unknown terminal is still journaled.
CREATE TABLE journal (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    terminal_id     TEXT NOT NULL,
    merchant_id     TEXT NOT NULL,
    batch           TEXT NOT NULL,
    trace           TEXT NOT NULL,
    txn_type        TEXT NOT NULL,
    mti             TEXT NOT NULL,
    direction       TEXT NOT NULL DEFAULT 'original',
    processing_code TEXT NOT NULL DEFAULT '',
    amount_minor    INTEGER,
    currency        TEXT NOT NULL DEFAULT '156',
    pan_masked      TEXT,
    pan_hash        TEXT,
    card_class      TEXT NOT NULL DEFAULT '00',
    card_org        TEXT,
    state           TEXT NOT NULL,
    response_code   TEXT,
    rrn             TEXT,
    auth_code       TEXT,
    local_date      TEXT,
    local_time      TEXT,
    settlement_date TEXT,
    original_id     INTEGER,
    refunded_minor  INTEGER NOT NULL DEFAULT 0,
    network_stan    TEXT,
    network_f7      TEXT,
    node_id         TEXT NOT NULL DEFAULT '',
    dedupe          BOOLEAN NOT NULL,
    created_at      TEXT NOT NULL
);
-- Exactly one financial request per (terminal, batch, trace, direction).
CREATE UNIQUE INDEX journal_dedupe ON journal (terminal_id, batch, trace, direction) WHERE dedupe;
-- Serves find_by_trace, batch_totals and list_batches (prefix terminal_id, batch).
CREATE INDEX journal_batch ON journal (terminal_id, batch, trace);
CREATE INDEX journal_rrn ON journal (rrn) WHERE rrn IS NOT NULL;
CREATE INDEX journal_auth_code ON journal (merchant_id, auth_code) WHERE auth_code IS NOT NULL;

CREATE TABLE saf (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    entry_id        INTEGER NOT NULL UNIQUE REFERENCES journal (id),
    payload         BLOB NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    created_at      TEXT NOT NULL
);
CREATE INDEX saf_due ON saf (next_attempt_at);

CREATE TABLE settlements (
    id                     INTEGER PRIMARY KEY AUTOINCREMENT,
    terminal_id            TEXT NOT NULL,
    merchant_id            TEXT NOT NULL,
    batch                  TEXT NOT NULL,
    dom_debit_amount_minor INTEGER NOT NULL,
    dom_debit_count        INTEGER NOT NULL,
    dom_credit_amount_minor INTEGER NOT NULL,
    dom_credit_count       INTEGER NOT NULL,
    for_debit_amount_minor INTEGER NOT NULL,
    for_debit_count        INTEGER NOT NULL,
    for_credit_amount_minor INTEGER NOT NULL,
    for_credit_count       INTEGER NOT NULL,
    term_dom_debit_amount_minor INTEGER NOT NULL,
    term_dom_debit_count   INTEGER NOT NULL,
    term_dom_credit_amount_minor INTEGER NOT NULL,
    term_dom_credit_count  INTEGER NOT NULL,
    term_for_debit_amount_minor INTEGER NOT NULL,
    term_for_debit_count   INTEGER NOT NULL,
    term_for_credit_amount_minor INTEGER NOT NULL,
    term_for_credit_count  INTEGER NOT NULL,
    domestic_balanced      BOOLEAN NOT NULL,
    foreign_balanced       BOOLEAN NOT NULL,
    upload_records         INTEGER NOT NULL DEFAULT 0,
    upload_mismatches      INTEGER NOT NULL DEFAULT 0,
    upload_complete        BOOLEAN NOT NULL DEFAULT FALSE,
    settled_at             TEXT NOT NULL,
    UNIQUE (terminal_id, batch)
);
CREATE INDEX settlements_settled_at ON settlements (settled_at);

CREATE TABLE uploads (
    terminal_id  TEXT NOT NULL,
    batch        TEXT NOT NULL,
    trace        TEXT NOT NULL,
    card_class   TEXT NOT NULL,
    pan_hash     TEXT NOT NULL,
    amount_minor INTEGER NOT NULL,
    matched      BOOLEAN NOT NULL,
    reason       TEXT NOT NULL DEFAULT '',
    created_at   TEXT NOT NULL,
    PRIMARY KEY (terminal_id, batch, trace)
);

CREATE TABLE sequences (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
