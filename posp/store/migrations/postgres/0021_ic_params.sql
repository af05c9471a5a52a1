-- IC parameters (terminal-link.md §8): CA public keys and AID parameter sets the
-- terminals download, a version per kind, and what each terminal last downloaded.

CREATE TABLE ic_capks (
    rid        TEXT NOT NULL,
    key_index  TEXT NOT NULL,
    tlv        TEXT NOT NULL,
    expiry     TEXT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (rid, key_index)
);

CREATE TABLE ic_aids (
    aid        TEXT PRIMARY KEY,
    tlv        TEXT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE ic_versions (
    kind    TEXT PRIMARY KEY,
    version BIGINT NOT NULL
);

ALTER TABLE tms_terminals ADD COLUMN held_capk_version BIGINT;
ALTER TABLE tms_terminals ADD COLUMN held_aid_version BIGINT;
