-- Schema version 1: accounts, rooms, PINs, access numbers, call records, rejections.
-- All times are UTC epoch seconds (REAL). Enumerated text columns (role, language, reasons)
-- are validated by the Python enums, not by CHECK, so new values need no table rebuild.
-- Kept to SQL that PostgreSQL accepts too (REAL -> double precision there).

CREATE TABLE accounts (
    id            INTEGER PRIMARY KEY,
    name          TEXT NOT NULL,
    email         TEXT NOT NULL,
    password_hash TEXT,
    tariff        TEXT NOT NULL DEFAULT 'standard',
    created_at    REAL NOT NULL
);
CREATE UNIQUE INDEX accounts_email ON accounts (lower(email));

CREATE TABLE rooms (
    id                 INTEGER PRIMARY KEY,
    account_id         INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name               TEXT NOT NULL,
    max_participants   INTEGER CHECK (max_participants IS NULL OR max_participants > 0),
    language           TEXT NOT NULL DEFAULT 'en',
    intro_path         TEXT,
    wait_for_moderator INTEGER NOT NULL DEFAULT 0,
    locked             INTEGER NOT NULL DEFAULT 0,
    created_at         REAL NOT NULL,
    UNIQUE (account_id, name)
);

-- The only place PINs live: the primary key makes a PIN unique across rooms AND roles,
-- so one PIN prompt finds both the room and the role (race-free across processes).
CREATE TABLE room_pins (
    pin     TEXT PRIMARY KEY,
    room_id INTEGER NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    role    TEXT NOT NULL,
    UNIQUE (room_id, role)
);

CREATE TABLE access_numbers (
    number   TEXT PRIMARY KEY,          -- E.164, '+' and digits
    country  TEXT NOT NULL,             -- ISO 3166-1 alpha-2
    language TEXT NOT NULL,
    room_id  INTEGER REFERENCES rooms (id) ON DELETE SET NULL
);

-- One row per leg: inserted (and committed) at join, closed at leave.
CREATE TABLE call_records (
    id            INTEGER PRIMARY KEY,
    room_id       INTEGER REFERENCES rooms (id) ON DELETE SET NULL,
    account_id    INTEGER NOT NULL,     -- kept when the room is deleted (billing)
    leg_id        TEXT NOT NULL,
    number_dialed TEXT NOT NULL,
    caller        TEXT NOT NULL,
    source        TEXT NOT NULL,
    role          TEXT NOT NULL,
    language      TEXT NOT NULL,
    joined_at     REAL NOT NULL,
    left_at       REAL,
    leave_reason  TEXT,
    node_id       TEXT NOT NULL,
    CHECK ((left_at IS NULL) = (leave_reason IS NULL))
);
CREATE INDEX call_records_open ON call_records (node_id) WHERE left_at IS NULL;
CREATE INDEX call_records_room ON call_records (room_id, joined_at);
CREATE INDEX call_records_account ON call_records (account_id, joined_at);

CREATE TABLE rejections (
    id            INTEGER PRIMARY KEY,
    at            REAL NOT NULL,
    number_dialed TEXT NOT NULL,
    caller        TEXT NOT NULL,
    source        TEXT NOT NULL,
    reason        TEXT NOT NULL,
    room_id       INTEGER REFERENCES rooms (id) ON DELETE SET NULL,
    node_id       TEXT NOT NULL
);
CREATE INDEX rejections_at ON rejections (at);
