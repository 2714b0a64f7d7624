-- Schema version 3: admin accounts, conference runs, richer call records, API tokens and node
-- heartbeats (a node's crash is dated by its last heartbeat, not by its restart).

ALTER TABLE accounts ADD COLUMN is_admin INTEGER NOT NULL DEFAULT 0;

CREATE TABLE runs (
    id                INTEGER PRIMARY KEY,
    room_id           INTEGER REFERENCES rooms (id) ON DELETE SET NULL,
    account_id        INTEGER NOT NULL,   -- kept when the room is deleted (billing)
    node_id           TEXT NOT NULL,
    opened_at         REAL NOT NULL,
    ended_at          REAL,
    end_reason        TEXT,
    peak_participants INTEGER NOT NULL DEFAULT 0,
    CHECK ((ended_at IS NULL) = (end_reason IS NULL))
);
CREATE INDEX runs_open ON runs (node_id) WHERE ended_at IS NULL;
CREATE INDEX runs_room ON runs (room_id, opened_at);
CREATE INDEX runs_account ON runs (account_id, opened_at);

ALTER TABLE call_records ADD COLUMN run_id INTEGER REFERENCES runs (id) ON DELETE SET NULL;
ALTER TABLE call_records ADD COLUMN direction TEXT NOT NULL DEFAULT 'dial_in';
ALTER TABLE call_records ADD COLUMN answered_at REAL;
ALTER TABLE call_records ADD COLUMN conference_at REAL;
ALTER TABLE call_records ADD COLUMN ended_by TEXT;
CREATE INDEX call_records_run ON call_records (run_id);

CREATE TABLE api_tokens (
    id           INTEGER PRIMARY KEY,
    account_id   INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    token_hash   TEXT NOT NULL UNIQUE,     -- sha256 hex of the secret
    created_at   REAL NOT NULL,
    revoked_at   REAL,
    last_used_at REAL
);
CREATE INDEX api_tokens_account ON api_tokens (account_id);

CREATE TABLE node_heartbeats (
    node_id TEXT PRIMARY KEY,
    at      REAL NOT NULL
);
