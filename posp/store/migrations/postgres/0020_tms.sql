-- Terminal management (terminal-link.md §10): parameter sets, what each terminal
-- holds and reports, staged software rollouts.

CREATE TABLE tms_param_sets (
    scope      TEXT NOT NULL,
    scope_id   TEXT NOT NULL,
    version    BIGINT NOT NULL,
    params     TEXT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (scope, scope_id)
);

-- No foreign key to terminals: a status upload is kept even before registration.
CREATE TABLE tms_terminals (
    terminal_id        TEXT PRIMARY KEY,
    group_name         TEXT NOT NULL DEFAULT 'default',
    group_version      BIGINT NOT NULL DEFAULT 0,
    held_param_version BIGINT,
    app_version        TEXT,
    install_result     TEXT,
    identity           TEXT,
    status             TEXT,
    status_at          TIMESTAMPTZ
);
CREATE INDEX tms_terminals_group ON tms_terminals (group_name);

CREATE TABLE tms_rollouts (
    id                    BIGSERIAL PRIMARY KEY,
    group_name            TEXT NOT NULL,
    target                TEXT NOT NULL,
    app_version           TEXT NOT NULL,
    waves                 TEXT NOT NULL,
    wave                  INTEGER NOT NULL DEFAULT 0,
    state                 TEXT NOT NULL,
    failure_threshold_pct DOUBLE PRECISION NOT NULL,
    reason                TEXT,
    created_at            TIMESTAMPTZ NOT NULL,
    updated_at            TIMESTAMPTZ NOT NULL
);

CREATE TABLE tms_rollout_members (
    rollout_id  BIGINT NOT NULL REFERENCES tms_rollouts (id),
    terminal_id TEXT NOT NULL,
    wave        INTEGER NOT NULL,
    outcome     TEXT,
    reason      TEXT,
    PRIMARY KEY (rollout_id, terminal_id)
);
CREATE INDEX tms_rollout_members_terminal ON tms_rollout_members (terminal_id);
CREATE INDEX tms_rollout_members_wave ON tms_rollout_members (rollout_id, wave);
